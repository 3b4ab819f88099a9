//! SIGTERM to a `rampart serve` process while one of its jobs runs: a webhook delivery to
//! a receiver that holds the request. The node must exit 0 within
//! `http.shutdown_grace_secs` (plus a margin for start-up noise, never a measure of
//! speed); a delivery that finishes inside the grace is recorded once, and one that
//! does not goes back to the queue without costing an attempt, for the next node.
//! On SQLite, or PostgreSQL with `RAMPART_TEST_DATABASE_URL`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::helpers::{spawn_app_with, TestApp};
use crate::vault::{key, merchant};

/// How much longer than the grace a node may take to exit: process teardown, closing
/// the pool. A node stuck past this has a shutdown that hangs.
const MARGIN: Duration = Duration::from_secs(15);

/// A webhook receiver that takes each request and holds it until released.
#[derive(Clone)]
struct SlowReceiver {
    url: String,
    /// `Rampart-Delivery` of every request that arrived, answered or not.
    arrived: Arc<Mutex<Vec<String>>>,
    release: Arc<watch::Sender<bool>>,
}

impl SlowReceiver {
    async fn start() -> SlowReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let (release, released) = watch::channel(false);
        let arrived = Arc::new(Mutex::new(Vec::new()));
        let seen = arrived.clone();
        let app = axum::Router::new().route(
            "/hooks",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let (seen, mut released) = (seen.clone(), released.clone());
                async move {
                    let delivery = headers
                        .get("rampart-delivery")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    seen.lock().unwrap().push(delivery);
                    let _ = released.wait_for(|r| *r).await;
                    axum::http::StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        SlowReceiver {
            url,
            arrived,
            release: Arc::new(release),
        }
    }

    /// Answers the held request and every later one at once.
    fn release(&self) {
        self.release.send_replace(true);
    }

    fn arrived(&self) -> Vec<String> {
        self.arrived.lock().unwrap().clone()
    }

    async fn wait_for_requests(&self, n: usize) {
        for _ in 0..600 {
            if self.arrived().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the receiver never got {n} requests");
    }
}

/// The test app (its own worker off: only the node runs jobs), a merchant admin and an
/// API key, and an endpoint at `receiver` for every payment event.
async fn shop_with_endpoint(receiver: &SlowReceiver) -> (TestApp, String, String) {
    let app = spawn_app_with(|c| {
        c.payments.webhook_allow_private_targets = true;
        c.jobs.enabled = false;
    })
    .await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let (_, admin) = merchant(&app, &root, "shop").await;
    let api_key = key(&app, &admin, &["payments:write"]).await;
    let res = app
        .post(
            "/api/v1/webhooks/endpoints",
            Some(&admin),
            &json!({"url": receiver.url, "events": [
                "payment.authorized", "payment.captured", "payment.declined", "payment.review"
            ]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    (app, admin, api_key)
}

/// Settings of the node under test: its grace, quick polls, the test's Redis prefix, and
/// loopback webhook targets (checked again, resolved, at send time).
fn node_env(app: &TestApp, grace: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "RAMPART_NOTIFY_WEBHOOK_ALLOW_PRIVATE_TARGETS",
            "true".to_string(),
        ),
        ("RAMPART_HTTP_SHUTDOWN_GRACE_SECS", grace.to_string()),
        ("RAMPART_JOBS_POLL_INTERVAL_MS", "100".to_string()),
        (
            "RAMPART_REDIS_KEY_PREFIX",
            app.config.redis.key_prefix.clone(),
        ),
    ]
}

async fn spawn(app: &TestApp, env: &[(&'static str, String)]) -> crate::helpers::Node {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    app.spawn_node(&env).await
}

async fn pay(base: &str, api_key: &str) {
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/payments"))
        .bearer_auth(api_key)
        .json(&json!({
            "amount": 25_000,
            "currency": "IDR",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030},
            "customer": {"ip": "192.0.2.44"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
}

/// The delivery log, as the merchant reads it.
async fn deliveries(app: &TestApp, admin: &str) -> Vec<Value> {
    let log: Value = app
        .get("/api/v1/webhooks/deliveries", Some(admin))
        .await
        .json()
        .await
        .unwrap();
    log.as_array().unwrap().clone()
}

/// The webhook jobs, through `rampart jobs list`: the `notify` queue's jobs for webhook
/// deliveries (`whd_…`; the queue also carries mail, such as the API key's notice).
async fn webhook_jobs(app: &TestApp) -> Vec<Value> {
    let (ok, out, err) = app
        .cli(&["jobs", "list", "--queue", "notify", "--json"])
        .await;
    assert!(ok, "{err}");
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|j| j["payload"].as_str().unwrap_or("").contains("\"whd_"))
        .collect()
}

/// Polls until connecting fails: the node has stopped accepting, so its shutdown began.
async fn wait_until_refusing(base: &str) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for _ in 0..400 {
        if http.get(format!("{base}/health")).send().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} still accepts connections after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_webhook_delivery_finish_within_the_grace_and_records_it_once() {
    let receiver = SlowReceiver::start().await;
    let (app, admin, api_key) = shop_with_endpoint(&receiver).await;
    let grace = 20;
    let mut node = spawn(&app, &node_env(&app, &grace.to_string())).await;
    pay(&node.base, &api_key).await;
    // The delivery job is running: its request is held at the receiver.
    receiver.wait_for_requests(1).await;

    node.sigterm();
    // Answer only once the node is draining, so the delivery finishes inside the grace.
    wait_until_refusing(&node.base).await;
    receiver.release();
    let status = node
        .exit_within(Duration::from_secs(grace) + MARGIN)
        .await
        .expect("the node exits within the grace");
    assert!(status.success(), "exit status {status}");

    let log = deliveries(&app, &admin).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["status"], "delivered", "{log:?}");
    assert_eq!(log[0]["attempts"], 1, "{log:?}");
    assert_eq!(receiver.arrived().len(), 1, "sent once");
    let jobs = webhook_jobs(&app).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["state"], "done", "{jobs:?}");
    assert_eq!(jobs[0]["attempts"], 1, "{jobs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_slower_than_the_grace_goes_back_to_the_queue_uncounted_and_the_next_node_sends_it(
) {
    let receiver = SlowReceiver::start().await;
    let (app, admin, api_key) = shop_with_endpoint(&receiver).await;
    let grace = 2;
    let env = node_env(&app, &grace.to_string());
    let mut node = spawn(&app, &env).await;
    pay(&node.base, &api_key).await;
    receiver.wait_for_requests(1).await;

    // The receiver never answers this one: the node must cut it off at the grace.
    node.sigterm();
    let signalled = Instant::now();
    let status = node
        .exit_within(Duration::from_secs(grace) + MARGIN)
        .await
        .expect("the node exits within the grace");
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(grace),
        "the running job was given the grace ({:?})",
        signalled.elapsed()
    );

    let jobs = webhook_jobs(&app).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        jobs[0]["state"], "queued",
        "returned to the queue: {jobs:?}"
    );
    assert_eq!(
        jobs[0]["attempts"], 0,
        "the cut attempt is not counted: {jobs:?}"
    );
    assert_eq!(jobs[0]["lease_owner"], Value::Null, "{jobs:?}");
    assert_eq!(
        jobs[0]["last_error"],
        Value::Null,
        "not a failure: {jobs:?}"
    );
    let (ok, dead, err) = app.cli(&["jobs", "dead", "--json"]).await;
    assert!(ok && dead.trim().is_empty(), "no dead job: {dead}{err}");
    let log = deliveries(&app, &admin).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["status"], "pending", "{log:?}");
    assert_eq!(log[0]["attempts"], 0, "no attempt recorded: {log:?}");

    // The next node sends it; the receiver answers at once from now on.
    receiver.release();
    let _next = spawn(&app, &env).await;
    let mut log = Vec::new();
    for _ in 0..300 {
        log = deliveries(&app, &admin).await;
        if log[0]["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(log[0]["status"], "delivered", "{log:?}");
    assert_eq!(log[0]["attempts"], 1, "{log:?}");
    let arrived = receiver.arrived();
    assert_eq!(arrived.len(), 2, "the cut request, then the delivery");
    assert_eq!(
        arrived[0], arrived[1],
        "both carry the delivery id receivers dedupe on"
    );
    let jobs = webhook_jobs(&app).await;
    assert_eq!(
        (jobs[0]["state"].as_str(), jobs[0]["attempts"].as_i64()),
        (Some("done"), Some(1)),
        "{jobs:?}"
    );
}
