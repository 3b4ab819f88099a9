//! Multi-factor authentication state: TOTP factors, recovery codes, login challenges.
//!
//! Single use is decided in the database: a TOTP step is accepted only if it is later
//! than the last accepted one, and a recovery code or challenge only if it is unused,
//! each by one conditional UPDATE, so two requests racing with the same code cannot both
//! win.

use sqlx::Row;

use crate::{now_ms, users, LoginCandidate, NewAuditEvent, Store, StoreError, TenantScope, User};

#[derive(Clone)]
pub struct MfaFactor {
    pub user_id: String,
    pub tenant_id: String,
    pub sealed_secret: Vec<u8>,
    pub confirmed: bool,
    pub last_step: i64,
}

impl std::fmt::Debug for MfaFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaFactor")
            .field("user_id", &self.user_id)
            .field("confirmed", &self.confirmed)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct MfaChallenge {
    pub user_id: String,
    pub tenant_id: String,
    pub expires_at: i64,
    pub used: bool,
    pub attempts: i64,
}

impl Store {
    /// The user's factor, confirmed or not.
    pub async fn mfa_factor(&self, user: &User) -> Result<Option<MfaFactor>, StoreError> {
        let scope = TenantScope::mint(user.tenant_id.clone());
        let mut tx = self.tenant_read(&scope).await?;
        let row = sqlx::query(
            "SELECT user_id, tenant_id, sealed_secret, confirmed_at, last_step FROM mfa_factors \
             WHERE user_id = $1 AND tenant_id = $2",
        )
        .bind(&user.id)
        .bind(&user.tenant_id)
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        row.map(|r| {
            Ok(MfaFactor {
                user_id: r.try_get("user_id")?,
                tenant_id: r.try_get("tenant_id")?,
                sealed_secret: r.try_get("sealed_secret")?,
                confirmed: r.try_get::<Option<i64>, _>("confirmed_at")?.is_some(),
                last_step: r.try_get("last_step")?,
            })
        })
        .transpose()
    }

    /// Stores a new, unconfirmed factor, replacing an unconfirmed one. `Conflict` if the
    /// user already has a confirmed factor.
    pub async fn save_unconfirmed_factor(
        &self,
        user: &User,
        sealed_secret: Vec<u8>,
        mut audit: NewAuditEvent,
    ) -> Result<(), StoreError> {
        let scope = TenantScope::mint(user.tenant_id.clone());
        let mut tx = self.tenant_write(&scope).await?;
        sqlx::query("DELETE FROM mfa_factors WHERE user_id = $1 AND tenant_id = $2 AND confirmed_at IS NULL")
            .bind(&user.id)
            .bind(&user.tenant_id)
            .execute(tx.conn())
            .await?;
        sqlx::query(
            "INSERT INTO mfa_factors (user_id, tenant_id, sealed_secret, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&user.id)
        .bind(&user.tenant_id)
        .bind(sealed_secret)
        .bind(now_ms())
        .execute(tx.conn())
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict { .. } => StoreError::Conflict {
                constraint: "mfa_factors_pkey".into(),
            },
            other => other,
        })?;
        audit.target_id = Some(user.id.clone());
        tx.audit(&user.tenant_id, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Confirms the user's factor with the step of a first valid code, stores the
    /// recovery codes' digests, and marks `session_id` as having passed MFA.
    pub async fn confirm_factor(
        &self,
        user: &User,
        step: i64,
        recovery_code_hashes: &[String],
        session_id: &str,
        notices: &[crate::notify::NewNotification],
        mut audit: NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let scope = TenantScope::mint(user.tenant_id.clone());
        let mut tx = self.tenant_write(&scope).await?;
        let now = now_ms();
        let confirmed = sqlx::query(
            "UPDATE mfa_factors SET confirmed_at = $1, last_step = $2 \
             WHERE user_id = $3 AND tenant_id = $4 AND confirmed_at IS NULL AND last_step < $2",
        )
        .bind(now)
        .bind(step)
        .bind(&user.id)
        .bind(&user.tenant_id)
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        if !confirmed {
            return Ok(false);
        }
        sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1 AND tenant_id = $2")
            .bind(&user.id)
            .bind(&user.tenant_id)
            .execute(tx.conn())
            .await?;
        for hash in recovery_code_hashes {
            sqlx::query("INSERT INTO mfa_recovery_codes (code_hash, user_id, tenant_id) VALUES ($1, $2, $3)")
                .bind(hash)
                .bind(&user.id)
                .bind(&user.tenant_id)
                .execute(tx.conn())
                .await?;
        }
        mark_session_mfa(&mut tx, session_id, &user.tenant_id, now).await?;
        for n in notices {
            crate::notify::insert(tx.conn(), n).await?;
        }
        audit.target_id = Some(user.id.clone());
        tx.audit(&user.tenant_id, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Accepts a TOTP code's step for a confirmed factor if it is later than the last one.
    pub async fn accept_totp_step(&self, user: &User, step: i64) -> Result<bool, StoreError> {
        let scope = TenantScope::mint(user.tenant_id.clone());
        let mut tx = self.tenant_write(&scope).await?;
        let accepted = sqlx::query(
            "UPDATE mfa_factors SET last_step = $1 WHERE user_id = $2 AND tenant_id = $3 \
             AND confirmed_at IS NOT NULL AND last_step < $1",
        )
        .bind(step)
        .bind(&user.id)
        .bind(&user.tenant_id)
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(accepted)
    }

    /// Uses one recovery code (by digest), once.
    pub async fn use_recovery_code(
        &self,
        user: &User,
        code_hash: &str,
        mut audit: NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let scope = TenantScope::mint(user.tenant_id.clone());
        let mut tx = self.tenant_write(&scope).await?;
        let used = sqlx::query(
            "UPDATE mfa_recovery_codes SET used_at = $1 WHERE code_hash = $2 AND user_id = $3 \
             AND tenant_id = $4 AND used_at IS NULL",
        )
        .bind(now_ms())
        .bind(code_hash)
        .bind(&user.id)
        .bind(&user.tenant_id)
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        if used {
            audit.target_id = Some(user.id.clone());
            tx.audit(&user.tenant_id, &audit).await?;
        }
        tx.commit().await?;
        Ok(used)
    }

    /// Removes the user's factor and recovery codes, with the audit event.
    pub async fn disable_factor(
        &self,
        user: &User,
        notices: &[crate::notify::NewNotification],
        mut audit: NewAuditEvent,
    ) -> Result<(), StoreError> {
        let scope = TenantScope::mint(user.tenant_id.clone());
        let mut tx = self.tenant_write(&scope).await?;
        for table in ["mfa_recovery_codes", "mfa_factors"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE user_id = $1 AND tenant_id = $2"
            ))
            .bind(&user.id)
            .bind(&user.tenant_id)
            .execute(tx.conn())
            .await?;
        }
        for n in notices {
            crate::notify::insert(tx.conn(), n).await?;
        }
        audit.target_id = Some(user.id.clone());
        tx.audit(&user.tenant_id, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn create_mfa_challenge(
        &self,
        user: &User,
        token_hash: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let scope = TenantScope::mint(user.tenant_id.clone());
        let mut tx = self.tenant_write(&scope).await?;
        sqlx::query(
            "INSERT INTO mfa_challenges (token_hash, user_id, tenant_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(&user.id)
        .bind(&user.tenant_id)
        .bind(now_ms())
        .bind(expires_at)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The challenge behind an `mfa_token`, with its user (for the code check).
    pub async fn mfa_challenge(
        &self,
        token_hash: &str,
    ) -> Result<Option<(MfaChallenge, User)>, StoreError> {
        let mut tx = self.system_read().await?;
        let row = sqlx::query(&format!(
            "SELECT c.expires_at, c.used_at, c.attempts, {} FROM mfa_challenges c \
             JOIN users u ON u.id = c.user_id AND u.tenant_id = c.tenant_id WHERE c.token_hash = $1",
            users::COLUMNS
        ))
        .bind(token_hash)
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        let Some(r) = row else { return Ok(None) };
        let user = users::from_row(&r)?;
        Ok(Some((
            MfaChallenge {
                user_id: user.id.clone(),
                tenant_id: user.tenant_id.clone(),
                expires_at: r.try_get("expires_at")?,
                used: r.try_get::<Option<i64>, _>("used_at")?.is_some(),
                attempts: r.try_get("attempts")?,
            },
            user,
        )))
    }

    pub async fn fail_mfa_challenge(&self, token_hash: &str) -> Result<(), StoreError> {
        let mut tx = self.system_write().await?;
        sqlx::query("UPDATE mfa_challenges SET attempts = attempts + 1 WHERE token_hash = $1")
            .bind(token_hash)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks the challenge used (once) and returns its user as a login candidate, for
    /// `start_session` with MFA passed.
    pub async fn complete_mfa_challenge(
        &self,
        token_hash: &str,
    ) -> Result<Option<LoginCandidate>, StoreError> {
        let mut tx = self.system_write().await?;
        let claimed = sqlx::query(
            "UPDATE mfa_challenges SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now_ms())
        .bind(token_hash)
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT {}, u.password_hash FROM mfa_challenges c JOIN users u ON u.id = c.user_id \
             WHERE c.token_hash = $1",
            users::COLUMNS
        ))
        .bind(token_hash)
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        row.map(|r| {
            Ok(LoginCandidate {
                user: users::from_row(&r)?,
                password_hash: r.try_get("password_hash")?,
            })
        })
        .transpose()
    }
}

async fn mark_session_mfa<S>(
    tx: &mut crate::Tx<S>,
    session_id: &str,
    tenant_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE sessions SET mfa_at = $1 WHERE id = $2 AND tenant_id = $3")
        .bind(now)
        .bind(session_id)
        .bind(tenant_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}
