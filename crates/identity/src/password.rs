//! Password hashing and policy.
//!
//! New hashes are Argon2id with m = 19 MiB, t = 2, p = 1 (OWASP's minimum). Hashes imported
//! from Laravel (bcrypt `$2y$`/`$2b$`) verify as they are and are replaced with Argon2id at
//! the next successful login. Hashing is CPU-heavy: callers run it with `spawn_blocking`.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

pub const ARGON2_M_KIB: u32 = 19 * 1024;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;
/// Long passphrases are welcome; this bound only keeps one request from hashing megabytes.
pub const MAX_PASSWORD_CHARS: usize = 1024;

fn argon2() -> Argon2<'static> {
    // The constants are valid parameters; `Params::new` cannot fail for them.
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A PHC string: `$argon2id$v=19$m=19456,t=2,p=1$salt$hash`.
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Verifies against an Argon2 PHC string or a bcrypt hash. A malformed hash is a mismatch.
pub fn verify(password: &str, stored: &str) -> bool {
    if is_bcrypt(stored) {
        // bcrypt reads at most 72 bytes; `verify` truncates as Laravel's hasher did, so
        // imported users keep the password they know.
        return bcrypt::verify(password, stored).unwrap_or(false);
    }
    match PasswordHash::new(stored) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// True when the stored hash is not Argon2id at today's parameters.
pub fn needs_rehash(stored: &str) -> bool {
    if is_bcrypt(stored) {
        return true;
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return true;
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return true;
    }
    let param = |name: &str| parsed.params.get_decimal(name).unwrap_or(0);
    param("m") < ARGON2_M_KIB || param("t") < ARGON2_T || param("p") < ARGON2_P
}

/// `$2y$`, `$2b$`, `$2a$` with a two-digit cost.
pub fn is_bcrypt(stored: &str) -> bool {
    let b = stored.as_bytes();
    b.len() == 60 && b.starts_with(b"$2") && matches!(b[2], b'a' | b'b' | b'y') && b[3] == b'$'
}

/// Checks a new password: length, then strength as zxcvbn estimates it, with the user's
/// own e-mail and name counted as guessable. The error is a sentence for the user.
pub fn check_policy(
    password: &str,
    min_chars: usize,
    min_score: u8,
    user_inputs: &[&str],
) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < min_chars {
        return Err(format!("password must be at least {min_chars} characters"));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(format!(
            "password must be at most {MAX_PASSWORD_CHARS} characters"
        ));
    }
    // zxcvbn's matching grows faster than linearly; 100 characters decide the score of
    // any passphrase, and a longer one is only stronger.
    let sample: String = password.chars().take(100).collect();
    let estimate = zxcvbn::zxcvbn(&sample, user_inputs);
    if u8::from(estimate.score()) < min_score {
        let hint = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| format!(": {w}"))
            .unwrap_or_default();
        return Err(format!(
            "password is too easy to guess{hint}; a few unrelated words make a strong one"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip_with_required_parameters() {
        let h = hash("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery staple", &h));
        assert!(!verify("correct horse battery stapl", &h));
        assert!(!needs_rehash(&h));
    }

    #[test]
    fn laravel_bcrypt_verifies_and_needs_rehash() {
        // Made with PHP's password_hash(..., PASSWORD_BCRYPT, ['cost' => 12]) style: $2y$.
        let h = bcrypt::hash_with_result("laravel-secret-pass", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        assert!(h.starts_with("$2y$04$"));
        assert!(is_bcrypt(&h));
        assert!(verify("laravel-secret-pass", &h));
        assert!(!verify("laravel-secret-pas", &h));
        assert!(needs_rehash(&h));
    }

    #[test]
    fn malformed_hash_never_verifies() {
        for stored in ["", "plain", "$argon2id$garbage", "$2y$12$short"] {
            assert!(!verify("anything", stored));
        }
    }

    #[test]
    fn policy_refuses_short_and_common() {
        assert!(check_policy("short", 12, 3, &[]).is_err());
        assert!(check_policy("password1234", 12, 3, &[]).is_err());
        assert!(check_policy("ana@example.id2024", 12, 3, &["ana@example.id"]).is_err());
        assert!(check_policy("maple orbit canvas thunder", 12, 3, &[]).is_ok());
        let long = "a quiet river runs ".repeat(40);
        assert!(check_policy(&long, 12, 3, &[]).is_ok());
        assert!(check_policy(&"x".repeat(2000), 12, 0, &[]).is_err());
    }
}
