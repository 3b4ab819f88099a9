//! `/console/alerts`: what the detection rules raised (open ones first by default), with
//! acknowledge, resolve, snooze and suppress, and the suppressions in force with lift. Platform admins see every tenant's and the platform's; a
//! tenant's admins and auditors their tenant's: the API decides.

use axum::extract::{Form, Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use maud::html;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{encode, query};
use crate::layout::{banner, csrf_field};
use crate::session::SignedIn;
use crate::{Answer, Console};

pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/console/alerts", get(list))
        .route("/console/alerts/{alert_id}/{action}", post(act))
        .route(
            "/console/alert-suppressions/{suppression_id}/lift",
            post(lift),
        )
}

/// The fields of the snooze and suppress forms (acknowledge and resolve have none).
#[derive(Deserialize, Default)]
struct ActForm {
    #[serde(default)]
    hours: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct Suppression {
    id: String,
    rule_id: String,
    tenant_id: Option<String>,
    group: Value,
    reason: String,
    expires_at: String,
    suppressed_count: i64,
}

const SNOOZE_HOURS: &[u32] = &[1, 8, 24, 168];
const SUPPRESS_DAYS: &[u32] = &[1, 7, 30, 90];

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

const STATUSES: &[&str] = &["open", "acknowledged", "snoozed", "resolved"];
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
    let suppressions = user
        .get("/api/v1/alert-suppressions")
        .await
        .json::<Vec<Suppression>>()
        .unwrap_or_default();
    let zone = user.browser.zone;
    let csrf = &user.browser.csrf;
    let filters = [("status", f.status.as_str()), ("level", f.level.as_str())];
    let body = html! {
        h1 { (lang.t("alerts")) }
        (banner(outcome))
        // The snooze and suppress forms sit in table rows: their field errors show here.
        @if let Some(m) = outcome.field_error("reason") {
            p.alert role="alert" { (lang.t("reason")) ": " (m) }
        }
        @if let Some(m) = outcome.field_error("until") {
            p.alert role="alert" { (lang.t("expires")) ": " (m) }
        }
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
                            form.inline method="post" action=(format!("/console/alerts/{}/snooze", encode(&a.id))) {
                                (csrf_field(csrf))
                                select name="hours" aria-label=(lang.t("hours")) {
                                    @for h in SNOOZE_HOURS { option value=(h) { (h) " h" } }
                                }
                                button.secondary type="submit" { (lang.t("snooze")) }
                            }
                        }
                        details {
                            summary { (lang.t("suppress")) }
                            form method="post" action=(format!("/console/alerts/{}/suppress", encode(&a.id))) {
                                (csrf_field(csrf))
                                p.hint { (lang.t("suppress_hint")) }
                                label for=(format!("reason-{}", a.id)) { (lang.t("reason")) }
                                input id=(format!("reason-{}", a.id)) name="reason" required maxlength="500";
                                label for=(format!("days-{}", a.id)) { (lang.t("days")) }
                                select id=(format!("days-{}", a.id)) name="days" {
                                    @for d in SUPPRESS_DAYS { option value=(d) { (d) } }
                                }
                                button type="submit" { (lang.t("suppress")) }
                            }
                        }
                    } }
                } } }
            } }
        }
        (super::pager(user, "/console/alerts", &query(&filters), "cursor", page.next_cursor.as_deref(), !f.cursor.is_empty()))
        @if !suppressions.is_empty() {
            h2 { (lang.t("suppressions")) }
            div.table-wrap { table {
                thead { tr {
                    th { (lang.t("rule")) } th { (lang.t("tenant")) } th { (lang.t("group")) }
                    th { (lang.t("reason")) } th { (lang.t("expires")) } th.num { (lang.t("suppressed")) }
                    @if writable { th { (lang.t("action")) } }
                } }
                tbody { @for s in &suppressions { tr {
                    td { code { (s.rule_id) } }
                    td { code { (s.tenant_id.as_deref().unwrap_or("—")) } }
                    td { @if let Some(g) = s.group.as_object() { @for (k, v) in g { (k) " " code { (v.as_str().unwrap_or("")) } br; } } }
                    td { (s.reason) }
                    td { (zone.show(&s.expires_at)) }
                    td.num { (s.suppressed_count) }
                    @if writable { td {
                        form.inline method="post" action=(format!("/console/alert-suppressions/{}/lift", encode(&s.id))) {
                            (csrf_field(csrf)) button.secondary type="submit" { (lang.t("lift")) }
                        }
                    } }
                } } }
            } }
        }
    };
    super::respond(
        super::form_status(outcome),
        user.shell("/console/alerts").page(lang.t("alerts"), body),
    )
}

/// An RFC 3339 time `secs` from now, for the API's `until`.
fn from_now(secs: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(secs))
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// A choice from a form's select: one of `allowed`, else the first (a tampered form
/// still asks for the shortest).
fn pick(value: &str, allowed: &[u32]) -> i64 {
    let n = value.trim().parse::<u32>().unwrap_or(allowed[0]);
    i64::from(if allowed.contains(&n) { n } else { allowed[0] })
}

async fn act(
    user: SignedIn,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActForm>,
) -> Response {
    let path = format!("/api/v1/alerts/{}/{action}", encode(&id));
    let answer = match action.as_str() {
        "acknowledge" | "resolve" => user.call(Method::POST, &path, None).await,
        "snooze" => {
            let until = from_now(pick(&form.hours, SNOOZE_HOURS) * 3600);
            user.call(Method::POST, &path, Some(json!({ "until": until })))
                .await
        }
        "suppress" => {
            let until = from_now(pick(&form.days, SUPPRESS_DAYS) * 86_400);
            user.call(
                Method::POST,
                &path,
                Some(json!({ "until": until, "reason": form.reason })),
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

async fn lift(user: SignedIn, Path(id): Path<String>) -> Response {
    let answer = user
        .call(
            Method::DELETE,
            &format!("/api/v1/alert-suppressions/{}", encode(&id)),
            None,
        )
        .await;
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
