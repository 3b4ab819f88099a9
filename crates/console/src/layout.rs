//! The page shell (header, navigation, language switch), form helpers, and the headers
//! every console answer carries.

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::i18n::{Lang, Zone};
use crate::session::{Csrf, SignedIn};
use crate::Answer;

/// The console's CSP: nothing inline, nothing evaluated, nothing framed, forms only to
/// ourselves (platform-services brief, section 5.1).
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// Sets the page headers (the edge adds its defaults only where these are absent).
pub(crate) async fn page_headers(request: Request<Body>, next: Next) -> Response {
    let asset = request.uri().path().starts_with("/console/assets/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A navigation entry: shown to users whose role holds `permission`.
#[derive(Debug, Clone)]
pub struct NavItem {
    pub href: &'static str,
    /// An i18n key.
    pub label: &'static str,
    pub permission: Option<&'static str>,
}

/// A page's frame: the header for a signed-in user (or none), the navigation, the
/// language switch.
pub struct Shell<'a> {
    pub lang: Lang,
    pub csrf: &'a Csrf,
    pub user: Option<&'a SignedIn>,
    /// The `href` of the navigation entry to mark current.
    pub active: &'static str,
}

/// A rendered page (kept for apps that build their own frame).
pub type Page = Markup;

impl<'a> Shell<'a> {
    pub fn anonymous(lang: Lang, csrf: &'a Csrf) -> Shell<'a> {
        Shell {
            lang,
            csrf,
            user: None,
            active: "",
        }
    }

    pub fn page(&self, title: &str, content: Markup) -> Markup {
        let lang = self.lang;
        let zone = self.user.map(|u| u.browser.zone).unwrap_or(Zone::Wib);
        html! {
            (DOCTYPE)
            html lang=(lang.code()) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    // htmx without eval and without the styles it would inject inline
                    // (the CSP allows neither); the indicator styles are in console.css.
                    meta name="htmx-config" content=r#"{"allowEval":false,"allowScriptTags":false,"includeIndicatorStyles":false,"historyEnabled":false,"historyCacheSize":0}"#;
                    title { (title) " · " (lang.t("console")) }
                    link rel="stylesheet" href=(crate::assets::css_path());
                    script src=(crate::assets::htmx_path()) defer {}
                    script src=(crate::assets::js_path()) defer {}
                }
                body hx-headers=(format!(r#"{{"X-CSRF-Token":"{}"}}"#, self.csrf.0)) {
                    a.skip href="#content" { (lang.t("skip")) }
                    header.top {
                        a.brand href="/console/" { (lang.t("console")) }
                        @if let Some(u) = self.user {
                            span.who {
                                (lang.t("signed_in_as")) " " (u.me.email)
                                " (" (u.me.role) ", " (u.me.tenant_id) ")"
                            }
                            form method="post" action="/console/logout" {
                                (csrf_field(self.csrf))
                                button type="submit" { (lang.t("sign_out")) }
                            }
                        }
                    }
                    @if let Some(u) = self.user {
                        nav.main aria-label=(lang.t("console")) {
                            ul {
                                @for item in u.console.nav().iter().filter(|i| i.permission.is_none_or(|p| u.can(p))) {
                                    li {
                                        @if item.href == self.active {
                                            a href=(item.href) aria-current="page" { (lang.t(item.label)) }
                                        } @else {
                                            a href=(item.href) { (lang.t(item.label)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    main #content tabindex="-1" {
                        (content)
                    }
                    footer {
                        div.card {
                            form.row method="post" action="/console/preferences" {
                                (csrf_field(self.csrf))
                                input type="hidden" name="back" value=(self.active_or_home());
                                div {
                                    label for="pref-lang" { (lang.t("language")) }
                                    select #pref-lang name="lang" {
                                        option value="id" selected[lang == Lang::Id] { "Bahasa Indonesia" }
                                        option value="en" selected[lang == Lang::En] { "English" }
                                    }
                                }
                                div {
                                    label for="pref-tz" { (lang.t("time_zone")) }
                                    select #pref-tz name="tz" {
                                        @for z in Zone::ALL {
                                            option value=(z.name()) selected[z == zone] { (z.name()) }
                                        }
                                    }
                                }
                                button.secondary type="submit" { (lang.t("apply")) }
                            }
                        }
                    }
                }
            }
        }
    }

    fn active_or_home(&self) -> &'static str {
        if self.active.is_empty() {
            "/console/"
        } else {
            self.active
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(csrf: &Csrf) -> Markup {
    html! { input type="hidden" name="_csrf" value=(csrf.0); }
}

/// A labelled input with the API's reason for `name` under it, when the last answer
/// refused that field. `input` must carry `id=name`.
pub fn field(answer: &Answer, name: &str, label: &str, input: Markup) -> Markup {
    let error = answer.field_error(name);
    html! {
        label for=(name) { (label) }
        (input)
        @if let Some(reason) = error {
            span.field-error id=(format!("{name}-error")) role="alert" { (label) ": " (reason) }
        }
    }
}

/// A banner with the API's message when the answer failed for a reason that is not
/// one field's.
pub fn banner(answer: &Answer) -> Markup {
    html! {
        @if let Some(message) = answer.message().filter(|_| answer.code() != Some("invalid_field")) {
            p.alert role="alert" { (message) }
        }
    }
}

/// A bare page for refusals (403 CSRF, 404), in the user's language.
pub(crate) fn refused(lang: Lang, status: StatusCode, key: &'static str) -> Response {
    let body = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (lang.t(key)) }
                link rel="stylesheet" href=(crate::assets::css_path());
            }
            body { main #content { div.card.narrow {
                h1 { (lang.t(key)) }
                p { a href="/console/" { (lang.t("home")) } }
            } } }
        }
    };
    (status, body).into_response()
}

/// 503 when the store cannot be reached: no detail (it is in the log).
pub(crate) fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        html! { (DOCTYPE) html { head { title { "Unavailable" } } body { p { "The console is unavailable; try again shortly." } } } },
    )
        .into_response()
}

/// Pre-escaped markup we generated ourselves (the QR code's SVG): never user input.
pub(crate) fn trusted_svg(svg: &str) -> Markup {
    PreEscaped(svg.to_string())
}
