//! Identity: who is calling and for which tenant.
//!
//! Owns passwords, login and its brute-force throttle, access tokens (ES256 JWT) and
//! rotating refresh tokens, the JWKS, and the tenant and user endpoints. The
//! [`Principal`] extractor is how every other handler learns who called: it verifies the
//! token, then asks the store whether the session is still live, which is also where the
//! request's [`rampart_store::TenantScope`] comes from.
//!
//! Must not: build SQL (the store does), or hold raw key material (the crypto crate does).
#![forbid(unsafe_code)]

pub mod account;
pub mod api_keys;
mod audit_api;
mod auth;
mod error;
pub mod hash_gate;
mod jwks;
mod metrics;
pub mod notify_api;
pub mod password;
mod principal;
pub mod rbac;
mod state;
pub mod tenants;
pub mod throttle;
pub mod totp;
pub mod users;
pub mod webhooks_api;

pub use auth::request_meta;
pub use error::IdentityError;
pub use principal::{Caller, ConsoleCaller, Principal, API_KEY_PREFIX};
pub use state::{CallerLimits, Identity};
pub use throttle::LoginThrottle;

use utoipa_axum::router::OpenApiRouter;

/// Every identity route, with its OpenAPI description.
pub fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(tenants::router())
        .merge(jwks::router())
        .merge(api_keys::router())
        .merge(audit_api::router())
        .merge(notify_api::router())
        .merge(webhooks_api::router())
}

/// A page size from a query parameter: `default` when absent, refused outside 1..=`max`.
/// A cursor or id made of 1 to 18 ASCII digits (no sign, no spaces), as the OpenAPI
/// document's `^[0-9]{1,18}$` says: `str::parse` alone would also take `+5` and `-5`.
pub fn digits_i64(s: &str) -> Option<i64> {
    if (1..=18).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// The `limit` of a list: `default` when absent, else 1 to `max`.
pub fn page_limit(value: Option<i64>, default: i64, max: i64) -> Result<i64, IdentityError> {
    let limit = value.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(IdentityError::Invalid {
            field: "limit",
            reason: format!("must be between 1 and {max}"),
        })
    }
}

/// A list cursor `<created_at ms>.<id>` (the last row of the previous page), as lists
/// ordered by creation time and id hand out: thirteen digits starting with 1 (every
/// millisecond time from 2001 to 2286), a dot, and an id (1 to 64 of `A-Za-z0-9_-`: a
/// UUID, `txn_…`, `alr_…`). Nothing else parses, so the documented pattern is exact, and
/// the time can never read as a card number, which the edge refuses in any URL (no card
/// number starts with 1).
pub fn parse_time_id_cursor(cursor: &str) -> Option<(i64, String)> {
    let (at, id) = cursor.split_once('.')?;
    let id_ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if at.len() != 13 || !at.starts_with('1') || !id_ok {
        return None;
    }
    Some((digits_i64(at)?, id.to_string()))
}

/// A time query parameter (`from`, `to`) in milliseconds: a 422 naming the field when
/// it is not RFC 3339.
pub fn time_param(field: &'static str, value: Option<&str>) -> Result<Option<i64>, IdentityError> {
    value
        .map(|v| {
            time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .map_err(|_| IdentityError::Invalid {
                    field,
                    reason: "must be an RFC 3339 time, e.g. 2026-11-23T00:00:00Z".into(),
                })
        })
        .transpose()
}

/// A `cursor` query parameter of a list ordered by creation time and id: a 422 naming
/// the field when it is not one.
pub fn parse_cursor_param(cursor: Option<&str>) -> Result<Option<(i64, String)>, IdentityError> {
    cursor
        .map(|c| {
            parse_time_id_cursor(c).ok_or_else(|| IdentityError::Invalid {
                field: "cursor",
                reason: "is not a cursor from this API".into(),
            })
        })
        .transpose()
}

/// The cursor [`parse_time_id_cursor`] reads.
pub fn time_id_cursor(created_at: i64, id: &str) -> String {
    format!("{created_at}.{id}")
}

/// RFC 3339 in UTC, how times leave the API.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn cursors_parse_only_in_the_shape_lists_hand_out() {
        let id = "0190a4c1-7b2e-7c3d-9e1f-0123456789ab";
        let c = super::time_id_cursor(1_733_150_000_000, &format!("txn_{id}"));
        assert_eq!(
            super::parse_time_id_cursor(&c),
            Some((1_733_150_000_000, format!("txn_{id}")))
        );
        assert!(super::parse_time_id_cursor(&format!("1733150000000.{id}")).is_some());
        assert!(super::parse_time_id_cursor("1733150000000.txn_AbC-d_0123456789xyzAB").is_some());
        for bad in [
            format!("5172706097229.{id}"), // not a time of ours, and Luhn-valid
            format!("173315000000.{id}"),
            format!("1733150000000.txn {id}"),
            format!("1733150000000.{id}.{id}"),
            format!("1733150000000.{}", "a".repeat(65)),
            "1733150000000".to_string(),
            "1733150000000.".to_string(),
        ] {
            assert_eq!(super::parse_time_id_cursor(&bad), None, "{bad}");
        }
    }
}
