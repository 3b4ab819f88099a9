//! Clients that go away in the middle of a request. hyper drops a handler's future when its
//! connection resets, at whatever `.await` the handler was in: between `BEGIN` and the
//! transaction's owner, inside `COMMIT`, while the SQLite writer lock is held. None of that
//! may leave a transaction open on a pooled connection (which wedged every later write on
//! SQLite until restart: issue 13), half-write a payment, or break an audit chain.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::helpers::{spawn_app_with, TestApp, STRONG_PASSWORD};
use crate::vault::{key, merchant};

/// Builds the `n`th request a vanishing client sends: the whole HTTP/1.1 request as bytes.
pub type RequestMaker = Arc<dyn Fn(usize) -> Vec<u8> + Send + Sync>;

/// An HTTP/1.1 request with a JSON body, as raw bytes.
pub fn raw_post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &Value) -> Vec<u8> {
    let body = body.to_string();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    req.into_bytes()
}

/// For `duration`, `clients` concurrent clients each loop: connect, write a request from
/// `make`, wait a random 0–20 ms, and reset the connection (SO_LINGER 0, so the server sees
/// an RST rather than a polite close) without reading the answer. Returns how many
/// requests were abandoned.
pub async fn abandon_requests(
    addr: SocketAddr,
    make: RequestMaker,
    clients: usize,
    duration: Duration,
) -> usize {
    let sent = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (make, sent) = (make.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let n = sent.fetch_add(1, Ordering::SeqCst);
                if stream.write_all(&make(n)).await.is_err() {
                    continue;
                }
                let delay = rand::thread_rng().gen_range(0..=20);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                stream.set_zero_linger().ok();
                drop(stream);
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    sent.load(Ordering::SeqCst)
}

fn payment_body(n: usize) -> Value {
    json!({
        "amount": 1000 + n,
        "currency": "IDR",
        "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        "reference": format!("vanish-{n}"),
        // Addresses spread so the velocity rules hold some for review and pass others:
        // both write a payment with its audit event and outbox.
        "customer": {"email": "siti@example.id", "ip": format!("10.7.{}.{}", n % 200, n % 250), "country": "US"},
    })
}

/// What the follow-up requests and the consistency checks need.
struct Shop {
    admin: String,
    api_key: String,
    member: String,
}

async fn shop(app: &TestApp) -> Shop {
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let (tenant, admin) = merchant(app, &root, "vanish").await;
    let api_key = key(
        app,
        &admin,
        &["payments:write", "payments:read", "tokens:write"],
    )
    .await;
    let member = "kasir@vanish.example".to_string();
    app.create_user(&tenant, &member, rampart_store::Role::Member)
        .await;
    // Deliveries go nowhere (nobody listens on port 9 here) and stay queued: what is checked
    // is that each payment's outbox rows were written with it.
    let res = app
        .post(
            "/api/v1/webhooks/endpoints",
            Some(&admin),
            &json!({"url": "http://127.0.0.1:9/hooks",
                    "events": ["payment.authorized", "payment.captured", "payment.review",
                               "payment.declined"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    Shop {
        admin,
        api_key,
        member,
    }
}

/// Payments, tokenizations and logins, in turn, each abandoned mid-flight.
fn vanishing_writes(addr: SocketAddr, shop: &Shop) -> RequestMaker {
    let bearer = format!("Bearer {}", shop.api_key);
    let member = shop.member.clone();
    Arc::new(move |n| match n % 4 {
        0 | 1 => {
            let idem = format!("vanish-{n}");
            raw_post(
                addr,
                "/api/v1/payments",
                &[("Authorization", &bearer), ("Idempotency-Key", &idem)],
                &payment_body(n),
            )
        }
        2 => raw_post(
            addr,
            "/api/v1/tokens",
            &[("Authorization", &bearer)],
            &json!({"number": "4111111111111111", "exp_month": 12, "exp_year": 2031}),
        ),
        _ => raw_post(
            addr,
            "/api/v1/auth/login",
            &[],
            &json!({"email": member, "password": STRONG_PASSWORD}),
        ),
    })
}

/// A client that waits for its answers, with a deadline well past SQLite's 5 s busy
/// timeout, so a wedged node shows as a 500 or a time-out rather than hanging the test.
fn patient_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// After the storm, ordinary requests of every kind succeed, `/ready` is 200, and no pooled
/// connection was ever handed back inside a transaction.
async fn everything_still_works(app: &TestApp, shop: &Shop) {
    let http = patient_client();
    for i in 0..6 {
        let res = http
            .post(app.url("/api/v1/payments"))
            .bearer_auth(&shop.api_key)
            .header("idempotency-key", format!("after-{i}"))
            .json(&payment_body(100_000 + i))
            .send()
            .await
            .expect("payment after the storm answers");
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "payment {i} after the storm: {body}"
        );

        let res = http
            .post(app.url("/api/v1/tokens"))
            .bearer_auth(&shop.api_key)
            .json(&json!({"number": "5555555555554444", "exp_month": 1, "exp_year": 2032}))
            .send()
            .await
            .expect("tokenize after the storm answers");
        assert!(res.status().is_success(), "tokenize {i}: {}", res.status());
    }
    for i in 0..3 {
        let res = http
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"email": shop.member, "password": STRONG_PASSWORD}))
            .send()
            .await
            .expect("login after the storm answers");
        assert_eq!(res.status(), StatusCode::OK, "login {i} after the storm");
    }
    let res = http.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "/ready after the storm");

    let metrics = http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let leaked = metrics
        .lines()
        .find(|l| l.starts_with("rampart_db_connections_released_in_transaction_total"))
        .unwrap_or_else(|| panic!("the leak counter is exported:\n{metrics}"));
    assert!(
        leaked.ends_with(" 0"),
        "no connection came back to the pool inside a transaction: {leaked}"
    );
}

/// Every payment in the database is whole: its audit event exists, and so does its outbox
/// row once it has an outcome. A `pending` one (its client vanished between the recorded
/// attempt and the outcome) has announced nothing yet: reconciliation settles it later.
async fn no_payment_is_half_written(app: &TestApp) -> usize {
    let payments: Vec<(String, String, i64, i64)> = app
        .query_rows(
            "SELECT p.id, p.status, \
               (SELECT COUNT(*) FROM audit_events a WHERE a.target_id = p.id), \
               (SELECT COUNT(*) FROM notifications n \
                WHERE n.channel = 'webhook' AND n.subject_id = p.id) \
             FROM payments p",
        )
        .await;
    for (id, status, audits, deliveries) in &payments {
        assert!(*audits >= 1, "payment {id} has no audit event");
        if status == "pending" {
            assert_eq!(*deliveries, 0, "pending payment {id} announced an outcome");
        } else {
            assert!(
                *deliveries >= 1,
                "payment {id} ({status}) has no outbox row"
            );
        }
    }
    payments.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_vanish_mid_request_cannot_wedge_the_database() {
    let app = spawn_app_with(|c| {
        c.edge.rate_limit_enabled = false;
        c.auth.login_max_failures = 1_000_000;
        c.auth.login_ip_max_failures = 1_000_000;
        c.payments.webhook_allow_private_targets = true;
        // The worker keeps running (it takes pooled connections too) but does not spend
        // the test's CPU retrying deliveries to a closed port.
        c.jobs.backoff_base_secs = 3600;
    })
    .await;
    let shop = shop(&app).await;
    let addr: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();

    let abandoned = abandon_requests(
        addr,
        vanishing_writes(addr, &shop),
        16,
        Duration::from_secs(4),
    )
    .await;
    eprintln!("abandoned {abandoned} requests mid-flight");
    assert!(abandoned > 100, "the storm ran: {abandoned} requests");

    everything_still_works(&app, &shop).await;
    let payments = no_payment_is_half_written(&app).await;
    assert!(payments >= 6, "{payments} payments");
    let (ok, out, err) = app.cli(&["audit", "verify"]).await;
    assert!(ok, "audit verify after the storm: {out}{err}");
    // The admin's session is still good: sessions were not disturbed either.
    let res = app.get("/api/v1/users/me", Some(&shop.admin)).await;
    assert_eq!(res.status(), StatusCode::OK);
}
