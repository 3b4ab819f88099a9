//! Roles and permissions.
//!
//! A permission is `resource:action` (`users:write`, `audit:read`). Each built-in role maps
//! to a set of them; apps add their own permissions and grants through [`RbacBuilder`]
//! when the application is assembled (the one registration point). API-key scopes are
//! permissions too, so a key can never do what its scopes do not name.
//!
//! Permissions are checked twice: at the route (`Principal::require`) and on the resource
//! (the resource's tenant must be the caller's scope, or the caller a platform admin).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rampart_store::Role;

pub const TENANTS_READ: &str = "tenants:read";
pub const TENANTS_WRITE: &str = "tenants:write";
/// List every tenant of the platform.
pub const TENANTS_LIST: &str = "tenants:list";
pub const USERS_READ: &str = "users:read";
pub const USERS_WRITE: &str = "users:write";
pub const AUDIT_READ: &str = "audit:read";
pub const API_KEYS_READ: &str = "api_keys:read";
pub const API_KEYS_WRITE: &str = "api_keys:write";
pub const SECURITY_EVENTS_READ: &str = "security_events:read";
/// The deployment's operations: keys, backups and drills, the job queue.
pub const OPS_READ: &str = "ops:read";
/// Re-queue dead jobs.
pub const OPS_WRITE: &str = "ops:write";
/// Read the alerts the detection rules raised (granted where the alerts API is
/// registered).
pub const ALERTS_READ: &str = "alerts:read";
/// Acknowledge and resolve alerts.
pub const ALERTS_WRITE: &str = "alerts:write";

/// Permissions that act across tenants: only platform admins hold them, and no API key
/// (keys belong to one tenant) may carry them.
pub const PLATFORM_ONLY: &[&str] = &[
    TENANTS_WRITE,
    TENANTS_LIST,
    SECURITY_EVENTS_READ,
    OPS_READ,
    OPS_WRITE,
];

/// Which permissions each role has. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Rbac {
    /// Each role's set is shared by every request of that role, never copied.
    grants: Arc<HashMap<Role, Arc<BTreeSet<String>>>>,
    known: Arc<BTreeSet<String>>,
}

pub struct RbacBuilder {
    grants: HashMap<Role, BTreeSet<String>>,
    known: BTreeSet<String>,
}

impl Rbac {
    /// The built-in roles, before any app adds its permissions.
    pub fn builder() -> RbacBuilder {
        let mut b = RbacBuilder {
            grants: HashMap::new(),
            known: BTreeSet::new(),
        };
        b.grant(
            Role::PlatformAdmin,
            &[
                TENANTS_READ,
                TENANTS_WRITE,
                TENANTS_LIST,
                USERS_READ,
                USERS_WRITE,
                AUDIT_READ,
                API_KEYS_READ,
                API_KEYS_WRITE,
                SECURITY_EVENTS_READ,
                OPS_READ,
                OPS_WRITE,
            ],
        );
        b.grant(
            Role::TenantAdmin,
            &[
                TENANTS_READ,
                USERS_READ,
                USERS_WRITE,
                AUDIT_READ,
                API_KEYS_READ,
                API_KEYS_WRITE,
            ],
        );
        b.grant(Role::Member, &[TENANTS_READ]);
        b.grant(
            Role::Auditor,
            &[TENANTS_READ, USERS_READ, AUDIT_READ, API_KEYS_READ],
        );
        b
    }

    pub fn role_has(&self, role: Role, permission: &str) -> bool {
        self.grants
            .get(&role)
            .is_some_and(|set| set.contains(permission))
    }

    pub fn permissions_of(&self, role: Role) -> Arc<BTreeSet<String>> {
        self.grants.get(&role).cloned().unwrap_or_default()
    }

    /// A registered permission, or one narrowed to a single resource:
    /// `transit:decrypt:payments` is known when `transit:decrypt` is.
    pub fn is_known(&self, permission: &str) -> bool {
        if self.known.contains(permission) {
            return true;
        }
        match permission.rsplit_once(':') {
            Some((base, resource)) if base.contains(':') => {
                self.known.contains(base) && is_resource_name(resource)
            }
            _ => false,
        }
    }
}

impl RbacBuilder {
    /// Grants `permissions` to `role`, registering them as known. Apps call this for the
    /// permissions they define (`payments:write` to `tenant_admin`, ...).
    pub fn grant(&mut self, role: Role, permissions: &[&str]) -> &mut Self {
        let set = self.grants.entry(role).or_default();
        for p in permissions {
            debug_assert!(is_well_formed(p), "permission {p} is not resource:action");
            set.insert((*p).to_string());
            self.known.insert((*p).to_string());
        }
        self
    }

    pub fn build(self) -> Rbac {
        Rbac {
            grants: Arc::new(
                self.grants
                    .into_iter()
                    .map(|(role, set)| (role, Arc::new(set)))
                    .collect(),
            ),
            known: Arc::new(self.known),
        }
    }
}

/// The narrowing part of `resource:action:name`: 1-32 of a-z, 0-9, `_`, `-`.
pub fn is_resource_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `resource:action`, both lowercase words with `_`.
pub fn is_well_formed(permission: &str) -> bool {
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    matches!(permission.split_once(':'), Some((r, a)) if word(r) && word(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_roles() {
        let rbac = Rbac::builder().build();
        assert!(rbac.role_has(Role::PlatformAdmin, TENANTS_WRITE));
        assert!(!rbac.role_has(Role::TenantAdmin, TENANTS_WRITE));
        assert!(rbac.role_has(Role::Auditor, AUDIT_READ));
        assert!(!rbac.role_has(Role::Auditor, USERS_WRITE));
        assert!(!rbac.role_has(Role::Member, AUDIT_READ));
    }

    #[test]
    fn apps_register_their_own() {
        let mut b = Rbac::builder();
        b.grant(Role::TenantAdmin, &["payments:write"]);
        let rbac = b.build();
        assert!(rbac.role_has(Role::TenantAdmin, "payments:write"));
        assert!(rbac.is_known("payments:write"));
        assert!(!rbac.is_known("payments:delete"));
        assert!(rbac.is_known("payments:write:acme-1"));
        assert!(!rbac.is_known("payments:write:Acme"));
        assert!(!rbac.is_known("payments:delete:acme"));
    }

    #[test]
    fn permission_shape() {
        assert!(is_well_formed("api_keys:write"));
        for bad in ["users", "Users:write", "users:", ":write", "users:write:x"] {
            assert!(!is_well_formed(bad), "{bad}");
        }
    }
}
