//! `[sms]`: how text messages leave Rampart. The default (`provider = "file"`) writes
//! them to `data_dir/sms/`; `"http"` posts JSON to a gateway with an API key.

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Secret};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsProviderSetting {
    #[default]
    File,
    Http,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    pub provider: SmsProviderSetting,
    /// `http`: the gateway's send URL (`https://`, or `http://` to a loopback address).
    pub url: String,
    /// `http`: sent as `Authorization: Bearer <api_key>`.
    pub api_key: Secret<String>,
    /// The sender name or number the gateway shows.
    pub sender: String,
    pub timeout_secs: u64,
    /// `file`: where messages go; empty: `data_dir/sms`.
    pub dir: String,
    /// `http`: the shared secret the gateway signs delivery-status callbacks with
    /// (`X-Signature: sha256=<hex HMAC-SHA256 of the body>`, to
    /// `POST /api/v1/notify/sms/status`); empty: the callback route answers 404.
    pub callback_secret: Secret<String>,
}

impl Default for SmsConfig {
    fn default() -> Self {
        SmsConfig {
            provider: SmsProviderSetting::File,
            url: String::new(),
            api_key: Secret::default(),
            sender: "Rampart".into(),
            timeout_secs: 10,
            dir: String::new(),
            callback_secret: Secret::default(),
        }
    }
}

impl SmsConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.provider == SmsProviderSetting::Http {
            let loopback_http = self.url.starts_with("http://127.0.0.1")
                || self.url.starts_with("http://[::1]")
                || self.url.starts_with("http://localhost");
            if !(self.url.starts_with("https://") || loopback_http) {
                return Err(ConfigError::Invalid {
                    key: "sms.url",
                    value: self.url.clone(),
                    allowed: "it must be an https:// URL (http:// only to a loopback address)",
                });
            }
        }
        if !(1..=120).contains(&self.timeout_secs) {
            return Err(ConfigError::Invalid {
                key: "sms.timeout_secs",
                value: self.timeout_secs.to_string(),
                allowed: "it must be 1 to 120",
            });
        }
        Ok(())
    }
}
