//! Unauthenticated requests cannot exhaust the server: password hashing is bounded, and
//! what is shed gets 503 with `Retry-After`, never a 500 or a hang.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

/// The documented bound (README, "Sizing"): a burst of logins keeps a node under this.
const LOGIN_BURST_RSS_LIMIT: u64 = 300 * 1024 * 1024;

/// 200 concurrent wrong logins against a `rampart serve` process: it stays under 300 MB,
/// answers `/health` all along, sheds what it cannot hash in time with 503 and
/// `Retry-After`, and is back near its idle memory within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_logins_is_shed_not_stored_in_memory() {
    let app = spawn_app().await;
    let node = app
        .spawn_node(&[
            ("RAMPART_EDGE_RATE_LIMIT_ENABLED", "false"),
            ("RAMPART_AUTH_LOGIN_MAX_FAILURES", "1000000"),
            ("RAMPART_AUTH_LOGIN_IP_MAX_FAILURES", "1000000"),
        ])
        .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let login = format!("{}/api/v1/auth/login", node.base);
    // Warm up: the first hash allocates its reusable memory.
    let res = http
        .post(&login)
        .json(&json!({"email": "warm@example.id", "password": "not the password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = node.rss_bytes();

    let burst: Vec<_> = (0..200)
        .map(|i| {
            let (http, login) = (http.clone(), login.clone());
            tokio::spawn(async move {
                let res = http
                    .post(&login)
                    .json(&json!({"email": format!("guess{i}@example.id"), "password": "hunter2 hunter2"}))
                    .send()
                    .await
                    .expect("a login answers");
                let retry_after = res.headers().get("retry-after").is_some();
                (res.status(), retry_after)
            })
        })
        .collect();
    let started = Instant::now();
    let mut peak = idle;
    let mut health_checks = 0;
    while !burst.iter().all(|t| t.is_finished()) {
        let res = tokio::time::timeout(
            Duration::from_secs(2),
            http.get(format!("{}/health", node.base)).send(),
        )
        .await
        .expect("/health answers within 2 s during the burst")
        .expect("/health answers");
        assert_eq!(res.status(), StatusCode::OK);
        health_checks += 1;
        peak = peak.max(node.rss_bytes());
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the burst ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut refused, mut shed) = (0, 0);
    for t in burst {
        match t.await.unwrap() {
            (StatusCode::UNAUTHORIZED, _) => refused += 1,
            (StatusCode::SERVICE_UNAVAILABLE, retry_after) => {
                assert!(retry_after, "a shed login says when to retry");
                shed += 1;
            }
            (other, _) => panic!("a login in the burst answered {other}"),
        }
    }
    eprintln!(
        "burst: {refused} refused, {shed} shed; RSS idle {} MB, peak {} MB; {health_checks} /health checks",
        idle >> 20,
        peak >> 20
    );
    assert_eq!(refused + shed, 200);
    assert!(
        shed > 0,
        "more than the node can hash in its queue time is shed"
    );
    assert!(
        peak < LOGIN_BURST_RSS_LIMIT,
        "peak RSS {} MB over the bound",
        peak >> 20
    );
    let mut after = node.rss_bytes();
    for _ in 0..50 {
        if after < idle + 64 * 1024 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = node.rss_bytes();
    }
    assert!(
        after < idle + 64 * 1024 * 1024,
        "RSS back near idle: idle {} MB, after {} MB",
        idle >> 20,
        after >> 20
    );
}

/// `count` slowloris connections: each sends a request line and then one header byte every
/// `drip`, never finishing its headers. Returns, per connection, whether the server closed
/// it within `watch` (a read gave EOF or an error).
async fn slowloris(
    addr: std::net::SocketAddr,
    count: usize,
    drip: Duration,
    watch: Duration,
) -> Vec<tokio::task::JoinHandle<bool>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tasks = Vec::new();
    for _ in 0..count {
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            continue;
        };
        tasks.push(tokio::spawn(async move {
            if stream
                .write_all(format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ").as_bytes())
                .await
                .is_err()
            {
                return true;
            }
            let deadline = Instant::now() + watch;
            let mut buf = [0u8; 512];
            while Instant::now() < deadline {
                match tokio::time::timeout(drip, stream.read(&mut buf)).await {
                    // Closed by the server (EOF, reset), or it answered: either way done.
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    Ok(Ok(_)) => return true,
                    Err(_) => {
                        if stream.write_all(b"a").await.is_err() {
                            return true;
                        }
                    }
                }
            }
            false
        }));
    }
    tasks
}

/// Slow clients holding many connections cannot stop a node: ordinary requests keep being
/// answered while 300 connections drip header bytes, and each of those is closed by the
/// header-read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_cut_off_and_others_are_served() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.http.header_read_timeout_secs = 2;
        c.edge.rate_limit_enabled = false;
    })
    .await;
    // `serve`, as `main` runs it (the test harness serves through the same listener).
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    check_slowloris(addr, &app.base).await;
}

async fn check_slowloris(addr: std::net::SocketAddr, base: &str) {
    let slow = slowloris(
        addr,
        300,
        Duration::from_millis(500),
        Duration::from_secs(8),
    )
    .await;
    assert!(slow.len() >= 290, "{} slow connections opened", slow.len());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for i in 0..10 {
        let res = http
            .get(format!("{base}/health"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i} during the slowloris: {e}"));
        assert_eq!(res.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut closed = 0;
    for t in slow {
        if t.await.unwrap() {
            closed += 1;
        }
    }
    assert!(
        closed >= 290,
        "{closed} slow connections closed by the timeout"
    );
}

/// The same in front of another application, through `rampart edge`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_cuts_off_slowloris_connections_too() {
    let app = crate::helpers::spawn_app().await;
    let proxy = crate::proxy::spawn_proxy(&app.base, |c| {
        c.http.header_read_timeout_secs = 2;
        c.edge.rate_limit_enabled = false;
    })
    .await;
    let addr: std::net::SocketAddr = proxy.base.trim_start_matches("http://").parse().unwrap();
    check_slowloris(addr, &proxy.base).await;
}

/// Over `http.max_connections`, a connection gets a 503 in the one error shape at once and
/// is closed, instead of waiting in the kernel's queue; a slot freed is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_with_503() {
    use tokio::io::AsyncReadExt;
    let app = crate::helpers::spawn_app_with(|c| c.http.max_connections = 20).await;
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), extra.read_to_string(&mut answer))
        .await
        .expect("refused at once")
        .ok();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let body: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "too_many_connections");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.get("/health", None).await.status(), StatusCode::OK);
}

/// The smaller holes: a CVC is refused by tokenize, fraud rules must be an object and a
/// partial rule keeps its other defaults, and HTTP/2 without TLS (h2c) is not spoken.
#[tokio::test]
async fn tokenize_refuses_a_cvc_and_fraud_rules_merge_partial_objects() {
    let app = crate::helpers::spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let (_, admin) = crate::vault::merchant(&app, &root, "holes").await;

    let res = app
        .post(
            "/api/v1/tokens",
            Some(&admin),
            &json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}),
        )
        .await;
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body.contains("invalid_field") && body.contains("cvc:"),
        "{body}"
    );
    // Everything but the request id (a random UUID, which can hold "123" by chance: it
    // failed CI once) must not echo the CVC.
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut echoed = answer["error"].clone();
    echoed["request_id"] = serde_json::Value::Null;
    assert!(
        !echoed.to_string().contains("123"),
        "the CVC is not echoed: {body}"
    );

    let put = |body: serde_json::Value| {
        app.client
            .put(app.url("/api/v1/fraud/rules"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    for not_an_object in [json!([1]), json!("rules"), json!(7)] {
        let res = put(not_an_object).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let defaults: serde_json::Value = app
        .get("/api/v1/fraud/rules", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    let res = put(json!({"card_velocity": {"max": 1}})).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let rules: serde_json::Value = res.json().await.unwrap();
    assert_eq!(rules["card_velocity"]["max"], 1);
    assert_eq!(
        rules["card_velocity"]["window_secs"],
        defaults["card_velocity"]["window_secs"]
    );
    assert_eq!(rules["ip_velocity"], defaults["ip_velocity"]);
}

#[tokio::test]
async fn h2c_on_the_plain_listener_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = crate::helpers::spawn_app().await;
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .ok();
    // HTTP/1.1 only: no HTTP/2 SETTINGS frame comes back (hyper answers a bad request or
    // just closes).
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 4"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

/// `admin@example.id` typed in fullwidth letters is the same account (409), one with a
/// Cyrillic `а` is refused as a lookalike (422), and a login with the fullwidth spelling
/// logs in the account it names.
#[tokio::test]
async fn lookalike_e_mail_addresses_are_not_new_accounts() {
    let app = crate::helpers::spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let tenant = app.create_tenant(&root, "Lookalikes", "merchant").await;
    let path = format!("/api/v1/tenants/{tenant}/users");
    let create = |email: &str| {
        app.client
            .post(app.url(&path))
            .bearer_auth(&root)
            .json(&json!({"email": email, "password": crate::helpers::STRONG_PASSWORD, "role": "member"}))
            .send()
    };
    assert_eq!(
        create("kasir@example.id").await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(
        create("ｋａｓｉｒ@ｅｘａｍｐｌｅ.ｉｄ")
            .await
            .unwrap()
            .status(),
        StatusCode::CONFLICT
    );
    for lookalike in ["k\u{0430}sir@example.id", "kasir\u{200b}@example.id"] {
        assert_eq!(
            create(lookalike).await.unwrap().status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{lookalike:?}"
        );
    }
    let res = app
        .login("ＫＡＳＩＲ@example.id", crate::helpers::STRONG_PASSWORD)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// Issue 14, item 6: a tenant admin adding a user cannot learn that an address has an
/// account in another tenant. Invitations to a free address and to another tenant's
/// address get the same status, body and audit event, and neither becomes a user the
/// admin can change; the two addresses get different mails (an invitation, a notice).
/// Before invitations this answered 201 for the free address and 409 for the taken one.
#[tokio::test]
async fn a_tenant_admin_cannot_tell_another_tenants_address_from_a_free_one() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let a = app.create_tenant(&root, "A", "employer").await;
    let b = app.create_tenant(&root, "B", "lpk").await;
    app.create_user(&a, "admin@a.example", rampart_store::Role::TenantAdmin)
        .await;
    app.create_user(&b, "taken@b.example", rampart_store::Role::Member)
        .await;
    let (admin, _) = app.tokens("admin@a.example").await;
    let users = format!("/api/v1/tenants/{a}/users");

    let mut answers = Vec::new();
    for email in ["free@a.example", "taken@b.example"] {
        let res = app
            .post(
                &users,
                Some(&admin),
                &json!({"email": email, "role": "member"}),
            )
            .await;
        answers.push((res.status(), res.text().await.unwrap()));
    }
    assert_eq!(answers[0], answers[1], "the answers differ: {answers:?}");
    assert_eq!(answers[0].0, StatusCode::ACCEPTED);

    // The admin's audit log shows two invitations alike; neither target is a user the
    // admin can change yet.
    let events: serde_json::Value = app
        .get("/api/v1/audit-events?action=user.invite", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{events}");
    let shape = |e: &serde_json::Value| {
        let mut keys: Vec<String> = e.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        (keys, e["changes"].clone(), e["target_type"].clone())
    };
    assert_eq!(shape(&items[0]), shape(&items[1]));
    for event in items {
        let target = event["target_id"].as_str().unwrap();
        let res = app
            .client
            .patch(app.url(&format!("{users}/{target}")))
            .bearer_auth(&admin)
            .json(&json!({"role": "auditor"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }

    // Each address was told what is true for it.
    app.mail_file_to("free@a.example", "inv_").await;
    let notice = app
        .mail_file_to("taken@b.example", "already has an account")
        .await;
    assert!(!notice.contains("inv_"), "{notice}");
    // The other tenant's user is untouched, and an address already in A is a plain 409.
    assert_eq!(
        app.login("taken@b.example", crate::helpers::STRONG_PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );
    let res = app
        .post(
            &users,
            Some(&admin),
            &json!({"email": "admin@a.example", "role": "member"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    // Inviting the free address again sends a new link: the first one stops working.
    let first = app.mail_file_to("free@a.example", "inv_").await;
    let res = app
        .post(
            &users,
            Some(&admin),
            &json!({"email": "free@a.example", "role": "member"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let token_of = |text: &str| -> String {
        let start = text.find("inv_").unwrap();
        text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    };
    let old = token_of(&first);
    for _ in 0..200 {
        if token_of(&app.mail_file_to("free@a.example", "inv_").await) != old {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = app
        .post(
            "/api/v1/auth/accept-invitation",
            None,
            &json!({"token": old, "password": crate::helpers::STRONG_PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    app.accept_invitation("free@a.example").await;
    assert_eq!(
        app.login("free@a.example", crate::helpers::STRONG_PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );
}

/// A card number typed in another script's digits (fullwidth `４１１１ …`, Devanagari,
/// Arabic-Indic) is refused wherever card numbers are: in `customer.email`, a webhook URL
/// and a description (the payments check), and in a query string or a header (the edge's
/// rule 10100), without being echoed.
#[tokio::test]
async fn card_numbers_in_any_script_are_refused_in_fields_queries_and_headers() {
    use crate::helpers::error_code_or_waf_block;
    let app = crate::helpers::spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let (_, admin) = crate::vault::merchant(&app, &root, "scripts").await;
    let fullwidth = "４１１１ １１１１ １１１１ １１１１";
    let devanagari = "४१११११११११११११११";
    let card = json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2030});
    for (body, field) in [
        (
            json!({"amount": 1000, "currency": "IDR", "card": card,
                "customer": {"email": format!("{fullwidth}@example.id")}}),
            "customer.email",
        ),
        (
            json!({"amount": 1000, "currency": "IDR", "card": card,
                "description": format!("kartu {devanagari}")}),
            "description",
        ),
    ] {
        let res = app.post("/api/v1/payments", Some(&admin), &body).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {text}");
        assert!(text.contains(field), "{text}");
        assert!(
            !text.contains("１１１１") && !text.contains("१११"),
            "{text}"
        );
    }
    let res = app
        .post(
            "/api/v1/webhooks/endpoints",
            Some(&admin),
            &json!({"url": "https://hooks.example.id/４１１１１１１１１１１１１１１１",
                "events": ["payment.captured"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Outside the body: the edge refuses it before any handler.
    let res = app
        .get(
            "/api/v1/payments?reference=%EF%BC%94%EF%BC%91%EF%BC%91%EF%BC%91%E3%80%80%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%E3%80%80%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%E3%80%80%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91",
            Some(&admin),
        )
        .await;
    error_code_or_waf_block(res, StatusCode::BAD_REQUEST, "card_number_outside_body").await;
    let res = app
        .client
        .get(app.url("/api/v1/payments"))
        .bearer_auth(&admin)
        .header("x-customer", format!("{fullwidth}@example.id"))
        .send()
        .await
        .unwrap();
    error_code_or_waf_block(res, StatusCode::BAD_REQUEST, "card_number_outside_body").await;
    // Digits that fail Luhn stay ordinary text.
    let res = app
        .get("/api/v1/payments?reference=%EF%BC%94%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%92", Some(&admin))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}
