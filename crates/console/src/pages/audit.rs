//! `/console/audit` (the tenant's audit log, filtered and paged), `/console/audit/chain`
//! (the chain verified now, with the last signed checkpoint) and `/console/security`
//! (security events, platform admins).

use axum::extract::Query;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use crate::api::query;
use crate::session::SignedIn;
use crate::Console;

pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/console/audit", get(audit))
        .route("/console/audit/chain", get(chain))
        .route("/console/security", get(security))
}

#[derive(Deserialize, Default)]
struct AuditFilter {
    #[serde(default)]
    action: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    target_type: String,
    #[serde(default)]
    target_id: String,
    #[serde(default)]
    cursor: String,
}

#[derive(Deserialize)]
struct Event {
    seq: i64,
    occurred_at: String,
    actor_type: String,
    actor_id: Option<String>,
    action: String,
    target_type: String,
    target_id: Option<String>,
    outcome: String,
    source_ip: Option<String>,
    changes: Value,
}

#[derive(Deserialize)]
struct AuditPage {
    items: Vec<Event>,
    next_cursor: Option<String>,
}

async fn audit(user: SignedIn, Query(f): Query<AuditFilter>) -> Response {
    let lang = user.lang();
    let filters = [
        ("action", f.action.as_str()),
        ("actor", f.actor.as_str()),
        ("target_type", f.target_type.as_str()),
        ("target_id", f.target_id.as_str()),
    ];
    let mut with_cursor = filters.to_vec();
    with_cursor.push(("cursor", f.cursor.as_str()));
    with_cursor.push(("limit", "50"));
    let answer = user
        .get(&format!("/api/v1/audit-events{}", query(&with_cursor)))
        .await;
    let Some(page) = answer.json::<AuditPage>() else {
        return super::failed(&user, "/console/audit", &answer);
    };
    let zone = user.browser.zone;
    let body = html! {
        h1 { (lang.t("audit")) }
        p { a href="/console/audit/chain" { (lang.t("chain")) } }
        form.row.card method="get" action="/console/audit" role="search" {
            div { label for="action" { (lang.t("action")) } input #action type="text" name="action" value=(f.action) placeholder="user.create"; }
            div { label for="actor" { (lang.t("actor")) } input #actor type="text" name="actor" value=(f.actor); }
            div { label for="target_type" { (lang.t("target")) } input #target_type type="text" name="target_type" value=(f.target_type) placeholder="payment"; }
            div { label for="target_id" { (lang.t("id")) } input #target_id type="text" name="target_id" value=(f.target_id); }
            button type="submit" { (lang.t("filter")) }
        }
        @if page.items.is_empty() { (super::empty(&user)) } @else {
            div.table-wrap { table {
                thead { tr {
                    th.num { "#" } th { (lang.t("time")) } th { (lang.t("action")) } th { (lang.t("actor")) }
                    th { (lang.t("target")) } th { (lang.t("status")) } th { (lang.t("source_ip")) } th { (lang.t("detail")) }
                } }
                tbody {
                    @for e in &page.items {
                        tr {
                            td.num { (e.seq) } td { (zone.show(&e.occurred_at)) } td { code { (e.action) } }
                            td { (e.actor_type) " " code { (e.actor_id.as_deref().unwrap_or("")) } }
                            td { (e.target_type) " " code { (e.target_id.as_deref().unwrap_or("")) } }
                            td { (e.outcome) } td { (e.source_ip.as_deref().unwrap_or("")) }
                            td { @if !e.changes.is_null() && e.changes != Value::Object(Default::default()) { code { (e.changes.to_string()) } } }
                        }
                    }
                }
            } }
        }
        (super::pager(&user, "/console/audit", &query(&filters), "cursor", page.next_cursor.as_deref(), !f.cursor.is_empty()))
    };
    super::respond(
        axum::http::StatusCode::OK,
        user.shell("/console/audit").page(lang.t("audit"), body),
    )
}

#[derive(Deserialize)]
struct Chain {
    tenant_id: String,
    ok: bool,
    problem: Option<String>,
    events: u64,
    checkpoints: u64,
    head_seq: i64,
    last_checkpoint_seq: Option<i64>,
    last_checkpoint_at: Option<String>,
}

async fn chain(user: SignedIn) -> Response {
    let lang = user.lang();
    let answer = user.get("/api/v1/audit-events/chain").await;
    let Some(c) = answer.json::<Chain>() else {
        return super::failed(&user, "/console/audit", &answer);
    };
    let body = html! {
        h1 { (lang.t("chain")) }
        div.card {
            @if c.ok {
                p.notice role="status" { (lang.t("chain_ok")) }
            } @else {
                p.alert role="alert" { (lang.t("chain_bad")) ": " (c.problem.as_deref().unwrap_or("")) }
            }
            dl.facts {
                dt { (lang.t("tenant")) } dd { code { (c.tenant_id) } }
                dt { (lang.t("events")) } dd { (c.events) " / " (c.head_seq) }
                dt { "Checkpoints" } dd { (c.checkpoints) }
                dt { (lang.t("last_checkpoint")) }
                dd {
                    @match (&c.last_checkpoint_seq, &c.last_checkpoint_at) {
                        (Some(seq), Some(at)) => { "#" (seq) ", " (user.browser.zone.show(at)) }
                        _ => { (lang.t("never")) }
                    }
                }
            }
        }
        p { a href="/console/audit" { (lang.t("audit")) } }
    };
    super::respond(
        axum::http::StatusCode::OK,
        user.shell("/console/audit").page(lang.t("chain"), body),
    )
}

#[derive(Deserialize, Default)]
struct SecurityFilter {
    #[serde(default)]
    date: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    cursor: String,
}

/// Security events per page.
const SECURITY_PAGE: usize = 200;

async fn security(user: SignedIn, Query(f): Query<SecurityFilter>) -> Response {
    let lang = user.lang();
    let answer = user
        .get(&format!(
            "/api/v1/security-events{}",
            query(&[
                ("date", &f.date),
                ("event", &f.event),
                ("cursor", &f.cursor),
                ("limit", &SECURITY_PAGE.to_string()),
            ])
        ))
        .await;
    let Some(mut events) = answer.json::<Vec<Value>>() else {
        return super::failed(&user, "/console/security", &answer);
    };
    // A full page has older events behind it: before its first (oldest) one.
    let next = (events.len() == SECURITY_PAGE)
        .then(|| {
            events
                .first()
                .and_then(|e| e.get("seq"))
                .map(Value::to_string)
        })
        .flatten();
    // Newest first on screen; the API answers oldest first.
    events.reverse();
    let text = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let body = html! {
        h1 { (lang.t("security")) }
        form.row.card method="get" action="/console/security" role="search" {
            div { label for="date" { (lang.t("date")) } input #date type="text" name="date" value=(f.date) placeholder="YYYY-MM-DD" pattern="[0-9]{4}-[0-9]{2}-[0-9]{2}"; }
            div { label for="event" { (lang.t("event")) } input #event type="text" name="event" value=(f.event) placeholder="login_failure"; }
            button type="submit" { (lang.t("filter")) }
        }
        @if events.is_empty() { (super::empty(&user)) } @else {
            div.table-wrap { table {
                thead { tr {
                    th { (lang.t("time")) } th { (lang.t("event")) } th { (lang.t("severity")) }
                    th { (lang.t("tenant")) } th { (lang.t("source_ip")) } th { (lang.t("detail")) }
                } }
                tbody {
                    @for e in &events {
                        tr {
                            td { (user.browser.zone.show(&text(e, "time"))) }
                            td { code { (text(e, "event")) } } td { (text(e, "severity")) }
                            td { code { (text(e, "tenant_id")) } } td { (text(e, "source_ip")) }
                            td { @if let Some(d) = e.get("detail").filter(|d| !d.is_null()) { code { (d.to_string()) } } }
                        }
                    }
                }
            } }
        }
        (super::pager(&user, "/console/security", &query(&[("date", &f.date), ("event", &f.event)]), "cursor", next.as_deref(), !f.cursor.is_empty()))
    };
    super::respond(
        axum::http::StatusCode::OK,
        user.shell("/console/security")
            .page(lang.t("security"), body),
    )
}
