//! The platform's pages. Each handler calls the API as the signed-in user and renders
//! what it answers; nothing here decides who may see what.

mod account;
mod alerts;
mod audit;
mod home;
mod keys;
mod ops;
mod tenants;
mod users;
mod webhooks;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Router;
use maud::{html, Markup};

use crate::layout::NavItem;
use crate::session::SignedIn;
use crate::{Answer, Console};

/// Every GET page of the platform (the browser tests and the console sweep walk these;
/// `{id}` stands for an object's id).
pub(crate) const PAGE_PATHS: &[&str] = &[
    "/console/",
    "/console/tenants",
    "/console/users",
    "/console/api-keys",
    "/console/audit",
    "/console/audit/chain",
    "/console/security",
    "/console/alerts",
    "/console/account",
    "/console/webhooks",
    "/console/ops/keys",
    "/console/ops/backups",
    "/console/ops/jobs",
];

pub(crate) fn platform() -> (Router<Console>, Vec<NavItem>) {
    let routes = Router::new()
        .merge(home::routes())
        .merge(tenants::routes())
        .merge(users::routes())
        .merge(keys::routes())
        .merge(audit::routes())
        .merge(account::routes())
        .merge(webhooks::routes())
        .merge(ops::routes())
        .merge(alerts::routes());
    let nav = vec![
        NavItem {
            href: "/console/",
            label: "home",
            permission: None,
        },
        NavItem {
            href: "/console/tenants",
            label: "tenants",
            permission: Some(rampart_identity::rbac::TENANTS_LIST),
        },
        NavItem {
            href: "/console/users",
            label: "users",
            permission: Some(rampart_identity::rbac::USERS_READ),
        },
        NavItem {
            href: "/console/api-keys",
            label: "api_keys",
            permission: Some(rampart_identity::rbac::API_KEYS_READ),
        },
        NavItem {
            href: "/console/audit",
            label: "audit",
            permission: Some(rampart_identity::rbac::AUDIT_READ),
        },
        NavItem {
            href: "/console/webhooks",
            label: "webhooks",
            permission: Some(rampart_identity::webhooks_api::WEBHOOKS_WRITE),
        },
        NavItem {
            href: "/console/alerts",
            label: "alerts",
            permission: Some(rampart_identity::rbac::ALERTS_READ),
        },
        NavItem {
            href: "/console/security",
            label: "security",
            permission: Some(rampart_identity::rbac::SECURITY_EVENTS_READ),
        },
        NavItem {
            href: "/console/ops/keys",
            label: "operations",
            permission: Some(rampart_identity::rbac::OPS_READ),
        },
        NavItem {
            href: "/console/account",
            label: "account",
            permission: None,
        },
    ];
    (routes, nav)
}

/// The page for an API call that failed: forbidden, not found, or unavailable, with
/// the API's message; a lapsed session goes back to sign-in.
pub fn failed(user: &SignedIn, active: &'static str, answer: &Answer) -> Response {
    if answer.signed_out() {
        return Redirect::to("/console/login?ended=1").into_response();
    }
    if answer.ok() || answer.status.is_server_error() {
        // An answer the page could not read, or the API failing: worth a look.
        tracing::warn!(
            status = answer.status.as_u16(),
            code = answer.code().unwrap_or(""),
            body = %answer.body.to_string().chars().take(300).collect::<String>(),
            page = active,
            "console page could not use the API's answer"
        );
    }
    let lang = user.lang();
    let (status, key) = match answer.status {
        StatusCode::FORBIDDEN => (StatusCode::FORBIDDEN, "forbidden"),
        StatusCode::NOT_FOUND => (StatusCode::NOT_FOUND, "not_found"),
        s if s.is_client_error() => (s, "not_found"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "not_found"),
    };
    let body = user.shell(active).page(
        lang.t(key),
        html! {
            h1 { (lang.t(key)) }
            @if let Some(m) = answer.message() { p.alert role="alert" { (m) } }
        },
    );
    (status, body).into_response()
}

/// "Next page" (and back to the first) for a cursor-paged list; `query` is the page's
/// filters as a query string without the cursor (`""` or `"?a=b"`).
pub fn pager(
    user: &SignedIn,
    path: &str,
    query: &str,
    cursor_name: &str,
    next: Option<&str>,
    paged: bool,
) -> Markup {
    let lang = user.lang();
    let join = if query.is_empty() { '?' } else { '&' };
    html! {
        nav.pager aria-label="pagination" {
            @if paged { a href=(format!("{path}{query}")) { (lang.t("first_page")) } }
            @if let Some(c) = next {
                a href=(format!("{path}{query}{join}{cursor_name}={}", crate::api::encode(c))) rel="next" { (lang.t("next_page")) }
            }
        }
    }
}

/// The items of a list typed into one field, separated by commas or spaces (scopes,
/// event types).
pub fn split_list(s: &str) -> Vec<&str> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The empty state of a list.
pub fn empty(user: &SignedIn) -> Markup {
    html! { p.empty { (user.lang().t("nothing_yet")) } }
}

/// A page answered with a status (the form again with the API's errors).
pub fn respond(status: StatusCode, page: Markup) -> Response {
    (status, page).into_response()
}

/// After a successful POST: back to a page with a notice (Post/Redirect/Get).
pub fn done(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// The status a re-rendered form answers with: the API's on a refusal.
pub fn form_status(answer: &Answer) -> StatusCode {
    if answer.status.is_client_error() {
        answer.status
    } else if answer.ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

#[cfg(test)]
mod tests {
    /// Every `t("key")` in the console's sources is in the language table.
    #[test]
    fn every_text_key_used_is_translated() {
        let sources = [
            include_str!("mod.rs"),
            include_str!("home.rs"),
            include_str!("tenants.rs"),
            include_str!("users.rs"),
            include_str!("keys.rs"),
            include_str!("audit.rs"),
            include_str!("account.rs"),
            include_str!("webhooks.rs"),
            include_str!("ops.rs"),
            include_str!("alerts.rs"),
            include_str!("../session.rs"),
            include_str!("../layout.rs"),
        ];
        for src in sources {
            for (i, _) in src.match_indices(".t(\"") {
                let rest = &src[i + 4..];
                let key = &rest[..rest.find('"').unwrap()];
                assert!(crate::i18n::known(key), "missing text key {key:?}");
            }
        }
    }
}
