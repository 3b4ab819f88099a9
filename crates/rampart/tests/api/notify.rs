//! Notifications as a user meets them: mail read back from a real SMTP server (aiosmtpd,
//! PyPI), webhooks verified by the Standard Webhooks library (PyPI `standardwebhooks`),
//! the outbox surviving an SMTP outage and a `kill -9`, and hostile input.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app, spawn_app_with, TestApp, STRONG_PASSWORD};

const PUBLIC_URL: &str = "http://rampart.test";
const NEW_PASSWORD: &str = "harbor violet engine quartz";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/api")
        .join(name)
}

/// Starts a Python helper and waits for its "ready" line.
fn start_python(args: &[&str]) -> std::process::Child {
    let mut child = std::process::Command::new("python3")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("python3 runs (.ci/run installs aiosmtpd and standardwebhooks)");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        "ready",
        "{args:?} did not start (pip install aiosmtpd standardwebhooks)"
    );
    child
}

/// aiosmtpd on a port of ours; each accepted message becomes a JSON file.
struct Smtp {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Smtp {
    fn start(port: u16) -> Smtp {
        let dir = tempfile::tempdir().unwrap();
        let child = start_python(&[
            script("smtp_sink.py").to_str().unwrap(),
            &port.to_string(),
            dir.path().to_str().unwrap(),
        ]);
        Smtp { child, dir }
    }

    fn mails(&self) -> Vec<Value> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    /// The mails once at least `n` arrived (waiting up to 30 s).
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..300 {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("expected {n} mails, got {}", self.mails().len());
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An app whose mail goes to 127.0.0.1:`port` over plain SMTP (loopback), with a fast
/// queue.
async fn app_mailing_to(port: u16, more: impl FnOnce(&mut rampart_config::Config)) -> TestApp {
    spawn_app_with(|c| {
        c.mail.host = "127.0.0.1".into();
        c.mail.port = port;
        c.mail.security = rampart_config::MailSecurity::None;
        c.mail.from = "Rampart <no-reply@rampart.test>".into();
        c.notify.public_url = PUBLIC_URL.into();
        c.jobs.poll_interval_ms = 100;
        c.jobs.backoff_base_secs = 1;
        c.jobs.backoff_cap_secs = 2;
        more(c);
    })
    .await
}

/// A community tenant that takes sign-ups; returns its id.
async fn open_community(app: &TestApp) -> String {
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let tenant = app.create_tenant(&root, "Amaturalist", "community").await;
    let res = app
        .client
        .put(app.url(&format!("/api/v1/tenants/{tenant}/signup")))
        .bearer_auth(&root)
        .json(&json!({"allow_signup": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    tenant
}

/// The first `prefix…` token in `text` (letters, digits, `-`, `_`).
fn token_in(text: &str, prefix: &str) -> String {
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix} in {text}"));
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

fn link_in(text: &str) -> String {
    let start = text
        .find(PUBLIC_URL)
        .unwrap_or_else(|| panic!("no link in {text}"));
    text[start..].split_whitespace().next().unwrap().to_string()
}

#[tokio::test]
async fn signup_mail_from_a_real_smtp_server_verifies_once_then_logs_in() {
    let port = free_port();
    let smtp = Smtp::start(port);
    let app = app_mailing_to(port, |_| {}).await;
    let tenant = open_community(&app).await;

    let res = app
        .client
        .post(app.url("/api/v1/auth/signup"))
        .header("accept-language", "id-ID,id;q=0.9,en;q=0.5")
        .json(&json!({"tenant_id": tenant, "email": "Budi@Example.id",
                      "name": "Budi <b>Santoso</b>", "password": STRONG_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(
        error_code(
            app.login("budi@example.id", STRONG_PASSWORD).await,
            StatusCode::FORBIDDEN
        )
        .await,
        "email_not_verified",
        "an unverified account cannot log in"
    );

    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail["rcpt_tos"], json!(["budi@example.id"]));
    assert_eq!(mail["headers"]["subject"], "Konfirmasi alamat e-mail Anda");
    assert!(mail["headers"]["message-id"]
        .as_str()
        .unwrap()
        .starts_with("<ntf_"));
    let (text, html) = (
        mail["text"].as_str().unwrap(),
        mail["html"].as_str().unwrap(),
    );
    assert!(text.contains("Halo Budi <b>Santoso</b>"), "{text}");
    assert!(html.contains("Budi &lt;b&gt;Santoso&lt;/b&gt;"), "{html}");
    assert!(!html.contains("<b>Santoso"), "{html}");

    // Follow the link (its origin is notify.public_url; this app listens elsewhere).
    let link = link_in(text);
    assert!(link.starts_with(&format!("{PUBLIC_URL}/api/v1/auth/verify-email?token=vfy_")));
    let local = link.replace(PUBLIC_URL, &app.base);
    let res = app.client.get(&local).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["verified"], true);
    assert_eq!(
        error_code(
            app.client.get(&local).send().await.unwrap(),
            StatusCode::BAD_REQUEST
        )
        .await,
        "invalid_link_token",
        "the same link twice fails"
    );
    app.tokens("budi@example.id").await;

    // A second sign-up with the same address gets the same answer, and no mail.
    let res = app
        .post(
            "/api/v1/auth/signup",
            None,
            &json!({"tenant_id": tenant, "email": "budi@example.id", "password": STRONG_PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    // A tenant that does not take sign-ups refuses.
    let res = app
        .post(
            "/api/v1/auth/signup",
            None,
            &json!({"tenant_id": rampart_store::PLATFORM_TENANT_ID,
                    "email": "eve@example.id", "password": STRONG_PASSWORD}),
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::FORBIDDEN).await,
        "signup_closed"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(smtp.mails().len(), 1, "no mail for a taken address");
}

#[tokio::test]
async fn password_reset_by_mail_ends_every_old_token_of_the_user() {
    let port = free_port();
    let smtp = Smtp::start(port);
    let app = app_mailing_to(port, |_| {}).await;
    let tenant = open_community(&app).await;
    app.create_user(&tenant, "ani@example.id", rampart_store::Role::Member)
        .await;
    let (access1, refresh1) = app.tokens("ani@example.id").await;
    let (access2, refresh2) = app.tokens("ani@example.id").await;

    let known = app
        .post(
            "/api/v1/auth/password-reset",
            None,
            &json!({"email": "ani@example.id"}),
        )
        .await;
    let unknown = app
        .post(
            "/api/v1/auth/password-reset",
            None,
            &json!({"email": "nobody@example.id"}),
        )
        .await;
    assert_eq!(known.status(), StatusCode::ACCEPTED);
    assert_eq!(unknown.status(), StatusCode::ACCEPTED);
    assert_eq!(
        known.json::<Value>().await.unwrap(),
        unknown.json::<Value>().await.unwrap(),
        "the same answer whether the account exists"
    );

    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail["rcpt_tos"], json!(["ani@example.id"]));
    assert_eq!(mail["headers"]["subject"], "Reset your password");
    let token = token_in(mail["text"].as_str().unwrap(), "rst_");

    let res = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            None,
            &json!({"token": token, "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    for refresh in [&refresh1, &refresh2] {
        assert_eq!(
            app.refresh(refresh).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    for access in [&access1, &access2] {
        assert_eq!(
            app.get("/api/v1/users/me", Some(access)).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        app.login("ani@example.id", STRONG_PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("ani@example.id", NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
    let again = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            None,
            &json!({"token": token, "password": "another fine long passphrase"}),
        )
        .await;
    assert_eq!(
        error_code(again, StatusCode::BAD_REQUEST).await,
        "invalid_link_token"
    );
    // The security notice follows; the unknown address got nothing.
    let mails = smtp.wait_for(2).await;
    assert_eq!(mails[1]["headers"]["subject"], "Your password was changed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(smtp.mails().len(), 2);
}

#[tokio::test]
async fn email_change_is_confirmed_from_the_new_address_once_and_noticed_at_the_old() {
    let port = free_port();
    let smtp = Smtp::start(port);
    let app = app_mailing_to(port, |_| {}).await;
    let tenant = open_community(&app).await;
    app.create_user(&tenant, "rina@example.id", rampart_store::Role::Member)
        .await;
    app.create_user(&tenant, "taken@example.id", rampart_store::Role::Member)
        .await;
    let (rina, _) = app.tokens("rina@example.id").await;
    let change = async |to: &str, password: &str| {
        app.post(
            "/api/v1/users/me/email",
            Some(&rina),
            &json!({"email": to, "password": password}),
        )
        .await
    };

    // The current password is required.
    assert_eq!(
        error_code(
            change("rina.baru@example.id", "not her password").await,
            StatusCode::UNAUTHORIZED
        )
        .await,
        "invalid_credentials"
    );
    assert_eq!(
        error_code(
            change("not an address", STRONG_PASSWORD).await,
            StatusCode::UNPROCESSABLE_ENTITY
        )
        .await,
        "invalid_field"
    );

    // A free address and a taken one get the same answer.
    let free = change("Rina.Baru@Example.id", STRONG_PASSWORD).await;
    assert_eq!(free.status(), StatusCode::ACCEPTED);
    let free: Value = free.json().await.unwrap();
    let mails = smtp.wait_for(2).await;
    let to = |who: &str| {
        mails
            .iter()
            .find(|m| m["rcpt_tos"] == json!([who]))
            .unwrap_or_else(|| panic!("no mail to {who}: {mails:?}"))
            .clone()
    };
    let link_mail = to("rina.baru@example.id");
    assert_eq!(
        link_mail["headers"]["subject"],
        "Confirm your new e-mail address"
    );
    let notice = to("rina@example.id");
    assert_eq!(
        notice["headers"]["subject"],
        "Your e-mail address is being changed"
    );
    assert!(notice["text"]
        .as_str()
        .unwrap()
        .contains("rina.baru@example.id"));
    assert!(
        !notice["raw"].as_str().unwrap().contains("eml_"),
        "the old address does not get the link"
    );
    let token = token_in(link_mail["text"].as_str().unwrap(), "eml_");

    let confirm = async |token: &str| {
        app.post(
            "/api/v1/auth/email-change/confirm",
            None,
            &json!({"token": token}),
        )
        .await
    };
    let res = confirm(&token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap()["email"],
        "rina.baru@example.id",
        "normalised like every address"
    );
    assert_eq!(
        error_code(confirm(&token).await, StatusCode::BAD_REQUEST).await,
        "invalid_link_token",
        "the link works once"
    );
    let me: Value = app
        .get("/api/v1/users/me", Some(&rina))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "rina.baru@example.id");
    assert_eq!(
        app.login("rina@example.id", STRONG_PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.tokens("rina.baru@example.id").await;

    let taken = change("taken@example.id", STRONG_PASSWORD).await;
    assert_eq!(taken.status(), StatusCode::ACCEPTED);
    assert_eq!(
        taken.json::<Value>().await.unwrap(),
        free,
        "a taken address gets the answer a free one does"
    );
    let mails = smtp.wait_for(4).await;
    let link_mail = mails
        .iter()
        .find(|m| m["rcpt_tos"] == json!(["taken@example.id"]))
        .unwrap();
    let token = token_in(link_mail["text"].as_str().unwrap(), "eml_");
    assert_eq!(
        error_code(confirm(&token).await, StatusCode::CONFLICT).await,
        "email_taken",
        "it fails at confirmation, clearly"
    );
    let me: Value = app
        .get("/api/v1/users/me", Some(&rina))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "rina.baru@example.id", "nothing changed");
    assert_eq!(
        error_code(confirm("eml_forged").await, StatusCode::BAD_REQUEST).await,
        "invalid_link_token"
    );
}

/// With `[mail] dkim_selector`/`dkim_domain`, mail arrives DKIM-signed, and the signature
/// verifies with an independent verifier (PyPI `dkimpy`) against the TXT record the CLI
/// (`rampart mail dkim-record`, another process) prints; a changed Subject does not.
#[tokio::test]
async fn mail_is_dkim_signed_and_verifies_with_dkimpy_against_the_printed_record() {
    let port = free_port();
    let smtp = Smtp::start(port);
    let app = app_mailing_to(port, |c| {
        c.mail.dkim_selector = "rp2026".into();
        c.mail.dkim_domain = "rampart.test".into();
    })
    .await;
    let tenant = open_community(&app).await;
    app.create_user(&tenant, "eka@example.id", rampart_store::Role::Member)
        .await;
    app.post(
        "/api/v1/auth/password-reset",
        None,
        &json!({"email": "eka@example.id"}),
    )
    .await;
    let mail = smtp.wait_for(1).await.remove(0);
    let raw = mail["raw"].as_str().unwrap();
    assert!(raw.contains("d=rampart.test"), "{raw}");
    assert!(raw.contains("s=rp2026"), "{raw}");

    let (ok, record, err) = app
        .cli_env(
            &["mail", "dkim-record"],
            &[
                ("RAMPART_MAIL_DKIM_SELECTOR", "rp2026"),
                ("RAMPART_MAIL_DKIM_DOMAIN", "rampart.test"),
            ],
        )
        .await;
    assert!(ok, "{err}");
    assert!(err.contains("rp2026._domainkey.rampart.test"), "{err}");
    let record = record.trim();
    assert!(record.starts_with("v=DKIM1; k=ed25519; p="), "{record}");

    let file = app.dir.path().join("dkim-mail.eml");
    std::fs::write(&file, raw.as_bytes()).unwrap();
    let out = std::process::Command::new("python3")
        .arg(script("dkim_verify.py"))
        .arg(&file)
        .arg("rp2026._domainkey.rampart.test")
        .arg(record)
        .output()
        .expect("python3 runs (.ci/run installs dkimpy and pynacl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["signed"], 1, "{verdict}");
    assert_eq!(
        verdict["verified"],
        true,
        "{verdict} {}\n{raw}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(verdict["tampered"], false, "{verdict}");

    // Off by default: a selector without a domain is refused at start.
    let bad = rampart_config::MailConfig {
        dkim_selector: "rp2026".into(),
        ..Default::default()
    };
    let mut config = app.config.clone();
    config.mail = bad;
    assert!(config.validate().is_err());
}

/// How many e-mail notifications are in each status.
async fn email_statuses(app: &TestApp) -> std::collections::HashMap<String, i64> {
    app.store
        .notification_status_counts("email")
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Waits until the minute is not about to turn, so two requests land in one window.
async fn away_from_a_minute_boundary() {
    let secs = (rampart_store::now_ms() / 1000) % 60;
    if secs >= 55 {
        tokio::time::sleep(Duration::from_secs(61 - secs as u64)).await;
    }
}

#[tokio::test]
async fn mail_queues_while_smtp_is_down_and_each_arrives_once() {
    let port = free_port();
    let app = app_mailing_to(port, |_| {}).await;
    let tenant = open_community(&app).await;
    let users = ["a1@example.id", "a2@example.id", "a3@example.id"];
    for u in users {
        app.create_user(&tenant, u, rampart_store::Role::Member)
            .await;
    }
    away_from_a_minute_boundary().await;
    for u in users.iter().chain(&["a1@example.id"]) {
        let res = app
            .post("/api/v1/auth/password-reset", None, &json!({"email": u}))
            .await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    // The server is down: attempts fail and stay in the log as failed.
    let mut failed = false;
    for _ in 0..100 {
        if email_statuses(&app)
            .await
            .get("failed")
            .copied()
            .unwrap_or(0)
            >= 1
        {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failed, "{:?}", email_statuses(&app).await);

    let smtp = Smtp::start(port);
    let mails = smtp.wait_for(3).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mails_after = smtp.mails();
    assert_eq!(
        mails_after.len(),
        3,
        "one mail per address, none twice: {mails:?}"
    );
    let mut to: Vec<String> = mails_after
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap().to_string())
        .collect();
    to.sort();
    assert_eq!(to, users);
    let statuses = email_statuses(&app).await;
    assert_eq!(statuses.get("sent"), Some(&3), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_committed_before_a_kill_9_is_delivered_once_after_restart_and_no_token_is_logged() {
    let port = free_port();
    // This process's own worker stays off: the `rampart serve` nodes deliver.
    let app = app_mailing_to(port, |c| c.jobs.enabled = false).await;
    let tenant = open_community(&app).await;
    let users: Vec<String> = (0..5).map(|i| format!("k{i}@example.id")).collect();
    for u in &users {
        app.create_user(&tenant, u, rampart_store::Role::Member)
            .await;
    }
    let port_text = port.to_string();
    let env = [
        ("RAMPART_MAIL_HOST", "127.0.0.1"),
        ("RAMPART_MAIL_PORT", port_text.as_str()),
        ("RAMPART_MAIL_SECURITY", "none"),
        ("RAMPART_MAIL_FROM", "no-reply@rampart.test"),
        ("RAMPART_NOTIFY_PUBLIC_URL", PUBLIC_URL),
        ("RAMPART_JOBS_POLL_INTERVAL_MS", "100"),
        ("RAMPART_JOBS_BACKOFF_BASE_SECS", "1"),
        ("RAMPART_JOBS_BACKOFF_CAP_SECS", "2"),
        ("RAMPART_JOBS_LEASE_SECS", "5"),
        ("RAMPART_LOG_LEVEL", "info"),
        ("RAMPART_EDGE_RATE_LIMIT_ENABLED", "false"),
    ];
    let log = app.dir.path().join("nodes.log");
    let mut node = app.spawn_node_logging(&env, Some(&log)).await;
    let http = reqwest::Client::new();
    for u in &users {
        let res = http
            .post(format!("{}/api/v1/auth/password-reset", node.base))
            .json(&json!({"email": u}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    // Committed: five notifications in the outbox, none delivered (SMTP is down).
    for _ in 0..100 {
        if email_statuses(&app).await.values().sum::<i64>() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let statuses = email_statuses(&app).await;
    assert_eq!(statuses.values().sum::<i64>(), 5, "{statuses:?}");
    assert_eq!(statuses.get("sent"), None);
    node.kill9();

    let smtp = Smtp::start(port);
    let _node2 = app.spawn_node_logging(&env, Some(&log)).await;
    smtp.wait_for(5).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mails = smtp.mails();
    let mut to: Vec<String> = mails
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap().to_string())
        .collect();
    to.sort();
    assert_eq!(to, users, "every mail once, none lost, none twice");

    // No token from the mails is in the nodes' logs or the security log.
    let mut logs = std::fs::read_to_string(&log).unwrap();
    for entry in std::fs::read_dir(app.dir.path().join("logs")).unwrap() {
        logs.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
    }
    assert!(
        logs.contains("database ready"),
        "the nodes' log was captured"
    );
    for m in &mails {
        let token = token_in(m["text"].as_str().unwrap(), "rst_");
        assert!(!logs.contains(&token), "a reset token reached a log");
    }
    assert!(!logs.contains("rst_"), "a reset token reached a log");
}

#[tokio::test]
async fn hostile_input_is_refused_or_escaped() {
    if crate::helpers::crs_everywhere() {
        // With CRS in front, these script payloads never reach a handler (941xxx, 403);
        // what is tested here is the escaping behind the WAF, in the runs without it.
        eprintln!("skipped with CRS in front of every app: CRS blocks the payloads first");
        return;
    }
    let port = free_port();
    let smtp = Smtp::start(port);
    let app = app_mailing_to(port, |_| {}).await;
    let tenant = open_community(&app).await;
    let signup = |body: Value| {
        let (client, url) = (app.client.clone(), app.url("/api/v1/auth/signup"));
        async move { client.post(url).json(&body).send().await.unwrap() }
    };
    // Header injection in a name and in an address.
    for (field, body) in [
        (
            "name",
            json!({"tenant_id": tenant, "email": "eve@example.id",
                   "name": "Eve\r\nBcc: all@example.id", "password": STRONG_PASSWORD}),
        ),
        (
            "email",
            json!({"tenant_id": tenant, "email": "eve@example.id\r\nBcc: all@example.id",
                   "password": STRONG_PASSWORD}),
        ),
        (
            "locale",
            json!({"tenant_id": tenant, "email": "eve@example.id",
                   "password": STRONG_PASSWORD, "locale": "xx-klingon"}),
        ),
    ] {
        let res = signup(body).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {text}");
        assert!(text.contains(field), "{text}");
    }
    // A 10 MB name.
    let huge = "n".repeat(10 * 1024 * 1024);
    let res = signup(json!({"tenant_id": tenant, "email": "big@example.id",
                            "name": huge, "password": STRONG_PASSWORD}))
    .await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // An unknown locale in Accept-Language falls back to English; script in every
    // templated field is escaped.
    let payload = "<script>alert(\"x\")</script><img src=x onerror=alert(1)>";
    let res = app
        .client
        .post(app.url("/api/v1/auth/signup"))
        .header("accept-language", "tlh")
        .json(&json!({"tenant_id": tenant, "email": "mallory@example.id",
                      "name": payload, "password": STRONG_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let res = app
        .post(
            "/api/v1/auth/password-reset",
            None,
            &json!({"email": "mallory@example.id", "locale": "klingon"}),
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await,
        "invalid_field"
    );
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail["headers"]["subject"], "Confirm your e-mail address");
    let html = mail["html"].as_str().unwrap();
    assert!(
        !html.contains("<script") && !html.contains("<img"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(!mail["header_names"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h == "bcc"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.mails().len(), 1, "nothing refused was sent");
}

#[tokio::test]
async fn without_a_mail_host_mail_is_written_as_eml_files_and_serve_says_so() {
    let app = spawn_app_with(|c| {
        c.jobs.poll_interval_ms = 100;
        c.notify.public_url = PUBLIC_URL.into();
    })
    .await;
    let tenant = open_community(&app).await;
    let res = app
        .post(
            "/api/v1/auth/signup",
            None,
            &json!({"tenant_id": tenant, "email": "sari@example.id", "password": STRONG_PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let dir = app.dir.path().join("mail");
    let mut eml = None;
    for _ in 0..100 {
        eml = std::fs::read_dir(&dir).ok().and_then(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "eml"))
        });
        if eml.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(eml.expect("an .eml file in data/mail")).unwrap();
    assert!(
        text.contains("Subject: Confirm your e-mail address"),
        "{text}"
    );
    assert!(text.contains("To: sari@example.id"), "{text}");
    assert!(text.contains("multipart/alternative"), "{text}");

    let log = app.dir.path().join("serve.log");
    let _node = app
        .spawn_node_logging(&[("RAMPART_LOG_LEVEL", "info")], Some(&log))
        .await;
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("mail.host is not set"), "{said}");
}

#[tokio::test]
async fn webhook_deliveries_verify_with_the_standard_webhooks_library() {
    let app = spawn_app_with(|c| {
        c.notify.webhook_allow_private_targets = true;
        c.jobs.poll_interval_ms = 100;
        c.jobs.backoff_base_secs = 1;
        c.jobs.backoff_cap_secs = 2;
    })
    .await;
    let (admin, key) = crate::payments::setup(&app).await;
    let endpoint = |port: u16| {
        let (client, url, admin) = (
            app.client.clone(),
            app.url("/api/v1/webhooks/endpoints"),
            admin.clone(),
        );
        async move {
            let res = client
                .post(url)
                .bearer_auth(admin)
                .json(&json!({"url": format!("http://127.0.0.1:{port}/hooks"),
                              "events": ["payment.captured"]}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::CREATED);
            res.json::<Value>().await.unwrap()
        }
    };
    let (good_port, bad_port) = (free_port(), free_port());
    let good = endpoint(good_port).await;
    let bad = endpoint(bad_port).await;
    let out = tempfile::tempdir().unwrap();
    let (good_log, bad_log) = (out.path().join("good.jsonl"), out.path().join("bad.jsonl"));
    // The second receiver holds the first endpoint's secret, so its deliveries must fail
    // verification: the library is really checking.
    let mut receivers = [
        (good["secret"].as_str().unwrap(), good_port, &good_log),
        (good["secret"].as_str().unwrap(), bad_port, &bad_log),
    ]
    .map(|(secret, port, log)| {
        start_python(&[
            script("webhook_receiver.py").to_str().unwrap(),
            secret,
            &port.to_string(),
            log.to_str().unwrap(),
        ])
    });
    assert_ne!(good["secret"], bad["secret"]);

    let paid = crate::payments::created(
        crate::payments::pay(
            &app,
            &key,
            None,
            &crate::payments::card_payment("4242424242424242", 5000, "192.0.2.61"),
        )
        .await,
    )
    .await;
    let lines = |path: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    for _ in 0..200 {
        if !lines(&good_log).is_empty() && !lines(&bad_log).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = lines(&good_log);
    assert_eq!(got[0]["verified"], true, "{got:?}");
    assert_eq!(got[0]["type"], "payment.captured");
    let refused = lines(&bad_log);
    assert_eq!(refused[0]["verified"], false, "{refused:?}");

    // The receiver writes its line before it answers, so the delivery's outcome is
    // recorded a moment after the line appears: wait for both outcomes (a failed CI run
    // read the log in between).
    let mut log = Value::Null;
    for _ in 0..100 {
        log = app
            .get("/api/v1/webhooks/deliveries", Some(&admin))
            .await
            .json()
            .await
            .unwrap();
        let settled = log
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "delivered" || !d["last_status_code"].is_null());
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let by_endpoint = |id: &Value| {
        log.as_array()
            .unwrap()
            .iter()
            .find(|d| d["endpoint_id"] == *id)
            .cloned()
            .unwrap()
    };
    let delivered = by_endpoint(&good["id"]);
    assert_eq!(delivered["status"], "delivered");
    assert_eq!(delivered["payment_id"], paid["id"]);
    assert_eq!(
        got[0]["webhook_id"], delivered["id"],
        "webhook-id is the delivery id"
    );
    let failing = by_endpoint(&bad["id"]);
    assert_eq!(failing["status"], "pending");
    assert_eq!(failing["last_status_code"], 400);

    // The log pages by `<created_at>.<id>` of the last delivery seen.
    let page = |query: String| {
        let (app, admin) = (&app, admin.clone());
        async move {
            app.get(
                &format!("/api/v1/webhooks/deliveries?{query}"),
                Some(&admin),
            )
            .await
        }
    };
    let first: Vec<Value> = page("limit=1".into()).await.json().await.unwrap();
    assert_eq!(first.len(), 1);
    let cursor = format!(
        "{}.{}",
        first[0]["created_at"],
        first[0]["id"].as_str().unwrap()
    );
    let second: Vec<Value> = page(format!("limit=5&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second[0]["id"], first[0]["id"]);
    let res = page("cursor=yesterday".into()).await;
    assert_eq!(
        crate::helpers::error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await,
        "invalid_field"
    );
    for r in &mut receivers {
        let _ = r.kill();
        let _ = r.wait();
    }
}

/// A receiver that answers every POST with the status in `status` and counts them.
async fn status_receiver(
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 65536];
            let _ = sock.read(&mut buf).await;
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let code = status.load(std::sync::atomic::Ordering::SeqCst);
            let _ = sock
                .write_all(
                    format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
        }
    });
    (port, hits)
}

#[tokio::test]
async fn an_endpoint_answering_410_gone_is_disabled_until_re_enabled() {
    use std::sync::atomic::Ordering::SeqCst;
    let app = spawn_app_with(|c| {
        c.notify.webhook_allow_private_targets = true;
        c.jobs.poll_interval_ms = 100;
        c.jobs.backoff_base_secs = 1;
        c.jobs.backoff_cap_secs = 2;
    })
    .await;
    let (admin, key) = crate::payments::setup(&app).await;

    // The registry: payments contributed its events; others are refused.
    let types: Value = app
        .get("/api/v1/webhooks/event-types", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        types
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "payment.captured" && t["app"] == "payments"),
        "{types}"
    );
    let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(410));
    let (port, hits) = status_receiver(status.clone()).await;
    let url = format!("http://127.0.0.1:{port}/hooks");
    let res = app
        .post(
            "/api/v1/webhooks/endpoints",
            Some(&admin),
            &json!({"url": url, "events": ["payment.captured", "user.nonsense"]}),
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await,
        "invalid_field"
    );
    let res = app
        .post(
            "/api/v1/webhooks/endpoints",
            Some(&admin),
            &json!({"url": url, "events": ["payment.captured"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let endpoint: Value = res.json().await.unwrap();
    let id = endpoint["id"].as_str().unwrap().to_string();
    assert_eq!(endpoint["status"], "enabled");

    let pay = async |ip: &str| {
        crate::payments::created(
            crate::payments::pay(
                &app,
                &key,
                None,
                &crate::payments::card_payment("4242424242424242", 5000, ip),
            )
            .await,
        )
        .await
    };
    let endpoints = async || -> Value {
        app.get("/api/v1/webhooks/endpoints", Some(&admin))
            .await
            .json()
            .await
            .unwrap()
    };
    let deliveries = async || -> Vec<Value> {
        let log: Value = app
            .get(
                &format!("/api/v1/webhooks/deliveries?endpoint_id={id}"),
                Some(&admin),
            )
            .await
            .json()
            .await
            .unwrap();
        log.as_array().unwrap().clone()
    };

    pay("192.0.2.71").await;
    until(
        "the 410 disables the endpoint",
        Duration::from_secs(30),
        async || endpoints().await[0]["status"] == "disabled",
    )
    .await;
    let listed = endpoints().await;
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(
        listed[0]["disabled_reason"],
        "the endpoint answered 410 Gone"
    );
    assert!(listed[0]["disabled_at"].is_string());
    let log = deliveries().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], "failed", "410 is not retried: {log:?}");
    assert_eq!(log[0]["last_status_code"], 410);
    assert_eq!(hits.load(SeqCst), 1);

    // Disabled: a new event makes no delivery to it, and nothing reaches the receiver.
    pay("192.0.2.72").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(deliveries().await.len(), 1);
    assert_eq!(hits.load(SeqCst), 1);

    // Re-enabled by its tenant: deliveries go again.
    status.store(204, SeqCst);
    let res = app
        .client
        .patch(app.url(&format!("/api/v1/webhooks/endpoints/{id}")))
        .bearer_auth(&admin)
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let now: Value = res.json().await.unwrap();
    assert_eq!(now["status"], "enabled");
    assert!(now.get("disabled_reason").is_none(), "{now}");
    pay("192.0.2.73").await;
    until(
        "a delivery after re-enabling",
        Duration::from_secs(30),
        async || {
            deliveries()
                .await
                .iter()
                .any(|d| d["status"] == "delivered")
        },
    )
    .await;
    assert_eq!(hits.load(SeqCst), 2);

    // And the tenant can disable it by hand, with its own reason.
    let res = app
        .client
        .patch(app.url(&format!("/api/v1/webhooks/endpoints/{id}")))
        .bearer_auth(&admin)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    let now: Value = res.json().await.unwrap();
    assert_eq!(now["status"], "disabled");
    assert_eq!(now["disabled_reason"], "disabled by the tenant");
}

/// A tenant admin's access token for `tenant`.
async fn tenant_admin(app: &TestApp, tenant: &str, email: &str) -> String {
    app.create_user(tenant, email, rampart_store::Role::TenantAdmin)
        .await;
    app.tokens(email).await.0
}

async fn notification_log(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let res = app
        .get(&format!("/api/v1/notifications{query}"), Some(token))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Vec<Value>>().await.unwrap()
}

#[tokio::test]
async fn dead_mail_is_resent_by_hand_from_the_delivery_log() {
    let port = free_port();
    let app = app_mailing_to(port, |c| c.notify.email_max_attempts = 2).await;
    let tenant = open_community(&app).await;
    let admin = tenant_admin(&app, &tenant, "admin@amaturalist.id").await;
    app.create_user(&tenant, "dewi@example.id", rampart_store::Role::Member)
        .await;
    let (member, _) = app.tokens("dewi@example.id").await;
    let res = app
        .post(
            "/api/v1/auth/password-reset",
            None,
            &json!({"email": "dewi@example.id"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mut dead = Vec::new();
    for _ in 0..150 {
        dead = notification_log(&app, &admin, "?status=dead").await;
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead.len(), 1, "two failed attempts make a dead letter");
    let n = &dead[0];
    assert_eq!(n["channel"], "email");
    assert_eq!(n["recipient"], "dewi@example.id");
    assert_eq!(n["attempts"], 2);
    assert!(n["last_error"].as_str().unwrap().contains("SMTP"), "{n}");
    assert!(!n.to_string().contains("rst_"), "no token in the log: {n}");
    assert_eq!(
        error_code(
            app.get("/api/v1/notifications", Some(&member)).await,
            StatusCode::FORBIDDEN
        )
        .await,
        "forbidden"
    );

    let smtp = Smtp::start(port);
    let id = n["id"].as_str().unwrap();
    let res = app
        .post(
            &format!("/api/v1/notifications/{id}/resend"),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail["rcpt_tos"], json!(["dewi@example.id"]));
    let mut sent = Vec::new();
    for _ in 0..50 {
        sent = notification_log(&app, &admin, "?status=sent").await;
        if !sent.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sent[0]["id"], id);
    assert_eq!(sent[0]["attempts"], 3);
    let res = app
        .post(
            "/api/v1/notifications/ntf_nope/resend",
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(error_code(res, StatusCode::NOT_FOUND).await, "not_found");
}

#[tokio::test]
async fn a_tenant_over_its_mail_rate_waits_its_turn_without_losing_mail() {
    let port = free_port();
    let smtp = Smtp::start(port);
    // 30 a minute: one every 2 s, two at once.
    let app = app_mailing_to(port, |c| {
        c.notify.email_per_minute = 30;
        c.notify.burst = 1;
    })
    .await;
    let tenant = open_community(&app).await;
    let users: Vec<String> = (0..4).map(|i| format!("r{i}@example.id")).collect();
    for u in &users {
        app.create_user(&tenant, u, rampart_store::Role::Member)
            .await;
    }
    let start = std::time::Instant::now();
    for u in &users {
        let res = app
            .post("/api/v1/auth/password-reset", None, &json!({"email": u}))
            .await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let early = smtp.mails().len();
    assert!(early <= 2, "{early} mails within 1.2 s at 30 a minute");
    smtp.wait_for(4).await;
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "paced, not at once"
    );
    let admin = tenant_admin(&app, &tenant, "admin@amaturalist.id").await;
    let log = notification_log(&app, &admin, "?channel=email").await;
    assert!(
        log.iter()
            .all(|n| n["status"] == "sent" && n["attempts"] == 1),
        "waiting spends no attempt: {log:?}"
    );
}

/// An SMS gateway of the common shape: JSON POST with a bearer key. Fails the first
/// request with 500, then accepts.
async fn sms_gateway(port: u16) -> std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>> {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, Value)>::new()));
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let state = (got.clone(), calls);
    let app = axum::Router::new().route(
        "/send",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (got, calls) = state.clone();
                async move {
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    got.lock()
                        .unwrap()
                        .push((auth, serde_json::from_slice(&body).unwrap()));
                    axum::http::StatusCode::ACCEPTED
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    got
}

#[tokio::test]
async fn security_notices_go_by_sms_when_chosen_and_by_mail_always() {
    let (smtp_port, sms_port) = (free_port(), free_port());
    let smtp = Smtp::start(smtp_port);
    let got = sms_gateway(sms_port).await;
    let app = app_mailing_to(smtp_port, |c| {
        c.sms.provider = rampart_config::SmsProviderSetting::Http;
        c.sms.url = format!("http://127.0.0.1:{sms_port}/send");
        c.sms.api_key = rampart_config::Secret::new("gateway-key".into());
        c.sms.callback_secret = rampart_config::Secret::new("callback-secret".into());
    })
    .await;
    let tenant = open_community(&app).await;
    app.create_user(&tenant, "tono@example.id", rampart_store::Role::Member)
        .await;
    let (token, _) = app.tokens("tono@example.id").await;
    let res = app
        .client
        .put(app.url("/api/v1/users/me/phone"))
        .bearer_auth(&token)
        .json(&json!({"phone": "+6281234567890"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let prefs: Value = app
        .get("/api/v1/users/me/notifications", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        prefs,
        json!({"kinds": {"security": {"email": true, "sms": false}}})
    );
    let put = |body: Value| {
        let (client, url, token) = (
            app.client.clone(),
            app.url("/api/v1/users/me/notifications"),
            token.clone(),
        );
        async move {
            client
                .put(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    for refused in [
        json!({"kinds": {"security": {"email": false}}}),
        json!({"kinds": {"marketing": {"email": true}}}),
        json!({"kinds": {"security": {"pigeon": true}}}),
    ] {
        assert_eq!(
            error_code(put(refused).await, StatusCode::UNPROCESSABLE_ENTITY).await,
            "invalid_field"
        );
    }
    let res = put(json!({"kinds": {"security": {"sms": true}}})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"kinds": {"security": {"email": true, "sms": true}}})
    );

    // A password reset sends the notice both ways.
    app.post(
        "/api/v1/auth/password-reset",
        None,
        &json!({"email": "tono@example.id"}),
    )
    .await;
    let mail = smtp.wait_for(1).await.remove(0);
    let reset = token_in(mail["text"].as_str().unwrap(), "rst_");
    let res = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            None,
            &json!({"token": reset, "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    smtp.wait_for(2).await;
    for _ in 0..100 {
        if !got.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (auth, sms) = got.lock().unwrap()[0].clone();
    assert_eq!(auth, "Bearer gateway-key");
    assert_eq!(sms["to"], "+6281234567890");
    assert!(sms["text"].as_str().unwrap().contains("password"), "{sms}");
    assert!(sms["reference"].as_str().unwrap().starts_with("ntf_"));

    // The log names the user, never the number; the first 500 was retried.
    let admin = tenant_admin(&app, &tenant, "admin@amaturalist.id").await;
    let log = notification_log(&app, &admin, "?channel=sms").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], "sent");
    assert_eq!(log[0]["attempts"], 2);
    assert!(!log[0].to_string().contains("6281234567890"), "{}", log[0]);
    let logs =
        std::fs::read_to_string(app.dir.path().join("logs/security.log")).unwrap_or_default();
    assert!(!logs.contains("6281234567890"));

    // The gateway's delivery receipt, signed with the shared secret (HMAC computed here
    // with the hmac crate, not Rampart's code), moves the log to `delivered`.
    let reference = sms["reference"].as_str().unwrap().to_string();
    let receipt = |status: &str, secret: &str| {
        use hmac::Mac;
        let body = json!({"reference": reference, "status": status,
                          "to": "+6281234567890", "error_code": "E42"})
        .to_string();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        app.client
            .post(app.url("/api/v1/notify/sms/status"))
            .header("content-type", "application/json")
            .header("x-signature", format!("sha256={hex}"))
            .body(body)
            .send()
    };
    assert_eq!(
        error_code(
            receipt("delivered", "not-the-secret").await.unwrap(),
            StatusCode::UNAUTHORIZED
        )
        .await,
        "invalid_signature"
    );
    assert_eq!(
        notification_log(&app, &admin, "?channel=sms").await[0]["status"],
        "sent",
        "an unsigned receipt changes nothing"
    );
    assert_eq!(
        error_code(
            receipt("teleported", "callback-secret").await.unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY
        )
        .await,
        "invalid_field"
    );
    let res = receipt("accepted", "callback-secret").await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        notification_log(&app, &admin, "?channel=sms").await[0]["status"],
        "sent",
        "a receipt that is not final changes nothing"
    );
    let res = receipt("delivered", "callback-secret").await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let log = notification_log(&app, &admin, "?channel=sms&status=delivered").await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["id"], reference.as_str());
    // Final once delivered: a later "failed" does not undo it.
    let res = receipt("failed", "callback-secret").await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        notification_log(&app, &admin, "?channel=sms").await[0]["status"],
        "delivered"
    );
}

/// A second SMS the gateway accepts and then reports undelivered is dead in the log,
/// with the gateway's reason; a receipt for no SMS is a 404; without a callback secret
/// the route is off.
#[tokio::test]
async fn an_sms_reported_undelivered_by_the_gateway_is_dead_in_the_log() {
    let (smtp_port, sms_port) = (free_port(), free_port());
    let smtp = Smtp::start(smtp_port);
    let got = sms_gateway(sms_port).await;
    let app = app_mailing_to(smtp_port, |c| {
        c.sms.provider = rampart_config::SmsProviderSetting::Http;
        c.sms.url = format!("http://127.0.0.1:{sms_port}/send");
        c.sms.callback_secret = rampart_config::Secret::new("callback-secret".into());
    })
    .await;
    let tenant = open_community(&app).await;
    app.create_user(&tenant, "wati@example.id", rampart_store::Role::Member)
        .await;
    let (token, _) = app.tokens("wati@example.id").await;
    let put = |path: &str, body: Value| {
        app.client
            .put(app.url(path))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    assert!(
        put("/api/v1/users/me/phone", json!({"phone": "+6281298765432"}))
            .await
            .unwrap()
            .status()
            .is_success()
    );
    assert!(put(
        "/api/v1/users/me/notifications",
        json!({"kinds": {"security": {"sms": true}}})
    )
    .await
    .unwrap()
    .status()
    .is_success());
    // A password reset sends its security notice by mail and SMS.
    app.post(
        "/api/v1/auth/password-reset",
        None,
        &json!({"email": "wati@example.id"}),
    )
    .await;
    let mail = smtp.wait_for(1).await.remove(0);
    let reset = token_in(mail["text"].as_str().unwrap(), "rst_");
    let res = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            None,
            &json!({"token": reset, "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    until("the SMS", Duration::from_secs(30), async || {
        !got.lock().unwrap().is_empty()
    })
    .await;
    let reference = got.lock().unwrap()[0].1["reference"]
        .as_str()
        .unwrap()
        .to_string();
    let send = |body: String, secret: &str| {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        app.client
            .post(app.url("/api/v1/notify/sms/status"))
            .header("content-type", "application/json")
            .header("x-signature", format!("sha256={hex}"))
            .body(body)
            .send()
    };
    let admin = tenant_admin(&app, &tenant, "admin@amaturalist.id").await;
    until(
        "the gateway accepted it",
        Duration::from_secs(30),
        async || notification_log(&app, &admin, "?channel=sms").await[0]["status"] == "sent",
    )
    .await;
    let res = send(
        json!({"reference": reference, "status": "undelivered", "error_code": "absent-subscriber"})
            .to_string(),
        "callback-secret",
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let log = notification_log(&app, &admin, "?channel=sms").await;
    assert_eq!(log[0]["status"], "dead", "{log:?}");
    assert_eq!(
        log[0]["last_error"],
        "the SMS gateway reported it undelivered (absent-subscriber)"
    );
    assert!(!log[0].to_string().contains("6281298765432"));
    let res = send(
        json!({"reference": "ntf_nothing", "status": "delivered"}).to_string(),
        "callback-secret",
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// A `rampart serve` node's whole log (at `debug`), after the SMS and mail flows (a phone
/// number set, a reset with its SMS and mail notice, the gateway's receipt, an e-mail
/// change): no phone number and no link token in it, nor in the security log.
#[tokio::test]
async fn no_phone_number_or_token_reaches_the_log_after_the_sms_and_mail_flows() {
    let (smtp_port, sms_port) = (free_port(), free_port());
    let smtp = Smtp::start(smtp_port);
    let got = sms_gateway(sms_port).await;
    let app = app_mailing_to(smtp_port, |c| c.jobs.enabled = false).await;
    let tenant = open_community(&app).await;
    app.create_user(&tenant, "dewi@example.id", rampart_store::Role::Member)
        .await;
    let (smtp_text, sms_url) = (
        smtp_port.to_string(),
        format!("http://127.0.0.1:{sms_port}/send"),
    );
    let env = [
        ("RAMPART_MAIL_HOST", "127.0.0.1"),
        ("RAMPART_MAIL_PORT", smtp_text.as_str()),
        ("RAMPART_MAIL_SECURITY", "none"),
        ("RAMPART_MAIL_FROM", "no-reply@rampart.test"),
        ("RAMPART_NOTIFY_PUBLIC_URL", PUBLIC_URL),
        ("RAMPART_SMS_PROVIDER", "http"),
        ("RAMPART_SMS_URL", sms_url.as_str()),
        ("RAMPART_SMS_API_KEY", "gateway-key"),
        ("RAMPART_SMS_CALLBACK_SECRET", "callback-secret"),
        ("RAMPART_JOBS_POLL_INTERVAL_MS", "100"),
        ("RAMPART_JOBS_BACKOFF_BASE_SECS", "1"),
        ("RAMPART_JOBS_BACKOFF_CAP_SECS", "2"),
        ("RAMPART_LOG_LEVEL", "debug"),
        ("RAMPART_EDGE_RATE_LIMIT_ENABLED", "false"),
    ];
    let log = app.dir.path().join("node.log");
    let node = app.spawn_node_logging(&env, Some(&log)).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", node.base);
    let login = async |email: &str, password: &str| -> String {
        let res = http
            .post(url("/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let token = login("dewi@example.id", STRONG_PASSWORD).await;
    for (path, body) in [
        ("/api/v1/users/me/phone", json!({"phone": "+6285712345678"})),
        (
            "/api/v1/users/me/notifications",
            json!({"kinds": {"security": {"sms": true}}}),
        ),
    ] {
        let res = http
            .put(url(path))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}");
    }
    let res = http
        .post(url("/api/v1/auth/password-reset"))
        .json(&json!({"email": "dewi@example.id"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mail = smtp.wait_for(1).await.remove(0);
    let reset = token_in(mail["text"].as_str().unwrap(), "rst_");
    let res = http
        .post(url("/api/v1/auth/password-reset/confirm"))
        .json(&json!({"token": reset, "password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    until("the SMS notice", Duration::from_secs(30), async || {
        !got.lock().unwrap().is_empty()
    })
    .await;
    let sms = got.lock().unwrap()[0].1.clone();
    assert_eq!(sms["to"], "+6285712345678");
    // The gateway's receipt (as gateways send them, with the number in it).
    let body = json!({"reference": sms["reference"], "status": "delivered",
                      "to": "+6285712345678"})
    .to_string();
    let signature = {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"callback-secret").unwrap();
        mac.update(body.as_bytes());
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sha256={hex}")
    };
    let res = http
        .post(url("/api/v1/notify/sms/status"))
        .header("content-type", "application/json")
        .header("x-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // An e-mail change: a link to the new address, a notice to the old.
    let token = login("dewi@example.id", NEW_PASSWORD).await;
    let res = http
        .post(url("/api/v1/users/me/email"))
        .bearer_auth(&token)
        .json(&json!({"email": "dewi.baru@example.id", "password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mails = smtp.wait_for(4).await;
    let change = mails
        .iter()
        .find(|m| m["rcpt_tos"][0] == "dewi.baru@example.id")
        .unwrap();
    let change = token_in(change["text"].as_str().unwrap(), "eml_");
    let res = http
        .post(url("/api/v1/auth/email-change/confirm"))
        .json(&json!({"token": change}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(node);

    let mut logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.contains("database ready") && logs.contains("DEBUG"),
        "the node's debug log was captured"
    );
    for entry in std::fs::read_dir(app.dir.path().join("logs")).unwrap() {
        logs.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
    }
    for secret in [
        "6285712345678",
        reset.as_str(),
        change.as_str(),
        "callback-secret",
        "gateway-key",
    ] {
        assert!(!logs.contains(secret), "{secret} reached a log");
    }
}

/// Done jobs of `queue`.
async fn done_jobs(app: &TestApp, queue: &str) -> usize {
    app.store
        .list_jobs(Some(queue), Some("done"), 100_000)
        .await
        .unwrap()
        .len()
}

async fn until(what: &str, deadline: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < deadline,
            "{what} not done within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `bench/notify.sh` runs this (it is ignored otherwise): notifications enqueued and
/// delivered per second to the local SMTP server (aiosmtpd) and to a webhook receiver,
/// beside the job queue's empty-job rate on the same store in the same run. Prints one
/// line per measure; asserts only that everything arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/notify.sh"]
async fn bench_notify_throughput() {
    let n: usize = std::env::var("RAMPART_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let concurrency = 8;
    let port = free_port();
    let smtp = Smtp::start(port);
    let app = app_mailing_to(port, |c| {
        c.jobs.poll_interval_ms = 50;
        c.jobs.queues = format!("notify:{concurrency}");
        c.notify.webhook_allow_private_targets = true;
        c.notify.email_per_minute = 10_000_000;
        c.notify.webhook_per_minute = 10_000_000;
        c.notify.burst = 10_000_000;
        c.edge.rate_limit_enabled = false;
        c.log.level = "warn".into();
    })
    .await;
    let rate = |count: usize, d: Duration| count as f64 / d.as_secs_f64();

    // 1. The job queue alone: empty jobs on their own queue, the same concurrency.
    let jobs = rampart_jobs::Jobs::builder(
        app.store.clone(),
        rampart_jobs::Settings {
            poll_interval: Duration::from_millis(50),
            queues: [(
                "bench".to_string(),
                rampart_jobs::QueueLimits {
                    concurrency,
                    per_second: None,
                },
            )]
            .into(),
            ..rampart_jobs::Settings::default()
        },
    )
    .handler("bench", "bench.empty", |_, _| async { Ok(()) })
    .build();
    let t = std::time::Instant::now();
    for _ in 0..n {
        jobs.enqueue(rampart_jobs::Job::new("bench", "bench.empty", json!({})))
            .await
            .unwrap();
    }
    let job_enqueue = rate(n, t.elapsed());
    let t = std::time::Instant::now();
    let worker = jobs.start().await.unwrap();
    until("empty jobs", Duration::from_secs(600), async || {
        done_jobs(&app, "bench").await >= n
    })
    .await;
    let job_run = rate(n, t.elapsed());
    worker.shutdown(Duration::from_secs(5)).await;
    println!("bench: empty jobs: enqueued {job_enqueue:.0}/s, run {job_run:.0}/s (n={n}, concurrency {concurrency})");

    // 2. Mail to aiosmtpd: each enqueue seals its data and commits alone.
    let tenant = open_community(&app).await;
    let notify = app.identity.notify();
    let t = std::time::Instant::now();
    for i in 0..n {
        let prepared = notify
            .prepare(rampart_notify::Notification {
                tenant: tenant.clone(),
                channel: rampart_notify::Channel::Email,
                to: format!("b{i}@example.id"),
                template: rampart_identity::account::VERIFY_EMAIL.into(),
                locale: rampart_notify::Locale::En,
                data: json!({"name": format!("Bench {i}"), "link": "http://rampart.test/x"}),
                dedupe_key: None,
                subject_id: None,
            })
            .await
            .unwrap();
        app.store.enqueue_notification(&prepared).await.unwrap();
        notify.wake();
    }
    let mail_enqueue = rate(n, t.elapsed());
    until("mail", Duration::from_secs(600), async || {
        smtp.mails().len() >= n
    })
    .await;
    let mail_delivered = rate(n, t.elapsed());
    println!(
        "bench: mail (SMTP, aiosmtpd): enqueued {mail_enqueue:.0}/s, delivered {mail_delivered:.0}/s; \
         ratio delivered ÷ empty-job run = {:.2}",
        mail_delivered / job_run
    );

    // 3. Webhooks to an in-test receiver answering 204.
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let receiver = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, receiver).await.ok() });
    let (admin, _key) = crate::payments::setup_with_root(&app).await;
    let res = app
        .post(
            "/api/v1/webhooks/endpoints",
            Some(&admin),
            &json!({"url": format!("http://127.0.0.1:{hook_port}/hooks"), "events": ["payment.captured"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let endpoint: Value = res.json().await.unwrap();
    let shop = app
        .store
        .webhook_endpoint_for_send(endpoint["id"].as_str().unwrap())
        .await
        .unwrap()
        .0
        .tenant_id;
    let t = std::time::Instant::now();
    for i in 0..n {
        app.store
            .publish_webhook_events(
                &shop,
                &[rampart_store::notify::webhooks::OutboxEvent {
                    event: "payment.captured",
                    payment_id: format!("txn_bench_{i}"),
                    body: json!({"id": format!("evt_{i}"), "type": "payment.captured"}).to_string(),
                }],
            )
            .await
            .unwrap();
        notify.wake();
    }
    let hook_enqueue = rate(n, t.elapsed());
    until("webhooks", Duration::from_secs(600), async || {
        hits.load(std::sync::atomic::Ordering::SeqCst) >= n
    })
    .await;
    let hook_delivered = rate(n, t.elapsed());
    println!(
        "bench: webhooks (signed, resolved, POST): enqueued {hook_enqueue:.0}/s, delivered {hook_delivered:.0}/s; \
         ratio delivered ÷ empty-job run = {:.2}",
        hook_delivered / job_run
    );
}

#[tokio::test]
async fn security_notices_on_api_keys_mfa_and_logins_from_new_devices() {
    if crate::helpers::crs_everywhere() {
        // With CRS in front, these script payloads never reach a handler (941xxx, 403);
        // what is tested here is the escaping behind the WAF, in the runs without it.
        eprintln!("skipped with CRS in front of every app: CRS blocks the payloads first");
        return;
    }
    let port = free_port();
    let smtp = Smtp::start(port);
    let app = app_mailing_to(port, |_| {}).await;
    let tenant = open_community(&app).await;
    // The first login of an account records its device and mails nothing.
    let admin = tenant_admin(&app, &tenant, "lead@amaturalist.id").await;
    let subjects = |mails: &[Value]| -> Vec<String> {
        mails
            .iter()
            .filter(|m| m["rcpt_tos"][0] == "lead@amaturalist.id")
            .map(|m| m["headers"]["subject"].as_str().unwrap().to_string())
            .collect()
    };

    let res = app
        .post(
            "/api/v1/api-keys",
            Some(&admin),
            &json!({"name": "<img src=x onerror=alert(1)>", "scopes": ["audit:read"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail["headers"]["subject"], "A new API key was created");
    let html = mail["html"].as_str().unwrap();
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;") && !html.contains("<img"),
        "{html}"
    );

    let enrolment: Value = app
        .post("/api/v1/auth/mfa/totp/enroll", Some(&admin), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let secret = crate::helpers::base32_decode(enrolment["secret"].as_str().unwrap());
    let step = jsonwebtoken::get_current_timestamp() / rampart_identity::totp::STEP_SECS;
    let res = app
        .post(
            "/api/v1/auth/mfa/totp/confirm",
            Some(&admin),
            &json!({"code": rampart_identity::totp::code_at(&secret, step)}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    smtp.wait_for(2).await;

    // Another user agent is another device: a notice. The same one again: none.
    app.create_user(&tenant, "lead2@amaturalist.id", rampart_store::Role::Member)
        .await;
    app.tokens("lead2@amaturalist.id").await;
    for _ in 0..2 {
        let res = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("user-agent", "Firefox/140 (field tablet)")
            .json(&json!({"email": "lead2@amaturalist.id", "password": STRONG_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let mails = smtp.wait_for(3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mails_after = smtp.mails();
    assert_eq!(mails_after.len(), 3, "{mails:?}");
    assert_eq!(
        subjects(&mails_after),
        [
            "A new API key was created",
            "Two-step verification was turned on"
        ]
    );
    let device = &mails_after[2];
    assert_eq!(device["rcpt_tos"], json!(["lead2@amaturalist.id"]));
    assert_eq!(device["headers"]["subject"], "Login from a new device");
    let text = device["text"].as_str().unwrap();
    assert!(
        text.contains("Firefox/140 (field tablet)") && text.contains("127.0.0.0/24"),
        "{text}"
    );
}

#[tokio::test]
async fn a_tenant_has_at_most_sixteen_webhook_endpoints() {
    let app = spawn_app().await;
    let (admin, _) = crate::payments::setup(&app).await;
    let create = |n: usize| {
        let (app, admin) = (&app, admin.clone());
        async move {
            app.post(
                "/api/v1/webhooks/endpoints",
                Some(&admin),
                &json!({"url": format!("https://hooks{n}.example/in"), "events": ["payment.captured"]}),
            )
            .await
        }
    };
    for n in 0..16 {
        assert_eq!(
            create(n).await.status(),
            StatusCode::CREATED,
            "endpoint {n}"
        );
    }
    assert_eq!(
        crate::helpers::error_code(create(16).await, StatusCode::CONFLICT).await,
        "too_many_endpoints"
    );
    let listed: Vec<Value> = app
        .get("/api/v1/webhooks/endpoints", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 16);
}

/// The end-to-end check: a scripted spray against a running server gives one
/// alert, one mail read back from a real SMTP server (aiosmtpd) and one webhook that the
/// Standard Webhooks library verifies, not one per failed login.
#[tokio::test]
async fn a_password_spray_sends_one_mail_over_smtp_and_one_verified_webhook() {
    let smtp_port = free_port();
    let smtp = Smtp::start(smtp_port);
    let app = app_mailing_to(smtp_port, |c| {
        c.notify.webhook_allow_private_targets = true;
    })
    .await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let tenant = app.create_tenant(&root, "Sprayed", "merchant").await;
    app.create_user(
        &tenant,
        "boss@sprayed.example",
        rampart_store::Role::TenantAdmin,
    )
    .await;
    let (boss, _) = app.tokens("boss@sprayed.example").await;
    for n in 0..6 {
        app.create_user(
            &tenant,
            &format!("staff{n}@sprayed.example"),
            rampart_store::Role::Member,
        )
        .await;
    }
    let hook_port = free_port();
    let res = app
        .post(
            "/api/v1/webhooks/endpoints",
            Some(&boss),
            &json!({"url": format!("http://127.0.0.1:{hook_port}/hooks"), "events": ["alert.raised"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let endpoint: Value = res.json().await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("hooks.jsonl");
    // Killed when the test ends, passed or not.
    struct Receiver(std::process::Child);
    impl Drop for Receiver {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _receiver = Receiver(start_python(&[
        script("webhook_receiver.py").to_str().unwrap(),
        endpoint["secret"].as_str().unwrap(),
        &hook_port.to_string(),
        log.to_str().unwrap(),
    ]));

    // The script: one wrong password at each of six accounts from one address (under
    // every per-account and per-address threshold, over the spraying one).
    for n in 0..6 {
        let res = app
            .login(&format!("staff{n}@sprayed.example"), "Summer2026!x")
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let mails = smtp.wait_for(1).await;
    let lines = || -> Vec<Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    for _ in 0..200 {
        if !lines().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Time for any second mail or delivery to show up, were the attack to send one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = smtp.mails();
    let spray_mails: Vec<&Value> = all
        .iter()
        .filter(|m| {
            m["text"]
                .as_str()
                .unwrap_or("")
                .contains("rampart-password-spraying")
        })
        .collect();
    assert_eq!(spray_mails.len(), 1, "{mails:?}");
    assert_eq!(spray_mails[0]["rcpt_tos"], json!(["boss@sprayed.example"]));
    assert_eq!(
        spray_mails[0]["headers"]["subject"],
        "[high] Password spraying from one address"
    );
    let got = lines();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["verified"], true, "{got:?}");
    assert_eq!(got[0]["type"], "alert.raised");
    let alerts: Value = app
        .get("/api/v1/alerts?rule=rampart-password-spraying", Some(&boss))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(alerts["items"].as_array().unwrap().len(), 1, "{alerts}");
}
