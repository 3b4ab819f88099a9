//! Payments (seed 003): the seed's flow, idempotency, fraud velocity, the state machine and
//! its guards under concurrency.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app, TestApp};
use crate::vault::{key, merchant};

/// A merchant with an admin session and a server API key for payments.
async fn shop(app: &TestApp, name: &str) -> (String, String) {
    let root = match app.tokens("root@example.id").await {
        (t, _) if !t.is_empty() => t,
        _ => unreachable!(),
    };
    let (_, admin) = merchant(app, &root, name).await;
    let api_key = key(
        app,
        &admin,
        &["payments:write", "payments:read", "payments:refund"],
    )
    .await;
    (admin, api_key)
}

pub(crate) async fn setup(app: &TestApp) -> (String, String) {
    app.create_platform_admin("root@example.id").await;
    shop(app, "shop").await
}

/// A merchant, when `root@example.id` already exists.
pub(crate) async fn setup_with_root(app: &TestApp) -> (String, String) {
    shop(app, "shop").await
}

pub(crate) fn card_payment(number: &str, amount: i64, ip: &str) -> Value {
    json!({
        "amount": amount,
        "currency": "IDR",
        "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        "description": "Kursus las dasar",
        "reference": "order-77",
        "customer": {"email": "siti@example.id", "ip": ip, "country": "US"},
        "metadata": {"course": "welding-1"}
    })
}

pub(crate) async fn pay(
    app: &TestApp,
    key: &str,
    idem: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/api/v1/payments"))
        .bearer_auth(key)
        .json(body);
    if let Some(k) = idem {
        req = req.header("idempotency-key", k);
    }
    req.send().await.unwrap()
}

pub(crate) async fn created(res: reqwest::Response) -> Value {
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn the_seed_flow_takes_a_card_payment_once_per_idempotency_key() {
    let app = spawn_app().await;
    let (_, key) = setup(&app).await;
    let body = card_payment("4111 1111 1111 1111", 150_000, "203.0.113.9");
    let res = pay(&app, &key, Some("order-77-attempt"), &body).await;
    let first_text = {
        assert_eq!(res.status(), StatusCode::CREATED);
        res.text().await.unwrap()
    };
    let first: Value = serde_json::from_str(&first_text).unwrap();
    assert!(first["id"].as_str().unwrap().starts_with("txn_"));
    assert_eq!(first["status"], "captured");
    assert_eq!(first["amount"], 150_000);
    assert_eq!(first["currency"], "IDR");
    assert_eq!(first["card"]["last4"], "1111");
    assert_eq!(first["card"]["brand"], "visa");
    assert_eq!(first["fraud"]["decision"], "approve");
    assert!(first["fraud"]["score"].is_number());
    assert_eq!(first["processor"]["simulated"], true);
    assert!(!first_text.contains("4111111111111111") && !first_text.contains("123\""));

    // The same key and body: the identical answer, nothing new.
    let again = pay(&app, &key, Some("order-77-attempt"), &body).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.unwrap(), first_text);
    // The same key with other parameters is refused.
    let other = card_payment("4111 1111 1111 1111", 999, "203.0.113.9");
    let res = pay(&app, &key, Some("order-77-attempt"), &other).await;
    assert_eq!(
        error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await,
        "idempotency_key_reused"
    );
    let list: Value = app
        .get("/api/v1/payments", Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    // Paying again with the token the first payment returned.
    let token = first["card"]["token"].as_str().unwrap();
    let again = created(
        pay(
            &app,
            &key,
            None,
            &json!({"amount": 5000, "currency": "idr", "token": token, "capture": false}),
        )
        .await,
    )
    .await;
    assert_eq!(again["status"], "authorized");
    assert_eq!(again["card"]["last4"], "1111");
}

#[tokio::test]
async fn concurrent_requests_with_one_key_take_one_payment() {
    let app = spawn_app().await;
    let (_, key) = setup(&app).await;
    let body = card_payment("4242424242424242", 20_000, "203.0.113.10");
    let runs = (0..6).map(|_| pay(&app, &key, Some("double-click"), &body));
    let answers = futures_join(runs).await;
    let mut ids = std::collections::BTreeSet::new();
    for res in answers {
        match res.status() {
            StatusCode::CREATED => {
                let v: Value = res.json().await.unwrap();
                ids.insert(v["id"].as_str().unwrap().to_string());
            }
            StatusCode::CONFLICT => {
                assert_eq!(
                    res.json::<Value>().await.unwrap()["error"]["code"],
                    "idempotency_key_in_progress"
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let list: Value = app
        .get("/api/v1/payments", Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

/// Runs the futures concurrently on this task (no extra crate).
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut out = Vec::with_capacity(handles.len());
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.extend(
        results
            .into_iter()
            .map(|r| r.expect("every future finished")),
    );
    out
}

#[tokio::test]
async fn six_payments_in_an_hour_with_one_card_trip_the_velocity_rule() {
    let app = spawn_app().await;
    let (_, key) = setup(&app).await;
    let mut last = Value::Null;
    for i in 0..6 {
        // A new address each time: only the card repeats.
        let body = card_payment("5555555555554444", 10_000, &format!("198.51.100.{i}"));
        last = created(pay(&app, &key, None, &body).await).await;
        if i < 5 {
            assert_eq!(last["status"], "captured", "payment {i}: {last}");
        }
    }
    assert_eq!(last["status"], "review", "{last}");
    assert_eq!(last["fraud"]["decision"], "review");
    assert_eq!(last["fraud"]["reasons"], json!(["card_velocity"]));
    assert!(last["fraud"]["score"].as_i64().unwrap() >= 65);

    // A merchant user looks at it and lets it through.
    let (admin, _) = (app.tokens("admin@shop.example").await.0, ());
    let id = last["id"].as_str().unwrap();
    let res = app
        .post(
            &format!("/api/v1/payments/{id}/approve"),
            Some(&key),
            &json!({}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "an API key cannot review"
    );
    let res = app
        .post(
            &format!("/api/v1/payments/{id}/approve"),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "captured");
    let res = app
        .post(
            &format!("/api/v1/payments/{id}/reject"),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(error_code(res, StatusCode::CONFLICT).await, "invalid_state");
}

#[tokio::test]
async fn the_simulator_declines_its_test_cards_with_their_reasons() {
    let app = spawn_app().await;
    let (_, key) = setup(&app).await;
    // One address per card: four cards from one address would trip cards_per_ip.
    for (i, (card, code)) in [
        ("4000000000000002", "card_declined"),
        ("4000000000009995", "insufficient_funds"),
        ("4000000000000069", "expired_card"),
        ("4000000000000127", "incorrect_cvc"),
    ]
    .into_iter()
    .enumerate()
    {
        let ip = format!("192.0.2.{}", 20 + i);
        let p = created(pay(&app, &key, None, &card_payment(card, 1000, &ip)).await).await;
        assert_eq!(p["status"], "declined", "{card}");
        assert_eq!(p["processor"]["decline_code"], code);
    }
}

#[tokio::test]
async fn capture_cancel_and_refunds_follow_the_state_machine() {
    let app = spawn_app().await;
    let (_, key) = setup(&app).await;
    let mut body = card_payment("4242424242424242", 100_000, "192.0.2.7");
    body["capture"] = json!(false);
    let p = created(pay(&app, &key, None, &body).await).await;
    assert_eq!(p["status"], "authorized");
    let id = p["id"].as_str().unwrap();
    let url = |action: &str| format!("/api/v1/payments/{id}/{action}");

    let res = app
        .post(&url("refunds"), Some(&key), &json!({"amount": 1}))
        .await;
    assert_eq!(error_code(res, StatusCode::CONFLICT).await, "invalid_state");
    let res = app
        .post(&url("capture"), Some(&key), &json!({"amount": 80_000}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let captured: Value = res.json().await.unwrap();
    assert_eq!(
        (
            captured["status"].as_str(),
            captured["captured_amount"].as_i64()
        ),
        (Some("captured"), Some(80_000))
    );
    let res = app.post(&url("cancel"), Some(&key), &json!({})).await;
    assert_eq!(error_code(res, StatusCode::CONFLICT).await, "invalid_state");

    let res = app
        .post(&url("refunds"), Some(&key), &json!({"amount": 30_000}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        res.json::<Value>().await.unwrap()["status"],
        "partially_refunded"
    );
    let res = app
        .post(&url("refunds"), Some(&key), &json!({"amount": 50_001}))
        .await;
    assert_eq!(
        error_code(res, StatusCode::CONFLICT).await,
        "refund_exceeds_captured"
    );
    let res = app.post(&url("refunds"), Some(&key), &json!({})).await;
    let done: Value = res.json().await.unwrap();
    assert_eq!(
        (done["status"].as_str(), done["refunded_amount"].as_i64()),
        (Some("refunded"), Some(80_000))
    );

    // Cancel releases an authorization.
    let p = created(pay(&app, &key, None, &body).await).await;
    let id = p["id"].as_str().unwrap();
    let res = app
        .post(
            &format!("/api/v1/payments/{id}/cancel"),
            Some(&key),
            &json!({}),
        )
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "canceled");

    // Filters and the cursor.
    let page: Value = app
        .get("/api/v1/payments?status=refunded", Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let page: Value = app
        .get("/api/v1/payments?limit=1", Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"][0]["status"], "canceled", "newest first");
    let cursor = page["next_cursor"].as_str().unwrap();
    let next: Value = app
        .get(
            &format!("/api/v1/payments?limit=1&cursor={cursor}"),
            Some(&key),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(next["data"][0]["status"], "refunded");
    assert!(next.get("next_cursor").is_none());
}

#[tokio::test]
async fn concurrent_refunds_never_exceed_the_captured_amount() {
    let app = spawn_app().await;
    let (_, key) = setup(&app).await;
    let p = created(
        pay(
            &app,
            &key,
            None,
            &card_payment("4242424242424242", 100, "192.0.2.8"),
        )
        .await,
    )
    .await;
    let id = p["id"].as_str().unwrap().to_string();
    let url = format!("/api/v1/payments/{id}/refunds");
    let thirty = json!({"amount": 30});
    let runs = (0..8).map(|_| app.post(&url, Some(&key), &thirty));
    let answers = futures_join(runs).await;
    let ok = answers
        .iter()
        .filter(|r| r.status() == StatusCode::CREATED)
        .count();
    assert_eq!(ok, 3, "three refunds of 30 fit in 100");
    for r in &answers {
        assert!(
            matches!(r.status(), StatusCode::CREATED | StatusCode::CONFLICT),
            "{}",
            r.status()
        );
    }
    let p: Value = app
        .get(&format!("/api/v1/payments/{id}"), Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["refunded_amount"], 90);
    assert_eq!(p["status"], "partially_refunded");
}

#[tokio::test]
async fn another_merchant_sees_nothing_and_card_numbers_stay_out() {
    let app = spawn_app().await;
    let (_, key) = setup(&app).await;
    let (_, other) = shop(&app, "other").await;
    let p = created(
        pay(
            &app,
            &key,
            None,
            &card_payment("4242424242424242", 100, "192.0.2.9"),
        )
        .await,
    )
    .await;
    let id = p["id"].as_str().unwrap();
    let res = app
        .get(&format!("/api/v1/payments/{id}"), Some(&other))
        .await;
    assert_eq!(error_code(res, StatusCode::NOT_FOUND).await, "not_found");
    let res = app
        .post(
            &format!("/api/v1/payments/{id}/refunds"),
            Some(&other),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let mut body = card_payment("4242424242424242", 100, "192.0.2.9");
    body["metadata"] = json!({"note": "card 4242 4242 4242 4242"});
    let res = pay(&app, &key, None, &body).await;
    let text = res.text().await.unwrap();
    // The message names the field and does not echo the number (the request id is random
    // and may hold "4242" by chance: only the message is checked).
    let message = serde_json::from_str::<Value>(&text).unwrap()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("metadata") && !message.contains("4242"),
        "{text}"
    );

    // A merchant tunes its rules: one payment per card per hour.
    let (admin, _) = (app.tokens("admin@shop.example").await.0, ());
    let res = app
        .client
        .put(app.url("/api/v1/fraud/rules"))
        .bearer_auth(&admin)
        .json(&json!({"card_velocity": {"enabled": true, "max": 1, "window_secs": 3600, "weight": 90}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let p = created(
        pay(
            &app,
            &key,
            None,
            &card_payment("4242424242424242", 100, "192.0.2.10"),
        )
        .await,
    )
    .await;
    assert_eq!(p["status"], "declined");
    assert_eq!(p["processor"]["decline_code"], "fraud_suspected");
    let res = app
        .client
        .put(app.url("/api/v1/fraud/rules"))
        .bearer_auth(&admin)
        .json(&json!({"no_such_rule": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await,
        "invalid_field"
    );
}

#[tokio::test]
async fn the_transaction_report_totals_by_status_and_currency_without_card_numbers() {
    let app = spawn_app().await;
    let (_, key) = setup(&app).await;
    for (i, card) in ["4242424242424242", "4111111111111111", "4000000000000002"]
        .iter()
        .enumerate()
    {
        let ip = format!("192.0.2.{}", 40 + i);
        created(pay(&app, &key, None, &card_payment(card, 10_000, &ip)).await).await;
    }
    let mut usd = card_payment("5555555555554444", 700, "192.0.2.50");
    usd["currency"] = json!("USD");
    created(pay(&app, &key, None, &usd).await).await;

    let report: Value = app
        .get("/api/v1/reports/transactions", Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["rows"].as_array().unwrap().len(), 4);
    let totals = report["totals"].as_array().unwrap();
    let find = |status: &str, currency: &str| {
        totals
            .iter()
            .find(|t| t["status"] == status && t["currency"] == currency)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(find("captured", "IDR")["count"], 2);
    assert_eq!(find("captured", "IDR")["amount"], 20_000);
    assert_eq!(find("declined", "IDR")["count"], 1);
    assert_eq!(find("captured", "USD")["captured_amount"], 700);

    let res = app
        .get("/api/v1/reports/transactions?format=csv", Some(&key))
        .await;
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = res.text().await.unwrap();
    assert!(
        csv.starts_with("record,id,created_at,status,currency,count,amount"),
        "{csv}"
    );
    assert_eq!(csv.lines().filter(|l| l.starts_with("payment,")).count(), 4);
    assert_eq!(csv.lines().filter(|l| l.starts_with("total,")).count(), 3);
    for number in ["4242424242424242", "4111111111111111", "5555555555554444"] {
        assert!(!csv.contains(number));
    }
    // A range with nothing in it.
    let empty: Value = app
        .get(
            "/api/v1/reports/transactions?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z",
            Some(&key),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(empty["rows"], json!([]));
    let res = app
        .get("/api/v1/reports/transactions?format=xml", Some(&key))
        .await;
    assert_eq!(
        error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await,
        "invalid_field"
    );
}

/// A webhook receiver that checks every signature, and can be down at first.
#[derive(Clone, Default)]
struct Receiver {
    got: std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>,
}

fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expected == v1
}

async fn start_receiver(listener: tokio::net::TcpListener, secret: String, got: Receiver) {
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (secret, got) = (secret.clone(), got.clone());
                async move {
                    let sig = headers["rampart-signature"].to_str().unwrap_or("");
                    if !verify(&secret, sig, &body) {
                        return axum::http::StatusCode::BAD_REQUEST;
                    }
                    let event = headers["rampart-event"].to_str().unwrap().to_string();
                    got.got
                        .lock()
                        .unwrap()
                        .push((event, serde_json::from_slice(&body).unwrap()));
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
}

#[tokio::test]
async fn webhooks_are_signed_retried_until_the_receiver_is_back_and_logged() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.payments.webhook_allow_private_targets = true;
        c.jobs.poll_interval_ms = 100;
        c.jobs.backoff_base_secs = 1;
        c.jobs.backoff_cap_secs = 2;
    })
    .await;
    let (admin, key) = setup(&app).await;
    // A port with nobody listening yet: the receiver is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let res = app
        .post(
            "/api/v1/webhooks/endpoints",
            Some(&admin),
            &json!({"url": format!("http://127.0.0.1:{port}/hooks"),
                    "events": ["payment.captured", "payment.refunded", "payment.declined"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let endpoint: Value = res.json().await.unwrap();
    let secret = endpoint["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let listed: Value = app
        .get("/api/v1/webhooks/endpoints", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        listed[0].get("secret").is_none(),
        "the secret is shown once"
    );
    // Refused: a public-looking plain http URL.
    let res = app
        .post(
            "/api/v1/webhooks/endpoints",
            Some(&admin),
            &json!({"url": "http://shop.example/hooks", "events": ["payment.captured"]}),
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await,
        "invalid_field"
    );

    let paid = created(
        pay(
            &app,
            &key,
            None,
            &card_payment("4242424242424242", 5000, "192.0.2.60"),
        )
        .await,
    )
    .await;
    let id = paid["id"].as_str().unwrap();
    let res = app
        .post(
            &format!("/api/v1/payments/{id}/refunds"),
            Some(&key),
            &json!({"amount": 1000}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    // While the receiver is down, attempts fail and are logged.
    let log = |app: &TestApp, admin: String| {
        let url = app.url("/api/v1/webhooks/deliveries");
        let client = app.client.clone();
        async move {
            client
                .get(url)
                .bearer_auth(admin)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let mut failed_once = false;
    for _ in 0..100 {
        let l = log(&app, admin.clone()).await;
        if l.as_array()
            .unwrap()
            .iter()
            .any(|d| d["attempts"].as_i64() >= Some(1) && d["last_error"].is_string())
        {
            failed_once = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        failed_once,
        "an attempt against the down receiver is logged"
    );

    // The receiver comes back; both events arrive, signed.
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    start_receiver(listener, secret, receiver.clone()).await;
    for _ in 0..300 {
        if receiver.got.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let got = receiver.got.lock().unwrap().clone();
    let events: std::collections::BTreeSet<&str> = got.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        events,
        ["payment.captured", "payment.refunded"]
            .into_iter()
            .collect()
    );
    let captured = &got.iter().find(|(e, _)| e == "payment.captured").unwrap().1;
    assert_eq!(captured["type"], "payment.captured");
    assert_eq!(captured["data"]["id"], id);
    assert_eq!(captured["data"]["card"]["last4"], "4242");
    assert!(!captured.to_string().contains("4242424242424242"));
    let l = log(&app, admin.clone()).await;
    assert!(
        l.as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "delivered"),
        "{l}"
    );

    // A manual resend delivers again.
    let first = l[0]["id"].as_str().unwrap();
    let res = app
        .post(
            &format!("/api/v1/webhooks/deliveries/{first}/resend"),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    for _ in 0..100 {
        if receiver.got.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(receiver.got.lock().unwrap().len(), 3);
}

/// `kill -9` of a server during a load of payments: after a restart every payment that got
/// a 2xx is there, none is there twice, and the audit chains verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_every_acknowledged_payment_is_there_once_and_the_audit_chain_verifies() {
    let app = spawn_app().await;
    let (_, key) = setup(&app).await;
    let mut node = app
        .spawn_node(&[("RAMPART_EDGE_RATE_LIMIT_ENABLED", "false")])
        .await;
    let base = node.base.clone();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (base, key, acked, stop) = (base.clone(), key.clone(), acked.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let reference = format!("load-{c}-{i}");
                let mut body = card_payment(
                    "4242424242424242",
                    1000 + i,
                    &format!("10.9.{c}.{}", i % 250),
                );
                body["reference"] = json!(reference);
                // A fresh card fingerprint is not needed: velocity only holds payments
                // for review, which is still an acknowledged payment.
                let res = http
                    .post(format!("{base}/api/v1/payments"))
                    .bearer_auth(&key)
                    .header("idempotency-key", &reference)
                    .json(&body)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        if let Some(id) = v["id"].as_str() {
                            acked.lock().unwrap().push((reference, id.to_string()));
                        }
                    }
                    Ok(_) => {}
                    // The server is gone: stop this client.
                    Err(_) => break,
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    node.kill9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 5,
        "the load ran: {} payments acknowledged",
        acked.len()
    );

    // Limits off: the check reads every payment back from one address.
    let node = app
        .spawn_node(&[("RAMPART_EDGE_RATE_LIMIT_ENABLED", "false")])
        .await;
    let http = reqwest::Client::new();
    for (_, id) in &acked {
        let res = http
            .get(format!("{}/api/v1/payments/{id}", node.base))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "acknowledged payment {id} is missing"
        );
    }
    // No reference (one per idempotency key) was charged twice.
    let report: Value = http
        .get(format!("{}/api/v1/reports/transactions", node.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    for row in report["rows"].as_array().unwrap() {
        if let Some(r) = row["reference"].as_str() {
            *seen.entry(r.to_string()).or_default() += 1;
        }
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "a reference was charged twice"
    );
    let (ok, out, err) = app.cli(&["audit", "verify"]).await;
    assert!(ok, "audit verify after kill -9: {out}{err}");
}
