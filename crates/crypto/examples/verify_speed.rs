//! In-process cost of verifying one ES256 access token, the old way against the new, in
//! the same run on one thread.
//!
//! Old: what `AccessTokens::verify` did before it used ring: the low-S check, then
//! `jsonwebtoken::decode` (RustCrypto `p256`) with the same `Validation` (ES256 only, `iss`,
//! `aud`, required `exp`/`iss`/`aud`/`sub`, 5 s leeway) and a `DecodingKey` built once, as
//! it was at key load. New: `AccessTokens::verify` itself (ring, then the same claim
//! checks). Both verify the same token from the same key. The two alternate for
//! [`ROUNDS`] rounds and each keeps its fastest round, so load from other processes on a
//! shared machine skews neither side more than the other.
//! Run: `cargo run --release -p rampart-crypto --example verify_speed`.

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rampart_crypto::keyring::BoxFuture;
use rampart_crypto::signing::{
    Algorithm, Policy, Purpose, SigningKeyBackend, SigningKeyRecord, SigningKeys,
};
use rampart_crypto::{AccessClaims, AccessTokens, RootKey};

const RUN: Duration = Duration::from_secs(1);
const ROUNDS: usize = 5;

#[derive(Default)]
struct MemoryBackend(Mutex<Vec<SigningKeyRecord>>);

impl SigningKeyBackend for MemoryBackend {
    fn list(&self) -> BoxFuture<'_, Result<Vec<SigningKeyRecord>, String>> {
        let records = self.0.lock().map(|r| r.clone()).unwrap_or_default();
        Box::pin(async move { Ok(records) })
    }
    fn insert(&self, record: SigningKeyRecord) -> BoxFuture<'_, Result<(), String>> {
        if let Ok(mut records) = self.0.lock() {
            records.push(record);
        }
        Box::pin(async { Ok(()) })
    }
}

/// Microseconds per operation: count operations in a fixed time.
fn micros_per_op(mut op: impl FnMut() -> bool) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        for _ in 0..64 {
            assert!(black_box(op()), "the token must verify");
        }
        n += 64;
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// The low-S check the old path made before `jsonwebtoken::decode`.
fn low_s(token: &str) -> bool {
    token
        .rsplit('.')
        .next()
        .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        .and_then(|bytes| p256::ecdsa::Signature::from_slice(&bytes).ok())
        .is_none_or(|s| s.normalize_s().is_none())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let policy = Policy {
        access_token_alg: Algorithm::Es256,
        audit_checkpoint_alg: Algorithm::Es256,
        rotate_after: Duration::from_secs(90 * 24 * 3600),
        per_tenant: false,
    };
    let keys = SigningKeys::load(
        RootKey::from_bytes([9; 32]),
        None,
        Arc::new(MemoryBackend::default()),
        policy,
    )
    .await?;
    let key = keys.signer(Purpose::AccessToken, "kind:bench").await?;
    let tokens = AccessTokens::new("https://id.example", "rampart");
    let now = jsonwebtoken::get_current_timestamp();
    let claims = AccessClaims {
        iss: "https://id.example".into(),
        aud: "rampart".into(),
        sub: "user".into(),
        tenant: "tenant".into(),
        sid: "session".into(),
        iat: now,
        exp: now + 3600,
        jti: "jti".into(),
    };
    let token = tokens.sign(&key, &claims)?;

    let member = |name: &str| key.jwk()[name].as_str().unwrap_or_default().to_string();
    let decoding = jsonwebtoken::DecodingKey::from_ec_components(&member("x"), &member("y"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&["https://id.example"]);
    validation.set_audience(&["rampart"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 5;

    let mut old_way = || {
        low_s(black_box(&token))
            && jsonwebtoken::decode::<AccessClaims>(black_box(&token), &decoding, &validation)
                .is_ok()
    };
    let mut new_way = || tokens.verify(black_box(&token), &key).is_ok();

    println!(
        "in-process, one thread, one ES256 access token, {ROUNDS} alternating rounds of {} s \
         each, fastest round kept",
        RUN.as_secs()
    );
    // Warm up both.
    for _ in 0..200 {
        assert!(old_way() && new_way(), "the token must verify");
    }
    let (mut old, mut new) = (f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        old = old.min(micros_per_op(&mut old_way));
        new = new.min(micros_per_op(&mut new_way));
    }
    println!("old (jsonwebtoken + p256): {old:>8.1} µs per verification");
    println!("new (ring):                {new:>8.1} µs per verification");
    println!("ratio old ÷ new = {:.2}", old / new);
    Ok(())
}
