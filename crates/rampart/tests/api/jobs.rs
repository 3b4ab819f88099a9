//! The job queue on the app's own database (SQLite, or PostgreSQL when
//! `RAMPART_TEST_DATABASE_URL` is set): workers built on `app.store` with test handlers,
//! the operator commands through the real binary, and `/metrics`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rampart_jobs::{Job, JobError, Jobs, QueueLimits, Settings};
use rampart_store::{Role, Store, PLATFORM_TENANT_ID};
use serde_json::json;

/// Quick polls and retries, so tests wait for behaviour, not for production timings.
fn fast(node: &str) -> Settings {
    Settings {
        poll_interval: Duration::from_millis(20),
        lease: Duration::from_secs(30),
        default_max_attempts: 3,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(40),
        node: node.to_string(),
        ..Settings::default()
    }
}

/// Waits (up to a generous deadline, never a threshold under test) until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn state_of(store: &Store, id: &str) -> String {
    store.get_job(id).await.expect("job").state
}

#[tokio::test]
async fn a_job_enqueued_in_a_rolled_back_transaction_never_exists() {
    let app = app_without_worker().await;
    let admin = app
        .create_user(PLATFORM_TENANT_ID, "ops@example.com", Role::PlatformAdmin)
        .await;
    let scope = app
        .store
        .scope_for_platform_admin(&admin, PLATFORM_TENANT_ID)
        .await
        .unwrap();
    let jobs = Jobs::builder(app.store.clone(), fast("a")).build();

    let mut tx = app.store.tenant_write(&scope).await.unwrap();
    let id = jobs
        .enqueue_in(&mut tx, Job::new("outbox", "mail.send", json!({"n": 1})))
        .await
        .unwrap()
        .expect("inserted");
    drop(tx); // an error in the caller after enqueueing: everything rolls back
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        app.store.get_job(&id).await.is_err(),
        "rolled back with the tx"
    );

    let mut tx = app.store.tenant_write(&scope).await.unwrap();
    let id = jobs
        .enqueue_in(&mut tx, Job::new("outbox", "mail.send", json!({"n": 2})))
        .await
        .unwrap()
        .expect("inserted");
    tx.commit().await.unwrap();
    assert_eq!(state_of(&app.store, &id).await, "queued");
}

#[tokio::test]
async fn due_jobs_run_by_priority_then_age_and_delayed_jobs_wait() {
    let app = app_without_worker().await;
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = order.clone();
    let mut settings = fast("a");
    settings.queues.insert(
        "ordered".into(),
        QueueLimits {
            concurrency: 1,
            per_second: None,
        },
    );
    let jobs = Jobs::builder(app.store.clone(), settings)
        .handler("ordered", "record", move |_ctx, payload| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push(payload["name"].as_str().unwrap().to_string());
                Ok(())
            }
        })
        .build();
    let enqueue = |name: &str, priority: i64, delay: Duration| {
        Job::new("ordered", "record", json!({ "name": name }))
            .with_priority(priority)
            .with_delay(delay)
    };
    jobs.enqueue(enqueue("low-old", 0, Duration::ZERO))
        .await
        .unwrap();
    jobs.enqueue(enqueue("high", 5, Duration::ZERO))
        .await
        .unwrap();
    jobs.enqueue(enqueue("low-new", 0, Duration::ZERO))
        .await
        .unwrap();
    let later = jobs
        .enqueue(enqueue("later", 9, Duration::from_secs(3600)))
        .await
        .unwrap()
        .unwrap();
    let worker = jobs.start().await.unwrap();
    eventually("three jobs ran", || {
        let order = order.clone();
        async move { order.lock().unwrap().len() == 3 }
    })
    .await;
    assert_eq!(*order.lock().unwrap(), ["high", "low-old", "low-new"]);
    assert_eq!(state_of(&app.store, &later).await, "queued", "not due yet");
    worker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_unique_key_dedups_while_the_job_is_live() {
    let app = app_without_worker().await;
    let jobs = Jobs::builder(app.store.clone(), fast("a")).build();
    let job = || Job::new("webhooks", "deliver", json!({})).with_unique_key("evt_1");
    let first = jobs.enqueue(job()).await.unwrap().expect("inserted");
    assert_eq!(jobs.enqueue(job()).await.unwrap(), None, "deduplicated");
    // Another kind may use the same key.
    assert!(jobs
        .enqueue(Job::new("webhooks", "other", json!({})).with_unique_key("evt_1"))
        .await
        .unwrap()
        .is_some());
    // Once the job is done, the key is free again.
    let claimed = app
        .store
        .claim_jobs("webhooks", 10, "n", rampart_store::now_ms() + 60_000)
        .await
        .unwrap();
    let mine = claimed.iter().find(|j| j.id == first).unwrap();
    assert!(app
        .store
        .complete_job(&first, "n", mine.attempts)
        .await
        .unwrap());
    assert!(jobs.enqueue(job()).await.unwrap().is_some());
}

#[tokio::test]
async fn failing_jobs_retry_with_backoff_then_die_and_the_cli_requeues_them() {
    let app = app_without_worker().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let jobs = Jobs::builder(app.store.clone(), fast("a"))
        .handler("flaky", "always.fails", move |ctx, _| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                Err(JobError::Retryable(format!(
                    "partner answered 503 (attempt {})",
                    ctx.attempt
                )))
            }
        })
        .handler("flaky", "bad.payload", |_, _| async {
            Err(JobError::Permanent("unknown merchant".into()))
        })
        .build();
    let id = jobs
        .enqueue(Job::new("flaky", "always.fails", json!({})).with_max_attempts(3))
        .await
        .unwrap()
        .unwrap();
    let permanent = jobs
        .enqueue(Job::new("flaky", "bad.payload", json!({})))
        .await
        .unwrap()
        .unwrap();
    let worker = jobs.start().await.unwrap();
    let store = app.store.clone();
    eventually("the job is dead", || {
        let store = store.clone();
        let id = id.clone();
        async move { state_of(&store, &id).await == "dead" }
    })
    .await;
    let dead = app.store.get_job(&id).await.unwrap();
    assert_eq!(dead.attempts, 3);
    assert_eq!(runs.load(Ordering::SeqCst), 3, "ran once per attempt");
    assert_eq!(
        dead.last_error.as_deref(),
        Some("partner answered 503 (attempt 3)")
    );
    eventually("the permanent failure is dead after one attempt", || {
        let store = store.clone();
        let id = permanent.clone();
        async move { state_of(&store, &id).await == "dead" }
    })
    .await;
    assert_eq!(app.store.get_job(&permanent).await.unwrap().attempts, 1);
    worker.shutdown(Duration::from_secs(5)).await;

    let (ok, out, err) = app.cli(&["jobs", "dead"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&id) && out.contains("partner answered 503"),
        "{out}"
    );
    let (ok, out, err) = app.cli(&["jobs", "dead", "--json"]).await;
    assert!(ok, "{err}");
    let listed: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 2);

    let (ok, out, err) = app.cli(&["jobs", "retry", &id]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), id);
    let requeued = app.store.get_job(&id).await.unwrap();
    assert_eq!((requeued.state.as_str(), requeued.attempts), ("queued", 0));
    let (ok, out, _) = app.cli(&["jobs", "list", "--state", "queued"]).await;
    assert!(ok && out.contains(&id), "{out}");

    let (ok, _, err) = app.cli(&["jobs", "retry", "no-such-job"]).await;
    assert!(!ok, "an unknown id fails");
    assert!(err.contains("no dead job no-such-job"), "{err}");
    let (ok, _, err) = app.cli(&["jobs", "retry", &id]).await;
    assert!(!ok, "a queued job is not dead: {err}");
    let (ok, _, err) = app.cli(&["jobs", "list", "--state", "sleeping"]).await;
    assert!(!ok && err.contains("--state"), "{err}");
}

#[tokio::test]
async fn a_job_whose_worker_died_runs_again_when_its_lease_expires() {
    let app = app_without_worker().await;
    let jobs_a = Jobs::builder(app.store.clone(), fast("dead-node")).build();
    let id = jobs_a
        .enqueue(Job::new("work", "resume", json!({})))
        .await
        .unwrap()
        .unwrap();
    // Node A claims with a short lease and dies: it never renews nor finishes.
    let claimed = app
        .store
        .claim_jobs("work", 1, "dead-node", rampart_store::now_ms() + 100)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);

    let ran_on = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = ran_on.clone();
    let jobs_b = Jobs::builder(app.store.clone(), fast("node-b"))
        .handler("work", "resume", move |ctx, _| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(ctx.attempt);
                Ok(())
            }
        })
        .build();
    let worker = jobs_b.start().await.unwrap();
    let store = app.store.clone();
    eventually("node B ran the job", || {
        let store = store.clone();
        let id = id.clone();
        async move { state_of(&store, &id).await == "done" }
    })
    .await;
    assert_eq!(
        *ran_on.lock().unwrap(),
        [2],
        "the dead worker's attempt counted"
    );
    // The dead worker's late outcome cannot overwrite the newer run's.
    assert!(!app.store.complete_job(&id, "dead-node", 1).await.unwrap());
    worker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_queue_never_runs_more_jobs_at_once_than_its_concurrency() {
    let app = app_without_worker().await;
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let mut settings = fast("a");
    settings.queues.insert(
        "narrow".into(),
        QueueLimits {
            concurrency: 2,
            per_second: None,
        },
    );
    let (r, p, f) = (running.clone(), peak.clone(), finished.clone());
    let jobs = Jobs::builder(app.store.clone(), settings)
        .handler("narrow", "slow", move |_, _| {
            let (r, p, f) = (r.clone(), p.clone(), f.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                f.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .build();
    for i in 0..8 {
        jobs.enqueue(Job::new("narrow", "slow", json!({ "i": i })))
            .await
            .unwrap();
    }
    let worker = jobs.start().await.unwrap();
    eventually("all eight ran", || {
        let f = finished.clone();
        async move { f.load(Ordering::SeqCst) == 8 }
    })
    .await;
    assert!(
        peak.load(Ordering::SeqCst) <= 2,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    worker.shutdown(Duration::from_secs(5)).await;
}

/// With Redis, a queue's rate is one budget for the deployment: two workers (two nodes,
/// each with its own Redis connection from `app::queue_rate`) start no more jobs in a
/// window than the rate allows one. Per-node limits would let twice as many through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_two_nodes_share_one_queue_rate() {
    if std::env::var("RAMPART_TEST_REDIS_URL").is_err() {
        eprintln!("skipped: set RAMPART_TEST_REDIS_URL (without Redis the rate is per node)");
        return;
    }
    const PER_SECOND: f64 = 4.0;
    const BURST: usize = 4; // one second's worth
    const WINDOW: Duration = Duration::from_secs(8);
    let app = app_without_worker().await;
    let starts = Arc::new(std::sync::Mutex::new(
        Vec::<(std::time::Instant, &str)>::new(),
    ));
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b"] {
        let mut settings = fast(name);
        settings.queues.insert(
            "paced".into(),
            QueueLimits {
                concurrency: 16,
                per_second: Some(PER_SECOND),
            },
        );
        let rate = rampart::app::queue_rate(&app.config)
            .await
            .unwrap()
            .expect("a shared rate with Redis");
        let seen = starts.clone();
        nodes.push(
            Jobs::builder(app.store.clone(), settings)
                .shared_rate(rate)
                .handler("paced", "tick", move |_, _| {
                    let seen = seen.clone();
                    async move {
                        seen.lock().unwrap().push((std::time::Instant::now(), name));
                        Ok(())
                    }
                })
                .build(),
        );
    }
    // Far more work than the window can start, so both nodes always have jobs to claim.
    for i in 0..200 {
        nodes[0]
            .enqueue(Job::new("paced", "tick", json!({ "i": i })))
            .await
            .unwrap();
    }
    let workers = [
        nodes[0].start().await.unwrap(),
        nodes[1].start().await.unwrap(),
    ];
    eventually("the first job started", || {
        let starts = starts.clone();
        async move { !starts.lock().unwrap().is_empty() }
    })
    .await;
    let first = starts.lock().unwrap()[0].0;
    tokio::time::sleep_until((first + WINDOW).into()).await;
    for worker in workers {
        worker.shutdown(Duration::from_secs(5)).await;
    }
    let starts = starts.lock().unwrap().clone();
    let in_window: Vec<&str> = starts
        .iter()
        .filter(|(at, _)| at.duration_since(first) <= WINDOW)
        .map(|(_, node)| *node)
        .collect();
    let per_node = |n: &str| in_window.iter().filter(|x| **x == n).count();
    eprintln!(
        "queue rate: {} starts in {WINDOW:?} (node-a {}, node-b {})",
        in_window.len(),
        per_node("node-a"),
        per_node("node-b")
    );
    // The shared budget: a burst, then the rate. The slack covers the time between a
    // reservation and the handler starting; two per-node budgets would be about 72.
    let shared = BURST + (PER_SECOND * WINDOW.as_secs_f64()) as usize;
    assert!(
        in_window.len() <= shared + 8,
        "{} starts in {WINDOW:?}: more than one rate of {PER_SECOND}/s allows ({shared})",
        in_window.len()
    );
    assert!(
        in_window.len() >= BURST,
        "the queue ran: {}",
        in_window.len()
    );
}

#[tokio::test]
async fn a_cron_slot_runs_once_when_two_nodes_race() {
    let app = app_without_worker().await;
    let node = |name: &str| {
        Jobs::builder(app.store.clone(), fast(name))
            .schedule(
                "backup",
                "0 2 * * *",
                "Asia/Jakarta",
                "backup",
                "backup.run",
                json!({}),
            )
            .unwrap()
            .build()
    };
    let (a, b) = (node("a"), node("b"));
    // 2026-11-23 18:00 UTC; 02:00 WIB on the 24th is 19:00 UTC.
    let start = 1_795_456_800_000;
    let mut seen_a: HashMap<String, i64> = a.cron_start(start).await.unwrap();
    let mut seen_b: HashMap<String, i64> = b.cron_start(start).await.unwrap();
    assert_eq!(
        a.cron_tick(&mut seen_a, start + 1000).await.unwrap(),
        0,
        "not due"
    );
    let tick = start + 3_600_000 + 5_000;
    let (won_a, won_b) = tokio::join!(
        a.cron_tick(&mut seen_a, tick),
        b.cron_tick(&mut seen_b, tick)
    );
    assert_eq!(
        won_a.unwrap() + won_b.unwrap(),
        1,
        "exactly one node wins the slot"
    );
    let queued = app.store.list_jobs(Some("backup"), None, 10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(
        queued[0].unique_key.as_deref(),
        Some("cron:backup:1795460400000")
    );
    // Ticking again within the same slot does nothing on either node.
    assert_eq!(a.cron_tick(&mut seen_a, tick + 60_000).await.unwrap(), 0);
    assert_eq!(b.cron_tick(&mut seen_b, tick + 60_000).await.unwrap(), 0);

    // All nodes down for three nights: a restarted node runs the latest missed slot once.
    let c = node("c");
    let three_days_later = tick + 3 * 86_400_000;
    let mut seen_c = c.cron_start(three_days_later).await.unwrap();
    assert_eq!(c.cron_tick(&mut seen_c, three_days_later).await.unwrap(), 1);
    let queued = app.store.list_jobs(Some("backup"), None, 10).await.unwrap();
    assert_eq!(queued.len(), 2, "one catch-up run, not three");
    assert_eq!(
        queued[0].unique_key.as_deref(),
        Some("cron:backup:1795719600000")
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_quick_jobs_and_returns_stuck_ones() {
    let app = app_without_worker().await;
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let jobs = Jobs::builder(app.store.clone(), fast("a"))
        .handler("long", "stuck", move |_, _| {
            let s = s.clone();
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .handler("polite", "stops", |ctx, _| async move {
            ctx.stopping().await;
            Ok(())
        })
        .build();
    let stuck = jobs
        .enqueue(Job::new("long", "stuck", json!({})))
        .await
        .unwrap()
        .unwrap();
    let polite = jobs
        .enqueue(Job::new("polite", "stops", json!({})))
        .await
        .unwrap()
        .unwrap();
    let worker = jobs.start().await.unwrap();
    let store = app.store.clone();
    eventually("both jobs are running", || {
        let store = store.clone();
        let (a, b) = (stuck.clone(), polite.clone());
        async move { state_of(&store, &a).await == "running" && state_of(&store, &b).await == "running" }
    })
    .await;
    worker.shutdown(Duration::from_secs(2)).await;
    let returned = app.store.get_job(&stuck).await.unwrap();
    assert_eq!(returned.state, "queued", "returned to the queue");
    assert_eq!(
        returned.attempts, 0,
        "the interrupted attempt is not counted"
    );
    assert_eq!(returned.lease_owner, None);
    assert_eq!(
        state_of(&app.store, &polite).await,
        "done",
        "finished within the grace"
    );
}

#[tokio::test]
async fn metrics_show_queue_depth_and_age() {
    let app = app_without_worker().await;
    let jobs = Jobs::builder(app.store.clone(), fast("a")).build();
    jobs.enqueue(Job::new("reports", "render", json!({})))
        .await
        .unwrap();
    jobs.enqueue(Job::new("reports", "render", json!({})).with_delay(Duration::from_secs(3600)))
        .await
        .unwrap();
    // An overdue job, as if it had waited two minutes.
    app.store
        .enqueue_job(&rampart_store::jobs::NewJob {
            queue: "reports".into(),
            kind: "render".into(),
            payload: "{}".into(),
            priority: 0,
            run_at: rampart_store::now_ms() - 120_000,
            max_attempts: 3,
            unique_key: None,
        })
        .await
        .unwrap();
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        text.contains("rampart_jobs_queued{queue=\"reports\"} 3"),
        "{text}"
    );
    let age: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("rampart_jobs_oldest_age_seconds{queue=\"reports\"} "))
        .expect("age gauge")
        .parse()
        .unwrap();
    assert!((120..3600).contains(&age), "age {age}");
    assert!(
        text.contains("rampart_jobs_dead{queue=\"reports\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn the_purge_deletes_old_done_jobs_and_keeps_dead_ones_and_the_latest_cron_slot() {
    let app = app_without_worker().await;
    let store = &app.store;
    let jobs = Jobs::builder(store.clone(), fast("a")).build();
    let done = jobs
        .enqueue(Job::new("p", "k", json!({})))
        .await
        .unwrap()
        .unwrap();
    let dead = jobs
        .enqueue(Job::new("p", "k", json!({})).with_max_attempts(1))
        .await
        .unwrap()
        .unwrap();
    let until = rampart_store::now_ms() + 60_000;
    for job in store.claim_jobs("p", 10, "n", until).await.unwrap() {
        if job.id == done {
            assert!(store
                .complete_job(&job.id, "n", job.attempts)
                .await
                .unwrap());
        } else {
            store
                .fail_job(&job.id, "n", job.attempts, "boom", Some(0))
                .await
                .unwrap();
        }
    }
    assert_eq!(state_of(store, &dead).await, "dead", "no attempts left");
    let cron_job = |slot: i64| rampart_store::jobs::NewJob {
        queue: "p".into(),
        kind: "cron.k".into(),
        payload: "{}".into(),
        priority: 0,
        run_at: 0,
        max_attempts: 1,
        unique_key: Some(format!("cron:s:{slot}")),
    };
    for slot in [1_000, 2_000] {
        assert!(store
            .enqueue_cron_job("s", slot, "n", &cron_job(slot))
            .await
            .unwrap());
    }

    let purged = store.purge_jobs(rampart_store::now_ms() + 1).await.unwrap();
    assert_eq!(purged, 1);
    assert!(store.get_job(&done).await.is_err());
    assert_eq!(state_of(store, &dead).await, "dead");
    assert_eq!(store.last_cron_slot("s").await.unwrap(), Some(2_000));
    assert!(
        !store
            .enqueue_cron_job("s", 2_000, "n", &cron_job(2_000))
            .await
            .unwrap(),
        "the latest slot is still recorded"
    );
}

/// These tests run their own workers against the app's store; the app's own worker would
/// claim their jobs from the queues it serves (webhooks, backup, maintenance).
async fn app_without_worker() -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(|c| c.jobs.enabled = false).await
}
