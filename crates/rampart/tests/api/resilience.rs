//! What a node does when Redis or the database goes away, and that it recovers when they
//! return: logins fail closed (503), rate limits fail open, `/ready` turns false and back.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{error_code, spawn_app_with, TestApp};

/// A Redis server of this test's own on a free port, so stopping it disturbs nothing else.
struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn start(port: u16) -> Option<OwnRedis> {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let mut redis = OwnRedis {
            port,
            child: Some(child),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(redis);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        redis.stop();
        None
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn login_status(app: &TestApp) -> reqwest::Response {
    app.post(
        "/api/v1/auth/login",
        None,
        &json!({"email": "nobody@example.id", "password": "not the password at all"}),
    )
    .await
}

/// Polls `check` until it holds, for at most 30 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 30 s");
}

#[tokio::test]
async fn without_redis_logins_fail_closed_limits_fail_open_and_both_recover() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Some(mut redis) = OwnRedis::start(port) else {
        eprintln!("skipped: redis-server not found on PATH");
        return;
    };
    let app = spawn_app_with(|c| {
        c.redis.url = rampart_config::ConnectionUrl::new(format!("redis://127.0.0.1:{port}/0"));
    })
    .await;
    assert_eq!(login_status(&app).await.status(), StatusCode::UNAUTHORIZED);

    redis.stop();
    // Login throttling protects accounts: without its counters, no password is checked.
    let res = login_status(&app).await;
    assert_eq!(
        error_code(res, StatusCode::SERVICE_UNAVAILABLE).await,
        "unavailable"
    );
    // Rate limits protect capacity: without Redis they let traffic through.
    assert_eq!(app.get("/health", None).await.status(), StatusCode::OK);
    assert_eq!(app.get("/ready", None).await.status(), StatusCode::OK);

    let _redis = OwnRedis::start(redis.port).expect("redis restarts");
    eventually("login after Redis returned", || async {
        login_status(&app).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
}

/// Needs `RAMPART_TEST_DATABASE_URL`: the database is closed to connections and its
/// sessions ended, as in a failover, then opened again.
#[tokio::test]
async fn ready_turns_false_without_the_database_and_true_when_it_returns() {
    let Ok(admin_url) = std::env::var("RAMPART_TEST_DATABASE_URL") else {
        eprintln!("skipped: set RAMPART_TEST_DATABASE_URL");
        return;
    };
    let app = spawn_app_with(|_| {}).await;
    let name = app
        .database_url
        .as_deref()
        .and_then(|u| u.rsplit('/').next())
        .unwrap()
        .to_string();
    assert_eq!(app.get("/ready", None).await.status(), StatusCode::OK);

    let admin = |sql: String| {
        let url = admin_url.clone();
        async move {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(&sql).execute(&mut c).await.unwrap();
        }
    };
    admin(format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;
    let res = app.get("/ready", None).await;
    assert_eq!(
        error_code(res, StatusCode::SERVICE_UNAVAILABLE).await,
        "not_ready"
    );
    // Requests that need the database say so, with the error shape.
    let res = login_status(&app).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.get("/health", None).await.status(), StatusCode::OK);

    admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    eventually("ready after the database returned", || async {
        app.get("/ready", None).await.status() == StatusCode::OK
    })
    .await;
    assert_eq!(login_status(&app).await.status(), StatusCode::UNAUTHORIZED);
}

/// A node whose database takes no write leaves the load balancer: `/ready` answers 503
/// within its two-second bound while something else holds the write lock (SQLite) or the
/// server has turned read-only as a standby would (PostgreSQL), and 200 again after.
/// `/health` stays 200 throughout: the process is alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_turns_false_while_the_database_takes_no_write() {
    use sqlx::Connection;
    let app = spawn_app_with(|_| {}).await;
    assert_eq!(app.get("/ready", None).await.status(), StatusCode::OK);

    // What blocks writes, and what ends that.
    let mut sqlite_holder = None;
    match &app.database_url {
        None => {
            let url = format!("sqlite://{}", app.dir.path().join("rampart.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            sqlite_holder = Some(c);
        }
        Some(url) => {
            let name = url.rsplit('/').next().unwrap().to_string();
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql(&format!(
                "ALTER DATABASE {name} SET default_transaction_read_only = on; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                   WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ))
            .execute(&mut c)
            .await
            .unwrap();
        }
    }
    let started = std::time::Instant::now();
    eventually("/ready 503 while writes are blocked", || async {
        app.get("/ready", None).await.status() == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "/ready answered within its bound"
    );
    assert_eq!(app.get("/health", None).await.status(), StatusCode::OK);

    match (sqlite_holder.take(), &app.database_url) {
        (Some(mut c), _) => {
            sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
            c.close().await.ok();
        }
        (None, Some(url)) => {
            let name = url.rsplit('/').next().unwrap().to_string();
            // From the server's admin database: sessions in this one are read-only now.
            let admin = std::env::var("RAMPART_TEST_DATABASE_URL").unwrap();
            let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::raw_sql(&format!(
                "ALTER DATABASE {name} RESET default_transaction_read_only; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                   WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ))
            .execute(&mut c)
            .await
            .unwrap();
        }
        (None, None) => unreachable!(),
    }
    eventually("/ready 200 once writes go through", || async {
        app.get("/ready", None).await.status() == StatusCode::OK
    })
    .await;
}
