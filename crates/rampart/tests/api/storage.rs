//! Storage guarantees that need the database itself: row-level security on PostgreSQL.

use rampart_store::Role;
use sqlx::{Connection, Row};

use crate::helpers::spawn_app;

/// On PostgreSQL the app runs as a role that cannot bypass row-level security, and that
/// role sees only the tenant set in its transaction.
#[tokio::test]
async fn postgres_row_level_security_confines_the_app_role() {
    let app = spawn_app().await;
    let Some(url) = app.database_url.clone() else {
        eprintln!("skipped: row-level security needs RAMPART_TEST_DATABASE_URL (PostgreSQL)");
        return;
    };
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let a = app.create_tenant(&root, "A", "merchant").await;
    let b = app.create_tenant(&root, "B", "merchant").await;
    app.create_user(&a, "one@a.example", Role::Member).await;
    app.create_user(&a, "two@a.example", Role::Member).await;
    app.create_user(&b, "one@b.example", Role::Member).await;

    let role = app
        .store
        .run_as_role()
        .expect("the test user is a superuser, so the app switches role");
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("SET ROLE {role}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let bypass: bool = sqlx::query_scalar(
        "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(!bypass);

    assert_eq!(
        count_users(&mut conn, None).await,
        0,
        "no tenant set: no rows"
    );
    assert_eq!(count_users(&mut conn, Some(a.clone())).await, 2);
    assert_eq!(count_users(&mut conn, Some(b.clone())).await, 1);

    // Writing a row into another tenant than the one set is refused by the policy.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('rampart.tenant_id', $1, true)")
        .bind(&a)
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = sqlx::query("UPDATE users SET name = 'x' WHERE tenant_id = $1")
        .bind(&b)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(err.rows_affected(), 0, "B's rows are invisible from A");
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_in_the_data_dir() {
    let app = spawn_app().await;
    if app.database_url.is_some() {
        return;
    }
    let path = app.dir.path().join("rampart.db");
    assert!(path.exists());
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn every_mutation_leaves_an_audit_event() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (root, refresh) = app.tokens("root@example.id").await;
    let t = app.create_tenant(&root, "A", "lpk").await;
    app.post(
        &format!("/api/v1/tenants/{t}/users"),
        Some(&root),
        &serde_json::json!({"email": "u@a.example", "password": crate::helpers::STRONG_PASSWORD, "role": "member"}),
    )
    .await;
    app.refresh(&refresh).await;
    // The platform tenant's log: admin creation, login, refresh.
    let platform = platform_scope(&app).await;
    let actions: Vec<String> = app
        .store
        .recent_audit_events(&platform, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for action in [
        "signing_key.create",
        "user.create",
        "session.login",
        "session.refresh",
    ] {
        assert!(
            actions.contains(&action.to_string()),
            "{action} missing: {actions:?}"
        );
    }
    let events = app.store.recent_audit_events(&platform, 50).await.unwrap();
    for event in events {
        let text = event.changes.to_string();
        assert!(!text.contains(crate::helpers::STRONG_PASSWORD), "{text}");
    }
}

/// Users visible with `rampart.tenant_id` set as given, as the app role sees them.
async fn count_users(conn: &mut sqlx::PgConnection, tenant: Option<String>) -> i64 {
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('rampart.tenant_id', $1, true)")
        .bind(tenant.unwrap_or_default())
        .execute(&mut *tx)
        .await
        .unwrap();
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users")
        .fetch_one(&mut *tx)
        .await
        .unwrap()
        .get("n");
    tx.rollback().await.unwrap();
    n
}

/// The platform tenant's scope, obtained the only way there is: a live session.
pub async fn platform_scope(app: &crate::helpers::TestApp) -> rampart_store::TenantScope {
    let (token, _) = app.tokens("root@example.id").await;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    app.store
        .authenticate_session(
            claims["tenant"].as_str().unwrap(),
            claims["sid"].as_str().unwrap(),
            claims["sub"].as_str().unwrap(),
        )
        .await
        .unwrap()
        .unwrap()
        .0
}
