//! `/console/account`: the signed-in user's own account: two-step sign-in (TOTP enrolment
//! with a QR code, recovery codes shown once, turning it off) and the password.

use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::layout::{banner, csrf_field, field, trusted_svg};
use crate::session::SignedIn;
use crate::{Answer, Console};

pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/console/account", get(account))
        .route("/console/account/mfa/enroll", post(enroll))
        .route("/console/account/mfa/confirm", post(confirm))
        .route("/console/account/mfa/disable", post(disable))
        .route("/console/account/password", post(change_password))
}

#[derive(Deserialize)]
struct PasswordForm {
    current_password: String,
    new_password: String,
}

async fn change_password(user: SignedIn, Form(form): Form<PasswordForm>) -> Response {
    let answer = user
        .post(
            "/api/v1/users/me/password",
            json!({ "current_password": form.current_password, "new_password": form.new_password }),
        )
        .await;
    if answer.ok() {
        return super::done("/console/account?done=password");
    }
    render(&user, &answer, html! {}, None)
}

#[derive(Deserialize, Default)]
struct Notice {
    done: Option<String>,
}

async fn account(
    user: SignedIn,
    axum::extract::Query(n): axum::extract::Query<Notice>,
) -> Response {
    let notice = match n.done.as_deref() {
        Some("password") => {
            html! { p.notice role="status" { (user.lang().t("password_changed")) } }
        }
        _ => html! {},
    };
    render(&user, &Answer::none(), notice, None)
}

/// A new secret: the QR code and the key, and the form for the first code. The secret
/// is the API's answer to this POST only; it is never put in a URL or a later page.
async fn enroll(user: SignedIn) -> Response {
    let answer = user.post("/api/v1/auth/mfa/totp/enroll", json!({})).await;
    if !answer.ok() {
        return render(&user, &answer, html! {}, None);
    }
    let lang = user.lang();
    let text = |k: &str| answer.body.get(k).and_then(Value::as_str).unwrap_or("");
    let qr = rampart_identity::totp::qr_svg(text("otpauth_uri"))
        .map(|svg| svg[svg.find("<svg").unwrap_or(0)..].to_string())
        .unwrap_or_default();
    let step = html! {
        div.card {
            h2 { (lang.t("mfa_enroll")) }
            p { (lang.t("mfa_scan")) }
            div.qr role="img" aria-label="QR code" { (trusted_svg(&qr)) }
            p { code.secret #totp-secret { (text("secret")) } }
            (confirm_form(&user, &Answer::none()))
        }
    };
    render(&user, &Answer::none(), step, None)
}

fn confirm_form(user: &SignedIn, answer: &Answer) -> Markup {
    let lang = user.lang();
    html! {
        form.stack method="post" action="/console/account/mfa/confirm" {
            (csrf_field(&user.browser.csrf))
            (field(answer, "code", lang.t("totp_code"), html! {
                input #code type="text" name="code" inputmode="numeric" autocomplete="one-time-code" required;
            }))
            button type="submit" { (lang.t("verify")) }
        }
    }
}

#[derive(Deserialize)]
struct CodeForm {
    code: String,
}

async fn confirm(user: SignedIn, Form(form): Form<CodeForm>) -> Response {
    let answer = user
        .post(
            "/api/v1/auth/mfa/totp/confirm",
            json!({ "code": form.code.trim() }),
        )
        .await;
    let codes: Option<Vec<String>> = answer
        .body
        .get("recovery_codes")
        .and_then(|c| serde_json::from_value(c.clone()).ok());
    match codes.filter(|_| answer.ok()) {
        Some(codes) => render(&user, &Answer::none(), html! {}, Some(&codes)),
        None => {
            let step = html! { div.card { h2 { (user.lang().t("mfa_enroll")) } (confirm_form(&user, &answer)) } };
            render(&user, &answer, step, None)
        }
    }
}

async fn disable(user: SignedIn, Form(form): Form<CodeForm>) -> Response {
    let answer = user
        .post(
            "/api/v1/auth/mfa/totp/disable",
            json!({ "code": form.code.trim() }),
        )
        .await;
    if answer.ok() {
        return super::done("/console/account");
    }
    render(&user, &answer, html! {}, None)
}

fn render(user: &SignedIn, answer: &Answer, step: Markup, codes: Option<&[String]>) -> Response {
    let lang = user.lang();
    let csrf = &user.browser.csrf;
    let body = html! {
        h1 { (lang.t("account")) }
        div.card {
            dl.facts {
                dt { (lang.t("name")) } dd { (user.me.name) }
                dt { (lang.t("email")) } dd { (user.me.email) }
                dt { (lang.t("role")) } dd { (user.me.role) }
            }
        }
        h2 { (lang.t("mfa")) }
        (banner(answer))
        @if let Some(codes) = codes {
            div.notice role="status" {
                p { strong { (lang.t("mfa_on")) } }
                h3 { (lang.t("recovery_codes")) }
                p { (lang.t("recovery_once")) }
                ul.secret #recovery-codes { @for c in codes { li { code { (c) } } } }
            }
        }
        (step)
        div.card {
            form.inline method="post" action="/console/account/mfa/enroll" {
                (csrf_field(csrf))
                button type="submit" { (lang.t("mfa_enroll")) }
            }
        }
        div.card {
            form.stack method="post" action="/console/account/mfa/disable" {
                (csrf_field(csrf))
                label for="disable-code" { (lang.t("totp_code")) span.hint { (lang.t("totp_hint")) } }
                input #disable-code type="text" name="code" autocomplete="one-time-code" required;
                button.danger type="submit" { (lang.t("disable")) " — " (lang.t("mfa")) }
            }
        }
        h2 { (lang.t("change_password")) }
        div.card {
            form.stack method="post" action="/console/account/password" {
                (csrf_field(csrf))
                (field(answer, "current_password", lang.t("current_password"), html! {
                    input #current_password type="password" name="current_password" autocomplete="current-password" required;
                }))
                (field(answer, "new_password", lang.t("new_password"), html! {
                    input #new_password type="password" name="new_password" autocomplete="new-password" required minlength="12";
                }))
                button type="submit" { (lang.t("change_password")) }
            }
        }
    };
    super::respond(
        super::form_status(answer),
        user.shell("/console/account").page(lang.t("account"), body),
    )
}
