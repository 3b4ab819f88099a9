//! Typed configuration for every part of Rampart.
//!
//! Layers, later wins: built-in defaults → an optional TOML file (`rampart.toml` in the
//! working directory, or the path given with `--config` / `RAMPART_CONFIG`) → `RAMPART_*`
//! environment variables. An environment variable names a section and a key joined by `_`:
//! `RAMPART_DATABASE_URL` is `database.url`, `RAMPART_AUTH_ACCESS_TOKEN_TTL_SECS` is
//! `auth.access_token_ttl_secs`.
//!
//! A value that does not parse, an unknown key, or a value outside its allowed range stops
//! start-up with an error that names the key and says what is allowed. Secrets are held in
//! [`Secret`] and connection URLs in [`ConnectionUrl`], so printing the configuration
//! (`rampart config show`) never shows a password.
//!
//! This crate owns no I/O beyond reading the file and the environment.
#![forbid(unsafe_code)]

mod mail;
mod notify;
mod secret;
mod sms;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

pub use mail::{MailConfig, MailSecurity};
pub use notify::NotifyConfig;
pub use secret::{ConnectionUrl, Secret};
pub use sms::{SmsConfig, SmsProviderSetting};

/// Environment variables with this prefix are configuration.
pub const ENV_PREFIX: &str = "RAMPART_";

/// S3's bucket naming rules (the subset every S3-compatible server accepts).
fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Top-level sections; `RAMPART_<SECTION>_<KEY>` maps to `<section>.<key>`.
const SECTIONS: &[&str] = &[
    "http",
    "database",
    "redis",
    "auth",
    "log",
    "telemetry",
    "crypto",
    "audit",
    "vault",
    "edge",
    "waf",
    "tls",
    "jobs",
    "payments",
    "observations",
    "backup",
    "objects",
    "notify",
    "mail",
    "sms",
    "console",
    "detection",
];
/// Top-level scalar keys; `RAMPART_DATA_DIR` maps to `data_dir`.
const TOP_LEVEL_KEYS: &[&str] = &["data_dir"];
/// `RAMPART_*` variables that are not configuration keys: the config file path, and
/// variables the test suite reads (`RAMPART_TEST_DATABASE_URL`, ...).
const NON_CONFIG_ENV: &[&str] = &["config", "bin"];
const NON_CONFIG_ENV_PREFIXES: &[&str] = &["test_", "bench_"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded database, the root key file and logs live.
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub crypto: CryptoConfig,
    pub audit: AuditConfig,
    pub vault: VaultConfig,
    pub edge: EdgeConfig,
    pub waf: WafConfig,
    pub tls: TlsConfig,
    pub jobs: JobsConfig,
    pub payments: PaymentsConfig,
    pub observations: ObservationsConfig,
    pub backup: BackupConfig,
    pub objects: ObjectsConfig,
    pub notify: NotifyConfig,
    pub mail: MailConfig,
    pub sms: SmsConfig,
    pub console: ConsoleConfig,
    pub detection: DetectionConfig,
}

/// Detection: Sigma rules over the security events, raising alerts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// Off: no node evaluates rules (events are still stored).
    pub enabled: bool,
    /// The rules compiled into the binary (`crates/detection/rules/`).
    pub builtin_rules: bool,
    /// A directory of `*.yml` Sigma rules added to (or, with `builtin_rules = false`,
    /// instead of) the built-in set. A rule that does not parse stops start-up.
    pub rules_dir: String,
    /// Alert mails sent at once per tenant (and for the platform's own alerts) in any
    /// hour; a high or critical alert past it waits for the next digest, so an attack
    /// wave sends one mail with a count, not a thousand.
    pub mail_per_hour: u32,
    /// `alert.raised` webhook events per tenant in any hour; past it, alerts go out in
    /// the next `alert.digest` event.
    pub webhook_per_hour: u32,
    /// Medium and low alerts (and those past a rate limit) are sent as one digest per
    /// tenant this long after the oldest one waiting.
    pub digest_interval_secs: u64,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        DetectionConfig {
            enabled: true,
            builtin_rules: true,
            rules_dir: String::new(),
            mail_per_hour: 10,
            webhook_per_hour: 100,
            digest_interval_secs: 3600,
        }
    }
}

/// The web console at `/console/` (server-rendered pages over the same API).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Off: `/console/` is not served (an API-only node).
    pub enabled: bool,
    /// A browser session unused this long ends (OWASP ASVS 7.3.1).
    pub idle_timeout_mins: u64,
    /// A browser session ends this long after sign-in, however busy (ASVS 7.3.2).
    pub absolute_timeout_hours: u64,
    /// Mark cookies `Secure` and `__Host-` even though Rampart serves plain HTTP: set it
    /// when a TLS-terminating proxy is in front. Always on when `tls.cert_file` is set.
    pub secure_cookies: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            idle_timeout_mins: 30,
            absolute_timeout_hours: 12,
            secure_cookies: false,
        }
    }
}

/// Amaturalist's observations (seed 000).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservationsConfig {
    /// The largest photo upload accepted, in bytes (the whole multipart body); larger
    /// ones are refused with 413 before they are read to the end.
    pub max_photo_bytes: usize,
    /// Photos decoded and resized at once, each on a blocking thread; more wait their
    /// turn, so uploads never starve the request threads or the memory.
    pub photo_workers: usize,
}

impl Default for ObservationsConfig {
    fn default() -> Self {
        ObservationsConfig {
            max_photo_bytes: 20 * 1024 * 1024,
            photo_workers: 2,
        }
    }
}

/// Payments (seed 003).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// Let webhook endpoints be `http://` on private or loopback addresses (development
    /// and tests). Off: webhooks go only to public `https://` URLs, so a merchant cannot
    /// make Rampart call internal services.
    pub webhook_allow_private_targets: bool,
    /// How long a webhook receiver has to answer.
    pub webhook_timeout_secs: u64,
    /// How long a payment request holds its `Idempotency-Key` while it runs. A request
    /// with the same key after the lease has run out (the first one crashed or its client
    /// went away) resolves it: replays the answer, or reconciles the recorded attempt with
    /// the processor. Keep it longer than the processor connector's own timeout.
    pub idempotency_lease_secs: u64,
    /// The `test` simulator waits this long after recording an authorization before it
    /// answers, to rehearse a slow acquirer (and, in tests, a crash in that moment).
    pub simulator_delay_ms: u64,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            webhook_allow_private_targets: false,
            webhook_timeout_secs: 10,
            idempotency_lease_secs: 30,
            simulator_delay_ms: 0,
        }
    }
}

/// The durable job queue (`crates/jobs`). Every node runs a worker; they share the queue
/// through the database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Run a worker on this node. Off: the node still enqueues, other nodes run the jobs.
    pub enabled: bool,
    /// How often an idle queue looks for due jobs (a local enqueue wakes it at once).
    pub poll_interval_ms: u64,
    /// How long a claimed job is leased; renewed while it runs. A job whose node died runs
    /// again after at most this long.
    pub lease_secs: u64,
    /// Attempts before a job is dead, unless the job sets its own.
    pub max_attempts: u32,
    /// Retry n waits a random time in [0, min(cap, base * 2^(n-1))] (full jitter).
    pub backoff_base_secs: u64,
    pub backoff_cap_secs: u64,
    /// Days done jobs are kept before the nightly purge.
    pub retention_days: u32,
    /// Per-queue limits: `name:concurrency[:rate]`, comma-separated, rate as `50/s` or
    /// `600/m`, e.g. `webhooks:8:50/s,backup:1`. Concurrency is per node; the rate is for
    /// all nodes together when `redis.url` is set, per node without. Other queues: 4 at a
    /// time, no rate limit.
    pub queues: String,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            enabled: true,
            poll_interval_ms: 1000,
            lease_secs: 60,
            max_attempts: 10,
            backoff_base_secs: 10,
            backoff_cap_secs: 6 * 3600,
            retention_days: 7,
            queues: String::new(),
        }
    }
}

/// One entry of `jobs.queues`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSetting {
    pub name: String,
    pub concurrency: usize,
    /// Jobs started per second; `None`: no limit.
    pub per_second: Option<f64>,
}

impl JobsConfig {
    /// `jobs.queues` parsed; the error says which entry is wrong and why.
    pub fn queue_settings(&self) -> Result<Vec<QueueSetting>, String> {
        let mut out: Vec<QueueSetting> = Vec::new();
        for entry in self
            .queues
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let parts: Vec<&str> = entry.split(':').collect();
            let bad = |why: &str| format!("entry {entry:?}: {why}");
            let (name, concurrency, rate) = match parts[..] {
                [name, c] => (name, c, None),
                [name, c, r] => (name, c, Some(r)),
                _ => return Err(bad("expected name:concurrency[:rate]")),
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            {
                return Err(bad("the queue name must be letters, digits, _ - ."));
            }
            let concurrency: usize = concurrency
                .parse()
                .ok()
                .filter(|c| (1..=1024).contains(c))
                .ok_or_else(|| bad("concurrency must be 1 to 1024"))?;
            let per_second = match rate {
                None => None,
                Some(r) => {
                    let (n, unit) = r
                        .split_once('/')
                        .ok_or_else(|| bad("rate must look like 50/s or 600/m"))?;
                    let n: f64 = n
                        .parse()
                        .ok()
                        .filter(|n: &f64| *n > 0.0 && n.is_finite())
                        .ok_or_else(|| bad("rate must be a positive number"))?;
                    Some(match unit {
                        "s" => n,
                        "m" => n / 60.0,
                        _ => return Err(bad("rate unit must be s or m")),
                    })
                }
            };
            if out.iter().any(|q| q.name == name) {
                return Err(bad("queue named twice"));
            }
            out.push(QueueSetting {
                name: name.to_string(),
                concurrency,
                per_second,
            });
        }
        Ok(out)
    }
}

/// The web application firewall: Rampart's own rules always (unless `mode = "off"`), the
/// OWASP Core Rule Set when `crs_dir` points at a CRS release.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WafConfig {
    /// `blocking` (default), `detection` (log only) or `off` (no rules, ours included).
    pub mode: WafModeSetting,
    /// A CRS v4 release directory: `crs-setup.conf` (or `crs-setup.conf.example`) and
    /// `rules/`. Empty: the first release found in `data_dir/crs`, `/etc/rampart/crs` or
    /// Debian's `/usr/share/modsecurity-crs` (if it loads), else only Rampart's own rules;
    /// `none`: only Rampart's own rules. CRS is not shipped with Rampart; download a
    /// release from coreruleset.org.
    pub crs_dir: String,
    /// CRS paranoia level, 1 (default) to 4: higher levels catch more and block more
    /// legitimate traffic.
    pub paranoia_level: u8,
    /// CRS blocks a request whose anomaly score reaches this (default 5: one critical
    /// match).
    pub inbound_anomaly_threshold: u32,
    pub outbound_anomaly_threshold: u32,
    /// More rule files or directories loaded after CRS: exclusions, site rules.
    #[serde(deserialize_with = "list")]
    pub extra_rules: Vec<String>,
    /// Run the response phases (3 and 4) too. Off for `serve` by default: our handlers
    /// answer JSON, which CRS does not inspect; `rampart edge` turns it on.
    pub inspect_responses: bool,
}

impl Default for WafConfig {
    fn default() -> Self {
        WafConfig {
            mode: WafModeSetting::Blocking,
            crs_dir: String::new(),
            paranoia_level: 1,
            inbound_anomaly_threshold: 5,
            outbound_anomaly_threshold: 4,
            extra_rules: Vec::new(),
            inspect_responses: false,
        }
    }
}

/// TLS terminated by Rampart itself. With `cert_file` empty the server speaks plain HTTP
/// (behind a proxy or load balancer that terminates TLS).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM: the server certificate first, then the intermediates. Set: serve HTTPS.
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file`'s certificate (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key_file: PathBuf,
    /// The oldest protocol version accepted: `"1.3"`, or `"1.2"` for clients that
    /// cannot do 1.3 yet.
    pub min_version: TlsVersionSetting,
    /// PEM bundle of the CAs whose certificates clients (payment partners) may present.
    pub client_ca_file: PathBuf,
    /// `off`: no client certificates are asked for. `optional`: asked for, and verified
    /// against `client_ca_file` when presented; routes that need one refuse requests
    /// without. `required`: the handshake fails without a valid one.
    pub client_auth: ClientAuthSetting,
}

impl TlsConfig {
    /// Whether the server terminates TLS.
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum TlsVersionSetting {
    #[serde(rename = "1.2")]
    Tls12,
    #[default]
    #[serde(rename = "1.3")]
    Tls13,
}

impl<'de> Deserialize<'de> for TlsVersionSetting {
    /// `"1.3"` as the documentation writes it, or `1.3`, which is what TOML makes of it
    /// without quotes.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(f64),
        }
        let text = match Either::deserialize(d)? {
            Either::Text(text) => text,
            Either::Number(n) => n.to_string(),
        };
        match text.trim() {
            "1.2" => Ok(TlsVersionSetting::Tls12),
            "1.3" => Ok(TlsVersionSetting::Tls13),
            other => Err(serde::de::Error::custom(format!(
                "unknown TLS version {other:?}: it must be \"1.3\" or \"1.2\""
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WafModeSetting {
    Blocking,
    Detection,
    Off,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthSetting {
    #[default]
    Off,
    Optional,
    Required,
}

/// What every request crosses before its handler: client address, security headers,
/// CORS, rate limits, body rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// CIDRs of proxies whose `X-Forwarded-For` / `CF-Connecting-IP` are believed
    /// (e.g. `10.0.0.0/8,173.245.48.0/20`). Empty: the socket address is the client.
    #[serde(deserialize_with = "list")]
    pub trusted_proxies: Vec<String>,
    /// Origins allowed to call the API from a browser; `*` matches one or more DNS
    /// labels (`https://*.go.id`). Empty: no cross-origin access.
    #[serde(deserialize_with = "list")]
    pub cors_origins: Vec<String>,
    /// `Strict-Transport-Security` max-age; 0 leaves the header out (plain-HTTP
    /// development).
    pub hsts_max_age_secs: u64,
    pub rate_limit_enabled: bool,
    pub ip_per_minute: u32,
    pub ip_burst: u32,
    pub api_key_per_minute: u32,
    pub api_key_burst: u32,
    pub tenant_per_minute_government: u32,
    pub tenant_per_minute_lpk: u32,
    pub tenant_per_minute_employer: u32,
    /// Every other tenant kind.
    pub tenant_per_minute_default: u32,
    pub tenant_burst: u32,
    /// JSON bodies nested deeper than this are refused (400) before they are parsed.
    pub max_json_depth: u32,
    /// JSON bodies larger than this are refused (413) by the WAF;
    /// `http.max_body_bytes` caps it.
    pub max_json_bytes: usize,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
            hsts_max_age_secs: 63_072_000,
            rate_limit_enabled: true,
            // One address: generous for an office behind NAT, tight for a scraper.
            ip_per_minute: 1200,
            ip_burst: 300,
            api_key_per_minute: 1000,
            api_key_burst: 2000,
            tenant_per_minute_government: 5000,
            tenant_per_minute_lpk: 2000,
            tenant_per_minute_employer: 1500,
            tenant_per_minute_default: 1000,
            tenant_burst: 2000,
            max_json_depth: 32,
            max_json_bytes: 1024 * 1024,
        }
    }
}

/// A list from TOML (an array) or the environment (comma-separated text).
fn list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(items) => items,
        Either::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// `rampart backup`: where backups go, when the job queue takes them, how long they stay.
/// The schedules are read by the job queue; `rampart backup` itself runs when invoked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// A local folder for backup files; empty means `<data_dir>/backups`. Unused when
    /// `s3_bucket` is set.
    pub target_dir: String,
    /// The keyring key that wraps each backup's data key.
    pub key_name: String,
    /// Cron text (minute hour day month weekday) for `backup create`, in `schedule_zone`.
    pub schedule: String,
    /// Cron text for `backup drill`.
    pub drill_schedule: String,
    /// IANA zone the schedules are read in.
    pub schedule_zone: String,
    /// Every backup is kept this many days...
    pub keep_daily_days: u32,
    /// ...the first of each month this many...
    pub keep_monthly_days: u32,
    /// ...and the first of each year this many.
    pub keep_yearly_days: u32,
    /// An S3 bucket for backup files instead of `target_dir` (under `backups/`). Empty
    /// endpoint means AWS; empty credentials are read from the standard `AWS_*` variables.
    pub s3_endpoint: String,
    pub s3_bucket: String,
    pub s3_region: String,
    pub s3_access_key_id: String,
    pub s3_secret_access_key: Secret<String>,
}

/// The object store for uploads: a local folder (default) or an S3 bucket. Objects are
/// encrypted before they leave the process. A local folder is part of every backup; an
/// S3 bucket is not (its own versioning and Object Lock protect it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectsConfig {
    /// The local folder; empty means `<data_dir>/objects`. Unused when `s3_bucket` is set.
    pub dir: String,
    pub s3_endpoint: String,
    pub s3_bucket: String,
    pub s3_region: String,
    pub s3_access_key_id: String,
    pub s3_secret_access_key: Secret<String>,
}

impl Default for ObjectsConfig {
    fn default() -> Self {
        ObjectsConfig {
            dir: String::new(),
            s3_endpoint: String::new(),
            s3_bucket: String::new(),
            s3_region: "us-east-1".into(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: Secret::new(String::new()),
        }
    }
}

/// One S3 bucket's connection settings, read from a section's `s3_*` keys.
#[derive(Debug, Clone)]
pub struct S3Target {
    /// `https://host[:port]` or `http://host:port` (a local S3-compatible server); empty
    /// means AWS itself.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Empty: taken from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub access_key_id: String,
    pub secret_access_key: Secret<String>,
}

/// Where a store of files lives.
#[derive(Debug, Clone)]
pub enum ObjectLocation {
    Dir(PathBuf),
    S3(S3Target),
}

macro_rules! s3_target {
    ($section:expr) => {{
        let s = $section;
        (!s.s3_bucket.is_empty()).then(|| S3Target {
            endpoint: s.s3_endpoint.trim_end_matches('/').to_string(),
            bucket: s.s3_bucket.clone(),
            region: s.s3_region.clone(),
            access_key_id: s.s3_access_key_id.clone(),
            secret_access_key: s.s3_secret_access_key.clone(),
        })
    }};
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            target_dir: String::new(),
            key_name: "backup".into(),
            schedule: "0 2 * * *".into(),
            drill_schedule: "0 4 * * 0".into(),
            schedule_zone: "Asia/Jakarta".into(),
            keep_daily_days: 30,
            keep_monthly_days: 90,
            keep_yearly_days: 365,
            s3_endpoint: String::new(),
            s3_bucket: String::new(),
            s3_region: "us-east-1".into(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: Secret::new(String::new()),
        }
    }
}

impl Config {
    /// Where backup files go: `backup.s3_bucket` when set, else [`Config::backup_dir`].
    pub fn backup_location(&self) -> ObjectLocation {
        match s3_target!(&self.backup) {
            Some(s3) => ObjectLocation::S3(s3),
            None => ObjectLocation::Dir(self.backup_dir()),
        }
    }

    /// Where uploads go: `objects.s3_bucket` when set, else a folder.
    pub fn objects_location(&self) -> ObjectLocation {
        match s3_target!(&self.objects) {
            Some(s3) => ObjectLocation::S3(s3),
            None if self.objects.dir.is_empty() => {
                ObjectLocation::Dir(self.data_dir.join("objects"))
            }
            None => ObjectLocation::Dir(PathBuf::from(&self.objects.dir)),
        }
    }

    /// The local folder backups are written to, and where work files of a backup or a
    /// restore live (also with an S3 target: the file is staged here, then uploaded).
    pub fn backup_dir(&self) -> PathBuf {
        if self.backup.target_dir.is_empty() {
            self.data_dir.join("backups")
        } else {
            PathBuf::from(&self.backup.target_dir)
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultConfig {
    /// Detokenizations one caller (user or API key) may make per minute.
    pub detokenize_per_minute: u32,
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
            detokenize_per_minute: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Sign a checkpoint of a tenant's audit chain once it has grown by this many events...
    pub checkpoint_every_events: i64,
    /// ...or, if it has grown at all, once its last checkpoint is this old.
    pub checkpoint_interval_secs: u64,
    /// Days the daily security log files (`<data_dir>/logs/security.log.*`) are kept.
    pub security_log_retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_every_events: 1000,
            checkpoint_interval_secs: 300,
            security_log_retention_days: 90,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// A request still running after this many seconds gets 408.
    pub request_timeout_secs: u64,
    /// On SIGTERM, in-flight requests get this long to finish.
    pub shutdown_grace_secs: u64,
    /// A connection that takes longer than this to send a request's headers, or sits idle
    /// between requests this long, is closed (slow and idle clients cannot hold it).
    pub header_read_timeout_secs: u64,
    /// Connections open at once on this node; one more is answered 503 and closed. Capped
    /// by the open-files limit, which `serve` raises to its hard limit at start.
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Empty: SQLite at `<data_dir>/rampart.db`. Otherwise `sqlite://PATH` or
    /// `postgres://USER:PASSWORD@HOST/DB`.
    pub url: ConnectionUrl,
    pub max_connections: u32,
    /// PostgreSQL only: when the configured user may bypass row-level security (a
    /// superuser or a role with BYPASSRLS), Rampart switches every connection to this
    /// role, which it creates without those rights, so tenant isolation is enforced by
    /// the database and not only by the code.
    pub app_role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Empty: login throttling and other shared counters live in this process.
    /// `redis://HOST:PORT/DB`: they live in Redis and are shared by every node.
    pub url: ConnectionUrl,
    /// Prepended to every key Rampart writes, so deployments can share one Redis.
    pub key_prefix: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `iss` claim of access tokens.
    pub issuer: String,
    /// `aud` claim of access tokens.
    pub audience: String,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    /// Failed logins for one account within `login_window_secs` before it is locked
    /// for the rest of the window.
    pub login_max_failures: u32,
    pub login_window_secs: u64,
    /// Failed logins from one client IP within `login_window_secs`, across accounts. Past
    /// it the address is slowed to one attempt per `login_ip_slow_interval_secs` (a correct
    /// password still gets in), not locked.
    pub login_ip_max_failures: u32,
    pub login_ip_slow_interval_secs: u64,
    pub password_min_length: usize,
    /// zxcvbn score (0–4) a new password must reach.
    pub password_min_score: u8,
    /// Platform and tenant admins must pass MFA in their session before any endpoint
    /// that needs a permission (enrolling MFA itself needs none).
    pub require_mfa_for_admins: bool,
    /// The issuer name authenticator apps show next to the account.
    pub mfa_issuer: String,
    /// Password hashes and verifications (19 MiB and tens of milliseconds each) running at
    /// once in this process; 0: one per core. More wait up to `hash_queue_ms`, then get
    /// 503 with `Retry-After`.
    pub max_concurrent_hashes: u32,
    pub hash_queue_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter: `info`, `rampart=debug,sqlx=warn`, ...
    pub level: String,
}

/// Traces over OTLP. Off while no endpoint is known (here or in `OTEL_EXPORTER_OTLP_*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector: `http://HOST:4318` (HTTP/protobuf; `/v1/traces` is added) or
    /// `http://HOST:4317` (gRPC). Empty: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` when set, otherwise no traces are exported.
    pub otlp_endpoint: String,
    /// `http` (HTTP/protobuf) or `grpc`; empty: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc` or `http/protobuf`), otherwise `http`.
    pub otlp_protocol: String,
    /// The `service.name` resource attribute; empty: `OTEL_SERVICE_NAME`, else `rampart`.
    pub service_name: String,
    /// The share of new traces kept, 0.0 to 1.0; a caller's sampled flag is followed.
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: String::new(),
            otlp_protocol: String::new(),
            service_name: String::new(),
            sample_ratio: 1.0,
        }
    }
}

impl TelemetryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let e = &self.otlp_endpoint;
        if !(e.is_empty() || e.starts_with("http://") || e.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                key: "telemetry.otlp_endpoint",
                value: e.clone(),
                allowed: "it must be empty (no export) or an http:// or https:// URL",
            });
        }
        if !matches!(
            self.otlp_protocol.as_str(),
            "" | "http" | "http/protobuf" | "grpc"
        ) {
            return Err(ConfigError::Invalid {
                key: "telemetry.otlp_protocol",
                value: self.otlp_protocol.clone(),
                allowed: "it must be http, grpc, or empty (OTEL_EXPORTER_OTLP_PROTOCOL, else http)",
            });
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError::Invalid {
                key: "telemetry.sample_ratio",
                value: self.sample_ratio.to_string(),
                allowed: "it must be between 0.0 and 1.0",
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CryptoConfig {
    /// Base64 of 32 bytes. Empty: the root key is read from `<data_dir>/keys/root.key`,
    /// created on first start with mode 0600. Every node of one deployment needs the
    /// same root key.
    pub root_key: Secret<String>,
    /// `auto`: `root_key` if set, otherwise the key file. `pkcs11`: an AES-256 key object
    /// in the PKCS#11 token (`pkcs11_module`), created there on first start; it never
    /// leaves the token.
    pub root_key_source: RootKeySourceSetting,
    /// Path of a PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`). When set, new
    /// signing keys are generated in its token and never leave it.
    pub pkcs11_module: String,
    /// Label of the token to use in that module.
    pub pkcs11_token: String,
    pub pkcs11_pin: Secret<String>,
    /// Label of the root key object in the token (`root_key_source = "pkcs11"`).
    pub pkcs11_root_key_label: String,
    /// Algorithm of new access-token keys: `ES256` (default: every JWT library has it),
    /// `EdDSA` or `PS256`.
    pub access_token_alg: SigningAlgSetting,
    /// Algorithm of new audit-checkpoint keys (default `EdDSA`).
    pub audit_checkpoint_alg: SigningAlgSetting,
    /// A key set's newest key older than this is replaced at its next use (quarterly).
    pub signing_key_rotation_days: u32,
    /// `kind`: one key set per tenant kind; `tenant`: one per tenant.
    pub signing_key_scope: SigningKeyScope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootKeySourceSetting {
    Auto,
    Pkcs11,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningAlgSetting {
    ES256,
    EdDSA,
    PS256,
}

impl SigningAlgSetting {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgSetting::ES256 => "ES256",
            SigningAlgSetting::EdDSA => "EdDSA",
            SigningAlgSetting::PS256 => "PS256",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningKeyScope {
    Kind,
    Tenant,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            http: HttpConfig::default(),
            database: DatabaseConfig::default(),
            redis: RedisConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            telemetry: TelemetryConfig::default(),
            crypto: CryptoConfig::default(),
            audit: AuditConfig::default(),
            vault: VaultConfig::default(),
            edge: EdgeConfig::default(),
            waf: WafConfig::default(),
            tls: TlsConfig::default(),
            jobs: JobsConfig::default(),
            payments: PaymentsConfig::default(),
            observations: ObservationsConfig::default(),
            backup: BackupConfig::default(),
            objects: ObjectsConfig::default(),
            notify: NotifyConfig::default(),
            mail: MailConfig::default(),
            sms: SmsConfig::default(),
            console: ConsoleConfig::default(),
            detection: DetectionConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 30,
            header_read_timeout_secs: 15,
            max_connections: 4096,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: ConnectionUrl::default(),
            max_connections: 16,
            app_role: "rampart_app".into(),
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: ConnectionUrl::default(),
            key_prefix: "rampart:".into(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            issuer: "rampart".into(),
            audience: "rampart".into(),
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 7 * 24 * 3600,
            login_max_failures: 5,
            login_window_secs: 15 * 60,
            login_ip_max_failures: 50,
            login_ip_slow_interval_secs: 10,
            password_min_length: 12,
            password_min_score: 3,
            require_mfa_for_admins: true,
            mfa_issuer: "Rampart".into(),
            max_concurrent_hashes: 0,
            hash_queue_ms: 1000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

impl Default for CryptoConfig {
    fn default() -> Self {
        CryptoConfig {
            root_key: Secret::new(String::new()),
            root_key_source: RootKeySourceSetting::Auto,
            pkcs11_module: String::new(),
            pkcs11_token: "rampart".into(),
            pkcs11_pin: Secret::new(String::new()),
            pkcs11_root_key_label: "rampart-root".into(),
            access_token_alg: SigningAlgSetting::ES256,
            audit_checkpoint_alg: SigningAlgSetting::EdDSA,
            signing_key_rotation_days: 90,
            signing_key_scope: SigningKeyScope::Kind,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse or an unknown key; figment's message names the key and
    /// the file or environment variable it came from.
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration: `{key}` is {value:?}, but {allowed}")]
    Invalid {
        key: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error("configuration: file {0} does not exist")]
    MissingFile(PathBuf),
}

impl Config {
    /// Loads the layers from the real file system and process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    /// Loads the layers with an explicit environment, so tests do not touch the process's.
    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let file = match file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.into())),
            Some(path) => Some(path.to_path_buf()),
            None => {
                let from_env = env
                    .iter()
                    .find(|(k, _)| k == "RAMPART_CONFIG")
                    .map(|(_, v)| PathBuf::from(v));
                match from_env {
                    Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path)),
                    Some(path) => Some(path),
                    None => Some(PathBuf::from("rampart.toml")).filter(|p| p.exists()),
                }
            }
        };
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if let Some(key) = env_key(rest) {
                // One layer per variable, so an error names the variable it came from.
                figment = figment.merge(EnvVar {
                    key,
                    value: value.clone(),
                });
            }
        }
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(format_figment_error(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Range checks serde cannot express. Each names the key and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, value: impl ToString, allowed: &'static str) -> ConfigError {
            ConfigError::Invalid {
                key,
                value: value.to_string(),
                allowed,
            }
        }
        if !(1..=3600).contains(&self.payments.idempotency_lease_secs) {
            return Err(invalid(
                "payments.idempotency_lease_secs",
                self.payments.idempotency_lease_secs,
                "1 to 3600 seconds",
            ));
        }
        if !(1..=7 * 24 * 3600).contains(&self.detection.digest_interval_secs) {
            return Err(invalid(
                "detection.digest_interval_secs",
                self.detection.digest_interval_secs,
                "1 second to 7 days",
            ));
        }
        if !(1..=24 * 60).contains(&self.console.idle_timeout_mins) {
            return Err(invalid(
                "console.idle_timeout_mins",
                self.console.idle_timeout_mins,
                "1 to 1440 minutes",
            ));
        }
        if !(1..=24 * 7).contains(&self.console.absolute_timeout_hours) {
            return Err(invalid(
                "console.absolute_timeout_hours",
                self.console.absolute_timeout_hours,
                "1 to 168 hours",
            ));
        }
        if self.payments.simulator_delay_ms > 600_000 {
            return Err(invalid(
                "payments.simulator_delay_ms",
                self.payments.simulator_delay_ms,
                "0 to 600000 milliseconds",
            ));
        }
        let o = &self.observations;
        if !(64 * 1024..=256 * 1024 * 1024).contains(&o.max_photo_bytes) {
            return Err(invalid(
                "observations.max_photo_bytes",
                o.max_photo_bytes,
                "65536 to 268435456 bytes",
            ));
        }
        if !(1..=64).contains(&o.photo_workers) {
            return Err(invalid(
                "observations.photo_workers",
                o.photo_workers,
                "1 to 64",
            ));
        }
        let b = &self.backup;
        for (key, days) in [
            ("backup.keep_daily_days", b.keep_daily_days),
            ("backup.keep_monthly_days", b.keep_monthly_days),
            ("backup.keep_yearly_days", b.keep_yearly_days),
        ] {
            if days == 0 {
                return Err(invalid(key, days, "it must be at least 1 day"));
            }
        }
        for (prefix, s3) in [
            ("backup", s3_target!(&self.backup)),
            ("objects", s3_target!(&self.objects)),
        ] {
            let Some(s3) = s3 else { continue };
            if !valid_bucket_name(&s3.bucket) {
                return Err(ConfigError::Invalid {
                    key: if prefix == "backup" {
                        "backup.s3_bucket"
                    } else {
                        "objects.s3_bucket"
                    },
                    value: s3.bucket.clone(),
                    allowed: "an S3 bucket name: 3 to 63 lowercase letters, digits, dots and \
                              hyphens, starting and ending with a letter or digit",
                });
            }
            if !(s3.endpoint.is_empty()
                || s3.endpoint.starts_with("https://")
                || s3.endpoint.starts_with("http://"))
            {
                return Err(ConfigError::Invalid {
                    key: if prefix == "backup" {
                        "backup.s3_endpoint"
                    } else {
                        "objects.s3_endpoint"
                    },
                    value: s3.endpoint.clone(),
                    allowed: "empty (AWS) or a URL starting with https:// (or http:// for a \
                              local S3-compatible server)",
                });
            }
        }
        let a = &self.auth;
        if !(60..=24 * 3600).contains(&a.access_token_ttl_secs) {
            return Err(invalid(
                "auth.access_token_ttl_secs",
                a.access_token_ttl_secs,
                "it must be between 60 and 86400 seconds",
            ));
        }
        if !(300..=90 * 24 * 3600).contains(&a.refresh_token_ttl_secs) {
            return Err(invalid(
                "auth.refresh_token_ttl_secs",
                a.refresh_token_ttl_secs,
                "it must be between 300 seconds and 90 days",
            ));
        }
        if a.login_max_failures == 0 {
            return Err(invalid(
                "auth.login_max_failures",
                0,
                "it must be at least 1",
            ));
        }
        if a.max_concurrent_hashes > 256 {
            return Err(invalid(
                "auth.max_concurrent_hashes",
                a.max_concurrent_hashes,
                "at most 256 (each takes 19 MiB while it runs; 0 means one per core)",
            ));
        }
        if !(1..=30_000).contains(&a.hash_queue_ms) {
            return Err(invalid(
                "auth.hash_queue_ms",
                a.hash_queue_ms,
                "it must be between 1 and 30000",
            ));
        }
        if !(1..=3600).contains(&a.login_ip_slow_interval_secs) {
            return Err(invalid(
                "auth.login_ip_slow_interval_secs",
                a.login_ip_slow_interval_secs,
                "it must be between 1 and 3600",
            ));
        }
        if a.login_ip_max_failures == 0 {
            return Err(invalid(
                "auth.login_ip_max_failures",
                0,
                "it must be at least 1",
            ));
        }
        if a.login_window_secs == 0 {
            return Err(invalid(
                "auth.login_window_secs",
                0,
                "it must be at least 1",
            ));
        }
        if !(8..=128).contains(&a.password_min_length) {
            return Err(invalid(
                "auth.password_min_length",
                a.password_min_length,
                "it must be between 8 and 128",
            ));
        }
        if a.password_min_score > 4 {
            return Err(invalid(
                "auth.password_min_score",
                a.password_min_score,
                "it must be between 0 and 4 (zxcvbn scores)",
            ));
        }
        if a.issuer.trim().is_empty() {
            return Err(invalid("auth.issuer", &a.issuer, "it must not be empty"));
        }
        if a.audience.trim().is_empty() {
            return Err(invalid(
                "auth.audience",
                &a.audience,
                "it must not be empty",
            ));
        }
        if self.audit.checkpoint_every_events < 1 {
            return Err(invalid(
                "audit.checkpoint_every_events",
                self.audit.checkpoint_every_events,
                "it must be at least 1",
            ));
        }
        let c = &self.crypto;
        if c.root_key_source == RootKeySourceSetting::Pkcs11 && c.pkcs11_module.is_empty() {
            return Err(invalid(
                "crypto.root_key_source",
                "pkcs11",
                "it needs crypto.pkcs11_module (and pkcs11_token, pkcs11_pin)",
            ));
        }
        if c.root_key_source == RootKeySourceSetting::Pkcs11 && !c.root_key.expose().is_empty() {
            return Err(invalid(
                "crypto.root_key",
                "[redacted]",
                "leave it empty when crypto.root_key_source is pkcs11",
            ));
        }
        if !(1..=3650).contains(&c.signing_key_rotation_days) {
            return Err(invalid(
                "crypto.signing_key_rotation_days",
                c.signing_key_rotation_days,
                "it must be between 1 and 3650",
            ));
        }
        let e = &self.edge;
        for cidr in &e.trusted_proxies {
            if cidr.parse::<ipnet::IpNet>().is_err() && cidr.parse::<std::net::IpAddr>().is_err() {
                return Err(ConfigError::Invalid {
                    key: "edge.trusted_proxies",
                    value: cidr.clone(),
                    allowed: "CIDRs such as 10.0.0.0/8 or single addresses",
                });
            }
        }
        for origin in &e.cors_origins {
            if !(origin.starts_with("https://") || origin.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    key: "edge.cors_origins",
                    value: origin.clone(),
                    allowed: "origins such as https://app.example.id or https://*.go.id",
                });
            }
        }
        for (key, value) in [
            ("edge.ip_per_minute", e.ip_per_minute),
            ("edge.ip_burst", e.ip_burst),
            ("edge.api_key_per_minute", e.api_key_per_minute),
            ("edge.api_key_burst", e.api_key_burst),
            (
                "edge.tenant_per_minute_government",
                e.tenant_per_minute_government,
            ),
            ("edge.tenant_per_minute_lpk", e.tenant_per_minute_lpk),
            (
                "edge.tenant_per_minute_employer",
                e.tenant_per_minute_employer,
            ),
            (
                "edge.tenant_per_minute_default",
                e.tenant_per_minute_default,
            ),
            ("edge.tenant_burst", e.tenant_burst),
            ("edge.max_json_depth", e.max_json_depth),
        ] {
            if value == 0 {
                return Err(invalid(key, 0, "it must be at least 1"));
            }
        }
        if self.vault.detokenize_per_minute < 1 {
            return Err(invalid(
                "vault.detokenize_per_minute",
                0,
                "it must be at least 1",
            ));
        }
        if self.audit.security_log_retention_days < 1 {
            return Err(invalid(
                "audit.security_log_retention_days",
                0,
                "it must be at least 1",
            ));
        }
        if self.audit.checkpoint_interval_secs < 1 {
            return Err(invalid(
                "audit.checkpoint_interval_secs",
                0,
                "it must be at least 1",
            ));
        }
        let w = &self.waf;
        if !(1..=4).contains(&w.paranoia_level) {
            return Err(invalid(
                "waf.paranoia_level",
                w.paranoia_level,
                "it must be 1, 2, 3 or 4",
            ));
        }
        if w.inbound_anomaly_threshold == 0 || w.outbound_anomaly_threshold == 0 {
            return Err(invalid(
                "waf.inbound_anomaly_threshold",
                w.inbound_anomaly_threshold
                    .min(w.outbound_anomaly_threshold),
                "anomaly thresholds must be at least 1",
            ));
        }
        if !w.crs_dir.is_empty()
            && w.crs_dir != "none"
            && !Path::new(&w.crs_dir).join("rules").is_dir()
        {
            return Err(invalid(
                "waf.crs_dir",
                &w.crs_dir,
                "it must be a CRS release directory with a rules/ folder",
            ));
        }
        if self.edge.max_json_bytes == 0 {
            return Err(invalid(
                "edge.max_json_bytes",
                self.edge.max_json_bytes,
                "it must be at least 1 (http.max_body_bytes caps it)",
            ));
        }
        let h = &self.http;
        if !(1024..=1024 * 1024 * 1024).contains(&h.max_body_bytes) {
            return Err(invalid(
                "http.max_body_bytes",
                h.max_body_bytes,
                "it must be between 1 KiB and 1 GiB",
            ));
        }
        if h.request_timeout_secs == 0 {
            return Err(invalid(
                "http.request_timeout_secs",
                0,
                "it must be at least 1",
            ));
        }
        if !(1..=3600).contains(&h.header_read_timeout_secs) {
            return Err(invalid(
                "http.header_read_timeout_secs",
                h.header_read_timeout_secs,
                "it must be between 1 and 3600",
            ));
        }
        if !(1..=1_000_000).contains(&h.max_connections) {
            return Err(invalid(
                "http.max_connections",
                h.max_connections,
                "it must be between 1 and 1000000",
            ));
        }
        let db = &self.database;
        let url = db.url.expose();
        if !(url.is_empty()
            || url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                db.url.redacted(),
                "it must be empty (embedded SQLite), sqlite://PATH or postgres://...",
            ));
        }
        if !(1..=1000).contains(&db.max_connections) {
            return Err(invalid(
                "database.max_connections",
                db.max_connections,
                "it must be between 1 and 1000",
            ));
        }
        if db.app_role.is_empty()
            || !db
                .app_role
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(invalid(
                "database.app_role",
                &db.app_role,
                "it must be a PostgreSQL role name of lowercase letters, digits and _",
            ));
        }
        let redis = self.redis.url.expose();
        if !(redis.is_empty() || redis.starts_with("redis://") || redis.starts_with("rediss://")) {
            return Err(invalid(
                "redis.url",
                self.redis.url.redacted(),
                "it must be empty (in-process state) or redis://HOST:PORT/DB",
            ));
        }
        self.validate_tls()?;
        self.validate_jobs()?;
        self.telemetry.validate()?;
        self.notify.validate()?;
        self.mail.validate()?;
        self.sms.validate()?;
        let root = self.crypto.root_key.expose();
        if !root.is_empty() && !is_base64_32_bytes(root) {
            return Err(invalid(
                "crypto.root_key",
                "[redacted]",
                "it must be empty (key file in the data dir) or base64 of exactly 32 bytes",
            ));
        }
        Ok(())
    }

    fn validate_jobs(&self) -> Result<(), ConfigError> {
        let j = &self.jobs;
        let invalid = |key, value: String, allowed| {
            Err(ConfigError::Invalid {
                key,
                value,
                allowed,
            })
        };
        if !(50..=60_000).contains(&j.poll_interval_ms) {
            return invalid(
                "jobs.poll_interval_ms",
                j.poll_interval_ms.to_string(),
                "it must be between 50 and 60000",
            );
        }
        if !(5..=3600).contains(&j.lease_secs) {
            return invalid(
                "jobs.lease_secs",
                j.lease_secs.to_string(),
                "it must be between 5 and 3600 seconds",
            );
        }
        if !(1..=100).contains(&j.max_attempts) {
            return invalid(
                "jobs.max_attempts",
                j.max_attempts.to_string(),
                "it must be between 1 and 100",
            );
        }
        if j.backoff_base_secs == 0 {
            return invalid(
                "jobs.backoff_base_secs",
                "0".into(),
                "it must be at least 1",
            );
        }
        if j.backoff_cap_secs < j.backoff_base_secs {
            return invalid(
                "jobs.backoff_cap_secs",
                j.backoff_cap_secs.to_string(),
                "it must be at least jobs.backoff_base_secs",
            );
        }
        if j.retention_days == 0 {
            return invalid("jobs.retention_days", "0".into(), "it must be at least 1");
        }
        if let Err(why) = j.queue_settings() {
            return Err(ConfigError::Invalid {
                key: "jobs.queues",
                value: format!("{} ({why})", j.queues),
                allowed: "it must be name:concurrency[:rate] entries, comma-separated, \
                          e.g. webhooks:8:50/s,backup:1",
            });
        }
        Ok(())
    }

    /// The `[tls]` keys that only make sense together. Whether the files exist and hold
    /// what they should is checked when the server loads them, at start-up.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let t = &self.tls;
        let set = |p: &Path| !p.as_os_str().is_empty();
        if set(&t.cert_file) && !set(&t.key_file) {
            return Err(ConfigError::Invalid {
                key: "tls.key_file",
                value: String::new(),
                allowed: "it must be set when tls.cert_file is set",
            });
        }
        if set(&t.key_file) && !set(&t.cert_file) {
            return Err(ConfigError::Invalid {
                key: "tls.cert_file",
                value: String::new(),
                allowed: "it must be set when tls.key_file is set",
            });
        }
        let client_auth = match t.client_auth {
            ClientAuthSetting::Off => "off",
            ClientAuthSetting::Optional => "optional",
            ClientAuthSetting::Required => "required",
        };
        if t.client_auth != ClientAuthSetting::Off && !set(&t.client_ca_file) {
            return Err(ConfigError::Invalid {
                key: "tls.client_ca_file",
                value: String::new(),
                allowed: "it must name the CA bundle for client certificates when \
                          tls.client_auth is optional or required",
            });
        }
        if t.client_auth != ClientAuthSetting::Off && !t.enabled() {
            return Err(ConfigError::Invalid {
                key: "tls.client_auth",
                value: client_auth.into(),
                allowed: "client certificates need TLS: set tls.cert_file and tls.key_file",
            });
        }
        // A CA bundle with client_auth off would look like partner authentication while
        // checking nothing.
        if t.client_auth == ClientAuthSetting::Off && set(&t.client_ca_file) {
            return Err(ConfigError::Invalid {
                key: "tls.client_auth",
                value: client_auth.into(),
                allowed: "it must be optional or required when tls.client_ca_file is set \
                          (or leave tls.client_ca_file empty)",
            });
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// The database URL to connect to: the configured one, or SQLite in the data dir.
    pub fn database_url(&self) -> String {
        let url = self.database.url.expose();
        if url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("rampart.db").display())
        } else {
            url.to_string()
        }
    }
}

/// `DATABASE_URL` → `database.url`; `DATA_DIR` → `data_dir`; `None` for variables that are
/// not configuration. Unknown keys are kept so that extraction rejects them by name.
fn env_key(rest: &str) -> Option<String> {
    let lower = rest.to_ascii_lowercase();
    if NON_CONFIG_ENV.contains(&lower.as_str())
        || NON_CONFIG_ENV_PREFIXES.iter().any(|p| lower.starts_with(p))
    {
        return None;
    }
    if TOP_LEVEL_KEYS.contains(&lower.as_str()) {
        return Some(lower);
    }
    for section in SECTIONS {
        if let Some(key) = lower
            .strip_prefix(section)
            .and_then(|r| r.strip_prefix('_'))
        {
            return Some(format!("{section}.{key}"));
        }
    }
    Some(lower)
}

/// Keys whose values are text even when they look like numbers (PINs, labels, keys).
const TEXT_KEYS: &[&str] = &[
    "crypto.pkcs11_pin",
    "crypto.pkcs11_token",
    "crypto.pkcs11_root_key_label",
    "crypto.root_key",
    "auth.issuer",
    "auth.audience",
    // "1.2" would otherwise arrive as a float.
    "tls.min_version",
    "tls.cert_file",
    "tls.key_file",
    "tls.client_ca_file",
    "jobs.queues",
    "backup.target_dir",
    "backup.schedule",
    "backup.drill_schedule",
    "backup.s3_access_key_id",
    "backup.s3_secret_access_key",
    "backup.s3_bucket",
    "objects.dir",
    "objects.s3_bucket",
    "objects.s3_access_key_id",
    "objects.s3_secret_access_key",
    "mail.host",
    "mail.username",
    "mail.password",
    "mail.from",
    "mail.dir",
    "sms.api_key",
    "sms.sender",
    "sms.url",
    "sms.dir",
    "notify.public_url",
];

/// One `RAMPART_*` variable as a figment layer. Figment's own `Env` provider reads the
/// process environment; this one reads the list it is given, so tests stay independent.
struct EnvVar {
    /// Dotted key: `database.url`.
    key: String,
    value: String,
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
            .interpolater(|_, keys| format!("{ENV_PREFIX}{}", keys.join("_").to_ascii_uppercase()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        // Like figment's Env: "5" is a number, "true" a bool, anything else a string;
        // except for keys that are always text, where "0123" must stay "0123".
        let value: Value = if TEXT_KEYS.contains(&self.key.as_str()) {
            Value::from(self.value.clone())
        } else {
            self.value
                .parse()
                .unwrap_or_else(|e: std::convert::Infallible| match e {})
        };
        let mut dict = Dict::new();
        match self.key.split_once('.') {
            Some((section, key)) => {
                let mut inner = Dict::new();
                inner.insert(key.to_string(), value);
                dict.insert(section.to_string(), Value::from(inner));
            }
            None => {
                dict.insert(self.key.clone(), value);
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn format_figment_error(error: figment::Error) -> String {
    // figment's message names the source (file, or environment variable); the dotted key
    // path in front names the setting as the TOML file spells it.
    error
        .into_iter()
        .map(|e| {
            let path = e.path.join(".");
            if path.is_empty() {
                e.to_string()
            } else {
                format!("`{path}`: {e}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn is_base64_32_bytes(s: &str) -> bool {
    // Decoding lives in the crypto crate; here only the shape is checked: 32 bytes are 43
    // base64 characters plus optional `=` padding.
    let trimmed = s.trim_end_matches('=');
    trimmed.len() == 43
        && trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn s3_buckets_come_from_the_environment_and_are_checked() {
        let c = Config::load_from(
            None,
            &env(&[
                ("RAMPART_BACKUP_S3_BUCKET", "rampart-backups"),
                ("RAMPART_BACKUP_S3_ENDPOINT", "http://127.0.0.1:9000/"),
                ("RAMPART_OBJECTS_DIR", "/srv/objects"),
            ]),
        )
        .expect("valid");
        match c.backup_location() {
            ObjectLocation::S3(s3) => {
                assert_eq!(s3.bucket, "rampart-backups");
                assert_eq!(s3.endpoint, "http://127.0.0.1:9000");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(c.objects_location(), ObjectLocation::Dir(d) if d == Path::new("/srv/objects"))
        );
        for (key, value) in [
            ("RAMPART_OBJECTS_S3_BUCKET", "Bad_Bucket"),
            ("RAMPART_OBJECTS_S3_BUCKET", "ab"),
            ("RAMPART_BACKUP_S3_BUCKET", "-dash-first"),
        ] {
            let err = Config::load_from(None, &env(&[(key, value)])).unwrap_err();
            assert!(err.to_string().contains("s3_bucket"), "{err}");
        }
        let err = Config::load_from(
            None,
            &env(&[
                ("RAMPART_BACKUP_S3_BUCKET", "ok-bucket"),
                ("RAMPART_BACKUP_S3_ENDPOINT", "ftp://x"),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("backup.s3_endpoint"), "{err}");
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load_from(None, &[]).expect("defaults");
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.auth.access_token_ttl_secs, 900);
        assert!(c.database_url().ends_with("data/rampart.db"));
    }

    #[test]
    fn environment_overrides_file() {
        let dir = std::env::temp_dir().join(format!("rampart-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rampart.toml");
        std::fs::write(
            &file,
            "[http]\nlisten = \"0.0.0.0:9000\"\n[auth]\nissuer = \"file\"\n",
        )
        .unwrap();
        let c = Config::load_from(
            Some(&file),
            &env(&[
                ("RAMPART_AUTH_ISSUER", "env"),
                ("RAMPART_DATABASE_URL", "postgres://u:pw@h/db"),
                ("RAMPART_TEST_DATABASE_URL", "ignored"),
                ("PATH", "/bin"),
            ]),
        )
        .expect("load");
        assert_eq!(c.http.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.auth.issuer, "env");
        assert_eq!(c.database.url.expose(), "postgres://u:pw@h/db");
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("pw@"), "{shown}");
        assert!(shown.contains("postgres://u:[redacted]@h/db"), "{shown}");
    }

    #[test]
    fn digit_only_secrets_stay_text_with_leading_zeros() {
        for pin in ["1234", "0123", "007"] {
            let c =
                Config::load_from(None, &env(&[("RAMPART_CRYPTO_PKCS11_PIN", pin)])).expect("load");
            assert_eq!(c.crypto.pkcs11_pin.expose(), pin);
        }
    }

    #[test]
    fn lists_come_from_toml_arrays_or_comma_separated_variables() {
        let c = Config::load_from(
            None,
            &env(&[
                ("RAMPART_EDGE_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1"),
                ("RAMPART_VAULT_DETOKENIZE_PER_MINUTE", "7"),
            ]),
        )
        .expect("load");
        assert_eq!(c.edge.trusted_proxies, ["10.0.0.0/8", "192.168.1.1"]);
        assert_eq!(c.vault.detokenize_per_minute, 7);
        let err = Config::load_from(
            None,
            &env(&[("RAMPART_EDGE_TRUSTED_PROXIES", "10.0.0.0/99")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("edge.trusted_proxies"), "{err}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let err = Config::load_from(None, &env(&[("RAMPART_HTTP_LISTEN", "not-an-address")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`http.listen`"), "{err}");
        assert!(err.contains("RAMPART_HTTP_LISTEN"), "{err}");

        let err = Config::load_from(None, &env(&[("RAMPART_AUTH_ACCESS_TOKEN_TTL_SECS", "5")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.access_token_ttl_secs"), "{err}");
        assert!(err.contains("between 60 and 86400"), "{err}");
    }

    #[test]
    fn telemetry_is_off_by_default_and_checked() {
        let c = Config::load_from(None, &[]).expect("defaults");
        assert!(c.telemetry.otlp_endpoint.is_empty());
        assert_eq!(c.telemetry.sample_ratio, 1.0);
        let c = Config::load_from(
            None,
            &env(&[
                ("RAMPART_TELEMETRY_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("RAMPART_TELEMETRY_OTLP_PROTOCOL", "grpc"),
                ("RAMPART_TELEMETRY_SAMPLE_RATIO", "0.25"),
            ]),
        )
        .expect("telemetry from the environment");
        assert_eq!(c.telemetry.otlp_endpoint, "http://127.0.0.1:4317");
        assert_eq!(c.telemetry.otlp_protocol, "grpc");
        assert_eq!(c.telemetry.sample_ratio, 0.25);
        for (key, value, named) in [
            (
                "RAMPART_TELEMETRY_OTLP_PROTOCOL",
                "thrift",
                "telemetry.otlp_protocol",
            ),
            (
                "RAMPART_TELEMETRY_OTLP_ENDPOINT",
                "127.0.0.1:4318",
                "telemetry.otlp_endpoint",
            ),
            (
                "RAMPART_TELEMETRY_SAMPLE_RATIO",
                "1.5",
                "telemetry.sample_ratio",
            ),
        ] {
            let err = Config::load_from(None, &env(&[(key, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(named), "{err}");
        }
    }

    #[test]
    fn unknown_key_is_refused() {
        let err = Config::load_from(None, &env(&[("RAMPART_DATABSE_URL", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("databse_url"), "{err}");
    }

    #[test]
    fn tls_is_off_by_default_and_configured_by_environment() {
        let c = Config::load_from(None, &[]).expect("defaults");
        assert!(!c.tls.enabled());
        assert_eq!(c.tls.min_version, TlsVersionSetting::Tls13);
        assert_eq!(c.tls.client_auth, ClientAuthSetting::Off);

        let c = Config::load_from(
            None,
            &env(&[
                ("RAMPART_TLS_CERT_FILE", "/etc/rampart/cert.pem"),
                ("RAMPART_TLS_KEY_FILE", "/etc/rampart/key.pem"),
                ("RAMPART_TLS_MIN_VERSION", "1.2"),
                ("RAMPART_TLS_CLIENT_CA_FILE", "/etc/rampart/partners.pem"),
                ("RAMPART_TLS_CLIENT_AUTH", "required"),
            ]),
        )
        .expect("load");
        assert!(c.tls.enabled());
        assert_eq!(c.tls.min_version, TlsVersionSetting::Tls12);
        assert_eq!(c.tls.client_auth, ClientAuthSetting::Required);
        assert_eq!(c.tls.client_ca_file, Path::new("/etc/rampart/partners.pem"));
        // What `config show` prints loads back to the same settings.
        let shown = c.to_redacted_toml();
        assert!(shown.contains("min_version = \"1.2\""), "{shown}");
    }

    #[test]
    fn tls_min_version_accepts_an_unquoted_toml_number() {
        let dir = tempfile_dir("tls-version");
        let file = dir.join("rampart.toml");
        std::fs::write(&file, "[tls]\nmin_version = 1.2\n").unwrap();
        let c = Config::load_from(Some(&file), &[]).expect("load");
        assert_eq!(c.tls.min_version, TlsVersionSetting::Tls12);
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("rampart-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn tls_settings_that_do_not_fit_together_name_the_key() {
        for (vars, key) in [
            (&[("RAMPART_TLS_CERT_FILE", "c.pem")][..], "tls.key_file"),
            (&[("RAMPART_TLS_KEY_FILE", "k.pem")][..], "tls.cert_file"),
            (
                &[
                    ("RAMPART_TLS_CERT_FILE", "c.pem"),
                    ("RAMPART_TLS_KEY_FILE", "k.pem"),
                    ("RAMPART_TLS_CLIENT_AUTH", "optional"),
                ][..],
                "tls.client_ca_file",
            ),
            (
                &[
                    ("RAMPART_TLS_CLIENT_AUTH", "required"),
                    ("RAMPART_TLS_CLIENT_CA_FILE", "ca.pem"),
                ][..],
                "tls.client_auth",
            ),
            (
                &[
                    ("RAMPART_TLS_CERT_FILE", "c.pem"),
                    ("RAMPART_TLS_KEY_FILE", "k.pem"),
                    ("RAMPART_TLS_CLIENT_CA_FILE", "ca.pem"),
                ][..],
                "tls.client_auth",
            ),
            (&[("RAMPART_TLS_MIN_VERSION", "1.1")][..], "tls.min_version"),
            (
                &[("RAMPART_TLS_CLIENT_AUTH", "maybe")][..],
                "tls.client_auth",
            ),
        ] {
            let err = Config::load_from(None, &env(vars)).unwrap_err().to_string();
            assert!(err.contains(key), "{vars:?}: {err}");
        }
    }

    #[test]
    fn jobs_queues_parse_and_bad_jobs_settings_name_the_key() {
        let c = Config::load_from(
            None,
            &env(&[
                (
                    "RAMPART_JOBS_QUEUES",
                    "webhooks:8:50/s, backup:1,slow:2:30/m",
                ),
                ("RAMPART_JOBS_LEASE_SECS", "30"),
            ]),
        )
        .expect("load");
        assert_eq!(c.jobs.lease_secs, 30);
        let q = c.jobs.queue_settings().unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!((q[0].name.as_str(), q[0].concurrency), ("webhooks", 8));
        assert_eq!(q[0].per_second, Some(50.0));
        assert_eq!(q[1].per_second, None);
        assert_eq!(q[2].per_second, Some(0.5));
        for (var, value, key) in [
            ("RAMPART_JOBS_QUEUES", "webhooks", "jobs.queues"),
            ("RAMPART_JOBS_QUEUES", "webhooks:0", "jobs.queues"),
            ("RAMPART_JOBS_QUEUES", "webhooks:2:5/h", "jobs.queues"),
            ("RAMPART_JOBS_QUEUES", "a:1,a:2", "jobs.queues"),
            ("RAMPART_JOBS_LEASE_SECS", "1", "jobs.lease_secs"),
            ("RAMPART_JOBS_MAX_ATTEMPTS", "0", "jobs.max_attempts"),
            (
                "RAMPART_JOBS_POLL_INTERVAL_MS",
                "0",
                "jobs.poll_interval_ms",
            ),
            (
                "RAMPART_JOBS_BACKOFF_CAP_SECS",
                "1",
                "jobs.backoff_cap_secs",
            ),
        ] {
            let err = Config::load_from(None, &env(&[(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{var}={value}: {err}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::load_from(
            None,
            &env(&[(
                "RAMPART_CRYPTO_ROOT_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            )]),
        )
        .expect("load");
        assert!(!c.to_redacted_toml().contains("AAAA"));
        assert!(!format!("{c:?}").contains("AAAA"));
    }
}
