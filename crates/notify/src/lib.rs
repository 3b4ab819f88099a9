//! Notifications: one outbox for every channel, and the job that delivers from it.
//!
//! An app calls [`Notify::send`] with its own open transaction (or [`Notify::prepare`]
//! and hands the result to a store function that writes it in its transaction): the
//! notification and its delivery job are written there, so a notification exists if and
//! only if the change that caused it committed. Webhook events fan out to the tenant's
//! subscribed endpoints the same way (`Tx::publish_webhook_events` in the store).
//!
//! The `notify.deliver` job renders the template (Indonesian or English, text and HTML,
//! values escaped), opens what is sealed (the template data, a phone number, an endpoint
//! secret) and sends: e-mail over SMTP or to `.eml` files ([`mail`]), SMS through an
//! [`sms::SmsProvider`], webhooks signed per Standard Webhooks and with
//! `Rampart-Signature` ([`webhook`]). Each attempt is in the notification's row (the
//! delivery log: queued / sent / failed / dead, attempts, last status code and error);
//! the job queue retries with backoff and dead-letters; a resend queues it again. A
//! per-tenant, per-channel rate limit defers a tenant's excess without spending its
//! attempts, so one tenant cannot flood a provider.
//!
//! Delivery is at least once. A mail carries the notification id as its `Message-ID` and
//! a webhook as `webhook-id`, so a receiver can drop a repeat; a dedupe key stops the
//! same notification from being written twice.
//!
//! This crate does not know HTTP routes or callers (identity, above it, serves the
//! delivery log); it never logs a recipient, a token or a phone number.
#![forbid(unsafe_code)]

pub mod mail;
pub mod sms;
pub mod templates;
pub mod webhook;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rampart_crypto::envelope::Context;
use rampart_crypto::keyring::Keyring;
use rampart_edge::rate_limit::{Quota, RateLimiter};
use rampart_jobs::{JobContext, JobError, Jobs};
use rampart_store::notify::{NewNotification, Notification as Stored};
use rampart_store::{Store, StoreError, Tx};
use serde_json::Value;

pub use rampart_store::notify::{DELIVER_KIND, QUEUE};
pub use templates::{Locale, Rendered, Template, Templates, Text};

/// The keyring key template data is sealed under.
const DATA_KEY: &str = "notify";
/// Template data larger than this is refused (a 10 MB "name" does not reach the outbox).
pub const MAX_DATA_BYTES: usize = 16 * 1024;
/// The old payments job kind; jobs of it left in a queue are delivered by the same
/// handler.
pub const LEGACY_WEBHOOK_KIND: &str = "webhook.deliver";

/// The outcome of one delivery attempt, as transports report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Accepted (with the provider's status code, when it has one).
    Sent(Option<i64>),
    /// Failed; worth another attempt.
    Retry(Option<i64>, String),
    /// Will never succeed (a refused address, 410 Gone).
    Permanent(Option<i64>, String),
    /// The receiver asked to wait this long; no attempt is spent.
    Later(Option<i64>, String, Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Sms,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "email" => Some(Channel::Email),
            "sms" => Some(Channel::Sms),
            "webhook" => Some(Channel::Webhook),
            _ => None,
        }
    }
}

/// A message to send through the outbox.
#[derive(Clone)]
pub struct Notification {
    pub tenant: String,
    /// `Email` or `Sms`; webhooks are events (`Tx::publish_webhook_events`).
    pub channel: Channel,
    /// `Email`: the address. `Sms`: the user id (the number is their sealed phone).
    pub to: String,
    pub template: String,
    pub locale: Locale,
    /// The template's values (a JSON object). Sealed at rest: it may hold a link token.
    pub data: Value,
    /// A second notification of the tenant with the same key is not written.
    pub dedupe_key: Option<String>,
    /// What it is about, for the log's filters (never a secret).
    pub subject_id: Option<String>,
}

impl std::fmt::Debug for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notification")
            .field("channel", &self.channel)
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The caller's input cannot make this notification (a 4xx for a user's request).
    #[error("{field} {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("cannot seal the notification: {0}")]
    Keys(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> NotifyError {
    NotifyError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// How the service behaves (from `[notify]`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub public_url: String,
    pub webhook_allow_private: bool,
    pub webhook_timeout: Duration,
    pub email_per_minute: u32,
    pub sms_per_minute: u32,
    pub webhook_per_minute: u32,
    pub burst: u32,
    pub email_max_attempts: i64,
    pub sms_max_attempts: i64,
    /// What SMS gateway delivery-status callbacks are signed with (`[sms]`); empty: no
    /// callbacks are taken.
    pub sms_callback_secret: rampart_config::Secret<String>,
}

impl Settings {
    pub fn from_config(c: &rampart_config::Config) -> Settings {
        let n = &c.notify;
        Settings {
            public_url: n.public_url.trim_end_matches('/').to_string(),
            webhook_allow_private: n.webhook_allow_private_targets
                || c.payments.webhook_allow_private_targets,
            webhook_timeout: Duration::from_secs(n.webhook_timeout_secs),
            email_per_minute: n.email_per_minute,
            sms_per_minute: n.sms_per_minute,
            webhook_per_minute: n.webhook_per_minute,
            burst: n.burst,
            email_max_attempts: i64::from(n.email_max_attempts),
            sms_max_attempts: i64::from(n.sms_max_attempts),
            sms_callback_secret: c.sms.callback_secret.clone(),
        }
    }
}

/// The notification service of one node. Cheap to clone.
#[derive(Clone)]
pub struct Notify {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    keyring: Arc<Keyring>,
    templates: Templates,
    events: webhook::EventTypes,
    settings: Settings,
    limiter: RateLimiter,
    mail: mail::MailTransport,
    sms: Arc<dyn sms::SmsProvider>,
    /// Set once the job queue exists (it is built with this service's handler). Only
    /// its waker: holding the queue itself would be a cycle (queue → handler → this).
    jobs: OnceLock<rampart_jobs::Waker>,
}

fn data_context(tenant: &str, id: &str) -> Context {
    Context::new(tenant, "notifications", "sealed_data", id)
}

/// The context endpoint secrets are sealed with (tenant, table, column, endpoint id).
pub fn endpoint_secret_context(tenant: &str, endpoint: &str) -> Context {
    Context::new(tenant, "webhook_endpoints", "sealed_secret", endpoint)
}

/// The keyring key a tenant's endpoint secrets are sealed under.
pub fn endpoint_secret_key(tenant: &str) -> String {
    format!("webhook-{tenant}")
}

impl Notify {
    /// Makes the service and the keyring key it seals with, now: creating a key writes
    /// to the database, which must not happen inside a caller's open write transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn new(
        store: Store,
        keyring: Arc<Keyring>,
        templates: Templates,
        events: webhook::EventTypes,
        settings: Settings,
        limiter: RateLimiter,
        mail: mail::MailTransport,
        sms: Arc<dyn sms::SmsProvider>,
    ) -> Result<Notify, NotifyError> {
        keyring
            .seal(
                DATA_KEY,
                &data_context(rampart_store::PLATFORM_TENANT_ID, "warm-up"),
                b"",
            )
            .await
            .map_err(|e| NotifyError::Keys(e.to_string()))?;
        Ok(Notify {
            inner: Arc::new(Inner {
                store,
                keyring,
                templates,
                events,
                settings,
                limiter,
                mail,
                sms,
                jobs: OnceLock::new(),
            }),
        })
    }

    /// Lets [`Notify::wake`] wake this node's worker.
    pub fn attach_jobs(&self, jobs: &Jobs) {
        let _ = self.inner.jobs.set(jobs.waker());
    }

    /// Wakes this node's worker: call after the commit that wrote notifications, so
    /// they leave at once rather than at the next poll.
    pub fn wake(&self) {
        if let Some(waker) = self.inner.jobs.get() {
            waker.wake();
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn templates(&self) -> &Templates {
        &self.inner.templates
    }

    /// The webhook event types the apps registered.
    pub fn event_types(&self) -> &webhook::EventTypes {
        &self.inner.events
    }

    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.inner.keyring
    }

    /// What the service says at start: where mail and SMS go.
    pub fn describe(&self) -> (String, String) {
        (self.inner.mail.describe(), self.inner.sms.describe())
    }

    /// A link into this deployment (`notify.public_url` + `path`).
    pub fn link(&self, path: &str) -> String {
        format!("{}{path}", self.inner.settings.public_url)
    }

    /// Attempts of a channel's delivery job before the notification is dead.
    pub fn max_attempts(&self, channel: Channel) -> i64 {
        match channel {
            Channel::Email => self.inner.settings.email_max_attempts,
            Channel::Sms => self.inner.settings.sms_max_attempts,
            Channel::Webhook => rampart_store::notify::webhooks::MAX_ATTEMPTS,
        }
    }

    /// Checks and seals a notification, ready for a store function to write in its
    /// transaction. The template is rendered once here, so a value that cannot be sent
    /// (a line break that would reach a header, a missing field) is refused now, as the
    /// caller's error, not later as a dead letter.
    pub async fn prepare(&self, n: Notification) -> Result<NewNotification, NotifyError> {
        match n.channel {
            Channel::Email => {
                let email = rampart_store::Email::parse(&n.to).map_err(|e| invalid("to", e))?;
                if email.as_str().parse::<lettre::Address>().is_err() {
                    return Err(invalid("to", "is not a valid e-mail address"));
                }
            }
            Channel::Sms => {
                if n.to.is_empty() || n.to.len() > 64 {
                    return Err(invalid("to", "must name a user"));
                }
            }
            Channel::Webhook => {
                return Err(invalid("channel", "webhooks are sent as events"));
            }
        }
        if let Some(key) = &n.dedupe_key {
            if key.is_empty() || key.len() > 200 {
                return Err(invalid("dedupe_key", "must be 1 to 200 characters"));
            }
        }
        let data = serde_json::to_vec(&n.data).map_err(|e| invalid("data", e.to_string()))?;
        if data.len() > MAX_DATA_BYTES {
            return Err(invalid(
                "data",
                format!("is larger than {MAX_DATA_BYTES} bytes"),
            ));
        }
        self.inner
            .templates
            .render(&n.template, n.locale, &n.data)
            .map_err(|e| invalid("template", e.to_string()))?;
        let id = format!("ntf_{}", rampart_store::new_id());
        let sealed = self
            .inner
            .keyring
            .seal(DATA_KEY, &data_context(&n.tenant, &id), &data)
            .await
            .map_err(|e| NotifyError::Keys(e.to_string()))?;
        Ok(NewNotification {
            id,
            tenant_id: n.tenant,
            channel: n.channel.as_str().to_string(),
            recipient: email_or_id(n.channel, &n.to),
            template: n.template,
            locale: n.locale.as_str().to_string(),
            sealed_data: Some(sealed),
            body: None,
            subject_id: n.subject_id,
            dedupe_key: n.dedupe_key,
            max_attempts: self.max_attempts(n.channel),
        })
    }

    /// Writes `n` in the caller's transaction (the outbox). `None`: the tenant already
    /// has a notification with its dedupe key, and nothing was written. Call
    /// [`Notify::wake`] after the commit.
    pub async fn send<S>(
        &self,
        tx: &mut Tx<S>,
        n: Notification,
    ) -> Result<Option<String>, NotifyError> {
        let new = self.prepare(n).await?;
        Ok(tx.insert_notification(&new).await?)
    }

    /// The `notify.deliver` job handler.
    pub async fn deliver(self, ctx: JobContext, payload: Value) -> Result<(), JobError> {
        let id = payload["notification_id"]
            .as_str()
            .or_else(|| payload["delivery_id"].as_str())
            .ok_or_else(|| JobError::Permanent("payload names no notification".into()))?;
        let n = match self.inner.store.notification_for_send(id).await {
            Ok(n) => n,
            Err(StoreError::NotFound) => {
                return Err(JobError::Permanent(format!("no notification {id}")))
            }
            Err(e) => return Err(JobError::Retryable(e.to_string())),
        };
        // `delivered`: an SMS the gateway reported as received.
        if n.status == "sent" || n.status == "delivered" {
            return Ok(());
        }
        let Some(channel) = Channel::parse(&n.channel) else {
            return Err(JobError::Permanent(format!(
                "unknown channel {:?}",
                n.channel
            )));
        };
        let s = &self.inner.settings;
        let per_minute = match channel {
            Channel::Email => s.email_per_minute,
            Channel::Sms => s.sms_per_minute,
            Channel::Webhook => s.webhook_per_minute,
        };
        let decision = self
            .inner
            .limiter
            .check(
                "notify",
                &format!("{}:{}", n.tenant_id, channel.as_str()),
                Quota {
                    per_minute,
                    burst: s.burst,
                },
            )
            .await;
        if !decision.allowed {
            return Err(JobError::Deferred(Duration::from_secs(
                decision.retry_after_secs.max(1),
            )));
        }
        let attempt = match channel {
            Channel::Email => self.email(&n).await,
            Channel::Sms => self.sms(&n).await,
            Channel::Webhook => self.webhook(&n).await,
        };
        let last = ctx.attempt >= ctx.max_attempts;
        let failed = if last { "dead" } else { "failed" };
        let (status, code, error, outcome) = match attempt {
            Attempt::Sent(code) => ("sent", code, None, Ok(())),
            Attempt::Retry(code, e) => (failed, code, Some(e.clone()), Err(JobError::Retryable(e))),
            Attempt::Permanent(code, e) => {
                ("dead", code, Some(e.clone()), Err(JobError::Permanent(e)))
            }
            Attempt::Later(code, e, wait) => {
                ("failed", code, Some(e), Err(JobError::Deferred(wait)))
            }
        };
        self.inner
            .store
            .record_notification_attempt(&n.id, status, code, error.as_deref())
            .await
            .map_err(|e| JobError::Retryable(e.to_string()))?;
        outcome
    }

    async fn open_data(&self, n: &Stored) -> Result<Value, Attempt> {
        let Some(sealed) = &n.sealed_data else {
            return Ok(Value::Object(Default::default()));
        };
        let bytes = self
            .inner
            .keyring
            .open(&data_context(&n.tenant_id, &n.id), sealed)
            .await
            .map_err(|e| Attempt::Retry(None, format!("cannot open the template data: {e}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|_| Attempt::Permanent(None, "the template data is not JSON".into()))
    }

    async fn render(&self, n: &Stored) -> Result<Rendered, Attempt> {
        let data = self.open_data(n).await?;
        let locale = Locale::parse(&n.locale).unwrap_or(Locale::En);
        self.inner
            .templates
            .render(&n.template, locale, &data)
            .map_err(|e| Attempt::Permanent(None, e.to_string()))
    }

    async fn email(&self, n: &Stored) -> Attempt {
        match self.render(n).await {
            Ok(rendered) => self.inner.mail.send(&n.id, &n.recipient, &rendered).await,
            Err(a) => a,
        }
    }

    async fn sms(&self, n: &Stored) -> Attempt {
        let rendered = match self.render(n).await {
            Ok(r) => r,
            Err(a) => return a,
        };
        let sealed = match self
            .inner
            .store
            .sealed_phone_for_send(&n.tenant_id, &n.recipient)
            .await
        {
            Ok(Some(s)) => s,
            Ok(None) => return Attempt::Permanent(None, "the user has no phone number".into()),
            Err(e) => return Attempt::Retry(None, e.to_string()),
        };
        let context = Context::new(&n.tenant_id, "users", "sealed_phone", &n.recipient);
        let phone = match self.inner.keyring.open(&context, &sealed).await {
            Ok(p) => p,
            Err(e) => return Attempt::Retry(None, format!("cannot open the phone number: {e}")),
        };
        let Some(to) = std::str::from_utf8(&phone)
            .ok()
            .and_then(|p| sms::E164::parse(p).ok())
        else {
            return Attempt::Permanent(None, "the phone number is not E.164".into());
        };
        self.inner.sms.send(&n.id, &to, &rendered.text).await
    }

    async fn webhook(&self, n: &Stored) -> Attempt {
        let (endpoint, disabled) = match self
            .inner
            .store
            .webhook_endpoint_for_send(&n.recipient)
            .await
        {
            Ok(found) => found,
            Err(StoreError::NotFound) => {
                return Attempt::Permanent(None, "the endpoint does not exist".into())
            }
            Err(e) => return Attempt::Retry(None, e.to_string()),
        };
        if disabled {
            return Attempt::Permanent(None, "the endpoint was deleted".into());
        }
        if endpoint.suspended_at.is_some() {
            return Attempt::Permanent(None, "the endpoint is disabled".into());
        }
        let secret = match self
            .inner
            .keyring
            .open(
                &endpoint_secret_context(&endpoint.tenant_id, &endpoint.id),
                &endpoint.sealed_secret,
            )
            .await
        {
            Ok(s) => s,
            Err(e) => return Attempt::Retry(None, format!("cannot open the endpoint secret: {e}")),
        };
        let secret = String::from_utf8_lossy(&secret);
        let attempt = webhook::send(
            webhook::Delivery {
                id: &n.id,
                event: &n.template,
                url: &endpoint.url,
                secret: &secret,
                body: n.body.as_deref().unwrap_or("{}"),
            },
            self.inner.settings.webhook_timeout,
            self.inner.settings.webhook_allow_private,
        )
        .await;
        // 410 Gone (Standard Webhooks): the receiver wants no more deliveries. The
        // endpoint is disabled, shown so with the reason, until its tenant re-enables it.
        if let Attempt::Permanent(Some(410), _) = &attempt {
            match self
                .inner
                .store
                .suspend_webhook_endpoint(&endpoint.id, "the endpoint answered 410 Gone")
                .await
            {
                Ok(_) => tracing::warn!(
                    endpoint = %endpoint.id,
                    "webhook endpoint answered 410 Gone: disabled"
                ),
                // The delivery is dead either way; the next one will answer 410 again.
                Err(e) => tracing::warn!(
                    endpoint = %endpoint.id,
                    error = %e,
                    "cannot disable a webhook endpoint that answered 410 Gone"
                ),
            }
        }
        attempt
    }
}

/// E-mail addresses are kept as parsed (lower case); user ids as given.
fn email_or_id(channel: Channel, to: &str) -> String {
    match channel {
        Channel::Email => rampart_store::Email::parse(to)
            .map(|e| e.as_str().to_string())
            .unwrap_or_else(|_| to.to_string()),
        _ => to.to_string(),
    }
}
