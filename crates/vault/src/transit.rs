//! Encryption as a service (Vault's transit engine is the model): tenant applications
//! encrypt, decrypt, rewrap and get data keys under named keys they never see.
//!
//! `POST /api/v1/transit/{key}/encrypt | decrypt | rewrap | datakey`. A key belongs to
//! the caller's tenant (keyring name `tr-<tenant id>-<key>`), is created on first use, and
//! rotates with `rampart keys rotate tr-<tenant id>-<key>`. Permissions are per operation
//! (`transit:encrypt`, ...) and may be narrowed to one key (`transit:decrypt:payments`).
//! An optional `context` is bound into the ciphertext. Every operation is audited.

use axum::extract::{Path, State};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rampart_crypto::envelope::Context;
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_identity::{IdentityError, Principal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{invalid, keyring_error, Vault};

pub const TRANSIT_ENCRYPT: &str = "transit:encrypt";
pub const TRANSIT_DECRYPT: &str = "transit:decrypt";
pub const TRANSIT_REWRAP: &str = "transit:rewrap";
pub const TRANSIT_DATAKEY: &str = "transit:datakey";

const CIPHERTEXT_PREFIX: &str = "rampart:v1:";
/// Transit is for keys and small records, not files.
const MAX_PLAINTEXT: usize = 64 * 1024;

pub(crate) fn router() -> OpenApiRouter<Vault> {
    OpenApiRouter::new()
        .routes(routes!(encrypt))
        .routes(routes!(decrypt))
        .routes(routes!(rewrap))
        .routes(routes!(datakey))
}

#[derive(Deserialize, ToSchema)]
pub struct EncryptRequest {
    /// Base64 (standard alphabet, padded).
    #[schema(
        content_encoding = "base64",
        pattern = r"^\s*([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\s*$"
    )]
    pub plaintext: String,
    /// Bound into the ciphertext; decrypt must name the same.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub context: String,
}

#[derive(Deserialize, ToSchema)]
pub struct DecryptRequest {
    /// `rampart:v1:<base64>`, as encrypt returned it.
    pub ciphertext: String,
    #[serde(default)]
    #[schema(max_length = 256)]
    pub context: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RewrapRequest {
    pub ciphertext: String,
}

#[derive(Deserialize, ToSchema, Default)]
pub struct DatakeyRequest {
    #[serde(default)]
    #[schema(max_length = 256)]
    pub context: String,
}

#[derive(Serialize, ToSchema)]
pub struct CiphertextResponse {
    /// `rampart:v1:<base64>`; carries the key version.
    pub ciphertext: String,
}

#[derive(Serialize, ToSchema)]
pub struct PlaintextResponse {
    /// Base64.
    pub plaintext: String,
}

#[derive(Serialize, ToSchema)]
pub struct DatakeyResponse {
    /// A fresh 256-bit key, base64: use it, then forget it.
    pub plaintext: String,
    /// The same key sealed under the named key: store this, decrypt it when needed.
    pub ciphertext: String,
}

/// A ciphertext that does not open (other context, altered, retired version) is the
/// caller's input problem; anything else is ours.
fn ciphertext_error(e: rampart_crypto::keyring::KeyringError) -> IdentityError {
    match e {
        rampart_crypto::keyring::KeyringError::Envelope(e) => invalid("ciphertext", e.to_string()),
        other => keyring_error(other),
    }
}

/// Checks the key name and the caller's permission for `operation` on it, and returns
/// the keyring name.
fn authorize(
    principal: &Principal,
    key: &str,
    operation: &'static str,
) -> Result<String, IdentityError> {
    if !rampart_identity::rbac::is_resource_name(key) || key.len() > 20 {
        return Err(invalid(
            "key",
            "must be 1-20 characters of a-z, 0-9, _ and -",
        ));
    }
    principal.require_on(operation, key)?;
    Ok(format!("tr-{}-{key}", principal.scope.tenant_id()))
}

fn context(
    principal: &Principal,
    key: &str,
    caller_context: &str,
) -> Result<Context, IdentityError> {
    if caller_context.chars().count() > 256 {
        return Err(invalid("context", "must be at most 256 characters"));
    }
    Ok(Context::new(
        principal.scope.tenant_id(),
        "transit",
        key,
        caller_context,
    ))
}

fn decode_ciphertext(text: &str) -> Result<Vec<u8>, IdentityError> {
    text.strip_prefix(CIPHERTEXT_PREFIX)
        .and_then(|b| STANDARD.decode(b).ok())
        .ok_or_else(|| invalid("ciphertext", "is not a ciphertext this service made"))
}

/// A ciphertext must be of the key named in the path: one key's permission must not
/// decrypt another's data.
fn check_key_of(sealed: &[u8], keyring_name: &str) -> Result<(), IdentityError> {
    match rampart_crypto::envelope::key_of(sealed) {
        Ok((name, _)) if name == keyring_name => Ok(()),
        _ => Err(invalid("ciphertext", "was not made with this key")),
    }
}

async fn audit(
    vault: &Vault,
    principal: &Principal,
    info: &RequestInfo,
    action: &str,
    key: &str,
) -> Result<(), IdentityError> {
    let event = rampart_audit::event(
        principal.actor(),
        action,
        "transit_key",
        rampart_identity::request_meta(info),
    )
    .target(key.to_string())
    .build();
    vault
        .identity
        .store()
        .audit_in_tenant(&principal.scope, event)
        .await
        .map_err(IdentityError::from)
}

#[utoipa::path(post, path = "/api/v1/transit/{key}/encrypt", tag = "transit", security(("bearer" = [])),
    params(("key" = String, Path, description = "Key name, 1-20 of a-z 0-9 _ -")),
    request_body = EncryptRequest,
    responses((status = 200, body = CiphertextResponse), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn encrypt(
    State(vault): State<Vault>,
    principal: Principal,
    info: RequestInfo,
    Path(key): Path<String>,
    Json(body): Json<EncryptRequest>,
) -> Result<Json<CiphertextResponse>, ApiError> {
    let name = authorize(&principal, &key, TRANSIT_ENCRYPT)?;
    let plaintext = STANDARD
        .decode(body.plaintext.trim())
        .map_err(|_| invalid("plaintext", "must be base64"))?;
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(invalid("plaintext", "must be at most 64 KiB").into());
    }
    let sealed = vault
        .keyring
        .seal(
            &name,
            &context(&principal, &key, &body.context)?,
            &plaintext,
        )
        .await
        .map_err(keyring_error)?;
    audit(&vault, &principal, &info, "transit.encrypt", &key).await?;
    Ok(Json(CiphertextResponse {
        ciphertext: format!("{CIPHERTEXT_PREFIX}{}", STANDARD.encode(sealed)),
    }))
}

#[utoipa::path(post, path = "/api/v1/transit/{key}/decrypt", tag = "transit", security(("bearer" = [])),
    params(("key" = String, Path, description = "Key name")),
    request_body = DecryptRequest,
    responses((status = 200, body = PlaintextResponse), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn decrypt(
    State(vault): State<Vault>,
    principal: Principal,
    info: RequestInfo,
    Path(key): Path<String>,
    Json(body): Json<DecryptRequest>,
) -> Result<Json<PlaintextResponse>, ApiError> {
    let name = authorize(&principal, &key, TRANSIT_DECRYPT)?;
    let sealed = decode_ciphertext(&body.ciphertext)?;
    check_key_of(&sealed, &name)?;
    let plaintext = vault
        .keyring
        .open(&context(&principal, &key, &body.context)?, &sealed)
        .await
        .map_err(ciphertext_error)?;
    audit(&vault, &principal, &info, "transit.decrypt", &key).await?;
    Ok(Json(PlaintextResponse {
        plaintext: STANDARD.encode(plaintext),
    }))
}

#[utoipa::path(post, path = "/api/v1/transit/{key}/rewrap", tag = "transit", security(("bearer" = [])),
    params(("key" = String, Path, description = "Key name")),
    request_body = RewrapRequest,
    responses((status = 200, body = CiphertextResponse), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rewrap(
    State(vault): State<Vault>,
    principal: Principal,
    info: RequestInfo,
    Path(key): Path<String>,
    Json(body): Json<RewrapRequest>,
) -> Result<Json<CiphertextResponse>, ApiError> {
    let name = authorize(&principal, &key, TRANSIT_REWRAP)?;
    let sealed = decode_ciphertext(&body.ciphertext)?;
    check_key_of(&sealed, &name)?;
    let rewrapped = vault
        .keyring
        .rewrap(&sealed)
        .await
        .map_err(ciphertext_error)?;
    audit(&vault, &principal, &info, "transit.rewrap", &key).await?;
    Ok(Json(CiphertextResponse {
        ciphertext: format!("{CIPHERTEXT_PREFIX}{}", STANDARD.encode(rewrapped)),
    }))
}

#[utoipa::path(post, path = "/api/v1/transit/{key}/datakey", tag = "transit", security(("bearer" = [])),
    params(("key" = String, Path, description = "Key name")),
    request_body = DatakeyRequest,
    responses((status = 200, body = DatakeyResponse), (status = 403, body = ErrorBody)))]
pub async fn datakey(
    State(vault): State<Vault>,
    principal: Principal,
    info: RequestInfo,
    Path(key): Path<String>,
    Json(body): Json<DatakeyRequest>,
) -> Result<Json<DatakeyResponse>, ApiError> {
    let name = authorize(&principal, &key, TRANSIT_DATAKEY)?;
    let data_key = rampart_crypto::envelope::random_key();
    let sealed = vault
        .keyring
        .seal(&name, &context(&principal, &key, &body.context)?, &data_key)
        .await
        .map_err(keyring_error)?;
    audit(&vault, &principal, &info, "transit.datakey", &key).await?;
    Ok(Json(DatakeyResponse {
        plaintext: STANDARD.encode(data_key),
        ciphertext: format!("{CIPHERTEXT_PREFIX}{}", STANDARD.encode(sealed)),
    }))
}
