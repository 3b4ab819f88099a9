//! `[mail]`: how e-mail leaves Rampart. With no `host`, mail is written to
//! `data_dir/mail/` as `.eml` files (the embedded default, announced at start), so a
//! fresh install works without an SMTP server.

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Secret};

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailSecurity {
    /// Plain connection upgraded with STARTTLS, refused if the server does not offer it
    /// (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only to a loopback host (a local relay, tests).
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// SMTP server; empty: write `.eml` files to `dir` instead.
    pub host: String,
    pub port: u16,
    pub security: MailSecurity,
    /// SMTP AUTH user; empty for none.
    pub username: String,
    pub password: Secret<String>,
    /// The `From` of every mail: `Name <address>` or an address.
    pub from: String,
    /// Connect and each SMTP command, at most.
    pub timeout_secs: u64,
    /// Where `.eml` files go without `host`; empty: `data_dir/mail`.
    pub dir: String,
    /// DKIM: the selector and the signing domain (`d=`), both set or both empty (no
    /// signing). The Ed25519 key is derived in the keyring (its MAC key `dkim`, never
    /// rotated), so nothing is stored; `rampart mail dkim-record` prints the TXT record
    /// to publish at `<selector>._domainkey.<domain>`. A new selector is a new key.
    pub dkim_selector: String,
    pub dkim_domain: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            host: String::new(),
            port: 587,
            security: MailSecurity::Starttls,
            username: String::new(),
            password: Secret::default(),
            from: "Rampart <no-reply@rampart.localhost>".into(),
            timeout_secs: 15,
            dir: String::new(),
            dkim_selector: String::new(),
            dkim_domain: String::new(),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl MailConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, value: &dyn ToString, allowed| ConfigError::Invalid {
            key,
            value: value.to_string(),
            allowed,
        };
        if self.from.contains(['\r', '\n']) || !self.from.contains('@') {
            return Err(invalid(
                "mail.from",
                &self.from,
                "it must be an e-mail address, optionally as `Name <address>`, on one line",
            ));
        }
        let label = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        match (self.dkim_selector.is_empty(), self.dkim_domain.is_empty()) {
            (true, true) => {}
            (false, false) => {
                if !label(&self.dkim_selector) {
                    return Err(invalid(
                        "mail.dkim_selector",
                        &self.dkim_selector,
                        "it must be DNS labels (letters, digits, `-`, dots between)",
                    ));
                }
                if !label(&self.dkim_domain) {
                    return Err(invalid(
                        "mail.dkim_domain",
                        &self.dkim_domain,
                        "it must be a domain name",
                    ));
                }
            }
            _ => {
                return Err(invalid(
                    "mail.dkim_selector",
                    &self.dkim_selector,
                    "mail.dkim_selector and mail.dkim_domain are set together",
                ))
            }
        }
        if self.host.is_empty() {
            return Ok(());
        }
        if self.port == 0 {
            return Err(invalid("mail.port", &self.port, "it must be 1 to 65535"));
        }
        if self.security == MailSecurity::None && !is_loopback(&self.host) {
            return Err(invalid(
                "mail.security",
                &"none",
                "mail leaves without TLS only to a loopback host; use starttls or tls",
            ));
        }
        if !(1..=300).contains(&self.timeout_secs) {
            return Err(invalid(
                "mail.timeout_secs",
                &self.timeout_secs,
                "it must be 1 to 300",
            ));
        }
        Ok(())
    }
}
