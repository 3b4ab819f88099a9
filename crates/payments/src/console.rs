//! The payments pages of the console (the merchant portal of seed 003): payments with
//! filters, a payment's detail and history with capture / cancel / refund, the review
//! queue, the fraud rules editor, and the transaction report with a daily volume chart
//! and CSV download. Every page calls the payments API as the signed-in user.

use std::collections::BTreeMap;

use axum::extract::{Path, Query};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{html, Markup};
use rampart_console::api::{encode, query};
use rampart_console::pages::{done, empty, failed, form_status, pager, respond};
use rampart_console::{banner, csrf_field, field, Answer, Console, Lang, NavItem, SignedIn};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{FRAUD_RULES_WRITE, PAYMENTS_READ};

/// The payments pages, for `rampart::app::console`.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console/payments", get(list))
        .route("/console/payments/review", get(review))
        .route("/console/payments/report", get(report))
        .route("/console/payments/report.csv", get(report_csv))
        .route("/console/payments/fraud-rules", get(rules).post(save_rules))
        .route("/console/payments/{id}", get(detail))
        .route("/console/payments/{id}/{action}", post(act))
}

pub fn nav() -> Vec<NavItem> {
    vec![
        NavItem {
            href: "/console/payments",
            label: "payments",
            permission: Some(PAYMENTS_READ),
        },
        NavItem {
            href: "/console/payments/review",
            label: "review",
            permission: Some(crate::api::PAYMENTS_REVIEW),
        },
        NavItem {
            href: "/console/payments/report",
            label: "report",
            permission: Some(PAYMENTS_READ),
        },
        NavItem {
            href: "/console/payments/fraud-rules",
            label: "fraud_rules",
            permission: Some(FRAUD_RULES_WRITE),
        },
    ]
}

/// The GET pages, for the console sweep (`{id}` is a payment id).
pub const PAGE_PATHS: &[&str] = &[
    "/console/payments",
    "/console/payments/review",
    "/console/payments/report",
    "/console/payments/fraud-rules",
    "/console/payments/{id}",
];

#[derive(Deserialize)]
struct Card {
    last4: String,
    brand: String,
}

#[derive(Deserialize)]
struct Fraud {
    score: i64,
    decision: String,
    #[serde(default)]
    reasons: Vec<String>,
}

#[derive(Deserialize)]
struct Payment {
    id: String,
    status: String,
    amount: i64,
    currency: String,
    captured_amount: i64,
    refunded_amount: i64,
    card: Card,
    fraud: Fraud,
    description: Option<String>,
    reference: Option<String>,
    created_at: String,
}

#[derive(Deserialize)]
struct PaymentPage {
    data: Vec<Payment>,
    next_cursor: Option<String>,
}

/// Minor units as the currency writes them (`12.50 USD`, `15000 IDR`).
fn money(amount: i64, currency: &str) -> String {
    let exp = crate::currency::minor_units(currency).unwrap_or(2) as u32;
    if exp == 0 {
        return format!("{amount} {currency}");
    }
    let unit = 10_i64.pow(exp);
    let sign = if amount < 0 { "-" } else { "" };
    let a = amount.abs();
    format!(
        "{sign}{}.{:0width$} {currency}",
        a / unit,
        a % unit,
        width = exp as usize
    )
}

#[derive(Deserialize, Default)]
struct ListFilter {
    #[serde(default)]
    status: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    cursor: String,
}

/// `2026-12-01` or an RFC 3339 time from a filter field, for the API (days are WIB's).
fn day_or_time(s: &str) -> String {
    if s.len() == 10 && s.as_bytes()[4] == b'-' {
        format!("{s}T00:00:00+07:00")
    } else {
        s.to_string()
    }
}

fn table(user: &SignedIn, payments: &[Payment], actions: bool) -> Markup {
    let lang = user.lang();
    let zone = user.browser.zone;
    html! {
        div.table-wrap { table {
            thead { tr {
                th { (lang.t("created")) } th.num { (lang.t("amount")) } th { (lang.t("status")) }
                th { (lang.t("card")) } th.num { (lang.t("fraud")) } th { (lang.t("description")) }
                @if actions { th { (lang.t("action")) } }
            } }
            tbody {
                @for p in payments {
                    tr {
                        td { a href=(format!("/console/payments/{}", encode(&p.id))) { (zone.show(&p.created_at)) } }
                        td.num { (money(p.amount, &p.currency)) }
                        td { (p.status) }
                        td { (p.card.brand) " •••• " (p.card.last4) }
                        td.num { (p.fraud.score) }
                        td { (p.description.as_deref().unwrap_or("")) }
                        @if actions {
                            td {
                                (action_form(user, &p.id, "approve", lang.t("approve"), "secondary"))
                                " "
                                (action_form(user, &p.id, "reject", lang.t("reject"), "danger"))
                            }
                        }
                    }
                }
            }
        } }
    }
}

fn action_form(user: &SignedIn, id: &str, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(format!("/console/payments/{}/{action}", encode(id))) {
            (csrf_field(&user.browser.csrf))
            button class=(class) type="submit" { (label) }
        }
    }
}

async fn list(user: SignedIn, Query(f): Query<ListFilter>) -> Response {
    let lang = user.lang();
    let (from, to) = (day_or_time(&f.from), day_or_time(&f.to));
    let filters = [
        ("status", f.status.as_str()),
        ("from", f.from.as_str()),
        ("to", f.to.as_str()),
    ];
    let answer = user
        .get(&format!(
            "/api/v1/payments{}",
            query(&[
                ("status", &f.status),
                ("from", &from),
                ("to", &to),
                ("cursor", &f.cursor),
                ("limit", "50"),
            ])
        ))
        .await;
    if !answer.ok() && answer.status != StatusCode::UNPROCESSABLE_ENTITY {
        return failed(&user, "/console/payments", &answer);
    }
    let page = answer.json::<PaymentPage>();
    let body = html! {
        h1 { (lang.t("payments")) }
        form.row.card method="get" action="/console/payments" role="search" {
            div {
                label for="status" { (lang.t("status")) }
                select #status name="status" {
                    option value="" { (lang.t("all")) }
                    @for s in crate::api::STATES { option value=(s) selected[*s == f.status] { (s) } }
                }
            }
            div { (field(&answer, "from", lang.t("from"), html! { input #from type="text" name="from" value=(f.from) placeholder="2026-12-01"; })) }
            div { (field(&answer, "to", lang.t("to"), html! { input #to type="text" name="to" value=(f.to) placeholder="2026-12-31"; })) }
            button type="submit" { (lang.t("filter")) }
        }
        (banner(&answer))
        @if let Some(page) = &page {
            @if page.data.is_empty() { (empty(&user)) } @else { (table(&user, &page.data, false)) }
            (pager(&user, "/console/payments", &query(&filters), "cursor", page.next_cursor.as_deref(), !f.cursor.is_empty()))
        }
    };
    respond(
        form_status(&answer),
        user.shell("/console/payments")
            .page(lang.t("payments"), body),
    )
}

#[derive(Deserialize, Default)]
struct Cursor {
    #[serde(default)]
    cursor: String,
}

async fn review(user: SignedIn, Query(c): Query<Cursor>) -> Response {
    let lang = user.lang();
    let answer = user
        .get(&format!(
            "/api/v1/payments{}",
            query(&[("status", "review"), ("cursor", &c.cursor), ("limit", "50")])
        ))
        .await;
    let Some(page) = answer.json::<PaymentPage>() else {
        return failed(&user, "/console/payments/review", &answer);
    };
    let can_review = user.can(crate::api::PAYMENTS_REVIEW);
    let body = html! {
        h1 { (lang.t("review")) }
        @if page.data.is_empty() { (empty(&user)) } @else { (table(&user, &page.data, can_review)) }
        (pager(&user, "/console/payments/review", "", "cursor", page.next_cursor.as_deref(), !c.cursor.is_empty()))
    };
    respond(
        StatusCode::OK,
        user.shell("/console/payments/review")
            .page(lang.t("review"), body),
    )
}

async fn detail(user: SignedIn, Path(id): Path<String>) -> Response {
    render_detail(&user, &id, &Answer::none(), None).await
}

async fn render_detail(
    user: &SignedIn,
    id: &str,
    answer: &Answer,
    notice: Option<&'static str>,
) -> Response {
    let lang = user.lang();
    let zone = user.browser.zone;
    let fetched = user.get(&format!("/api/v1/payments/{}", encode(id))).await;
    let Some(p) = fetched.json::<Payment>() else {
        return failed(user, "/console/payments", &fetched);
    };
    // The state history is the payment's audit trail (every change is audited).
    let history = if user.can(rampart_identity::rbac::AUDIT_READ) {
        user.get(&format!(
            "/api/v1/audit-events{}",
            query(&[("target_id", id), ("limit", "100")])
        ))
        .await
        .body
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    } else {
        Vec::new()
    };
    let can_write = user.can(crate::api::PAYMENTS_WRITE);
    let can_refund = user.can(crate::api::PAYMENTS_REFUND);
    let can_review = user.can(crate::api::PAYMENTS_REVIEW);
    let left = p.captured_amount - p.refunded_amount;
    let text = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let body = html! {
        h1 { (lang.t("payments")) " · " (money(p.amount, &p.currency)) }
        @if let Some(n) = notice { p.notice role="status" { (lang.t(n)) } }
        (banner(answer))
        div.card {
            dl.facts {
                dt { (lang.t("id")) } dd { code { (p.id) } }
                dt { (lang.t("status")) } dd { strong { (p.status) } }
                dt { (lang.t("amount")) } dd { (money(p.amount, &p.currency)) }
                dt { (lang.t("captured")) } dd { (money(p.captured_amount, &p.currency)) }
                dt { (lang.t("refunded")) } dd { (money(p.refunded_amount, &p.currency)) }
                dt { (lang.t("card")) } dd { (p.card.brand) " •••• " (p.card.last4) }
                dt { (lang.t("fraud")) } dd { (p.fraud.score) " (" (p.fraud.decision) ")" @for r in &p.fraud.reasons { " " code { (r) } } }
                dt { (lang.t("description")) } dd { (p.description.as_deref().unwrap_or("")) }
                dt { (lang.t("reference")) } dd { (p.reference.as_deref().unwrap_or("")) }
                dt { (lang.t("created")) } dd { (zone.show(&p.created_at)) }
            }
        }
        div.card {
            @if can_write && p.status == "authorized" {
                (action_form(user, &p.id, "capture", lang.t("capture"), ""))
                " "
                (action_form(user, &p.id, "cancel", lang.t("cancel"), "danger"))
            }
            @if can_review && p.status == "review" {
                (action_form(user, &p.id, "approve", lang.t("approve"), "secondary"))
                " "
                (action_form(user, &p.id, "reject", lang.t("reject"), "danger"))
            }
            @if can_refund && left > 0 {
                form.stack method="post" action=(format!("/console/payments/{}/refund", encode(&p.id))) data-confirm=(lang.t("refund_confirm")) {
                    (csrf_field(&user.browser.csrf))
                    (field(answer, "amount", lang.t("amount"), html! {
                        input #amount type="number" name="amount" min="1" max=(left) aria-describedby="amount-hint";
                    }))
                    span.hint #amount-hint { (lang.t("amount_hint")) }
                    button.danger type="submit" { (lang.t("refund")) }
                }
            }
        }
        h2 { (lang.t("history")) }
        @if history.is_empty() { (empty(user)) } @else {
            div.table-wrap { table {
                thead { tr { th { (lang.t("time")) } th { (lang.t("action")) } th { (lang.t("actor")) } th { (lang.t("detail")) } } }
                tbody {
                    @for e in history.iter().rev() {
                        tr {
                            td { (zone.show(&text(e, "occurred_at"))) }
                            td { code { (text(e, "action")) } }
                            td { (text(e, "actor_type")) " " code { (text(e, "actor_id")) } }
                            td { @if let Some(c) = e.get("changes").filter(|c| !c.is_null()) { code { (c.to_string()) } } }
                        }
                    }
                }
            } }
        }
    };
    respond(
        form_status(answer),
        user.shell("/console/payments")
            .page(lang.t("payments"), body),
    )
}

#[derive(Deserialize, Default)]
struct AmountForm {
    #[serde(default)]
    amount: String,
}

async fn act(
    user: SignedIn,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<AmountForm>,
) -> Response {
    let api_action = match action.as_str() {
        "capture" | "cancel" | "approve" | "reject" => action.as_str(),
        "refund" => "refunds",
        _ => {
            return failed(
                &user,
                "/console/payments",
                &Answer::none_with(StatusCode::NOT_FOUND),
            )
        }
    };
    let amount = form.amount.trim();
    let body = if amount.is_empty() {
        json!({})
    } else {
        match amount.parse::<i64>() {
            Ok(n) => json!({ "amount": n }),
            Err(_) => json!({ "amount": amount }),
        }
    };
    let answer = user
        .call(
            Method::POST,
            &format!("/api/v1/payments/{}/{api_action}", encode(&id)),
            Some(body),
        )
        .await;
    if answer.ok() {
        if matches!(action.as_str(), "approve" | "reject") {
            return done("/console/payments/review");
        }
        return done(&format!("/console/payments/{}", encode(&id)));
    }
    render_detail(&user, &id, &answer, None).await
}

#[derive(Deserialize, Default)]
struct ReportFilter {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

#[derive(Deserialize)]
struct Total {
    status: String,
    currency: String,
    count: u64,
    amount: i64,
    captured_amount: i64,
    refunded_amount: i64,
}

#[derive(Deserialize)]
struct ReportRow {
    created_at: String,
    currency: String,
    amount: i64,
}

#[derive(Deserialize)]
struct Report {
    from: String,
    to: String,
    totals: Vec<Total>,
    rows: Vec<ReportRow>,
}

async fn report(user: SignedIn, Query(f): Query<ReportFilter>) -> Response {
    let lang = user.lang();
    let (from, to) = (day_or_time(&f.from), day_or_time(&f.to));
    let answer = user
        .get(&format!(
            "/api/v1/reports/transactions{}",
            query(&[("from", &from), ("to", &to)])
        ))
        .await;
    if !answer.ok() && answer.status != StatusCode::UNPROCESSABLE_ENTITY {
        return failed(&user, "/console/payments/report", &answer);
    }
    let report = answer.json::<Report>();
    let csv = format!(
        "/console/payments/report.csv{}",
        query(&[("from", &f.from), ("to", &f.to)])
    );
    let body = html! {
        h1 { (lang.t("report")) }
        form.row.card method="get" action="/console/payments/report" role="search" {
            div { (field(&answer, "from", lang.t("from"), html! { input #from type="text" name="from" value=(f.from) placeholder="2026-12-01"; })) }
            div { (field(&answer, "to", lang.t("to"), html! { input #to type="text" name="to" value=(f.to) placeholder="2026-12-31"; })) }
            button type="submit" { (lang.t("filter")) }
        }
        (banner(&answer))
        @if let Some(r) = &report {
            p.muted { (user.browser.zone.show(&r.from)) " → " (user.browser.zone.show(&r.to)) }
            p { a.button href=(csv) download { (lang.t("download_csv")) } }
            @if r.totals.is_empty() { (empty(&user)) } @else {
                div.table-wrap { table {
                    thead { tr { th { (lang.t("status")) } th { (lang.t("currency")) } th.num { "#" } th.num { (lang.t("amount")) } th.num { (lang.t("captured")) } th.num { (lang.t("refunded")) } } }
                    tbody {
                        @for t in &r.totals {
                            tr {
                                td { (t.status) } td { (t.currency) } td.num { (t.count) }
                                td.num { (money(t.amount, &t.currency)) } td.num { (money(t.captured_amount, &t.currency)) }
                                td.num { (money(t.refunded_amount, &t.currency)) }
                            }
                        }
                    }
                } }
                h2 { (lang.t("daily_volume")) }
                (chart(&user, lang, &r.rows))
            }
        }
    };
    respond(
        form_status(&answer),
        user.shell("/console/payments/report")
            .page(lang.t("report"), body),
    )
}

/// Payments per day (in the user's zone) and currency, as an SVG bar chart with the
/// same figures in a table beside it (the table is what a screen reader reads). SVG
/// attributes, not inline styles, so the CSP's `style-src 'self'` holds.
fn chart(user: &SignedIn, lang: Lang, rows: &[ReportRow]) -> Markup {
    let mut days: BTreeMap<String, (u64, BTreeMap<String, i64>)> = BTreeMap::new();
    for r in rows {
        let day = user.browser.zone.show(&r.created_at);
        let day = day.get(..10).unwrap_or(&day).to_string();
        let e = days.entry(day).or_default();
        e.0 += 1;
        *e.1.entry(r.currency.clone()).or_default() += r.amount;
    }
    let max = days.values().map(|d| d.0).max().unwrap_or(1).max(1);
    let n = days.len().max(1);
    let (w, h) = (600.0_f64, 160.0_f64);
    let bw = w / n as f64;
    html! {
        svg viewBox=(format!("0 0 {w} {h}")) width="100%" height="160" role="img" aria-label=(lang.t("daily_volume")) {
            @for (i, (day, (count, _))) in days.iter().enumerate() {
                @let bh = h * (*count as f64) / (max as f64);
                rect x=(format!("{:.1}", i as f64 * bw + 1.0)) y=(format!("{:.1}", h - bh)) width=(format!("{:.1}", (bw - 2.0).max(1.0))) height=(format!("{bh:.1}")) fill="#0b5cad" {
                    title { (day) ": " (count) }
                }
            }
        }
        div.table-wrap { table {
            thead { tr { th { (lang.t("date")) } th.num { "#" } th.num { (lang.t("amount")) } } }
            tbody {
                @for (day, (count, sums)) in &days {
                    tr { td { (day) } td.num { (count) } td.num { @for (c, a) in sums { (money(*a, c)) " " } } }
                }
            }
        } }
    }
}

async fn report_csv(user: SignedIn, Query(f): Query<ReportFilter>) -> Response {
    let (from, to) = (day_or_time(&f.from), day_or_time(&f.to));
    let answer = user
        .get(&format!(
            "/api/v1/reports/transactions{}",
            query(&[("from", &from), ("to", &to), ("format", "csv")])
        ))
        .await;
    if !answer.ok() {
        return failed(&user, "/console/payments/report", &answer);
    }
    (
        [
            (
                header::CONTENT_TYPE,
                answer
                    .content_type
                    .clone()
                    .unwrap_or(HeaderValue::from_static("text/csv")),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"transactions.csv\""),
            ),
        ],
        answer.raw.clone(),
    )
        .into_response()
}

async fn rules(user: SignedIn) -> Response {
    render_rules(&user, &Answer::none(), None, None).await
}

#[derive(Deserialize)]
struct RulesForm {
    rules: String,
}

async fn save_rules(user: SignedIn, Form(form): Form<RulesForm>) -> Response {
    let parsed: Result<Value, _> = serde_json::from_str(&form.rules);
    let answer = match parsed {
        Ok(v) => user.call(Method::PUT, "/api/v1/fraud/rules", Some(v)).await,
        Err(e) => Answer {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: Some(("invalid_field".into(), format!("rules: is not JSON ({e})"))),
            ..Answer::none()
        },
    };
    if answer.ok() {
        return render_rules(&user, &Answer::none(), None, Some("saved")).await;
    }
    render_rules(&user, &answer, Some(&form.rules), None).await
}

async fn render_rules(
    user: &SignedIn,
    answer: &Answer,
    draft: Option<&str>,
    notice: Option<&'static str>,
) -> Response {
    let lang = user.lang();
    let current = user.get("/api/v1/fraud/rules").await;
    if !current.ok() {
        return failed(user, "/console/payments/fraud-rules", &current);
    }
    let text = draft
        .map(str::to_string)
        .unwrap_or_else(|| serde_json::to_string_pretty(&current.body).unwrap_or_default());
    let body = html! {
        h1 { (lang.t("fraud_rules")) }
        @if let Some(n) = notice { p.notice role="status" { (lang.t(n)) } }
        (banner(answer))
        form.stack.card method="post" action="/console/payments/fraud-rules" {
            (csrf_field(&user.browser.csrf))
            (field(answer, "rules", lang.t("fraud_rules"), html! {
                textarea #rules name="rules" spellcheck="false" rows="20" { (text) }
            }))
            button type="submit" { (lang.t("save")) }
        }
    };
    respond(
        form_status(answer),
        user.shell("/console/payments/fraud-rules")
            .page(lang.t("fraud_rules"), body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_follows_the_currency_exponent() {
        assert_eq!(money(1250, "USD"), "12.50 USD");
        assert_eq!(money(15000, "IDR"), "150.00 IDR");
        assert_eq!(money(5, "USD"), "0.05 USD");
        assert_eq!(money(-5, "USD"), "-0.05 USD");
    }

    #[test]
    fn days_become_wib_midnight() {
        assert_eq!(day_or_time("2026-12-01"), "2026-12-01T00:00:00+07:00");
        assert_eq!(day_or_time("2026-12-01T10:00:00Z"), "2026-12-01T10:00:00Z");
    }
}
