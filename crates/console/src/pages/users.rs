//! `/console/users`: a tenant's users (the caller's own, or any for platform admins via
//! `?tenant=`), inviting or creating one, and changing a role or disabling a user.

use axum::extract::{Path, Query};
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

const ROLES: &[&str] = &["member", "auditor", "tenant_admin"];

pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/console/users", get(list).post(create))
        .route("/console/users/{user_id}", post(update))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    tenant: Option<String>,
    after: Option<String>,
    done: Option<String>,
}

#[derive(Deserialize)]
struct User {
    id: String,
    email: String,
    name: String,
    role: String,
    status: String,
    created_at: String,
}

#[derive(Deserialize)]
struct UserPage {
    items: Vec<User>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, Default)]
struct Draft {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    password: Option<String>,
    #[serde(default)]
    tenant: String,
}

async fn list(user: SignedIn, Query(q): Query<ListQuery>) -> Response {
    let tenant = q
        .tenant
        .clone()
        .unwrap_or_else(|| user.me.tenant_id.clone());
    let notice = q.done.as_deref().map(|d| match d {
        "invited" => "invited",
        "created" => "created_ok",
        _ => "saved",
    });
    render(
        &user,
        &tenant,
        q.after.as_deref(),
        &Answer::none(),
        &Draft::default(),
        notice,
    )
    .await
}

async fn create(user: SignedIn, Form(draft): Form<Draft>) -> Response {
    let tenant = if draft.tenant.is_empty() {
        user.me.tenant_id.clone()
    } else {
        draft.tenant.clone()
    };
    let mut body = json!({ "email": draft.email, "name": draft.name, "role": draft.role });
    if let Some(p) = draft.password.as_deref().filter(|p| !p.is_empty()) {
        body["password"] = Value::String(p.to_string());
    }
    let answer = user
        .post(&format!("/api/v1/tenants/{}/users", encode(&tenant)), body)
        .await;
    if answer.ok() {
        let done = if answer.status == axum::http::StatusCode::ACCEPTED {
            "invited"
        } else {
            "created"
        };
        return super::done(&format!(
            "/console/users?tenant={}&done={done}",
            encode(&tenant)
        ));
    }
    render(&user, &tenant, None, &answer, &draft, None).await
}

#[derive(Deserialize)]
struct UpdateForm {
    tenant: String,
    role: Option<String>,
    status: Option<String>,
}

async fn update(
    user: SignedIn,
    Path(user_id): Path<String>,
    Form(form): Form<UpdateForm>,
) -> Response {
    let mut body = json!({});
    if let Some(r) = form.role.filter(|r| !r.is_empty()) {
        body["role"] = Value::String(r);
    }
    if let Some(s) = form.status.filter(|s| !s.is_empty()) {
        body["status"] = Value::String(s);
    }
    let answer = user
        .call(
            axum::http::Method::PATCH,
            &format!(
                "/api/v1/tenants/{}/users/{}",
                encode(&form.tenant),
                encode(&user_id)
            ),
            Some(body),
        )
        .await;
    if answer.ok() {
        return super::done(&format!(
            "/console/users?tenant={}&done=saved",
            encode(&form.tenant)
        ));
    }
    render(&user, &form.tenant, None, &answer, &Draft::default(), None).await
}

async fn render(
    user: &SignedIn,
    tenant: &str,
    after: Option<&str>,
    answer: &Answer,
    draft: &Draft,
    notice: Option<&'static str>,
) -> Response {
    let lang = user.lang();
    let listed = user
        .get(&format!(
            "/api/v1/tenants/{}/users{}",
            encode(tenant),
            crate::api::query(&[("after", after.unwrap_or("")), ("limit", "50")])
        ))
        .await;
    let Some(page) = listed.json::<UserPage>() else {
        return super::failed(user, "/console/users", &listed);
    };
    let writable = user.can(rampart_identity::rbac::USERS_WRITE);
    let csrf = &user.browser.csrf;
    let body = html! {
        h1 { (lang.t("users")) " · " code { (tenant) } }
        @if let Some(n) = notice { p.notice role="status" { (lang.t(n)) } }
        (banner(answer))
        @if page.items.is_empty() { (super::empty(user)) } @else {
            div.table-wrap { table {
                thead { tr {
                    th { (lang.t("name")) } th { (lang.t("email")) } th { (lang.t("role")) }
                    th { (lang.t("status")) } th { (lang.t("created")) }
                    @if writable { th { (lang.t("action")) } }
                } }
                tbody {
                    @for u in &page.items {
                        tr {
                            td { (u.name) } td { (u.email) } td { (u.role) } td { (u.status) }
                            td { (user.browser.zone.show(&u.created_at)) }
                            @if writable {
                                td {
                                    @if u.id != user.me.id && u.role != "platform_admin" && u.status != "invited" {
                                        form.row method="post" action=(format!("/console/users/{}", encode(&u.id))) {
                                            (csrf_field(csrf))
                                            input type="hidden" name="tenant" value=(tenant);
                                            select id=(format!("role-{}", u.id)) name="role" aria-label=(lang.t("role")) {
                                                @for r in ROLES { option value=(r) selected[*r == u.role] { (r) } }
                                            }
                                            button.secondary type="submit" { (lang.t("save")) }
                                        }
                                        form.inline method="post" action=(format!("/console/users/{}", encode(&u.id))) {
                                            (csrf_field(csrf))
                                            input type="hidden" name="tenant" value=(tenant);
                                            @if u.status == "disabled" {
                                                input type="hidden" name="status" value="active";
                                                button.secondary type="submit" { (lang.t("enable")) }
                                            } @else {
                                                input type="hidden" name="status" value="disabled";
                                                button.danger type="submit" { (lang.t("disable")) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
        }
        (super::pager(user, "/console/users", &format!("?tenant={}", encode(tenant)), "after", page.next_cursor.as_deref(), after.is_some()))
        @if writable {
            h2 { (lang.t("new_user")) }
            div.card {
                form.stack method="post" action="/console/users" {
                    (csrf_field(csrf))
                    input type="hidden" name="tenant" value=(tenant);
                    (field(answer, "email", lang.t("email"), html! { input #email type="email" name="email" value=(draft.email) required; }))
                    (field(answer, "name", lang.t("name"), html! { input #name type="text" name="name" value=(draft.name) maxlength="200"; }))
                    (field(answer, "role", lang.t("role"), html! {
                        select #role name="role" {
                            @for r in ROLES { option value=(r) selected[*r == draft.role] { (r) } }
                            @if user.is_platform_admin() && tenant == rampart_store::PLATFORM_TENANT_ID {
                                option value="platform_admin" selected[draft.role == "platform_admin"] { "platform_admin" }
                            }
                        }
                    }))
                    @if user.is_platform_admin() {
                        (field(answer, "password", lang.t("password"), html! {
                            input #password type="password" name="password" autocomplete="new-password" aria-describedby="password-hint";
                        }))
                        span.hint #password-hint { (lang.t("password_optional")) }
                    }
                    button type="submit" { (lang.t("create")) }
                }
            }
        }
    };
    super::respond(
        super::form_status(answer),
        user.shell("/console/users").page(lang.t("users"), body),
    )
}
