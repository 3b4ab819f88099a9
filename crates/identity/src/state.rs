//! The identity service's state, shared by its handlers and the `Principal` extractor.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use rampart_config::AuthConfig;
use rampart_crypto::{AccessClaims, JwtError, RootKey, TokenKeys};
use rampart_store::Store;

use rampart_audit::security_log::{SecurityEvent, SecurityLog};
use rampart_edge::RequestInfo;
use rampart_store::api_keys::ApiKey;

use crate::metrics::IdentityMetrics;
use crate::rbac::Rbac;
use crate::{keys, password, IdentityError, LoginThrottle, Principal};

/// An API key's use is a security event at most this often per key, so a busy
/// integration does not flood the log.
const API_KEY_USE_EVENT_INTERVAL: Duration = Duration::from_secs(300);

/// A token signed by a key this node has not loaded makes it reload, at most this often.
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// The keyring key TOTP secrets are sealed under.
const MFA_KEY: &str = "mfa";

fn mfa_context(user: &rampart_store::User) -> rampart_crypto::envelope::Context {
    rampart_crypto::envelope::Context::new(
        &user.tenant_id,
        "mfa_factors",
        "sealed_secret",
        &user.id,
    )
}

#[derive(Clone)]
pub struct Identity {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) config: AuthConfig,
    pub(crate) throttle: LoginThrottle,
    pub(crate) metrics: IdentityMetrics,
    rbac: Rbac,
    security_log: SecurityLog,
    api_key_use_noted: Mutex<std::collections::HashMap<String, Instant>>,
    root: RootKey,
    keyring: Arc<rampart_crypto::keyring::Keyring>,
    keys: RwLock<Arc<TokenKeys>>,
    last_reload: Mutex<Instant>,
    /// Verified against when the e-mail is unknown, so that case costs one Argon2
    /// verification like a real account and the timing does not tell them apart.
    pub(crate) dummy_hash: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

impl Identity {
    #[allow(clippy::too_many_arguments)]
    pub async fn new(
        store: Store,
        root: RootKey,
        keyring: Arc<rampart_crypto::keyring::Keyring>,
        config: AuthConfig,
        throttle: LoginThrottle,
        rbac: Rbac,
        security_log: SecurityLog,
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
                rbac,
                security_log,
                api_key_use_noted: Mutex::new(std::collections::HashMap::new()),
                root,
                keyring,
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

    pub fn rbac(&self) -> &Rbac {
        &self.inner.rbac
    }

    pub fn security_log(&self) -> &SecurityLog {
        &self.inner.security_log
    }

    /// Records a security event with the request's id and address, and the caller's
    /// tenant, user or key when known.
    pub fn throttle(&self) -> &LoginThrottle {
        &self.inner.throttle
    }

    pub fn security_event(
        &self,
        mut event: SecurityEvent,
        info: &RequestInfo,
        principal: Option<&Principal>,
    ) {
        event.request_id = Some(info.request_id.clone());
        event.source_ip = info.client_ip.map(|ip| ip.to_string());
        if let Some(p) = principal {
            event.tenant_id = Some(p.scope.tenant_id().to_string());
            match &p.caller {
                crate::principal::Caller::User { user, .. } => {
                    event.user_id = Some(user.id.clone())
                }
                crate::principal::Caller::ApiKey(key) => event.api_key_id = Some(key.id.clone()),
            }
        }
        self.inner.security_log.record(event);
    }

    pub(crate) fn note_api_key_use(&self, key: &ApiKey, info: &RequestInfo) {
        let due = match self.inner.api_key_use_noted.lock() {
            Ok(mut noted) => {
                let now = Instant::now();
                if noted.len() > 10_000 {
                    noted.retain(|_, t| now.duration_since(*t) < API_KEY_USE_EVENT_INTERVAL);
                }
                match noted.get(&key.id) {
                    Some(t) if now.duration_since(*t) < API_KEY_USE_EVENT_INTERVAL => false,
                    _ => {
                        noted.insert(key.id.clone(), now);
                        true
                    }
                }
            }
            Err(_) => false,
        };
        if due {
            let mut event = SecurityEvent::new("api_key_used", "info");
            event.tenant_id = Some(key.tenant_id.clone());
            event.api_key_id = Some(key.id.clone());
            event.request_id = Some(info.request_id.clone());
            event.source_ip = info.client_ip.map(|ip| ip.to_string());
            self.inner.security_log.record(event);
        }
    }

    /// A TOTP secret sealed under the keyring's `mfa` key, bound to its user's row.
    pub(crate) async fn seal_mfa_secret(
        &self,
        user: &rampart_store::User,
        secret: &[u8],
    ) -> Result<Vec<u8>, IdentityError> {
        self.inner
            .keyring
            .seal(MFA_KEY, &mfa_context(user), secret)
            .await
            .map_err(|e| IdentityError::Keys(format!("sealing the MFA secret of {}: {e}", user.id)))
    }

    /// Opens a TOTP secret. Secrets sealed before the keyring existed (directly under the
    /// root key) still open.
    pub(crate) async fn open_mfa_secret(
        &self,
        user: &rampart_store::User,
        sealed: &[u8],
    ) -> Result<Vec<u8>, IdentityError> {
        let opened = if sealed.starts_with(b"RSE1") {
            self.inner
                .keyring
                .open(&mfa_context(user), sealed)
                .await
                .map_err(|e| e.to_string())
        } else {
            self.inner
                .root
                .open(
                    format!("rampart/mfa-totp-secret/{}", user.id).as_bytes(),
                    sealed,
                )
                .map_err(|e| e.to_string())
        };
        opened.map_err(|e| IdentityError::Keys(format!("MFA secret of {}: {e}", user.id)))
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
