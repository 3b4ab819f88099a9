//! E-mail: a message with a text and an HTML part, sent over SMTP (lettre, rustls with
//! the ring provider) or, without `[mail] host`, written to `data_dir/mail/` as an
//! `.eml` file, so the embedded default works with no server.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{header, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rampart_config::{MailConfig, MailSecurity};

use crate::templates::Rendered;
use crate::Attempt;

/// Where mail goes.
#[derive(Clone)]
pub enum MailTransport {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    Files {
        dir: PathBuf,
        from: Mailbox,
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
            return Ok(MailTransport::Files { dir, from });
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
        })
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
        let message = match message {
            Ok(m) => m,
            Err(e) => return Attempt::Permanent(None, format!("cannot build the message: {e}")),
        };
        match self {
            MailTransport::Smtp { transport, .. } => match transport.send(message).await {
                Ok(res) => Attempt::Sent(Some(i64::from(u16::from(res.code())))),
                Err(e) => {
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
