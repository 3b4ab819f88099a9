//! The identity service's state, shared by its handlers and the `Principal` extractor.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use rampart_config::AuthConfig;
use rampart_crypto::signing::{Purpose, SigningKeys};
use rampart_crypto::{AccessClaims, AccessTokens, RootKey};
use rampart_store::Store;

use rampart_audit::security_log::{SecurityEvent, SecurityLog};
use rampart_edge::rate_limit::Quota;
use rampart_edge::RequestInfo;
use rampart_store::api_keys::ApiKey;

use crate::metrics::IdentityMetrics;
use crate::rbac::Rbac;
use crate::{password, IdentityError, LoginThrottle, Principal};

/// An API key's use is a security event at most this often per key, so a busy
/// integration does not flood the log.
const API_KEY_USE_EVENT_INTERVAL: Duration = Duration::from_secs(300);

/// The keyring key TOTP secrets are sealed under.
const MFA_KEY: &str = "mfa";

/// The keyring key personal data (phone numbers) is sealed under.
const PII_KEY: &str = "pii";

fn phone_context(user: &rampart_store::User) -> rampart_crypto::envelope::Context {
    rampart_crypto::envelope::Context::new(&user.tenant_id, "users", "sealed_phone", &user.id)
}

fn mfa_context(user: &rampart_store::User) -> rampart_crypto::envelope::Context {
    rampart_crypto::envelope::Context::new(
        &user.tenant_id,
        "mfa_factors",
        "sealed_secret",
        &user.id,
    )
}

/// Per-API-key and per-tenant rate limits (the per-IP limit is the edge's).
#[derive(Debug, Clone)]
pub struct CallerLimits {
    pub limiter: rampart_edge::rate_limit::RateLimiter,
    pub api_key: Quota,
    /// Requests per minute by tenant kind (`government`, `lpk`, ...).
    pub tenant_per_minute: std::collections::HashMap<String, u32>,
    pub tenant_default_per_minute: u32,
    pub tenant_burst: u32,
}

#[derive(Clone)]
pub struct Identity {
    pub(crate) inner: Arc<Inner>,
}

/// Verified access tokens kept per node: at about 300 bytes each, 3 MB at most.
const VERIFIED_TOKENS: usize = 10_000;

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
    signing: Arc<SigningKeys>,
    limits: Option<CallerLimits>,
    tokens: AccessTokens,
    /// Tenant id → kind, for choosing and checking a tenant's signing keys. A tenant's
    /// kind never changes, so entries never go stale.
    tenant_kinds: RwLock<std::collections::HashMap<String, String>>,
    /// Access tokens verified on this node, by SHA-256 of the token, with the key id that
    /// signed them (see [`Identity::verify`]).
    verified: Mutex<hashlink::LruCache<String, Arc<(AccessClaims, String)>>>,
    /// Verified against when the e-mail is unknown, so that case costs one Argon2
    /// verification like a real account and the timing does not tell them apart.
    pub(crate) dummy_hash: String,
    /// Every password hash and verification of this process's logins (see `hash_gate`).
    pub(crate) hashes: crate::hash_gate::HashGate,
    /// The outbox: account mail and security notices.
    notify: rampart_notify::Notify,
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
        notify: rampart_notify::Notify,
        root: RootKey,
        keyring: Arc<rampart_crypto::keyring::Keyring>,
        signing: Arc<SigningKeys>,
        limits: Option<CallerLimits>,
        config: AuthConfig,
        throttle: LoginThrottle,
        rbac: Rbac,
        security_log: SecurityLog,
        registry: &mut Registry,
    ) -> Result<Identity, IdentityError> {
        let dummy_hash =
            tokio::task::spawn_blocking(|| password::hash(&rampart_crypto::random_secret("", 24)))
                .await
                .map_err(|e| IdentityError::Task(e.to_string()))?
                .map_err(IdentityError::Keys)?;
        let tokens = AccessTokens::new(&config.issuer, &config.audience);
        let hashes = crate::hash_gate::HashGate::new(
            config.max_concurrent_hashes as usize,
            Duration::from_millis(config.hash_queue_ms),
        );
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
                tokens,
                signing,
                limits,
                tenant_kinds: RwLock::new(Default::default()),
                verified: Mutex::new(hashlink::LruCache::new(VERIFIED_TOKENS)),
                dummy_hash,
                hashes,
                notify,
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// A new password: checked against the policy (the user's e-mail, its local part and
    /// the name count as guessable) and hashed through the hash gate, for the paths that
    /// need no account (sign-up, reset by link).
    pub(crate) async fn hash_new_password(
        &self,
        email: &str,
        name: &str,
        password: String,
    ) -> Result<String, IdentityError> {
        let config = self.config();
        let (min_chars, min_score) = (config.password_min_length, config.password_min_score);
        let (email, name) = (email.to_string(), name.to_string());
        self.inner
            .hashes
            .run(move |memory| {
                let local = email.split('@').next().unwrap_or("").to_string();
                password::check_policy(&password, min_chars, min_score, &[&email, &local, &name])?;
                password::hash_in(memory, &password)
            })
            .await?
            .map_err(|reason| IdentityError::Invalid {
                field: "password",
                reason,
            })
    }

    pub fn notify(&self) -> &rampart_notify::Notify {
        &self.inner.notify
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
        event: SecurityEvent,
        info: &RequestInfo,
        principal: Option<&Principal>,
    ) {
        self.security_event_from(event, info, principal, None)
    }

    /// [`Identity::security_event`] with the address the event is about when it is not
    /// the caller's (a shopper's, which a merchant's server passes on).
    pub fn security_event_from(
        &self,
        mut event: SecurityEvent,
        info: &RequestInfo,
        principal: Option<&Principal>,
        source_ip: Option<String>,
    ) {
        event.request_id = Some(info.request_id.clone());
        event.source_ip = source_ip.or_else(|| info.client_ip.map(|ip| ip.to_string()));
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

    /// A phone number sealed under the keyring's `pii` key, bound to its user's row.
    pub(crate) async fn seal_phone(
        &self,
        user: &rampart_store::User,
        phone: &str,
    ) -> Result<Vec<u8>, IdentityError> {
        self.inner
            .keyring
            .seal(PII_KEY, &phone_context(user), phone.as_bytes())
            .await
            .map_err(|e| IdentityError::Keys(format!("sealing the phone of {}: {e}", user.id)))
    }

    pub(crate) async fn open_phone(
        &self,
        user: &rampart_store::User,
        sealed: &[u8],
    ) -> Result<String, IdentityError> {
        let bytes = self
            .inner
            .keyring
            .open(&phone_context(user), sealed)
            .await
            .map_err(|e| IdentityError::Keys(format!("phone of {}: {e}", user.id)))?;
        String::from_utf8(bytes)
            .map_err(|_| IdentityError::Keys(format!("phone of {} is not text", user.id)))
    }

    /// Counts a request against its API key's quota (if it came with one) and its
    /// tenant's quota (by tenant kind); 429 when either is spent.
    pub(crate) async fn check_rate_limits(
        &self,
        tenant_id: &str,
        api_key_id: Option<&str>,
    ) -> Result<(), rampart_edge::ApiError> {
        let Some(limits) = &self.inner.limits else {
            return Ok(());
        };
        if let Some(key) = api_key_id {
            let decision = limits.limiter.check("api_key", key, limits.api_key).await;
            if !decision.allowed {
                return Err(rampart_edge::guard::rate_limited(&decision));
            }
        }
        let kind = self
            .tenant_kind(tenant_id)
            .await
            .map_err(rampart_edge::ApiError::from)?;
        let quota = Quota {
            per_minute: limits
                .tenant_per_minute
                .get(&kind)
                .copied()
                .unwrap_or(limits.tenant_default_per_minute),
            burst: limits.tenant_burst,
        };
        let decision = limits.limiter.check("tenant", tenant_id, quota).await;
        if !decision.allowed {
            return Err(rampart_edge::guard::rate_limited(&decision));
        }
        Ok(())
    }

    /// The signing keys (access tokens, audit checkpoints).
    pub fn signing_keys(&self) -> &SigningKeys {
        &self.inner.signing
    }

    /// The kind of a tenant, cached (kinds never change).
    async fn tenant_kind(&self, tenant_id: &str) -> Result<String, IdentityError> {
        if let Ok(kinds) = self.inner.tenant_kinds.read() {
            if let Some(kind) = kinds.get(tenant_id) {
                return Ok(kind.clone());
            }
        }
        let kind = self
            .inner
            .store
            .get_tenant(tenant_id)
            .await?
            .kind
            .as_str()
            .to_string();
        if let Ok(mut kinds) = self.inner.tenant_kinds.write() {
            kinds.insert(tenant_id.to_string(), kind.clone());
        }
        Ok(kind)
    }

    /// The signing-key scope of a tenant (`kind:<kind>` or `tenant:<id>`, by config).
    async fn key_scope(&self, tenant_id: &str) -> Result<String, IdentityError> {
        let kind = self.tenant_kind(tenant_id).await?;
        Ok(self.inner.signing.policy().scope_for(tenant_id, &kind))
    }

    /// Signs an access token with the newest key of the user's tenant's key set.
    pub(crate) async fn sign(&self, claims: &AccessClaims) -> Result<String, IdentityError> {
        let scope = self.key_scope(&claims.tenant).await?;
        let key = self
            .inner
            .signing
            .signer(Purpose::AccessToken, &scope)
            .await
            .map_err(|e| IdentityError::Keys(e.to_string()))?;
        self.inner
            .tokens
            .sign(&key, claims)
            .map_err(|e| IdentityError::Keys(e.to_string()))
    }

    /// Verifies an access token: a known, published access-token key (an unknown `kid`
    /// makes this node reload once: another node may have made it), the signature and
    /// claims, and that the key belongs to the token's tenant: a key of one tenant kind
    /// (or tenant) cannot vouch for users of another.
    /// The session an access token names, once its signature and claims check out. The
    /// console turns a login's answer into a browser session bound to it this way.
    pub async fn token_session(&self, token: &str) -> Result<crate::ConsoleCaller, IdentityError> {
        let claims = self.verify(token).await?;
        Ok(crate::ConsoleCaller {
            tenant_id: claims.tenant,
            session_id: claims.sid,
            user_id: claims.sub,
        })
    }

    /// The tenant a bearer credential (an access token or an API key) belongs to, if it
    /// is valid now: for events about requests refused before any handler ran (the WAF's),
    /// so per-tenant rules see them. An invalid credential names no tenant, so a client
    /// cannot pin its noise on a tenant it does not hold a credential of.
    pub async fn tenant_of_credential(&self, credential: &str) -> Option<String> {
        if credential.starts_with(crate::principal::API_KEY_PREFIX) {
            let digest = rampart_crypto::secret_digest(credential);
            return match self.store().authenticate_api_key(&digest).await {
                Ok(Some((scope, _))) => Some(scope.tenant_id().to_string()),
                _ => None,
            };
        }
        self.verify(credential).await.ok().map(|c| c.tenant)
    }

    pub(crate) async fn verify(&self, token: &str) -> Result<AccessClaims, IdentityError> {
        // A token this node verified before skips the signature check while it has not
        // expired and its key is still published on this node (a key superseded past its
        // grace takes its tokens with it, as `AccessTokens::verify` would refuse them). Only the token's own checks are cached: whether
        // its session is live is asked on every request.
        let digest = rampart_crypto::secret_digest(token);
        let hit = self
            .inner
            .verified
            .lock()
            .ok()
            .and_then(|mut c| c.get(&digest).cloned());
        if let Some(hit) = hit {
            let (claims, kid) = &*hit;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(u64::MAX);
            let key_kept = matches!(self.inner.signing.verifier(kid).await,
                Ok(Some(key)) if key.published());
            if now < claims.exp && key_kept {
                return Ok(claims.clone());
            }
            if let Ok(mut c) = self.inner.verified.lock() {
                c.remove(&digest);
            }
        }
        let claims = self.verify_uncached(token).await?;
        if let (Ok(kid), Ok(mut c)) = (AccessTokens::kid_of(token), self.inner.verified.lock()) {
            c.insert(digest, Arc::new((claims.clone(), kid)));
        }
        Ok(claims)
    }

    async fn verify_uncached(&self, token: &str) -> Result<AccessClaims, IdentityError> {
        let bad = |e: String| IdentityError::BadToken(e);
        let kid = AccessTokens::kid_of(token).map_err(|e| bad(e.to_string()))?;
        let key = self
            .inner
            .signing
            .verifier(&kid)
            .await
            .map_err(|e| IdentityError::Keys(e.to_string()))?
            .ok_or_else(|| bad("token is signed by an unknown key".into()))?;
        let claims = self
            .inner
            .tokens
            .verify(token, &key)
            .map_err(|e| bad(e.to_string()))?;
        if key.purpose != Purpose::Legacy {
            let scope = match self.key_scope(&claims.tenant).await {
                Ok(scope) => scope,
                Err(IdentityError::NotFound)
                | Err(IdentityError::Store(rampart_store::StoreError::NotFound)) => {
                    return Err(bad("unknown tenant".into()))
                }
                Err(e) => return Err(e),
            };
            if key.scope != scope {
                return Err(bad("token is signed by another tenant's key".into()));
            }
        }
        Ok(claims)
    }

    /// `{"keys":[...]}` for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        self.inner.signing.jwks(Purpose::AccessToken)
    }
}
