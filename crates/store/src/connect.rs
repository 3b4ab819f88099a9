//! Opening the database: backend detection, migrations, the row-level-security role on
//! PostgreSQL, and the connection pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Executor};
use tokio::sync::Mutex;

use crate::migrate::{self, MigrationReport};
use crate::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://PATH` or `postgres://...`.
    pub url: String,
    pub max_connections: u32,
    /// See `database.app_role` in the configuration.
    pub app_role: String,
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    /// SQLite allows one writer at a time. Writers in this process queue here instead of
    /// spinning on SQLITE_BUSY; other processes (the CLI) are covered by `BEGIN IMMEDIATE`
    /// and the busy timeout.
    pub(crate) sqlite_writer: Option<Arc<Mutex<()>>>,
    max_connections: u32,
    /// PostgreSQL: the role requests run as, when the configured user could bypass RLS.
    run_as_role: Option<String>,
    /// The URL as configured: restores and drills on PostgreSQL connect with it to create
    /// and drop databases.
    pub(crate) url: Option<String>,
    /// Connections found inside a transaction when they were released, and closed instead
    /// of pooled (by `tx::end` or by the pool's release check).
    pub(crate) released_in_transaction: Arc<AtomicU64>,
}

impl Inner {
    pub(crate) fn count_release_in_transaction(&self) {
        self.released_in_transaction.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; \
     PRAGMA busy_timeout = 5000;";

static DRIVERS: Once = Once::new();

/// How long `/ready` waits for a write transaction before it calls the node not ready. Well
/// under SQLite's busy timeout, and long enough for a busy node's writer queue.
pub const READY_WRITE_BOUND: Duration = Duration::from_secs(2);

impl Store {
    /// Connects, applies pending migrations as the configured user, and opens the pool.
    pub async fn open(options: &StoreOptions) -> Result<(Store, MigrationReport), StoreError> {
        let (backend, url) = prepare_url(&options.url)?;
        let mut conn = connect_one(&url).await?;
        if backend == Backend::Sqlite {
            sqlx::raw_sql(SQLITE_PRAGMAS).execute(&mut conn).await?;
        }
        let report = migrate::run(&mut conn, backend).await?;
        let run_as_role = match backend {
            Backend::Postgres => ensure_unprivileged_role(&mut conn, &options.app_role).await?,
            Backend::Sqlite => None,
        };
        conn.close().await.ok();

        let released_in_transaction = Arc::new(AtomicU64::new(0));
        let pool = pool_options(
            backend,
            options.max_connections,
            run_as_role.clone(),
            released_in_transaction.clone(),
        )
        .connect(&url)
        .await
        .map_err(StoreError::Unavailable)?;
        let store = Store {
            inner: Arc::new(Inner {
                pool,
                backend,
                sqlite_writer: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
                max_connections: options.max_connections,
                run_as_role,
                url: Some(url.clone()),
                released_in_transaction,
            }),
        };
        let chained = store.backfill_audit_chain().await?;
        if chained > 0 {
            tracing::info!(
                events = chained,
                "chained audit events recorded before the chain existed"
            );
        }
        Ok((store, report))
    }

    /// Applies pending migrations and returns, without opening a pool (`rampart migrate`).
    pub async fn migrate(options: &StoreOptions) -> Result<MigrationReport, StoreError> {
        let (backend, url) = prepare_url(&options.url)?;
        let mut conn = connect_one(&url).await?;
        if backend == Backend::Sqlite {
            sqlx::raw_sql(SQLITE_PRAGMAS).execute(&mut conn).await?;
        }
        let report = migrate::run(&mut conn, backend).await?;
        if backend == Backend::Postgres {
            ensure_unprivileged_role(&mut conn, &options.app_role).await?;
        }
        conn.close().await.ok();
        Ok(report)
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The role requests run as on PostgreSQL when the configured user is privileged.
    pub fn run_as_role(&self) -> Option<&str> {
        self.inner.run_as_role.as_deref()
    }

    /// For `/ready`: the database takes a write within [`READY_WRITE_BOUND`] and every
    /// migration this binary knows is applied. A node whose writes hang (a lock nobody
    /// releases, a standby after failover) must leave the load balancer, so this opens a
    /// real write transaction: on SQLite it queues for the writer and takes the write lock
    /// (`BEGIN IMMEDIATE`), on PostgreSQL it must not be read-only. It writes nothing and
    /// rolls back.
    pub async fn ready(&self) -> Result<(), StoreError> {
        let probe = async {
            let mut tx = self.system_write().await?;
            let applied = migrate::applied_version(tx.conn()).await?;
            if applied < migrate::LATEST_VERSION {
                return Err(StoreError::Migration(format!(
                    "schema at version {applied}, this binary needs {}",
                    migrate::LATEST_VERSION
                )));
            }
            if self.backend() == Backend::Postgres {
                let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
                    .fetch_one(tx.conn())
                    .await?;
                if read_only == "on" {
                    return Err(StoreError::NotWritable(
                        "the server takes no writes (a standby?)".into(),
                    ));
                }
            }
            Ok(())
        };
        // Dropping the probe at the deadline is safe: transactions begin and end in tasks
        // of their own (see `tx`).
        match tokio::time::timeout(READY_WRITE_BOUND, probe).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::NotWritable(format!(
                "no write transaction within {} ms",
                READY_WRITE_BOUND.as_millis()
            ))),
        }
    }

    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.inner.pool.size(),
            idle: self.inner.pool.num_idle() as u32,
            max: self.inner.max_connections,
        }
    }

    pub async fn close(&self) {
        self.inner.pool.close().await;
    }
}

fn prepare_url(url: &str) -> Result<(Backend, String), StoreError> {
    DRIVERS.call_once(sqlx::any::install_default_drivers);
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let file = path.split('?').next().unwrap_or(path);
        if let Some(parent) = std::path::Path::new(file).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Migration(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
        }
        let url = if path.contains('?') {
            format!("sqlite://{path}")
        } else {
            format!("sqlite://{path}?mode=rwc")
        };
        Ok((Backend::Sqlite, url))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok((Backend::Postgres, url.to_string()))
    } else {
        Err(StoreError::Migration(
            "database URL must start with sqlite:// or postgres://".into(),
        ))
    }
}

pub(crate) async fn connect_one(url: &str) -> Result<AnyConnection, StoreError> {
    let options: AnyConnectOptions = url.parse().map_err(StoreError::Unavailable)?;
    options
        .disable_statement_logging()
        .connect()
        .await
        .map_err(StoreError::Unavailable)
}

fn pool_options(
    backend: Backend,
    max: u32,
    run_as_role: Option<String>,
    released_in_transaction: Arc<AtomicU64>,
) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .after_connect(move |conn, _meta| Box::pin(on_connect(conn, backend, run_as_role.clone())))
        .after_release(move |conn, _meta| {
            Box::pin(released_outside_transaction(
                conn,
                released_in_transaction.clone(),
            ))
        })
}

/// The pool's release check, for every connection whatever used it: one that comes back
/// inside a transaction is closed (which ends the transaction on the server) rather than
/// handed to the next caller, who would otherwise inherit its locks. `Tx` ends its own
/// transactions and closes its own strays, logging them with their request; this catches
/// any other path, so no future bug of that kind can wedge the node.
fn released_outside_transaction<'c>(
    conn: &'c mut AnyConnection,
    counter: Arc<AtomicU64>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, sqlx::Error>> + Send + 'c>> {
    Box::pin(async move {
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        // A dropped sqlx transaction queues its rollback for the connection's next command
        // (SQLite counts it done only when it has run): flush the queue, then look again.
        conn.ping().await?;
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            "a database connection came back to the pool inside a transaction; \
             closing it (the transaction is rolled back)"
        );
        Ok(false)
    })
}

/// Per pooled connection: SQLite's pragmas, or PostgreSQL's switch to the unprivileged role.
/// (A boxed future with a named lifetime: sqlx's `after_connect` needs it spelled out.)
fn on_connect<'c>(
    conn: &'c mut AnyConnection,
    backend: Backend,
    role: Option<String>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c>> {
    let sql = match (backend, role) {
        (Backend::Sqlite, _) => Some(SQLITE_PRAGMAS.to_string()),
        // The role name is validated by the config crate (lowercase, digits, `_`), so
        // quoting it is safe.
        (Backend::Postgres, Some(role)) => Some(format!("SET ROLE \"{role}\"")),
        (Backend::Postgres, None) => None,
    };
    Box::pin(async move {
        if let Some(sql) = sql {
            conn.execute(sqlx::raw_sql(&sql)).await?;
        }
        Ok(())
    })
}

/// If the connected user could bypass row-level security, creates (once) a role that
/// cannot, grants it the tables, and returns its name so every pooled connection switches
/// to it. A user that is already unprivileged is used as it is: FORCE binds it.
async fn ensure_unprivileged_role(
    conn: &mut AnyConnection,
    role: &str,
) -> Result<Option<String>, StoreError> {
    let privileged: bool = sqlx::query_scalar(
        "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !privileged {
        return Ok(None);
    }
    // Roles are cluster-wide, and several databases (tests, nodes) may start at once:
    // creating an existing role is not an error.
    let create = format!(
        "DO $$ BEGIN \
           CREATE ROLE \"{role}\" NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    );
    sqlx::raw_sql(&create).execute(&mut *conn).await?;
    let grants = format!(
        "GRANT USAGE ON SCHEMA public TO \"{role}\"; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \"{role}\"; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO \"{role}\";"
    );
    sqlx::raw_sql(&grants).execute(&mut *conn).await?;
    let bypasses: bool =
        sqlx::query_scalar("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = $1")
            .bind(role)
            .fetch_one(&mut *conn)
            .await?;
    if bypasses {
        return Err(StoreError::Migration(format!(
            "database.app_role {role} exists with SUPERUSER or BYPASSRLS; \
             row-level security would not bind it"
        )));
    }
    Ok(Some(role.to_string()))
}
