//! `/console/api-keys`: the tenant's API keys; create one (its secret shown once, on the
//! answer page only, never stored or put in a URL) and revoke.

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
        .route("/console/api-keys", get(list).post(create))
        .route("/console/api-keys/{key_id}/revoke", post(revoke))
}

#[derive(Deserialize)]
struct Key {
    id: String,
    name: String,
    prefix: String,
    scopes: Vec<String>,
    created_at: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
}

#[derive(Deserialize, Default)]
struct Notice {
    done: Option<String>,
    /// The id of the last key of the previous page.
    #[serde(default)]
    after: String,
}

/// Keys per page.
const PAGE: usize = 50;

#[derive(Deserialize, Default)]
struct Draft {
    #[serde(default)]
    name: String,
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    expires_in_days: String,
}

async fn list(user: SignedIn, Query(n): Query<Notice>) -> Response {
    let notice = n.done.is_some().then_some("revoked");
    render_page(
        &user,
        &Answer::none(),
        &Draft::default(),
        None,
        notice,
        &n.after,
    )
    .await
}

async fn create(user: SignedIn, Form(draft): Form<Draft>) -> Response {
    let scopes = super::split_list(&draft.scopes);
    let mut body = json!({ "name": draft.name, "scopes": scopes });
    if !draft.expires_in_days.trim().is_empty() {
        // A non-number goes to the API as is, so its message names the field.
        body["expires_in_days"] = match draft.expires_in_days.trim().parse::<u64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::String(draft.expires_in_days.clone()),
        };
    }
    let answer = user.post("/api/v1/api-keys", body).await;
    let secret = answer.created_text("secret");
    match secret {
        Some(secret) => {
            render(
                &user,
                &Answer::none(),
                &Draft::default(),
                Some(&secret),
                None,
            )
            .await
        }
        None => render(&user, &answer, &draft, None, None).await,
    }
}

async fn revoke(user: SignedIn, Path(key_id): Path<String>) -> Response {
    let answer = user
        .call(
            Method::DELETE,
            &format!("/api/v1/api-keys/{}", encode(&key_id)),
            None,
        )
        .await;
    if answer.ok() {
        return super::done("/console/api-keys?done=revoked");
    }
    render(&user, &answer, &Draft::default(), None, None).await
}

async fn render(
    user: &SignedIn,
    answer: &Answer,
    draft: &Draft,
    secret: Option<&str>,
    notice: Option<&'static str>,
) -> Response {
    render_page(user, answer, draft, secret, notice, "").await
}

async fn render_page(
    user: &SignedIn,
    answer: &Answer,
    draft: &Draft,
    secret: Option<&str>,
    notice: Option<&'static str>,
    after: &str,
) -> Response {
    let lang = user.lang();
    // One more than a page: whether there is a next one.
    let listed = user
        .get(&format!(
            "/api/v1/api-keys{}",
            crate::api::query(&[("after", after), ("limit", &(PAGE + 1).to_string())])
        ))
        .await;
    let Some(mut keys) = listed.json::<Vec<Key>>() else {
        return super::failed(user, "/console/api-keys", &listed);
    };
    let next = (keys.len() > PAGE).then(|| {
        keys.truncate(PAGE);
        keys.last().map(|k| k.id.clone()).unwrap_or_default()
    });
    let writable = user.can(rampart_identity::rbac::API_KEYS_WRITE);
    let csrf = &user.browser.csrf;
    let never = lang.t("never");
    let body = html! {
        h1 { (lang.t("api_keys")) }
        @if let Some(n) = notice { p.notice role="status" { (lang.t(n)) } }
        @if let Some(s) = secret {
            div.notice role="status" {
                p { strong { (lang.t("secret_once")) } }
                p.secret #new-secret { (s) }
                button.secondary type="button" data-copy="#new-secret" data-copied=(lang.t("copied")) { (lang.t("copy")) }
            }
        }
        (banner(answer))
        @if keys.is_empty() { (super::empty(user)) } @else {
            div.table-wrap { table {
                thead { tr {
                    th { (lang.t("name")) } th { "Prefix" } th { (lang.t("scopes")) }
                    th { (lang.t("created")) } th { (lang.t("last_used")) } th { (lang.t("status")) }
                    @if writable { th { (lang.t("action")) } }
                } }
                tbody {
                    @for k in &keys {
                        tr {
                            td { (k.name) } td { code { (k.prefix) "…" } }
                            td { @for s in &k.scopes { code { (s) } " " } }
                            td { (user.browser.zone.show(&k.created_at)) }
                            td { (k.last_used_at.as_deref().map(|t| user.browser.zone.show(t)).unwrap_or_else(|| never.to_string())) }
                            td {
                                @if let Some(r) = &k.revoked_at { (lang.t("revoked")) " " (user.browser.zone.show(r)) }
                                @else if let Some(e) = &k.expires_at { "→ " (user.browser.zone.show(e)) }
                            }
                            @if writable {
                                td {
                                    @if k.revoked_at.is_none() {
                                        form.inline method="post" action=(format!("/console/api-keys/{}/revoke", encode(&k.id))) {
                                            (csrf_field(csrf))
                                            button.danger type="submit" data-confirm=(lang.t("revoke_confirm")) { (lang.t("revoke")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
        }
        (super::pager(user, "/console/api-keys", "", "after", next.as_deref(), !after.is_empty()))
        @if writable {
            h2 { (lang.t("new_api_key")) }
            div.card {
                form.stack method="post" action="/console/api-keys" {
                    (csrf_field(csrf))
                    (field(answer, "name", lang.t("name"), html! { input #name type="text" name="name" value=(draft.name) required maxlength="100"; }))
                    (field(answer, "scopes", lang.t("scopes"), html! {
                        input #scopes type="text" name="scopes" value=(draft.scopes) required aria-describedby="scopes-hint";
                    }))
                    span.hint #scopes-hint { (lang.t("scopes_hint")) }
                    (field(answer, "expires_in_days", lang.t("expires_days"), html! {
                        input #expires_in_days type="number" name="expires_in_days" min="1" max="3650" value=(draft.expires_in_days);
                    }))
                    button type="submit" { (lang.t("create")) }
                }
            }
        }
    };
    super::respond(
        super::form_status(answer),
        user.shell("/console/api-keys")
            .page(lang.t("api_keys"), body),
    )
}
