//! Assembling the application and serving it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::IntoResponse;
use axum::Router;
use prometheus_client::registry::Registry;
use rampart_config::Config;
use rampart_config::RootKeySourceSetting;
use rampart_crypto::hsm::Hsm;
use rampart_crypto::signing::SigningKeys;
use rampart_crypto::RootKey;
use rampart_edge::rate_limit::{Quota, RateLimiter};
use rampart_edge::{ApiError, HttpMetrics};
use rampart_identity::{Identity, LoginThrottle};
use rampart_store::{Store, StoreOptions};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::ops::{self, OpsState};

/// A built application: the router and the services behind it.
pub struct App {
    pub router: Router,
    pub store: Store,
    pub identity: Identity,
    pub config: Config,
    /// The OpenAPI document, as served at `/api/openapi.json`.
    pub openapi: utoipa::openapi::OpenApi,
    /// Work that runs beside the server (audit checkpoints); stopped by `serve`.
    background: Vec<tokio::task::JoinHandle<()>>,
    /// Set when `tls.cert_file` is: `serve` then terminates TLS itself.
    tls: Option<Arc<rustls::ServerConfig>>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rampart",
        description = "Self-hostable secure application platform. Errors always have the \
                       shape {\"error\":{\"code\",\"message\",\"request_id\"}}."
    ),
    components(schemas(rampart_edge::ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Roles and permissions: the one registration point where apps grant theirs.
pub fn rbac() -> rampart_identity::rbac::Rbac {
    let mut builder = rampart_identity::rbac::Rbac::builder();
    rampart_vault::register_permissions(&mut builder);
    builder.build()
}

/// The crypto services of one deployment: root key, keyring and signing keys, with the
/// PKCS#11 token when one is configured. Built once per process (server or CLI command).
#[derive(Clone)]
pub struct Crypto {
    pub root: RootKey,
    pub keyring: Arc<rampart_crypto::keyring::Keyring>,
    pub signing: Arc<SigningKeys>,
}

/// Opens the token (if configured), loads or creates the root key, and loads the keyring
/// and the signing keys from the store.
pub async fn crypto(config: &Config, store: &Store) -> anyhow::Result<Crypto> {
    let c = &config.crypto;
    let hsm = if c.pkcs11_module.is_empty() {
        None
    } else {
        let module = std::path::Path::new(&c.pkcs11_module);
        let hsm = tokio::task::spawn_blocking({
            let (module, token, pin) = (
                module.to_path_buf(),
                c.pkcs11_token.clone(),
                c.pkcs11_pin.expose().to_string(),
            );
            move || Hsm::shared(&module, &token, &pin)
        })
        .await?
        .with_context(|| {
            format!(
                "cannot open PKCS#11 token {:?} in {}",
                c.pkcs11_token,
                module.display()
            )
        })?;
        tracing::info!(module = %module.display(), token = %c.pkcs11_token, "PKCS#11 token open");
        Some(hsm)
    };
    let root = match (c.root_key_source, &hsm) {
        (RootKeySourceSetting::Pkcs11, Some(hsm)) => {
            RootKey::in_token(hsm.clone(), &c.pkcs11_root_key_label)
                .context("cannot load the root key from the PKCS#11 token")?
        }
        (RootKeySourceSetting::Pkcs11, None) => {
            anyhow::bail!("crypto.root_key_source is pkcs11 but crypto.pkcs11_module is empty")
        }
        (RootKeySourceSetting::Auto, _) => RootKey::load(c.root_key.expose(), &config.data_dir)
            .context("cannot load the root key")?,
    };
    tracing::info!(source = ?root.source(), "root key loaded");
    let keyring = Arc::new(rampart_crypto::keyring::Keyring::new(
        root.clone(),
        Arc::new(crate::keyring_backend::StoreKeyring(store.clone())),
    ));
    let alg = |a: rampart_config::SigningAlgSetting| {
        a.as_str()
            .parse::<rampart_crypto::signing::Algorithm>()
            .map_err(anyhow::Error::msg)
    };
    let policy = rampart_crypto::signing::Policy {
        access_token_alg: alg(c.access_token_alg)?,
        audit_checkpoint_alg: alg(c.audit_checkpoint_alg)?,
        rotate_after: Duration::from_secs(u64::from(c.signing_key_rotation_days) * 24 * 3600),
        per_tenant: c.signing_key_scope == rampart_config::SigningKeyScope::Tenant,
    };
    let signing = Arc::new(
        SigningKeys::load(
            root.clone(),
            hsm,
            Arc::new(crate::keyring_backend::StoreSigningKeys(store.clone())),
            policy,
        )
        .await
        .context("cannot load the signing keys")?,
    );
    Ok(Crypto {
        root,
        keyring,
        signing,
    })
}

pub fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        url: config.database_url(),
        max_connections: config.database.max_connections,
        app_role: config.database.app_role.clone(),
    }
}

/// The edge layer's policy from config: trusted proxies, CORS, HSTS, rate limits (in
/// Redis when `redis.url` is set, so all nodes share them).
pub async fn edge_policy(config: &Config) -> anyhow::Result<rampart_edge::EdgePolicy> {
    let e = &config.edge;
    let proxies = rampart_edge::client_ip::TrustedProxies::parse(&e.trusted_proxies)
        .map_err(|bad| anyhow::anyhow!("edge.trusted_proxies: {bad} is not a CIDR"))?;
    let limiter = match (e.rate_limit_enabled, config.redis.url.expose().is_empty()) {
        (false, _) => None,
        (true, true) => Some(RateLimiter::memory()),
        (true, false) => Some(
            RateLimiter::redis(config.redis.url.expose(), &config.redis.key_prefix)
                .await
                .with_context(|| format!("cannot reach Redis at {}", config.redis.url))?,
        ),
    };
    Ok(rampart_edge::EdgePolicy {
        proxies,
        cors: rampart_edge::cors::CorsPolicy::new(&e.cors_origins),
        hsts: (e.hsts_max_age_secs > 0).then(|| {
            axum::http::HeaderValue::from_str(&format!(
                "max-age={}; includeSubDomains",
                e.hsts_max_age_secs
            ))
            .unwrap_or(axum::http::HeaderValue::from_static("max-age=63072000"))
        }),
        limiter,
        ip_quota: Quota {
            per_minute: e.ip_per_minute,
            burst: e.ip_burst,
        },
        json: rampart_edge::JsonLimits {
            max_depth: e.max_json_depth,
        },
    })
}

/// Opens storage (running migrations), loads keys, and builds the router.
pub async fn build(config: Config) -> anyhow::Result<App> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    // Before the database: a wrong certificate path should stop start-up at once.
    let tls = if config.tls.enabled() {
        Some(crate::tls::server_config(&config.tls)?)
    } else {
        None
    };
    let (store, report) = Store::open(&store_options(&config))
        .await
        .context("cannot open the database")?;
    tracing::info!(
        backend = report.backend,
        schema_version = report.version,
        applied = ?report.applied,
        run_as_role = store.run_as_role(),
        "database ready"
    );
    let crypto = crypto(&config, &store).await?;

    let throttle = if config.redis.url.is_empty() {
        LoginThrottle::memory()
    } else {
        LoginThrottle::redis(config.redis.url.expose(), &config.redis.key_prefix)
            .await
            .with_context(|| format!("cannot reach Redis at {}", config.redis.url))?
    };

    let mut registry = Registry::default();
    let http_metrics = HttpMetrics::register(&mut registry);
    let security_log = rampart_audit::security_log::SecurityLog::open(
        &config.data_dir.join("logs"),
        config.audit.security_log_retention_days,
    )
    .context("cannot open the security log")?;
    let rbac = rbac();
    let keyring = crypto.keyring.clone();
    let edge = edge_policy(&config).await?;
    let caller_limits = edge.limiter.clone().map(|limiter| {
        let e = &config.edge;
        rampart_identity::CallerLimits {
            limiter,
            api_key: Quota {
                per_minute: e.api_key_per_minute,
                burst: e.api_key_burst,
            },
            tenant_per_minute: [
                ("government", e.tenant_per_minute_government),
                ("lpk", e.tenant_per_minute_lpk),
                ("employer", e.tenant_per_minute_employer),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            tenant_default_per_minute: e.tenant_per_minute_default,
            tenant_burst: e.tenant_burst,
        }
    });
    let identity = Identity::new(
        store.clone(),
        crypto.root.clone(),
        keyring.clone(),
        crypto.signing.clone(),
        caller_limits,
        config.auth.clone(),
        throttle,
        rbac,
        security_log,
        &mut registry,
    )
    .await
    .context("cannot start identity")?;
    let pool_metrics = ops::PoolMetrics::register(&mut registry);

    let (identity_routes, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(rampart_identity::router())
        .split_for_parts();
    let (ops_routes, ops_api) = ops::router().split_for_parts();
    openapi.merge(ops_api);
    let (vault_routes, vault_api) = rampart_vault::router().split_for_parts();
    openapi.merge(vault_api);
    let vault = rampart_vault::Vault::new(identity.clone(), keyring, &config.vault);

    let ops_state = OpsState {
        store: store.clone(),
        registry: Arc::new(registry),
        pool_metrics,
        openapi: Arc::new(openapi.clone()),
    };
    let router = Router::new()
        .merge(identity_routes.with_state(identity.clone()))
        .merge(ops_routes.with_state(ops_state))
        .merge(vault_routes.with_state(vault))
        .fallback(rampart_edge::not_found)
        .route_layer(from_fn(rampart_edge::request::route_tag))
        .layer(DefaultBodyLimit::max(config.http.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.http.request_timeout_secs),
        ))
        // A panic is a bug; the client still gets the error shape, never a dropped
        // connection.
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            ApiError::internal().into_response()
        }))
        .layer(from_fn_with_state(
            rampart_edge::Edge(Arc::new(edge)),
            rampart_edge::edge_guard,
        ))
        .layer(from_fn_with_state(
            http_metrics,
            rampart_edge::request_context,
        ));

    let background = vec![tokio::spawn(audit_checkpoints(
        store.clone(),
        identity.clone(),
        config.audit.clone(),
    ))];
    Ok(App {
        router,
        store,
        identity,
        config,
        openapi,
        background,
        tls,
    })
}

/// Serves until `shutdown` resolves, then drains in-flight requests for at most
/// `http.shutdown_grace_secs`, and closes the database pool. Over TLS when `tls.cert_file`
/// is set (see `crate::tls`), plain HTTP otherwise.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = Duration::from_secs(app.config.http.shutdown_grace_secs);
    match &app.tls {
        Some(tls) => {
            tracing::info!(
                min_version = ?app.config.tls.min_version,
                client_auth = ?app.config.tls.client_auth,
                "serving HTTPS"
            );
            crate::tls::serve(app.router.clone(), listener, tls.clone(), grace, shutdown).await?;
        }
        None => serve_plain(app.router.clone(), listener, grace, shutdown).await?,
    }
    for task in &app.background {
        task.abort();
    }
    app.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Plain HTTP, for deployments where a proxy in front terminates TLS.
async fn serve_plain(
    router: Router,
    listener: TcpListener,
    grace: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stop_wait = stop_rx.clone();
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stop_tx.send(true);
    });
    let drained = async move {
        let _ = stop_wait.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = std::future::IntoFuture::into_future(server) => result.context("server failed")?,
        () = drained => tracing::warn!(grace_secs = grace.as_secs(), "requests still running after the grace period; exiting"),
    }
    drop(stop_rx);
    Ok(())
}

/// Signs checkpoints of the audit chains as they grow (see `rampart_audit::chain`). Every
/// node runs this; a checkpoint another node already made for the same head is skipped.
async fn audit_checkpoints(store: Store, identity: Identity, config: rampart_config::AuditConfig) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match rampart_audit::chain::checkpoint_due(
            &store,
            identity.signing_keys(),
            config.checkpoint_every_events,
            config.checkpoint_interval_secs as i64 * 1000,
        )
        .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(checkpoints = n, "signed audit checkpoints"),
            Err(e) => tracing::warn!(error = %e, "audit checkpoint failed; will retry"),
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
