//! Operations, for platform admins: `/console/ops/keys` (keyring and signing keys with
//! their rotation age), `/console/ops/backups` (backups and the last restore drill's RTO
//! and RPO) and `/console/ops/jobs` (dead letters by default, with retry). What
//! `/api/v1/ops/*` answers, which only `ops:read`/`ops:write` may ask.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use crate::api::{encode, query};
use crate::layout::{banner, csrf_field};
use crate::session::SignedIn;
use crate::{Answer, Console};

/// The nav entry every operations page lights up.
const ACTIVE: &str = "/console/ops/keys";

pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/console/ops/keys", get(keys))
        .route("/console/ops/backups", get(backups))
        .route("/console/ops/jobs", get(jobs))
        .route("/console/ops/jobs/{job_id}/retry", post(retry))
}

/// The three operations pages, one link each.
fn tabs(user: &SignedIn, here: &str) -> Markup {
    let lang = user.lang();
    html! {
        nav.tabs aria-label=(lang.t("operations")) {
            @for (href, key) in [("/console/ops/keys", "keys"), ("/console/ops/backups", "backups"), ("/console/ops/jobs", "jobs")] {
                @if href == here { a href=(href) aria-current="page" { (lang.t(key)) } }
                @else { a href=(href) { (lang.t(key)) } }
            }
        }
    }
}

#[derive(Deserialize)]
struct KeyringKey {
    name: String,
    current_version: i64,
    min_version: i64,
    versions: i64,
    rotated_at: String,
    rotation_age_days: i64,
}

#[derive(Deserialize)]
struct SigningKey {
    kid: String,
    purpose: String,
    scope: String,
    alg: String,
    held: String,
    published: bool,
    created_at: String,
    age_days: i64,
    rotation_due_at: Option<String>,
}

#[derive(Deserialize)]
struct Keys {
    keyring: Vec<KeyringKey>,
    signing: Vec<SigningKey>,
    signing_rotation_days: u32,
}

async fn keys(user: SignedIn) -> Response {
    let lang = user.lang();
    let answer = user.get("/api/v1/ops/keys").await;
    let Some(k) = answer.json::<Keys>() else {
        return super::failed(&user, ACTIVE, &answer);
    };
    let zone = user.browser.zone;
    let body = html! {
        h1 { (lang.t("operations")) }
        (tabs(&user, "/console/ops/keys"))
        h2 { (lang.t("keyring")) }
        @if k.keyring.is_empty() { (super::empty(&user)) } @else {
            div.table-wrap { table {
                thead { tr {
                    th { (lang.t("name")) } th.num { (lang.t("version")) } th.num { (lang.t("min_version")) }
                    th.num { (lang.t("versions")) } th { (lang.t("rotated")) } th.num { (lang.t("age_days")) }
                } }
                tbody { @for key in &k.keyring { tr {
                    td { code { (key.name) } } td.num { (key.current_version) } td.num { (key.min_version) }
                    td.num { (key.versions) } td { (zone.show(&key.rotated_at)) } td.num { (key.rotation_age_days) }
                } } }
            } }
        }
        h2 { (lang.t("signing_keys")) }
        p.hint { (lang.t("signing_rotation")) " " (k.signing_rotation_days) " " (lang.t("days")) }
        @if k.signing.is_empty() { (super::empty(&user)) } @else {
            div.table-wrap { table {
                thead { tr {
                    th { "kid" } th { (lang.t("purpose")) } th { (lang.t("scope")) } th { "alg" }
                    th { (lang.t("held")) } th { (lang.t("created")) } th.num { (lang.t("age_days")) } th { (lang.t("rotation_due")) }
                } }
                tbody { @for key in &k.signing { tr {
                    td { code title=(key.kid) { (key.kid.chars().take(12).collect::<String>()) "…" } }
                    td { (key.purpose) } td { code { (key.scope) } } td { (key.alg) }
                    td { (key.held) @if !key.published { " · " (lang.t("unpublished")) } }
                    td { (zone.show(&key.created_at)) } td.num { (key.age_days) }
                    td { @if let Some(due) = &key.rotation_due_at { (zone.show(due)) } @else { "—" } }
                } } }
            } }
        }
    };
    super::respond(
        StatusCode::OK,
        user.shell(ACTIVE).page(lang.t("keys"), body),
    )
}

#[derive(Deserialize, Default)]
struct Cursor {
    #[serde(default)]
    cursor: String,
}

#[derive(Deserialize)]
struct Backup {
    id: String,
    created_at: String,
    status: String,
    backend: String,
    size_bytes: i64,
    key_name: String,
    key_version: i64,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Drill {
    at: String,
    ok: bool,
    backup_id: Option<String>,
    rto_ms: Option<i64>,
    rpo_ms: Option<i64>,
    audit_events_verified: Option<i64>,
    problems: Vec<String>,
}

#[derive(Deserialize)]
struct BackupsPage {
    items: Vec<Backup>,
    next_cursor: Option<String>,
    last_drill: Option<Drill>,
}

/// Milliseconds as seconds with one decimal, or hours past two hours (an RPO).
fn duration(ms: i64) -> String {
    if ms >= 7_200_000 {
        format!("{:.1} h", ms as f64 / 3_600_000.0)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// Bytes in the largest unit that keeps a number of at least 1.
fn size(bytes: i64) -> String {
    let b = bytes as f64;
    match bytes {
        n if n >= 1 << 30 => format!("{:.1} GiB", b / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", b / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", b / 1024.0),
        n => format!("{n} B"),
    }
}

async fn backups(user: SignedIn, Query(c): Query<Cursor>) -> Response {
    let lang = user.lang();
    let answer = user
        .get(&format!(
            "/api/v1/ops/backups{}",
            query(&[("cursor", c.cursor.as_str()), ("limit", "25")])
        ))
        .await;
    let Some(page) = answer.json::<BackupsPage>() else {
        return super::failed(&user, ACTIVE, &answer);
    };
    let zone = user.browser.zone;
    let body = html! {
        h1 { (lang.t("operations")) }
        (tabs(&user, "/console/ops/backups"))
        h2 { (lang.t("last_drill")) }
        @match &page.last_drill {
            None => p.empty { (lang.t("no_drill")) },
            Some(d) => div.card {
                p { strong { @if d.ok { (lang.t("drill_ok")) } @else { (lang.t("drill_failed")) } } " · " (zone.show(&d.at)) }
                dl.facts {
                    dt { "RTO" } dd #drill-rto { (d.rto_ms.map(duration).unwrap_or_else(|| "—".into())) }
                    dt { "RPO" } dd #drill-rpo { (d.rpo_ms.map(duration).unwrap_or_else(|| "—".into())) }
                    dt { (lang.t("backup")) } dd { code { (d.backup_id.as_deref().unwrap_or("—")) } }
                    dt { (lang.t("events")) } dd { (d.audit_events_verified.map(|n| n.to_string()).unwrap_or_else(|| "—".into())) }
                }
                @if !d.problems.is_empty() { ul.alert role="alert" { @for p in &d.problems { li { (p) } } } }
            },
        }
        h2 { (lang.t("backups")) }
        @if page.items.is_empty() { (super::empty(&user)) } @else {
            div.table-wrap { table {
                thead { tr {
                    th { (lang.t("id")) } th { (lang.t("created")) } th { (lang.t("status")) }
                    th { (lang.t("backend")) } th.num { (lang.t("size")) } th { (lang.t("key")) }
                } }
                tbody { @for b in &page.items { tr {
                    td { code { (b.id) } } td { (zone.show(&b.created_at)) }
                    td { (b.status) @if let Some(e) = &b.error { " · " span.error { (e) } } }
                    td { (b.backend) } td.num { (size(b.size_bytes)) }
                    td { code { (b.key_name) " v" (b.key_version) } }
                } } }
            } }
        }
        (super::pager(&user, "/console/ops/backups", "", "cursor", page.next_cursor.as_deref(), !c.cursor.is_empty()))
    };
    super::respond(
        StatusCode::OK,
        user.shell(ACTIVE).page(lang.t("backups"), body),
    )
}

#[derive(Deserialize)]
struct JobFilter {
    /// Dead letters unless asked otherwise: they are what needs an operator.
    #[serde(default = "dead")]
    state: String,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    cursor: String,
    done: Option<String>,
}

fn dead() -> String {
    "dead".into()
}

#[derive(Deserialize)]
struct Job {
    id: String,
    queue: String,
    kind: String,
    state: String,
    attempts: i64,
    max_attempts: i64,
    payload: Value,
    updated_at: String,
    last_error: Option<String>,
}

#[derive(Deserialize)]
struct JobsPage {
    items: Vec<Job>,
    next_cursor: Option<String>,
}

const JOB_STATES: &[&str] = &["dead", "queued", "running", "done"];

async fn jobs(user: SignedIn, Query(f): Query<JobFilter>) -> Response {
    render_jobs(&user, &f, &Answer::none()).await
}

async fn render_jobs(user: &SignedIn, f: &JobFilter, outcome: &Answer) -> Response {
    let lang = user.lang();
    // "all" is the page's own word (an absent state means dead letters); the API takes
    // no state for every state.
    let filters = [("state", f.state.as_str()), ("queue", f.queue.as_str())];
    let api_state = if f.state == "all" {
        ""
    } else {
        f.state.as_str()
    };
    let mut with_cursor = vec![("state", api_state), ("queue", f.queue.as_str())];
    with_cursor.extend([("cursor", f.cursor.as_str()), ("limit", "25")]);
    let answer = user
        .get(&format!("/api/v1/ops/jobs{}", query(&with_cursor)))
        .await;
    let Some(page) = answer.json::<JobsPage>() else {
        return super::failed(user, ACTIVE, &answer);
    };
    let writable = user.can(rampart_identity::rbac::OPS_WRITE);
    let zone = user.browser.zone;
    let csrf = &user.browser.csrf;
    let body = html! {
        h1 { (lang.t("operations")) }
        (tabs(user, "/console/ops/jobs"))
        @if f.done.is_some() { p.notice role="status" { (lang.t("requeued")) } }
        (banner(outcome))
        form.row.card method="get" action="/console/ops/jobs" role="search" {
            div {
                label for="state" { (lang.t("status")) }
                select #state name="state" {
                    option value="all" selected[f.state == "all"] { (lang.t("all")) }
                    @for s in JOB_STATES { option value=(s) selected[*s == f.state] { (s) } }
                }
            }
            div { label for="queue" { (lang.t("queue")) } input #queue type="text" name="queue" value=(f.queue) placeholder="notify"; }
            button type="submit" { (lang.t("filter")) }
        }
        @if page.items.is_empty() { (super::empty(user)) } @else {
            div.table-wrap { table {
                thead { tr {
                    th { (lang.t("id")) } th { (lang.t("kind")) } th { (lang.t("queue")) } th { (lang.t("status")) }
                    th.num { (lang.t("attempts")) } th { (lang.t("updated")) } th { (lang.t("last_error")) }
                    @if writable { th { (lang.t("action")) } }
                } }
                tbody { @for j in &page.items { tr {
                    td { code { (j.id) } } td { code { (j.kind) } } td { (j.queue) } td { (j.state) }
                    td.num { (j.attempts) "/" (j.max_attempts) } td { (zone.show(&j.updated_at)) }
                    td {
                        @if let Some(e) = &j.last_error { span.error { (e) } }
                        @if !j.payload.is_null() { br; code { (j.payload.to_string()) } }
                    }
                    @if writable { td {
                        @if j.state == "dead" {
                            form.inline method="post" action=(format!("/console/ops/jobs/{}/retry", encode(&j.id))) {
                                (csrf_field(csrf))
                                button type="submit" { (lang.t("retry")) }
                            }
                        }
                    } }
                } } }
            } }
        }
        (super::pager(user, "/console/ops/jobs", &query(&filters), "cursor", page.next_cursor.as_deref(), !f.cursor.is_empty()))
    };
    super::respond(
        super::form_status(outcome),
        user.shell(ACTIVE).page(lang.t("jobs"), body),
    )
}

async fn retry(user: SignedIn, Path(job_id): Path<String>) -> Response {
    let answer = user
        .call(
            axum::http::Method::POST,
            &format!("/api/v1/ops/jobs/{}/retry", encode(&job_id)),
            None,
        )
        .await;
    if answer.ok() {
        return super::done("/console/ops/jobs?done=retried");
    }
    let f = JobFilter {
        state: dead(),
        queue: String::new(),
        cursor: String::new(),
        done: None,
    };
    render_jobs(&user, &f, &answer).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(super::size(512), "512 B");
        assert_eq!(super::size(1536), "1.5 KiB");
        assert_eq!(super::size(3 << 20), "3.0 MiB");
        assert_eq!(super::duration(1234), "1.2 s");
        assert_eq!(super::duration(3 * 3_600_000), "3.0 h");
    }
}
