//! Account flows that send mail (identity's): self-service sign-up, e-mail
//! verification, password reset, e-mail change. Link tokens are stored as SHA-256 digests in
//! `account_tokens` and consumed by one `UPDATE … WHERE used_at IS NULL AND expires_at >
//! now`, so a token works once even under concurrent use. Each flow writes its mail into
//! the outbox in the same transaction (`crate::notify::insert`).
//!
//! Invitations (a tenant admin adding a user) answer the same whether the address is free
//! or has an account in another tenant: see [`Store::invite_user`].

use sqlx::Row;

use crate::notify::NewNotification;
use crate::{new_id, now_ms, users::NewUser, NewAuditEvent, Store, StoreError, TenantScope, User};

/// What a link token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
    Invitation,
    ChangeEmail,
}

impl TokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::VerifyEmail => "verify_email",
            TokenPurpose::ResetPassword => "reset_password",
            TokenPurpose::Invitation => "invitation",
            TokenPurpose::ChangeEmail => "change_email",
        }
    }
}

/// A link token to store: its digest and when it stops working.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub digest: String,
    pub expires_at: i64,
}

async fn insert_token(
    conn: &mut sqlx::AnyConnection,
    user: &User,
    purpose: TokenPurpose,
    token: &NewToken,
) -> Result<(), StoreError> {
    insert_token_for(conn, user, purpose, token, None).await
}

async fn insert_token_for(
    conn: &mut sqlx::AnyConnection,
    user: &User,
    purpose: TokenPurpose,
    token: &NewToken,
    new_email: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO account_tokens (token_hash, tenant_id, user_id, purpose, new_email, \
         created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
    )
    .bind(&token.digest)
    .bind(&user.tenant_id)
    .bind(&user.id)
    .bind(purpose.as_str())
    .bind(new_email)
    .bind(now_ms())
    .bind(token.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes a token: `Some(user id, tenant id)` the one time it is live and unused.
async fn consume_token(
    conn: &mut sqlx::AnyConnection,
    digest: &str,
    purpose: TokenPurpose,
) -> Result<Option<(String, String)>, StoreError> {
    let now = now_ms();
    let row = sqlx::query(
        "UPDATE account_tokens SET used_at = $1 WHERE token_hash = $2 AND purpose = $3 \
         AND used_at IS NULL AND expires_at > $1 RETURNING user_id, tenant_id",
    )
    .bind(now)
    .bind(digest)
    .bind(purpose.as_str())
    .fetch_optional(conn)
    .await?;
    row.map(|r| Ok((r.try_get("user_id")?, r.try_get("tenant_id")?)))
        .transpose()
}

impl Store {
    /// Whether tenant `id` takes self-service sign-ups (an unknown tenant does not).
    pub async fn tenant_allows_signup(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.system_read().await?;
        let allow: Option<i64> = sqlx::query_scalar(
            "SELECT allow_signup FROM tenants WHERE id = $1 AND status = 'active'",
        )
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(allow == Some(1))
    }

    /// Turns self-service sign-up on or off for a tenant, audited in its log.
    pub async fn set_tenant_allow_signup(
        &self,
        id: &str,
        allow: bool,
        mut audit: NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.system_write().await?;
        let n = sqlx::query(
            "UPDATE tenants SET allow_signup = $1 WHERE id = $2 AND kind <> 'platform'",
        )
        .bind(i64::from(allow))
        .bind(id)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        audit.target_id = Some(id.to_string());
        tx.audit(id, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A sign-up: the user (status `unverified`, so they cannot log in yet), their
    /// verification token and mail, and the audit event, in one transaction. Refused
    /// (`NotFound`) unless the tenant allows sign-up; a taken e-mail is `Conflict`.
    pub async fn sign_up(
        &self,
        new: NewUser,
        locale: &str,
        token: &NewToken,
        mail: impl FnOnce(&User) -> NewNotification,
        mut audit: NewAuditEvent,
    ) -> Result<User, StoreError> {
        let now = now_ms();
        let user = User {
            id: new_id(),
            tenant_id: new.tenant_id,
            email: new.email.as_str().to_string(),
            name: new.name,
            role: new.role,
            status: "unverified".into(),
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.system_write().await?;
        let allow: Option<i64> = sqlx::query_scalar(
            "SELECT allow_signup FROM tenants WHERE id = $1 AND status = 'active'",
        )
        .bind(&user.tenant_id)
        .fetch_optional(tx.conn())
        .await?;
        if allow != Some(1) {
            return Err(StoreError::NotFound);
        }
        crate::users::insert_user_row(tx.conn(), &user, &new.password_hash, locale).await?;
        insert_token(tx.conn(), &user, TokenPurpose::VerifyEmail, token).await?;
        crate::notify::insert(tx.conn(), &mail(&user)).await?;
        audit.target_id = Some(user.id.clone());
        tx.audit(&user.tenant_id, &audit).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// A tenant admin's invitation, in one transaction, with the same audit event in every
    /// case:
    /// - a free address: a user of status `invited` (no usable password: they cannot log
    ///   in), an invitation token and its mail (`invite_mail`);
    /// - an address already invited to this tenant: a new token and mail for that user;
    /// - an address with an account in another tenant: only `elsewhere_mail`, a notice to
    ///   the address; the caller cannot tell this from a free address (no cross-tenant
    ///   oracle) and the event's target is a fresh id that names nothing;
    /// - an address with an account in this tenant: `Conflict`, as the admin can see.
    ///
    /// Returns the invited user, `None` for the other tenant's address.
    pub async fn invite_user(
        &self,
        new: NewUser,
        locale: &str,
        token: &NewToken,
        invite_mail: impl FnOnce(&User) -> NewNotification,
        elsewhere_mail: NewNotification,
        mut audit: NewAuditEvent,
    ) -> Result<Option<User>, StoreError> {
        let now = now_ms();
        let mut tx = self.system_write().await?;
        let existing = sqlx::query(&format!(
            "SELECT {} FROM users u WHERE u.email = $1",
            crate::users::COLUMNS
        ))
        .bind(new.email.as_str())
        .fetch_optional(tx.conn())
        .await?
        .map(|r| crate::users::from_row(&r))
        .transpose()?;
        let tenant_id = new.tenant_id.clone();
        let invited = match existing {
            Some(user) if user.tenant_id == tenant_id && user.status == "invited" => {
                // Earlier links stop working: only the newest invitation counts.
                sqlx::query(
                    "UPDATE account_tokens SET used_at = $1 WHERE user_id = $2 \
                     AND purpose = 'invitation' AND used_at IS NULL",
                )
                .bind(now)
                .bind(&user.id)
                .execute(tx.conn())
                .await?;
                Some(user)
            }
            Some(user) if user.tenant_id == tenant_id => {
                return Err(StoreError::Conflict {
                    constraint: "users_email".into(),
                })
            }
            Some(_) => None,
            None => {
                let user = User {
                    id: new_id(),
                    tenant_id: new.tenant_id,
                    email: new.email.as_str().to_string(),
                    name: new.name,
                    role: new.role,
                    status: "invited".into(),
                    created_at: now,
                    updated_at: now,
                };
                crate::users::insert_user_row(tx.conn(), &user, &new.password_hash, locale).await?;
                Some(user)
            }
        };
        match &invited {
            Some(user) => {
                insert_token(tx.conn(), user, TokenPurpose::Invitation, token).await?;
                crate::notify::insert(tx.conn(), &invite_mail(user)).await?;
                audit.target_id = Some(user.id.clone());
            }
            None => {
                crate::notify::insert(tx.conn(), &elsewhere_mail).await?;
                audit.target_id = Some(new_id());
            }
        }
        tx.audit(&tenant_id, &audit).await?;
        tx.commit().await?;
        Ok(invited)
    }

    /// Uses an invitation token: the invited user's password is set and they become
    /// `active`. `NotFound` for a token that is unknown, expired or already used.
    pub async fn accept_invitation(
        &self,
        digest: &str,
        password_hash: &str,
        mut audit: NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.system_write().await?;
        let (user_id, tenant_id) = consume_token(tx.conn(), digest, TokenPurpose::Invitation)
            .await?
            .ok_or(StoreError::NotFound)?;
        let n = sqlx::query(
            "UPDATE users SET status = 'active', password_hash = $1, updated_at = $2 \
             WHERE id = $3 AND status = 'invited'",
        )
        .bind(password_hash)
        .bind(now_ms())
        .bind(&user_id)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        audit.target_id = Some(user_id);
        tx.audit(&tenant_id, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Uses a verification token: the user becomes `active`. `NotFound` for a token that
    /// is unknown, expired or already used.
    pub async fn verify_email(
        &self,
        digest: &str,
        mut audit: NewAuditEvent,
    ) -> Result<User, StoreError> {
        let mut tx = self.system_write().await?;
        let (user_id, tenant_id) = consume_token(tx.conn(), digest, TokenPurpose::VerifyEmail)
            .await?
            .ok_or(StoreError::NotFound)?;
        sqlx::query(
            "UPDATE users SET status = 'active', updated_at = $1 \
             WHERE id = $2 AND status = 'unverified'",
        )
        .bind(now_ms())
        .bind(&user_id)
        .execute(tx.conn())
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {} FROM users u WHERE u.id = $1",
            crate::users::COLUMNS
        ))
        .bind(&user_id)
        .fetch_one(tx.conn())
        .await?;
        let user = crate::users::from_row(&row)?;
        audit.target_id = Some(user_id);
        tx.audit(&tenant_id, &audit).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// The user an e-mail names, with their locale, for a password reset (`None`: no
    /// such user, or one who cannot log in anyway).
    pub async fn user_for_reset(
        &self,
        email: &crate::Email,
    ) -> Result<Option<(User, String)>, StoreError> {
        let mut tx = self.system_read().await?;
        let row = sqlx::query(&format!(
            "SELECT {}, u.locale FROM users u WHERE u.email = $1 AND u.status = 'active'",
            crate::users::COLUMNS
        ))
        .bind(email.as_str())
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        row.map(|r| Ok((crate::users::from_row(&r)?, r.try_get("locale")?)))
            .transpose()
    }

    /// Stores a reset token and writes its mail, in one transaction. `false` when the
    /// mail's dedupe key was already used (a repeat within the same window): nothing is
    /// written then.
    pub async fn request_password_reset(
        &self,
        user: &User,
        token: &NewToken,
        mail: &NewNotification,
        mut audit: NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let scope = TenantScope::mint(user.tenant_id.clone());
        let mut tx = self.tenant_write(&scope).await?;
        if crate::notify::insert(tx.conn(), mail).await?.is_none() {
            return Ok(false);
        }
        insert_token(tx.conn(), user, TokenPurpose::ResetPassword, token).await?;
        audit.target_id = Some(user.id.clone());
        tx.audit(&user.tenant_id, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The user a live, unused reset token belongs to, without using it (to prepare the
    /// notice the reset sends). `None` otherwise.
    pub async fn reset_token_user(&self, digest: &str) -> Result<Option<User>, StoreError> {
        self.token_user(digest, TokenPurpose::ResetPassword).await
    }

    /// The invited user a live, unused invitation token belongs to, without using it (to
    /// check the password they choose against their name and address). `None` otherwise.
    pub async fn invitation_token_user(&self, digest: &str) -> Result<Option<User>, StoreError> {
        self.token_user(digest, TokenPurpose::Invitation).await
    }

    async fn token_user(
        &self,
        digest: &str,
        purpose: TokenPurpose,
    ) -> Result<Option<User>, StoreError> {
        let mut tx = self.system_read().await?;
        let row = sqlx::query(&format!(
            "SELECT {} FROM account_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.purpose = $2 AND t.used_at IS NULL \
             AND t.expires_at > $3",
            crate::users::COLUMNS
        ))
        .bind(digest)
        .bind(purpose.as_str())
        .bind(now_ms())
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        row.map(|r| crate::users::from_row(&r)).transpose()
    }

    /// Uses a reset token: the new password hash, every session of the user ended (so
    /// every refresh token and access token stops working), the other reset tokens of
    /// the user voided, the notice, the audit event: one transaction. `NotFound` for a
    /// token that is unknown, expired or already used.
    pub async fn reset_password(
        &self,
        digest: &str,
        password_hash: &str,
        notices: &[NewNotification],
        mut audit: NewAuditEvent,
    ) -> Result<String, StoreError> {
        let now = now_ms();
        let mut tx = self.system_write().await?;
        let (user_id, tenant_id) = consume_token(tx.conn(), digest, TokenPurpose::ResetPassword)
            .await?
            .ok_or(StoreError::NotFound)?;
        sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(password_hash)
            .bind(now)
            .bind(&user_id)
            .execute(tx.conn())
            .await?;
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = 'password_reset' \
             WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(&user_id)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "UPDATE account_tokens SET used_at = $1 WHERE user_id = $2 \
             AND purpose = 'reset_password' AND used_at IS NULL",
        )
        .bind(now)
        .bind(&user_id)
        .execute(tx.conn())
        .await?;
        for notice in notices.iter().filter(|n| n.tenant_id == tenant_id) {
            crate::notify::insert(tx.conn(), notice).await?;
        }
        audit.target_id = Some(user_id.clone());
        tx.audit(&tenant_id, &audit).await?;
        tx.commit().await?;
        Ok(user_id)
    }
}

impl Store {
    /// A signed-in user's new password (checked against the old one by the caller): the
    /// hash, every other session of the user ended, the notices and the audit event, in
    /// one transaction. `keep_session` (the caller's own) stays.
    pub async fn change_password(
        &self,
        user: &User,
        password_hash: &str,
        keep_session: &str,
        notices: &[NewNotification],
        mut audit: NewAuditEvent,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let scope = crate::TenantScope::mint(user.tenant_id.clone());
        let mut tx = self.tenant_write(&scope).await?;
        sqlx::query(
            "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3 AND tenant_id = $4",
        )
        .bind(password_hash)
        .bind(now)
        .bind(&user.id)
        .bind(&user.tenant_id)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = 'password_changed' \
             WHERE user_id = $2 AND tenant_id = $3 AND id <> $4 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(&user.id)
        .bind(&user.tenant_id)
        .bind(keep_session)
        .execute(tx.conn())
        .await?;
        for notice in notices.iter().filter(|n| n.tenant_id == user.tenant_id) {
            crate::notify::insert(tx.conn(), notice).await?;
        }
        audit.target_id = Some(user.id.clone());
        tx.audit(&user.tenant_id, &audit).await?;
        tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Stores an e-mail change token (for `new_email`) with its two mails (the link to
    /// the new address, the notice to the old), in one transaction. The user's earlier
    /// unused change links stop working: only the latest request can be confirmed.
    pub async fn request_email_change(
        &self,
        user: &User,
        new_email: &crate::Email,
        token: &NewToken,
        mails: &[NewNotification],
        mut audit: NewAuditEvent,
    ) -> Result<(), StoreError> {
        let scope = TenantScope::mint(user.tenant_id.clone());
        let mut tx = self.tenant_write(&scope).await?;
        sqlx::query(
            "UPDATE account_tokens SET used_at = $1 WHERE user_id = $2 \
             AND purpose = 'change_email' AND used_at IS NULL",
        )
        .bind(now_ms())
        .bind(&user.id)
        .execute(tx.conn())
        .await?;
        insert_token_for(
            tx.conn(),
            user,
            TokenPurpose::ChangeEmail,
            token,
            Some(new_email.as_str()),
        )
        .await?;
        for mail in mails {
            crate::notify::insert(tx.conn(), mail).await?;
        }
        audit.target_id = Some(user.id.clone());
        tx.audit(&user.tenant_id, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Uses an e-mail change token: the user's address becomes the one it was made for,
    /// audited, in one transaction. `NotFound` for a token that is unknown, expired or
    /// used; `Conflict` (nothing changed, the token left as it was) when another account
    /// has the address by now.
    pub async fn confirm_email_change(
        &self,
        digest: &str,
        mut audit: NewAuditEvent,
    ) -> Result<User, StoreError> {
        let now = now_ms();
        let mut tx = self.system_write().await?;
        let row = sqlx::query(
            "UPDATE account_tokens SET used_at = $1 WHERE token_hash = $2 \
             AND purpose = 'change_email' AND used_at IS NULL AND expires_at > $1 \
             RETURNING user_id, tenant_id, new_email",
        )
        .bind(now)
        .bind(digest)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
        let user_id: String = row.try_get("user_id")?;
        let tenant_id: String = row.try_get("tenant_id")?;
        let new_email: Option<String> = row.try_get("new_email")?;
        let new_email = new_email.ok_or(StoreError::NotFound)?;
        let taken: Option<String> =
            sqlx::query_scalar("SELECT id FROM users WHERE email = $1 AND id <> $2")
                .bind(&new_email)
                .bind(&user_id)
                .fetch_optional(tx.conn())
                .await?;
        if taken.is_some() {
            // Dropped without commit: the token is not spent on an answer it cannot change.
            return Err(StoreError::Conflict {
                constraint: "users_email".into(),
            });
        }
        // The unique index still decides a race with a sign-up taking the address.
        sqlx::query("UPDATE users SET email = $1, updated_at = $2 WHERE id = $3")
            .bind(&new_email)
            .bind(now)
            .bind(&user_id)
            .execute(tx.conn())
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {} FROM users u WHERE u.id = $1",
            crate::users::COLUMNS
        ))
        .bind(&user_id)
        .fetch_one(tx.conn())
        .await?;
        let user = crate::users::from_row(&row)?;
        audit.target_id = Some(user_id);
        tx.audit(&tenant_id, &audit).await?;
        tx.commit().await?;
        Ok(user)
    }
}

impl Store {
    /// A user's notification choices: `(kind, channel, enabled)` rows they set.
    pub async fn notification_preferences(
        &self,
        scope: &TenantScope,
        user_id: &str,
    ) -> Result<Vec<(String, String, bool)>, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let rows = sqlx::query(
            "SELECT kind, channel, enabled FROM notification_preferences \
             WHERE tenant_id = $1 AND user_id = $2 ORDER BY kind, channel",
        )
        .bind(scope.tenant_id())
        .bind(user_id)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let enabled: i64 = r.try_get("enabled")?;
                Ok((r.try_get("kind")?, r.try_get("channel")?, enabled == 1))
            })
            .collect()
    }

    /// Replaces a user's notification choices, audited.
    pub async fn set_notification_preferences(
        &self,
        scope: &TenantScope,
        user_id: &str,
        choices: &[(String, String, bool)],
        mut audit: NewAuditEvent,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.tenant_write(scope).await?;
        sqlx::query("DELETE FROM notification_preferences WHERE tenant_id = $1 AND user_id = $2")
            .bind(scope.tenant_id())
            .bind(user_id)
            .execute(tx.conn())
            .await?;
        for (kind, channel, enabled) in choices {
            sqlx::query(
                "INSERT INTO notification_preferences (tenant_id, user_id, kind, channel, \
                 enabled, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(scope.tenant_id())
            .bind(user_id)
            .bind(kind)
            .bind(channel)
            .bind(i64::from(*enabled))
            .bind(now)
            .execute(tx.conn())
            .await?;
        }
        audit.target_id = Some(user_id.to_string());
        tx.audit(scope.tenant_id(), &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether a user has asked for `kind` by `channel` (`None`: no choice made).
    pub async fn notification_preference(
        &self,
        tenant_id: &str,
        user_id: &str,
        kind: &str,
        channel: &str,
    ) -> Result<Option<bool>, StoreError> {
        let mut tx = self.system_read().await?;
        let enabled: Option<i64> = sqlx::query_scalar(
            "SELECT enabled FROM notification_preferences WHERE tenant_id = $1 AND user_id = $2 \
             AND kind = $3 AND channel = $4",
        )
        .bind(tenant_id)
        .bind(user_id)
        .bind(kind)
        .bind(channel)
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(enabled.map(|e| e == 1))
    }

    /// Whether the user has a sealed phone number (for SMS notices).
    pub async fn user_has_phone(&self, tenant_id: &str, user_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .sealed_phone_for_send(tenant_id, user_id)
            .await?
            .is_some())
    }
}

impl Store {
    /// Whether `user` has logged in from `device` before: `None` if so, else
    /// `Some(first)`, `first` when they never logged in from any device.
    pub async fn login_device_seen(
        &self,
        user: &User,
        device: &str,
    ) -> Result<Option<bool>, StoreError> {
        let scope = TenantScope::mint(user.tenant_id.clone());
        let mut tx = self.tenant_read(&scope).await?;
        let known: Vec<String> = sqlx::query_scalar(
            "SELECT device FROM user_devices WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(&user.tenant_id)
        .bind(&user.id)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        Ok((!known.iter().any(|d| d == device)).then_some(known.is_empty()))
    }

    /// Records a login's new device with its notice, in one transaction; `false` when
    /// another login recorded it first (then no notice is written).
    pub async fn record_login_device(
        &self,
        user: &User,
        device: &str,
        notice: Option<&NewNotification>,
    ) -> Result<bool, StoreError> {
        let scope = TenantScope::mint(user.tenant_id.clone());
        let mut tx = self.tenant_write(&scope).await?;
        let inserted = sqlx::query(
            "INSERT INTO user_devices (tenant_id, user_id, device, first_seen) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&user.tenant_id)
        .bind(&user.id)
        .bind(device)
        .bind(now_ms())
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        if inserted {
            if let Some(n) = notice {
                crate::notify::insert(tx.conn(), n).await?;
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }
}
