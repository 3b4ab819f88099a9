//! Transactions and the scopes they act for.
//!
//! A transaction is opened, committed and rolled back in a task of its own (`tokio::spawn`),
//! never in the caller's future. hyper drops a handler's future when its client goes away,
//! the request timeout drops it when it is slow, and shutdown drops whatever is left: if
//! that happened between sqlx's `BEGIN` and the moment a [`Tx`] owned the connection (sqlx
//! 0.8's SQLite `begin_with` awaits once more after `BEGIN IMMEDIATE` has run), or in the
//! middle of `COMMIT`, the pooled connection went back to the pool inside a write
//! transaction that nothing would ever end, and every later write on SQLite waited for the
//! busy timeout and failed until restart (issue 13). A spawned task runs to its end whether
//! or not anyone still waits for it; a `Tx` it made that nobody receives is dropped, which
//! rolls it back. SQLite's in-process writer lock travels with the transaction and is let go
//! only after the commit or rollback has run.
//!
//! The connection is held as a plain `PoolConnection` and driven through sqlx's
//! `TransactionManager`, rather than as an `sqlx::Transaction`, so that this module sees the
//! connection after its commit or rollback: one still inside a transaction is closed here,
//! logged with the request it served and counted, instead of going back to the pool.

use std::sync::atomic::Ordering;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Connection, Database, TransactionManager};
use tokio::sync::{oneshot, OwnedMutexGuard};
use tracing::Instrument;

use crate::{Backend, Store, StoreError};

/// The transaction manager of the `Any` driver: the backend's own `BEGIN`/`COMMIT`/
/// `ROLLBACK`, keeping sqlx's transaction depth (which the pool's release check reads) true.
type Manager = <Any as Database>::TransactionManager;

/// The tenant a piece of work acts for. Minted only by this crate, from rows the database
/// vouches for (a live session of a user in that tenant), never from request input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope {
    tenant_id: String,
}

impl TenantScope {
    pub(crate) fn mint(tenant_id: String) -> TenantScope {
        TenantScope { tenant_id }
    }

    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }
}

/// Cross-tenant work: login by e-mail, refresh-token lookup, platform administration,
/// operator commands. Only the store's own functions open one.
#[derive(Debug, Clone, Copy)]
pub struct System;

/// A database transaction acting for a scope: `Tx<TenantScope>` for tenant work,
/// `Tx<System>` for the cross-tenant operations.
///
/// Dropped without `commit` (an early return, an error, a cancelled request), it rolls back
/// in a task of its own, and keeps SQLite's writer lock until the rollback has run.
pub struct Tx<S> {
    /// `Some` until `commit` or drop; only those take it.
    conn: Option<PoolConnection<Any>>,
    pub(crate) scope: S,
    pub(crate) backend: Backend,
    writer: Option<OwnedMutexGuard<()>>,
    store: Store,
    /// The span of the request (or job) that opened the transaction: its commit and
    /// rollback run in tasks of their own, and log under it.
    span: tracing::Span,
    /// The transaction's own span (a child of `span`, for traces): from the wait for a
    /// connection to the end of the commit or rollback.
    trace: tracing::Span,
}

impl<S> Drop for Tx<S> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let writer = self.writer.take();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let trace = self.trace.clone();
                let end = end(self.store.clone(), conn, End::Rollback, writer, trace);
                runtime.spawn(end.instrument(self.span.clone()));
            }
            // No runtime (process exit): queue the rollback for the connection's next use,
            // as sqlx's own transactions do, and close the connection rather than pool it.
            Err(_) => {
                Manager::start_rollback(&mut conn);
                conn.close_on_drop();
            }
        }
    }
}

pub type TenantTx = Tx<TenantScope>;
pub type SystemTx = Tx<System>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Commit,
    Rollback,
}

/// Commits or rolls back `conn`'s transaction, then releases it: to the pool when it is out
/// of its transaction, closed (which ends the transaction on the server) when it is not.
/// The writer lock goes last. Runs in a task of its own: see the module docs.
async fn end(
    store: Store,
    mut conn: PoolConnection<Any>,
    how: End,
    writer: Option<OwnedMutexGuard<()>>,
    trace: tracing::Span,
) -> Result<(), sqlx::Error> {
    let result = match how {
        End::Commit => Manager::commit(&mut conn).await,
        End::Rollback => Manager::rollback(&mut conn).await,
    };
    trace.record(
        "rampart.db.outcome",
        match how {
            End::Commit => "commit",
            End::Rollback => "rollback",
        },
    );
    if let Err(e) = &result {
        trace.record("otel.status_code", "ERROR");
        match how {
            End::Commit => tracing::debug!(error = %e, "commit failed; rolling back"),
            End::Rollback => tracing::warn!(error = %e, "rollback failed"),
        }
        // A failed COMMIT can leave the transaction open (SQLite: busy): end it here, under
        // the writer lock, rather than leave it to the connection's next user.
        if how == End::Commit && conn.is_in_transaction() {
            Manager::rollback(&mut conn).await.ok();
        }
    }
    if conn.is_in_transaction() {
        store.inner.count_release_in_transaction();
        tracing::error!(
            "a database connection is still inside a transaction after its commit or \
             rollback; closing it instead of returning it to the pool"
        );
        conn.close().await.ok();
    } else {
        drop(conn);
    }
    drop(writer);
    result
}

impl<S> Tx<S> {
    pub async fn commit(mut self) -> Result<(), StoreError> {
        let Some(conn) = self.conn.take() else {
            return Ok(());
        };
        let trace = self.trace.clone();
        let end = end(
            self.store.clone(),
            conn,
            End::Commit,
            self.writer.take(),
            trace,
        );
        // Awaited from a task of its own: a caller dropped mid-commit cannot stop it halfway.
        match tokio::spawn(end.instrument(self.span.clone())).await {
            Ok(result) => result.map_err(StoreError::from),
            // Cancelled only by a runtime shutting down.
            Err(e) => {
                tracing::error!(error = %e, "a commit did not finish");
                Err(StoreError::Unavailable(sqlx::Error::PoolClosed))
            }
        }
    }

    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        match self.conn.as_mut() {
            Some(conn) => conn,
            // `conn` is taken only by `commit` (which consumes the Tx) and by drop.
            None => unreachable!("transaction used after commit"),
        }
    }

    /// Appends an audit event to `tenant_id`'s chain inside this transaction.
    pub(crate) async fn audit(
        &mut self,
        tenant_id: &str,
        event: &crate::NewAuditEvent,
    ) -> Result<String, StoreError> {
        let backend = self.backend;
        crate::audit_events::append(self.conn(), backend, tenant_id, event).await
    }
}

impl TenantTx {
    pub fn scope(&self) -> &TenantScope {
        &self.scope
    }

    pub(crate) fn tenant_id(&self) -> &str {
        &self.scope.tenant_id
    }
}

impl Store {
    /// A transaction for reads within one tenant.
    pub async fn tenant_read(&self, scope: &TenantScope) -> Result<TenantTx, StoreError> {
        self.begin(Some(scope.tenant_id()), false, scope.clone())
            .await
    }

    /// A transaction that writes within one tenant.
    pub async fn tenant_write(&self, scope: &TenantScope) -> Result<TenantTx, StoreError> {
        self.begin(Some(scope.tenant_id()), true, scope.clone())
            .await
    }

    pub(crate) async fn system_read(&self) -> Result<SystemTx, StoreError> {
        self.begin(None, false, System).await
    }

    pub(crate) async fn system_write(&self) -> Result<SystemTx, StoreError> {
        self.begin(None, true, System).await
    }

    /// Opens a transaction in a task of its own and hands it over through a channel. A
    /// caller that is gone by then never receives it: the `Tx` is dropped and rolls back.
    async fn begin<S: Send + 'static>(
        &self,
        tenant: Option<&str>,
        write: bool,
        scope: S,
    ) -> Result<Tx<S>, StoreError> {
        let (send, receive) = oneshot::channel();
        let store = self.clone();
        let tenant = tenant.map(str::to_owned);
        let span = tracing::Span::current();
        // Only the backend and the kind of transaction: never a statement or a parameter.
        let trace = tracing::info_span!(
            parent: &span,
            "db.transaction",
            otel.name = if write { "transaction write" } else { "transaction read" },
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.system.name = match self.inner.backend {
                Backend::Sqlite => "sqlite",
                Backend::Postgres => "postgresql",
            },
            db.operation.name = "transaction",
            rampart.db.write = write,
            rampart.db.outcome = tracing::field::Empty,
        );
        let trace_in_task = trace.clone();
        tokio::spawn(
            async move {
                let writer = store.writer_lock(write).await;
                // Waited in the writer queue for a caller who has left: do not begin.
                if send.is_closed() {
                    return;
                }
                let opened = store
                    .open_tx(tenant.as_deref(), write, scope, writer, trace_in_task)
                    .await;
                // Refused when the caller is gone: the Tx comes back and is dropped here.
                let _ = send.send(opened);
            }
            .instrument(span),
        );
        let opened = receive.await.unwrap_or_else(|_| {
            tracing::error!("a database task did not finish");
            Err(StoreError::Unavailable(sqlx::Error::PoolClosed))
        });
        if opened.is_err() {
            trace.record("otel.status_code", "ERROR");
        }
        opened
    }

    /// Queue for SQLite's single writer before taking a connection, so waiting writers do
    /// not hold pool connections that readers need.
    async fn writer_lock(&self, write: bool) -> Option<OwnedMutexGuard<()>> {
        match (&self.inner.sqlite_writer, write) {
            (Some(lock), true) => Some(lock.clone().lock_owned().await),
            _ => None,
        }
    }

    async fn open_tx<S>(
        &self,
        tenant: Option<&str>,
        write: bool,
        scope: S,
        writer: Option<OwnedMutexGuard<()>>,
        trace: tracing::Span,
    ) -> Result<Tx<S>, StoreError> {
        let inner = &self.inner;
        let mut conn = inner.pool.acquire().await?;
        let statement = match (inner.backend, write) {
            (Backend::Sqlite, true) => Some("BEGIN IMMEDIATE".into()),
            _ => None,
        };
        if let Err(e) = Manager::begin(&mut conn, statement).await {
            // `BEGIN` may have run although `begin` failed after it: never pool that.
            if conn.is_in_transaction() {
                Manager::rollback(&mut conn).await.ok();
                conn.close_on_drop();
            }
            return Err(e.into());
        }
        let mut tx = Tx {
            conn: Some(conn),
            scope,
            backend: inner.backend,
            writer,
            store: self.clone(),
            span: tracing::Span::current(),
            trace,
        };
        if inner.backend == Backend::Postgres {
            // Transaction-local settings (`is_local = true`): they end with the transaction,
            // so a pooled connection never carries one request's tenant into the next.
            // On error `tx` is dropped, which rolls back.
            let (tenant, system) = match tenant {
                Some(t) => (t, "off"),
                None => ("", "on"),
            };
            sqlx::query(
                "SELECT set_config('rampart.tenant_id', $1, true), \
                        set_config('rampart.system', $2, true)",
            )
            .bind(tenant)
            .bind(system)
            .fetch_one(tx.conn())
            .await?;
        }
        Ok(tx)
    }

    /// Connections that came back inside a transaction and were closed instead of pooled,
    /// since start (`rampart_db_connections_released_in_transaction_total`). Anything but 0
    /// is a bug: the error log says where.
    pub fn released_in_transaction(&self) -> u64 {
        self.inner.released_in_transaction.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Manager;
    use crate::{Store, StoreOptions};
    use sqlx::TransactionManager;

    async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        Store::open(&StoreOptions {
            url,
            max_connections: 2,
            app_role: "rampart_app".into(),
        })
        .await
        .expect("open")
        .0
    }

    /// The pool's release check: a connection dropped inside a write transaction (as a
    /// cancelled `begin_with` used to leave one) is closed, so the next writer gets the lock
    /// instead of waiting out the busy timeout for ever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_released_inside_a_transaction_is_closed_not_pooled() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        for _ in 0..3 {
            let mut conn = store.inner.pool.acquire().await.unwrap();
            Manager::begin(&mut conn, Some("BEGIN IMMEDIATE".into()))
                .await
                .unwrap();
            drop(conn);
            tokio::time::timeout(Duration::from_secs(4), store.ready())
                .await
                .expect("a write lock within the bound")
                .expect("ready");
        }
        assert_eq!(store.released_in_transaction(), 3);
    }

    /// A transaction whose caller is dropped at any point, however briefly it ran, ends:
    /// the next write finds the lock free, and no connection was left inside it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_dropped_at_any_moment_leave_no_transaction_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        for micros in (0..2_000).step_by(37) {
            let store2 = store.clone();
            let write = async move {
                let mut tx = store2.system_write().await?;
                crate::migrate::applied_version(tx.conn()).await?;
                tx.commit().await
            };
            let _ = tokio::time::timeout(Duration::from_micros(micros), write).await;
        }
        tokio::time::timeout(Duration::from_secs(4), store.ready())
            .await
            .expect("a write lock within the bound")
            .expect("ready");
        assert_eq!(store.released_in_transaction(), 0);
    }
}
