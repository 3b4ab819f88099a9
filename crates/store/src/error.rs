//! Storage errors. Constraint violations become [`StoreError::Conflict`] here, in one
//! place per backend, so handlers map them to 409 without inspecting driver errors.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique constraint: `constraint` names the index (e.g. `users_email`).
    #[error("conflict on {constraint}")]
    Conflict { constraint: String },
    /// A foreign key or check constraint: the row refers to something that is not there.
    #[error("constraint {constraint} violated")]
    Constraint { constraint: String },
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("migration: {0}")]
    Migration(String),
    /// The database answers but takes no write (`/ready`).
    #[error("the database takes no writes: {0}")]
    NotWritable(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(e)
            }
            sqlx::Error::Database(db) => {
                let constraint = db
                    .constraint()
                    .map(str::to_string)
                    .unwrap_or_else(|| constraint_from_message(db.message()));
                if db.code().as_deref().is_some_and(server_unavailable) {
                    StoreError::Unavailable(e)
                } else if db.is_unique_violation() {
                    StoreError::Conflict { constraint }
                } else if db.is_foreign_key_violation() || db.is_check_violation() {
                    StoreError::Constraint { constraint }
                } else {
                    StoreError::Database(e)
                }
            }
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_) => {
                StoreError::Corrupt(e.to_string())
            }
            _ => StoreError::Database(e),
        }
    }
}

/// PostgreSQL codes that mean "the server cannot serve you now", not "your query is
/// wrong": connection exceptions (class 08), an administrator or crash shutdown and
/// "cannot connect now" (57P01–57P03), too many connections (53300), and a database that
/// does not accept connections (55000, as during a failover or maintenance). They are
/// 503, like a pool timeout, and `/ready` reports them.
fn server_unavailable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "55000")
}

/// SQLite names the columns, not the index: "UNIQUE constraint failed: users.email".
/// Map that to the index name the PostgreSQL error carries, so callers see one name.
fn constraint_from_message(message: &str) -> String {
    match message.rsplit_once(": ") {
        Some((_, columns)) => columns.replace('.', "_").replace(", ", "_"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqlite_message_maps_to_index_name() {
        assert_eq!(
            super::constraint_from_message("UNIQUE constraint failed: users.email"),
            "users_email"
        );
    }
}
