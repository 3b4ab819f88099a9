//! The identity service's state, shared by its handlers and the `Principal` extractor.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use rampart_config::AuthConfig;
use rampart_crypto::{AccessClaims, JwtError, RootKey, TokenKeys};
use rampart_store::Store;

use crate::metrics::IdentityMetrics;
use crate::{keys, password, IdentityError, LoginThrottle};

/// A token signed by a key this node has not loaded makes it reload, at most this often.
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Identity {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) config: AuthConfig,
    pub(crate) throttle: LoginThrottle,
    pub(crate) metrics: IdentityMetrics,
    root: RootKey,
    keys: RwLock<Arc<TokenKeys>>,
    last_reload: Mutex<Instant>,
    /// Verified against when the e-mail is unknown, so that case costs one Argon2
    /// verification like a real account and the timing does not tell them apart.
    pub(crate) dummy_hash: String,
}

impl Identity {
    pub async fn new(
        store: Store,
        root: RootKey,
        config: AuthConfig,
        throttle: LoginThrottle,
        registry: &mut Registry,
    ) -> Result<Identity, IdentityError> {
        let keys = keys::load(&store, &root, &config.issuer, &config.audience).await?;
        let dummy_hash =
            tokio::task::spawn_blocking(|| password::hash(&rampart_crypto::random_secret("", 24)))
                .await
                .map_err(|e| IdentityError::Task(e.to_string()))?
                .map_err(IdentityError::Keys)?;
        Ok(Identity {
            inner: Arc::new(Inner {
                store,
                config,
                throttle,
                metrics: IdentityMetrics::register(registry),
                root,
                keys: RwLock::new(Arc::new(keys)),
                // Allow a reload at once: a token from a key another node made just now.
                last_reload: Mutex::new(
                    Instant::now()
                        .checked_sub(KEY_RELOAD_INTERVAL)
                        .unwrap_or_else(Instant::now),
                ),
                dummy_hash,
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    /// The platform's signing keys (access tokens, audit checkpoints).
    pub fn token_keys(&self) -> Arc<TokenKeys> {
        self.keys()
    }

    pub(crate) fn keys(&self) -> Arc<TokenKeys> {
        match self.inner.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn sign(&self, claims: &AccessClaims) -> Result<String, IdentityError> {
        self.keys()
            .sign(claims)
            .map_err(|e| IdentityError::Keys(e.to_string()))
    }

    /// Verifies an access token; an unknown `kid` triggers one reload (another node may
    /// have added a key) before the token is refused.
    pub(crate) async fn verify(&self, token: &str) -> Result<AccessClaims, IdentityError> {
        match self.keys().verify(token) {
            Ok(claims) => Ok(claims),
            Err(JwtError::UnknownKey { .. }) if self.may_reload() => {
                let keys = keys::load(
                    &self.inner.store,
                    &self.inner.root,
                    &self.inner.config.issuer,
                    &self.inner.config.audience,
                )
                .await?;
                let keys = Arc::new(keys);
                if let Ok(mut slot) = self.inner.keys.write() {
                    *slot = keys.clone();
                }
                keys.verify(token)
                    .map_err(|e| IdentityError::BadToken(e.to_string()))
            }
            Err(e) => Err(IdentityError::BadToken(e.to_string())),
        }
    }

    fn may_reload(&self) -> bool {
        let Ok(mut last) = self.inner.last_reload.lock() else {
            return false;
        };
        if last.elapsed() < KEY_RELOAD_INTERVAL {
            return false;
        }
        *last = Instant::now();
        true
    }

    /// `{"keys":[...]}` for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        self.keys().jwks().clone()
    }
}
