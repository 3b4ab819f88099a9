//! `/console/alerts`: what the detection rules raised (open ones first by default), with
//! acknowledge and resolve. Platform admins see every tenant's and the platform's; a
//! tenant's admins and auditors their tenant's: the API decides.

use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{encode, query};
use crate::layout::{banner, csrf_field};
use crate::session::SignedIn;
use crate::{Answer, Console};

pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/console/alerts", get(list))
        .route("/console/alerts/{alert_id}/{action}", post(act))
}

#[derive(Deserialize)]
struct Filter {
    /// Open alerts unless asked otherwise: they are what needs someone.
    #[serde(default = "open")]
    status: String,
    #[serde(default)]
    level: String,
    #[serde(default)]
    cursor: String,
}

fn open() -> String {
    "open".into()
}

#[derive(Deserialize)]
struct Alert {
    id: String,
    rule_id: String,
    title: String,
    level: String,
    tenant_id: Option<String>,
    group: Value,
    techniques: Vec<String>,
    event_count: i64,
    first_event_at: String,
    last_event_at: String,
    status: String,
}

#[derive(Deserialize)]
struct Page {
    items: Vec<Alert>,
    next_cursor: Option<String>,
}

const STATUSES: &[&str] = &["open", "acknowledged", "resolved"];
const LEVELS: &[&str] = &["critical", "high", "medium", "low", "informational"];

async fn list(user: SignedIn, Query(f): Query<Filter>) -> Response {
    render(&user, &f, &Answer::none()).await
}

async fn render(user: &SignedIn, f: &Filter, outcome: &Answer) -> Response {
    let lang = user.lang();
    // "all" is the page's word (an absent status means open alerts); the API takes none.
    let api_status = if f.status == "all" {
        ""
    } else {
        f.status.as_str()
    };
    let answer = user
        .get(&format!(
            "/api/v1/alerts{}",
            query(&[
                ("status", api_status),
                ("level", &f.level),
                ("cursor", &f.cursor),
                ("limit", "25"),
            ])
        ))
        .await;
    let Some(page) = answer.json::<Page>() else {
        return super::failed(user, "/console/alerts", &answer);
    };
    let writable = user.can(rampart_identity::rbac::ALERTS_WRITE);
    let zone = user.browser.zone;
    let csrf = &user.browser.csrf;
    let filters = [("status", f.status.as_str()), ("level", f.level.as_str())];
    let body = html! {
        h1 { (lang.t("alerts")) }
        (banner(outcome))
        form.row.card method="get" action="/console/alerts" role="search" {
            div {
                label for="status" { (lang.t("status")) }
                select #status name="status" {
                    option value="all" selected[f.status == "all"] { (lang.t("all")) }
                    @for s in STATUSES { option value=(s) selected[*s == f.status] { (s) } }
                }
            }
            div {
                label for="level" { (lang.t("severity")) }
                select #level name="level" {
                    option value="" selected[f.level.is_empty()] { (lang.t("all")) }
                    @for l in LEVELS { option value=(l) selected[*l == f.level] { (l) } }
                }
            }
            button type="submit" { (lang.t("filter")) }
        }
        @if page.items.is_empty() { (super::empty(user)) } @else {
            div.table-wrap { table {
                thead { tr {
                    th { (lang.t("severity")) } th { (lang.t("alert")) } th { (lang.t("tenant")) }
                    th { (lang.t("group")) } th.num { (lang.t("events")) } th { (lang.t("time")) }
                    th { (lang.t("status")) } @if writable { th { (lang.t("action")) } }
                } }
                tbody { @for a in &page.items { tr {
                    td { strong { (a.level) } }
                    td { (a.title) br; code { (a.rule_id) } @for t in &a.techniques { " " code { (t) } } }
                    td { code { (a.tenant_id.as_deref().unwrap_or("—")) } }
                    td { @if let Some(g) = a.group.as_object() { @for (k, v) in g { (k) " " code { (v.as_str().unwrap_or("")) } br; } } }
                    td.num { (a.event_count) }
                    td { (zone.show(&a.first_event_at)) " → " (zone.show(&a.last_event_at)) }
                    td { (a.status) }
                    @if writable { td {
                        @if a.status == "open" {
                            form.inline method="post" action=(format!("/console/alerts/{}/acknowledge", encode(&a.id))) {
                                (csrf_field(csrf)) button.secondary type="submit" { (lang.t("acknowledge")) }
                            }
                        }
                        @if a.status != "resolved" {
                            form.inline method="post" action=(format!("/console/alerts/{}/resolve", encode(&a.id))) {
                                (csrf_field(csrf)) button type="submit" { (lang.t("resolve")) }
                            }
                        }
                    } }
                } } }
            } }
        }
        (super::pager(user, "/console/alerts", &query(&filters), "cursor", page.next_cursor.as_deref(), !f.cursor.is_empty()))
    };
    super::respond(
        super::form_status(outcome),
        user.shell("/console/alerts").page(lang.t("alerts"), body),
    )
}

async fn act(user: SignedIn, Path((id, action)): Path<(String, String)>) -> Response {
    let answer = match action.as_str() {
        "acknowledge" | "resolve" => {
            user.call(
                Method::POST,
                &format!("/api/v1/alerts/{}/{action}", encode(&id)),
                None,
            )
            .await
        }
        _ => Answer::none_with(StatusCode::NOT_FOUND),
    };
    if answer.ok() {
        return super::done("/console/alerts");
    }
    let f = Filter {
        status: open(),
        level: String::new(),
        cursor: String::new(),
    };
    render(&user, &f, &answer).await
}
