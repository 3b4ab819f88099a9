//! Transactions and the scopes they act for.

use sqlx::{Any, AnyConnection, Transaction};
use tokio::sync::OwnedMutexGuard;

use crate::{Backend, Store, StoreError};

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
/// Dropped without `commit` (an early return, an error), it rolls back, and it keeps
/// SQLite's writer lock until the rollback has actually run. sqlx alone only queues the
/// rollback for the connection's next use; releasing the lock at drop let the next writer
/// wait on a write transaction still open on an idle pooled connection, and fail with
/// "database is locked" after the busy timeout (found by `bench/crypto.sh`). On PostgreSQL
/// the same would hold row locks (the audit chain head) on an idle connection.
pub struct Tx<S> {
    /// `Some` until `commit` or drop; only those take it.
    inner: Option<Transaction<'static, Any>>,
    pub(crate) scope: S,
    pub(crate) backend: Backend,
    writer: Option<OwnedMutexGuard<()>>,
}

impl<S> Drop for Tx<S> {
    fn drop(&mut self) {
        let Some(tx) = self.inner.take() else { return };
        let writer = self.writer.take();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = tx.rollback().await {
                        tracing::warn!(error = %e, "rollback of an abandoned transaction failed");
                    }
                    drop(writer);
                });
            }
            // No runtime (process exit): sqlx's own drop queues the rollback.
            Err(_) => drop(tx),
        }
    }
}

pub type TenantTx = Tx<TenantScope>;
pub type SystemTx = Tx<System>;

impl<S> Tx<S> {
    pub async fn commit(mut self) -> Result<(), StoreError> {
        if let Some(tx) = self.inner.take() {
            tx.commit().await?;
        }
        // The writer lock goes with `self`, after the commit.
        Ok(())
    }

    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        match self.inner.as_mut() {
            Some(tx) => tx,
            // `inner` is taken only by `commit` (which consumes the Tx) and by drop.
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

    async fn begin<S>(
        &self,
        tenant: Option<&str>,
        write: bool,
        scope: S,
    ) -> Result<Tx<S>, StoreError> {
        let inner = &self.inner;
        // Queue for SQLite's single writer before taking a connection, so waiting writers
        // do not hold pool connections that readers need.
        let writer = match (&inner.sqlite_writer, write) {
            (Some(lock), true) => Some(lock.clone().lock_owned().await),
            _ => None,
        };
        let mut tx = match (inner.backend, write) {
            (Backend::Sqlite, true) => inner.pool.begin_with("BEGIN IMMEDIATE").await?,
            _ => inner.pool.begin().await?,
        };
        if inner.backend == Backend::Postgres {
            // Transaction-local settings (`is_local = true`): they end with the transaction,
            // so a pooled connection never carries one request's tenant into the next.
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
            .fetch_one(&mut *tx)
            .await?;
        }
        Ok(Tx {
            inner: Some(tx),
            scope,
            backend: inner.backend,
            writer,
        })
    }
}
