//! Password hashing and policy.
//!
//! New hashes are Argon2id with m = 19 MiB, t = 2, p = 1 (OWASP's minimum). Hashes imported
//! from Laravel (bcrypt `$2y$`/`$2b$`) verify as they are and are replaced with Argon2id at
//! the next successful login. Hashing is CPU-heavy and takes 19 MiB: the server runs it
//! through `hash_gate`, which bounds how many run at once and lends each one a reused
//! [`HashMemory`], so a burst of logins neither allocates nor keeps memory.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;

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
/// Allocates its Argon2 memory; the server uses [`verify_in`].
pub fn verify(password: &str, stored: &str) -> bool {
    verify_in(&mut HashMemory::new(), password, stored)
}

/// Argon2 working memory for one hash at today's parameters (19 MiB). Reusing one per
/// concurrent hash keeps resident memory at that many times 19 MiB however many logins
/// arrive: allocating it per hash left glibc's arenas holding gigabytes after a burst.
pub struct HashMemory(Vec<Block>);

impl HashMemory {
    pub fn new() -> HashMemory {
        HashMemory(vec![Block::default(); ARGON2_M_KIB as usize])
    }
}

impl Default for HashMemory {
    fn default() -> Self {
        HashMemory::new()
    }
}

/// Stored hashes asking for more memory than this are refused rather than computed: an
/// imported or tampered row cannot make one login allocate without bound.
const MAX_STORED_M_KIB: u32 = 256 * 1024;

/// [`hash`] in `memory`.
pub fn hash_in(memory: &mut HashMemory, password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| e.to_string())?;
    let hasher = argon2();
    let mut out = [0u8; 32];
    hasher
        .hash_password_into_with_memory(password.as_bytes(), salt_raw, &mut out, &mut memory.0)
        .map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: hasher
            .params()
            .try_into()
            .map_err(|e: argon2::password_hash::Error| e.to_string())?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// [`verify`] in `memory` (a stored hash with more memory than today's gets its own).
pub fn verify_in(memory: &mut HashMemory, password: &str, stored: &str) -> bool {
    if is_bcrypt(stored) {
        // bcrypt reads at most 72 bytes; `verify` truncates as Laravel's hasher did, so
        // imported users keep the password they know.
        return bcrypt::verify(password, stored).unwrap_or(false);
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = parsed
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or(Version::V0x13);
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    if params.m_cost() > MAX_STORED_M_KIB {
        return false;
    }
    let mut own;
    let blocks: &mut [Block] = if params.block_count() <= memory.0.len() {
        &mut memory.0
    } else {
        own = vec![Block::default(); params.block_count()];
        &mut own
    };
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt_raw, &mut out, blocks)
        .is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
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

    /// The reused-memory paths agree with the argon2 crate's own hashing and verification,
    /// both ways, including hashes at other parameters than today's.
    #[test]
    fn hashing_in_reused_memory_matches_the_library() {
        use argon2::PasswordVerifier;
        let mut memory = HashMemory::new();
        let ours = hash_in(&mut memory, "maple orbit canvas thunder").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon2()
            .verify_password(b"maple orbit canvas thunder", &parsed)
            .is_ok());
        assert!(verify_in(&mut memory, "maple orbit canvas thunder", &ours));
        assert!(!verify_in(&mut memory, "maple orbit canvas thunde", &ours));

        let library = hash("maple orbit canvas thunder").unwrap();
        assert!(verify_in(
            &mut memory,
            "maple orbit canvas thunder",
            &library
        ));
        // Smaller and larger memory than the buffer, Argon2i, an older version.
        for (alg, version, m) in [
            (Algorithm::Argon2id, Version::V0x13, 4096),
            (Algorithm::Argon2id, Version::V0x13, 32 * 1024),
            (Algorithm::Argon2i, Version::V0x10, 8192),
        ] {
            let params = Params::new(m, 1, 1, None).unwrap();
            let salt = SaltString::generate(&mut OsRng);
            let h = Argon2::new(alg, version, params)
                .hash_password(b"other params", &salt)
                .unwrap()
                .to_string();
            assert!(verify_in(&mut memory, "other params", &h), "{h}");
            assert!(!verify_in(&mut memory, "other param", &h), "{h}");
        }
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
