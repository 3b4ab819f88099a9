//! The audit log as a tamper-evident hash chain, checked by `rampart audit verify`.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection;

use crate::helpers::{spawn_app, TestApp, STRONG_PASSWORD};

/// Runs one statement directly against the app's database, as an attacker with database
/// access would.
pub async fn tamper(app: &TestApp, sql: &str, id: &str) {
    sqlx::any::install_default_drivers();
    let url = match &app.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", app.dir.path().join("rampart.db").display()),
    };
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let changed = sqlx::query(sql).bind(id).execute(&mut conn).await.unwrap();
    assert_eq!(changed.rows_affected(), 1, "{sql}");
}

/// A scripted run of mutations across two tenants; returns one mid-chain event id.
async fn scripted_mutations(app: &TestApp) -> String {
    app.create_platform_admin("root@example.id").await;
    let (root, refresh) = app.tokens("root@example.id").await;
    for name in ["A", "B"] {
        let t = app.create_tenant(&root, name, "merchant").await;
        for i in 0..3 {
            let res = app
                .post(
                    &format!("/api/v1/tenants/{t}/users"),
                    Some(&root),
                    &json!({"email": format!("u{i}@{name}.example"), "password": STRONG_PASSWORD, "role": "member"}),
                )
                .await;
            assert_eq!(res.status(), StatusCode::CREATED);
        }
    }
    let res = app.refresh(&refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    let events = app
        .store
        .recent_audit_events(&crate::storage::platform_scope(app).await, 100)
        .await
        .unwrap();
    assert!(events.len() >= 4, "{events:?}");
    events[events.len() / 2].id.clone()
}

fn verified_count(stdout: &str) -> u64 {
    stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected verify output {stdout:?}"))
}

#[tokio::test]
async fn verify_passes_then_names_the_altered_event() {
    let app = spawn_app().await;
    let victim = scripted_mutations(&app).await;

    let (ok, out, err) = app.cli(&["audit", "checkpoint"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("signed "), "{out}");
    let (ok, out, err) = app.cli(&["audit", "verify"]).await;
    assert!(ok, "{err}");
    assert!(verified_count(&out) >= 10, "{out}");
    assert!(
        out.contains("signed checkpoints") && !out.contains(" 0 signed"),
        "{out}"
    );

    // One byte of one event.
    tamper(
        &app,
        "UPDATE audit_events SET action = action || 'x' WHERE id = $1",
        &victim,
    )
    .await;
    let (ok, _, err) = app.cli(&["audit", "verify"]).await;
    assert!(!ok, "verify must fail after tampering");
    assert!(err.contains(&victim), "names the event: {err}");
    assert!(err.contains("altered"), "{err}");
}

#[tokio::test]
async fn a_removed_event_is_reported() {
    let app = spawn_app().await;
    let victim = scripted_mutations(&app).await;
    tamper(&app, "DELETE FROM audit_events WHERE id = $1", &victim).await;
    let (ok, _, err) = app.cli(&["audit", "verify"]).await;
    assert!(!ok);
    assert!(err.contains("missing") || err.contains("removed"), "{err}");
}

#[tokio::test]
async fn a_rewritten_chain_contradicts_its_signed_checkpoint() {
    let app = spawn_app().await;
    let victim = scripted_mutations(&app).await;
    let (ok, _, err) = app.cli(&["audit", "checkpoint"]).await;
    assert!(ok, "{err}");
    // Alter an event *and* fix up its hash: only the signed checkpoint can tell.
    tamper(
        &app,
        "UPDATE audit_events SET hash = '0000000000000000000000000000000000000000000000000000000000000001' WHERE id = $1",
        &victim,
    )
    .await;
    let (ok, _, err) = app.cli(&["audit", "verify"]).await;
    assert!(!ok);
    assert!(err.contains(&victim) || err.contains("checkpoint"), "{err}");
}

#[tokio::test]
async fn concurrent_writers_leave_one_valid_chain() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let t = app.create_tenant(&root, "Busy", "lpk").await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let request = app
                .client
                .post(app.url(&format!("/api/v1/tenants/{t}/users")))
                .bearer_auth(&root)
                .json(&json!({"email": format!("c{i}@busy.example"), "password": STRONG_PASSWORD, "role": "member"}));
            tokio::spawn(async move { request.send().await.unwrap().status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::CREATED);
    }
    let (ok, out, err) = app.cli(&["audit", "verify"]).await;
    assert!(ok, "{err}");
    assert!(verified_count(&out) >= 17, "{out}");
}
