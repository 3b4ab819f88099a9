//! `/console/`: who you are, and where to go.

use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::html;

use crate::session::SignedIn;
use crate::Console;

pub(super) fn routes() -> Router<Console> {
    Router::new().route("/console/", get(home))
}

async fn home(user: SignedIn) -> Response {
    let lang = user.lang();
    let nav: Vec<_> = user
        .console
        .nav()
        .iter()
        .filter(|i| i.href != "/console/" && i.permission.is_none_or(|p| user.can(p)))
        .cloned()
        .collect();
    let page = user.shell("/console/").page(
        lang.t("home"),
        html! {
            h1 { (lang.t("home")) }
            div.card {
                dl.facts {
                    dt { (lang.t("name")) } dd { (user.me.name) }
                    dt { (lang.t("email")) } dd { (user.me.email) }
                    dt { (lang.t("role")) } dd { (user.me.role) }
                    dt { (lang.t("tenant")) } dd { code { (user.me.tenant_id) } }
                }
            }
            ul {
                @for item in &nav {
                    li { a href=(item.href) { (lang.t(item.label)) } }
                }
            }
        },
    );
    super::respond(axum::http::StatusCode::OK, page)
}
