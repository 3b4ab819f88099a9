//! Detection wired into the server: security events stored in the database, the detector
//! raising alerts from them, the alerts API, and a take-over that replays the window.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app_with, TestApp};
use rampart_store::detection::NewSecurityEvent;
use rampart_store::Role;

async fn alerts(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let page: Value = app
        .get(&format!("/api/v1/alerts{query}"), Some(token))
        .await
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().clone()
}

/// Polls until `rule` has raised an alert (ten seconds at most).
async fn alert_of(app: &TestApp, token: &str, rule: &str) -> Vec<Value> {
    for _ in 0..100 {
        let found = alerts(app, token, &format!("?rule={rule}")).await;
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {rule} alert");
}

#[tokio::test]
async fn a_password_spray_raises_one_alert_that_admins_acknowledge_and_resolve() {
    let app = spawn_app_with(|c| c.jobs.poll_interval_ms = 100).await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let tenant = app.create_tenant(&root, "Sprayed", "merchant").await;
    app.create_user(&tenant, "boss@sprayed.example", Role::TenantAdmin)
        .await;
    let (boss, _) = app.tokens("boss@sprayed.example").await;
    for n in 0..7 {
        app.create_user(&tenant, &format!("staff{n}@sprayed.example"), Role::Member)
            .await;
    }
    let res = app
        .post(
            "/api/v1/webhooks/endpoints",
            Some(&boss),
            &json!({"url": "https://hooks.sprayed.example/in", "events": ["alert.raised"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    // One wrong guess at each of six accounts from one address: under every per-account
    // and per-address threshold, over the spraying one (five accounts in ten minutes).
    for n in 0..6 {
        let res = app
            .login(&format!("staff{n}@sprayed.example"), "Summer2026!x")
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let raised = alert_of(&app, &root, "rampart-password-spraying").await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    let alert = &raised[0];
    assert_eq!(alert["level"], "high");
    assert_eq!(alert["status"], "open");
    assert_eq!(alert["techniques"], json!(["T1110.003"]));
    assert_eq!(alert["group"]["source_ip"], "127.0.0.1");
    assert_eq!(alert["tenant_id"], tenant.as_str());
    assert!(alert["event_count"].as_i64().unwrap() >= 5, "{alert}");

    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics
            .contains("rampart_alerts_total{rule=\"rampart-password-spraying\",level=\"high\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("rampart_detection_events_total"));
    assert!(metrics.contains("rampart_detection_lag_seconds"));
    assert!(metrics.contains("rampart_security_events_dropped_total"));

    // The spray goes on: still one alert (the rule is quiet for its window once fired).
    let res = app.login("staff6@sprayed.example", "Summer2026!x").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = alerts(&app, &root, "?rule=rampart-password-spraying").await;
    assert_eq!(now.len(), 1, "{now:?}");

    // One mail to the tenant's admin (a high alert), none per failed login; one webhook
    // delivery of `alert.raised` to the endpoint that subscribed.
    let mail = app
        .mail_file_to("boss@sprayed.example", "rampart-password-spraying")
        .await;
    assert!(mail.contains("Subject: [high] Password spraying"), "{mail}");
    assert!(mail.contains("/console/alerts"), "{mail}");
    let mails = std::fs::read_dir(app.dir.path().join("mail"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .filter(|t| t.contains("rampart-password-spraying"))
        .count();
    assert_eq!(mails, 1, "one mail for the attack");
    let deliveries: Vec<Value> = app
        .get("/api/v1/webhooks/deliveries", Some(&boss))
        .await
        .json()
        .await
        .unwrap();
    let announced: Vec<&Value> = deliveries
        .iter()
        .filter(|d| d["event"] == "alert.raised")
        .collect();
    assert_eq!(announced.len(), 1, "{deliveries:?}");
    assert!(announced[0]["body"]
        .as_str()
        .unwrap()
        .contains(alert["id"].as_str().unwrap()));

    // The tenant's admin sees it too, and acknowledges it; the change is audited.
    let id = alert["id"].as_str().unwrap();
    assert_eq!(alerts(&app, &boss, "?status=open").await.len(), 1);
    let res = app
        .post(
            &format!("/api/v1/alerts/{id}/acknowledge"),
            Some(&boss),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "acknowledged");
    let audit: Value = app
        .get("/api/v1/audit-events?action=alert.acknowledge", Some(&boss))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["items"][0]["target_id"], id, "{audit}");
    let res = app
        .post(
            &format!("/api/v1/alerts/{id}/resolve"),
            Some(&root),
            &json!({}),
        )
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "resolved");

    // Another tenant's admin sees none of it and cannot touch it.
    let other = app.create_tenant(&root, "Elsewhere", "merchant").await;
    app.create_user(&other, "boss@elsewhere.example", Role::TenantAdmin)
        .await;
    let (stranger, _) = app.tokens("boss@elsewhere.example").await;
    assert!(alerts(&app, &stranger, "").await.is_empty());
    let res = app
        .post(
            &format!("/api/v1/alerts/{id}/acknowledge"),
            Some(&stranger),
            &json!({}),
        )
        .await;
    assert_eq!(error_code(res, StatusCode::NOT_FOUND).await, "not_found");
    let res = app.get("/api/v1/alerts?level=severe", Some(&root)).await;
    assert_eq!(
        error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await,
        "invalid_field"
    );

    // The failed logins are in the database, with their tenant, for the whole cluster.
    let events: Vec<Value> = app
        .get("/api/v1/security-events?event=login_failure", Some(&root))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events.len(), 7, "{events:?}");
    assert!(events.iter().all(|e| e["tenant_id"] == tenant.as_str()));
    assert!(!events[0].to_string().contains("Summer2026"), "no password");
    // Paged: the newest four, then those before the first (oldest) of them.
    let page = |query: String| {
        let (app, root) = (&app, root.clone());
        async move {
            app.get(
                &format!("/api/v1/security-events?event=login_failure&{query}"),
                Some(&root),
            )
            .await
            .json::<Vec<Value>>()
            .await
            .unwrap()
        }
    };
    let newest = page("limit=4".into()).await;
    assert_eq!(newest.len(), 4);
    let cursor = newest[0]["seq"].as_i64().unwrap();
    let older = page(format!("cursor={cursor}")).await;
    assert_eq!(older.len(), 3);
    assert!(older.iter().all(|e| e["seq"].as_i64().unwrap() < cursor));
}

fn failure(tenant: &str, user: &str, at: i64) -> NewSecurityEvent {
    NewSecurityEvent {
        occurred_at: at,
        event: "login_failure".into(),
        severity: "warning".into(),
        tenant_id: Some(tenant.into()),
        user_id: Some(user.into()),
        api_key_id: None,
        source_ip: Some("203.0.113.9".into()),
        request_id: None,
        detail: "null".into(),
    }
}

#[tokio::test]
async fn a_node_taking_the_detector_over_replays_the_window_and_raises_nothing_twice() {
    use rampart::detect::{load_rules, Evaluator};
    let app = spawn_app_with(|c| c.detection.enabled = false).await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let t = app.create_tenant(&root, "Taken over", "merchant").await;
    let store = app.store.clone();
    let now = rampart_store::now_ms();
    let rules = || load_rules(&rampart_config::DetectionConfig::default()).unwrap();
    // Four accounts tried: under the spraying threshold.
    let first: Vec<_> = (0..4)
        .map(|n| failure(&t, &format!("u{n}"), now - 60_000 + n))
        .collect();
    store.insert_security_events(&first).await.unwrap();
    let mut a = Evaluator::resume(rules(), store.clone(), None, 0)
        .await
        .unwrap();
    assert_eq!(a.step().await.unwrap().new_alerts, 0);
    let cursor = a.cursor();
    drop(a); // the node dies

    // The fifth account arrives; a new node resumes from the cursor. Without the replay it
    // would have seen one account; with it, five.
    store
        .insert_security_events(&[failure(&t, "u4", now - 30_000)])
        .await
        .unwrap();
    let mut b = Evaluator::resume(rules(), store.clone(), None, cursor)
        .await
        .unwrap();
    let step = b.step().await.unwrap();
    assert_eq!(step.events, 1);
    assert_eq!(step.new_alerts, 1);

    // A third node resuming after it replays everything and raises nothing more.
    let mut c = Evaluator::resume(rules(), store.clone(), None, b.cursor())
        .await
        .unwrap();
    assert_eq!(c.step().await.unwrap().events, 0);
    let rows: Vec<(i64,)> = app
        .query_rows("SELECT COUNT(*) FROM alerts WHERE rule_id = 'rampart-password-spraying'")
        .await;
    assert_eq!(rows[0].0, 1);

    // `rampart detect replay` runs the rules over the stored events of a time range and
    // prints what they raise, storing nothing.
    let from = time::OffsetDateTime::from_unix_timestamp((now - 120_000) / 1000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (ok, out, err) = app.cli(&["detect", "replay", "--from", &from]).await;
    assert!(ok, "{err}");
    let printed: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed.len(), 1, "{out}");
    assert_eq!(printed[0]["rule_id"], "rampart-password-spraying");
    assert_eq!(printed[0]["count"], 5);
    // The five failures, and whatever else the range holds (the admin's sign-in; with
    // the CRS in front, its detections).
    let evaluated: usize = err
        .split(" events evaluated, 1 alerts")
        .next()
        .and_then(|n| n.trim().rsplit('\n').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!(evaluated >= 5, "{err}");
    let rows: Vec<(i64,)> = app.query_rows("SELECT COUNT(*) FROM alerts").await;
    assert_eq!(rows[0].0, 1, "the replay stored nothing");
    let (ok, _, err) = app.cli(&["detect", "replay", "--from", "yesterday"]).await;
    assert!(
        !ok && err.contains("--from must be an RFC 3339 time"),
        "{err}"
    );
}

#[tokio::test]
async fn ten_small_declines_for_one_shopper_address_raise_a_card_testing_alert() {
    let app = spawn_app_with(|c| c.jobs.poll_interval_ms = 100).await;
    let (admin, key) = crate::payments::setup(&app).await;
    let (root, _) = app.tokens("root@example.id").await;
    // The merchant's own fraud rules would hold or decline these first; this test is
    // about the platform noticing the processor's declines.
    let res = app
        .client
        .put(app.url("/api/v1/fraud/rules"))
        .bearer_auth(&admin)
        .json(&json!({
            "card_velocity": {"max": 1000}, "ip_velocity": {"max": 1000},
            "email_velocity": {"max": 1000}, "cards_per_ip": {"max": 1000},
            "card_testing": {"enabled": false},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
    // Under the threshold from another address, and large declines: neither counts.
    for (ip, amount) in [("198.51.100.20", 400), ("198.51.100.21", 90_000)] {
        let body = crate::payments::card_payment("4000000000000002", amount, ip);
        let res = crate::payments::pay(&app, &key, None, &body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    for n in 0..10 {
        let body = crate::payments::card_payment("4000000000000002", 100 + n, "203.0.113.77");
        let res = crate::payments::pay(&app, &key, None, &body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let paid: Value = res.json().await.unwrap();
        assert_eq!(paid["status"], "declined");
    }
    let raised = alert_of(&app, &root, "rampart-card-testing").await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0]["group"]["source_ip"], "203.0.113.77");
    assert_eq!(raised[0]["level"], "high");
    // The merchant's admin sees it: the alert is about their tenant.
    assert_eq!(
        alerts(&app, &admin, "?rule=rampart-card-testing")
            .await
            .len(),
        1
    );
    let events: Vec<Value> = app
        .get(
            "/api/v1/security-events?event=payment_declined",
            Some(&root),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events.len(), 12);
    assert!(!events
        .iter()
        .any(|e| e.to_string().contains("4000000000000002")));
}

#[tokio::test]
async fn a_revoked_api_key_still_presented_raises_an_alert_and_unknown_keys_are_noted() {
    let app = spawn_app_with(|c| c.jobs.poll_interval_ms = 100).await;
    let (admin, key) = crate::payments::setup(&app).await;
    let (root, _) = app.tokens("root@example.id").await;
    let listed: Vec<Value> = app
        .get("/api/v1/api-keys", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/api-keys/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for _ in 0..3 {
        let res = app.get("/api/v1/payments", Some(&key)).await;
        assert_eq!(
            error_code(res, StatusCode::UNAUTHORIZED).await,
            "invalid_api_key"
        );
    }
    let res = app.get("/api/v1/payments", Some("rk_no_such_key")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let raised = alert_of(&app, &root, "rampart-api-key-revoked-in-use").await;
    assert_eq!(
        raised.len(),
        1,
        "one alert per key, not per use: {raised:?}"
    );
    assert_eq!(raised[0]["group"]["api_key_id"], id.as_str());
    assert_eq!(raised[0]["level"], "high");
    let events: Vec<Value> = app
        .get(
            "/api/v1/security-events?event=api_key_rejected",
            Some(&root),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(events[..3]
        .iter()
        .all(|e| e["detail"]["reason"] == "revoked" && e["api_key_id"] == id.as_str()));
    assert_eq!(events[3]["detail"]["reason"], "unknown");
    assert!(events[3].get("api_key_id").is_none());
    assert!(
        !events.iter().any(|e| e.to_string().contains(&key)),
        "no secret"
    );
}

#[tokio::test]
async fn an_event_that_commits_after_a_later_one_is_still_evaluated() {
    use rampart::detect::{load_rules, Evaluator};
    let app = spawn_app_with(|c| c.detection.enabled = false).await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let t = app.create_tenant(&root, "Late", "merchant").await;
    let rules = load_rules(&rampart_config::DetectionConfig::default()).unwrap();
    let mut ev = Evaluator::resume(rules, app.store.clone(), None, 0)
        .await
        .unwrap();
    let now = rampart_store::now_ms();
    let stage = |seq: i64| {
        format!(
            "INSERT INTO security_events (seq, id, occurred_at, event, severity, tenant_id, \
             user_id, source_ip, detail) VALUES ({seq}, 'late-{seq}', {now}, 'login_failure', \
             'warning', '{t}', 'u{seq}', '203.0.113.5', 'null')"
        )
    };
    // Four accounts, with a hole at 1003: on PostgreSQL a sequence number is taken at
    // insert, so 1003's transaction can commit after 1004's.
    for seq in [1000, 1001, 1002, 1004] {
        app.execute_sql(&stage(seq)).await;
    }
    let first = ev.step().await.unwrap();
    // The four, and what came before them (the admin's sign-in; with the CRS in front,
    // its detections).
    assert!(first.events >= 4, "{first:?}");
    assert_eq!(first.new_alerts, 0);
    app.execute_sql(&stage(1003)).await;
    let late = ev.step().await.unwrap();
    assert_eq!(late.events, 1, "the late event is read behind the cursor");
    assert_eq!(late.new_alerts, 1, "and it is the fifth account");
    assert_eq!(ev.step().await.unwrap().events, 0, "nothing twice");
}

#[tokio::test]
async fn five_exports_by_one_principal_within_an_hour_raise_a_mass_export_alert() {
    let app = spawn_app_with(|c| c.jobs.poll_interval_ms = 100).await;
    let (admin, key) = crate::payments::setup(&app).await;
    let (root, _) = app.tokens("root@example.id").await;
    for format in ["csv", "json", "csv", "csv"] {
        let res = app
            .get(
                &format!("/api/v1/reports/transactions?format={format}"),
                Some(&admin),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    // Another principal's export does not add to the admin's count.
    let res = app.get("/api/v1/reports/transactions", Some(&key)).await;
    assert_eq!(res.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(alerts(&app, &root, "?rule=rampart-mass-export")
        .await
        .is_empty());
    let res = app
        .get("/api/v1/reports/transactions?format=csv", Some(&admin))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let raised = alert_of(&app, &root, "rampart-mass-export").await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0]["event_count"], 5);
    assert!(raised[0]["group"]["user_id"].is_string(), "{raised:?}");
}

/// A failed login of `user` from `ip` at `at`, as the security log stores one.
fn failure_from(tenant: &str, user: &str, ip: &str, at: i64) -> NewSecurityEvent {
    NewSecurityEvent {
        source_ip: Some(ip.into()),
        ..failure(tenant, user, at)
    }
}

/// Five accounts of `tenant` tried from `ip` around `at`: one spraying alert.
fn spray(tenant: &str, ip: &str, at: i64) -> Vec<NewSecurityEvent> {
    (0..5)
        .map(|n| failure_from(tenant, &format!("u{n}@x.example"), ip, at + n))
        .collect()
}

async fn count_alerts(app: &TestApp, rule: &str) -> i64 {
    let rows: Vec<(i64,)> = app
        .query_rows(&format!(
            "SELECT COUNT(*) FROM alerts WHERE rule_id = '{rule}'"
        ))
        .await;
    rows[0].0
}

/// Waits until `rule` has `n` alerts stored (ten seconds at most).
async fn until_alerts(app: &TestApp, rule: &str, n: i64) {
    for _ in 0..100 {
        if count_alerts(app, rule).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {n} {rule} alerts");
}

#[tokio::test]
async fn an_attack_wave_sends_one_mail_then_a_digest_and_suppressions_and_snoozes_keep_quiet() {
    let app = spawn_app_with(|c| {
        c.jobs.poll_interval_ms = 100;
        // One alert mail and one alert.raised event an hour; the rest in a digest a
        // second after the first alert waiting.
        c.detection.mail_per_hour = 1;
        c.detection.webhook_per_hour = 1;
        c.detection.digest_interval_secs = 1;
    })
    .await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let tenant = app.create_tenant(&root, "Waved", "merchant").await;
    app.create_user(&tenant, "boss@waved.example", Role::TenantAdmin)
        .await;
    let (boss, _) = app.tokens("boss@waved.example").await;
    let res = app
        .post(
            "/api/v1/webhooks/endpoints",
            Some(&boss),
            &json!({"url": "https://hooks.waved.example/in", "events": ["alert.raised", "alert.digest"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let rule = "rampart-password-spraying";
    let now = rampart_store::now_ms();

    // A wave from three addresses: three high alerts, one mail and one event at once,
    // then one digest of the other two, by mail and by webhook.
    let mut wave = Vec::new();
    for ip in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        wave.extend(spray(&tenant, ip, now));
    }
    app.store.insert_security_events(&wave).await.unwrap();
    until_alerts(&app, rule, 3).await;
    let digest = app
        .mail_file_to("boss@waved.example", "2 security alerts")
        .await;
    assert!(
        digest.contains("Subject: [Rampart] 2 security alerts"),
        "{digest}"
    );
    assert!(digest.contains("rampart-password-spraying"), "{digest}");
    let mails = || {
        std::fs::read_dir(app.dir.path().join("mail"))
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .filter(|t| t.contains("To: boss@waved.example"))
            .filter(|t| t.contains("Password spraying") || t.contains("security alerts"))
            .count()
    };
    assert_eq!(mails(), 2, "one alert mail and one digest, not three mails");
    let listed = alerts(&app, &boss, &format!("?rule={rule}")).await;
    let mut deliveries: Vec<&str> = listed
        .iter()
        .map(|a| a["mail_delivery"].as_str().unwrap())
        .collect();
    deliveries.sort();
    assert_eq!(deliveries, ["digested", "digested", "immediate"]);
    let events: Vec<Value> = app
        .get("/api/v1/webhooks/deliveries", Some(&boss))
        .await
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|d| d["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "alert.raised").count(),
        1,
        "{kinds:?}"
    );
    let digests: Vec<&Value> = events
        .iter()
        .filter(|d| d["event"] == "alert.digest")
        .collect();
    assert_eq!(digests.len(), 1, "{kinds:?}");
    let body: Value = serde_json::from_str(digests[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["data"]["count"], 2, "{body}");

    // Snooze: out of the open list until the time, back in it after; audited.
    let of_ip = |ip: &str| -> String {
        listed
            .iter()
            .find(|a| a["group"]["source_ip"] == ip)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = of_ip("203.0.113.1");
    let soon = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(rampart_store::now_ms() + ms) * 1_000_000,
        )
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
    };
    for (until, why) in [
        (soon(-1000), "must be in the future"),
        (soon(8 * 86_400_000), "at most 7 days"),
    ] {
        let res = app
            .post(
                &format!("/api/v1/alerts/{first}/snooze"),
                Some(&boss),
                &json!({"until": until}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(res.text().await.unwrap().contains(why));
    }
    let res = app
        .post(
            &format!("/api/v1/alerts/{first}/snooze"),
            Some(&boss),
            &json!({"until": soon(1500)}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let snoozed: Value = res.json().await.unwrap();
    assert_eq!(snoozed["status"], "snoozed", "{snoozed}");
    assert!(snoozed["snoozed_until"].is_string());
    let open_ids = |list: Vec<Value>| -> Vec<String> {
        list.iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!open_ids(alerts(&app, &boss, "?status=open").await).contains(&first));
    assert!(open_ids(alerts(&app, &boss, "?status=snoozed").await).contains(&first));
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(open_ids(alerts(&app, &boss, "?status=open").await).contains(&first));
    let audit: Value = app
        .get("/api/v1/audit-events?action=alert.snooze", Some(&boss))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["items"][0]["target_id"], first.as_str(), "{audit}");

    // Suppress the second address's alert: its next spray raises nothing and is counted.
    let second = of_ip("203.0.113.2");
    let res = app
        .post(
            &format!("/api/v1/alerts/{second}/suppress"),
            Some(&boss),
            &json!({"reason": " ", "until": soon(86_400_000)}),
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await,
        "invalid_field"
    );
    let res = app
        .post(
            &format!("/api/v1/alerts/{second}/suppress"),
            Some(&boss),
            &json!({"reason": "our uptime monitor, known and benign", "until": soon(86_400_000)}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let suppression: Value = res.json().await.unwrap();
    assert_eq!(suppression["state"], "active");
    assert_eq!(suppression["group"]["source_ip"], "203.0.113.2");
    let sid = suppression["id"].as_str().unwrap().to_string();
    for id in [&first, &second] {
        let res = app
            .post(
                &format!("/api/v1/alerts/{id}/resolve"),
                Some(&boss),
                &json!({}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = app
        .post(
            &format!("/api/v1/alerts/{first}/snooze"),
            Some(&boss),
            &json!({"until": soon(60_000)}),
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::CONFLICT).await,
        "alert_resolved"
    );
    // Later than the rule's ten-minute window, so the rule fires again for both (the
    // alerts are resolved, so these are new ones, not more of the same).
    let later = now + 11 * 60_000;
    let mut again = spray(&tenant, "203.0.113.2", later);
    again.extend(spray(&tenant, "203.0.113.1", later));
    app.store.insert_security_events(&again).await.unwrap();
    until_alerts(&app, rule, 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        count_alerts(&app, rule).await,
        4,
        "the suppressed group raised nothing"
    );
    let list: Vec<Value> = app
        .get("/api/v1/alert-suppressions", Some(&boss))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert!(
        list[0]["suppressed_count"].as_i64().unwrap() >= 1,
        "{list:?}"
    );
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("rampart_alerts_suppressed_total{rule=\"rampart-password-spraying\"}"),
        "{metrics}"
    );

    // Another tenant's admin can neither see nor lift it; the owner lifts it (audited),
    // and the group raises alerts again.
    let other = app.create_tenant(&root, "Other", "merchant").await;
    app.create_user(&other, "boss@other.example", Role::TenantAdmin)
        .await;
    let (stranger, _) = app.tokens("boss@other.example").await;
    let theirs: Vec<Value> = app
        .get("/api/v1/alert-suppressions", Some(&stranger))
        .await
        .json()
        .await
        .unwrap();
    assert!(theirs.is_empty());
    let lift = |token: String| {
        let (app, sid) = (&app, sid.clone());
        async move {
            app.client
                .delete(app.url(&format!("/api/v1/alert-suppressions/{sid}")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        error_code(lift(stranger.clone()).await, StatusCode::NOT_FOUND).await,
        "not_found"
    );
    let res = lift(boss.clone()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["state"], "lifted");
    let audit: Value = app
        .get(
            "/api/v1/audit-events?action=alert.suppression_lift",
            Some(&boss),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["items"][0]["target_id"], sid.as_str(), "{audit}");
    app.store
        .insert_security_events(&spray(&tenant, "203.0.113.2", now + 22 * 60_000))
        .await
        .unwrap();
    until_alerts(&app, rule, 5).await;
}

#[tokio::test]
async fn a_waf_block_names_the_tenant_of_a_valid_credential_only() {
    let app = spawn_app_with(|c| c.detection.enabled = false).await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let tenant = app.create_tenant(&root, "Blocked", "merchant").await;
    app.create_user(&tenant, "boss@blocked.example", Role::TenantAdmin)
        .await;
    let (boss, _) = app.tokens("boss@blocked.example").await;
    // A card number in the URL: Rampart's own WAF rule refuses it (with or without CRS).
    let path = "/api/v1/users/me?card=4111111111111111";
    for token in [Some(boss.as_str()), Some("not-a-token"), None] {
        let res = app.get(path, token).await;
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    let mut blocked = Vec::new();
    for _ in 0..50 {
        blocked = app
            .query_rows::<(Option<String>,)>(
                "SELECT tenant_id FROM security_events WHERE event = 'waf_blocked' ORDER BY seq",
            )
            .await;
        if blocked.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut tenants: Vec<Option<String>> = blocked.into_iter().map(|(t,)| t).collect();
    tenants.sort();
    assert_eq!(tenants, [None, None, Some(tenant.clone())]);
    let stored: Vec<(String,)> = app
        .query_rows("SELECT detail FROM security_events WHERE event = 'waf_blocked'")
        .await;
    assert!(stored
        .iter()
        .all(|(d,)| !d.contains(&boss) && !d.contains("4111111111111111")));
}
