//! E-mail: a message with a text and an HTML part, sent over SMTP (lettre, rustls with
//! the ring provider) or, without `[mail] host`, written to `data_dir/mail/` as an
//! `.eml` file, so the embedded default works with no server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::HeaderName;

use lettre::message::{header, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rampart_config::{MailConfig, MailSecurity};
use tracing::Instrument;

use crate::templates::Rendered;
use crate::Attempt;

/// DKIM signing of outgoing mail: Ed25519 (RFC 8463), relaxed/relaxed, over From, To,
/// Subject, Date, Message-ID and MIME-Version (the body hash covers the parts).
pub struct Dkim {
    config: DkimConfig,
    /// The TXT record to publish at `<selector>._domainkey.<domain>`.
    pub record: String,
    pub selector: String,
    pub domain: String,
}

impl std::fmt::Debug for Dkim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dkim")
            .field("selector", &self.selector)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// The keyring input a DKIM key is derived from (under the MAC key `dkim`).
pub fn dkim_key_input(selector: &str, domain: &str) -> String {
    format!("dkim/ed25519/{domain}/{selector}")
}

impl Dkim {
    /// From the 32-byte Ed25519 seed (derived in the keyring by the caller).
    pub fn from_seed(selector: &str, domain: &str, seed: &[u8; 32]) -> Result<Dkim, String> {
        let key = DkimSigningKey::new(&STANDARD.encode(seed), DkimSigningAlgorithm::Ed25519)
            .map_err(|e| format!("the DKIM key: {e}"))?;
        let public = ed25519_dalek::SigningKey::from_bytes(seed)
            .verifying_key()
            .to_bytes();
        let headers = [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "MIME-Version",
            // Not Content-Type: lettre writes a multipart's Content-Type with the body, so
            // its signer does not see it among the headers (a signature listing it fails).
        ]
        .into_iter()
        .map(HeaderName::new_from_ascii_str)
        .collect();
        Ok(Dkim {
            config: DkimConfig::new(
                selector.to_string(),
                domain.to_string(),
                key,
                headers,
                DkimCanonicalization {
                    header: DkimCanonicalizationType::Relaxed,
                    body: DkimCanonicalizationType::Relaxed,
                },
            ),
            record: format!("v=DKIM1; k=ed25519; p={}", STANDARD.encode(public)),
            selector: selector.to_string(),
            domain: domain.to_string(),
        })
    }
}

/// Where mail goes.
#[derive(Clone)]
pub enum MailTransport {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
        dkim: Option<Arc<Dkim>>,
    },
    Files {
        dir: PathBuf,
        from: Mailbox,
        dkim: Option<Arc<Dkim>>,
    },
}

impl std::fmt::Debug for MailTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MailTransport::Smtp { .. } => f.write_str("MailTransport::Smtp"),
            MailTransport::Files { dir, .. } => {
                write!(f, "MailTransport::Files({})", dir.display())
            }
        }
    }
}

impl MailTransport {
    /// From `[mail]`; `data_dir` places the `.eml` folder when no host is set.
    pub fn from_config(
        c: &MailConfig,
        data_dir: &std::path::Path,
    ) -> Result<MailTransport, String> {
        let from: Mailbox = c
            .from
            .parse()
            .map_err(|e| format!("mail.from {:?} is not a mailbox: {e}", c.from))?;
        if c.host.is_empty() {
            let dir = if c.dir.is_empty() {
                data_dir.join("mail")
            } else {
                PathBuf::from(&c.dir)
            };
            return Ok(MailTransport::Files {
                dir,
                from,
                dkim: None,
            });
        }
        let builder = match c.security {
            MailSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.host)
                .map_err(|e| format!("mail.host: {e}"))?,
            MailSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&c.host)
                .map_err(|e| format!("mail.host: {e}"))?,
            // Validation allows this only to a loopback host.
            MailSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host),
        };
        let mut builder = builder
            .port(c.port)
            .timeout(Some(Duration::from_secs(c.timeout_secs)));
        if !c.username.is_empty() {
            builder = builder.credentials(Credentials::new(
                c.username.clone(),
                c.password.expose().to_string(),
            ));
        }
        Ok(MailTransport::Smtp {
            transport: builder.build(),
            from,
            dkim: None,
        })
    }

    /// Signs every mail with `dkim` from now on.
    pub fn with_dkim(mut self, signer: Dkim) -> MailTransport {
        match &mut self {
            MailTransport::Smtp { dkim, .. } | MailTransport::Files { dkim, .. } => {
                *dkim = Some(Arc::new(signer));
            }
        }
        self
    }

    fn dkim(&self) -> Option<&Dkim> {
        match self {
            MailTransport::Smtp { dkim, .. } | MailTransport::Files { dkim, .. } => dkim.as_deref(),
        }
    }

    /// What `rampart serve` says at start.
    pub fn describe(&self) -> String {
        match self {
            MailTransport::Smtp { .. } => "SMTP".into(),
            MailTransport::Files { dir, .. } => format!("files in {}", dir.display()),
        }
    }

    fn from(&self) -> &Mailbox {
        match self {
            MailTransport::Smtp { from, .. } | MailTransport::Files { from, .. } => from,
        }
    }

    /// Builds the message (`Message-ID` from the notification id, so a receiver can tell a
    /// retry from a new mail) and sends it.
    pub async fn send(&self, id: &str, to: &str, rendered: &Rendered) -> Attempt {
        let to: Mailbox = match to.parse() {
            Ok(to) => to,
            Err(_) => return Attempt::Permanent(None, "the recipient is not an address".into()),
        };
        let domain = self.from().email.domain().to_string();
        let message = Message::builder()
            .from(self.from().clone())
            .to(to)
            .subject(rendered.subject.clone())
            .message_id(Some(format!("<{id}@{domain}>")))
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(header::ContentType::TEXT_PLAIN)
                            .body(rendered.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(header::ContentType::TEXT_HTML)
                            .body(rendered.html.clone()),
                    ),
            );
        let mut message = match message {
            Ok(m) => m,
            Err(e) => return Attempt::Permanent(None, format!("cannot build the message: {e}")),
        };
        if let Some(dkim) = self.dkim() {
            message.sign(&dkim.config);
        }
        // The client span of the send: the notification id and the server's reply code,
        // never an address, a subject or the body.
        let span = tracing::info_span!(
            "mail.send",
            otel.name = "mail send",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rampart.mail.transport = match self {
                MailTransport::Smtp { .. } => "smtp",
                MailTransport::Files { .. } => "files",
            },
            rampart.notification_id = %id,
            rampart.smtp.reply_code = tracing::field::Empty,
        );
        let attempt = async {
            match self {
                MailTransport::Smtp { transport, .. } => match transport.send(message).await {
                    Ok(res) => {
                        span.record("rampart.smtp.reply_code", u16::from(res.code()));
                        Attempt::Sent(Some(i64::from(u16::from(res.code()))))
                    }
                    Err(e) => {
                        span.record("otel.status_code", "ERROR");
                        let code = e.status().map(|c| i64::from(u16::from(c)));
                        // lettre's message names the server's answer or the I/O cause; the
                        // message body (which may hold a link token) is not in it.
                        if e.is_permanent() {
                            Attempt::Permanent(code, format!("the SMTP server refused: {e}"))
                        } else {
                            Attempt::Retry(code, format!("SMTP: {e}"))
                        }
                    }
                },
                MailTransport::Files { dir, .. } => {
                    let bytes = message.formatted();
                    match write_file(dir, &format!("{id}.eml"), &bytes).await {
                        Ok(()) => Attempt::Sent(None),
                        Err(e) => Attempt::Retry(None, format!("cannot write the .eml file: {e}")),
                    }
                }
            }
        }
        .instrument(span.clone())
        .await;
        attempt
    }
}

/// Writes `name` in `dir` through a temporary file and a rename, so a reader never sees
/// half a message.
pub(crate) async fn write_file(
    dir: &std::path::Path,
    name: &str,
    bytes: &[u8],
) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let tmp = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, dir.join(name)).await
}
