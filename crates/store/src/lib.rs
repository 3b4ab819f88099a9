//! The storage layer: the only crate that talks to a database driver.
//!
//! One repository layer over SQLite (embedded default, WAL mode) and PostgreSQL, through
//! sqlx's `Any` driver with SQL in the subset both share (`$1` placeholders, text ids,
//! BIGINT millisecond times). Migrations are kept per backend and embedded in the binary.
//!
//! Every query runs inside a [`Tx`] opened for a [`TenantScope`] or for the system (the
//! few cross-tenant operations such as login by e-mail). Tenant scopes are minted only
//! here, from rows the database vouches for (a live session), so a handler cannot forge
//! one from a path parameter. On PostgreSQL each transaction also sets the tenant for
//! row-level security, so the database enforces the same boundary.
//!
//! Invariant: tenant tables are read and written only with the scope's tenant id in the
//! WHERE clause (SQLite has no row-level security; the code is the boundary there).
#![forbid(unsafe_code)]

mod connect;
mod error;
mod migrate;
pub mod model;
mod tx;

pub mod account;
pub mod api_keys;
pub mod audit_events;
pub mod backups;
pub mod console;
pub mod detection;
pub mod jobs;
pub mod keyring;
pub mod mfa;
pub mod notify;
pub mod observations;
pub mod payments;
pub mod sessions;
pub mod signing_keys;
pub mod tenants;
pub mod trace_context;
pub mod users;
pub mod vault;

pub use connect::{Backend, PoolStats, Store, StoreOptions};
pub use error::StoreError;
pub use migrate::{MigrationReport, LATEST_VERSION};
pub use model::*;
pub use tx::{TenantScope, Tx};

/// Milliseconds since the Unix epoch: how every time is stored.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A new time-ordered id (UUIDv7), so ids sort by creation and cursors can use them.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
