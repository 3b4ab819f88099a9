//! The deployment's operations for platform admins: `GET /api/v1/ops/keys` (keyring and
//! signing keys, with rotation age), `GET /api/v1/ops/backups` (with the last restore
//! drill's RTO and RPO), `GET /api/v1/ops/jobs` and `POST /api/v1/ops/jobs/{id}/retry`.
//!
//! What `rampart keys list|signing`, `backup list` and `jobs list|dead|retry` print, over
//! HTTP, so the console's operations pages can show it through the API like every other
//! page. Only platform admins hold `ops:read`/`ops:write`, and no API key can carry them.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{FromRef, Path, Query, State};
use rampart_crypto::signing::SigningKeys;
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_identity::rbac::{OPS_READ, OPS_WRITE};
use rampart_identity::{
    page_limit, parse_time_id_cursor, request_meta, rfc3339, time_id_cursor, Identity,
    IdentityError, Principal,
};
use rampart_store::backups::BackupRecord;
use rampart_store::jobs::{JobRow, JOB_STATES};
use rampart_store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const DAY_MS: i64 = 86_400_000;

#[derive(Clone)]
pub(crate) struct OpsAdmin {
    pub identity: Identity,
    pub signing: Arc<SigningKeys>,
    /// `crypto.signing_key_rotation_days`: when the newest key of a set is due.
    pub signing_rotation_days: u32,
}

impl FromRef<OpsAdmin> for Identity {
    fn from_ref(s: &OpsAdmin) -> Identity {
        s.identity.clone()
    }
}

pub(crate) fn router() -> OpenApiRouter<OpsAdmin> {
    OpenApiRouter::new()
        .routes(routes!(keys))
        .routes(routes!(backups))
        .routes(routes!(jobs))
        .routes(routes!(retry_job))
}

fn invalid(field: &'static str, reason: impl Into<String>) -> IdentityError {
    IdentityError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn cursor(value: Option<&str>) -> Result<Option<(i64, String)>, IdentityError> {
    value
        .map(|c| {
            parse_time_id_cursor(c)
                .ok_or_else(|| invalid("cursor", "is not a cursor from this API"))
        })
        .transpose()
}

/// Days from `ms` to now, rounded down.
fn age_days(ms: i64) -> i64 {
    (rampart_store::now_ms() - ms).max(0) / DAY_MS
}

#[derive(Serialize, ToSchema)]
pub struct KeyringKeyView {
    /// e.g. `vault.cards`, `tenant.<id>.webhooks`.
    pub name: String,
    /// New values seal under this version.
    pub current_version: i64,
    /// Versions below this were retired: values they sealed no longer open.
    pub min_version: i64,
    pub versions: i64,
    pub created_at: String,
    /// When the current version was made.
    pub rotated_at: String,
    /// Days since `rotated_at`.
    pub rotation_age_days: i64,
}

#[derive(Serialize, ToSchema)]
pub struct SigningKeyView {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// `access-token`, `audit-checkpoint` or `legacy`.
    pub purpose: String,
    /// `kind:<tenant kind>` or `tenant:<tenant id>`.
    pub scope: String,
    pub alg: String,
    /// `token` (the PKCS#11 token holds the private key) or `sealed` (under the root key).
    pub held: String,
    /// Still published in the JWKS and accepted.
    pub published: bool,
    pub created_at: String,
    pub age_days: i64,
    /// For the newest key of its purpose and scope: when it rotates, at its first use
    /// after this time. Older keys only verify.
    pub rotation_due_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KeysView {
    pub keyring: Vec<KeyringKeyView>,
    pub signing: Vec<SigningKeyView>,
    /// `crypto.signing_key_rotation_days`.
    pub signing_rotation_days: u32,
}

#[utoipa::path(
    get,
    path = "/api/v1/ops/keys",
    tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Keyring keys and signing keys, with their ages", body = KeysView),
        (status = 403, description = "Missing ops:read (platform admins only)", body = ErrorBody),
    )
)]
pub async fn keys(
    State(ops): State<OpsAdmin>,
    principal: Principal,
) -> Result<Json<KeysView>, ApiError> {
    principal.require(OPS_READ)?;
    let keyring = ops
        .identity
        .store()
        .keyring_names()
        .await
        .map_err(IdentityError::from)?
        .into_iter()
        .map(|k| KeyringKeyView {
            rotation_age_days: age_days(k.rotated_at),
            created_at: rfc3339(k.created_at),
            rotated_at: rfc3339(k.rotated_at),
            name: k.name,
            current_version: k.current_version,
            min_version: k.min_version,
            versions: k.versions,
        })
        .collect();
    // `all()` is newest first, so the first key seen of a set is the one that signs.
    let mut seen = HashSet::new();
    let due_after = i64::from(ops.signing_rotation_days) * DAY_MS;
    let signing = ops
        .signing
        .all()
        .iter()
        .map(|k| {
            let newest = seen.insert((k.purpose, k.scope.clone()));
            SigningKeyView {
                kid: k.kid.clone(),
                purpose: k.purpose.as_str().to_string(),
                scope: k.scope.clone(),
                alg: k.alg.as_str().to_string(),
                held: if k.in_token { "token" } else { "sealed" }.to_string(),
                published: k.published(),
                created_at: rfc3339(k.created_at),
                age_days: age_days(k.created_at),
                rotation_due_at: (newest && k.purpose != rampart_crypto::signing::Purpose::Legacy)
                    .then(|| rfc3339(k.created_at + due_after)),
            }
        })
        .collect();
    Ok(Json(KeysView {
        keyring,
        signing,
        signing_rotation_days: ops.signing_rotation_days,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^1[0-9]{12}\.[A-Za-z0-9_-]{1,64}$")]
    pub cursor: Option<String>,
    /// 1 to 100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct BackupView {
    pub id: String,
    pub created_at: String,
    /// `complete`, `failed` or `pruned`.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    pub schema_version: i64,
    /// Where the file went (`backup.target_dir`).
    pub target: String,
    pub size_bytes: i64,
    pub sha256: String,
    /// The keyring key and version the file is encrypted under.
    pub key_name: String,
    pub key_version: i64,
    pub error: Option<String>,
}

impl From<BackupRecord> for BackupView {
    fn from(b: BackupRecord) -> BackupView {
        BackupView {
            created_at: rfc3339(b.created_at),
            id: b.id,
            status: b.status,
            backend: b.backend,
            schema_version: b.schema_version,
            target: b.target,
            size_bytes: b.size_bytes,
            sha256: b.sha256,
            key_name: b.key_name,
            key_version: b.key_version,
            error: b.error,
        }
    }
}

/// The newest restore drill (`rampart backup drill` or the `backup.drill` schedule).
#[derive(Serialize, ToSchema)]
pub struct DrillView {
    pub at: String,
    pub ok: bool,
    pub backup_id: Option<String>,
    /// Recovery time: restore, open the store, verify the audit chains, count rows.
    pub rto_ms: Option<i64>,
    /// Recovery point: the age of the backup when the drill began.
    pub rpo_ms: Option<i64>,
    pub audit_events_verified: Option<i64>,
    /// What failed, when `ok` is false.
    pub problems: Vec<String>,
}

impl DrillView {
    fn from_audit(at: i64, outcome: &str, changes: &str) -> DrillView {
        let report: serde_json::Value = serde_json::from_str(changes).unwrap_or_default();
        let int = |k: &str| report.get(k).and_then(serde_json::Value::as_i64);
        let mut problems: Vec<String> = report
            .get("problems")
            .and_then(serde_json::Value::as_array)
            .map(|p| {
                p.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(e) = report.get("error").and_then(serde_json::Value::as_str) {
            problems.push(e.to_string());
        }
        DrillView {
            at: rfc3339(at),
            ok: outcome == "success",
            backup_id: report
                .get("backup_id")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
            rto_ms: int("rto_ms"),
            rpo_ms: int("rpo_ms"),
            audit_events_verified: int("audit_events_verified"),
            problems,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BackupsPage {
    /// Newest first.
    pub items: Vec<BackupView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// The newest restore drill; absent when none has run.
    pub last_drill: Option<DrillView>,
}

#[utoipa::path(
    get,
    path = "/api/v1/ops/backups",
    tag = "operations",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "Backups, newest first, and the last restore drill", body = BackupsPage),
        (status = 403, description = "Missing ops:read (platform admins only)", body = ErrorBody),
    )
)]
pub async fn backups(
    State(ops): State<OpsAdmin>,
    principal: Principal,
    Query(q): Query<PageParams>,
) -> Result<Json<BackupsPage>, ApiError> {
    principal.require(OPS_READ)?;
    let limit = page_limit(q.limit, 25, 100)?;
    let after = cursor(q.cursor.as_deref())?;
    let store = ops.identity.store();
    let mut rows = store
        .list_backups_before(after.as_ref().map(|(at, id)| (*at, id.as_str())), limit + 1)
        .await
        .map_err(IdentityError::from)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|b| time_id_cursor(b.created_at, &b.id)))
        .flatten();
    let last_drill = store
        .last_drill()
        .await
        .map_err(IdentityError::from)?
        .map(|(at, outcome, changes)| DrillView::from_audit(at, &outcome, &changes));
    Ok(Json(BackupsPage {
        items: rows.into_iter().map(BackupView::from).collect(),
        next_cursor,
        last_drill,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub queue: String,
    pub kind: String,
    /// `queued`, `running`, `done` or `dead`.
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    /// Ids and references only: jobs never carry secrets.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub run_at: String,
    pub created_at: String,
    pub updated_at: String,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl From<JobRow> for JobView {
    fn from(j: JobRow) -> JobView {
        JobView {
            payload: serde_json::from_str(&j.payload).unwrap_or(serde_json::Value::Null),
            run_at: rfc3339(j.run_at),
            created_at: rfc3339(j.created_at),
            updated_at: rfc3339(j.updated_at),
            id: j.id,
            queue: j.queue,
            kind: j.kind,
            state: j.state,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            last_error: j.last_error,
        }
    }
}

fn state_schema() -> utoipa::openapi::Object {
    rampart_edge::string_enum_schema(JOB_STATES)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobParams {
    /// `queued`, `running`, `done` or `dead`.
    #[param(schema_with = state_schema, required = false)]
    pub state: Option<String>,
    /// e.g. `notify`, `backup`, `maintenance`.
    pub queue: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^1[0-9]{12}\.[A-Za-z0-9_-]{1,64}$")]
    pub cursor: Option<String>,
    /// 1 to 100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct JobsPage {
    /// Newest first.
    pub items: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/ops/jobs",
    tag = "operations",
    security(("bearer" = [])),
    params(JobParams),
    responses(
        (status = 200, description = "Jobs, newest first", body = JobsPage),
        (status = 403, description = "Missing ops:read (platform admins only)", body = ErrorBody),
        (status = 422, description = "Unknown state, bad cursor or limit", body = ErrorBody),
    )
)]
pub async fn jobs(
    State(ops): State<OpsAdmin>,
    principal: Principal,
    Query(q): Query<JobParams>,
) -> Result<Json<JobsPage>, ApiError> {
    principal.require(OPS_READ)?;
    let state = q.state.as_deref();
    if let Some(s) = state {
        if !JOB_STATES.contains(&s) {
            return Err(
                invalid("state", format!("must be one of {}", JOB_STATES.join(", "))).into(),
            );
        }
    }
    let limit = page_limit(q.limit, 25, 100)?;
    let after = cursor(q.cursor.as_deref())?;
    let mut rows = ops
        .identity
        .store()
        .list_jobs_before(
            q.queue.as_deref().filter(|s| !s.is_empty()),
            state,
            after.as_ref().map(|(at, id)| (*at, id.as_str())),
            limit + 1,
        )
        .await
        .map_err(IdentityError::from)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|j| time_id_cursor(j.created_at, &j.id)))
        .flatten();
    Ok(Json(JobsPage {
        items: rows.into_iter().map(JobView::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/ops/jobs/{job_id}/retry",
    tag = "operations",
    security(("bearer" = [])),
    params(("job_id" = String, Path)),
    responses(
        (status = 200, description = "Re-queued with a fresh set of attempts (audited)", body = JobView),
        (status = 403, description = "A platform admin who has not passed MFA while it is required", body = ErrorBody),
        (status = 404, description = "No dead job with this id (every id, for callers without ops:write)", body = ErrorBody),
        (status = 409, description = "A live job of the same kind holds its unique key", body = ErrorBody),
    )
)]
pub async fn retry_job(
    State(ops): State<OpsAdmin>,
    principal: Principal,
    info: RequestInfo,
    Path(job_id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    // Jobs are the platform's: to anyone else none exists (404, as another tenant's
    // resources), though the refusal is still recorded as a permission denial.
    if !principal.can(OPS_WRITE) {
        let _ = principal.require(OPS_WRITE);
        return Err(ApiError::not_found("no dead job with this id"));
    }
    principal.require(OPS_WRITE)?;
    let audit =
        rampart_audit::event(principal.actor(), "job.retry", "job", request_meta(&info)).build();
    let job = ops
        .identity
        .store()
        .retry_dead_job(&job_id, audit)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("no dead job with this id"),
            StoreError::Conflict { .. } => ApiError::conflict(
                "job_unique_key_taken",
                "a live job of the same kind holds this job's unique key",
            ),
            other => IdentityError::from(other).into(),
        })?;
    tracing::info!(job = %job.id, kind = %job.kind, "dead job re-queued");
    Ok(Json(JobView::from(job)))
}
