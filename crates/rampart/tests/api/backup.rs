//! `rampart backup`: taken while the app serves writes, restored, verified, drilled.
//! Every command runs through the real binary against the app `main` builds.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use rampart_store::{Role, Store, StoreOptions};
use serde_json::{json, Value};

use crate::helpers::{
    fresh_postgres_database, security_events, spawn_app, TestApp, STRONG_PASSWORD,
};

async fn ok(app: &TestApp, args: &[&str]) -> String {
    let (success, stdout, stderr) = app.cli(args).await;
    assert!(success, "rampart {args:?} failed: {stderr}");
    stdout
}

async fn create(app: &TestApp) -> Value {
    serde_json::from_str(&ok(app, &["backup", "create", "--json"]).await).expect("--json output")
}

/// Where a restore of this app's backups goes: a new data dir (SQLite) or a new empty
/// database (PostgreSQL). Returns the extra CLI arguments and the env that points
/// `rampart` at the restored copy.
async fn restore_target(app: &TestApp) -> (Vec<String>, Vec<(String, String)>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("restored");
    match &app.database_url {
        None => (
            vec!["--to".into(), data.display().to_string()],
            vec![("RAMPART_DATA_DIR".into(), data.display().to_string())],
            dir,
        ),
        Some(_) => {
            let base = std::env::var("RAMPART_TEST_DATABASE_URL").unwrap();
            let url = fresh_postgres_database(&base).await;
            (
                vec!["--database-url".into(), url.clone()],
                vec![("RAMPART_DATABASE_URL".into(), url)],
                dir,
            )
        }
    }
}

fn restored_url(env: &[(String, String)]) -> String {
    match env[0].0.as_str() {
        "RAMPART_DATA_DIR" => format!("sqlite://{}/rampart.db", env[0].1),
        _ => env[0].1.clone(),
    }
}

/// The platform's audit events about backups, as `action:outcome`, newest first.
async fn backup_audit(app: &TestApp, admin: &str) -> Vec<String> {
    let page: Value = app
        .get("/api/v1/audit-events?target_type=backup", Some(admin))
        .await
        .json()
        .await
        .unwrap();
    page["items"]
        .as_array()
        .expect("audit page")
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_backup_taken_during_writes_restores_to_a_copy_whose_chain_verifies_and_rows_match() {
    let app = Arc::new(spawn_app().await);
    app.create_platform_admin("root@example.id").await;
    let (admin, _) = app.tokens("root@example.id").await;
    let tenant = app.create_tenant(&admin, "Seed", "lpk").await;

    // Writers: tenants and users through the API, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (app, stop, writes, admin, tenant) = (
            app.clone(),
            stop.clone(),
            writes.clone(),
            admin.clone(),
            tenant.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let res = if w == 0 {
                    app.post(
                        &format!("/api/v1/tenants/{tenant}/users"),
                        Some(&admin),
                        &json!({"email": format!("u{i}@load.example"), "password": STRONG_PASSWORD, "role": "member"}),
                    )
                    .await
                } else {
                    app.post(
                        "/api/v1/tenants",
                        Some(&admin),
                        &json!({"name": format!("Load {w}-{i}"), "kind": "community"}),
                    )
                    .await
                };
                assert!(res.status().is_success(), "write failed: {}", res.status());
                writes.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    while writes.load(Ordering::Relaxed) < 10 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let before = writes.load(Ordering::Relaxed);
    let backup = {
        let app = app.clone();
        tokio::spawn(async move { create(&app).await })
            .await
            .unwrap()
    };
    let during = writes.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    assert!(during > 0, "no write landed while the backup ran");
    app.create_tenant(&admin, "After the backup", "lpk").await;
    let manifest: Value = serde_json::from_str(backup["manifest"].as_str().unwrap()).unwrap();
    let live_tenants = app.store.list_tenants(None, 10_000).await.unwrap().len() as i64;
    assert!(
        manifest["row_counts"]["tenants"].as_i64().unwrap() < live_tenants,
        "the live database moved on after the snapshot; the manifest describes the snapshot"
    );

    let id = backup["id"].as_str().unwrap();
    let (args, env, _dir) = restore_target(&app).await;
    let mut restore = vec!["backup", "restore", id, "--json"];
    restore.extend(args.iter().map(String::as_str));
    let report: Value = serde_json::from_str(&ok(&app, &restore).await).unwrap();
    assert_eq!(report["id"], id);

    // The copy: every table's rows as the manifest says, the chain heads too...
    let (copy, _) = Store::open(&StoreOptions {
        url: restored_url(&env),
        max_connections: 2,
        app_role: app.config.database.app_role.clone(),
    })
    .await
    .expect("the store opens on the restored copy");
    let stats = copy.snapshot_stats().await.unwrap();
    copy.close().await;
    let counts: std::collections::BTreeMap<String, i64> =
        serde_json::from_value(manifest["row_counts"].clone()).unwrap();
    assert_eq!(stats.row_counts, counts);
    assert!(
        counts["tenants"] >= 5 && counts["audit_events"] > 10,
        "{counts:?}"
    );
    assert_eq!(
        serde_json::to_value(&stats.audit_heads).unwrap(),
        manifest["audit_heads"]
    );
    // ...and `rampart audit verify` on it passes.
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (success, stdout, stderr) = app.cli_env(&["audit", "verify"], &env).await;
    assert!(success, "audit verify on the restored copy: {stderr}");
    assert!(stdout.contains("verified"), "{stdout}");

    // The backup, the restore and their security events are on record.
    let actions = backup_audit(&app, &admin).await;
    assert!(
        actions.contains(&"backup.create:success".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"backup.restore:success".to_string()),
        "{actions:?}"
    );
    security_events(app.dir.path(), "backup_created").await;
    security_events(app.dir.path(), "backup_restored").await;
}

#[tokio::test]
async fn flipping_one_byte_of_a_backup_makes_verify_fail() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let backup = create(&app).await;
    let id = backup["id"].as_str().unwrap();
    let stdout = ok(&app, &["backup", "verify", id]).await;
    assert!(stdout.contains("verifies"), "{stdout}");

    let path = backup["target"]
        .as_str()
        .unwrap()
        .strip_prefix("file://")
        .unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(path, &bytes).unwrap();

    let (success, _, stderr) = app.cli(&["backup", "verify", id]).await;
    assert!(!success, "verify passed a damaged backup");
    assert!(stderr.contains("SHA-256 mismatch"), "{stderr}");
    assert!(stderr.contains("does not authenticate"), "{stderr}");
    let (success, stdout, _) = app.cli(&["backup", "verify", id, "--json"]).await;
    assert!(!success);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"].as_array().unwrap().len(), 2, "{report}");

    // A restore refuses it too.
    let (args, _, _dir) = restore_target(&app).await;
    let mut restore = vec!["backup", "restore", id];
    restore.extend(args.iter().map(String::as_str));
    let (success, _, stderr) = app.cli(&restore).await;
    assert!(!success);
    assert!(stderr.contains("SHA-256 mismatch"), "{stderr}");
    security_events(app.dir.path(), "backup_restore_failed").await;
}

#[tokio::test]
async fn a_backup_whose_key_version_is_retired_does_not_restore() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let old = create(&app).await;
    assert_eq!(old["key_name"], "backup");
    assert_eq!(old["key_version"], 1);
    ok(&app, &["keys", "rotate", "backup"]).await;
    ok(
        &app,
        &["keys", "retire", "backup", "--below", "2", "--force"],
    )
    .await;
    let new = create(&app).await;
    assert_eq!(new["key_version"], 2);

    let (args, _, _dir) = restore_target(&app).await;
    let mut restore = vec!["backup", "restore", old["id"].as_str().unwrap()];
    restore.extend(args.iter().map(String::as_str));
    let (success, _, stderr) = app.cli(&restore).await;
    assert!(!success, "a backup under a retired key version restored");
    assert!(
        stderr.contains("cannot open the backup's data key (keyring key backup version 1)")
            && stderr.contains("retired"),
        "{stderr}"
    );
    let (success, _, stderr) = app
        .cli(&["backup", "verify", old["id"].as_str().unwrap()])
        .await;
    assert!(!success);
    assert!(stderr.contains("retired"), "{stderr}");
    ok(&app, &["backup", "verify", new["id"].as_str().unwrap()]).await;
}

/// Scripts and the job log read the stage lines: when stderr is not a terminal (here a
/// pipe) they are what `backup create` writes there, unchanged, and no bar is drawn;
/// `--json` writes none; `verify` draws nothing.
#[tokio::test]
async fn without_a_terminal_backup_commands_print_stage_lines_and_draw_no_bars() {
    let app = spawn_app().await;
    let (success, stdout, stderr) = app.cli(&["backup", "create"]).await;
    assert!(success, "{stderr}");
    let id = stdout.trim();
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\r'),
        "no terminal control in {stderr:?}"
    );
    let stages: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("backup: "))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert_eq!(stages, ["snapshot", "written", "read back and verified"]);
    assert!(
        stderr.contains(&format!("backup {id} complete: ")),
        "{stderr}"
    );

    let (success, _, stderr) = app.cli(&["backup", "create", "--json"]).await;
    assert!(success, "{stderr}");
    assert!(
        !stderr.lines().any(|l| l.starts_with("backup")),
        "--json prints no stage lines: {stderr}"
    );

    let (success, stdout, stderr) = app.cli(&["backup", "verify", id]).await;
    assert!(success, "{stderr}");
    assert!(stdout.starts_with(&format!("backup {id} verifies")));
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\r'),
        "{stderr:?}"
    );
}

#[tokio::test]
async fn backup_list_prints_a_table_and_json_newest_first() {
    let app = spawn_app().await;
    app.create_user(
        rampart_store::PLATFORM_TENANT_ID,
        "a@example.id",
        Role::PlatformAdmin,
    )
    .await;
    let first = create(&app).await;
    let second = create(&app).await;
    let list: Value = serde_json::from_str(&ok(&app, &["backup", "list", "--json"]).await).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], second["id"]);
    assert_eq!(list[1]["id"], first["id"]);
    let b = &list[0];
    assert_eq!(b["status"], "complete");
    assert_eq!(
        b["backend"],
        if app.database_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    );
    assert_eq!(b["sha256"].as_str().unwrap().len(), 64);
    assert!(b["size_bytes"].as_i64().unwrap() > 0);
    assert_eq!(b["key_name"], "backup");
    assert!(b["manifest"]["row_counts"]["users"].as_i64().unwrap() >= 1);
    assert!(b["manifest"]["audit_heads"][rampart_store::PLATFORM_TENANT_ID].is_array());
    assert_eq!(b["manifest"]["files"].as_array().unwrap().len(), 1);
    assert!(b["target"].as_str().unwrap().starts_with("file://"));

    let text = ok(&app, &["backup", "list"]).await;
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("ID\tCREATED_AT_MS\tSTATUS"), "{text}");
    assert_eq!(lines.len(), 3);
    assert!(lines[1].starts_with(second["id"].as_str().unwrap()));
}

#[tokio::test]
async fn a_failed_backup_is_recorded_and_raises_a_security_event() {
    let app = spawn_app().await;
    // The target folder cannot be created: a file stands where its parent should be.
    let blocker = app.dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"x").unwrap();
    let target = blocker.join("backups").display().to_string();
    let (success, _, stderr) = app
        .cli_env(
            &["backup", "create"],
            &[("RAMPART_BACKUP_TARGET_DIR", &target)],
        )
        .await;
    assert!(!success);
    assert!(
        stderr.contains("cannot create the backup folder"),
        "{stderr}"
    );
    let list: Value = serde_json::from_str(&ok(&app, &["backup", "list", "--json"]).await).unwrap();
    assert_eq!(list[0]["status"], "failed");
    assert!(list[0]["error"].as_str().unwrap().contains("backup folder"));
    let event = &security_events(app.dir.path(), "backup_failed").await[0];
    assert_eq!(event["severity"], "critical");
    app.create_platform_admin("root@example.id").await;
    let (admin, _) = app.tokens("root@example.id").await;
    let actions = backup_audit(&app, &admin).await;
    assert_eq!(actions, vec!["backup.create:failure".to_string()]);
}

#[tokio::test]
async fn the_drill_restores_the_newest_backup_and_reports_rto_and_rpo() {
    let app = spawn_app().await;
    let (success, _, stderr) = app.cli(&["backup", "drill"]).await;
    assert!(!success);
    assert!(stderr.contains("no complete backup"), "{stderr}");
    security_events(app.dir.path(), "backup_drill_failed").await;

    app.create_platform_admin("root@example.id").await;
    let (admin, _) = app.tokens("root@example.id").await;
    app.create_tenant(&admin, "Drilled", "lpk").await;
    ok(&app, &["audit", "checkpoint"]).await;
    let backup = create(&app).await;
    let stdout = ok(&app, &["backup", "drill"]).await;
    assert!(
        stdout.contains(&format!(
            "drill of backup {}: passed",
            backup["id"].as_str().unwrap()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("RTO (restore, open, verify): "), "{stdout}");
    assert!(stdout.contains("RPO (backup age): "), "{stdout}");

    let report: Value =
        serde_json::from_str(&ok(&app, &["backup", "drill", "--json"]).await).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["backup_id"], backup["id"]);
    assert!(report["rto_ms"].as_u64().unwrap() > 0);
    assert!(report["restore_ms"].as_u64().unwrap() <= report["rto_ms"].as_u64().unwrap());
    assert!(report["rpo_ms"].as_i64().unwrap() >= 0);
    assert!(
        report["audit_events_verified"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert!(
        report["tables_compared"].as_u64().unwrap() >= 10,
        "{report}"
    );
    security_events(app.dir.path(), "backup_drill").await;
}

#[tokio::test]
async fn without_pg_dump_on_path_a_postgres_backup_fails_saying_what_to_install() {
    let app = spawn_app().await;
    if app.database_url.is_none() {
        eprintln!("skipped on SQLite: pg_dump is a PostgreSQL tool");
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().display().to_string();
    let (success, _, stderr) = app.cli_env(&["backup", "create"], &[("PATH", &path)]).await;
    assert!(!success);
    assert!(
        stderr.contains("pg_dump is not on PATH") && stderr.contains("postgresql-client"),
        "{stderr}"
    );
    let list: Value = serde_json::from_str(&ok(&app, &["backup", "list", "--json"]).await).unwrap();
    assert_eq!(list[0]["status"], "failed");
}

#[tokio::test]
async fn a_backup_file_restores_where_its_database_is_gone_with_the_root_key_alone() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let backup = create(&app).await;
    let file = backup["target"]
        .as_str()
        .unwrap()
        .strip_prefix("file://")
        .unwrap()
        .to_string();

    // A new deployment: empty database, no keyring, but this deployment's root key.
    let fresh = tempfile::tempdir().unwrap();
    let data = fresh.path().join("data");
    std::fs::create_dir_all(data.join("keys")).unwrap();
    std::fs::copy(
        app.dir.path().join("keys/root.key"),
        data.join("keys/root.key"),
    )
    .unwrap();
    let data = data.display().to_string();
    let mut env = vec![("RAMPART_DATA_DIR".to_string(), data.clone())];
    if app.database_url.is_some() {
        let base = std::env::var("RAMPART_TEST_DATABASE_URL").unwrap();
        env.push((
            "RAMPART_DATABASE_URL".into(),
            fresh_postgres_database(&base).await,
        ));
    }
    let (args, restored_env, _dir) = restore_target(&app).await;
    let mut restore = vec!["backup", "restore", "--file", &file];
    restore.extend(args.iter().map(String::as_str));
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (success, _, stderr) = app.cli_env(&restore, &env_ref).await;
    assert!(success, "restore from the file alone: {stderr}");
    let restored: Vec<(&str, &str)> = restored_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (success, stdout, stderr) = app.cli_env(&["audit", "verify"], &restored).await;
    assert!(success, "audit verify on the restored copy: {stderr}");
    assert!(stdout.contains("verified"), "{stdout}");

    // Another root key opens nothing.
    let other = tempfile::tempdir().unwrap();
    let other_data = other.path().display().to_string();
    let mut env = env.clone();
    env[0].1 = other_data;
    if app.database_url.is_some() {
        let base = std::env::var("RAMPART_TEST_DATABASE_URL").unwrap();
        env[1].1 = fresh_postgres_database(&base).await;
    }
    let (args, _, _dir2) = restore_target(&app).await;
    let mut restore = vec!["backup", "restore", "--file", &file];
    restore.extend(args.iter().map(String::as_str));
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (success, _, stderr) = app.cli_env(&restore, &env_ref).await;
    assert!(!success, "a backup restored under another root key");
    assert!(
        stderr.contains("does not open with this root key"),
        "{stderr}"
    );
}

/// The scheduled jobs: `backup.create` (then pruning) and `backup.drill`, run by the
/// server's own worker as the cron schedules enqueue them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_queue_runs_the_scheduled_backup_and_drill() {
    // One after the other, each awaited with a generous deadline: on a loaded 2-core CI
    // machine a backup can take longer than a drill's retries would wait for it.
    let app = crate::helpers::spawn_app_with(|c| {
        c.jobs.poll_interval_ms = 100;
        c.jobs.backoff_base_secs = 1;
        c.jobs.backoff_cap_secs = 2;
    })
    .await;
    let enqueue = |kind: &'static str| {
        let store = app.store.clone();
        async move {
            store
                .enqueue_job(&rampart_store::jobs::NewJob {
                    queue: "backup".into(),
                    kind: kind.into(),
                    payload: "{}".into(),
                    priority: 0,
                    run_at: rampart_store::now_ms(),
                    max_attempts: 3,
                    unique_key: None,
                })
                .await
                .unwrap();
        }
    };
    enqueue("backup.create").await;
    let mut list = Value::Null;
    for _ in 0..1200 {
        list = serde_json::from_str(&ok(&app, &["backup", "list", "--json"]).await).unwrap();
        if list[0]["status"] == "complete" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(list[0]["status"], "complete", "{list}");
    enqueue("backup.drill").await;
    let mut drilled = Vec::new();
    for _ in 0..1200 {
        drilled = std::fs::read_to_string(app.dir.path().join("logs/security.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"backup_drill\""))
            .map(str::to_string)
            .collect();
        if !drilled.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        !drilled.is_empty(),
        "the drill ran and logged its security event"
    );
}

/// The same backup life with an S3 bucket as the target: the file goes up in parts, is
/// read back from the bucket, verifies, drills and restores from there; a byte flipped in
/// the bucket fails verify; pruning deletes the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_in_an_s3_bucket_verifies_drills_restores_and_is_pruned_from_it() {
    if std::env::var("RAMPART_TEST_S3_ENDPOINT").is_err() {
        eprintln!("tests: S3 skipped (set RAMPART_TEST_S3_ENDPOINT)");
        return;
    }
    let app = crate::helpers::spawn_app_with(|c| {
        assert!(crate::helpers::use_test_s3_for_backups(c));
    })
    .await;
    app.create_platform_admin("root@example.id").await;
    let (admin, _) = app.tokens("root@example.id").await;
    app.create_tenant(&admin, "Bucketed", "lpk").await;
    let backup = create(&app).await;
    let id = backup["id"].as_str().unwrap();
    let bucket = &app.config.backup.s3_bucket;
    let url = format!("s3://{bucket}/backups/{id}.rbak");
    assert_eq!(backup["target"], url.as_str());
    // Nothing stays behind locally: the staged file went up and was removed.
    let staging = app.dir.path().join("backups/staging");
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);

    // The object is there, with the recorded hash, and never holds the clear database.
    let objects = rampart_objects::Objects::open(&app.config.backup_location()).unwrap();
    let key = format!("backups/{id}.rbak");
    let stored = objects.get(&key).await.unwrap();
    assert_eq!(
        rampart_objects::hex(&<sha2::Sha256 as sha2::Digest>::digest(&stored)),
        backup["sha256"].as_str().unwrap()
    );
    assert!(!stored.windows(15).any(|w| w == b"SQLite format 3"));
    assert!(ok(&app, &["backup", "list"]).await.contains(&url));
    assert!(ok(&app, &["backup", "verify", id])
        .await
        .contains("verifies"));
    let drill: Value =
        serde_json::from_str(&ok(&app, &["backup", "drill", "--json"]).await).unwrap();
    assert_eq!(drill["ok"], true, "{drill}");
    assert_eq!(drill["backup_id"], id);

    let (args, restored_env, _dir) = restore_target(&app).await;
    let mut restore = vec!["backup", "restore", id];
    restore.extend(args.iter().map(String::as_str));
    ok(&app, &restore).await;
    let restored: Vec<(&str, &str)> = restored_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (success, stdout, stderr) = app.cli_env(&["audit", "verify"], &restored).await;
    assert!(
        success,
        "audit verify on the copy restored from S3: {stderr}"
    );
    assert!(stdout.contains("verified"), "{stdout}");

    // One byte flipped in the bucket.
    let mut damaged = stored.to_vec();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    objects.put(&key, damaged.into()).await.unwrap();
    let (success, _, stderr) = app.cli(&["backup", "verify", id]).await;
    assert!(!success, "verify passed a damaged backup in the bucket");
    assert!(stderr.contains("SHA-256 mismatch"), "{stderr}");
    objects.put(&key, stored).await.unwrap();
    assert!(ok(&app, &["backup", "verify", id])
        .await
        .contains("verifies"));

    // Four hundred days later, retention lets it go and the object goes with it.
    crate::audit::tamper(
        &app,
        "UPDATE backups SET created_at = created_at - 34560000000 WHERE id = $1",
        id,
    )
    .await;
    let newer = create(&app).await;
    let pruned: Value =
        serde_json::from_str(&ok(&app, &["backup", "prune", "--json"]).await).unwrap();
    assert_eq!(pruned["pruned"], json!([id]), "{pruned}");
    assert!(matches!(
        objects.get(&key).await,
        Err(rampart_objects::ObjectsError::NotFound(_))
    ));
    let (success, _, stderr) = app.cli(&["backup", "verify", id]).await;
    assert!(!success);
    assert!(stderr.contains("pruned, not complete"), "{stderr}");
    assert!(
        ok(&app, &["backup", "verify", newer["id"].as_str().unwrap()])
            .await
            .contains("verifies")
    );
    objects
        .delete(&format!("backups/{}.rbak", newer["id"].as_str().unwrap()))
        .await
        .unwrap();
    let (success, _, stderr) = app
        .cli(&["backup", "verify", newer["id"].as_str().unwrap()])
        .await;
    assert!(!success);
    assert!(stderr.contains("is missing"), "{stderr}");
}

/// The local object store is part of the backup: its files are in the manifest, verified
/// on read, and restored beside the database.
#[tokio::test]
async fn the_local_object_store_is_backed_up_and_restored_with_the_database() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let objects = rampart_objects::Objects::open(&app.config.objects_location()).unwrap();
    objects
        .put(
            "tenants/t1/photos/a.jpg",
            bytes::Bytes::from_static(b"\xff\xd8 a photo"),
        )
        .await
        .unwrap();
    objects
        .put(
            "tenants/t2/evidence/b.pdf",
            bytes::Bytes::from_static(b"%PDF-1.7 evidence"),
        )
        .await
        .unwrap();
    let backup = create(&app).await;
    let files: Vec<String> = backup["manifest"]
        .as_str()
        .map(|m| serde_json::from_str::<Value>(m).unwrap())
        .unwrap()["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        files[1..],
        [
            "objects/tenants/t1/photos/a.jpg",
            "objects/tenants/t2/evidence/b.pdf"
        ]
    );
    let id = backup["id"].as_str().unwrap();
    assert!(ok(&app, &["backup", "verify", id])
        .await
        .contains("verifies"));

    let (args, _, _dir) = restore_target(&app).await;
    let mut restore = vec!["backup", "restore", id, "--json"];
    restore.extend(args.iter().map(String::as_str));
    let report: Value = serde_json::from_str(&ok(&app, &restore).await).unwrap();
    let restored = std::path::PathBuf::from(report["objects_restored_to"].as_str().unwrap());
    assert_eq!(
        std::fs::read(restored.join("tenants/t1/photos/a.jpg")).unwrap(),
        b"\xff\xd8 a photo"
    );
    assert_eq!(
        std::fs::read(restored.join("tenants/t2/evidence/b.pdf")).unwrap(),
        b"%PDF-1.7 evidence"
    );
    if app.database_url.is_none() {
        // Where a server on the restored data dir finds them by default.
        assert_eq!(restored, std::path::Path::new(&args[1]).join("objects"));
    }
    // A drill restores them too, and cleans up after itself.
    let drill: Value =
        serde_json::from_str(&ok(&app, &["backup", "drill", "--json"]).await).unwrap();
    assert_eq!(drill["ok"], true, "{drill}");
    let kept: Vec<_> = std::fs::read_dir(app.dir.path().join("backups"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("restored-"))
        .collect();
    // The explicit PostgreSQL restore's objects stay for the operator; the drill's do not.
    assert_eq!(
        kept.len(),
        usize::from(app.database_url.is_some()),
        "{kept:?}"
    );
}
