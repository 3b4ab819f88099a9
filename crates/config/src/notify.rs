//! `[notify]`: the notification outbox (`crates/notify`): links in mail, webhook
//! targets, per-tenant rate limits by channel, and attempts before a notification is dead.

use serde::{Deserialize, Serialize};

use crate::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Where links in mail point (verification, password reset): this deployment's
    /// public origin, e.g. `https://rampart.example.id`.
    pub public_url: String,
    /// Let webhook endpoints be `http://` on private or loopback addresses (development
    /// and tests). Off: webhooks go only to public `https://` URLs, and every address a
    /// name resolves to is checked when sending. `payments.webhook_allow_private_targets`
    /// still turns it on too.
    pub webhook_allow_private_targets: bool,
    /// How long a webhook receiver has to answer.
    pub webhook_timeout_secs: u64,
    /// Notifications each tenant may send per minute, by channel (all nodes together with
    /// Redis). Over the limit they wait their turn in the queue; nothing is dropped.
    pub email_per_minute: u32,
    pub sms_per_minute: u32,
    pub webhook_per_minute: u32,
    /// How far ahead of its rate a tenant may run, per channel.
    pub burst: u32,
    /// Delivery attempts before a notification is dead (webhooks: 25).
    pub email_max_attempts: u32,
    pub sms_max_attempts: u32,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            public_url: "http://127.0.0.1:8080".into(),
            webhook_allow_private_targets: false,
            webhook_timeout_secs: 10,
            email_per_minute: 600,
            sms_per_minute: 60,
            webhook_per_minute: 3000,
            burst: 100,
            email_max_attempts: 12,
            sms_max_attempts: 6,
        }
    }
}

impl NotifyConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, value: String, allowed| ConfigError::Invalid {
            key,
            value,
            allowed,
        };
        let url = self.public_url.trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url.contains(['\r', '\n', ' '])
        {
            return Err(invalid(
                "notify.public_url",
                self.public_url.clone(),
                "it must be an http(s):// origin",
            ));
        }
        for (key, v) in [
            ("notify.email_per_minute", self.email_per_minute),
            ("notify.sms_per_minute", self.sms_per_minute),
            ("notify.webhook_per_minute", self.webhook_per_minute),
            ("notify.burst", self.burst),
            ("notify.email_max_attempts", self.email_max_attempts),
            ("notify.sms_max_attempts", self.sms_max_attempts),
        ] {
            if v == 0 {
                return Err(invalid(key, v.to_string(), "it must be at least 1"));
            }
        }
        if !(1..=60).contains(&self.webhook_timeout_secs) {
            return Err(invalid(
                "notify.webhook_timeout_secs",
                self.webhook_timeout_secs.to_string(),
                "it must be 1 to 60",
            ));
        }
        Ok(())
    }
}
