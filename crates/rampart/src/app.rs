//! Assembling the application and serving it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::IntoResponse;
use axum::Router;
use prometheus_client::registry::Registry;
use rampart_audit::security_log::SecurityEvent;
use rampart_config::Config;
use rampart_config::{RootKeySourceSetting, WafModeSetting};
use rampart_crypto::hsm::Hsm;
use rampart_crypto::signing::SigningKeys;
use rampart_crypto::RootKey;
use rampart_edge::rate_limit::{Quota, RateLimiter};
use rampart_edge::waf::{HttpPolicy, Waf, WafEvent, WafMode, WafSettings};
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
    /// The job queue: apps enqueue through it.
    pub jobs: rampart_jobs::Jobs,
    /// This node's job worker (`jobs.enabled`); `serve` shuts it down gracefully.
    worker: Option<rampart_jobs::Worker>,
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
    rampart_identity::notify_api::register_permissions(&mut builder);
    rampart_identity::webhooks_api::register_permissions(&mut builder);
    rampart_vault::register_permissions(&mut builder);
    rampart_payments::api::register_permissions(&mut builder);
    rampart_observations::api::register_permissions(&mut builder);
    crate::alerts_api::register_permissions(&mut builder);
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
        api_defaults: true,
    })
}

/// The security log in `data_dir/logs` (its writer thread starts here).
pub fn security_log(config: &Config) -> anyhow::Result<rampart_audit::security_log::SecurityLog> {
    rampart_audit::security_log::SecurityLog::open(
        &config.data_dir.join("logs"),
        config.audit.security_log_retention_days,
    )
    .context("cannot open the security log")
}

/// The WAF from config (`None` when `waf.mode = "off"`): our own rules, CRS, then
/// `waf.extra_rules`. CRS comes from `waf.crs_dir`, or when that is empty from the first
/// standard place that has a release (`rampart_edge::waf::crs_locations`); `none` turns it
/// off. Blocks and detections go to the security log; a rule file that does not parse
/// stops start-up with its file, line and reason, except a CRS found rather than
/// configured (an older distribution package, say), which is left out with a warning.
pub fn waf(
    config: &Config,
    http_policy: HttpPolicy,
    registry: &mut Registry,
    security_log: rampart_audit::security_log::SecurityLog,
    tenants: Arc<std::sync::OnceLock<Identity>>,
) -> anyhow::Result<Option<Arc<Waf>>> {
    let w = &config.waf;
    let mut settings = WafSettings {
        mode: match w.mode {
            WafModeSetting::Blocking => WafMode::Blocking,
            WafModeSetting::Detection => WafMode::Detection,
            WafModeSetting::Off => WafMode::Off,
        },
        crs_dir: None,
        paranoia_level: w.paranoia_level,
        inbound_threshold: w.inbound_anomaly_threshold,
        outbound_threshold: w.outbound_anomaly_threshold,
        extra_rules: w.extra_rules.iter().map(Into::into).collect(),
        inspect_responses: w.inspect_responses,
        max_body_bytes: config.http.max_body_bytes,
        // Photo uploads are larger than API bodies; `rampart edge` fronts an app we do not
        // know, so there every body has the one limit.
        max_upload_bytes: match http_policy {
            HttpPolicy::RampartApi => config.observations.max_photo_bytes,
            HttpPolicy::CrsDefaults => config.http.max_body_bytes,
        },
        max_json_bytes: config.edge.max_json_bytes.min(config.http.max_body_bytes),
        max_json_depth: config.edge.max_json_depth,
        body_timeout: Duration::from_secs(config.http.request_timeout_secs),
        http_policy,
    };
    let sink: rampart_edge::waf::WafEventSink = Arc::new(move |e: WafEvent| {
        let mut event = SecurityEvent::new(
            e.event,
            if e.blocking_rule.is_some() {
                "warning"
            } else {
                "info"
            },
        );
        event.request_id = Some(e.request_id);
        event.source_ip = e.client_ip.map(|ip| ip.to_string());
        // Rule ids and messages only: never the matched data (a card number, a password).
        event.detail = serde_json::json!({
            "method": e.method,
            "phase": e.phase,
            "blocking_rule": e.blocking_rule,
            "status": e.status,
            "rules": e.rules.iter().map(|(id, msg)| serde_json::json!({"id": id, "msg": msg})).collect::<Vec<_>>(),
            "inbound_anomaly_score": e.inbound_anomaly_score,
            "outbound_anomaly_score": e.outbound_anomaly_score,
        });
        // A refused request with a valid credential is about that credential's tenant
        // (so the per-tenant rules see it); finding it takes the identity's check, off
        // the request. Without a credential, or an invalid one, the event has no tenant.
        match (
            e.credential,
            tenants.get(),
            tokio::runtime::Handle::try_current(),
        ) {
            (Some(credential), Some(identity), Ok(runtime)) => {
                let (identity, log) = (identity.clone(), security_log.clone());
                runtime.spawn(async move {
                    event.tenant_id = identity.tenant_of_credential(credential.expose()).await;
                    log.record(event);
                });
            }
            _ => security_log.record(event),
        }
    });
    let found = match w.crs_dir.as_str() {
        "" => rampart_edge::waf::find_crs(&rampart_edge::waf::crs_locations(&config.data_dir)),
        "none" => None,
        dir => {
            settings.crs_dir = Some(dir.into());
            None
        }
    };
    let discovered = found.is_some() && settings.mode != WafMode::Off;
    if discovered {
        settings.crs_dir = found;
    }
    // A failed load registers no metrics (the rules are built first), so a second
    // attempt can use the same registry.
    let waf = match Waf::load(&settings, registry, Arc::clone(&sink)) {
        Err(e) if discovered => {
            tracing::warn!(
                crs = %settings.crs_dir.as_deref().unwrap_or(Path::new("")).display(),
                error = %e,
                "found a CRS that does not load; leaving it out"
            );
            settings.crs_dir = None;
            Waf::load(&settings, registry, sink).context("cannot load the WAF rules")?
        }
        loaded => loaded.context("cannot load the WAF rules")?,
    };
    match &waf {
        Some(waf) => match waf.crs() {
            Some((dir, release)) => tracing::info!(
                mode = ?settings.mode,
                crs = %dir.display(),
                crs_release = release.unwrap_or("unknown"),
                paranoia_level = settings.paranoia_level,
                rules = waf.rule_count(),
                "WAF rules loaded: OWASP CRS {} and Rampart's own",
                release.unwrap_or("(release unknown)")
            ),
            None => tracing::warn!(
                mode = ?settings.mode,
                rules = waf.rule_count(),
                "WAF rules loaded: no OWASP CRS found (set waf.crs_dir, or put a release in \
                 data_dir/crs or /etc/rampart/crs), so only Rampart's own rules run"
            ),
        },
        None => tracing::warn!("WAF is off (waf.mode = \"off\"): no rule runs, ours included"),
    }
    Ok(waf.map(Arc::new))
}

/// The job runtime's settings from `[jobs]` (validated by the config crate).
pub fn jobs_settings(config: &Config) -> anyhow::Result<rampart_jobs::Settings> {
    let j = &config.jobs;
    let queues = j
        .queue_settings()
        .map_err(|e| anyhow::anyhow!("jobs.queues: {e}"))?
        .into_iter()
        .map(|q| {
            (
                q.name,
                rampart_jobs::QueueLimits {
                    concurrency: q.concurrency,
                    per_second: q.per_second,
                },
            )
        })
        .collect();
    Ok(rampart_jobs::Settings {
        poll_interval: Duration::from_millis(j.poll_interval_ms),
        lease: Duration::from_secs(j.lease_secs),
        default_max_attempts: i64::from(j.max_attempts),
        backoff_base: Duration::from_secs(j.backoff_base_secs),
        backoff_cap: Duration::from_secs(j.backoff_cap_secs),
        queues,
        ..rampart_jobs::Settings::default()
    })
}

/// Where queue rate limits (`jobs.queues`) are counted: in Redis when `redis.url` is set,
/// so they hold for all nodes together; `None` (each node paces itself) without Redis.
pub async fn queue_rate(
    config: &Config,
) -> anyhow::Result<Option<Arc<dyn rampart_jobs::SharedRate>>> {
    if config.redis.url.is_empty() {
        return Ok(None);
    }
    let limiter = RateLimiter::redis(config.redis.url.expose(), &config.redis.key_prefix)
        .await
        .with_context(|| format!("cannot reach Redis at {}", config.redis.url))?;
    Ok(Some(Arc::new(crate::queue_rate::RedisQueueRate(limiter))))
}

/// The notification service from `[notify]`, `[mail]` and `[sms]`, with every app's
/// templates: mail over SMTP, or `.eml` files in `data_dir/mail` without `mail.host`
/// (said at start, so nobody waits for mail that went to a folder); SMS to a gateway or
/// to `data_dir/sms`. Its rate limits count in Redis when `redis.url` is set.
pub async fn notify(
    config: &Config,
    store: &Store,
    crypto: &Crypto,
) -> anyhow::Result<rampart_notify::Notify> {
    let mut templates = rampart_notify::Templates::default();
    for t in rampart_identity::account::templates()
        .into_iter()
        .chain(crate::detect::templates())
    {
        templates.register(t);
    }
    // Webhook event types, by app: what endpoints may subscribe to.
    let mut events = rampart_notify::webhook::EventTypes::default();
    rampart_payments::webhooks::register_events(&mut events);
    crate::detect::register_events(&mut events);
    let limiter = if config.redis.url.is_empty() {
        RateLimiter::memory()
    } else {
        RateLimiter::redis(config.redis.url.expose(), &config.redis.key_prefix)
            .await
            .with_context(|| format!("cannot reach Redis at {}", config.redis.url))?
    };
    let mut mail = rampart_notify::mail::MailTransport::from_config(&config.mail, &config.data_dir)
        .map_err(anyhow::Error::msg)?;
    if let Some(signer) = dkim(config, crypto).await? {
        tracing::info!(
            selector = %signer.selector,
            domain = %signer.domain,
            "mail is DKIM-signed (Ed25519); `rampart mail dkim-record` prints the DNS record"
        );
        mail = mail.with_dkim(signer);
    }
    let s = &config.sms;
    let sms: Arc<dyn rampart_notify::sms::SmsProvider> = match s.provider {
        rampart_config::SmsProviderSetting::File => Arc::new(rampart_notify::sms::FileSms {
            dir: if s.dir.is_empty() {
                config.data_dir.join("sms")
            } else {
                s.dir.clone().into()
            },
        }),
        rampart_config::SmsProviderSetting::Http => Arc::new(rampart_notify::sms::HttpSms::new(
            &s.url,
            s.api_key.expose(),
            &s.sender,
            Duration::from_secs(s.timeout_secs),
        )),
    };
    let notify = rampart_notify::Notify::new(
        store.clone(),
        crypto.keyring.clone(),
        templates,
        events,
        rampart_notify::Settings::from_config(config),
        limiter,
        mail,
        sms,
    )
    .await
    .context("cannot start notifications")?;
    let (mail, sms) = notify.describe();
    if config.mail.host.is_empty() {
        tracing::warn!(mail = %mail, "mail.host is not set: mail is written to files, not sent");
    } else {
        tracing::info!(mail = %mail, host = %config.mail.host, port = config.mail.port, "mail goes out over SMTP");
    }
    tracing::info!(sms = %sms, "SMS provider");
    Ok(notify)
}

/// The DKIM signer of `[mail] dkim_selector`/`dkim_domain`, if set: its Ed25519 key is
/// derived in the keyring (MAC key `dkim`, never rotated, so the published record stays
/// valid; a new selector gives a new key). Shared by `serve` and `rampart mail
/// dkim-record`.
pub async fn dkim(
    config: &Config,
    crypto: &Crypto,
) -> anyhow::Result<Option<rampart_notify::mail::Dkim>> {
    let m = &config.mail;
    if m.dkim_selector.is_empty() {
        return Ok(None);
    }
    let seed = crypto
        .keyring
        .mac(
            "dkim",
            rampart_notify::mail::dkim_key_input(&m.dkim_selector, &m.dkim_domain).as_bytes(),
        )
        .await
        .context("cannot derive the DKIM key in the keyring")?;
    rampart_notify::mail::Dkim::from_seed(&m.dkim_selector, &m.dkim_domain, &seed)
        .map(Some)
        .map_err(anyhow::Error::msg)
}

/// The queue with the platform's own jobs registered: notification deliveries, and
/// housekeeping: done jobs older than `jobs.retention_days` are purged nightly at 03:17
/// WIB (an odd minute, away from the top-of-the-hour crowd); every minute, payments whose
/// processor answer was lost are reconciled (`payments.reconcile`). Apps register theirs
/// here.
/// `shared_rate` (see [`queue_rate`]) paces rate-limited queues across nodes.
pub fn jobs(
    config: &Config,
    store: &Store,
    crypto: &Crypto,
    notify: &rampart_notify::Notify,
    payments: &rampart_payments::api::Payments,
    security_log: rampart_audit::security_log::SecurityLog,
    shared_rate: Option<Arc<dyn rampart_jobs::SharedRate>>,
) -> anyhow::Result<rampart_jobs::Jobs> {
    let retention_ms = i64::from(config.jobs.retention_days) * 24 * 3600 * 1000;
    let security_retention_ms =
        i64::from(config.audit.security_log_retention_days) * 24 * 3600 * 1000;
    let purge_store = store.clone();
    let reconciling = payments.clone();
    let (deliver, legacy) = (notify.clone(), notify.clone());
    let backups = Arc::new((config.clone(), store.clone(), crypto.clone(), security_log));
    let drills = backups.clone();
    let mut builder = rampart_jobs::Jobs::builder(store.clone(), jobs_settings(config)?);
    if let Some(rate) = shared_rate {
        builder = builder.shared_rate(rate);
    }
    let mut builder = builder
        // Backups and drills: the work (and its audit and security events) is in
        // `crate::backup`; a failure is retried like any job and stays visible in
        // `rampart jobs dead`.
        .handler("backup", "backup.create", move |_ctx, _payload| {
            scheduled_backup(backups.clone())
        })
        .handler("backup", "backup.drill", move |_ctx, _payload| {
            scheduled_drill(drills.clone())
        });
    let zone = &config.backup.schedule_zone;
    for (name, expr, kind) in [
        ("backup", &config.backup.schedule, "backup.create"),
        (
            "backup-drill",
            &config.backup.drill_schedule,
            "backup.drill",
        ),
    ] {
        // An empty schedule turns the scheduled run off (another system takes backups).
        if !expr.trim().is_empty() {
            builder = builder
                .schedule(name, expr, zone, "backup", kind, serde_json::json!({}))
                .map_err(anyhow::Error::msg)?;
        }
    }
    let jobs = builder
        .handler(
            rampart_notify::QUEUE,
            rampart_notify::DELIVER_KIND,
            move |ctx, payload| deliver.clone().deliver(ctx, payload),
        )
        // Webhook jobs enqueued by an older binary (migration 11 renames queued ones).
        .handler(
            rampart_notify::QUEUE,
            rampart_notify::LEGACY_WEBHOOK_KIND,
            move |ctx, payload| legacy.clone().deliver(ctx, payload),
        )
        .handler("maintenance", "jobs.purge", move |_ctx, _payload| {
            let store = purge_store.clone();
            async move {
                let purged = store
                    .purge_jobs(rampart_store::now_ms() - retention_ms)
                    .await
                    .map_err(|e| rampart_jobs::JobError::Retryable(e.to_string()))?;
                // Browser sessions past their absolute expiry open nothing; the rows go
                // with the same nightly run.
                let sessions = store
                    .purge_console_sessions()
                    .await
                    .map_err(|e| rampart_jobs::JobError::Retryable(e.to_string()))?;
                // Security events in the database keep as long as the node's files.
                let events = store
                    .purge_security_events(rampart_store::now_ms() - security_retention_ms)
                    .await
                    .map_err(|e| rampart_jobs::JobError::Retryable(e.to_string()))?;
                tracing::info!(
                    jobs = purged,
                    console_sessions = sessions,
                    security_events = events,
                    "purged done jobs, ended console sessions and old security events"
                );
                Ok(())
            }
        })
        .handler(
            "maintenance",
            "payments.reconcile",
            move |_ctx, _payload| {
                let payments = reconciling.clone();
                async move {
                    let settled = payments
                        .reconcile_stale_attempts()
                        .await
                        .map_err(|e| rampart_jobs::JobError::Retryable(e.to_string()))?;
                    if settled > 0 {
                        tracing::info!(payments = settled, "reconciled pending payments");
                    }
                    Ok(())
                }
            },
        )
        .schedule(
            "payments-reconcile",
            "* * * * *",
            "UTC",
            "maintenance",
            "payments.reconcile",
            serde_json::json!({}),
        )
        .map_err(anyhow::Error::msg)?
        .schedule(
            "jobs-purge",
            "17 3 * * *",
            "Asia/Jakarta",
            "maintenance",
            "jobs.purge",
            serde_json::json!({}),
        )
        .map_err(anyhow::Error::msg)?
        .build();
    Ok(jobs)
}

/// The built-in `test` processor, keeping its record of authorizations in
/// `data_dir/simulator/authorizations.jsonl` (outside the database, as an acquirer would),
/// so attempts whose answer was lost can be looked up.
fn simulator(config: &Config) -> rampart_payments::connector::Simulator {
    rampart_payments::connector::Simulator::with_ledger(
        config
            .data_dir
            .join("simulator")
            .join("authorizations.jsonl"),
        Duration::from_millis(config.payments.simulator_delay_ms),
    )
}

/// Scheduled backups report progress to no one (the CLI prints it).
fn quiet_progress(_: &str) {}

type BackupDeps = Arc<(
    Config,
    Store,
    Crypto,
    rampart_audit::security_log::SecurityLog,
)>;
type JobFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), rampart_jobs::JobError>> + Send>>;

/// The `backup.create` job: a backup, then pruning by the retention policy. Boxed here
/// so the compiler checks `Send` on one concrete future rather than for every lifetime.
fn scheduled_backup(b: BackupDeps) -> JobFuture {
    Box::pin(async move {
        let retry = |e: anyhow::Error| rampart_jobs::JobError::Retryable(format!("{e:#}"));
        crate::backup::run_backup(&b.0, &b.1, &b.2, &b.3, &quiet_progress)
            .await
            .map_err(retry)?;
        crate::backup::run_prune(&b.0, &b.1).await.map_err(retry)?;
        Ok(())
    })
}

/// The `backup.drill` job. A failed drill has already raised its security event.
///
/// The drill's future is not `Send` for every lifetime (rustc cannot prove it through the
/// sqlx executor bounds inside), so it runs on a blocking thread that drives it with this
/// runtime's handle; it is a long, rare job, so a blocking thread is no loss.
fn scheduled_drill(b: BackupDeps) -> JobFuture {
    Box::pin(async move {
        let handle = tokio::runtime::Handle::current();
        let outcome = tokio::task::spawn_blocking(move || {
            handle.block_on(async move {
                crate::backup::run_drill(&b.0, &b.1, &b.2, &b.3)
                    .await
                    .map(|r| r.ok)
                    .map_err(|e| format!("{e:#}"))
            })
        })
        .await
        .map_err(|e| rampart_jobs::JobError::Retryable(e.to_string()))?;
        let ok = outcome.map_err(rampart_jobs::JobError::Retryable)?;
        tracing::info!(ok, "restore drill done");
        Ok(())
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
    if let Some(seeded) = rampart_observations::checklist::seed_if_empty(&store)
        .await
        .context("cannot load the seed taxonomy")?
    {
        tracing::info!(
            taxa = seeded.taxa,
            "loaded the seed taxonomy (empty database)"
        );
    }
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
    let security_log = security_log(&config)?;
    // The WAF runs before identity; it finds the tenant of a refused request's credential
    // through the identity built below.
    let waf_tenants = Arc::new(std::sync::OnceLock::new());
    let waf = waf(
        &config,
        HttpPolicy::RampartApi,
        &mut registry,
        security_log.clone(),
        waf_tenants.clone(),
    )?;
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
    let notify = notify(&config, &store, &crypto).await?;
    let identity = Identity::new(
        store.clone(),
        notify.clone(),
        crypto.root.clone(),
        keyring.clone(),
        crypto.signing.clone(),
        caller_limits,
        config.auth.clone(),
        throttle,
        rbac,
        security_log.clone(),
        &mut registry,
    )
    .await
    .context("cannot start identity")?;
    let _ = waf_tenants.set(identity.clone());
    let pool_metrics = ops::PoolMetrics::register(&mut registry);
    let detection_metrics = crate::detect::DetectionMetrics::register(&mut registry);
    let observations = rampart_observations::api::Observations::new(
        identity.clone(),
        keyring.clone(),
        rampart_objects::Objects::open(&config.objects_location())
            .context("cannot open the object store for photos")?,
        &config.observations,
    );
    let vault = rampart_vault::Vault::new(identity.clone(), keyring, &config.vault);
    let payments = rampart_payments::api::Payments::new(
        identity.clone(),
        vault.clone(),
        &config.payments,
        simulator(&config),
    );
    let jobs = jobs(
        &config,
        &store,
        &crypto,
        &notify,
        &payments,
        security_log.clone(),
        queue_rate(&config).await?,
    )?;
    notify.attach_jobs(&jobs);
    jobs.metrics().register(&mut registry);

    let (identity_routes, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(rampart_identity::router())
        .split_for_parts();
    let (ops_routes, ops_api) = ops::router().split_for_parts();
    openapi.merge(ops_api);
    let (vault_routes, vault_api) = rampart_vault::router().split_for_parts();
    openapi.merge(vault_api);
    let (payment_routes, payments_api) = rampart_payments::api::router().split_for_parts();
    openapi.merge(payments_api);
    let (observation_routes, observations_api) =
        rampart_observations::api::router(config.observations.max_photo_bytes).split_for_parts();
    openapi.merge(observations_api);
    let (ops_admin_routes, ops_admin_api) = crate::ops_api::router().split_for_parts();
    openapi.merge(ops_admin_api);
    let (alert_routes, alerts_api) = crate::alerts_api::router().split_for_parts();
    openapi.merge(alerts_api);
    crate::openapi::document_edge_responses(&mut openapi);

    let ops_state = OpsState {
        store: store.clone(),
        registry: Arc::new(registry),
        pool_metrics,
        jobs: jobs.clone(),
        openapi: Arc::new(openapi.clone()),
    };
    let api_routes = Router::new()
        .merge(identity_routes.with_state(identity.clone()))
        .merge(ops_routes.with_state(ops_state))
        .merge(vault_routes.with_state(vault))
        .merge(payment_routes.with_state(payments))
        .merge(observation_routes.with_state(observations))
        .merge(alert_routes.with_state(identity.clone()))
        .merge(ops_admin_routes.with_state(crate::ops_api::OpsAdmin {
            identity: identity.clone(),
            signing: crypto.signing.clone(),
            signing_rotation_days: config.crypto.signing_key_rotation_days,
        }));
    let (max_body, timeout) = (
        config.http.max_body_bytes,
        Duration::from_secs(config.http.request_timeout_secs),
    );
    let handler_layers = move |routes: Router| {
        routes
            .fallback(rampart_edge::not_found)
            .route_layer(from_fn(rampart_edge::request::route_tag))
            .layer(DefaultBodyLimit::max(max_body))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                timeout,
            ))
            // A panic is a bug; the client still gets the error shape, never a dropped
            // connection.
            .layer(CatchPanicLayer::custom(|_| {
                tracing::error!("handler panicked");
                ApiError::internal().into_response()
            }))
    };
    // The console calls the API in-process, past the edge its own request has crossed.
    let console = console(handler_layers(api_routes.clone()), &identity, &config);
    let routes = handler_layers(api_routes.merge(console));
    let router = edge_layers(routes, waf, edge, http_metrics);

    let mut background = vec![
        tokio::spawn(audit_checkpoints(
            store.clone(),
            identity.clone(),
            config.audit.clone(),
        )),
        crate::detect::store_security_events(&security_log, store.clone()),
    ];
    if config.detection.enabled {
        // Loaded here once so a rule that does not parse stops start-up, file and line
        // named; the detector loads them again whenever it takes the lease.
        let rules = crate::detect::load_rules(&config.detection)
            .map_err(|e| anyhow::anyhow!("detection rules: {e}"))?;
        tracing::info!(rules = rules.rules().count(), "detection rules loaded");
        if config.jobs.enabled {
            background.push(tokio::spawn(crate::detect::run_detector(
                store.clone(),
                notify.clone(),
                config.detection.clone(),
                detection_metrics,
                Duration::from_millis(config.jobs.poll_interval_ms),
            )));
        }
    }
    let worker = if config.jobs.enabled {
        Some(jobs.start().await.context("cannot start the job worker")?)
    } else {
        tracing::info!("job worker off (jobs.enabled = false): other nodes run the jobs");
        None
    };
    Ok(App {
        router,
        store,
        identity,
        config,
        openapi,
        background,
        tls,
        jobs,
        worker,
    })
}

/// The web console at `/console/`, with every app's pages (the one registration point
/// for console pages, beside `rbac()` for permissions).
pub fn console(api: Router, identity: &Identity, config: &Config) -> Router {
    let c = &config.console;
    rampart_console::ConsoleBuilder::default()
        .pages(
            rampart_payments::console::routes(),
            rampart_payments::console::nav(),
        )
        .build(
            api,
            identity.clone(),
            rampart_console::Settings {
                enabled: c.enabled,
                idle_timeout: Duration::from_secs(c.idle_timeout_mins * 60),
                absolute_timeout: Duration::from_secs(c.absolute_timeout_hours * 3600),
                tls: config.tls.enabled() || c.secure_cookies,
            },
        )
}

/// The layers every request crosses first, outermost last: the WAF, the edge guard
/// (client address, CORS, IP rate limit, security headers), and the request context (id,
/// error shape, access log, metrics). Shared by `serve` and the `edge` proxy.
pub fn edge_layers(
    routes: Router,
    waf: Option<Arc<Waf>>,
    edge: rampart_edge::EdgePolicy,
    http_metrics: HttpMetrics,
) -> Router {
    let routes = match waf {
        Some(waf) => routes.layer(from_fn_with_state(waf, rampart_edge::waf::waf_guard)),
        None => routes,
    };
    routes
        .layer(from_fn_with_state(
            rampart_edge::Edge(Arc::new(edge)),
            rampart_edge::edge_guard,
        ))
        .layer(from_fn_with_state(
            http_metrics,
            rampart_edge::request_context,
        ))
}

/// Serves until `shutdown` resolves, then, at once, drains in-flight requests and lets
/// running jobs finish, each for at most `http.shutdown_grace_secs` (jobs still running
/// then go back to the queue), and closes the database pool. Over TLS when `tls.cert_file`
/// is set (see `crate::tls`), plain HTTP otherwise.
pub async fn serve(
    mut app: App,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = Duration::from_secs(app.config.http.shutdown_grace_secs);
    if app.tls.is_some() {
        tracing::info!(
            min_version = ?app.config.tls.min_version,
            client_auth = ?app.config.tls.client_auth,
            "serving HTTPS"
        );
    }
    // The job worker stops when the server starts draining, not after it: both get the
    // same grace at once, so the whole stop fits in one `http.shutdown_grace_secs` (what
    // an orchestrator's kill timeout is set against).
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    };
    let worker = app.worker.take();
    let jobs_stopped = async move {
        // An early server error drops the sender: the worker is then dropped, which stops
        // it without waiting.
        if let (Ok(()), Some(worker)) = (stopping_rx.await, worker) {
            worker.shutdown(grace).await;
        }
    };
    let options = crate::listener::ServeOptions::from_config(&app.config.http, app.tls.clone());
    let (served, ()) = tokio::join!(
        crate::listener::serve(app.router.clone(), listener, options, shutdown),
        jobs_stopped
    );
    served?;
    for task in &app.background {
        task.abort();
    }
    app.store.close().await;
    tracing::info!("stopped");
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
