//! Three `rampart serve` processes on one PostgreSQL and one Redis (needs
//! `RAMPART_TEST_DATABASE_URL` and `RAMPART_TEST_REDIS_URL`; `.ci/run` sets both): traffic
//! through all of them, one `kill -9`ed mid-run, and the deployment still behaves as one,
//! down to its cron schedules, whose every slot runs on one node only. With
//! `RAMPART_TEST_S3_ENDPOINT` (CI starts moto) backups go to S3: one taken while the
//! payments flow verifies and the drill restores from the bucket at the end.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::STRONG_PASSWORD;
use crate::vault::{key, merchant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_sessions_limits_and_writes_and_survive_a_kill_9() {
    if std::env::var("RAMPART_TEST_DATABASE_URL").is_err()
        || std::env::var("RAMPART_TEST_REDIS_URL").is_err()
    {
        eprintln!("skipped: set RAMPART_TEST_DATABASE_URL and RAMPART_TEST_REDIS_URL");
        return;
    }
    let app = Arc::new(
        crate::helpers::spawn_app_with(|c| {
            crate::helpers::use_test_s3_for_backups(c);
        })
        .await,
    );
    let s3 = !app.config.backup.s3_bucket.is_empty();
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let (_, shop) = merchant(&app, &root, "shop").await;
    let api_key = key(&app, &shop, &["payments:write", "payments:read"]).await;
    let prefix = format!("rampart-test:{}:", uuid::Uuid::new_v4().simple());
    let env = [
        ("RAMPART_REDIS_KEY_PREFIX", prefix.as_str()),
        // Generous for the load below, small enough to see sharing: one burst of 400 for
        // the tenant across all nodes.
        ("RAMPART_EDGE_TENANT_PER_MINUTE_DEFAULT", "60"),
        ("RAMPART_EDGE_TENANT_BURST", "400"),
        ("RAMPART_EDGE_IP_BURST", "100000"),
        ("RAMPART_EDGE_IP_PER_MINUTE", "100000"),
        // A backup every minute: a real schedule whose slots the three nodes race for
        // (five-field cron has no finer step). A short lease, so a slot whose run died
        // with the killed node is taken over quickly.
        ("RAMPART_BACKUP_SCHEDULE", "* * * * *"),
        ("RAMPART_JOBS_LEASE_SECS", "10"),
    ];
    let mut nodes = [
        app.spawn_node(&env).await,
        app.spawn_node(&env).await,
        app.spawn_node(&env).await,
    ];
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let http = reqwest::Client::new();

    // A session started on one node works on the others; logout on one ends it on all.
    let res = http
        .post(format!("{}/api/v1/auth/login", bases[0]))
        .json(&json!({"email": "admin@shop.example", "password": STRONG_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let token = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for base in &bases {
        let res = http
            .get(format!("{base}/api/v1/users/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{base}");
    }
    let res = http
        .post(format!("{}/api/v1/auth/logout", bases[1]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let res = http
        .get(format!("{}/api/v1/users/me", bases[2]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "logged out everywhere"
    );

    // Payments through all three nodes; node 1 is killed mid-run.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let limited = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for (c, base) in bases.iter().enumerate() {
        let (base, key, acked, limited, stop) = (
            base.clone(),
            api_key.clone(),
            acked.clone(),
            limited.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..1000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let reference = format!("cluster-{c}-{i}");
                let res = http
                    .post(format!("{base}/api/v1/payments"))
                    .bearer_auth(&key)
                    .header("idempotency-key", &reference)
                    .json(&json!({
                        "amount": 1000 + i,
                        "currency": "IDR",
                        "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030},
                        "reference": reference,
                        "customer": {"ip": format!("10.7.{c}.{}", i % 250)}
                    }))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        if let Some(id) = v["id"].as_str() {
                            acked.lock().unwrap().push(id.to_string());
                        }
                    }
                    Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => {
                        *limited.lock().unwrap() += 1;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // A backup while the payments flow (and while a node dies), from the CLI of a fourth
    // process, to the configured target (S3 when set).
    let backup = tokio::spawn({
        let app = app.clone();
        async move { app.cli(&["backup", "create", "--json"]).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    nodes[1].kill9();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let limited = *limited.lock().unwrap();
    eprintln!(
        "cluster: {} payments acknowledged, {limited} answered 429 by the shared limit",
        acked.len()
    );
    assert!(
        acked.len() >= 10,
        "the load ran: {} acknowledged",
        acked.len()
    );
    // One tenant burst of 400 across all nodes (plus what refilled at 1/s): a per-node
    // limit would have let about three times that through.
    assert!(
        acked.len() <= 420,
        "{} payments passed a shared burst of 400",
        acked.len()
    );
    if acked.len() >= 400 {
        assert!(limited > 0, "the shared tenant limit answered 429");
    }

    // Every acknowledged payment is there, once, read through a node of the deployment
    // whose limits are its own (the test app): the three nodes' shared tenant burst is
    // spent by now, which is the point of it.
    let survivor = &app.base;
    let mut references = BTreeSet::new();
    let mut listed = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let page: Value = http
            .get(format!("{survivor}/api/v1/payments?limit=100{cursor}"))
            .bearer_auth(&api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for p in page["data"].as_array().unwrap() {
            assert!(
                references.insert(p["reference"].as_str().unwrap_or_default().to_string()),
                "a reference was charged twice"
            );
            listed.insert(p["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    for id in &acked {
        assert!(listed.contains(id), "acknowledged payment {id} is missing");
    }

    // The killed node's place is taken by a new one; the audit chains verify.
    nodes[1] = app.spawn_node(&env).await;
    let res = http
        .get(format!("{}/ready", nodes[1].base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (ok, out, err) = app.cli(&["audit", "verify"]).await;
    assert!(ok, "audit verify: {out}{err}");

    // The backup taken under load restores (from the bucket, with S3) into a new
    // database whose audit chains verify and whose rows match its manifest.
    let (ok, out, err) = backup.await.unwrap();
    assert!(ok, "backup create under load: {err}");
    let record: Value = serde_json::from_str(&out).unwrap();
    let target = record["target"].as_str().unwrap();
    assert_eq!(target.starts_with("s3://"), s3, "{target}");
    let (ok, out, err) = app
        .cli(&["backup", "verify", record["id"].as_str().unwrap()])
        .await;
    assert!(ok, "verify the backup taken under load: {out}{err}");

    // Cron: the first minute boundary after the replacement came up is a slot the three
    // live nodes race for. Wait until its backup ran, and a few polls (1 s each) more, so
    // a node that wrongly ran it too has had every chance to.
    let slot = (rampart_store::now_ms() / 60_000 + 1) * 60_000;
    let slot_key = format!("cron:backup:{slot}");
    let mut jobs = Vec::new();
    for _ in 0..1200 {
        jobs = backup_jobs(&app).await;
        let settled = jobs.iter().all(|j| j["state"] == "done");
        let ran = jobs.iter().any(|j| j["unique_key"] == slot_key.as_str());
        if ran && settled && rampart_store::now_ms() > slot + 5_000 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut per_slot = std::collections::BTreeMap::<String, usize>::new();
    for job in &jobs {
        assert_eq!(job["kind"], "backup.create", "{job}");
        assert_eq!(job["state"], "done", "{job}");
        *per_slot
            .entry(job["unique_key"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    eprintln!("cluster: cron slots run {per_slot:?}");
    assert!(
        per_slot.contains_key(&slot_key),
        "slot {slot} ran: {per_slot:?}"
    );
    assert!(
        per_slot.values().all(|n| *n == 1),
        "every slot enqueued once across the nodes: {per_slot:?}"
    );
    // And ran once: one backup taken in that slot's minute, not one per node. (Only this
    // slot is counted: a run cut by the kill -9 above may rightly run again.)
    let (ok, out, err) = app.cli(&["backup", "list", "--json"]).await;
    assert!(ok, "{err}");
    let backups: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(
        backups.iter().all(|b| b["status"] == "complete"),
        "{backups:?}"
    );
    let in_slot = backups
        .iter()
        .filter(|b| (slot..slot + 60_000).contains(&b["created_at"].as_i64().unwrap_or(0)))
        .count();
    assert_eq!(in_slot, 1, "one backup for slot {slot}: {backups:?}");

    // The newest backup (from this slot, or the one taken under load) restores into a
    // new database whose audit chains verify and whose rows match its manifest.
    let (ok, out, err) = app.cli(&["backup", "drill", "--json"]).await;
    assert!(ok, "drill: {out}{err}");
    let drill: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(drill["ok"], true, "{drill}");
}

/// The scheduled backup jobs, through `rampart jobs list`.
async fn backup_jobs(app: &crate::helpers::TestApp) -> Vec<Value> {
    let (ok, out, err) = app
        .cli(&["jobs", "list", "--queue", "backup", "--json"])
        .await;
    assert!(ok, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The pid in the detector's lease, once a node holds it (holders are `node_<pid>_<id>`).
async fn detector_pid(app: &crate::helpers::TestApp) -> (u32, i64) {
    for _ in 0..300 {
        let rows: Vec<(String, i64, i64)> = app
            .query_rows("SELECT holder, lease_until, last_seq FROM detection_state")
            .await;
        if let Some((holder, until, seq)) = rows.first() {
            if *until > rampart_store::now_ms() {
                if let Some(pid) = holder.split('_').nth(1).and_then(|p| p.parse().ok()) {
                    return (pid, *seq);
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no node took the detector's lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_raise_one_spraying_alert_even_when_the_detectors_node_is_killed() {
    if std::env::var("RAMPART_TEST_DATABASE_URL").is_err()
        || std::env::var("RAMPART_TEST_REDIS_URL").is_err()
    {
        eprintln!("skipped: set RAMPART_TEST_DATABASE_URL and RAMPART_TEST_REDIS_URL");
        return;
    }
    // The test's own process runs no detector: only the three nodes compete for it.
    let app = crate::helpers::spawn_app_with(|c| c.detection.enabled = false).await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let tenant = app.create_tenant(&root, "Sprayed", "merchant").await;
    app.create_user(
        &tenant,
        "boss@sprayed.example",
        rampart_store::Role::TenantAdmin,
    )
    .await;
    for n in 0..6 {
        app.create_user(
            &tenant,
            &format!("staff{n}@sprayed.example"),
            rampart_store::Role::Member,
        )
        .await;
    }
    let prefix = format!("rampart-test:{}:", uuid::Uuid::new_v4().simple());
    let env = [
        ("RAMPART_REDIS_KEY_PREFIX", prefix.as_str()),
        ("RAMPART_JOBS_POLL_INTERVAL_MS", "100"),
        ("RAMPART_DETECTION_ENABLED", "true"),
    ];
    let mut nodes = [
        app.spawn_node(&env).await,
        app.spawn_node(&env).await,
        app.spawn_node(&env).await,
    ];
    let http = reqwest::Client::new();
    let (holder, _) = detector_pid(&app).await;
    let at = nodes
        .iter()
        .position(|n| n.pid() == holder)
        .expect("the holder is one of the three nodes");
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let fail = |n: usize, base: String| {
        let http = http.clone();
        async move {
            let res = http
                .post(format!("{base}/api/v1/auth/login"))
                .json(&json!({"email": format!("staff{n}@sprayed.example"), "password": "Summer2026!x"}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
    };
    // Three accounts tried, through every node: under the threshold (five accounts).
    for n in 0..3 {
        fail(n, bases[n % 3].clone()).await;
    }
    // Once the detector has evaluated them, its node dies mid-attack.
    let stored = loop {
        let rows: Vec<(i64,)> = app
            .query_rows(
                "SELECT seq FROM security_events WHERE event = 'login_failure' ORDER BY seq",
            )
            .await;
        if rows.len() == 3 {
            break rows[2].0;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    for _ in 0..100 {
        let rows: Vec<(i64,)> = app.query_rows("SELECT last_seq FROM detection_state").await;
        if rows[0].0 >= stored {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    nodes[at].kill9();
    let alive: Vec<String> = (0..3)
        .filter(|i| *i != at)
        .map(|i| bases[i].clone())
        .collect();
    // Three more accounts through the nodes left: the fifth crosses the threshold. The
    // node that takes the lease over replays the first three, so it sees all six.
    for n in 3..6 {
        fail(n, alive[n % 2].clone()).await;
    }
    let count = || async {
        app.query_rows::<(i64,)>(
            "SELECT COUNT(*) FROM alerts WHERE rule_id = 'rampart-password-spraying'",
        )
        .await[0]
            .0
    };
    let mut raised = 0;
    // The lease lapses after 15 s; then the take-over and the replay.
    for _ in 0..400 {
        raised = count().await;
        if raised > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(raised, 1, "one alert for the attack");
    let (taker, _) = detector_pid(&app).await;
    assert_ne!(taker, holder, "another node holds the lease");
    let rows: Vec<(i64, String)> = app
        .query_rows(
            "SELECT event_count, tenant_id FROM alerts WHERE rule_id = 'rampart-password-spraying'",
        )
        .await;
    assert!(
        rows[0].0 >= 5,
        "the replay counted the accounts tried before the kill"
    );
    assert_eq!(rows[0].1, tenant);
    // Still one after a while (no node raises it again), and one mail to the admin.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(count().await, 1);
    let mail = app
        .mail_file_to("boss@sprayed.example", "rampart-password-spraying")
        .await;
    assert!(mail.contains("Password spraying"), "{mail}");
    let mails = std::fs::read_dir(app.dir.path().join("mail"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .filter(|t| t.contains("rampart-password-spraying"))
        .count();
    assert_eq!(
        mails, 1,
        "one mail for the attack, from whichever node sent it"
    );
}
