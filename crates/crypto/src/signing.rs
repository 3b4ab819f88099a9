//! Signing keys: Ed25519 (EdDSA), ECDSA P-256 (ES256) and RSA-PSS 2048 / SHA-256 (PS256),
//! one set per purpose (access tokens, audit checkpoints) and scope (a tenant kind, or one
//! tenant), rotated when the newest key of a set is older than the rotation period
//! (quarterly by default).
//!
//! With a PKCS#11 token configured, private keys are generated in it and sign there; the
//! store records only the object label and the public key. Without one, the private key
//! is sealed under the root key and opened only in this module.
//!
//! A key set works like this: the newest key signs; a key stays *published* (JWKS) and
//! accepted for access tokens until one day after its successor appeared, longer than any
//! access token or JWKS cache lives. Audit checkpoint keys verify forever: a checkpoint
//! from years ago must still check out.
//!
//! Keys are shared between nodes through a [`SigningKeyBackend`] (the store). A node that
//! meets an unknown `kid` reloads (at most every [`RELOAD_INTERVAL`]); a node about to
//! rotate reloads first, so a set gets one new key per rotation, not one per node.
//!
//! Invariant: private key material lives only inside `PrivateKey`, never in a log line.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand::RngCore;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use crate::hsm::{Hsm, HsmKey, PublicKeyBytes};
use crate::keyring::BoxFuture;
use crate::RootKey;

/// An unknown `kid` makes a node reload its keys at most this often, so a flood of
/// forged tokens cannot turn into a flood of database reads.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// How long a superseded access-token key is still published and accepted.
pub const SUPERSEDED_GRACE_MS: i64 = 24 * 3600 * 1000;
/// Nodes pick up keys other nodes made (a rotation) at least this often.
const REFRESH_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
    /// RSASSA-PSS, 2048-bit modulus, SHA-256, MGF1-SHA-256, 32-byte salt.
    Ps256,
}

impl Algorithm {
    /// The JWS `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Ps256 => "PS256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ES256" => Ok(Algorithm::Es256),
            "EdDSA" | "Ed25519" => Ok(Algorithm::EdDsa),
            "PS256" => Ok(Algorithm::Ps256),
            other => Err(format!(
                "unknown signing algorithm {other:?} (ES256, EdDSA or PS256)"
            )),
        }
    }
}

/// What a key signs. Keys never cross purposes, so an audit checkpoint signature can
/// never be passed off as a token and the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    AccessToken,
    AuditCheckpoint,
    /// A key from before purposes existed: it signed both. It verifies both and never
    /// signs again.
    Legacy,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::AccessToken => "access-token",
            Purpose::AuditCheckpoint => "audit-checkpoint",
            Purpose::Legacy => "legacy",
        }
    }
}

impl FromStr for Purpose {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "access-token" => Ok(Purpose::AccessToken),
            "audit-checkpoint" => Ok(Purpose::AuditCheckpoint),
            "legacy" => Ok(Purpose::Legacy),
            other => Err(format!(
                "unknown key purpose {other:?} (access-token or audit-checkpoint)"
            )),
        }
    }
}

/// A signing key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    pub purpose: String,
    pub scope: String,
    pub alg: String,
    /// The private key sealed under the root key; empty when a token holds it.
    pub sealed_private_key: Vec<u8>,
    /// The token object's label when a token holds the private key.
    pub token_label: Option<String>,
    /// The public JWK (`None` only for keys made before it was recorded).
    pub public_jwk: Option<String>,
    pub created_at: i64,
}

/// Where signing keys are kept. Errors are messages: the backend has logged the cause.
pub trait SigningKeyBackend: Send + Sync {
    fn list(&self) -> BoxFuture<'_, Result<Vec<SigningKeyRecord>, String>>;
    fn insert(&self, record: SigningKeyRecord) -> BoxFuture<'_, Result<(), String>>;
}

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("signing key storage: {0}")]
    Storage(String),
    #[error("signing key {kid} cannot be used: {reason}")]
    Unusable { kid: String, reason: String },
    #[error("the PKCS#11 token failed: {0}")]
    Token(#[from] crate::hsm::HsmError),
    #[error("cannot make a key: {0}")]
    Generate(String),
    #[error(transparent)]
    Root(#[from] crate::SealError),
}

/// Which algorithms sign, how often keys rotate, and how keys are scoped.
#[derive(Debug, Clone)]
pub struct Policy {
    pub access_token_alg: Algorithm,
    pub audit_checkpoint_alg: Algorithm,
    pub rotate_after: Duration,
    /// One key set per tenant rather than per tenant kind.
    pub per_tenant: bool,
}

impl Policy {
    pub fn alg_for(&self, purpose: Purpose) -> Algorithm {
        match purpose {
            Purpose::AuditCheckpoint => self.audit_checkpoint_alg,
            Purpose::AccessToken | Purpose::Legacy => self.access_token_alg,
        }
    }

    /// The scope a tenant's keys belong to: `kind:<kind>`, or `tenant:<id>`.
    pub fn scope_for(&self, tenant_id: &str, tenant_kind: &str) -> String {
        if self.per_tenant {
            format!("tenant:{tenant_id}")
        } else {
            format!("kind:{tenant_kind}")
        }
    }
}

enum PrivateKey {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Rsa(Box<rsa::pss::BlindedSigningKey<Sha256>>),
    Token(Arc<Hsm>, HsmKey),
}

enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Rsa(Box<rsa::pss::VerifyingKey<Sha256>>),
}

/// One key, loaded: its public half always, its private half when this node may sign
/// with it (the newest of its set).
pub struct LoadedKey {
    pub kid: String,
    pub purpose: Purpose,
    pub scope: String,
    pub alg: Algorithm,
    pub created_at: i64,
    pub in_token: bool,
    jwk: serde_json::Value,
    public: PublicKey,
    private: Option<PrivateKey>,
    /// For access tokens: whether it is still published and accepted.
    published: bool,
    /// How it checks access-token signatures, built once at load for keys that verify
    /// access tokens (every authenticated request uses it).
    pub(crate) token_verifier: Option<TokenVerifier>,
}

/// An access-token key's verifier.
pub(crate) enum TokenVerifier {
    /// ES256 with ring (see `jwt::verify_es256` for why): the uncompressed P-256 point.
    Es256(ring::signature::UnparsedPublicKey<Vec<u8>>),
    /// EdDSA and PS256 through `jsonwebtoken`.
    Jwt(jsonwebtoken::DecodingKey),
}

impl fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedKey")
            .field("kid", &self.kid)
            .field("purpose", &self.purpose)
            .field("scope", &self.scope)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl LoadedKey {
    /// The signature over `message` in its JWS form (`r || s` for ES256).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SigningError> {
        use p256::ecdsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
        match &self.private {
            Some(PrivateKey::P256(key)) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                Ok(low_s(signature.to_bytes().to_vec()))
            }
            Some(PrivateKey::Ed25519(key)) => Ok(key.sign(message).to_bytes().to_vec()),
            Some(PrivateKey::Rsa(key)) => {
                Ok(key.sign_with_rng(&mut rand::rngs::OsRng, message).to_vec())
            }
            Some(PrivateKey::Token(hsm, key)) => {
                let signature = hsm.sign(key, message)?;
                Ok(match self.alg {
                    // A token's ECDSA leaves `s` as it falls; ours are low-S (see `verify`).
                    Algorithm::Es256 => low_s(signature),
                    _ => signature,
                })
            }
            None => Err(SigningError::Unusable {
                kid: self.kid.clone(),
                reason: "this node holds only its public half".into(),
            }),
        }
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier;
        match &self.public {
            // Only low-S signatures: `(r, n - s)` verifies too, and accepting both would make
            // every signature malleable (a second valid token for the same claims).
            PublicKey::P256(key) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| s.normalize_s().is_none() && key.verify(message, &s).is_ok()),
            PublicKey::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify_strict(message, &s).is_ok()),
            PublicKey::Rsa(key) => rsa::pss::Signature::try_from(signature)
                .is_ok_and(|s| key.verify(message, &s).is_ok()),
        }
    }

    /// The public JWK (`kid`, `alg`, `use: sig`).
    pub fn jwk(&self) -> &serde_json::Value {
        &self.jwk
    }

    /// Whether access tokens signed by it are still accepted.
    pub fn published(&self) -> bool {
        self.published
    }

    /// Whether it may verify a signature made for `purpose`.
    pub fn serves(&self, purpose: Purpose) -> bool {
        self.purpose == purpose || self.purpose == Purpose::Legacy
    }
}

#[derive(Default)]
struct Snapshot {
    by_kid: HashMap<String, Arc<LoadedKey>>,
    /// The newest key of each set this node can sign with.
    signers: HashMap<(Purpose, String, Algorithm), Arc<LoadedKey>>,
}

pub struct SigningKeys {
    root: RootKey,
    hsm: Option<Arc<Hsm>>,
    backend: Arc<dyn SigningKeyBackend>,
    policy: Policy,
    snapshot: RwLock<(Instant, Arc<Snapshot>)>,
    last_miss_reload: Mutex<Option<Instant>>,
    /// One key creation at a time on this node; other nodes are handled by reloading.
    creating: tokio::sync::Mutex<()>,
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("policy", &self.policy)
            .field("hsm", &self.hsm.is_some())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl SigningKeys {
    /// Loads every stored key. With `hsm`, new keys are made in the token.
    pub async fn load(
        root: RootKey,
        hsm: Option<Arc<Hsm>>,
        backend: Arc<dyn SigningKeyBackend>,
        policy: Policy,
    ) -> Result<SigningKeys, SigningError> {
        let keys = SigningKeys {
            root,
            hsm,
            backend,
            policy,
            snapshot: RwLock::new((Instant::now(), Arc::new(Snapshot::default()))),
            last_miss_reload: Mutex::new(None),
            creating: tokio::sync::Mutex::new(()),
        };
        keys.reload().await?;
        Ok(keys)
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn current(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => s.1.clone(),
            Err(poisoned) => poisoned.into_inner().1.clone(),
        }
    }

    fn stale(&self) -> bool {
        match self.snapshot.read() {
            Ok(s) => s.0.elapsed() > REFRESH_INTERVAL,
            Err(_) => true,
        }
    }

    /// Reads every key from the backend and replaces this node's view.
    pub async fn reload(&self) -> Result<(), SigningError> {
        let records = self.backend.list().await.map_err(SigningError::Storage)?;
        let snapshot = self.build_snapshot(records)?;
        if let Ok(mut slot) = self.snapshot.write() {
            *slot = (Instant::now(), Arc::new(snapshot));
        }
        Ok(())
    }

    fn build_snapshot(&self, records: Vec<SigningKeyRecord>) -> Result<Snapshot, SigningError> {
        let now = now_ms();
        // Each set's keys, oldest first, to find the newest and each key's successor.
        let mut sets: HashMap<(String, String, String), Vec<&SigningKeyRecord>> = HashMap::new();
        for r in &records {
            sets.entry((r.purpose.clone(), r.scope.clone(), r.alg.clone()))
                .or_default()
                .push(r);
        }
        let mut snapshot = Snapshot::default();
        for ((purpose, _, alg), mut members) in sets {
            members.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
            let (Ok(purpose), Ok(alg)) = (purpose.parse::<Purpose>(), alg.parse::<Algorithm>())
            else {
                // A key another version of Rampart knows and this one does not: skip it
                // rather than refuse to start.
                tracing::warn!(
                    purpose,
                    alg,
                    "skipping signing keys of an unknown purpose or algorithm"
                );
                continue;
            };
            let last = members.len() - 1;
            for (i, record) in members.iter().enumerate() {
                let newest = i == last;
                let published = newest
                    || members
                        .get(i + 1)
                        .is_some_and(|next| now - next.created_at < SUPERSEDED_GRACE_MS);
                // Only the newest signs, and legacy keys never sign again.
                let signs = newest && purpose != Purpose::Legacy;
                let key = Arc::new(self.open(record, purpose, alg, signs, published)?);
                if signs {
                    snapshot
                        .signers
                        .insert((purpose, record.scope.clone(), alg), key.clone());
                }
                snapshot.by_kid.insert(record.kid.clone(), key);
            }
        }
        Ok(snapshot)
    }

    fn open(
        &self,
        record: &SigningKeyRecord,
        purpose: Purpose,
        alg: Algorithm,
        with_private: bool,
        published: bool,
    ) -> Result<LoadedKey, SigningError> {
        let unusable = |reason: String| SigningError::Unusable {
            kid: record.kid.clone(),
            reason,
        };
        // A private key is opened when it will sign, or when it is the only record of
        // the public key (keys made before public JWKs were stored).
        let private = if with_private || record.public_jwk.is_none() {
            Some(match &record.token_label {
                Some(label) => {
                    let hsm = self.hsm.as_ref().ok_or_else(|| {
                        unusable(format!(
                            "it lives in PKCS#11 token object {label:?} and no token is \
                             configured (crypto.pkcs11_module)"
                        ))
                    })?;
                    let key = hsm.find(alg, label)?.ok_or_else(|| {
                        unusable(format!("the token has no object labelled {label:?}"))
                    })?;
                    PrivateKey::Token(hsm.clone(), key)
                }
                None => {
                    let der = self
                        .root
                        .open(&seal_context(alg, &record.kid), &record.sealed_private_key)
                        .map_err(|_| {
                            unusable(
                                "it does not open with this root key: every node needs the \
                                 root key the database was created with"
                                    .into(),
                            )
                        })?;
                    private_from_bytes(alg, &der).map_err(unusable)?
                }
            })
        } else {
            None
        };
        let jwk = match (&record.public_jwk, &private) {
            (Some(text), _) => {
                serde_json::from_str(text).map_err(|e| unusable(format!("public JWK: {e}")))?
            }
            (None, Some(private)) => jwk_of_private(private, alg)?,
            (None, None) => return Err(unusable("no public key".into())),
        };
        let public = public_from_jwk(&jwk).map_err(unusable)?;
        let token_verifier = match purpose {
            Purpose::AccessToken | Purpose::Legacy => {
                Some(token_verifier(&jwk, alg).map_err(unusable)?)
            }
            Purpose::AuditCheckpoint => None,
        };
        if thumbprint(&jwk).as_deref() != Some(record.kid.as_str()) {
            return Err(unusable("its public key does not match its kid".into()));
        }
        Ok(LoadedKey {
            kid: record.kid.clone(),
            purpose,
            scope: record.scope.clone(),
            alg,
            created_at: record.created_at,
            in_token: record.token_label.is_some(),
            jwk: with_metadata(jwk, &record.kid, alg),
            public,
            private: if with_private { private } else { None },
            published,
            token_verifier,
        })
    }

    /// The key that signs for `purpose` in `scope` now: the newest of its set, made (and
    /// stored) first if the set is empty or its newest key is older than the rotation
    /// period.
    pub async fn signer(
        &self,
        purpose: Purpose,
        scope: &str,
    ) -> Result<Arc<LoadedKey>, SigningError> {
        let alg = self.policy.alg_for(purpose);
        let fresh = |key: &Arc<LoadedKey>| {
            now_ms() - key.created_at < self.policy.rotate_after.as_millis() as i64
        };
        let wanted = (purpose, scope.to_string(), alg);
        if self.stale() {
            self.reload().await?;
        }
        if let Some(key) = self.current().signers.get(&wanted) {
            if fresh(key) {
                return Ok(key.clone());
            }
        }
        let _one_at_a_time = self.creating.lock().await;
        // Another request on this node, or another node, may have made it meanwhile.
        self.reload().await?;
        if let Some(key) = self.current().signers.get(&wanted) {
            if fresh(key) {
                return Ok(key.clone());
            }
        }
        self.create(purpose, scope, alg).await?;
        self.current()
            .signers
            .get(&wanted)
            .cloned()
            .ok_or_else(|| SigningError::Generate("the new key did not load".into()))
    }

    /// Makes a new key for the set now, whatever the age of its newest (manual
    /// rotation). Returns its kid.
    pub async fn rotate(&self, purpose: Purpose, scope: &str) -> Result<String, SigningError> {
        let _one_at_a_time = self.creating.lock().await;
        self.create(purpose, scope, self.policy.alg_for(purpose))
            .await
    }

    async fn create(
        &self,
        purpose: Purpose,
        scope: &str,
        alg: Algorithm,
    ) -> Result<String, SigningError> {
        // Key generation (RSA above all, and anything in a token) takes long enough
        // that it must not hold up an async worker.
        let blocking = |e: tokio::task::JoinError| SigningError::Generate(e.to_string());
        let record = match &self.hsm {
            Some(hsm) => {
                let mut id = [0u8; 12];
                rand::rngs::OsRng.fill_bytes(&mut id);
                let label = format!("rampart-{}-{}", purpose.as_str(), hex(&id));
                let key = {
                    let (hsm, label) = (hsm.clone(), label.clone());
                    tokio::task::spawn_blocking(move || hsm.generate(alg, &label))
                        .await
                        .map_err(blocking)??
                };
                let jwk = jwk_of_token_key(&key.public_key)?;
                SigningKeyRecord {
                    kid: thumbprint(&jwk).unwrap_or_default(),
                    purpose: purpose.as_str().into(),
                    scope: scope.into(),
                    alg: alg.as_str().into(),
                    sealed_private_key: Vec::new(),
                    token_label: Some(label),
                    public_jwk: Some(jwk.to_string()),
                    created_at: now_ms(),
                }
            }
            None => {
                let (der, private) = tokio::task::spawn_blocking(move || generate_software(alg))
                    .await
                    .map_err(blocking)??;
                let jwk = jwk_of_private(&private, alg)?;
                let kid = thumbprint(&jwk).unwrap_or_default();
                SigningKeyRecord {
                    sealed_private_key: self.root.seal(&seal_context(alg, &kid), &der)?,
                    kid,
                    purpose: purpose.as_str().into(),
                    scope: scope.into(),
                    alg: alg.as_str().into(),
                    token_label: None,
                    public_jwk: Some(jwk.to_string()),
                    created_at: now_ms(),
                }
            }
        };
        let kid = record.kid.clone();
        tracing::info!(
            kid,
            purpose = purpose.as_str(),
            scope,
            alg = alg.as_str(),
            in_token = record.token_label.is_some(),
            "created a signing key"
        );
        self.backend
            .insert(record)
            .await
            .map_err(SigningError::Storage)?;
        self.reload().await?;
        Ok(kid)
    }

    /// The key named `kid`, reloading once if this node has not seen it (another node
    /// made it) and has not reloaded within [`RELOAD_INTERVAL`].
    pub async fn verifier(&self, kid: &str) -> Result<Option<Arc<LoadedKey>>, SigningError> {
        if let Some(key) = self.current().by_kid.get(kid) {
            return Ok(Some(key.clone()));
        }
        let may_reload = match self.last_miss_reload.lock() {
            Ok(mut last) if last.is_none_or(|t| t.elapsed() >= RELOAD_INTERVAL) => {
                *last = Some(Instant::now());
                true
            }
            _ => false,
        };
        if may_reload || self.stale() {
            self.reload().await?;
        }
        Ok(self.current().by_kid.get(kid).cloned())
    }

    /// Every key, newest first.
    pub fn all(&self) -> Vec<Arc<LoadedKey>> {
        let mut keys: Vec<_> = self.current().by_kid.values().cloned().collect();
        keys.sort_by(|a, b| (b.created_at, &b.kid).cmp(&(a.created_at, &a.kid)));
        keys
    }

    /// `{"keys":[...]}` of the published keys for `purpose`, newest first. For audit
    /// checkpoints that is every key ever used, since old checkpoints must verify.
    pub fn jwks(&self, purpose: Purpose) -> serde_json::Value {
        let keys: Vec<_> = self
            .all()
            .into_iter()
            .filter(|k| k.serves(purpose) && (purpose == Purpose::AuditCheckpoint || k.published))
            .map(|k| k.jwk.clone())
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An ES256 signature (`r || s`) with `s` in the lower half of the group order.
fn low_s(signature: Vec<u8>) -> Vec<u8> {
    match p256::ecdsa::Signature::from_slice(&signature) {
        Ok(sig) => sig
            .normalize_s()
            .map_or(signature, |low| low.to_bytes().to_vec()),
        Err(_) => signature,
    }
}

/// The associated data a software private key is sealed with; unchanged for ES256 since
/// before the keyring, so those keys still open.
fn seal_context(alg: Algorithm, kid: &str) -> Vec<u8> {
    format!("rampart/signing-key/{}/{kid}", alg.as_str()).into_bytes()
}

/// A new software key: `(the bytes that get sealed, the key)`.
fn generate_software(alg: Algorithm) -> Result<(Vec<u8>, PrivateKey), SigningError> {
    let generate = |e: String| SigningError::Generate(e);
    match alg {
        Algorithm::Es256 => {
            let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
            let der = secret.to_pkcs8_der().map_err(|e| generate(e.to_string()))?;
            Ok((
                der.as_bytes().to_vec(),
                PrivateKey::P256(p256::ecdsa::SigningKey::from(&secret)),
            ))
        }
        Algorithm::EdDsa => {
            let mut seed = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut seed);
            Ok((
                seed.to_vec(),
                PrivateKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed)),
            ))
        }
        Algorithm::Ps256 => {
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                .map_err(|e| generate(e.to_string()))?;
            let der = key.to_pkcs8_der().map_err(|e| generate(e.to_string()))?;
            Ok((
                der.as_bytes().to_vec(),
                PrivateKey::Rsa(Box::new(rsa::pss::BlindedSigningKey::new(key))),
            ))
        }
    }
}

fn private_from_bytes(alg: Algorithm, bytes: &[u8]) -> Result<PrivateKey, String> {
    match alg {
        Algorithm::Es256 => p256::SecretKey::from_pkcs8_der(bytes)
            .map(|s| PrivateKey::P256(p256::ecdsa::SigningKey::from(&s)))
            .map_err(|e| e.to_string()),
        Algorithm::EdDsa => <[u8; 32]>::try_from(bytes)
            .map(|seed| PrivateKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed)))
            .map_err(|_| "Ed25519 seed is not 32 bytes".to_string()),
        Algorithm::Ps256 => rsa::RsaPrivateKey::from_pkcs8_der(bytes)
            .map(|k| PrivateKey::Rsa(Box::new(rsa::pss::BlindedSigningKey::new(k))))
            .map_err(|e| e.to_string()),
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn ec_jwk(point: &[u8]) -> Result<serde_json::Value, SigningError> {
    if point.len() != 65 || point[0] != 4 {
        return Err(SigningError::Generate(
            "not an uncompressed P-256 point".into(),
        ));
    }
    Ok(serde_json::json!({
        "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]),
    }))
}

fn ed_jwk(public: &[u8]) -> serde_json::Value {
    serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(public) })
}

fn rsa_jwk(modulus: &[u8], exponent: &[u8]) -> serde_json::Value {
    // JWK integers are unsigned big-endian without leading zeros.
    let trim = |b: &[u8]| {
        let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
        b64(&b[start..])
    };
    serde_json::json!({ "kty": "RSA", "n": trim(modulus), "e": trim(exponent) })
}

fn jwk_of_private(private: &PrivateKey, alg: Algorithm) -> Result<serde_json::Value, SigningError> {
    match private {
        PrivateKey::P256(key) => ec_jwk(
            key.verifying_key()
                .as_affine()
                .to_encoded_point(false)
                .as_bytes(),
        ),
        PrivateKey::Ed25519(key) => Ok(ed_jwk(key.verifying_key().as_bytes())),
        PrivateKey::Rsa(key) => {
            let public = key.as_ref().as_ref().to_public_key();
            Ok(rsa_jwk(
                &public.n().to_bytes_be(),
                &public.e().to_bytes_be(),
            ))
        }
        PrivateKey::Token(_, key) if key.alg == alg => jwk_of_token_key(&key.public_key),
        PrivateKey::Token(..) => Err(SigningError::Generate("algorithm mismatch".into())),
    }
}

fn jwk_of_token_key(public: &PublicKeyBytes) -> Result<serde_json::Value, SigningError> {
    match public {
        PublicKeyBytes::EcPoint(point) => ec_jwk(point),
        PublicKeyBytes::Ed25519(key) => Ok(ed_jwk(key)),
        PublicKeyBytes::Rsa { modulus, exponent } => Ok(rsa_jwk(modulus, exponent)),
    }
}

fn with_metadata(mut jwk: serde_json::Value, kid: &str, alg: Algorithm) -> serde_json::Value {
    if let Some(map) = jwk.as_object_mut() {
        map.insert("kid".into(), kid.into());
        map.insert("alg".into(), alg.as_str().into());
        map.insert("use".into(), "sig".into());
    }
    jwk
}

fn member<'a>(jwk: &'a serde_json::Value, name: &str) -> Result<&'a str, String> {
    jwk.get(name)
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("JWK has no {name:?}"))
}

fn member_bytes(jwk: &serde_json::Value, name: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(member(jwk, name)?)
        .map_err(|e| format!("JWK {name:?}: {e}"))
}

/// An EC JWK's public key as an uncompressed SEC1 point (`04 || x || y`).
fn ec_point(jwk: &serde_json::Value) -> Result<Vec<u8>, String> {
    let mut point = vec![4u8];
    point.extend(member_bytes(jwk, "x")?);
    point.extend(member_bytes(jwk, "y")?);
    Ok(point)
}

fn public_from_jwk(jwk: &serde_json::Value) -> Result<PublicKey, String> {
    let decode = |name: &str| member_bytes(jwk, name);
    match member(jwk, "kty")? {
        "EC" => {
            let point = ec_point(jwk)?;
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map(PublicKey::P256)
                .map_err(|e| e.to_string())
        }
        "OKP" => {
            let bytes: [u8; 32] = decode("x")?
                .try_into()
                .map_err(|_| "Ed25519 key is not 32 bytes".to_string())?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map(PublicKey::Ed25519)
                .map_err(|e| e.to_string())
        }
        "RSA" => {
            let n = rsa::BigUint::from_bytes_be(&decode("n")?);
            let e = rsa::BigUint::from_bytes_be(&decode("e")?);
            rsa::RsaPublicKey::new(n, e)
                .map(|k| PublicKey::Rsa(Box::new(rsa::pss::VerifyingKey::new(k))))
                .map_err(|e| e.to_string())
        }
        other => Err(format!("unsupported key type {other:?}")),
    }
}

fn token_verifier(jwk: &serde_json::Value, alg: Algorithm) -> Result<TokenVerifier, String> {
    use jsonwebtoken::DecodingKey;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
    let text = |e: jsonwebtoken::errors::Error| e.to_string();
    match alg {
        // ring parses the point at each verification and refuses one off the curve.
        Algorithm::Es256 => Ok(TokenVerifier::Es256(UnparsedPublicKey::new(
            &ECDSA_P256_SHA256_FIXED,
            ec_point(jwk)?,
        ))),
        Algorithm::EdDsa => DecodingKey::from_ed_components(member(jwk, "x")?)
            .map(TokenVerifier::Jwt)
            .map_err(text),
        Algorithm::Ps256 => DecodingKey::from_rsa_components(member(jwk, "n")?, member(jwk, "e")?)
            .map(TokenVerifier::Jwt)
            .map_err(text),
    }
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, no white space.
pub fn thumbprint(jwk: &serde_json::Value) -> Option<String> {
    let m = |name| member(jwk, name).ok();
    let canonical = match m("kty")? {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            m("crv")?,
            m("x")?,
            m("y")?
        ),
        "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, m("crv")?, m("x")?),
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, m("e")?, m("n")?),
        _ => return None,
    };
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Keys kept in memory, as the store keeps them.
    #[derive(Default)]
    pub(crate) struct MemoryBackend(pub Mutex<Vec<SigningKeyRecord>>);

    impl SigningKeyBackend for MemoryBackend {
        fn list(&self) -> BoxFuture<'_, Result<Vec<SigningKeyRecord>, String>> {
            let records = self.0.lock().unwrap().clone();
            Box::pin(async move { Ok(records) })
        }
        fn insert(&self, record: SigningKeyRecord) -> BoxFuture<'_, Result<(), String>> {
            self.0.lock().unwrap().push(record);
            Box::pin(async { Ok(()) })
        }
    }

    pub(crate) fn policy(alg: Algorithm) -> Policy {
        Policy {
            access_token_alg: alg,
            audit_checkpoint_alg: alg,
            rotate_after: Duration::from_secs(90 * 24 * 3600),
            per_tenant: false,
        }
    }

    async fn keys(alg: Algorithm) -> (SigningKeys, Arc<MemoryBackend>) {
        let backend = Arc::new(MemoryBackend::default());
        let keys = SigningKeys::load(
            RootKey::from_bytes([5; 32]),
            None,
            backend.clone(),
            policy(alg),
        )
        .await
        .unwrap();
        (keys, backend)
    }

    #[tokio::test]
    async fn every_algorithm_signs_and_verifies_and_binds_its_kid() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Ps256] {
            let (keys, backend) = keys(alg).await;
            let signer = keys
                .signer(Purpose::AuditCheckpoint, "kind:merchant")
                .await
                .unwrap();
            assert_eq!(signer.alg, alg);
            let signature = signer.sign(b"message").unwrap();
            assert!(signer.verify(b"message", &signature), "{alg}");
            assert!(!signer.verify(b"messagE", &signature), "{alg}");
            // The same key comes back, and the stored record reloads to the same key.
            let again = keys
                .signer(Purpose::AuditCheckpoint, "kind:merchant")
                .await
                .unwrap();
            assert_eq!(again.kid, signer.kid);
            assert_eq!(backend.0.lock().unwrap().len(), 1);
            let other_node = SigningKeys::load(
                RootKey::from_bytes([5; 32]),
                None,
                backend.clone(),
                policy(alg),
            )
            .await
            .unwrap();
            let loaded = other_node.verifier(&signer.kid).await.unwrap().unwrap();
            assert!(loaded.verify(b"message", &signature));
            assert_eq!(thumbprint(loaded.jwk()).unwrap(), signer.kid);
            assert_eq!(loaded.jwk()["alg"], alg.as_str());
            // Another scope and another purpose get keys of their own.
            let other = keys
                .signer(Purpose::AccessToken, "kind:merchant")
                .await
                .unwrap();
            assert_ne!(other.kid, signer.kid);
            // A different root key cannot open the private key.
            let wrong_root = SigningKeys::load(
                RootKey::from_bytes([6; 32]),
                None,
                backend.clone(),
                policy(alg),
            )
            .await;
            assert!(matches!(wrong_root, Err(SigningError::Unusable { .. })));
        }
    }

    #[tokio::test]
    async fn rotation_keeps_the_old_key_verifying_for_a_grace_period() {
        let (keys, backend) = keys(Algorithm::EdDsa).await;
        let first = keys.signer(Purpose::AccessToken, "kind:lpk").await.unwrap();
        let signature = first.sign(b"x").unwrap();
        // Age the key past the rotation period: the next use makes a new one.
        backend.0.lock().unwrap()[0].created_at -= 91 * 24 * 3600 * 1000;
        keys.reload().await.unwrap();
        let second = keys.signer(Purpose::AccessToken, "kind:lpk").await.unwrap();
        assert_ne!(second.kid, first.kid);
        let old = keys.verifier(&first.kid).await.unwrap().unwrap();
        assert!(old.verify(b"x", &signature));
        assert!(old.published(), "still published within the grace period");
        let jwks = keys.jwks(Purpose::AccessToken);
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert_eq!(jwks["keys"][0]["kid"], second.kid.as_str());
        // After the grace period the old key is neither published nor accepted.
        backend.0.lock().unwrap()[1].created_at -= SUPERSEDED_GRACE_MS + 1;
        keys.reload().await.unwrap();
        assert!(!keys
            .verifier(&first.kid)
            .await
            .unwrap()
            .unwrap()
            .published());
        assert_eq!(
            keys.jwks(Purpose::AccessToken)["keys"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        // Manual rotation adds a key at once.
        let third = keys.rotate(Purpose::AccessToken, "kind:lpk").await.unwrap();
        assert_eq!(
            keys.signer(Purpose::AccessToken, "kind:lpk")
                .await
                .unwrap()
                .kid,
            third
        );
    }

    #[test]
    fn thumbprints_follow_rfc_7638() {
        // RFC 7638 section 3.1's example key and thumbprint.
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
