//! A payment whose processor answer is lost (the server killed between the processor call
//! and the commit, or the client gone mid-request) is reconciled, never charged twice: its
//! `Idempotency-Key` resolves once its lease runs out, and the `payments.reconcile` job
//! settles the ones no client retries.
//!
//! The moment is made deterministic with the simulator's own ledger (its record of what it
//! authorized, outside our database) and its delay: the test waits until the ledger shows
//! the charge, while the server still holds the answer back, and only then strikes.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{error_code, spawn_app_with, TestApp};
use crate::payments::{card_payment, setup};

/// The simulator's record of authorizations, one JSON line each (it never holds card data).
fn ledger(app: &TestApp) -> Vec<Value> {
    let path = app
        .dir
        .path()
        .join("simulator")
        .join("authorizations.jsonl");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a ledger line is JSON"))
        .collect()
}

async fn wait_for_ledger(app: &TestApp, lines: usize) {
    let start = Instant::now();
    while ledger(app).len() < lines {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the processor was not called"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn payments(http: &reqwest::Client, base: &str, key: &str) -> Vec<Value> {
    let list: Value = http
        .get(format!("{base}/api/v1/payments"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["data"].as_array().unwrap().clone()
}

async fn post_payment(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    idem: Option<&str>,
    body: &Value,
) -> reqwest::Result<reqwest::Response> {
    let mut req = http
        .post(format!("{base}/api/v1/payments"))
        .bearer_auth(key)
        .json(body);
    if let Some(k) = idem {
        req = req.header("idempotency-key", k);
    }
    req.send().await
}

/// `kill -9` of a `rampart serve` process after the processor charged two payments (one
/// with an `Idempotency-Key`, one without) and before their outcome was committed. After a
/// restart the key's retry answers the charge the processor made (and replays it from
/// then on), the other payment is settled by the reconcile job with no client asking, and
/// the processor's ledger still holds exactly one charge for each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_between_the_processor_call_and_the_commit_charges_once() {
    // The in-process app only sets up the merchant; its worker stays off so that what
    // settles the payments is the restarted node.
    let app = spawn_app_with(|c| c.jobs.enabled = false).await;
    let (_, key) = setup(&app).await;
    let http = reqwest::Client::new();
    let mut node = app
        .spawn_node(&[
            ("RAMPART_EDGE_RATE_LIMIT_ENABLED", "false"),
            ("RAMPART_JOBS_ENABLED", "false"),
            ("RAMPART_PAYMENTS_IDEMPOTENCY_LEASE_SECS", "2"),
            // The processor answers only after ten minutes: the kill comes first.
            ("RAMPART_PAYMENTS_SIMULATOR_DELAY_MS", "600000"),
        ])
        .await;
    let with_key = card_payment("4242424242424242", 125_000, "203.0.113.20");
    let without_key = card_payment("5555555555554444", 75_000, "203.0.113.21");
    let keyed = {
        let (http, base, key, body) = (
            http.clone(),
            node.base.clone(),
            key.clone(),
            with_key.clone(),
        );
        tokio::spawn(
            async move { post_payment(&http, &base, &key, Some("crash-order-1"), &body).await },
        )
    };
    let unkeyed = {
        let (http, base, key, body) = (
            http.clone(),
            node.base.clone(),
            key.clone(),
            without_key.clone(),
        );
        tokio::spawn(async move { post_payment(&http, &base, &key, None, &body).await })
    };
    wait_for_ledger(&app, 2).await;
    node.kill9();
    assert!(keyed.await.unwrap().is_err(), "the client got no answer");
    assert!(unkeyed.await.unwrap().is_err(), "the client got no answer");
    let killed_at = Instant::now();

    let node = app
        .spawn_node(&[
            ("RAMPART_EDGE_RATE_LIMIT_ENABLED", "false"),
            ("RAMPART_PAYMENTS_IDEMPOTENCY_LEASE_SECS", "2"),
        ])
        .await;
    // Both attempts were on record before the processor saw them.
    let recorded = payments(&http, &node.base, &key).await;
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    let keyed_id = recorded
        .iter()
        .find(|p| p["amount"] == 125_000)
        .and_then(|p| p["id"].as_str())
        .unwrap()
        .to_string();

    // The key's lease runs out; the retry resolves it with the charge the processor made.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(killed_at.elapsed())).await;
    let res = post_payment(&http, &node.base, &key, Some("crash-order-1"), &with_key)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    let first = res.text().await.unwrap();
    let resolved: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(resolved["id"], keyed_id.as_str());
    assert_eq!(resolved["status"], "captured");
    // From then on it is replayed as it is.
    let again = post_payment(&http, &node.base, &key, Some("crash-order-1"), &with_key)
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.text().await.unwrap(), first);

    // The payment without a key: the reconcile job (every minute) settles it.
    let start = Instant::now();
    loop {
        let all = payments(&http, &node.base, &key).await;
        if all.iter().all(|p| p["status"] == "captured") {
            assert_eq!(all.len(), 2, "no payment was taken twice: {all:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(100),
            "the reconcile job did not settle the pending payment: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // One charge each at the processor: nothing was sent again.
    let charges = ledger(&app);
    assert_eq!(charges.len(), 2, "{charges:?}");
    let mut amounts: Vec<i64> = charges
        .iter()
        .map(|c| c["amount"].as_i64().unwrap())
        .collect();
    amounts.sort_unstable();
    assert_eq!(amounts, [75_000, 125_000]);
    let (ok, out, err) = app.cli(&["audit", "verify"]).await;
    assert!(ok, "audit verify after kill -9: {out}{err}");
}

/// The client goes away while the processor is answering. The key stays claimed for its
/// lease (a retry then is 409), and a retry after the lease gets the charge the processor
/// made, not a second one.
#[tokio::test]
async fn a_client_gone_mid_payment_resolves_its_key_after_the_lease_without_a_second_charge() {
    let app = spawn_app_with(|c| {
        c.jobs.enabled = false;
        c.payments.idempotency_lease_secs = 2;
        c.payments.simulator_delay_ms = 600_000;
    })
    .await;
    let (_, key) = setup(&app).await;
    let http = reqwest::Client::new();
    let body = card_payment("4111111111111111", 42_000, "203.0.113.30");
    let request = {
        let (http, base, key, body) = (http.clone(), app.base.clone(), key.clone(), body.clone());
        tokio::spawn(
            async move { post_payment(&http, &base, &key, Some("abandoned-1"), &body).await },
        )
    };
    wait_for_ledger(&app, 1).await;
    // The client gives up: its connection closes with the answer still on its way.
    request.abort();
    let gone_at = Instant::now();

    let res = post_payment(&http, &app.base, &key, Some("abandoned-1"), &body)
        .await
        .unwrap();
    assert_eq!(
        error_code(res, StatusCode::CONFLICT).await,
        "idempotency_key_in_progress"
    );
    let pending = payments(&http, &app.base, &key).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["status"], "pending");

    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(gone_at.elapsed())).await;
    let res = post_payment(&http, &app.base, &key, Some("abandoned-1"), &body)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    let text = res.text().await.unwrap();
    let resolved: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(resolved["id"], pending[0]["id"]);
    assert_eq!(resolved["status"], "captured");
    let again = post_payment(&http, &app.base, &key, Some("abandoned-1"), &body)
        .await
        .unwrap();
    assert_eq!(again.text().await.unwrap(), text);
    assert_eq!(payments(&http, &app.base, &key).await.len(), 1);
    assert_eq!(ledger(&app).len(), 1, "one charge at the processor");
}
