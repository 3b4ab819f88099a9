//! `/console/tenants`: every tenant (platform admins), and a form to create one.

use axum::extract::Query;
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::json;

use crate::layout::{banner, csrf_field, field};
use crate::session::SignedIn;
use crate::{Answer, Console};

pub(super) fn routes() -> Router<Console> {
    Router::new().route("/console/tenants", get(list).post(create))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    after: Option<String>,
}

#[derive(Deserialize)]
struct Tenant {
    id: String,
    name: String,
    kind: String,
    status: String,
    created_at: String,
}

#[derive(Deserialize)]
struct TenantPage {
    items: Vec<Tenant>,
    next_cursor: Option<String>,
}

async fn list(user: SignedIn, Query(q): Query<ListQuery>) -> Response {
    render(&user, q.after.as_deref(), &Answer::none(), "", "", None).await
}

#[derive(Deserialize)]
struct CreateForm {
    name: String,
    kind: String,
}

async fn create(user: SignedIn, Form(form): Form<CreateForm>) -> Response {
    let answer = user
        .post(
            "/api/v1/tenants",
            json!({ "name": form.name, "kind": form.kind }),
        )
        .await;
    if answer.ok() {
        let id = answer.body.get("id").and_then(|v| v.as_str()).unwrap_or("");
        return render(&user, None, &Answer::none(), "", "", Some(id)).await;
    }
    render(&user, None, &answer, &form.name, &form.kind, None).await
}

async fn render(
    user: &SignedIn,
    after: Option<&str>,
    answer: &Answer,
    name: &str,
    kind: &str,
    created: Option<&str>,
) -> Response {
    let lang = user.lang();
    let listed = user
        .get(&format!(
            "/api/v1/tenants{}",
            crate::api::query(&[("after", after.unwrap_or("")), ("limit", "50")])
        ))
        .await;
    let Some(page) = listed.json::<TenantPage>() else {
        return super::failed(user, "/console/tenants", &listed);
    };
    let body: Markup = html! {
        h1 { (lang.t("tenants")) }
        @if let Some(id) = created { p.notice role="status" { (lang.t("created_ok")) " " code { (id) } } }
        @if page.items.is_empty() { (super::empty(user)) } @else {
            div.table-wrap { table {
                thead { tr { th { (lang.t("name")) } th { (lang.t("kind")) } th { (lang.t("status")) } th { (lang.t("id")) } th { (lang.t("created")) } } }
                tbody {
                    @for t in &page.items {
                        tr {
                            td { a href=(format!("/console/users?tenant={}", crate::api::encode(&t.id))) { (t.name) } }
                            td { (t.kind) } td { (t.status) } td { code { (t.id) } }
                            td { (user.browser.zone.show(&t.created_at)) }
                        }
                    }
                }
            } }
        }
        (super::pager(user, "/console/tenants", "", "after", page.next_cursor.as_deref(), after.is_some()))
        h2 { (lang.t("new_tenant")) }
        div.card {
            (banner(answer))
            form.stack method="post" action="/console/tenants" {
                (csrf_field(&user.browser.csrf))
                (field(answer, "name", lang.t("name"), html! { input #name type="text" name="name" value=(name) required maxlength="200"; }))
                (field(answer, "kind", lang.t("kind"), html! {
                    select #kind name="kind" {
                        @for k in rampart_store::TenantKind::CREATABLE.iter().map(|k| k.as_str()) { option value=(k) selected[k == kind] { (k) } }
                    }
                }))
                button type="submit" { (lang.t("create")) }
            }
        }
    };
    super::respond(
        super::form_status(answer),
        user.shell("/console/tenants").page(lang.t("tenants"), body),
    )
}
