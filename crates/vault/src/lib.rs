//! The card token vault (PCI DSS): `POST /api/v1/tokens` turns a card number into a
//! random token, `POST /api/v1/tokens/{token}/detokenize` turns it back for a caller with
//! `tokens:detokenize`, audited and rate-limited.
//!
//! The number is sealed under the tenant's own vault key (`vault-<tenant id>`) with the
//! tenant, table, column and token as context, so a sealed number copied to another row
//! or tenant does not open. The fingerprint is an HMAC under the tenant's own
//! fingerprint key (`fp-<tenant id>`): the same card gives the same fingerprint within a
//! tenant (for fraud velocity), different ones across tenants, and cannot be reversed.
//! The token is random, not derived from the number, and looks nothing like one. The CVC
//! is never accepted here, so it is never stored.
//!
//! Invariant: a card number appears only in a request to tokenize and a response to
//! detokenize; never in a log, an audit event, an error message or the database in clear.
#![forbid(unsafe_code)]

pub mod pan;
pub mod transit;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use rampart_crypto::envelope::Context;
use rampart_crypto::keyring::Keyring;
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_identity::{Identity, IdentityError, Principal};
use rampart_store::vault::VaultToken;
use rampart_store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::pan::Pan;

pub const TOKENS_WRITE: &str = "tokens:write";
pub const TOKENS_DETOKENIZE: &str = "tokens:detokenize";
pub const TOKEN_PREFIX: &str = "tok_";

#[derive(Clone)]
pub struct Vault {
    identity: Identity,
    keyring: Arc<Keyring>,
    detokenize_per_minute: u32,
}

impl FromRef<Vault> for Identity {
    fn from_ref(vault: &Vault) -> Identity {
        vault.identity.clone()
    }
}

impl Vault {
    pub fn new(
        identity: Identity,
        keyring: Arc<Keyring>,
        config: &rampart_config::VaultConfig,
    ) -> Vault {
        Vault {
            identity,
            keyring,
            detokenize_per_minute: config.detokenize_per_minute,
        }
    }
}

impl Vault {
    /// Seals a card under the tenant's vault key and stores it as a new token, audited
    /// (`token.create`). Payments use it to tokenize the card of a payment.
    pub async fn store_card(
        &self,
        principal: &Principal,
        info: &RequestInfo,
        pan: &Pan,
        exp_month: i64,
        exp_year: i64,
    ) -> Result<VaultToken, IdentityError> {
        let tenant = principal.scope.tenant_id().to_string();
        let token = rampart_crypto::random_secret(TOKEN_PREFIX, 24);
        let fingerprint = self
            .keyring
            .mac(&fingerprint_key(&tenant), pan.expose().as_bytes())
            .await
            .map_err(keyring_error)?;
        let sealed_pan = self
            .keyring
            .seal(
                &vault_key(&tenant),
                &pan_context(&tenant, &token),
                pan.expose().as_bytes(),
            )
            .await
            .map_err(keyring_error)?;
        let brand = pan.brand().as_str();
        let audit = rampart_audit::event(
            principal.actor(),
            "token.create",
            "card_token",
            rampart_identity::request_meta(info),
        )
        .changes(serde_json::json!({ "last4": pan.last4(), "brand": brand }))
        .build();
        Ok(self
            .identity
            .store()
            .insert_vault_token(
                &principal.scope,
                VaultToken {
                    token,
                    tenant_id: tenant,
                    sealed_pan,
                    bin: pan.bin().to_string(),
                    last4: pan.last4().to_string(),
                    brand: brand.to_string(),
                    fingerprint: hex(&fingerprint),
                    exp_month,
                    exp_year,
                    created_at: 0,
                },
                audit,
            )
            .await?)
    }

    /// A stored token of the tenant and its card number, opened for one use inside
    /// Rampart (a payment's authorization); never returned to a client from here.
    pub async fn open_card(
        &self,
        scope: &rampart_store::TenantScope,
        token: &str,
    ) -> Result<(VaultToken, Pan), IdentityError> {
        let stored = self
            .identity
            .store()
            .vault_token(scope, token)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => IdentityError::NotFound,
                other => IdentityError::Store(other),
            })?;
        let number = self
            .keyring
            .open(
                &pan_context(scope.tenant_id(), &stored.token),
                &stored.sealed_pan,
            )
            .await
            .map_err(keyring_error)?;
        let number = String::from_utf8(number)
            .map_err(|_| IdentityError::Keys("sealed card number is not text".into()))?;
        let pan = Pan::parse(&number)
            .map_err(|_| IdentityError::Keys("sealed card number is not a card".into()))?;
        Ok((stored, pan))
    }

    /// A keyed hash under the tenant's fingerprint key, domain-separated by `purpose`
    /// (e.g. idempotency: a hash of a request that holds a card number must be keyed).
    pub async fn keyed_hash(
        &self,
        tenant: &str,
        purpose: &str,
        data: &[u8],
    ) -> Result<String, IdentityError> {
        let mut input = Vec::with_capacity(purpose.len() + 1 + data.len());
        input.extend_from_slice(purpose.as_bytes());
        input.push(0);
        input.extend_from_slice(data);
        let mac = self
            .keyring
            .mac(&fingerprint_key(tenant), &input)
            .await
            .map_err(keyring_error)?;
        Ok(hex(&mac))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Grants the vault's permissions: tenant and platform admins hold both, so they can
/// give them to API keys.
pub fn register_permissions(rbac: &mut rampart_identity::rbac::RbacBuilder) {
    use rampart_store::Role;
    use transit::{TRANSIT_DATAKEY, TRANSIT_DECRYPT, TRANSIT_ENCRYPT, TRANSIT_REWRAP};
    let all = [
        TOKENS_WRITE,
        TOKENS_DETOKENIZE,
        TRANSIT_ENCRYPT,
        TRANSIT_DECRYPT,
        TRANSIT_REWRAP,
        TRANSIT_DATAKEY,
    ];
    rbac.grant(Role::TenantAdmin, &all);
    rbac.grant(Role::PlatformAdmin, &all);
}

pub fn router() -> OpenApiRouter<Vault> {
    OpenApiRouter::new()
        .routes(routes!(tokenize))
        .routes(routes!(detokenize))
        .merge(transit::router())
}

fn vault_key(tenant: &str) -> String {
    format!("vault-{tenant}")
}

fn fingerprint_key(tenant: &str) -> String {
    format!("fp-{tenant}")
}

fn pan_context(tenant: &str, token: &str) -> Context {
    Context::new(tenant, "vault_tokens", "sealed_pan", token)
}

fn invalid(field: &'static str, reason: impl Into<String>) -> IdentityError {
    IdentityError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn keyring_error(e: rampart_crypto::keyring::KeyringError) -> IdentityError {
    IdentityError::Keys(e.to_string())
}

/// A card to tokenize. Fields are read as raw JSON and parsed here, so a malformed value
/// is refused with a message that never repeats it.
#[derive(Deserialize, ToSchema)]
pub struct TokenizeRequest {
    /// The card number, 12 to 19 digits (spaces and dashes allowed) that pass the Luhn
    /// check and belong to a known brand.
    #[schema(value_type = String, pattern = r"^\s*[ -]*([0-9][ -]*){12,19}\s*$")]
    pub number: Value,
    #[schema(value_type = i64, minimum = 1, maximum = 12)]
    pub exp_month: Value,
    /// Not in the past, at most 20 years ahead.
    #[schema(value_type = i64, minimum = 2000, maximum = 2100)]
    pub exp_year: Value,
    /// Never accepted here: present only to be refused with a clear error (a token is
    /// stored; a card verification code must never be, PCI DSS 3.3.1).
    #[serde(default)]
    #[schema(ignore)]
    pub cvc: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenView {
    /// `tok_…`: random, meaningless outside this tenant.
    pub token: String,
    pub last4: String,
    pub brand: String,
    /// The first six digits (issuer identification).
    pub bin: String,
    /// Keyed hash: the same card gives the same value within this tenant.
    pub fingerprint: String,
    pub exp_month: i64,
    pub exp_year: i64,
}

impl From<&VaultToken> for TokenView {
    fn from(t: &VaultToken) -> TokenView {
        TokenView {
            token: t.token.clone(),
            last4: t.last4.clone(),
            brand: t.brand.clone(),
            bin: t.bin.clone(),
            fingerprint: t.fingerprint.clone(),
            exp_month: t.exp_month,
            exp_year: t.exp_year,
        }
    }
}

fn whole_number(field: &'static str, value: &Value) -> Result<i64, IdentityError> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
        .ok_or_else(|| invalid(field, "must be a whole number"))
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "vault",
    security(("bearer" = [])),
    request_body = TokenizeRequest,
    responses(
        (status = 201, description = "Tokenized", body = TokenView),
        (status = 403, description = "Missing tokens:write", body = ErrorBody),
        (status = 422, description = "Invalid number or expiry (never echoed)", body = ErrorBody),
    )
)]
pub async fn tokenize(
    State(vault): State<Vault>,
    principal: Principal,
    info: RequestInfo,
    Json(body): Json<TokenizeRequest>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    principal.require(TOKENS_WRITE)?;
    if body.cvc.is_some() {
        return Err(invalid(
            "cvc",
            "a card verification code is never stored; send it only with a payment",
        )
        .into());
    }
    let pan = match &body.number {
        Value::String(s) => Pan::parse(s).map_err(|e| invalid("number", e.to_string()))?,
        _ => return Err(invalid("number", "must be a string of digits").into()),
    };
    let exp_month = whole_number("exp_month", &body.exp_month)?;
    let exp_year = whole_number("exp_year", &body.exp_year)?;
    pan::check_expiry(exp_month, exp_year, time::OffsetDateTime::now_utc())
        .map_err(|reason| invalid("exp_month", reason))?;

    let stored = vault
        .store_card(&principal, &info, &pan, exp_month, exp_year)
        .await?;
    Ok((StatusCode::CREATED, Json(TokenView::from(&stored))))
}

#[derive(Serialize, ToSchema)]
pub struct Detokenized {
    #[serde(flatten)]
    pub token: TokenView,
    /// The card number, digits only.
    pub number: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens/{token}/detokenize",
    tag = "vault",
    security(("bearer" = [])),
    params(("token" = String, Path, description = "A token of the caller's tenant")),
    responses(
        (status = 200, description = "The card number; audited", body = Detokenized),
        (status = 403, description = "Missing tokens:detokenize", body = ErrorBody),
        (status = 404, description = "No such token in the caller's tenant", body = ErrorBody),
        (status = 429, description = "Detokenization rate limit", body = ErrorBody),
    )
)]
pub async fn detokenize(
    State(vault): State<Vault>,
    principal: Principal,
    info: RequestInfo,
    Path(token): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    // The resource first: another tenant's token is 404 whatever the caller may do.
    let stored = vault
        .identity
        .store()
        .vault_token(&principal.scope, &token)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => IdentityError::NotFound,
            other => IdentityError::Store(other),
        })?;
    principal.require(TOKENS_DETOKENIZE)?;
    let caller = principal.actor();
    let hit = vault
        .identity
        .throttle()
        .hit(
            &format!(
                "detokenize:{}:{}",
                caller.kind(),
                caller.id().unwrap_or("-")
            ),
            Duration::from_secs(60),
        )
        .await
        .map_err(|e| IdentityError::ThrottleUnavailable(e.to_string()))?;
    if hit.attempts > vault.detokenize_per_minute {
        return Err(IdentityError::Locked {
            retry_after_secs: hit.resets_in.as_secs().max(1),
        }
        .into());
    }
    let tenant = principal.scope.tenant_id();
    let number = vault
        .keyring
        .open(&pan_context(tenant, &stored.token), &stored.sealed_pan)
        .await
        .map_err(keyring_error)?;
    let number = String::from_utf8(number)
        .map_err(|_| IdentityError::Keys("sealed card number is not text".into()))?;
    // Audited before anything is revealed: no audit, no number.
    let audit = rampart_audit::event(
        caller,
        "token.detokenize",
        "card_token",
        rampart_identity::request_meta(&info),
    )
    .target(stored.token.clone())
    .changes(serde_json::json!({ "last4": stored.last4 }))
    .build();
    vault
        .identity
        .store()
        .audit_in_tenant(&principal.scope, audit)
        .await
        .map_err(IdentityError::from)?;
    // For the mass-detokenization rule: who did it, not what (the audit event names the
    // token; nothing here does).
    let event = rampart_audit::security_log::SecurityEvent::new("token_detokenized", "info");
    vault
        .identity
        .security_event(event, &info, Some(&principal));
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(Detokenized {
            token: TokenView::from(&stored),
            number,
        }),
    ))
}
