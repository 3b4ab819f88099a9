//! Console (browser) sessions: a cookie secret's digest bound to one identity session.
//!
//! The row only says which identity session a browser holds and when it lapses; whether
//! that session is still live (not logged out, revoked, or its user disabled) is checked
//! by the same `authenticate_session` every API request goes through.

use sqlx::Row;

use crate::{now_ms, Store, StoreError, TenantScope};

/// `last_seen_at` is written at most this often, so a busy page does not write per view;
/// the idle timeout is therefore exact to within a minute.
pub const LAST_SEEN_RESOLUTION_MS: i64 = 60_000;

#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub session_id: String,
    pub tenant_id: String,
    pub user_id: String,
    /// The user's role at sign-in.
    pub role: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

impl Store {
    /// Records a browser session for the identity session `session_id`.
    pub async fn create_console_session(
        &self,
        tenant_id: &str,
        token_hash: &str,
        session_id: &str,
        user_id: &str,
        role: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        // The caller holds an identity session of this tenant (it just signed in).
        let scope = TenantScope::mint(tenant_id.to_string());
        let mut tx = self.tenant_write(&scope).await?;
        sqlx::query(
            "INSERT INTO console_sessions (token_hash, session_id, tenant_id, user_id, role, \
             created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
        )
        .bind(token_hash)
        .bind(session_id)
        .bind(tx.tenant_id().to_string())
        .bind(user_id)
        .bind(role)
        .bind(now)
        .bind(expires_at)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The browser session whose cookie digest is `token_hash`, if it has not lapsed:
    /// seen within `idle_ms` and before its absolute expiry. A lapsed row is deleted.
    /// Refreshes `last_seen_at` (at most once a minute).
    pub async fn console_session(
        &self,
        token_hash: &str,
        idle_ms: i64,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        let now = now_ms();
        let row = {
            // The cookie names no tenant, so the lookup is a system read, like an API key's.
            let mut tx = self.system_read().await?;
            let row = sqlx::query(
                "SELECT session_id, tenant_id, user_id, role, created_at, last_seen_at, expires_at \
                 FROM console_sessions WHERE token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(tx.conn())
            .await?;
            tx.commit().await?;
            row
        };
        let Some(row) = row else { return Ok(None) };
        let session = ConsoleSession {
            session_id: row.try_get("session_id")?,
            tenant_id: row.try_get("tenant_id")?,
            user_id: row.try_get("user_id")?,
            role: row.try_get("role")?,
            created_at: row.try_get("created_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
            expires_at: row.try_get("expires_at")?,
        };
        let scope = TenantScope::mint(session.tenant_id.clone());
        if session.expires_at <= now || now - session.last_seen_at > idle_ms {
            self.end_console_session(&session.tenant_id, token_hash)
                .await?;
            return Ok(None);
        }
        if now - session.last_seen_at >= LAST_SEEN_RESOLUTION_MS {
            let mut tx = self.tenant_write(&scope).await?;
            sqlx::query(
                "UPDATE console_sessions SET last_seen_at = $1 \
                 WHERE token_hash = $2 AND tenant_id = $3",
            )
            .bind(now)
            .bind(token_hash)
            .bind(tx.tenant_id().to_string())
            .execute(tx.conn())
            .await?;
            tx.commit().await?;
        }
        Ok(Some(session))
    }

    /// Forgets a browser session (logout, lapse). The identity session is ended by the
    /// caller through the API's logout.
    pub async fn end_console_session(
        &self,
        tenant_id: &str,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        let scope = TenantScope::mint(tenant_id.to_string());
        let mut tx = self.tenant_write(&scope).await?;
        sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1 AND tenant_id = $2")
            .bind(token_hash)
            .bind(tx.tenant_id().to_string())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes browser sessions past their absolute expiry (the nightly purge).
    pub async fn purge_console_sessions(&self) -> Result<u64, StoreError> {
        let mut tx = self.system_write().await?;
        let n = sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(tx.conn())
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}
