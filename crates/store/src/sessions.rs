//! Sessions and their rotating refresh tokens.
//!
//! A session is one login. Each refresh token is used once: using it marks it used and
//! issues the next. Presenting a used token again means it was copied, so the whole
//! session (its token family) is revoked, the RFC 6819 / OAuth 2.1 reuse rule.

use sqlx::Row;

use crate::{
    new_id, now_ms, users, LoginCandidate, NewAuditEvent, RequestMeta, Store, StoreError,
    TenantScope, User,
};

#[derive(Debug, Clone)]
pub struct NewSession {
    /// Digest of the first refresh token (see `rampart_crypto::secret_digest`).
    pub refresh_token_hash: String,
    pub expires_at: i64,
    pub meta: RequestMeta,
    /// The login passed a second factor.
    pub mfa: bool,
}

#[derive(Debug, Clone)]
pub struct SessionStarted {
    pub scope: TenantScope,
    pub session_id: String,
}

#[derive(Debug)]
pub enum Rotation {
    Rotated {
        scope: TenantScope,
        user: User,
        session_id: String,
    },
    /// A used token came back: the session is now revoked.
    Reused { session_id: String, user_id: String },
    /// Unknown, expired, or its session has ended.
    Rejected,
}

impl Store {
    /// Starts a session for a user whose password the caller has verified.
    pub async fn start_session(
        &self,
        candidate: &LoginCandidate,
        new: NewSession,
        mut audit: NewAuditEvent,
    ) -> Result<SessionStarted, StoreError> {
        let user = &candidate.user;
        let scope = TenantScope::mint(user.tenant_id.clone());
        let now = now_ms();
        let session_id = new_id();
        let mut tx = self.tenant_write(&scope).await?;
        sqlx::query(
            "INSERT INTO sessions (id, tenant_id, user_id, created_at, expires_at, source_ip, \
             user_agent, mfa_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&session_id)
        .bind(&user.tenant_id)
        .bind(&user.id)
        .bind(now)
        .bind(new.expires_at)
        .bind(new.meta.source_ip.clone())
        .bind(new.meta.user_agent.clone())
        .bind(new.mfa.then_some(now))
        .execute(tx.conn())
        .await?;
        insert_refresh_token(
            &mut tx,
            &new.refresh_token_hash,
            &session_id,
            now,
            new.expires_at,
        )
        .await?;
        audit.target_id = Some(session_id.clone());
        tx.audit(&user.tenant_id, &audit).await?;
        tx.commit().await?;
        Ok(SessionStarted { scope, session_id })
    }

    /// Uses the refresh token whose digest is `presented`, issuing `next` in its place.
    pub async fn rotate_refresh_token(
        &self,
        presented: &str,
        next: &str,
        next_expires_at: i64,
        meta: &RequestMeta,
    ) -> Result<Rotation, StoreError> {
        let now = now_ms();
        let mut tx = self.system_write().await?;
        let row = sqlx::query(
            "SELECT rt.session_id, rt.tenant_id, rt.expires_at, rt.used_at, s.user_id, \
             s.revoked_at, s.expires_at AS session_expires_at \
             FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id \
             WHERE rt.token_hash = $1",
        )
        .bind(presented)
        .fetch_optional(tx.conn())
        .await?;
        let Some(row) = row else {
            return Ok(Rotation::Rejected);
        };
        let session_id: String = row.try_get("session_id")?;
        let tenant_id: String = row.try_get("tenant_id")?;
        let user_id: String = row.try_get("user_id")?;
        let used_at: Option<i64> = row.try_get("used_at")?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        let expires_at: i64 = row.try_get("expires_at")?;

        let reuse = |tx| {
            revoke_for_reuse(
                tx,
                session_id.clone(),
                tenant_id.clone(),
                user_id.clone(),
                meta,
            )
        };
        if used_at.is_some() {
            return reuse(tx).await;
        }
        if revoked_at.is_some() || expires_at <= now {
            return Ok(Rotation::Rejected);
        }
        // The conditional update is the arbiter between two concurrent uses of one token:
        // exactly one sees a row change; the other is treated as reuse.
        let claimed = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(presented)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if claimed != 1 {
            return reuse(tx).await;
        }
        let user_row = sqlx::query(&format!(
            "SELECT {} FROM users u WHERE u.id = $1 AND u.tenant_id = $2",
            users::COLUMNS
        ))
        .bind(&user_id)
        .bind(&tenant_id)
        .fetch_optional(tx.conn())
        .await?;
        let user = match user_row {
            Some(r) => users::from_row(&r)?,
            None => return Ok(Rotation::Rejected),
        };
        if !user.is_active() {
            return Ok(Rotation::Rejected);
        }
        insert_refresh_token(&mut tx, next, &session_id, now, next_expires_at).await?;
        sqlx::query("UPDATE sessions SET expires_at = $1 WHERE id = $2")
            .bind(next_expires_at)
            .bind(&session_id)
            .execute(tx.conn())
            .await?;
        let event = NewAuditEvent {
            actor: crate::Actor::User(user_id.clone()),
            action: "session.refresh".into(),
            target_type: "session".into(),
            target_id: Some(session_id.clone()),
            outcome: "success".into(),
            meta: meta.clone(),
            changes: serde_json::json!({}),
        };
        tx.audit(&tenant_id, &event).await?;
        tx.commit().await?;
        Ok(Rotation::Rotated {
            scope: TenantScope::mint(tenant_id),
            user,
            session_id,
        })
    }

    /// The live session named by a verified access token, and its user. `None` when the
    /// session has ended, the user is disabled, or the ids do not belong together. This is
    /// where a request's tenant scope comes from.
    pub async fn authenticate_session(
        &self,
        tenant_id: &str,
        session_id: &str,
        user_id: &str,
    ) -> Result<Option<(TenantScope, User, bool)>, StoreError> {
        let scope = TenantScope::mint(tenant_id.to_string());
        let mut tx = self.tenant_read(&scope).await?;
        let row = sqlx::query(&format!(
            "SELECT {}, s.mfa_at FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id = $1 AND s.tenant_id = $2 AND s.user_id = $3 AND u.tenant_id = $2 \
             AND s.revoked_at IS NULL AND s.expires_at > $4",
            users::COLUMNS
        ))
        .bind(session_id)
        .bind(tenant_id)
        .bind(user_id)
        .bind(now_ms())
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        match row {
            Some(r) => {
                let user = users::from_row(&r)?;
                let mfa = r.try_get::<Option<i64>, _>("mfa_at")?.is_some();
                Ok(user.is_active().then_some((scope, user, mfa)))
            }
            None => Ok(None),
        }
    }

    /// Ends a session at once (logout). Returns false if it had already ended.
    pub async fn end_session(
        &self,
        scope: &TenantScope,
        session_id: &str,
        reason: &str,
        mut audit: NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.tenant_write(scope).await?;
        let ended = sqlx::query(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
             WHERE id = $3 AND tenant_id = $4 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(reason)
        .bind(session_id)
        .bind(tx.tenant_id().to_string())
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        if ended {
            audit.target_id = Some(session_id.to_string());
            tx.audit(scope.tenant_id(), &audit).await?;
        }
        tx.commit().await?;
        Ok(ended)
    }
}

async fn insert_refresh_token<S>(
    tx: &mut crate::Tx<S>,
    hash: &str,
    session_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), StoreError> {
    // The tenant column comes from the session row, so a token can never be filed under
    // another tenant than its session.
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, tenant_id, created_at, expires_at) \
         SELECT $1, id, tenant_id, $2, $3 FROM sessions WHERE id = $4",
    )
    .bind(hash)
    .bind(now)
    .bind(expires_at)
    .bind(session_id)
    .execute(tx.conn())
    .await?;
    Ok(())
}

async fn revoke_for_reuse(
    mut tx: crate::Tx<crate::tx::System>,
    session_id: String,
    tenant_id: String,
    user_id: String,
    meta: &RequestMeta,
) -> Result<Rotation, StoreError> {
    sqlx::query(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = 'refresh_token_reuse' \
         WHERE id = $2 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(&session_id)
    .execute(tx.conn())
    .await?;
    let event = NewAuditEvent {
        actor: crate::Actor::Anonymous,
        action: "session.refresh_token_reused".into(),
        target_type: "session".into(),
        target_id: Some(session_id.clone()),
        outcome: "revoked".into(),
        meta: meta.clone(),
        changes: serde_json::json!({ "user_id": user_id }),
    };
    tx.audit(&tenant_id, &event).await?;
    tx.commit().await?;
    Ok(Rotation::Reused {
        session_id,
        user_id,
    })
}
