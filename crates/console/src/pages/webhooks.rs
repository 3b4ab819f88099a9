//! `/console/webhooks`: the tenant's webhook endpoints (add one: its signing secret shown
//! once; pause, resume, delete) and the delivery log with resend.

use axum::extract::{Path, Query};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::html;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::encode;
use crate::layout::{banner, csrf_field, field};
use crate::session::SignedIn;
use crate::{Answer, Console};

pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/console/webhooks", get(list).post(create))
        .route("/console/webhooks/{endpoint_id}/{action}", post(act))
        .route(
            "/console/webhooks/deliveries/{delivery_id}/resend",
            post(resend),
        )
}

#[derive(Deserialize)]
struct Endpoint {
    id: String,
    url: String,
    events: Vec<String>,
    status: String,
    disabled_reason: Option<String>,
}

#[derive(Deserialize)]
struct EventType {
    name: String,
    description: String,
}

#[derive(Deserialize, Default)]
struct Draft {
    #[serde(default)]
    url: String,
    /// Repeated `events=…` fields (checkboxes) arrive as one string each; serde_urlencoded
    /// takes the last, so the form sends them comma-joined in one field instead.
    #[serde(default)]
    events: String,
}

/// The delivery log's page: `cursor` is `<created_at>.<id>` of the last delivery shown.
#[derive(Deserialize, Default)]
struct LogPage {
    #[serde(default)]
    cursor: String,
}

/// Deliveries per page of the log.
const LOG_PAGE: usize = 50;

async fn list(user: SignedIn, Query(page): Query<LogPage>) -> Response {
    render_page(
        &user,
        &Answer::none(),
        &Draft::default(),
        None,
        &page.cursor,
    )
    .await
}

async fn create(user: SignedIn, Form(draft): Form<Draft>) -> Response {
    let events = super::split_list(&draft.events);
    let answer = user
        .post(
            "/api/v1/webhooks/endpoints",
            json!({ "url": draft.url, "events": events }),
        )
        .await;
    let secret = answer.created_text("secret");
    match secret {
        Some(s) => render(&user, &Answer::none(), &Draft::default(), Some(&s)).await,
        None => render(&user, &answer, &draft, None).await,
    }
}

async fn act(user: SignedIn, Path((id, action)): Path<(String, String)>) -> Response {
    let path = format!("/api/v1/webhooks/endpoints/{}", encode(&id));
    let answer = match action.as_str() {
        "pause" => {
            user.call(Method::PATCH, &path, Some(json!({ "enabled": false })))
                .await
        }
        "resume" => {
            user.call(Method::PATCH, &path, Some(json!({ "enabled": true })))
                .await
        }
        "delete" => user.call(Method::DELETE, &path, None).await,
        _ => Answer::none_with(axum::http::StatusCode::NOT_FOUND),
    };
    if answer.ok() {
        return super::done("/console/webhooks");
    }
    render(&user, &answer, &Draft::default(), None).await
}

async fn resend(user: SignedIn, Path(id): Path<String>) -> Response {
    let answer = user
        .post(
            &format!("/api/v1/webhooks/deliveries/{}/resend", encode(&id)),
            json!({}),
        )
        .await;
    if answer.ok() {
        return super::done("/console/webhooks");
    }
    render(&user, &answer, &Draft::default(), None).await
}

async fn render(user: &SignedIn, answer: &Answer, draft: &Draft, secret: Option<&str>) -> Response {
    render_page(user, answer, draft, secret, "").await
}

async fn render_page(
    user: &SignedIn,
    answer: &Answer,
    draft: &Draft,
    secret: Option<&str>,
    cursor: &str,
) -> Response {
    let lang = user.lang();
    let listed = user.get("/api/v1/webhooks/endpoints").await;
    let Some(endpoints) = listed.json::<Vec<Endpoint>>() else {
        return super::failed(user, "/console/webhooks", &listed);
    };
    let types = user
        .get("/api/v1/webhooks/event-types")
        .await
        .json::<Vec<EventType>>()
        .unwrap_or_default();
    // One more than a page: whether there is a next one, without asking again.
    let mut deliveries = user
        .get(&format!(
            "/api/v1/webhooks/deliveries{}",
            crate::api::query(&[("cursor", cursor), ("limit", &(LOG_PAGE + 1).to_string())])
        ))
        .await
        .json::<Vec<Value>>()
        .unwrap_or_default();
    let next = (deliveries.len() > LOG_PAGE)
        .then(|| {
            deliveries.truncate(LOG_PAGE);
            let last = deliveries.last()?;
            Some(format!(
                "{}.{}",
                last.get("created_at")?,
                last.get("id")?.as_str()?
            ))
        })
        .flatten();
    let csrf = &user.browser.csrf;
    let text = |v: &Value, k: &str| match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let body = html! {
        h1 { (lang.t("webhooks")) }
        @if let Some(s) = secret {
            div.notice role="status" {
                p { strong { (lang.t("secret_once")) } }
                p.secret #new-secret { (s) }
            }
        }
        (banner(answer))
        @if endpoints.is_empty() { (super::empty(user)) } @else {
            div.table-wrap { table {
                thead { tr { th { "URL" } th { (lang.t("events")) } th { (lang.t("status")) } th { (lang.t("action")) } } }
                tbody {
                    @for e in &endpoints {
                        tr {
                            td.mono { (e.url) }
                            td { @for ev in &e.events { code { (ev) } " " } }
                            td { (e.status) @if let Some(r) = &e.disabled_reason { br; span.muted { (r) } } }
                            td {
                                @let next = if e.status == "enabled" { "pause" } else { "resume" };
                                form.inline method="post" action=(format!("/console/webhooks/{}/{next}", encode(&e.id))) {
                                    (csrf_field(csrf))
                                    button.secondary type="submit" { (if next == "pause" { lang.t("disable") } else { lang.t("enable") }) }
                                }
                                " "
                                form.inline method="post" action=(format!("/console/webhooks/{}/delete", encode(&e.id))) {
                                    (csrf_field(csrf))
                                    button.danger type="submit" data-confirm=(lang.t("revoke_confirm")) { (lang.t("revoke")) }
                                }
                            }
                        }
                    }
                }
            } }
        }
        h2 { (lang.t("new_endpoint")) }
        div.card {
            form.stack method="post" action="/console/webhooks" {
                (csrf_field(csrf))
                (field(answer, "url", "URL", html! { input #url type="url" name="url" value=(draft.url) required placeholder="https://"; }))
                (field(answer, "events", lang.t("events"), html! {
                    input #events type="text" name="events" value=(draft.events) required aria-describedby="events-hint";
                }))
                span.hint #events-hint {
                    @for t in &types { code { (t.name) } " — " (t.description) br; }
                }
                button type="submit" { (lang.t("create")) }
            }
        }
        h2 { (lang.t("deliveries")) }
        @if deliveries.is_empty() { (super::empty(user)) } @else {
            div.table-wrap { table {
                thead { tr {
                    th { (lang.t("event")) } th { (lang.t("status")) } th.num { (lang.t("attempts")) }
                    th { "HTTP" } th { (lang.t("detail")) } th { (lang.t("action")) }
                } }
                tbody {
                    @for d in &deliveries {
                        tr {
                            td { code { (text(d, "event")) } } td { (text(d, "status")) }
                            td.num { (text(d, "attempts")) } td { (text(d, "last_status_code")) }
                            td { (text(d, "last_error")) }
                            td {
                                form.inline method="post" action=(format!("/console/webhooks/deliveries/{}/resend", encode(&text(d, "id")))) {
                                    (csrf_field(csrf))
                                    button.secondary type="submit" { (lang.t("resend")) }
                                }
                            }
                        }
                    }
                }
            } }
        }
        (super::pager(user, "/console/webhooks", "", "cursor", next.as_deref(), !cursor.is_empty()))
    };
    super::respond(
        super::form_status(answer),
        user.shell("/console/webhooks")
            .page(lang.t("webhooks"), body),
    )
}
