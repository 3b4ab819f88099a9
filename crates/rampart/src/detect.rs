//! Security events into the database, and the detector that turns them into alerts.
//!
//! - [`store_security_events`]: every event the security log records is also queued
//!   (bounded, never blocking the request) to a task that writes them in batches to
//!   `security_events`, so the whole cluster's events are in one place.
//! - [`run_detector`]: on nodes that run jobs, a loop that holds the detector's lease
//!   (one node at a time, `detection_state`), reads events after its cursor, evaluates
//!   them at their own time with the Sigma rules (`rampart-detection`), and stores the
//!   alerts. A node that takes the lease over (the holder died or stopped) first replays
//!   the last hour before the cursor, so the correlation windows are whole again; alerts
//!   that replay raises again merge into the stored ones (`Store::record_alert`), so a
//!   take-over neither loses nor doubles an alert.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rampart_audit::security_log::{SecurityEvent, SecurityLog};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rampart_detection::{Alert, Detector, RuleError};
use rampart_notify::{Locale, Notify, Template, Text};
use rampart_store::detection::{AlertDelivery, NewAlert, NewSecurityEvent, SecurityEventRow};
use rampart_store::notify::webhooks::OutboxEvent;
use rampart_store::{Actor, RequestMeta, Store, PLATFORM_TENANT_ID};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Events waiting for the database at most; past it an event is kept only in the node's
/// file (and counted), so a slow database never holds a request.
const QUEUE: usize = 10_000;
/// Events written per transaction.
const BATCH: usize = 500;
/// How far back a node replays when it takes the lease: the longest window of the
/// built-in rules (mass export: 1 h).
pub const REPLAY_MS: i64 = 3_600_000;
/// A later alert of the same rule and group within this long of the last is the same
/// alert (one alert for an attack that goes on, with its count).
pub const MERGE_WITHIN_MS: i64 = 3_600_000;
/// The lease a detector holds; a node that dies is replaced after this long.
const LEASE_MS: i64 = 15_000;
/// Events evaluated per read.
const READ: i64 = 1_000;
/// How long the detector waits for a hole behind its cursor to fill. On PostgreSQL an
/// event's `seq` is taken at insert and seen at commit, so it can become visible after a
/// later one the detector has passed; each node's batch commits within milliseconds, and
/// two seconds covers a slow one. A hole that stays empty was a rolled-back insert.
const OVERLAP: Duration = Duration::from_secs(2);
/// Holes tracked at most (a larger gap is a batch that rolled back, or events purged).
const MAX_HOLES: usize = 10_000;

/// The detector's metrics.
#[derive(Clone, Default)]
pub struct DetectionMetrics {
    alerts: Family<AlertLabels, Counter>,
    suppressed: Family<RuleLabel, Counter>,
    digests: Counter,
    events: Counter,
    /// Now minus the time of the newest event evaluated, in seconds.
    lag_seconds: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    rule: String,
    level: String,
}

impl DetectionMetrics {
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> DetectionMetrics {
        let m = DetectionMetrics::default();
        registry.register(
            "rampart_alerts",
            "New alerts raised, by rule and level",
            m.alerts.clone(),
        );
        registry.register(
            "rampart_alerts_suppressed",
            "Rule matches a suppression kept quiet, by rule",
            m.suppressed.clone(),
        );
        registry.register(
            "rampart_alert_digests",
            "Alert digests sent (one per tenant and interval, by mail and webhook)",
            m.digests.clone(),
        );
        registry.register(
            "rampart_security_events_dropped",
            "Security events kept only in the node's log file: the database queue was full",
            DROPPED_METRIC.clone(),
        );
        registry.register(
            "rampart_detection_events",
            "Security events the detector evaluated on this node",
            m.events.clone(),
        );
        registry.register(
            "rampart_detection_lag_seconds",
            "Now minus the time of the newest event this node's detector evaluated",
            m.lag_seconds.clone(),
        );
        m
    }
}

/// Security events the queue was too full to take (they are in the node's file); every
/// thousandth is logged, and all are counted in `rampart_security_events_dropped_total`.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// The same count as a metric (a process has one security log, so one counter).
static DROPPED_METRIC: std::sync::LazyLock<Counter> = std::sync::LazyLock::new(Counter::default);

/// Attaches the database sink to `log` and starts the task that writes batches.
pub fn store_security_events(log: &SecurityLog, store: Store) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = mpsc::channel::<NewSecurityEvent>(QUEUE);
    let sink: rampart_audit::security_log::Sink = Arc::new(move |event: &SecurityEvent, at_ms| {
        let row = NewSecurityEvent {
            occurred_at: at_ms,
            event: event.event.clone(),
            severity: event.severity.to_string(),
            tenant_id: event.tenant_id.clone(),
            user_id: event.user_id.clone(),
            api_key_id: event.api_key_id.clone(),
            source_ip: event.source_ip.clone(),
            request_id: event.request_id.clone(),
            detail: event.detail.to_string(),
        };
        if tx.try_send(row).is_ok() {
            return true;
        }
        DROPPED_METRIC.inc();
        if DROPPED.fetch_add(1, Ordering::Relaxed).is_multiple_of(1000) {
            tracing::warn!("security events queue full: events kept only in the node's log file");
        }
        false
    });
    if !log.attach(sink) {
        tracing::warn!("the security log already has a sink");
    }
    let log = log.clone();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            if let Err(e) = store.insert_security_events(&batch).await {
                tracing::error!(error = %e, events = batch.len(), "cannot store security events; they are in the node's log file");
            }
            log.sink_done(batch.len() as u64);
            batch.clear();
        }
    })
}

/// Loads the configured rules: the built-in set and `rules_dir`. Start-up calls it once
/// so a rule that does not parse stops the node with its file, line and reason.
pub fn load_rules(config: &rampart_config::DetectionConfig) -> Result<Detector, RuleError> {
    let dir = (!config.rules_dir.is_empty()).then(|| Path::new(&config.rules_dir));
    Detector::load(config.builtin_rules, dir)
}

/// The mail a new high or critical alert sends to its tenant's admins (the platform
/// admins for a platform alert).
pub const ALERT_TEMPLATE: &str = "security.alert";
/// The webhook event a new alert publishes to its tenant's subscribed endpoints.
pub const ALERT_EVENT: &str = "alert.raised";
/// The mail that gathers a tenant's lower-level alerts, and those past the hourly limit.
pub const DIGEST_TEMPLATE: &str = "security.alert_digest";
/// The webhook event that does the same for endpoints.
pub const DIGEST_EVENT: &str = "alert.digest";

/// How alerts go out: the hourly limits per tenant and channel, and the digest's pace.
#[derive(Debug, Clone, Copy)]
pub struct AlertLimits {
    pub mail_per_hour: i64,
    pub webhook_per_hour: i64,
    pub digest_interval_ms: i64,
}

impl AlertLimits {
    pub fn from_config(c: &rampart_config::DetectionConfig) -> AlertLimits {
        AlertLimits {
            mail_per_hour: i64::from(c.mail_per_hour),
            webhook_per_hour: i64::from(c.webhook_per_hour),
            digest_interval_ms: i64::try_from(c.digest_interval_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
        }
    }
}

impl Default for AlertLimits {
    fn default() -> AlertLimits {
        AlertLimits::from_config(&rampart_config::DetectionConfig::default())
    }
}

const HOUR_MS: i64 = 3_600_000;

/// Detection's webhook event types.
pub fn register_events(registry: &mut rampart_notify::webhook::EventTypes) {
    registry.register(
        "detection",
        &[
            (
                ALERT_EVENT,
                "A detection rule raised an alert about the tenant (its level, rule, ATT&CK techniques and group).",
            ),
            (
                DIGEST_EVENT,
                "Alerts not sent one by one (past the hourly limit of alert.raised events) gathered in one event: their count and each alert.",
            ),
        ],
    );
}

/// Detection's mail.
pub fn templates() -> Vec<Template> {
    vec![Template {
        kind: ALERT_TEMPLATE,
        id: Text {
            subject: "[{{level}}] {{title}}",
            text: "Aturan deteksi {{rule_id}} memunculkan peringatan {{level}}: {{title}}.\n\n\
                   Kelompok: {{group}}\nPeristiwa terhitung: {{count}}\nTeknik ATT&CK: {{techniques}}\n\n\
                   Tinjau dan tangani di {{link}}\n",
            html: "<p>Aturan deteksi <code>{{rule_id}}</code> memunculkan peringatan \
                   <strong>{{level}}</strong>: {{title}}.</p><p>Kelompok: <code>{{group}}</code><br>\
                   Peristiwa terhitung: {{count}}<br>Teknik ATT&amp;CK: {{techniques}}</p>\
                   <p><a href=\"{{link}}\">Tinjau dan tangani</a></p>",
        },
        en: Text {
            subject: "[{{level}}] {{title}}",
            text: "The detection rule {{rule_id}} raised a {{level}} alert: {{title}}.\n\n\
                   Group: {{group}}\nEvents counted: {{count}}\nATT&CK techniques: {{techniques}}\n\n\
                   Review and handle it at {{link}}\n",
            html: "<p>The detection rule <code>{{rule_id}}</code> raised a \
                   <strong>{{level}}</strong> alert: {{title}}.</p><p>Group: <code>{{group}}</code><br>\
                   Events counted: {{count}}<br>ATT&amp;CK techniques: {{techniques}}</p>\
                   <p><a href=\"{{link}}\">Review and handle it</a></p>",
        },
        security: true,
    },
    Template {
        kind: DIGEST_TEMPLATE,
        id: Text {
            subject: "[Rampart] {{count}} peringatan keamanan",
            text: "{{count}} peringatan sejak ringkasan terakhir (tingkat menengah dan rendah, \
                   dan yang melewati batas surel per jam):\n\n{{summary}}\n\
                   Tinjau dan tangani di {{link}}\n",
            html: "<p>{{count}} peringatan sejak ringkasan terakhir (tingkat menengah dan rendah, \
                   dan yang melewati batas surel per jam):</p><pre>{{summary}}</pre>\
                   <p><a href=\"{{link}}\">Tinjau dan tangani</a></p>",
        },
        en: Text {
            subject: "[Rampart] {{count}} security alerts",
            text: "{{count}} alerts since the last digest (medium and low levels, and those \
                   past the hourly mail limit):\n\n{{summary}}\n\
                   Review and handle them at {{link}}\n",
            html: "<p>{{count}} alerts since the last digest (medium and low levels, and those \
                   past the hourly mail limit):</p><pre>{{summary}}</pre>\
                   <p><a href=\"{{link}}\">Review and handle them</a></p>",
        },
        security: true,
    }]
}

/// How a new alert goes out on each channel. Mail: high and critical at once while the
/// tenant's hourly limit allows, else (and for medium and low) in the digest;
/// informational alerts are in the console and the API only. Webhook (tenant alerts; the
/// platform has no endpoints): at once while the hourly limit allows, else in the digest.
async fn delivery_modes(
    store: &Store,
    limits: &AlertLimits,
    alert: &NewAlert,
    now_ms: i64,
) -> Result<(&'static str, &'static str), rampart_store::StoreError> {
    use rampart_store::detection::{Channel, DELIVERY_DIGEST, DELIVERY_IMMEDIATE, DELIVERY_NONE};
    let tenant = alert.tenant_id.as_deref();
    let mail = match alert.level.as_str() {
        "high" | "critical" => {
            let sent = store
                .alerts_sent_since(tenant, Channel::Mail, now_ms - HOUR_MS)
                .await?;
            if sent < limits.mail_per_hour {
                DELIVERY_IMMEDIATE
            } else {
                DELIVERY_DIGEST
            }
        }
        "medium" | "low" => DELIVERY_DIGEST,
        _ => DELIVERY_NONE,
    };
    let webhook = if tenant.is_none() {
        DELIVERY_NONE
    } else if store
        .alerts_sent_since(tenant, Channel::Webhook, now_ms - HOUR_MS)
        .await?
        < limits.webhook_per_hour
    {
        DELIVERY_IMMEDIATE
    } else {
        DELIVERY_DIGEST
    };
    Ok((mail, webhook))
}

/// The mails and the webhook event a new alert sends at once, as
/// [`delivery_modes`] decided.
async fn delivery(
    notify: Option<&Notify>,
    store: &Store,
    alert: &NewAlert,
    techniques: &[String],
) -> Result<AlertDelivery, String> {
    let Some(notify) = notify else {
        return Ok(AlertDelivery::default());
    };
    let mut out = AlertDelivery::default();
    let data = json!({
        "id": alert.id,
        "rule_id": alert.rule_id,
        "title": alert.title,
        "level": alert.level,
        "tenant_id": alert.tenant_id,
        "group": alert.group_key,
        "count": alert.event_count,
        "techniques": techniques.join(", "),
        "link": notify.link("/console/alerts"),
    });
    if alert.mail_delivery == rampart_store::detection::DELIVERY_IMMEDIATE {
        let recipients = store
            .alert_recipients(alert.tenant_id.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        for (user_id, email, locale) in recipients {
            let n = rampart_notify::Notification {
                tenant: alert
                    .tenant_id
                    .clone()
                    .unwrap_or_else(|| PLATFORM_TENANT_ID.to_string()),
                channel: rampart_notify::Channel::Email,
                to: email,
                template: ALERT_TEMPLATE.into(),
                locale: Locale::parse(&locale).unwrap_or(Locale::En),
                data: data.clone(),
                dedupe_key: Some(format!("alert:{}:{user_id}", alert.id)),
                subject_id: Some(alert.id.clone()),
            };
            out.notifications
                .push(notify.prepare(n).await.map_err(|e| e.to_string())?);
        }
    }
    if alert.tenant_id.is_some()
        && alert.webhook_delivery == rampart_store::detection::DELIVERY_IMMEDIATE
    {
        let body = json!({
            "id": format!("evt_{}", rampart_store::new_id()),
            "type": ALERT_EVENT,
            "created": rampart_store::now_ms() / 1000,
            "data": data,
        });
        out.webhook = Some(OutboxEvent {
            event: ALERT_EVENT,
            payment_id: alert.id.clone(),
            body: body.to_string(),
        });
    }
    Ok(out)
}

/// The JSON the rules read, from a stored event.
fn event_json(e: &SecurityEventRow) -> Value {
    json!({
        "id": e.id,
        "event": e.event,
        "severity": e.severity,
        "tenant_id": e.tenant_id,
        "user_id": e.user_id,
        "api_key_id": e.api_key_id,
        "source_ip": e.source_ip,
        "request_id": e.request_id,
        "detail": serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::Null),
    })
}

/// The alert to store: its tenant is the group's `tenant_id` when the rule groups by
/// tenant, else that of the events it counted, else none (a platform alert).
fn new_alert(alert: &Alert, event_tenant: Option<&str>) -> NewAlert {
    let tenant_id = alert
        .group
        .get("tenant_id")
        .filter(|t| !t.is_empty())
        .cloned()
        .or_else(|| event_tenant.map(str::to_string));
    NewAlert {
        id: format!("alr_{}", rampart_store::new_id()),
        rule_id: alert.rule_id.clone(),
        title: alert.title.clone(),
        level: alert.level.as_str().to_string(),
        tenant_id,
        group_key: serde_json::to_string(&alert.group).unwrap_or_default(),
        techniques: alert.techniques.clone(),
        event_count: alert.count as i64,
        event_ids: alert.event_ids.clone(),
        first_event_at: alert.first_seen_ms,
        last_event_at: alert.last_seen_ms,
        merge_within_ms: MERGE_WITHIN_MS,
        mail_delivery: rampart_store::detection::DELIVERY_NONE,
        webhook_delivery: rampart_store::detection::DELIVERY_NONE,
    }
}

/// Runs `detector` over the events stored in `[from_ms, to_ms)`, each at its own time,
/// handing every alert to `out`; stores nothing. Returns the events evaluated.
pub async fn replay(
    store: &Store,
    mut detector: Detector,
    from_ms: i64,
    to_ms: i64,
    mut out: impl FnMut(&Alert),
) -> Result<usize, rampart_store::StoreError> {
    let Some(first) = store.security_event_seq_at(from_ms).await? else {
        return Ok(0);
    };
    let (mut cursor, mut evaluated) = (first - 1, 0);
    loop {
        let events = store.security_events_after(cursor, READ).await?;
        let Some(last) = events.last() else { break };
        cursor = last.seq;
        for e in events
            .iter()
            .filter(|e| (from_ms..to_ms).contains(&e.occurred_at))
        {
            evaluated += 1;
            for alert in detector.observe(&event_json(e), e.occurred_at) {
                out(&alert);
            }
        }
        if (events.len() as i64) < READ {
            break;
        }
    }
    Ok(evaluated)
}

/// Counts of one evaluation step, for the log and the tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub events: usize,
    pub new_alerts: usize,
}

/// One detector: the rules' state and the cursor it has evaluated to.
pub struct Evaluator {
    detector: Detector,
    store: Store,
    /// Where new alerts are announced (none: stored only).
    notify: Option<Notify>,
    metrics: DetectionMetrics,
    limits: AlertLimits,
    cursor: i64,
    /// Sequence numbers behind the cursor not seen yet (an insert that had not committed
    /// when a later one was read), with when they were found missing: looked up again on
    /// every step for [`OVERLAP`]. Only the holes are re-read, never the events around
    /// them, so the cost of a step follows the new events.
    holes: std::collections::BTreeMap<i64, std::time::Instant>,
}

impl Evaluator {
    /// A detector that has replayed the `REPLAY_MS` before `cursor` (whose alerts merge
    /// into those stored), ready to evaluate what comes after it.
    pub async fn resume(
        detector: Detector,
        store: Store,
        notify: Option<Notify>,
        cursor: i64,
    ) -> Result<Evaluator, rampart_store::StoreError> {
        let mut ev = Evaluator {
            detector,
            store,
            notify,
            metrics: DetectionMetrics::default(),
            limits: AlertLimits::default(),
            cursor: 0,
            holes: Default::default(),
        };
        let newest = ev
            .store
            .security_events_after(cursor.saturating_sub(1), 1)
            .await?;
        let replay_from = match newest.first() {
            Some(e) if e.seq == cursor => ev
                .store
                .security_event_seq_at(e.occurred_at - REPLAY_MS)
                .await?
                .map(|s| s - 1),
            _ => None,
        };
        // The previous holder stored the alerts of every event up to the cursor before it
        // moved the cursor, so the replay only rebuilds the windows: its alerts are
        // dropped (an operator's resolved alert is not raised again).
        ev.cursor = replay_from.unwrap_or(cursor).min(cursor);
        while ev.cursor < cursor {
            if ev.evaluate(cursor, false).await?.events == 0 {
                break;
            }
        }
        // The replay's events are behind the cursor for good: not re-read.
        ev.cursor = cursor;
        ev.holes.clear();
        Ok(ev)
    }

    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Sends alerts within `limits` from now on.
    pub fn with_limits(mut self, limits: AlertLimits) -> Evaluator {
        self.limits = limits;
        self
    }

    /// Counts into `metrics` from now on.
    pub fn with_metrics(mut self, metrics: DetectionMetrics) -> Evaluator {
        self.metrics = metrics;
        self
    }

    /// Evaluates the next events (up to [`READ`]).
    pub async fn step(&mut self) -> Result<Step, rampart_store::StoreError> {
        self.evaluate(i64::MAX, true).await
    }

    /// Evaluates the events after the cursor up to `last`; stores the alerts when
    /// `record`.
    async fn evaluate(
        &mut self,
        last: i64,
        record: bool,
    ) -> Result<Step, rampart_store::StoreError> {
        let now = std::time::Instant::now();
        self.holes
            .retain(|_, found| now.duration_since(*found) <= OVERLAP);
        let mut step = Step::default();
        // The holes first: events that committed after a later one was evaluated.
        if !self.holes.is_empty() {
            let wanted: Vec<i64> = self.holes.keys().copied().take(READ as usize).collect();
            for e in self.store.security_events_with_seqs(&wanted).await? {
                if e.seq <= last && self.holes.remove(&e.seq).is_some() {
                    step.events += 1;
                    self.observe(&e, record, &mut step).await?;
                }
            }
        }
        let events = self.store.security_events_after(self.cursor, READ).await?;
        for e in events.iter().take_while(|e| e.seq <= last) {
            // A gap before this event: those inserts may still commit.
            if e.seq > self.cursor + 1 && self.cursor > 0 {
                for missing in (self.cursor + 1..e.seq).take(MAX_HOLES) {
                    self.holes.insert(missing, now);
                }
                while self.holes.len() > MAX_HOLES {
                    self.holes.pop_first();
                }
            }
            self.cursor = e.seq;
            step.events += 1;
            self.observe(e, record, &mut step).await?;
        }
        Ok(step)
    }

    /// Evaluates one event; stores its alerts when `record`.
    async fn observe(
        &mut self,
        e: &SecurityEventRow,
        record: bool,
        step: &mut Step,
    ) -> Result<(), rampart_store::StoreError> {
        {
            let alerts = self.detector.observe(&event_json(e), e.occurred_at);
            if !record {
                return Ok(());
            }
            self.metrics.events.inc();
            self.metrics
                .lag_seconds
                .set((rampart_store::now_ms() - e.occurred_at).max(0) / 1000);
            for alert in alerts {
                let mut new = new_alert(&alert, e.tenant_id.as_deref());
                // A suppression of this rule and group keeps the match quiet (and counts
                // it); nothing is stored or sent.
                if self
                    .store
                    .suppress_match(
                        new.tenant_id.as_deref(),
                        &new.rule_id,
                        &new.group_key,
                        e.occurred_at,
                    )
                    .await?
                {
                    self.metrics
                        .suppressed
                        .get_or_create(&RuleLabel {
                            rule: new.rule_id.clone(),
                        })
                        .inc();
                    continue;
                }
                if self.notify.is_some() {
                    (new.mail_delivery, new.webhook_delivery) =
                        delivery_modes(&self.store, &self.limits, &new, rampart_store::now_ms())
                            .await?;
                }
                let audit = rampart_audit::event(
                    Actor::System,
                    "alert.raise",
                    "alert",
                    RequestMeta::default(),
                )
                .changes(
                    json!({ "rule_id": new.rule_id, "level": new.level, "group": alert.group }),
                )
                .build();
                // A mail that cannot be prepared (no recipient address is ours to fix)
                // must not lose the alert: it is stored, and the failure logged.
                let send = delivery(self.notify.as_ref(), &self.store, &new, &alert.techniques)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, rule = %new.rule_id, "cannot prepare the alert's notifications");
                        AlertDelivery::default()
                    });
                let (stored, recorded) = self.store.record_alert(&new, audit, &send).await?;
                if recorded == rampart_store::detection::Recorded::New {
                    step.new_alerts += 1;
                    self.metrics
                        .alerts
                        .get_or_create(&AlertLabels {
                            rule: stored.rule_id.clone(),
                            level: stored.level.clone(),
                        })
                        .inc();
                    if let Some(n) = &self.notify {
                        n.wake();
                    }
                    tracing::warn!(
                        target: "rampart::security",
                        alert = %stored.id,
                        rule = %stored.rule_id,
                        level = %stored.level,
                        "alert raised"
                    );
                }
            }
        }
        Ok(())
    }
}

impl Evaluator {
    /// Sends the digests that are due: for each tenant (and the platform) whose oldest
    /// alert waiting has waited the digest interval, one mail to each recipient listing
    /// every waiting alert, and one `alert.digest` webhook event; returns how many
    /// tenants got one.
    pub async fn send_digests(&self) -> Result<usize, rampart_store::StoreError> {
        use rampart_store::detection::DELIVERY_DIGEST;
        let Some(notify) = &self.notify else {
            return Ok(0);
        };
        let now = rampart_store::now_ms();
        let mut sent = 0;
        for tenant in self
            .store
            .digests_due(now - self.limits.digest_interval_ms)
            .await?
        {
            let pending = self.store.digest_pending(tenant.as_deref()).await?;
            let mailed: Vec<&rampart_store::detection::AlertRow> = pending
                .iter()
                .filter(|a| a.mail_delivery == DELIVERY_DIGEST)
                .collect();
            let hooked: Vec<&rampart_store::detection::AlertRow> = pending
                .iter()
                .filter(|a| a.webhook_delivery == DELIVERY_DIGEST)
                .collect();
            let mut out = AlertDelivery::default();
            if let Some(first) = mailed.first() {
                let summary: String = mailed
                    .iter()
                    .map(|a| {
                        format!(
                            "[{}] {} ({}): {} events, {}\n",
                            a.level, a.title, a.rule_id, a.event_count, a.group_key
                        )
                    })
                    .collect();
                let data = json!({
                    "count": mailed.len(),
                    "summary": summary,
                    "link": notify.link("/console/alerts"),
                });
                let recipients = self.store.alert_recipients(tenant.as_deref()).await?;
                for (user_id, email, locale) in recipients {
                    let n = rampart_notify::Notification {
                        tenant: tenant
                            .clone()
                            .unwrap_or_else(|| PLATFORM_TENANT_ID.to_string()),
                        channel: rampart_notify::Channel::Email,
                        to: email,
                        template: DIGEST_TEMPLATE.into(),
                        locale: Locale::parse(&locale).unwrap_or(Locale::En),
                        data: data.clone(),
                        // The first alert of a digest is in no other: a retry after a
                        // failed commit sends the same digest once.
                        dedupe_key: Some(format!("alert-digest:{}:{user_id}", first.id)),
                        subject_id: Some(first.id.clone()),
                    };
                    match notify.prepare(n).await {
                        Ok(n) => out.notifications.push(n),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot prepare an alert digest mail")
                        }
                    }
                }
            }
            if let Some(first) = hooked.first() {
                let items: Vec<Value> = hooked
                    .iter()
                    .map(|a| {
                        json!({
                            "id": a.id,
                            "rule_id": a.rule_id,
                            "title": a.title,
                            "level": a.level,
                            "group": serde_json::from_str::<Value>(&a.group_key).unwrap_or_default(),
                            "count": a.event_count,
                        })
                    })
                    .collect();
                let body = json!({
                    "id": format!("evt_{}", rampart_store::new_id()),
                    "type": DIGEST_EVENT,
                    "created": now / 1000,
                    "data": { "count": items.len(), "alerts": items },
                });
                out.webhook = Some(OutboxEvent {
                    event: DIGEST_EVENT,
                    payment_id: first.id.clone(),
                    body: body.to_string(),
                });
            }
            let ids = |v: &[&rampart_store::detection::AlertRow]| -> Vec<String> {
                v.iter().map(|a| a.id.clone()).collect()
            };
            self.store
                .record_digest(tenant.as_deref(), &ids(&mailed), &ids(&hooked), &out)
                .await?;
            self.metrics.digests.inc();
            sent += 1;
        }
        if sent > 0 {
            notify.wake();
        }
        Ok(sent)
    }
}

/// The detector loop of a node that runs jobs: holds the lease when it can and evaluates
/// what arrived every `poll`.
pub async fn run_detector(
    store: Store,
    notify: Notify,
    config: rampart_config::DetectionConfig,
    metrics: DetectionMetrics,
    poll: Duration,
) {
    // The process id in the holder says which process holds the lease, for an operator
    // (and the cluster test, which kills it).
    let holder = format!("node_{}_{}", std::process::id(), rampart_store::new_id());
    let mut current: Option<Evaluator> = None;
    loop {
        match store
            .take_detector_lease(&holder, rampart_store::now_ms() + LEASE_MS)
            .await
        {
            Ok(Some(cursor)) => {
                if current.is_none() {
                    match load_rules(&config) {
                        Ok(detector) => {
                            match Evaluator::resume(
                                detector,
                                store.clone(),
                                Some(notify.clone()),
                                cursor,
                            )
                            .await
                            {
                                Ok(ev) => {
                                    tracing::info!(cursor, "detector lease taken; evaluating");
                                    current = Some(
                                        ev.with_metrics(metrics.clone())
                                            .with_limits(AlertLimits::from_config(&config)),
                                    );
                                }
                                Err(e) => tracing::warn!(error = %e, "detector cannot replay"),
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "detection rules no longer load"),
                    }
                }
                if let Some(ev) = current.as_mut() {
                    loop {
                        match ev.step().await {
                            Ok(step) if step.events > 0 => {
                                match store.advance_detector(&holder, ev.cursor()).await {
                                    Ok(true) => {}
                                    Ok(false) => {
                                        current = None;
                                        break;
                                    }
                                    Err(e) => {
                                        tracing::warn!(error = %e, "cannot move the detector's cursor");
                                        break;
                                    }
                                }
                                if (step.events as i64) < READ {
                                    break;
                                }
                            }
                            Ok(_) => break,
                            Err(e) => {
                                tracing::warn!(error = %e, "detector cannot read events");
                                break;
                            }
                        }
                    }
                }
                if let Some(ev) = current.as_ref() {
                    if let Err(e) = ev.send_digests().await {
                        tracing::warn!(error = %e, "cannot send alert digests");
                    }
                }
            }
            Ok(None) => current = None,
            Err(e) => tracing::warn!(error = %e, "cannot take the detector lease"),
        }
        // Stopped by abort at shutdown: the lease then lapses and another node takes over.
        tokio::time::sleep(poll).await;
    }
}
