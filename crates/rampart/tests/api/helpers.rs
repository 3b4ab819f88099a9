//! Test harness: every test gets its own application, built by the same function as
//! `main`, on its own temp data dir, and (when `RAMPART_TEST_DATABASE_URL` is set) its own
//! fresh PostgreSQL database, and (when `RAMPART_TEST_REDIS_URL` is set) its own Redis key
//! prefix. It talks to the app over real HTTP.

use std::sync::Once;

use rampart::app;
use rampart_config::{Config, ConnectionUrl};
use rampart_store::{Actor, RequestMeta, Role, Store, PLATFORM_TENANT_ID};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;

pub const STRONG_PASSWORD: &str = "maple orbit canvas thunder";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Store,
    /// The app's identity service (and through it, its notification service).
    pub identity: rampart_identity::Identity,
    pub config: Config,
    /// Set when the app runs on PostgreSQL: the URL of its own database.
    pub database_url: Option<String>,
    pub dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

/// A `rampart serve` process (see [`TestApp::spawn_node`]).
pub struct Node {
    pub base: String,
    child: std::process::Child,
}

impl Node {
    /// The process's resident memory now, from `/proc` (Linux), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS in /proc/PID/status")
            * 1024
    }

    /// The process id (the detector's lease holder names it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no shutdown, no drain, no flush.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as systemd or an orchestrator stops a node (through `kill`, as an operator
    /// would).
    pub fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.child.id());
    }

    /// The process's exit status once it has exited, waiting at most `deadline`; `None`
    /// while it still runs.
    pub async fn exit_within(
        &mut self,
        deadline: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for rampart serve") {
                return Some(status);
            }
            if start.elapsed() > deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

static REPORT: Once = Once::new();

fn report_backends() {
    REPORT.call_once(|| {
        match std::env::var("RAMPART_TEST_DATABASE_URL") {
            Ok(_) => eprintln!("tests: database backend = PostgreSQL (RAMPART_TEST_DATABASE_URL)"),
            Err(_) => eprintln!(
                "tests: database backend = SQLite; PostgreSQL skipped (set RAMPART_TEST_DATABASE_URL)"
            ),
        }
        if let Some(crs) = crs_for_every_app() {
            eprintln!("tests: every app loads CRS from {crs} (RAMPART_TEST_API_WITH_CRS=1)");
        }
        match std::env::var("RAMPART_TEST_REDIS_URL") {
            Ok(_) => eprintln!("tests: shared state = Redis (RAMPART_TEST_REDIS_URL)"),
            Err(_) => eprintln!(
                "tests: shared state = in-process; Redis skipped (set RAMPART_TEST_REDIS_URL)"
            ),
        }
    });
}

/// With `RAMPART_TEST_API_WITH_CRS=1` (a run of `.ci/run`), every test app loads the OWASP
/// CRS at paranoia level 1 in blocking mode, so the whole suite proves that CRS's defaults
/// leave every route of the API usable. Tests about the WAF itself set `waf.*` in their own
/// `customise`, which runs after this.
fn crs_for_every_app() -> Option<String> {
    if std::env::var("RAMPART_TEST_API_WITH_CRS").ok().as_deref() != Some("1") {
        return None;
    }
    let dir = crs_dir().expect("RAMPART_TEST_API_WITH_CRS=1 needs the CRS (RAMPART_TEST_CRS_DIR)");
    Some(dir.display().to_string())
}

/// Whether this run puts CRS in front of every test app (see [`crs_for_every_app`]). Tests
/// of hostile input accept CRS's 403 `request_blocked` in that run: the WAF answering
/// before the handler is the point of a WAF. Ordinary requests must never need this.
pub fn crs_everywhere() -> bool {
    crs_for_every_app().is_some()
}

/// Asserts the one error shape with `code` and `status`, or, in a run with CRS in front
/// of every app, CRS's block of a hostile request.
pub async fn error_code_or_waf_block(res: Response, status: StatusCode, code: &str) {
    if crs_everywhere() && res.status() == StatusCode::FORBIDDEN {
        assert_eq!(
            error_code(res, StatusCode::FORBIDDEN).await,
            "request_blocked"
        );
    } else {
        assert_eq!(error_code(res, status).await, code);
    }
}

/// Points `config`'s backups at the S3-compatible server `RAMPART_TEST_S3_ENDPOINT` names
/// (CI starts moto; bucket `RAMPART_TEST_S3_BUCKET`, default `rampart-test`, made by
/// `.ci/run`). Returns false, and says the backend is skipped, when it is not set.
pub fn use_test_s3_for_backups(config: &mut Config) -> bool {
    let Ok(endpoint) = std::env::var("RAMPART_TEST_S3_ENDPOINT") else {
        eprintln!("tests: S3 skipped (set RAMPART_TEST_S3_ENDPOINT)");
        return false;
    };
    let b = &mut config.backup;
    b.s3_endpoint = endpoint;
    b.s3_bucket = std::env::var("RAMPART_TEST_S3_BUCKET").unwrap_or_else(|_| "rampart-test".into());
    b.s3_access_key_id = "test".into();
    b.s3_secret_access_key = rampart_config::Secret::new("test".into());
    true
}

/// A fresh database on the server `RAMPART_TEST_DATABASE_URL` points at.
pub async fn fresh_postgres_database(base_url: &str) -> String {
    let name = format!("rampart_t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(base_url)
        .await
        .expect("connect to RAMPART_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    admin.close().await.ok();
    let (head, _) = base_url
        .rsplit_once('/')
        .expect("RAMPART_TEST_DATABASE_URL has a database path");
    format!("{head}/{name}")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_using(reqwest::Client::new(), customise).await
}

/// Like [`spawn_app_with`], talking through `client` (one that trusts the test CA, when
/// `customise` sets up `[tls]`). The base URL is `https://` when the app serves TLS.
pub async fn spawn_app_using(
    client: reqwest::Client,
    customise: impl FnOnce(&mut Config),
) -> TestApp {
    report_backends();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    // MFA for admins is on in the product. Most tests are about other things and log the
    // same admin in several times within one 30-second TOTP step, which single-use codes
    // rightly refuse; `mfa.rs` tests the requirement with the default on.
    config.auth.require_mfa_for_admins = false;
    let mut database_url = None;
    if let Ok(base) = std::env::var("RAMPART_TEST_DATABASE_URL") {
        let url = fresh_postgres_database(&base).await;
        config.database.url = ConnectionUrl::new(url.clone());
        config.database.max_connections = 5;
        database_url = Some(url);
    }
    if let Ok(redis) = std::env::var("RAMPART_TEST_REDIS_URL") {
        config.redis.url = ConnectionUrl::new(redis);
        config.redis.key_prefix = format!("rampart-test:{}:", uuid::Uuid::new_v4().simple());
    }
    // Hermetic: no CRS found on this machine (Debian's package, /etc/rampart/crs) joins a
    // test app unless the test or the run asks for one.
    config.waf.crs_dir = crs_for_every_app().unwrap_or_else(|| "none".into());
    customise(&mut config);
    config.validate().expect("test config is valid");

    let built = app::build(config.clone()).await.expect("app builds");
    let store = built.store.clone();
    let identity = built.identity.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        app::serve(built, listener, std::future::pending())
            .await
            .ok();
    });
    let scheme = if config.tls.enabled() {
        "https"
    } else {
        "http"
    };
    TestApp {
        base: format!("{scheme}://{addr}"),
        client,
        store,
        identity,
        config,
        database_url,
        dir,
        server,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request")
    }

    /// Runs the real binary against this app's database and data dir:
    /// (success, stdout, stderr).
    pub async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        self.cli_env(args, &[]).await
    }

    /// Starts another node: `rampart serve` as its own process on this app's database,
    /// data dir and Redis, with more settings from `env`. Killed when dropped.
    pub async fn spawn_node(&self, env: &[(&str, &str)]) -> Node {
        self.spawn_node_logging(env, None).await
    }

    /// [`TestApp::spawn_node`] with the node's log (stderr) written to `log` when given.
    pub async fn spawn_node_logging(
        &self,
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> Node {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = self.command(&["serve"]);
        cmd.env("RAMPART_HTTP_LISTEN", &listen)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(match log {
                Some(path) => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("open the node's log file")
                    .into(),
                None => std::process::Stdio::inherit(),
            });
        if !self.config.redis.url.is_empty() {
            // The test's own key prefix too: with the default one, every test's node would
            // share rate-limit and login-throttle counters (one client address, 127.0.0.1,
            // for all of them) and a burst in one test would throttle another's logins.
            cmd.env("RAMPART_REDIS_URL", self.config.redis.url.expose());
            // A test that gives its nodes a prefix of their own (the cluster test) keeps it.
            if !env.iter().any(|(k, _)| *k == "RAMPART_REDIS_KEY_PREFIX") {
                cmd.env("RAMPART_REDIS_KEY_PREFIX", &self.config.redis.key_prefix);
            }
        }
        let node = Node {
            base: format!("http://{listen}"),
            child: cmd.spawn().expect("start rampart serve"),
        };
        for _ in 0..200 {
            if let Ok(res) = self
                .client
                .get(format!("{}/health", node.base))
                .send()
                .await
            {
                if res.status() == StatusCode::OK {
                    return node;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("rampart serve did not come up on {listen}");
    }

    /// [`TestApp::cli`] with more environment variables.
    ///
    /// Waits on the blocking pool, not on this test's runtime thread: the app under test runs
    /// on that runtime too, and a transaction of its (a job claim, a checkpoint) caught
    /// mid-way while the thread was blocked would hold SQLite's write lock for as long as
    /// the command ran, so the command would wait out the busy timeout against it.
    pub async fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("the command's thread")
            .expect("run rampart");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The real binary, pointed at this app's database and data dir.
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"));
        cmd.args(args)
            .env("RAMPART_DATA_DIR", self.dir.path())
            .env("RAMPART_LOG_LEVEL", "warn")
            .env("RAMPART_WAF_CRS_DIR", &self.config.waf.crs_dir)
            .env_remove("RAMPART_DATABASE_URL");
        if let Some(url) = &self.database_url {
            cmd.env("RAMPART_DATABASE_URL", url);
        }
        let b = &self.config.backup;
        if !b.s3_bucket.is_empty() {
            cmd.env("RAMPART_BACKUP_S3_ENDPOINT", &b.s3_endpoint)
                .env("RAMPART_BACKUP_S3_BUCKET", &b.s3_bucket)
                .env("RAMPART_BACKUP_S3_ACCESS_KEY_ID", &b.s3_access_key_id)
                .env(
                    "RAMPART_BACKUP_S3_SECRET_ACCESS_KEY",
                    b.s3_secret_access_key.expose(),
                );
        }
        if !self.config.objects.dir.is_empty() {
            cmd.env("RAMPART_OBJECTS_DIR", &self.config.objects.dir);
        }
        let c = &self.config.crypto;
        if !c.pkcs11_module.is_empty() {
            cmd.env("RAMPART_CRYPTO_PKCS11_MODULE", &c.pkcs11_module)
                .env("RAMPART_CRYPTO_PKCS11_TOKEN", &c.pkcs11_token)
                .env("RAMPART_CRYPTO_PKCS11_PIN", c.pkcs11_pin.expose())
                .env(
                    "RAMPART_CRYPTO_PKCS11_ROOT_KEY_LABEL",
                    &c.pkcs11_root_key_label,
                )
                .env(
                    "RAMPART_CRYPTO_ROOT_KEY_SOURCE",
                    match c.root_key_source {
                        rampart_config::RootKeySourceSetting::Auto => "auto",
                        rampart_config::RootKeySourceSetting::Pkcs11 => "pkcs11",
                    },
                );
        }
        cmd
    }

    /// Runs one statement against this app's database as its owner (to stage what time
    /// alone would do, like a session left idle); returns the rows it changed.
    pub async fn execute_sql(&self, sql: &str) -> u64 {
        match &self.database_url {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .expect(sql)
                    .rows_affected()
            }
            None => {
                let url = format!("sqlite://{}", self.dir.path().join("rampart.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("open the SQLite file");
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .expect(sql)
                    .rows_affected()
            }
        }
    }

    /// Rows of `sql`, read straight from this app's database (the SQLite file or the test's
    /// PostgreSQL database, as its owner), for checks a user's API cannot make.
    pub async fn query_rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + Send
            + Unpin,
    {
        match &self.database_url {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
                sqlx::query_as(sql).fetch_all(&mut conn).await.expect(sql)
            }
            None => {
                let url = format!(
                    "sqlite://{}?mode=ro",
                    self.dir.path().join("rampart.db").display()
                );
                let mut conn = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("open the SQLite file");
                sqlx::query_as(sql).fetch_all(&mut conn).await.expect(sql)
            }
        }
    }

    /// An open high alert of `rule` about `tenant`, stored as the detector stores one
    /// (for pages and routes that list alerts); its id.
    pub async fn stage_alert(&self, tenant: &str, rule: &str, title: &str) -> String {
        let now = rampart_store::now_ms();
        let (alert, _) = self
            .store
            .record_alert(
                &rampart_store::detection::NewAlert {
                    id: format!("alr_{}", rampart_store::new_id()),
                    rule_id: rule.into(),
                    title: title.into(),
                    level: "high".into(),
                    tenant_id: Some(tenant.into()),
                    group_key: r#"{"source_ip":"203.0.113.9"}"#.into(),
                    techniques: vec!["T1110.003".into()],
                    event_count: 5,
                    event_ids: vec![],
                    first_event_at: now - 60_000,
                    last_event_at: now,
                    merge_within_ms: 0,
                    mail_delivery: rampart_store::detection::DELIVERY_NONE,
                    webhook_delivery: rampart_store::detection::DELIVERY_NONE,
                },
                rampart_audit::event(
                    Actor::System,
                    "alert.raise",
                    "alert",
                    RequestMeta::default(),
                )
                .build(),
                &Default::default(),
            )
            .await
            .expect("the alert is stored");
        alert.id
    }

    /// Creates a user directly through the same path the CLI uses.
    pub async fn create_user(&self, tenant_id: &str, email: &str, role: Role) -> String {
        rampart_identity::users::create_user(
            &self.store,
            &self.config.auth,
            rampart_identity::users::UserInput {
                tenant_id: tenant_id.to_string(),
                email: email.to_string(),
                name: String::new(),
                role,
                password: STRONG_PASSWORD.to_string(),
            },
            Actor::System,
            RequestMeta::default(),
        )
        .await
        .expect("create user")
        .id
    }

    /// The newest mail to `to` in `data/mail` (the `.eml` files written when no mail host
    /// is set) whose text holds `needle`, with quoted-printable soft line breaks undone.
    /// Waits up to 20 s for the job queue to write it.
    pub async fn mail_file_to(&self, to: &str, needle: &str) -> String {
        let dir = self.dir.path().join("mail");
        for _ in 0..200 {
            let mut found: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .filter_map(|e| {
                    let text = std::fs::read_to_string(e.path()).ok()?;
                    let text = text.replace("=\r\n", "").replace("=\n", "");
                    let when = e.metadata().ok()?.modified().ok()?;
                    (text.contains(&format!("To: {to}")) && text.contains(needle))
                        .then_some((when, text))
                })
                .collect();
            found.sort_by_key(|(when, _)| *when);
            if let Some((_, text)) = found.pop() {
                return text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("no mail to {to} holding {needle:?} in {}", dir.display());
    }

    /// Accepts the invitation mailed to `email` (a tenant admin's `POST …/users`), choosing
    /// `STRONG_PASSWORD`, as the invitee would.
    pub async fn accept_invitation(&self, email: &str) {
        let text = self.mail_file_to(email, "inv_").await;
        let start = text.find("inv_").expect("a token");
        let token: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let res = self
            .post(
                "/api/v1/auth/accept-invitation",
                None,
                &json!({"token": token, "password": STRONG_PASSWORD}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{:?}", res.text().await);
    }

    pub async fn create_platform_admin(&self, email: &str) -> String {
        self.create_user(PLATFORM_TENANT_ID, email, Role::PlatformAdmin)
            .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post(
            "/api/v1/auth/login",
            None,
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post(
            "/api/v1/auth/refresh",
            None,
            &json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    /// Logs in with the strong test password; returns (access, refresh).
    pub async fn tokens(&self, email: &str) -> (String, String) {
        let res = self.login(email, STRONG_PASSWORD).await;
        assert_eq!(res.status(), StatusCode::OK, "login of {email}");
        let body: Value = res.json().await.unwrap();
        (
            body["access_token"].as_str().unwrap().to_string(),
            body["refresh_token"].as_str().unwrap().to_string(),
        )
    }

    pub async fn create_tenant(&self, admin_token: &str, name: &str, kind: &str) -> String {
        let res = self
            .post(
                "/api/v1/tenants",
                Some(admin_token),
                &json!({ "name": name, "kind": kind }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        body["id"].as_str().unwrap().to_string()
    }
}

/// Asserts the one error shape and returns the code.
pub async fn error_code(res: Response, status: StatusCode) -> String {
    assert_eq!(res.status(), status);
    let request_id = res
        .headers()
        .get("x-request-id")
        .expect("X-Request-Id on every response")
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = res.json().await.expect("error body is JSON");
    let error = &body["error"];
    assert!(error["code"].is_string(), "{body}");
    assert!(error["message"].is_string(), "{body}");
    assert_eq!(error["request_id"], request_id, "{body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    error["code"].as_str().unwrap().to_string()
}

/// RFC 4648 base32 (no padding), as TOTP secrets are shown: decoded here so the tests
/// do not use the implementation under test.
pub fn base32_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {text}"),
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

/// A SoftHSM2 token for this test process: `(module, token label, PIN)`, or `None` (and a
/// note on stderr) when `RAMPART_TEST_PKCS11_MODULE` is unset. SoftHSM reads its config
/// once per process, so every test shares one token directory and one token; tests keep
/// apart by the labels of their objects.
pub fn softhsm_token() -> Option<(String, String, String)> {
    static TOKEN: std::sync::OnceLock<Option<(String, String, String)>> =
        std::sync::OnceLock::new();
    TOKEN
        .get_or_init(|| {
            let Ok(module) = std::env::var("RAMPART_TEST_PKCS11_MODULE") else {
                eprintln!("skipped the PKCS#11 part: set RAMPART_TEST_PKCS11_MODULE (e.g. /usr/lib/softhsm/libsofthsm2.so)");
                return None;
            };
            // Lives as long as the process: the token's files must outlast every test.
            let dir = tempfile::tempdir().expect("temp dir").keep();
            let tokens = dir.join("tokens");
            std::fs::create_dir_all(&tokens).unwrap();
            let conf = dir.join("softhsm2.conf");
            std::fs::write(
                &conf,
                format!(
                    "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                    tokens.display()
                ),
            )
            .unwrap();
            // Before any PKCS#11 call in this process, and inherited by CLI children.
            std::env::set_var("SOFTHSM2_CONF", &conf);
            let init = std::process::Command::new("softhsm2-util")
                .args([
                    "--init-token", "--free", "--label", "rampart-api-test", "--pin", "1234",
                    "--so-pin", "5678",
                ])
                .output()
                .expect("softhsm2-util is installed");
            assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
            Some((module, "rampart-api-test".to_string(), "1234".to_string()))
        })
        .clone()
}

/// The OWASP CRS release the WAF tests load: `RAMPART_TEST_CRS_DIR` (set by `.ci/run`,
/// where a missing directory fails the test), else `../shared/crs/v4.28.0` beside the
/// repository. `None` (the test says it skipped) when neither is there.
pub fn crs_dir() -> Option<std::path::PathBuf> {
    if let Ok(dir) = std::env::var("RAMPART_TEST_CRS_DIR") {
        let dir = std::path::PathBuf::from(dir);
        assert!(
            dir.join("rules").is_dir(),
            "RAMPART_TEST_CRS_DIR={} has no rules/",
            dir.display()
        );
        return Some(dir);
    }
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs/v4.28.0");
    if dir.join("rules").is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: CRS not found (set RAMPART_TEST_CRS_DIR)");
        None
    }
}

/// The security-log events of one kind, waiting (up to 5 s) for the writer thread to
/// put at least one on disk.
pub async fn security_events(data_dir: &std::path::Path, event: &str) -> Vec<Value> {
    security_events_until(data_dir, event, |found| !found.is_empty()).await
}

/// The security-log events of one kind once `done` holds for them (the writer thread
/// appends in the background), waiting up to 5 s.
pub async fn security_events_until(
    data_dir: &std::path::Path,
    event: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let path = data_dir.join("logs/security.log");
    for _ in 0..50 {
        let found: Vec<Value> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["event"] == event)
            .collect();
        if done(&found) {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the {event} events expected are not in {}", path.display());
}
