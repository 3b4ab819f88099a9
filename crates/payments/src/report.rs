//! `GET /api/v1/reports/transactions`: totals by status and currency, and the rows, as
//! JSON or CSV. Never a card number: last 4, brand and token only.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use rampart_edge::{ApiError, ErrorBody};
use rampart_identity::{IdentityError, Principal};
use rampart_store::payments::{Payment, PaymentFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::{parse_ms, rfc3339, Payments, PAYMENTS_READ};

/// The most rows one report holds; a longer period must be asked for in parts.
const MAX_ROWS: usize = 100_000;
const PAGE: i64 = 1000;

fn format_schema() -> utoipa::openapi::Object {
    rampart_edge::string_enum_schema(&["json", "csv"])
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// RFC 3339, inclusive (default: 30 days before `to`).
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339, exclusive (default: now).
    #[param(format = DateTime)]
    to: Option<String>,
    /// `json` (default) or `csv`.
    #[param(schema_with = format_schema, required = false)]
    format: Option<String>,
}

#[derive(Serialize, ToSchema, Clone, Default, PartialEq, Debug)]
pub struct Total {
    pub status: String,
    pub currency: String,
    pub count: u64,
    pub amount: i64,
    pub captured_amount: i64,
    pub refunded_amount: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Row {
    pub id: String,
    pub created_at: String,
    pub status: String,
    pub currency: String,
    pub amount: i64,
    pub captured_amount: i64,
    pub refunded_amount: i64,
    pub card_brand: String,
    pub card_last4: String,
    pub card_token: String,
    pub fraud_score: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TransactionReport {
    pub from: String,
    pub to: String,
    pub totals: Vec<Total>,
    pub rows: Vec<Row>,
}

/// Totals by (status, currency), in that order.
pub fn totals(payments: &[Payment]) -> Vec<Total> {
    let mut by: BTreeMap<(String, String), Total> = BTreeMap::new();
    for p in payments {
        let t = by
            .entry((p.status.clone(), p.currency.clone()))
            .or_insert_with(|| Total {
                status: p.status.clone(),
                currency: p.currency.clone(),
                ..Total::default()
            });
        t.count += 1;
        t.amount += p.amount;
        t.captured_amount += p.captured_amount;
        t.refunded_amount += p.refunded_amount;
    }
    by.into_values().collect()
}

#[utoipa::path(
    get,
    path = "/api/v1/reports/transactions",
    tag = "payments",
    security(("bearer" = [])),
    params(ReportQuery),
    responses(
        (status = 200, description = "JSON, or CSV (`record` is `payment` or `total`)", content(
            (TransactionReport = "application/json"),
            (String = "text/csv"),
        )),
        (status = 422, description = "Bad time, format, or more than 100,000 payments in the range", body = ErrorBody),
    )
)]
pub async fn transactions(
    State(p): State<Payments>,
    principal: Principal,
    info: rampart_edge::RequestInfo,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    principal.require(PAYMENTS_READ)?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(IdentityError::Invalid {
                field: "format",
                reason: "must be json or csv".into(),
            }
            .into())
        }
    };
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let to =
        q.to.as_deref()
            .map(|t| parse_ms("to", t))
            .transpose()?
            .unwrap_or(now);
    let from = q
        .from
        .as_deref()
        .map(|t| parse_ms("from", t))
        .transpose()?
        .unwrap_or(to - 30 * 24 * 3600 * 1000);
    let mut rows: Vec<Payment> = Vec::new();
    let mut after = None;
    loop {
        let page = p
            .store()
            .list_payments(
                &principal.scope,
                &PaymentFilter {
                    status: None,
                    from_ms: Some(from),
                    to_ms: Some(to),
                    after: after.clone(),
                    limit: PAGE,
                },
            )
            .await
            .map_err(IdentityError::from)?;
        let done = (page.len() as i64) < PAGE;
        after = page.last().map(|r| (r.created_at, r.id.clone()));
        rows.extend(page);
        if rows.len() > MAX_ROWS {
            return Err(IdentityError::Invalid {
                field: "from",
                reason: format!(
                    "more than {MAX_ROWS} payments in the range; ask for a shorter one"
                ),
            }
            .into());
        }
        if done {
            break;
        }
    }
    // Every report is an export of the tenant's payments: the mass-export rule counts them
    // per principal.
    let mut event = rampart_audit::security_log::SecurityEvent::new("data_exported", "info");
    event.detail = serde_json::json!({
        "report": "transactions",
        "format": if csv { "csv" } else { "json" },
        "rows": rows.len(),
    });
    p.identity().security_event(event, &info, Some(&principal));
    let totals = totals(&rows);
    let rows: Vec<Row> = rows
        .iter()
        .map(|r| Row {
            id: r.id.clone(),
            created_at: rfc3339(r.created_at),
            status: r.status.clone(),
            currency: r.currency.clone(),
            amount: r.amount,
            captured_amount: r.captured_amount,
            refunded_amount: r.refunded_amount,
            card_brand: r.card_brand.clone(),
            card_last4: r.card_last4.clone(),
            card_token: r.card_token.clone(),
            fraud_score: r.fraud_score,
            reference: r.reference.clone(),
        })
        .collect();
    if !csv {
        return Ok(axum::Json(TransactionReport {
            from: rfc3339(from),
            to: rfc3339(to),
            totals,
            rows,
        })
        .into_response());
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let write = |w: &mut csv::Writer<Vec<u8>>, rec: [&str; 13]| {
        w.write_record(rec).map_err(|_| ApiError::internal())
    };
    write(
        &mut w,
        [
            "record",
            "id",
            "created_at",
            "status",
            "currency",
            "count",
            "amount",
            "captured_amount",
            "refunded_amount",
            "card_brand",
            "card_last4",
            "card_token",
            "reference",
        ],
    )?;
    for r in &rows {
        let (amount, captured, refunded) = (
            r.amount.to_string(),
            r.captured_amount.to_string(),
            r.refunded_amount.to_string(),
        );
        write(
            &mut w,
            [
                "payment",
                &r.id,
                &r.created_at,
                &r.status,
                &r.currency,
                "1",
                &amount,
                &captured,
                &refunded,
                &r.card_brand,
                &r.card_last4,
                &r.card_token,
                r.reference.as_deref().unwrap_or(""),
            ],
        )?;
    }
    for t in &totals {
        let (count, amount, captured, refunded) = (
            t.count.to_string(),
            t.amount.to_string(),
            t.captured_amount.to_string(),
            t.refunded_amount.to_string(),
        );
        write(
            &mut w,
            [
                "total",
                "",
                "",
                &t.status,
                &t.currency,
                &count,
                &amount,
                &captured,
                &refunded,
                "",
                "",
                "",
                "",
            ],
        )?;
    }
    let body = w.into_inner().map_err(|_| ApiError::internal())?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"transactions.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}
