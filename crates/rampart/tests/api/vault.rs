//! The card token vault.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app, spawn_app_with, TestApp, STRONG_PASSWORD};

const CARD: &str = "4111111111111111";

/// A tenant with an admin session; returns (tenant id, admin token).
pub async fn merchant(app: &TestApp, root: &str, name: &str) -> (String, String) {
    let t = app.create_tenant(root, name, "merchant").await;
    let email = format!("admin@{name}.example");
    let res = app
        .post(
            &format!("/api/v1/tenants/{t}/users"),
            Some(root),
            &json!({"email": email, "password": STRONG_PASSWORD, "role": "tenant_admin"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    (t, app.tokens(&email).await.0)
}

pub async fn key(app: &TestApp, admin: &str, scopes: &[&str]) -> String {
    let res = app
        .post(
            "/api/v1/api-keys",
            Some(admin),
            &json!({"name": "pay", "scopes": scopes}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string()
}

pub async fn tokenize(app: &TestApp, token: &str, number: &str) -> Value {
    let res = app
        .post(
            "/api/v1/tokens",
            Some(token),
            &json!({"number": number, "exp_month": 12, "exp_year": 2030}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

async fn setup(app: &TestApp) -> (String, String, String) {
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let (_, a) = merchant(app, &root, "a").await;
    let (_, b) = merchant(app, &root, "b").await;
    (root, a, b)
}

#[tokio::test]
async fn tokenize_gives_random_tokens_and_per_tenant_fingerprints() {
    let app = spawn_app().await;
    let (_, a, b) = setup(&app).await;
    let writer = key(&app, &a, &["tokens:write"]).await;
    let first = tokenize(&app, &writer, "4111 1111 1111 1111").await;
    let token = first["token"].as_str().unwrap();
    assert!(token.starts_with("tok_") && token.len() >= 36, "{token}");
    assert_eq!(
        (
            first["last4"].as_str(),
            first["brand"].as_str(),
            first["bin"].as_str()
        ),
        (Some("1111"), Some("visa"), Some("411111"))
    );
    assert_eq!(first["fingerprint"].as_str().unwrap().len(), 64);
    assert!(!first.to_string().contains(CARD));

    let again = tokenize(&app, &writer, CARD).await;
    assert_ne!(
        again["token"], first["token"],
        "tokens are random, not derived"
    );
    assert_eq!(
        again["fingerprint"], first["fingerprint"],
        "same card, same tenant"
    );
    let other = tokenize(&app, &b, CARD).await;
    assert_ne!(
        other["fingerprint"], first["fingerprint"],
        "fingerprints differ across tenants"
    );
}

#[tokio::test]
async fn bad_cards_are_refused_without_echoing_them() {
    let app = spawn_app().await;
    let (_, a, _) = setup(&app).await;
    for body in [
        json!({"number": "4111111111111112", "exp_month": 12, "exp_year": 2030}),
        json!({"number": 4111111111111111_u64, "exp_month": 12, "exp_year": 2030}),
        json!({"number": "4111 1111 1111 111x", "exp_month": 12, "exp_year": 2030}),
        json!({"number": CARD, "exp_month": 13, "exp_year": 2030}),
        json!({"number": CARD, "exp_month": 1, "exp_year": 2001}),
        json!({"number": CARD, "exp_month": CARD, "exp_year": 2030}),
    ] {
        let res = app.post("/api/v1/tokens", Some(&a), &body).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {text}");
        assert!(!text.contains("411111111111111"), "echoed: {text}");
    }
    let res = app
        .post(
            "/api/v1/tokens",
            Some(&a),
            &json!({"number": CARD, "exp_month": 12}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn detokenize_needs_its_permission_stays_in_the_tenant_and_is_audited() {
    let app = spawn_app().await;
    let (_, a, b) = setup(&app).await;
    let writer = key(&app, &a, &["tokens:write"]).await;
    let reader = key(&app, &a, &["tokens:detokenize", "audit:read"]).await;
    let token = tokenize(&app, &writer, CARD).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/v1/tokens/{token}/detokenize");

    let res = app.post(&path, Some(&writer), &json!({})).await;
    assert_eq!(error_code(res, StatusCode::FORBIDDEN).await, "forbidden");
    let b_reader = key(&app, &b, &["tokens:detokenize"]).await;
    let res = app.post(&path, Some(&b_reader), &json!({})).await;
    assert_eq!(
        error_code(res, StatusCode::NOT_FOUND).await,
        "not_found",
        "A's token means nothing to B"
    );

    let res = app.post(&path, Some(&reader), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let card: Value = res.json().await.unwrap();
    assert_eq!(card["number"], CARD);
    assert_eq!(card["exp_year"], 2030);

    let events: Value = app
        .get(
            "/api/v1/audit-events?action=token.detokenize",
            Some(&reader),
        )
        .await
        .json()
        .await
        .unwrap();
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["target_id"], token);
    assert!(!events.to_string().contains(CARD));
}

#[tokio::test]
async fn detokenize_is_rate_limited() {
    let app = spawn_app_with(|c| c.vault.detokenize_per_minute = 3).await;
    let (_, a, _) = setup(&app).await;
    let token = tokenize(&app, &a, CARD).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/v1/tokens/{token}/detokenize");
    for _ in 0..3 {
        assert_eq!(
            app.post(&path, Some(&a), &json!({})).await.status(),
            StatusCode::OK
        );
    }
    let res = app.post(&path, Some(&a), &json!({})).await;
    assert_eq!(
        error_code(res, StatusCode::TOO_MANY_REQUESTS).await,
        "too_many_requests"
    );
}

/// The card number is nowhere in the data dir in clear: not in the database (or its
/// write-ahead log), not in the security log, not in the audit log.
#[tokio::test]
async fn the_card_number_never_reaches_the_data_dir_in_clear() {
    let app = spawn_app().await;
    if app.database_url.is_some() {
        eprintln!(
            "skipped on PostgreSQL: the database is not in the data dir (the SQLite run covers it)"
        );
        return;
    }
    let (_, a, _) = setup(&app).await;
    let token = tokenize(&app, &a, "4111-1111-1111-1111").await["token"]
        .as_str()
        .unwrap()
        .to_string();
    app.post(
        &format!("/api/v1/tokens/{token}/detokenize"),
        Some(&a),
        &json!({}),
    )
    .await;
    // A refused request with the number in an unexpected place.
    app.post(
        "/api/v1/tokens",
        Some(&a),
        &json!({"number": CARD, "exp_month": CARD, "exp_year": 2030}),
    )
    .await;
    // A backup in the default local target (`<data_dir>/backups`) is walked too: it is
    // encrypted, and its clear working copy of the database must be gone.
    let (ok, backup_id, stderr) = app.cli(&["backup", "create"]).await;
    assert!(ok, "backup create: {stderr}");
    let backup_file = app
        .dir
        .path()
        .join(format!("backups/{}.rbak", backup_id.trim()));
    assert!(backup_file.exists(), "{}", backup_file.display());
    app.store.close().await;
    let needles: [&[u8]; 3] = [
        CARD.as_bytes(),
        b"4111-1111-1111-1111",
        b"4111 1111 1111 1111",
    ];
    let mut files = 0;
    let mut stack = vec![app.dir.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            files += 1;
            for needle in needles {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "card number in clear in {}",
                    path.display()
                );
            }
        }
    }
    assert!(
        files >= 4,
        "database, its WAL or SHM, the security log, the backup: {files}"
    );
    // The backup's working folder (the clear snapshot) was removed.
    let leftovers: Vec<_> = std::fs::read_dir(app.dir.path().join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Concurrent first use of a tenant's vault keys: all but one key creation lose a race.
/// On PostgreSQL the losers' inserts raised unique violations (500s) until the keyring
/// used ON CONFLICT DO NOTHING: this test reproduced that every time. On SQLite the
/// losers abandoned write transactions, which under `bench/crypto.sh`'s sustained load
/// left one open on an idle connection ("database is locked", fixed in `store::tx`); at
/// this test's concurrency SQLite passed before that fix, so the benchmark is the
/// reproduction there.
#[tokio::test]
async fn concurrent_first_use_of_a_tenants_keys() {
    let app = spawn_app().await;
    let (_, a, _) = setup(&app).await;
    let body = json!({"number": CARD, "exp_month": 12, "exp_year": 2030});
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let request = app
                .client
                .post(app.url("/api/v1/tokens"))
                .bearer_auth(&a)
                .json(&body);
            tokio::spawn(async move { request.send().await.unwrap().status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::CREATED);
    }
}
