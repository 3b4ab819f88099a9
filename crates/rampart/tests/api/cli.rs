//! The operator commands, run as the real binary.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::spawn_app;

fn rampart(data_dir: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .env("RAMPART_DATA_DIR", data_dir)
        .env_remove("RAMPART_DATABASE_URL")
        .env("RAMPART_LOG_LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rampart");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn operator_commands_script_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let (ok, out, err) = rampart(
        d,
        &[
            "tenants",
            "create",
            "--name",
            "Dinas",
            "--kind",
            "government",
        ],
        "",
    );
    assert!(ok, "{err}");
    assert!(
        uuid::Uuid::parse_str(out.trim()).is_ok(),
        "prints the id: {out:?}"
    );

    let (ok, _, err) = rampart(
        d,
        &["tenants", "create", "--name", "X", "--kind", "bank"],
        "",
    );
    assert!(!ok);
    assert!(err.contains("kind"), "{err}");

    let (ok, out, err) = rampart(
        d,
        &["admin", "create", "--email", "ops@example.id"],
        "maple orbit canvas thunder\n",
    );
    assert!(ok, "{err}");
    assert!(out.trim().is_empty(), "no password to print: {out:?}");

    let (ok, out, err) = rampart(d, &["admin", "create", "--email", "gen@example.id"], "");
    assert!(ok, "{err}");
    assert_eq!(
        out.trim().len(),
        32,
        "a generated password, printed once: {out:?}"
    );

    let (ok, _, err) = rampart(
        d,
        &["admin", "create", "--email", "weak@example.id"],
        "password\n",
    );
    assert!(!ok);
    assert!(err.contains("password"), "{err}");

    let (ok, _, _) = rampart(d, &["migrate"], "");
    assert!(ok);
}

#[test]
fn users_import_reads_laravel_bcrypt_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, tenant, _) = rampart(
        d,
        &["tenants", "create", "--name", "LPK", "--kind", "lpk"],
        "",
    );
    let hash = bcrypt::hash_with_result("laravel password one", 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    let csv = format!(
        "email,name,tenant,role,bcrypt_hash\n\
         a@lpk.example,Ana,{t},member,{hash}\n\
         b@lpk.example,Budi,{t},tenant_admin,{hash}\n\
         bad,Bad,{t},member,{hash}\n\
         c@lpk.example,Citra,{t},member,not-a-hash\n",
        t = tenant.trim()
    );
    let file = d.join("users.csv");
    std::fs::write(&file, csv).unwrap();
    let (ok, _, err) = rampart(d, &["users", "import", file.to_str().unwrap()], "");
    assert!(!ok, "two rows are bad");
    assert!(err.contains("imported 2, skipped 0, failed 2"), "{err}");
    assert!(err.contains("line 4") && err.contains("line 5"), "{err}");
    let (_, _, err) = rampart(d, &["users", "import", file.to_str().unwrap()], "");
    assert!(
        err.contains("imported 0, skipped 2, failed 2"),
        "re-run is safe: {err}"
    );
}

#[test]
fn config_show_redacts_and_bad_values_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["config", "show"])
        .env(
            "RAMPART_DATABASE_URL",
            "postgres://app:hunter2@db:5432/rampart",
        )
        .env("RAMPART_DATA_DIR", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("postgres://app:[redacted]@db:5432/rampart"),
        "{text}"
    );
    // Without trusted proxies, forwarded addresses are ignored: config show says so.
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(note.contains("edge.trusted_proxies is empty"), "{note}");
    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["config", "show"])
        .env("RAMPART_EDGE_TRUSTED_PROXIES", "10.0.0.0/8")
        .env("RAMPART_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("trusted_proxies is empty"));

    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["config", "show"])
        .env("RAMPART_HTTP_LISTEN", "not-an-address")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("RAMPART_HTTP_LISTEN"), "{err}");
}

// Multi-threaded: the server must answer while this thread waits on the child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_asks_a_running_node_whether_it_is_ready() {
    let app = spawn_app().await;
    let ready = format!("{}/ready", app.base);
    let (ok, out, err) = app.cli(&["health", "--url", &ready]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "ready");
    let (ok, _, err) = app
        .cli(&["health", "--url", &format!("{}/no-such-route", app.base)])
        .await;
    assert!(!ok);
    assert!(err.contains("404"), "{err}");
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (ok, _, err) = app
        .cli(&["health", "--url", &format!("http://{free}/ready")])
        .await;
    assert!(!ok);
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn fraud_backtest_reports_per_rule_precision_and_recall() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("time,card,amount,currency,ip,country,fraud\n");
    // Six payments with one card within an hour: the sixth is labelled fraud.
    for i in 0..6 {
        csv.push_str(&format!(
            "2026-03-01T08:0{i}:00Z,card-1,25000,IDR,10.1.1.{i},ID,{}\n",
            u8::from(i == 5)
        ));
    }
    let file = dir.path().join("history.csv");
    std::fs::write(&file, csv).unwrap();
    let (ok, out, err) = rampart(
        dir.path(),
        &["fraud", "backtest", file.to_str().unwrap()],
        "",
    );
    assert!(ok, "{err}");
    assert!(
        out.starts_with("6 payments: 5 approved, 1 review, 0 declined; 1 labelled fraud"),
        "{out}"
    );
    let (ok, out, _) = rampart(
        dir.path(),
        &["fraud", "backtest", file.to_str().unwrap(), "--json"],
        "",
    );
    assert!(ok);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["rules"][0]["name"], "card_velocity");
    assert_eq!(report["rules"][0]["precision"], 1.0);
    assert_eq!(report["overall"]["recall"], 1.0);

    // A stricter merchant: three payments per card.
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        r#"{"card_velocity": {"enabled": true, "max": 3, "window_secs": 3600, "weight": 80}}"#,
    )
    .unwrap();
    let (ok, out, err) = rampart(
        dir.path(),
        &[
            "fraud",
            "backtest",
            file.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
        ],
        "",
    );
    assert!(ok, "{err}");
    assert!(
        out.starts_with("6 payments: 3 approved, 0 review, 3 declined"),
        "{out}"
    );
    std::fs::write(&rules, r#"{"review_at": 90, "decline_at": 80}"#).unwrap();
    let (ok, _, err) = rampart(
        dir.path(),
        &[
            "fraud",
            "backtest",
            file.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
        ],
        "",
    );
    assert!(!ok);
    assert!(err.contains("review_at"), "{err}");
}
