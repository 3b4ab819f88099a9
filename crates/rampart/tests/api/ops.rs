//! Health, readiness, metrics, OpenAPI.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, STRONG_PASSWORD};

#[tokio::test]
async fn health_and_ready() {
    let app = spawn_app().await;
    let res = app.get("/health", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");
    let res = app.get("/ready", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn metrics_count_requests_logins_and_pool() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    app.login("root@example.id", STRONG_PASSWORD).await;
    app.login("root@example.id", "wrong password here").await;
    app.get("/health", None).await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    for needle in [
        "http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 1",
        "http_requests_total{method=\"POST\",route=\"/api/v1/auth/login\",status=\"401\"} 1",
        "http_request_duration_seconds_bucket",
        "rampart_login_attempts_total{outcome=\"success\"} 1",
        "rampart_login_attempts_total{outcome=\"invalid_credentials\"} 1",
        "rampart_db_pool_connections{state=\"idle\"}",
        "rampart_db_pool_max_connections",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/users/me",
        "/api/v1/tenants",
        "/api/v1/tenants/{tenant_id}",
        "/api/v1/tenants/{tenant_id}/users",
        "/.well-known/jwks.json",
        "/health",
        "/ready",
        "/metrics",
        "/api/openapi.json",
    ] {
        assert!(paths.contains_key(path), "{path} missing from OpenAPI");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

/// What schemathesis (CI, `tests/schemathesis/run.py`) relies on, checked without it:
/// unique operation ids, path parameters exactly those of the path's template (query
/// parameters used to be declared `in: path`), and the edge layer's answers documented
/// on every API operation.
#[tokio::test]
async fn openapi_document_is_valid_and_documents_the_edge_answers() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    let mut ids = std::collections::HashSet::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let template: std::collections::BTreeSet<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|p| p.split_once('}').map(|(name, _)| name))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            let in_path: std::collections::BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(in_path, template, "{method} {path}: path parameters");
            if !path.starts_with("/api/v1/") {
                continue;
            }
            let responses = op["responses"].as_object().unwrap();
            for status in ["400", "403", "408", "429", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert!(responses.contains_key("401"), "{method} {path}: no 401");
            }
            if op.get("requestBody").is_some() {
                for status in ["413", "415", "422"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path}: no {status}"
                    );
                }
            }
        }
    }
    assert!(operations > 50, "only {operations} operations");
}

/// Two job ids, in creation order (ids are UUIDs, as `new_id` makes them).
const OLD: &str = "0190a4c1-7b2e-7c3d-9e1f-00000000000a";
const NEW: &str = "0190a4c1-7b2e-7c3d-9e1f-00000000000b";

/// A dead job staged in the database, on a queue no worker serves (so re-queueing it
/// leaves it queued for the test to see).
async fn stage_dead_job(app: &crate::helpers::TestApp, id: &str, created_at: i64) {
    app.execute_sql(&format!(
        "INSERT INTO jobs (id, queue, kind, payload, priority, run_at, attempts, \
         max_attempts, state, last_error, created_at, updated_at) VALUES \
         ('{id}', 'ops-test', 'partner.sync', '{{\"partner\":\"p_1\"}}', 0, {created_at}, 5, 5, \
         'dead', 'partner answered 503', {created_at}, {created_at})"
    ))
    .await;
}

#[tokio::test]
async fn operations_api_shows_keys_backups_drills_and_requeues_dead_jobs_for_platform_admins_only()
{
    use rampart_store::Role;
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let tenant = app.create_tenant(&root, "Operated", "merchant").await;
    app.create_user(&tenant, "boss@operated.example", Role::TenantAdmin)
        .await;
    let (boss, _) = app.tokens("boss@operated.example").await;

    // Keys: the access-token key signed our tokens; it is due for rotation in 90 days.
    let keys: Value = app
        .get("/api/v1/ops/keys", Some(&root))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys["signing_rotation_days"], 90, "{keys}");
    let signer = keys["signing"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["purpose"] == "access-token")
        .unwrap_or_else(|| panic!("{keys}"));
    assert_eq!(signer["age_days"], 0);
    assert_eq!(signer["held"], "sealed");
    let (created, due) = (
        signer["created_at"].as_str().unwrap(),
        signer["rotation_due_at"].as_str().unwrap(),
    );
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
    };
    assert_eq!((parse(due) - parse(created)).whole_days(), 90);

    // Backups and the last drill, paged.
    let none: Value = app
        .get("/api/v1/ops/backups", Some(&root))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["items"], json!([]));
    assert!(none["last_drill"].is_null());
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (ok, out, err) = app.cli(&["backup", "create"]).await;
        assert!(ok, "{err}");
        ids.push(out.trim().to_string());
    }
    let (ok, _, err) = app.cli(&["backup", "drill"]).await;
    assert!(ok, "{err}");
    let first: Value = app
        .get("/api/v1/ops/backups?limit=1", Some(&root))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"][0]["id"], ids[1].as_str(), "newest first");
    assert_eq!(first["items"][0]["status"], "complete");
    let drill = &first["last_drill"];
    assert_eq!(drill["ok"], true, "{drill}");
    assert_eq!(drill["backup_id"], ids[1].as_str());
    assert!(drill["rto_ms"].as_i64().unwrap() > 0, "{drill}");
    assert!(drill["rpo_ms"].as_i64().unwrap() >= 0, "{drill}");
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = app
        .get(
            &format!("/api/v1/ops/backups?limit=1&cursor={cursor}"),
            Some(&root),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["items"][0]["id"], ids[0].as_str());
    assert!(second.get("next_cursor").is_none(), "{second}");

    // Dead letters, paged, and re-queued (audited).
    let now = rampart_store::now_ms();
    stage_dead_job(&app, OLD, now - 2000).await;
    stage_dead_job(&app, NEW, now - 1000).await;
    let page: Value = app
        .get(
            "/api/v1/ops/jobs?state=dead&queue=ops-test&limit=1",
            Some(&root),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["id"], NEW, "{page}");
    assert_eq!(page["items"][0]["last_error"], "partner answered 503");
    assert_eq!(page["items"][0]["payload"]["partner"], "p_1");
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: Value = app
        .get(
            &format!("/api/v1/ops/jobs?state=dead&queue=ops-test&cursor={cursor}"),
            Some(&root),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["items"][0]["id"], OLD);

    let res = app
        .post(
            &format!("/api/v1/ops/jobs/{OLD}/retry"),
            Some(&root),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let job: Value = res.json().await.unwrap();
    assert_eq!(
        (job["state"].as_str(), job["attempts"].as_i64()),
        (Some("queued"), Some(0))
    );
    let res = app
        .post(
            &format!("/api/v1/ops/jobs/{OLD}/retry"),
            Some(&root),
            &json!({}),
        )
        .await;
    assert_eq!(
        crate::helpers::error_code(res, StatusCode::NOT_FOUND).await,
        "not_found",
        "a queued job is not dead"
    );
    let audit: Value = app
        .get("/api/v1/audit-events?action=job.retry", Some(&root))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["items"][0]["target_id"], OLD, "{audit}");

    // Filters are checked.
    for bad in ["state=sleeping", "cursor=nonsense", "limit=0"] {
        let res = app
            .get(&format!("/api/v1/ops/jobs?{bad}"), Some(&root))
            .await;
        assert_eq!(
            crate::helpers::error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await,
            "invalid_field",
            "{bad}"
        );
    }

    // Nobody else: not a tenant admin, not an API key (which cannot even be given it).
    for path in [
        "/api/v1/ops/keys",
        "/api/v1/ops/backups",
        "/api/v1/ops/jobs",
    ] {
        let res = app.get(path, Some(&boss)).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let res = app
        .post(
            &format!("/api/v1/ops/jobs/{NEW}/retry"),
            Some(&boss),
            &json!({}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "no job exists for a tenant"
    );
    let res = app
        .post(
            "/api/v1/api-keys",
            Some(&boss),
            &json!({"name": "ops", "scopes": ["ops:read"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
