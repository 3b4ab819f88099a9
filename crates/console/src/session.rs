//! Browser sessions, sign-in (password, then TOTP when enrolled), sign-out, and CSRF.
//!
//! **Cookie.** `rampart_console` (`__Host-rampart_console` under TLS): a 256-bit random
//! secret, `HttpOnly; SameSite=Strict; Path=/` (plus `Secure` under TLS). The database
//! keeps only its digest, in a `console_sessions` row bound to the identity session the
//! login started; every page's API calls run as that identity session
//! ([`rampart_identity::ConsoleCaller`]), so logout, revocation or a disabled user end the
//! browser's session on its next request; so does a role change (the row keeps the role
//! at sign-in, and a page that finds another ends the session). No token ever reaches the browser: not in a cookie it can read, not in
//! `localStorage`, not in a URL. The login's refresh token is dropped on the floor.
//!
//! **Timeouts.** Idle (`console.idle_timeout_mins`, 30) and absolute
//! (`console.absolute_timeout_hours`, 12), both enforced server-side.
//!
//! **CSRF.** Every request other than GET/HEAD must carry a synchroniser token, in the
//! form field `_csrf` or the `X-CSRF-Token` header (htmx), equal to
//! `sha256("rampart-console-csrf" ‖ cookie secret)`: only a page rendered for this cookie
//! knows it. Before a session exists (the sign-in forms), a `rampart_pre` cookie plays the
//! same part (double submit, keyed to a secret the attacker cannot set across sites under
//! `SameSite=Strict`). On top, `Sec-Fetch-Site: cross-site` and an `Origin` whose host is
//! not ours are refused outright. The check is middleware over the whole console, so no
//! route can forget it.

use axum::body::Body;
use axum::extract::{FromRef, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{html, Markup};
use rampart_identity::ConsoleCaller;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::Origin;
use crate::i18n::{Lang, Zone};
use crate::layout::{self, field, Shell};
use crate::Console;

const SESSION_COOKIE: &str = "rampart_console";
const SECURE_SESSION_COOKIE: &str = "__Host-rampart_console";
const PRE_COOKIE: &str = "rampart_pre";
const SECURE_PRE_COOKIE: &str = "__Host-rampart_pre";
/// Forms larger than this are refused before parsing (the CSRF check reads the body).
const MAX_FORM_BYTES: usize = 256 * 1024;

pub(crate) fn routes() -> Router<Console> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/login", get(login_page).post(login))
        .route("/console/login/mfa", post(login_mfa))
        .route("/console/logout", post(logout))
        .route("/console/preferences", post(preferences))
}

/// The value of cookie `name`, if the request has it.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn csrf_of(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"rampart-console-csrf\0");
    h.update(secret.as_bytes());
    crate::assets::hex(&h.finalize())
}

fn names(tls: bool) -> (&'static str, &'static str) {
    if tls {
        (SECURE_SESSION_COOKIE, SECURE_PRE_COOKIE)
    } else {
        (SESSION_COOKIE, PRE_COOKIE)
    }
}

fn set_cookie(name: &str, value: &str, tls: bool, max_age: Option<u64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if tls {
        c.push_str("; Secure");
    }
    if let Some(secs) = max_age {
        c.push_str(&format!("; Max-Age={secs}"));
    }
    HeaderValue::from_str(&c).unwrap_or(HeaderValue::from_static("x=; Max-Age=0"))
}

/// The CSRF token a page embeds in its forms (and htmx sends as `X-CSRF-Token`).
#[derive(Debug, Clone)]
pub struct Csrf(pub String);

/// Any browser request: its language, zone, the CSRF token of its session or pre-session
/// cookie, and (when the pre-session cookie is new) the cookie to set.
#[derive(Debug, Clone)]
pub struct Browser {
    pub lang: Lang,
    pub zone: Zone,
    pub csrf: Csrf,
    pub origin: Origin,
    new_cookie: Option<HeaderValue>,
}

impl Browser {
    /// `page` with the pre-session cookie set when this request had none.
    pub fn respond(&self, status: StatusCode, page: Markup) -> Response {
        let mut response = (status, page).into_response();
        if let Some(c) = &self.new_cookie {
            response.headers_mut().append(header::SET_COOKIE, c.clone());
        }
        response
    }
}

impl<S> FromRequestParts<S> for Browser
where
    Console: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Browser, Self::Rejection> {
        let console = Console::from_ref(state);
        let tls = console.settings().tls;
        let (session_name, pre_name) = names(tls);
        let (secret, new_cookie) = match cookie(&parts.headers, session_name)
            .or_else(|| cookie(&parts.headers, pre_name))
        {
            Some(s) => (s.to_string(), None),
            None => {
                let s = rampart_crypto::random_secret("", 32);
                let c = set_cookie(pre_name, &s, tls, None);
                (s, Some(c))
            }
        };
        Ok(Browser {
            lang: Lang::of(&parts.headers),
            zone: Zone::of(&parts.headers),
            csrf: Csrf(csrf_of(&secret)),
            origin: Origin::of(parts),
            new_cookie,
        })
    }
}

/// The user as `/api/v1/users/me` describes them.
#[derive(Debug, Clone, Deserialize)]
pub struct Me {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub name: String,
    pub role: String,
}

/// A signed-in browser: its [`Browser`] facts, the user, and an [`Origin`] whose API
/// calls run as the user's identity session. Without a live session, the extractor
/// redirects to the sign-in page.
#[derive(Clone)]
pub struct SignedIn {
    pub browser: Browser,
    pub me: Me,
    pub console: Console,
    permissions: std::sync::Arc<std::collections::BTreeSet<String>>,
}

impl SignedIn {
    /// The API, as this user.
    pub async fn get(&self, path: &str) -> crate::Answer {
        self.console.api().get(&self.browser.origin, path).await
    }
    pub async fn post(&self, path: &str, body: serde_json::Value) -> crate::Answer {
        self.console
            .api()
            .post(&self.browser.origin, path, body)
            .await
    }
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> crate::Answer {
        self.console
            .api()
            .call(&self.browser.origin, method, path, body)
            .await
    }

    /// The role holds `permission` (to draw navigation and buttons; the API decides).
    pub fn can(&self, permission: &str) -> bool {
        self.permissions.contains(permission)
    }

    pub fn is_platform_admin(&self) -> bool {
        self.me.role == "platform_admin"
    }

    pub fn lang(&self) -> Lang {
        self.browser.lang
    }

    /// The page shell for this user, with `active` highlighted in the navigation.
    pub fn shell(&self, active: &'static str) -> Shell<'_> {
        Shell {
            lang: self.browser.lang,
            csrf: &self.browser.csrf,
            user: Some(self),
            active,
        }
    }
}

/// The rejection when no session is live: to sign-in, saying why when a session lapsed.
pub struct SignInFirst {
    ended: bool,
}

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        Redirect::to(if self.ended {
            "/console/login?ended=1"
        } else {
            "/console/login"
        })
        .into_response()
    }
}

impl<S> FromRequestParts<S> for SignedIn
where
    Console: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<SignedIn, Response> {
        let console = Console::from_ref(state);
        let tls = console.settings().tls;
        let (session_name, _) = names(tls);
        let Some(secret) = cookie(&parts.headers, session_name).map(str::to_string) else {
            return Err(SignInFirst { ended: false }.into_response());
        };
        let digest = rampart_crypto::secret_digest(&secret);
        let idle_ms = console.settings().idle_timeout.as_millis() as i64;
        let row = match console
            .identity()
            .store()
            .console_session(&digest, idle_ms)
            .await
        {
            Ok(Some(row)) => row,
            Ok(None) => return Err(ended(tls)),
            Err(e) => {
                tracing::error!(error = %e, "console session lookup failed");
                return Err(layout::unavailable());
            }
        };
        let Ok(mut browser) = Browser::from_request_parts(parts, state).await;
        browser.origin.extensions.insert(ConsoleCaller {
            tenant_id: row.tenant_id.clone(),
            session_id: row.session_id.clone(),
            user_id: row.user_id.clone(),
        });
        let me = console.api().get(&browser.origin, "/api/v1/users/me").await;
        let Some(me) = me.json::<Me>() else {
            if me.signed_out() {
                // The identity session is over (logout elsewhere, revoked, disabled,
                // role changed): so is the browser's.
                let _ = console
                    .identity()
                    .store()
                    .end_console_session(&row.tenant_id, &digest)
                    .await;
                return Err(ended(tls));
            }
            return Err(layout::unavailable());
        };
        if me.role != row.role {
            // A new grant (up or down) means signing in again: no page stays open with
            // permissions the user no longer has, or gains ones silently.
            let _ = console
                .identity()
                .store()
                .end_console_session(&row.tenant_id, &digest)
                .await;
            return Err(ended(tls));
        }
        let role = me.role.parse().unwrap_or(rampart_store::Role::Member);
        let permissions = console.identity().rbac().permissions_of(role);
        Ok(SignedIn {
            browser,
            me,
            console,
            permissions,
        })
    }
}

/// To sign-in, clearing the dead session's cookie.
fn ended(tls: bool) -> Response {
    let mut r = SignInFirst { ended: true }.into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(names(tls).0, "", tls, Some(0)),
    );
    r
}

/// Refuses cross-site requests and state changes without the CSRF token (see the module
/// documentation). GET and HEAD change nothing in the console, so they pass.
pub(crate) async fn refuse_cross_site(
    State(console): State<Console>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let lang = Lang::of(headers);
    if parts.method == Method::GET || parts.method == Method::HEAD {
        if headers
            .get("sec-fetch-site")
            .is_some_and(|v| v == "cross-site")
            && headers
                .get("sec-fetch-mode")
                .is_some_and(|v| v != "navigate")
        {
            // A cross-site subresource load (an <img> or fetch aimed at a page): refused;
            // following a link from elsewhere (navigate) is fine.
            return layout::refused(lang, StatusCode::FORBIDDEN, "forbidden");
        }
        return next.run(Request::from_parts(parts, body)).await;
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v == "cross-site" || v == "same-site")
        || !origin_is_ours(headers)
    {
        return layout::refused(lang, StatusCode::FORBIDDEN, "csrf_failed");
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return layout::refused(lang, StatusCode::PAYLOAD_TOO_LARGE, "csrf_failed");
    };
    let presented = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| form_urlencoded_value(&bytes, "_csrf"));
    let (session_name, pre_name) = names(console.settings().tls);
    let expected: Vec<String> = [session_name, pre_name]
        .iter()
        .filter_map(|n| cookie(headers, n))
        .map(csrf_of)
        .collect();
    let ok = presented.is_some_and(|p| {
        expected
            .iter()
            .any(|e| bool::from(e.as_bytes().ct_eq(p.as_bytes())))
    });
    if !ok {
        return layout::refused(lang, StatusCode::FORBIDDEN, "csrf_failed");
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// `Origin` absent (older browsers send none on same-origin form posts) or naming our
/// own `Host`. Under `Referrer-Policy: no-referrer` (ours) Chromium sends `Origin: null`
/// even from our own pages; that passes only with `Sec-Fetch-Site: same-origin`, which a
/// page elsewhere (a sandboxed frame included) cannot send.
fn origin_is_ours(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if origin == "null" {
        return headers
            .get("sec-fetch-site")
            .is_some_and(|v| v == "same-origin");
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    origin_host.eq_ignore_ascii_case(host)
}

/// The first value of `name` in a urlencoded body.
fn form_urlencoded_value(body: &[u8], name: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Token {
        #[serde(rename = "_csrf")]
        csrf: Option<String>,
    }
    debug_assert_eq!(name, "_csrf");
    serde_urlencoded::from_bytes::<Token>(body)
        .ok()
        .and_then(|t| t.csrf)
}

// --- Sign-in -------------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub(crate) struct LoginNotice {
    ended: Option<String>,
    out: Option<String>,
}

async fn login_page(browser: Browser, Query(q): Query<LoginNotice>) -> Response {
    let lang = browser.lang;
    let notice = if q.ended.is_some() {
        Some(lang.t("session_over"))
    } else if q.out.is_some() {
        Some(lang.t("signed_out"))
    } else {
        None
    };
    browser.respond(
        StatusCode::OK,
        login_form(&browser, "", notice, None, &crate::Answer::none()),
    )
}

fn login_form(
    browser: &Browser,
    email: &str,
    notice: Option<&str>,
    error: Option<&str>,
    answer: &crate::Answer,
) -> Markup {
    let lang = browser.lang;
    let shell = Shell::anonymous(lang, &browser.csrf);
    shell.page(
        lang.t("sign_in"),
        html! {
            div.card.narrow {
                h1 { (lang.t("sign_in")) }
                @if let Some(n) = notice { p.notice role="status" { (n) } }
                @if let Some(e) = error { p.alert role="alert" { (e) } }
                form.stack method="post" action="/console/login" {
                    (layout::csrf_field(&browser.csrf))
                    (field(answer, "email", lang.t("email"), html! {
                        input #email type="email" name="email" value=(email) autocomplete="username" required;
                    }))
                    (field(answer, "password", lang.t("password"), html! {
                        input #password type="password" name="password" autocomplete="current-password" required;
                    }))
                    button type="submit" { (lang.t("sign_in")) }
                }
            }
        },
    )
}

fn mfa_form(browser: &Browser, mfa_token: &str, error: Option<&str>) -> Markup {
    let lang = browser.lang;
    Shell::anonymous(lang, &browser.csrf).page(
        lang.t("mfa"),
        html! {
            div.card.narrow {
                h1 { (lang.t("mfa")) }
                @if let Some(e) = error { p.alert role="alert" { (e) } }
                form.stack method="post" action="/console/login/mfa" {
                    (layout::csrf_field(&browser.csrf))
                    // The challenge travels in the form body, never in a URL; it is good
                    // for five minutes and for this one sign-in.
                    input type="hidden" name="mfa_token" value=(mfa_token);
                    label for="code" { (lang.t("totp_code"))
                        span.hint { (lang.t("totp_hint")) } }
                    input #code type="text" name="code" inputmode="numeric" autocomplete="one-time-code" required autofocus;
                    button type="submit" { (lang.t("verify")) }
                }
            }
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
}

async fn login(
    State(console): State<Console>,
    browser: Browser,
    Form(form): Form<LoginForm>,
) -> Response {
    let answer = console
        .api()
        .post(
            &browser.origin,
            "/api/v1/auth/login",
            json!({ "email": form.email, "password": form.password }),
        )
        .await;
    signed_in_or_form(&console, &browser, answer, Some(&form.email), None).await
}

#[derive(Deserialize)]
struct MfaForm {
    mfa_token: String,
    code: String,
}

async fn login_mfa(
    State(console): State<Console>,
    browser: Browser,
    Form(form): Form<MfaForm>,
) -> Response {
    let answer = console
        .api()
        .post(
            &browser.origin,
            "/api/v1/auth/mfa",
            json!({ "mfa_token": form.mfa_token, "code": form.code.trim() }),
        )
        .await;
    signed_in_or_form(&console, &browser, answer, None, Some(&form.mfa_token)).await
}

/// After the API's answer to a login or an MFA step: a session and the overview, the
/// MFA form, or the form again with the API's message.
async fn signed_in_or_form(
    console: &Console,
    browser: &Browser,
    answer: crate::Answer,
    email: Option<&str>,
    mfa_token: Option<&str>,
) -> Response {
    if let Some(token) = answer.body.get("mfa_token").and_then(|v| v.as_str()) {
        return browser.respond(StatusCode::OK, mfa_form(browser, token, None));
    }
    if let Some(access) = answer.body.get("access_token").and_then(|v| v.as_str()) {
        return match start(console, access).await {
            Ok(cookie) => {
                let mut r = Redirect::to("/console/").into_response();
                r.headers_mut().append(header::SET_COOKIE, cookie);
                r
            }
            Err(r) => r,
        };
    }
    let status = if answer.status.is_client_error() {
        answer.status
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let message = answer.message().unwrap_or("error");
    match mfa_token {
        // A wrong code keeps the challenge (the API allows a few tries); an expired or
        // spent one sends the user back to the password.
        Some(token) if answer.code() == Some("invalid_mfa_code") => {
            browser.respond(status, mfa_form(browser, token, Some(message)))
        }
        _ => browser.respond(
            status,
            login_form(browser, email.unwrap_or(""), None, Some(message), &answer),
        ),
    }
}

/// A browser session for the identity session `access` names: the cookie to set.
async fn start(console: &Console, access: &str) -> Result<HeaderValue, Response> {
    let caller = console
        .identity()
        .token_session(access)
        .await
        .map_err(|_| layout::unavailable())?;
    let mut origin = crate::api::Origin::default();
    origin.extensions.insert(caller.clone());
    let me = console
        .api()
        .get(&origin, "/api/v1/users/me")
        .await
        .json::<Me>()
        .ok_or_else(layout::unavailable)?;
    let secret = rampart_crypto::random_secret("", 32);
    let expires_at =
        rampart_store::now_ms() + console.settings().absolute_timeout.as_millis() as i64;
    console
        .identity()
        .store()
        .create_console_session(
            &caller.tenant_id,
            &rampart_crypto::secret_digest(&secret),
            &caller.session_id,
            &caller.user_id,
            &me.role,
            expires_at,
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot record a console session");
            layout::unavailable()
        })?;
    let tls = console.settings().tls;
    Ok(set_cookie(names(tls).0, &secret, tls, None))
}

async fn logout(State(console): State<Console>, headers: HeaderMap, user: SignedIn) -> Response {
    // Ends the identity session first: that is what stops every other use of it.
    let _ = user.post("/api/v1/auth/logout", json!({})).await;
    let tls = console.settings().tls;
    if let Some(secret) = cookie(&headers, names(tls).0) {
        let _ = console
            .identity()
            .store()
            .end_console_session(&user.me.tenant_id, &rampart_crypto::secret_digest(secret))
            .await;
    }
    let mut r = Redirect::to("/console/login?out=1").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(names(tls).0, "", tls, Some(0)),
    );
    r
}

#[derive(Deserialize)]
struct Preferences {
    lang: Option<String>,
    tz: Option<String>,
    back: Option<String>,
}

/// The language and zone switch: two long-lived preference cookies (not secrets).
async fn preferences(State(console): State<Console>, Form(p): Form<Preferences>) -> Response {
    let tls = console.settings().tls;
    // Back to a console page only: never an open redirect.
    let back = p
        .back
        .filter(|b| b.starts_with("/console/") && !b.starts_with("//") && !b.contains('\\'))
        .unwrap_or_else(|| "/console/".into());
    let mut r = Redirect::to(&back).into_response();
    let year = Some(365 * 24 * 3600);
    if let Some(l) = p.lang.as_deref().and_then(Lang::parse) {
        r.headers_mut().append(
            header::SET_COOKIE,
            set_cookie("rampart_lang", l.code(), tls, year),
        );
    }
    if let Some(z) = p.tz.as_deref().and_then(Zone::parse) {
        r.headers_mut().append(
            header::SET_COOKIE,
            set_cookie("rampart_tz", z.name(), tls, year),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "xrampart_console=a; rampart_console=b".parse().unwrap(),
        );
        assert_eq!(cookie(&h, "rampart_console"), Some("b"));
        assert_eq!(cookie(&h, "rampart_pre"), None);
    }

    #[test]
    fn cookie_attributes_follow_tls() {
        let plain = set_cookie("rampart_console", "s", false, None);
        assert_eq!(
            plain,
            "rampart_console=s; Path=/; HttpOnly; SameSite=Strict"
        );
        let tls = set_cookie(SECURE_SESSION_COOKIE, "s", true, None);
        assert_eq!(
            tls,
            "__Host-rampart_console=s; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
    }

    #[test]
    fn csrf_tokens_depend_on_the_secret() {
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert_eq!(csrf_of("a"), csrf_of("a"));
        assert_eq!(csrf_of("a").len(), 64);
    }

    #[test]
    fn origins_must_name_our_host() {
        let mut h = HeaderMap::new();
        assert!(origin_is_ours(&h));
        h.insert(header::HOST, "console.example:8080".parse().unwrap());
        h.insert(
            header::ORIGIN,
            "https://console.example:8080".parse().unwrap(),
        );
        assert!(origin_is_ours(&h));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!origin_is_ours(&h));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!origin_is_ours(&h));
        h.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(origin_is_ours(&h));
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!origin_is_ours(&h));
    }

    #[test]
    fn the_token_is_read_from_a_form_body() {
        assert_eq!(
            form_urlencoded_value(b"a=1&_csrf=abc&b=2", "_csrf").as_deref(),
            Some("abc")
        );
        assert_eq!(form_urlencoded_value(b"a=1", "_csrf"), None);
    }
}
