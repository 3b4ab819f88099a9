//! Rows and the parsed values stored in them. Constructors parse; a value of these types
//! is valid by construction (`Email` is normalised, `TenantKind` is one of the known kinds).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The tenant platform admins belong to. Created by the first migration.
pub const PLATFORM_TENANT_ID: &str = "00000000-0000-0000-0000-000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantKind {
    Government,
    Lpk,
    Employer,
    Merchant,
    Organization,
    Community,
    /// The platform's own tenant; never created through the API.
    Platform,
}

impl TenantKind {
    /// The kinds an operator may create.
    pub const CREATABLE: &'static [TenantKind] = &[
        TenantKind::Government,
        TenantKind::Lpk,
        TenantKind::Employer,
        TenantKind::Merchant,
        TenantKind::Organization,
        TenantKind::Community,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TenantKind::Government => "government",
            TenantKind::Lpk => "lpk",
            TenantKind::Employer => "employer",
            TenantKind::Merchant => "merchant",
            TenantKind::Organization => "organization",
            TenantKind::Community => "community",
            TenantKind::Platform => "platform",
        }
    }
}

impl FromStr for TenantKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "government" => TenantKind::Government,
            "lpk" => TenantKind::Lpk,
            "employer" => TenantKind::Employer,
            "merchant" => TenantKind::Merchant,
            "organization" => TenantKind::Organization,
            "community" => TenantKind::Community,
            "platform" => TenantKind::Platform,
            other => return Err(format!("unknown tenant kind {other:?}")),
        })
    }
}

impl fmt::Display for TenantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Built-in roles. The Access-control issue maps them to permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    PlatformAdmin,
    TenantAdmin,
    Member,
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform_admin",
            Role::TenantAdmin => "tenant_admin",
            Role::Member => "member",
            Role::Auditor => "auditor",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "platform_admin" => Role::PlatformAdmin,
            "tenant_admin" => Role::TenantAdmin,
            "member" => Role::Member,
            "auditor" => Role::Auditor,
            other => return Err(format!("unknown role {other:?}")),
        })
    }
}

/// An e-mail address, trimmed and lower-cased: the form it is stored and looked up in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// A pragmatic check (one `@`, a dot in the domain, no spaces or control characters,
    /// at most 254 bytes): deliverability is proven by sending mail, not by a regex.
    ///
    /// The address is NFKC-normalised and lowercased first, so a fullwidth or otherwise
    /// compatible spelling of an address is that address, not a new account. Refused, as
    /// lookalikes of another address (UTS #39): invisible and direction-changing characters
    /// (zero-width spaces, bidi controls), a local part or domain that mixes scripts
    /// (`аdmin` with a Cyrillic `а`), and a non-Latin part whose confusable skeleton is
    /// plain ASCII (an all-Cyrillic `аdmіn`). Addresses wholly in one script (`иван@почта.рф`)
    /// stay welcome.
    pub fn parse(raw: &str) -> Result<Email, String> {
        use unicode_normalization::UnicodeNormalization;
        let email: String = raw.trim().nfkc().collect::<String>().to_lowercase();
        if email.chars().any(invisible) {
            return Err("contains invisible or direction-changing characters".into());
        }
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && match email.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && local.len() <= 64
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                }
                None => false,
            };
        if !valid {
            return Err("is not a valid e-mail address".into());
        }
        let (local, domain) = email.split_once('@').unwrap_or_default();
        for part in std::iter::once(local).chain(domain.split('.')) {
            if lookalike(part) {
                return Err(
                    "mixes scripts or imitates a Latin address; write it in one script".into(),
                );
            }
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Format characters that render as nothing or reorder text (Unicode category Cf).
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// UTS #39: a part that mixes scripts, or one not in ASCII whose confusable skeleton is.
fn lookalike(part: &str) -> bool {
    use unicode_security::MixedScript;
    if part.is_ascii() {
        return false;
    }
    !part.is_single_script() || unicode_security::skeleton(part).all(|c| c.is_ascii())
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub kind: TenantKind,
    pub status: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl User {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// A user found by e-mail for a login attempt, with the stored password hash. Only the
/// store builds one; [`crate::Store::start_session`] takes it after the caller has
/// verified the password.
#[derive(Clone)]
pub struct LoginCandidate {
    pub user: User,
    pub password_hash: String,
}

impl fmt::Debug for LoginCandidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginCandidate")
            .field("user", &self.user.id)
            .finish_non_exhaustive()
    }
}

/// Who did something, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Actor {
    User(String),
    ApiKey(String),
    /// An operator at the command line, or Rampart itself.
    System,
    /// Not yet authenticated (a failed login names no user).
    Anonymous,
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::ApiKey(_) => "api_key",
            Actor::System => "system",
            Actor::Anonymous => "anonymous",
        }
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            Actor::User(id) | Actor::ApiKey(id) => Some(id),
            Actor::System | Actor::Anonymous => None,
        }
    }
}

/// Where a request came from, carried into audit events.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// An audit event to append, in the same transaction as the change it records.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub actor: Actor,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub outcome: String,
    pub meta: RequestMeta,
    /// Changed fields, secrets already redacted by the caller (the audit crate's builder).
    pub changes: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct StoredSigningKey {
    pub kid: String,
    pub purpose: String,
    pub scope: String,
    pub alg: String,
    /// Empty when a PKCS#11 token holds the private key.
    pub sealed_private_key: Vec<u8>,
    pub token_label: Option<String>,
    pub public_jwk: Option<String>,
    pub created_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookalike_addresses_are_that_address_or_refused() {
        // Compatible spellings are the same address.
        assert_eq!(
            Email::parse("ａｄｍｉｎ@ｅｘａｍｐｌｅ.ｃｏｍ")
                .unwrap()
                .as_str(),
            "admin@example.com"
        );
        assert_eq!(
            Email::parse(" Admin@Example.COM ").unwrap().as_str(),
            "admin@example.com"
        );
        // Lookalikes are refused: a Cyrillic letter in a Latin name, an all-Cyrillic
        // imitation, invisible and bidi characters.
        for bad in [
            "\u{0430}dmin@example.com",
            "\u{0430}\u{0440}\u{0440}\u{04cf}\u{0435}@example.com",
            "admin@ex\u{0430}mple.com",
            "ad\u{200b}min@example.com",
            "admin\u{202e}@example.com",
            "\u{feff}admin@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        // One script, whatever it is, is fine; so are accents.
        for good in [
            "иван@почта.рф",
            "josé@example.id",
            "siti.nurhaliza@example.id",
        ] {
            assert!(Email::parse(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ana@Example.ID ").unwrap().as_str(),
            "ana@example.id"
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.id",
            "a b@example.id",
            "ana@example",
            "a@b@c.id",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kinds_round_trip() {
        for kind in TenantKind::CREATABLE {
            assert_eq!(kind.as_str().parse::<TenantKind>().unwrap(), *kind);
        }
        assert!("bank".parse::<TenantKind>().is_err());
    }
}
