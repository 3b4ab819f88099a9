//! Users. E-mail addresses are unique across the platform, since login names no tenant.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{
    new_id, now_ms, Email, LoginCandidate, NewAuditEvent, Role, Store, StoreError, TenantScope,
    User,
};

pub(crate) const COLUMNS: &str =
    "u.id, u.tenant_id, u.email, u.name, u.role, u.status, u.created_at, u.updated_at";

pub(crate) fn from_row(row: &AnyRow) -> Result<User, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: role.parse().map_err(StoreError::Corrupt)?,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub tenant_id: String,
    pub email: Email,
    pub name: String,
    pub role: Role,
    /// A PHC string (Argon2id) or an imported bcrypt hash.
    pub password_hash: String,
}

impl Store {
    /// Creates a user in `new.tenant_id` and records `audit` there, in one transaction.
    /// A taken e-mail is `Conflict { constraint: "users_email" }`; an unknown tenant is
    /// `Constraint`.
    pub async fn create_user(
        &self,
        new: NewUser,
        mut audit: NewAuditEvent,
    ) -> Result<User, StoreError> {
        let now = now_ms();
        let user = User {
            id: new_id(),
            tenant_id: new.tenant_id,
            email: new.email.as_str().to_string(),
            name: new.name,
            role: new.role,
            status: "active".into(),
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.system_write().await?;
        // The column's default locale: the user picks theirs later.
        insert_user_row(tx.conn(), &user, &new.password_hash, "en").await?;
        audit.target_id = Some(user.id.clone());
        tx.audit(&user.tenant_id, &audit).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// The user a login attempt names, with the stored hash.
    pub async fn find_login_candidate(
        &self,
        email: &Email,
    ) -> Result<Option<LoginCandidate>, StoreError> {
        let mut tx = self.system_read().await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, u.password_hash FROM users u WHERE u.email = $1"
        ))
        .bind(email.as_str())
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        row.map(|r| {
            Ok(LoginCandidate {
                user: from_row(&r)?,
                password_hash: r.try_get("password_hash")?,
            })
        })
        .transpose()
    }

    pub async fn get_user(&self, scope: &TenantScope, id: &str) -> Result<User, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM users u WHERE u.tenant_id = $1 AND u.id = $2"
        ))
        .bind(tx.tenant_id().to_string())
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        from_row(&row.ok_or(StoreError::NotFound)?)
    }

    /// The users of the scope's tenant in id order, `limit` at most, after the cursor
    /// `after`; invited users (who have not accepted yet) included, with that status.
    pub async fn list_users(
        &self,
        scope: &TenantScope,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<User>, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM users u WHERE u.tenant_id = $1 AND u.id > $2 \
             ORDER BY u.id LIMIT $3"
        ))
        .bind(tx.tenant_id().to_string())
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// Replaces a user's password hash (an outdated one upgraded at login), with its audit
    /// event.
    pub async fn set_password_hash(
        &self,
        user: &User,
        password_hash: &str,
        mut audit: NewAuditEvent,
    ) -> Result<(), StoreError> {
        let scope = TenantScope::mint(user.tenant_id.clone());
        let mut tx = self.tenant_write(&scope).await?;
        sqlx::query(
            "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3 AND tenant_id = $4",
        )
        .bind(password_hash)
        .bind(now_ms())
        .bind(&user.id)
        .bind(&user.tenant_id)
        .execute(tx.conn())
        .await?;
        audit.target_id = Some(user.id.clone());
        tx.audit(&user.tenant_id, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// How many users hold `role` across all tenants (e.g. "is there a platform admin").
    pub async fn count_users_with_role(&self, role: Role) -> Result<i64, StoreError> {
        let mut tx = self.system_read().await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = $1")
            .bind(role.as_str())
            .fetch_one(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(n)
    }
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub role: Option<Role>,
    /// `active` or `disabled`.
    pub status: Option<String>,
}

impl Store {
    /// A platform admin's scope in another tenant. The admin's role is read again from the
    /// database here rather than trusted from the caller, so a scope cannot be made for
    /// a user who is not (or no longer) a platform admin.
    pub async fn scope_for_platform_admin(
        &self,
        admin_user_id: &str,
        tenant_id: &str,
    ) -> Result<TenantScope, StoreError> {
        let mut tx = self.system_read().await?;
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM users WHERE id = $1 AND status = 'active'")
                .bind(admin_user_id)
                .fetch_optional(tx.conn())
                .await?;
        let tenant: Option<String> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
            .bind(tenant_id)
            .fetch_optional(tx.conn())
            .await?;
        tx.commit().await?;
        match (role.as_deref(), tenant) {
            (Some("platform_admin"), Some(t)) => Ok(TenantScope::mint(t)),
            _ => Err(StoreError::NotFound),
        }
    }

    /// Applies `patch` to a user of the scope's tenant, with its audit event. Returns the
    /// user as it was and as it is now.
    pub async fn update_user(
        &self,
        scope: &TenantScope,
        user_id: &str,
        patch: &UserPatch,
        mut audit: NewAuditEvent,
    ) -> Result<(User, User), StoreError> {
        let mut tx = self.tenant_write(scope).await?;
        let row = sqlx::query(&format!(
            // An invited user is not one until they accept (`account::invite_user`): an
            // admin cannot tell them from an invitation sent to another tenant's address.
            "SELECT {COLUMNS} FROM users u \
             WHERE u.tenant_id = $1 AND u.id = $2 AND u.status <> 'invited'"
        ))
        .bind(tx.tenant_id().to_string())
        .bind(user_id)
        .fetch_optional(tx.conn())
        .await?;
        let before = from_row(&row.ok_or(StoreError::NotFound)?)?;
        let mut after = before.clone();
        if let Some(role) = patch.role {
            after.role = role;
        }
        if let Some(status) = &patch.status {
            after.status = status.clone();
        }
        after.updated_at = now_ms();
        sqlx::query(
            "UPDATE users SET role = $1, status = $2, updated_at = $3 WHERE id = $4 AND tenant_id = $5",
        )
        .bind(after.role.as_str())
        .bind(&after.status)
        .bind(after.updated_at)
        .bind(user_id)
        .bind(tx.tenant_id().to_string())
        .execute(tx.conn())
        .await?;
        audit.target_id = Some(user_id.to_string());
        audit.changes = serde_json::json!({
            "role": { "from": before.role.as_str(), "to": after.role.as_str() },
            "status": { "from": before.status, "to": after.status },
        });
        tx.audit(scope.tenant_id(), &audit).await?;
        tx.commit().await?;
        Ok((before, after))
    }
}

impl Store {
    /// The caller's sealed phone number, if set.
    pub async fn user_phone(
        &self,
        scope: &TenantScope,
        user_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let row = sqlx::query("SELECT sealed_phone FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tx.tenant_id().to_string())
            .bind(user_id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(row.try_get("sealed_phone")?)
    }

    /// Sets (or with `None`, clears) a user's sealed phone number, audited.
    pub async fn set_user_phone(
        &self,
        scope: &TenantScope,
        user_id: &str,
        sealed: Option<Vec<u8>>,
        mut audit: NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_write(scope).await?;
        let changed = sqlx::query(
            "UPDATE users SET sealed_phone = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4",
        )
        .bind(sealed)
        .bind(now_ms())
        .bind(tx.tenant_id().to_string())
        .bind(user_id)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        audit.target_id = Some(user_id.to_string());
        tx.audit(scope.tenant_id(), &audit).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The `users` row of a new user (created by an admin, or signed up), with its audit event
/// left to the caller's transaction.
pub(crate) async fn insert_user_row(
    conn: &mut sqlx::AnyConnection,
    user: &User,
    password_hash: &str,
    locale: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO users (id, tenant_id, email, name, role, status, password_hash, \
         created_at, updated_at, locale) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
    )
    .bind(&user.id)
    .bind(&user.tenant_id)
    .bind(&user.email)
    .bind(&user.name)
    .bind(user.role.as_str())
    .bind(&user.status)
    .bind(password_hash)
    .bind(user.created_at)
    .bind(locale)
    .execute(conn)
    .await?;
    Ok(())
}
