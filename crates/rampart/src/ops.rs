//! Operability endpoints: `/health`, `/ready`, `/metrics`, `/api/openapi.json`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rampart_edge::{ApiError, ErrorBody};
use rampart_store::Store;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Clone)]
pub(crate) struct OpsState {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub pool_metrics: PoolMetrics,
    pub jobs: rampart_jobs::Jobs,
    pub openapi: Arc<utoipa::openapi::OpenApi>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

/// Connection pool use, read from the pool at scrape time.
#[derive(Clone, Default)]
pub(crate) struct PoolMetrics {
    connections: Family<PoolLabels, Gauge>,
    max: Gauge,
    released_in_transaction: Counter,
}

impl PoolMetrics {
    pub fn register(registry: &mut Registry) -> PoolMetrics {
        let m = PoolMetrics::default();
        registry.register(
            "rampart_db_pool_connections",
            "Database pool connections by state (idle, in_use)",
            m.connections.clone(),
        );
        registry.register(
            "rampart_db_pool_max_connections",
            "Database pool size limit",
            m.max.clone(),
        );
        registry.register(
            "rampart_db_connections_released_in_transaction",
            "Connections that came back still inside a transaction and were closed instead \
             of pooled; anything but 0 is a bug, named in the error log",
            m.released_in_transaction.clone(),
        );
        m
    }
}

pub(crate) fn router() -> OpenApiRouter<OpsState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
}

#[derive(Serialize, ToSchema)]
pub struct Status {
    pub status: &'static str,
}

/// Alive: the process answers. Checks nothing else, so a slow database does not get a
/// healthy node restarted.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Status)))]
pub async fn health() -> axum::Json<Status> {
    axum::Json(Status { status: "ok" })
}

/// Ready for traffic: the database takes a write within two seconds and this binary's
/// migrations are applied.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Status),
        (status = 503, description = "Not ready", body = ErrorBody),
    ))]
pub async fn ready(State(state): State<OpsState>) -> Result<axum::Json<Status>, ApiError> {
    match state.store.ready().await {
        Ok(()) => Ok(axum::Json(Status { status: "ready" })),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the database is unreachable, takes no writes, or is not migrated",
            ))
        }
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus metrics", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
pub async fn metrics(State(state): State<OpsState>) -> Result<impl IntoResponse, ApiError> {
    let pool = state.store.pool_stats();
    let m = &state.pool_metrics;
    m.connections
        .get_or_create(&PoolLabels { state: "idle" })
        .set(pool.idle as i64);
    m.connections
        .get_or_create(&PoolLabels { state: "in_use" })
        .set(pool.size.saturating_sub(pool.idle) as i64);
    m.max.set(pool.max as i64);
    m.released_in_transaction.inner().store(
        state.store.released_in_transaction(),
        std::sync::atomic::Ordering::Relaxed,
    );
    // Queue depth and age come from the database, so a slow database slows the scrape;
    // a failing one leaves the last values and is logged rather than failing the scrape.
    if let Err(e) = state.jobs.refresh_metrics().await {
        tracing::warn!(error = %e, "cannot read job queue depths");
    }
    encode_metrics(&state.registry)
}

/// A registry in the OpenMetrics text format (also the edge proxy's `/metrics`).
pub(crate) fn encode_metrics(registry: &Registry) -> Result<impl IntoResponse, ApiError> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).map_err(|e| {
        tracing::error!(error = %e, "cannot encode metrics");
        ApiError::internal()
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn openapi(State(state): State<OpsState>) -> impl IntoResponse {
    axum::Json(state.openapi.as_ref().clone())
}
