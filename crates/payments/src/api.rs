//! The payments API: take a card payment (tokenize, score, authorize, record), move it
//! through its states, list it.
//!
//! States: `authorized` → `captured` → `partially_refunded` / `refunded`; `authorized` →
//! `canceled`; `declined`; `review` (held by the fraud rules) → approved by a merchant user
//! (then authorized like a new payment) or rejected (`declined`). Every change is one
//! database transaction with its audit event; a change whose starting state a concurrent
//! request already moved away from is refused (409), never applied twice.

use axum::extract::{FromRef, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_identity::{Identity, IdentityError, Principal};
use rampart_store::payments::{
    Idempotency, IdempotencyAnswer, KeyLease, Payment, PaymentChange, PaymentFilter, VelocityProbe,
    PENDING,
};
use rampart_store::{Actor, RequestMeta, StoreError, TenantScope};
use rampart_vault::pan::Pan;
use rampart_vault::Vault;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::connector::{
    Authorization, AuthorizationRequest, FollowUp, Processor, ProcessorError, Simulator,
};
use crate::fraud::{Assessment, Decision, FraudRules, Signals};

pub const PAYMENTS_WRITE: &str = "payments:write";
pub const PAYMENTS_READ: &str = "payments:read";
pub const PAYMENTS_REFUND: &str = "payments:refund";
/// Approve or reject a payment the fraud rules held for review.
pub const PAYMENTS_REVIEW: &str = "payments:review";
pub const FRAUD_RULES_WRITE: &str = "fraud_rules:write";

const ID_PREFIX: &str = "txn_";

#[derive(Clone)]
pub struct Payments {
    identity: Identity,
    vault: Vault,
    processor: Simulator,
    /// How long a request holds its `Idempotency-Key` (`payments.idempotency_lease_secs`).
    lease_ms: i64,
}

impl FromRef<Payments> for Identity {
    fn from_ref(p: &Payments) -> Identity {
        p.identity.clone()
    }
}

impl Payments {
    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }

    pub(crate) fn store(&self) -> &rampart_store::Store {
        self.identity.store()
    }

    /// Payments through the built-in `test` connector (the simulator); a real acquirer's
    /// connector will be chosen by configuration.
    pub fn new(
        identity: Identity,
        vault: Vault,
        config: &rampart_config::PaymentsConfig,
        processor: Simulator,
    ) -> Payments {
        Payments {
            identity,
            vault,
            processor,
            lease_ms: i64::try_from(config.idempotency_lease_secs)
                .unwrap_or(i64::MAX / 2_000)
                .saturating_mul(1000),
        }
    }
}

/// Merchant admins hold every payments permission and can hand them to API keys.
pub fn register_permissions(rbac: &mut rampart_identity::rbac::RbacBuilder) {
    use rampart_store::Role;
    let all = [
        PAYMENTS_WRITE,
        PAYMENTS_READ,
        PAYMENTS_REFUND,
        PAYMENTS_REVIEW,
        FRAUD_RULES_WRITE,
    ];
    rbac.grant(Role::TenantAdmin, &all);
    rbac.grant(Role::PlatformAdmin, &all);
    rbac.grant(Role::Auditor, &[PAYMENTS_READ]);
}

pub fn router() -> OpenApiRouter<Payments> {
    OpenApiRouter::new()
        .routes(routes!(create_payment, list_payments))
        .routes(routes!(get_payment))
        .routes(routes!(capture_payment))
        .routes(routes!(cancel_payment))
        .routes(routes!(refund_payment))
        .routes(routes!(approve_payment))
        .routes(routes!(reject_payment))
        .routes(routes!(get_fraud_rules, put_fraud_rules))
        .routes(routes!(crate::report::transactions))
}

fn invalid(field: &'static str, reason: impl Into<String>) -> IdentityError {
    IdentityError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn not_found(e: StoreError) -> IdentityError {
    match e {
        StoreError::NotFound => IdentityError::NotFound,
        other => IdentityError::Store(other),
    }
}

// ----- the request -----

/// A payment request. `card` or `token`, not both. Values are read as raw JSON and checked
/// here, so a malformed card number is refused without being repeated.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // The schema for the OpenAPI document; the handler reads raw JSON.
pub struct PaymentRequest {
    /// Minor units (cents, or rupiah for IDR).
    #[schema(minimum = 1, maximum = 100_000_000_000_000_i64)]
    amount: i64,
    /// An active ISO 4217 code, e.g. `IDR`, `USD`.
    #[schema(pattern = r"^[A-Za-z]{3}$")]
    currency: String,
    /// The card, or `token`: one of the two.
    #[schema(value_type = Option<CardInput>)]
    card: Option<Value>,
    /// A vault token (`tok_…`) of this tenant instead of a card.
    #[schema(pattern = r"^tok_")]
    token: Option<String>,
    /// Capture at once (default) or only authorize.
    capture: Option<bool>,
    /// Must not hold a card number.
    #[schema(max_length = 500)]
    description: Option<String>,
    /// Must not hold a card number.
    #[schema(max_length = 200)]
    reference: Option<String>,
    #[schema(value_type = Option<CustomerInput>)]
    customer: Option<Value>,
    /// At most 50 string values, 8 KiB in all; must not hold a card number.
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    metadata: Option<Value>,
}

/// `card` of a payment, as `parse_input` reads it (documentation only: the body is read
/// as JSON so that each error names its field).
#[derive(ToSchema)]
#[allow(dead_code)]
struct CardInput {
    /// 12 to 19 digits (spaces and dashes allowed) that pass the Luhn check.
    #[schema(pattern = r"^\s*[ -]*([0-9][ -]*){12,19}\s*$")]
    number: String,
    #[schema(minimum = 1, maximum = 12)]
    exp_month: i64,
    /// Not in the past, at most 20 years ahead.
    #[schema(minimum = 2000, maximum = 2100)]
    exp_year: i64,
    /// Used for this authorization only, never stored.
    #[schema(pattern = r"^[0-9]{3,4}$")]
    cvc: Option<String>,
}

/// `customer` of a payment, for the fraud rules.
#[derive(ToSchema)]
#[allow(dead_code)]
struct CustomerInput {
    #[schema(max_length = 254)]
    email: Option<String>,
    /// IPv4 or IPv6.
    #[schema(max_length = 45)]
    ip: Option<String>,
    /// ISO 3166 alpha-2.
    #[schema(pattern = r"^[A-Za-z]{2}$")]
    country: Option<String>,
}

enum Source {
    Card {
        pan: Pan,
        exp_month: i64,
        exp_year: i64,
        cvc: Option<String>,
    },
    Token(String),
}

struct Input {
    amount: i64,
    currency: String,
    source: Source,
    capture: bool,
    description: Option<String>,
    reference: Option<String>,
    email: Option<String>,
    ip: Option<String>,
    country: Option<String>,
    metadata: Value,
}

fn text(
    obj: &Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, IdentityError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(invalid(field, format!("at most {max} characters"))),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

fn whole(obj: &Map<String, Value>, field: &'static str) -> Result<i64, IdentityError> {
    obj.get(field)
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid(field, "must be a whole number"))
}

fn parse_input(body: &Value) -> Result<Input, IdentityError> {
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("body", "must be a JSON object"))?;
    let amount = obj
        .get("amount")
        .and_then(Value::as_i64)
        .filter(|a| *a > 0)
        .ok_or_else(|| invalid("amount", "must be a positive whole number of minor units"))?;
    if amount > 100_000_000_000_000 {
        return Err(invalid("amount", "is larger than any payment we take"));
    }
    let currency = text(obj, "currency", 3)?
        .map(|c| c.to_ascii_uppercase())
        .filter(|c| crate::currency::minor_units(c).is_some())
        .ok_or_else(|| {
            invalid(
                "currency",
                "must be an active ISO 4217 code (amounts are in its minor unit)",
            )
        })?;
    let source = match (obj.get("card"), obj.get("token")) {
        (Some(Value::Object(card)), None) => {
            let pan = match card.get("number") {
                Some(Value::String(s)) => {
                    Pan::parse(s).map_err(|e| invalid("card.number", e.to_string()))?
                }
                _ => return Err(invalid("card.number", "must be a string of digits")),
            };
            let exp_month = whole(card, "exp_month")?;
            let exp_year = whole(card, "exp_year")?;
            rampart_vault::pan::check_expiry(exp_month, exp_year, time::OffsetDateTime::now_utc())
                .map_err(|reason| invalid("card.exp_month", reason))?;
            let cvc = match card.get("cvc") {
                None | Some(Value::Null) => None,
                Some(Value::String(c))
                    if (3..=4).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    Some(c.clone())
                }
                Some(_) => return Err(invalid("card.cvc", "must be 3 or 4 digits")),
            };
            Source::Card {
                pan,
                exp_month,
                exp_year,
                cvc,
            }
        }
        (None, Some(Value::String(t))) if t.starts_with(rampart_vault::TOKEN_PREFIX) => {
            Source::Token(t.clone())
        }
        (Some(_), Some(_)) => return Err(invalid("card", "give card or token, not both")),
        (None, None) => return Err(invalid("card", "a card or a token is required")),
        (Some(_), None) => return Err(invalid("card", "must be an object")),
        (None, Some(_)) => return Err(invalid("token", "must be a vault token (tok_…)")),
    };
    let capture = match obj.get("capture") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("capture", "must be true or false")),
    };
    let empty = Map::new();
    let customer = match obj.get("customer") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(c)) => c,
        Some(_) => return Err(invalid("customer", "must be an object")),
    };
    let email = text(customer, "email", 254)?.map(|e| e.trim().to_ascii_lowercase());
    let ip = match text(customer, "ip", 45)? {
        Some(ip) => Some(
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| invalid("customer.ip", "must be an IPv4 or IPv6 address"))?
                .to_string(),
        ),
        None => None,
    };
    let country = match text(customer, "country", 2)? {
        Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(c.to_ascii_uppercase())
        }
        Some(_) => {
            return Err(invalid(
                "customer.country",
                "must be an ISO 3166 alpha-2 code",
            ))
        }
        None => None,
    };
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(m)) if m.len() <= 50 && m.values().all(Value::is_string) => {
            Value::Object(m.clone())
        }
        Some(_) => {
            return Err(invalid(
                "metadata",
                "must be an object of at most 50 string values",
            ))
        }
    };
    if metadata.to_string().len() > 8192 {
        return Err(invalid("metadata", "is larger than 8 KiB"));
    }
    // A card number anywhere else in the request (a description, metadata) would be
    // stored and shown in clear: refuse it.
    for (field, value) in [
        ("description", text(obj, "description", 500)?),
        ("reference", text(obj, "reference", 200)?),
        ("metadata", Some(metadata.to_string())),
        ("customer.email", email.clone()),
    ] {
        if value
            .as_deref()
            .is_some_and(rampart_edge::holds_card_number)
        {
            return Err(invalid(field, "must not hold a card number"));
        }
    }
    Ok(Input {
        amount,
        currency,
        source,
        capture,
        description: text(obj, "description", 500)?,
        reference: text(obj, "reference", 200)?,
        email,
        ip,
        country,
        metadata,
    })
}

/// JSON with object keys sorted, so equal parameters hash equally.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: std::collections::BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

// ----- the response -----

#[derive(Serialize, ToSchema)]
pub struct CardView {
    pub last4: String,
    pub brand: String,
    /// The vault token: pay again with `{"token": …}`.
    pub token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct FraudView {
    pub score: i64,
    /// `approve`, `review` or `decline`.
    pub decision: String,
    pub reasons: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ProcessorView {
    pub name: String,
    /// True when no money moved: the built-in test connector answered.
    pub simulated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PaymentView {
    /// `txn_…`
    pub id: String,
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub captured_amount: i64,
    pub refunded_amount: i64,
    pub card: CardView,
    pub fraud: FraudView,
    pub processor: ProcessorView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// RFC 3339.
    pub created_at: String,
}

/// Milliseconds since the epoch as RFC 3339 (UTC).
pub(crate) fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl From<&Payment> for PaymentView {
    fn from(p: &Payment) -> PaymentView {
        PaymentView {
            id: p.id.clone(),
            status: p.status.clone(),
            amount: p.amount,
            currency: p.currency.clone(),
            captured_amount: p.captured_amount,
            refunded_amount: p.refunded_amount,
            card: CardView {
                last4: p.card_last4.clone(),
                brand: p.card_brand.clone(),
                token: p.card_token.clone(),
                country: p.card_country.clone(),
            },
            fraud: FraudView {
                score: p.fraud_score,
                decision: p.fraud_decision.clone(),
                reasons: serde_json::from_str(&p.fraud_reasons).unwrap_or_default(),
            },
            processor: ProcessorView {
                name: p.processor.clone(),
                simulated: p.simulated,
                decline_code: p.decline_code.clone(),
            },
            description: p.description.clone(),
            reference: p.reference.clone(),
            metadata: serde_json::from_str(&p.metadata).unwrap_or_else(|_| json!({})),
            created_at: rfc3339(p.created_at),
        }
    }
}

fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Approve => "approve",
        Decision::Review => "review",
        Decision::Decline => "decline",
    }
}

// ----- the flow -----

impl Payments {
    async fn rules(&self, principal: &Principal) -> Result<FraudRules, IdentityError> {
        match self.identity.store().fraud_rules(&principal.scope).await? {
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                IdentityError::Store(StoreError::Corrupt(format!("fraud rules: {e}")))
            }),
            None => Ok(FraudRules::default()),
        }
    }

    async fn assess(
        &self,
        principal: &Principal,
        input: &Input,
        fingerprint: &str,
        card_country: Option<String>,
    ) -> Result<Assessment, IdentityError> {
        let rules = self.rules(principal).await?;
        let ms = |secs: u64| (secs as i64).saturating_mul(1000);
        let counts = self
            .identity
            .store()
            .velocity_counts(
                &principal.scope,
                &VelocityProbe {
                    fingerprint,
                    ip: input.ip.as_deref(),
                    email: input.email.as_deref(),
                    small_amount: rules.card_testing.small_amount,
                    card_window_ms: ms(rules.card_velocity.window_secs),
                    ip_window_ms: ms(rules.ip_velocity.window_secs),
                    email_window_ms: ms(rules.email_velocity.window_secs),
                    cards_per_ip_window_ms: ms(rules.cards_per_ip.window_secs),
                    card_testing_window_ms: ms(rules.card_testing.window_secs),
                },
            )
            .await?;
        let with_this = |n: i64| u32::try_from(n + 1).unwrap_or(u32::MAX);
        let has_ip = input.ip.is_some();
        let signals = Signals {
            amount: input.amount,
            currency: input.currency.clone(),
            card_count: with_this(counts.card),
            ip_count: if has_ip { with_this(counts.ip) } else { 0 },
            email_count: if input.email.is_some() {
                with_this(counts.email)
            } else {
                0
            },
            cards_from_ip: if has_ip {
                with_this(counts.cards_from_ip)
            } else {
                0
            },
            small_from_ip: if has_ip && input.amount < rules.card_testing.small_amount {
                with_this(counts.small_from_ip)
            } else {
                0
            },
            customer_country: input.country.clone(),
            card_country,
        };
        Ok(rules.assess(&signals))
    }

    /// Sends `payment` to the processor with the card (opened for this call only).
    async fn authorize(
        &self,
        pan: &Pan,
        (exp_month, exp_year): (i64, i64),
        cvc: Option<&str>,
        payment: &Payment,
    ) -> Result<Authorization, ProcessorError> {
        use tracing::Instrument;
        // The client span of the processor call: the payment id only, never the card.
        let span = tracing::info_span!(
            "processor.authorize",
            otel.name = "processor authorize",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rampart.payment_id = %payment.id,
        );
        self.processor
            .authorize(&AuthorizationRequest {
                card_number: pan.expose(),
                exp_month: u8::try_from(exp_month).unwrap_or(0),
                exp_year: u16::try_from(exp_year).unwrap_or(0),
                cvc,
                amount: payment.amount,
                currency: &payment.currency,
                capture: payment.capture,
                reference: &payment.id,
            })
            .instrument(span.clone())
            .await
            .inspect_err(|e| {
                span.record("otel.status_code", "ERROR");
                tracing::error!(error = %e, payment = %payment.id, "processor call failed")
            })
    }

    /// Tokenize (or open the token), score, record, authorize, record the outcome. The
    /// answer to a new payment; with `key`, that answer is stored for the key in the
    /// transaction that records the outcome.
    async fn take(
        &self,
        principal: &Principal,
        info: &RequestInfo,
        input: Input,
        key: Option<KeyLease<'_>>,
    ) -> Result<Payment, ApiError> {
        let (token, pan, exp_month, exp_year, cvc) = match &input.source {
            Source::Card {
                pan,
                exp_month,
                exp_year,
                cvc,
            } => {
                let token = self
                    .vault
                    .store_card(principal, info, pan, *exp_month, *exp_year)
                    .await?;
                (token, pan.clone(), *exp_month, *exp_year, cvc.clone())
            }
            Source::Token(t) => {
                let (token, pan) = self.vault.open_card(&principal.scope, t).await?;
                rampart_vault::pan::check_expiry(
                    token.exp_month,
                    token.exp_year,
                    time::OffsetDateTime::now_utc(),
                )
                .map_err(|reason| invalid("token", format!("the card {reason}")))?;
                let (m, y) = (token.exp_month, token.exp_year);
                (token, pan, m, y, None)
            }
        };
        let card_country = self.processor.issuing_country(pan.bin());
        let assessment = self
            .assess(principal, &input, &token.fingerprint, card_country.clone())
            .await?;
        let id = rampart_crypto::random_secret(ID_PREFIX, 18);
        let mut payment = Payment {
            id: id.clone(),
            tenant_id: String::new(),
            status: String::new(),
            amount: input.amount,
            currency: input.currency.clone(),
            capture: input.capture,
            captured_amount: 0,
            refunded_amount: 0,
            card_token: token.token.clone(),
            card_last4: token.last4.clone(),
            card_brand: token.brand.clone(),
            card_fingerprint: token.fingerprint.clone(),
            card_country,
            fraud_score: i64::from(assessment.score),
            fraud_decision: decision_name(assessment.decision).to_string(),
            fraud_reasons: serde_json::to_string(&assessment.reasons).unwrap_or_default(),
            processor: self.processor.name().to_string(),
            processor_reference: None,
            decline_code: None,
            simulated: true,
            description: input.description.clone(),
            reference: input.reference.clone(),
            customer_email: input.email.clone(),
            customer_ip: input.ip.clone(),
            customer_country: input.country.clone(),
            metadata: input.metadata.to_string(),
            created_at: 0,
            updated_at: 0,
        };
        let audit = |status: &str| {
            rampart_audit::event(
                principal.actor(),
                "payment.create",
                "payment",
                rampart_identity::request_meta(info),
            )
            .changes(json!({
                "status": status,
                "amount": payment.amount,
                "currency": payment.currency,
                "last4": payment.card_last4,
                "fraud_score": payment.fraud_score,
                "fraud_decision": payment.fraud_decision,
            }))
            .build()
        };
        let store = self.identity.store();
        match assessment.decision {
            Decision::Decline | Decision::Review => {
                // The processor is not called: the payment is recorded with its final
                // state at once.
                if assessment.decision == Decision::Decline {
                    payment.status = "declined".into();
                    payment.decline_code = Some("fraud_suspected".into());
                } else {
                    payment.status = "review".into();
                }
                let audit = audit(&payment.status);
                payment.created_at = rampart_store::now_ms();
                payment.updated_at = payment.created_at;
                let events = crate::webhooks::outbox_for(&payment);
                let (status, body) = created(&PaymentView::from(&payment))?;
                let answer = key.map(|key| IdempotencyAnswer {
                    key,
                    status: status.as_u16(),
                    response: &body,
                });
                store
                    .insert_payment(&principal.scope, payment, audit, &events, answer)
                    .await
                    .map_err(unrecorded)
            }
            Decision::Approve => {
                // Committed before the processor sees it: from here on the attempt is on
                // record, and a lost answer is reconciled, never sent again.
                let audit = audit(PENDING);
                let recorded = store
                    .record_payment_attempt(&principal.scope, payment, audit, key)
                    .await
                    .map_err(unrecorded)?;
                let auth = self
                    .authorize(&pan, (exp_month, exp_year), cvc.as_deref(), &recorded)
                    .await;
                // The CVC is dropped here, unstored.
                drop(cvc);
                let auth = auth.map_err(|_| unanswered_attempt())?;
                let mut answered = recorded.clone();
                apply_authorization(&mut answered, &auth);
                self.settle(
                    &principal.scope,
                    principal.actor(),
                    rampart_identity::request_meta(info),
                    recorded,
                    change_of(&answered),
                    "payment.authorize",
                )
                .await
            }
        }
    }

    /// Records the outcome of a pending payment (and the answer to its key). When a retry
    /// or the job settled it first, the payment as they left it.
    async fn settle(
        &self,
        scope: &TenantScope,
        actor: Actor,
        meta: RequestMeta,
        payment: Payment,
        change: PaymentChange,
        action: &str,
    ) -> Result<Payment, ApiError> {
        let audit = rampart_audit::event(actor, action, "payment", meta)
            .changes(json!({
                "from": PENDING,
                "to": change.status,
                "decline_code": change.decline_code,
            }))
            .build();
        let store = self.identity.store();
        let answer = |p: &Payment| {
            created(&PaymentView::from(p))
                .ok()
                .map(|(status, body)| (status.as_u16(), body))
        };
        match store
            .settle_payment(
                scope,
                &payment.id,
                &change,
                audit,
                crate::webhooks::outbox_for,
                answer,
            )
            .await
        {
            Ok(settled) => Ok(settled),
            Err(StoreError::NotFound) => {
                let now = store.payment(scope, &payment.id).await.map_err(not_found)?;
                if now.status != change.status {
                    tracing::error!(
                        payment = %payment.id,
                        settled_as = %now.status,
                        answer = %change.status,
                        "a pending payment was settled differently before its answer arrived"
                    );
                }
                Ok(now)
            }
            Err(e) => Err(IdentityError::Store(e).into()),
        }
    }

    /// Asks the processor what became of a pending payment whose answer was lost, and
    /// records it. The processor's own answer when it has one; `declined`
    /// (`not_processed`) when it never received the attempt (nothing was charged);
    /// `unknown` when the connector cannot ask. An unreachable processor leaves it pending
    /// for the next try. Never authorizes again.
    async fn reconcile(
        &self,
        scope: &TenantScope,
        actor: Actor,
        meta: RequestMeta,
        payment: Payment,
    ) -> Result<Payment, ApiError> {
        let span = tracing::info_span!(
            "processor.lookup",
            otel.name = "processor lookup",
            otel.kind = "client",
            rampart.payment_id = %payment.id,
        );
        let looked_up =
            tracing::Instrument::instrument(self.processor.lookup(&payment.id), span).await;
        let change = match looked_up {
            Ok(Some(auth)) => {
                let mut p = payment.clone();
                apply_authorization(&mut p, &auth);
                change_of(&p)
            }
            Ok(None) => PaymentChange {
                status: "declined".into(),
                decline_code: Some("not_processed".into()),
                ..PaymentChange::default()
            },
            Err(ProcessorError::Unsupported) => PaymentChange {
                status: "unknown".into(),
                decline_code: Some("outcome_unknown".into()),
                ..PaymentChange::default()
            },
            Err(e) => {
                tracing::warn!(error = %e, payment = %payment.id, "cannot reconcile a pending payment yet");
                return Err(ApiError {
                    retry_after: Some(5),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "payment_reconciling",
                        "the payment's first attempt is being reconciled with the processor; retry later with the same Idempotency-Key",
                    )
                });
            }
        };
        self.settle(scope, actor, meta, payment, change, "payment.reconcile")
            .await
    }

    /// Settles a key whose first request's lease ran out after it recorded `payment_id`:
    /// the recorded outcome, or the one reconciliation finds. The answer is stored for the
    /// key and replayed from then on.
    async fn resolve(
        &self,
        principal: &Principal,
        info: &RequestInfo,
        key: &str,
        payment_id: &str,
    ) -> Result<Response, ApiError> {
        let store = self.identity.store();
        let payment = store
            .payment(&principal.scope, payment_id)
            .await
            .map_err(not_found)?;
        let payment = if payment.status == PENDING {
            self.reconcile(
                &principal.scope,
                principal.actor(),
                rampart_identity::request_meta(info),
                payment,
            )
            .await?
        } else {
            payment
        };
        let (status, body) = created(&PaymentView::from(&payment))?;
        store
            .idempotency_finish(&principal.scope, key, status.as_u16(), &body)
            .await
            .map_err(IdentityError::from)?;
        Ok(json_response(status, body, true))
    }

    /// The `payments.reconcile` job: settles every pending payment whose lease ran out
    /// (its request crashed or was abandoned and no retry came), so none waits for a
    /// client. Returns how many it settled.
    pub async fn reconcile_stale_attempts(&self) -> Result<usize, StoreError> {
        let before = rampart_store::now_ms().saturating_sub(self.lease_ms);
        let stale = self
            .identity
            .store()
            .stale_payment_attempts(before, 100)
            .await?;
        let mut settled = 0;
        for (scope, payment) in stale {
            let id = payment.id.clone();
            match self
                .reconcile(&scope, Actor::System, RequestMeta::default(), payment)
                .await
            {
                Ok(p) => {
                    tracing::info!(payment = %id, status = %p.status, "reconciled a pending payment");
                    settled += 1;
                }
                Err(e) => {
                    tracing::warn!(payment = %id, error = %e, "a pending payment stays pending")
                }
            }
        }
        Ok(settled)
    }
}

/// The fields a processor's answer set on `p` (by [`apply_authorization`]), as a change.
fn change_of(p: &Payment) -> PaymentChange {
    PaymentChange {
        status: p.status.clone(),
        captured_amount: Some(p.captured_amount),
        processor_reference: p.processor_reference.clone(),
        decline_code: p.decline_code.clone(),
        card_country: p.card_country.clone(),
        simulated: Some(p.simulated),
    }
}

fn apply_authorization(p: &mut Payment, auth: &crate::connector::Authorization) {
    p.processor_reference = Some(auth.processor_reference.clone());
    p.simulated = auth.simulated;
    if auth.card_country.is_some() {
        p.card_country.clone_from(&auth.card_country);
    }
    if auth.approved {
        if p.capture {
            p.status = "captured".into();
            p.captured_amount = p.amount;
        } else {
            p.status = "authorized".into();
        }
    } else {
        p.status = "declined".into();
        p.decline_code.clone_from(&auth.decline_code);
    }
}

fn processor_error(e: crate::connector::ProcessorError) -> ApiError {
    tracing::error!(error = %e, "processor call failed");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "processor_unavailable",
        "the payment processor did not answer; nothing was charged by this request",
    )
}

/// A payment this request could not record. When another request took its key over (this
/// one outlived its lease), nothing was recorded or sent, and that request's answer is the
/// key's.
fn unrecorded(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { constraint } if constraint == "idempotency_key_taken_over" => {
            ApiError::conflict(
                "idempotency_key_taken_over",
                "this request outlived its Idempotency-Key's lease and a retry took the key \
                 over; nothing was charged by this request (retry for the key's answer)",
            )
        }
        other => IdentityError::Store(other).into(),
    }
}

/// A pending payment's processor call failed: its outcome is unknown until reconciled.
fn unanswered_attempt() -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "processor_unavailable",
        "the payment processor did not answer; the attempt stays pending and is reconciled \
         with the processor, never sent again (retry with the same Idempotency-Key for its \
         outcome)",
    )
}

fn state_conflict(action: &str, status: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "invalid_state",
        format!("a {status} payment cannot be {action}"),
    )
}

const IDEMPOTENCY_HEADER: &str = "idempotency-key";

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k.to_string()))
        }
        _ => Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

fn created(view: &PaymentView) -> Result<(StatusCode, String), ApiError> {
    let body = serde_json::to_string(view).map_err(|_| ApiError::internal())?;
    Ok((StatusCode::CREATED, body))
}

fn json_response(status: StatusCode, body: String, replayed: bool) -> Response {
    let mut r = (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if replayed {
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    r
}

#[utoipa::path(
    post,
    path = "/api/v1/payments",
    tag = "payments",
    security(("bearer" = [])),
    request_body = PaymentRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[\x21-\x7e]{1,255}$",
        description = "The first answer to a key is replayed for 24 hours; the same key with other parameters is refused; a key whose first request died is resolved once its lease (payments.idempotency_lease_secs) ran out")),
    responses(
        (status = 201, description = "Taken: authorized, captured, declined or held for review", body = PaymentView),
        (status = 409, description = "A request with this Idempotency-Key is still running", body = ErrorBody),
        (status = 422, description = "Invalid request, or an Idempotency-Key reused with other parameters", body = ErrorBody),
        (status = 502, description = "The processor did not answer", body = ErrorBody),
        (status = 503, description = "The key's first attempt is being reconciled with the processor (payment_reconciling)", body = ErrorBody),
    )
)]
pub async fn create_payment(
    State(p): State<Payments>,
    principal: Principal,
    info: RequestInfo,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(PAYMENTS_WRITE)?;
    let key = idempotency_key(&headers)?;
    let input = parse_input(&body)?;
    let store = p.identity.store();
    let mut held = None;
    if let Some(key) = &key {
        let canonical = serde_json::to_vec(&canonical(&body)).map_err(|_| ApiError::internal())?;
        let hash = p
            .vault
            .keyed_hash(principal.scope.tenant_id(), "idempotency", &canonical)
            .await?;
        match store
            .idempotency_begin(&principal.scope, key, &hash, p.lease_ms)
            .await
            .map_err(IdentityError::from)?
        {
            Idempotency::Started { lease_until } => held = Some(lease_until),
            // The first request died before it recorded an attempt: nothing reached the
            // processor, so this one runs.
            Idempotency::Expired {
                payment_id: None,
                lease_until,
            } => held = Some(lease_until),
            Idempotency::Expired {
                payment_id: Some(id),
                ..
            } => return p.resolve(&principal, &info, key, &id).await,
            Idempotency::Replay { status, response } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                return Ok(json_response(status, response, true));
            }
            Idempotency::InProgress => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_in_progress",
                    "a request with this Idempotency-Key is still running; retry later",
                ))
            }
            Idempotency::Mismatch => {
                return Err(ApiError::unprocessable(
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with other parameters",
                ))
            }
        }
    }
    // With a key, the answer is stored in the transaction that records the outcome.
    let lease = key
        .as_deref()
        .zip(held)
        .map(|(key, lease_until)| KeyLease { key, lease_until });
    match p.take(&principal, &info, input, lease).await {
        Ok(payment) => {
            if payment.status == "declined" {
                // What card testing looks like from here: the detection rules count
                // small declines per address: the shopper's (`customer.ip`) when the
                // merchant passes it, since its server calls from one address for
                // everyone; the caller's otherwise. No card data in the event.
                let mut event =
                    rampart_audit::security_log::SecurityEvent::new("payment_declined", "info");
                event.detail = json!({
                    "payment_id": payment.id,
                    "amount_minor": payment.amount,
                    "currency": payment.currency,
                    "decline_code": payment.decline_code,
                    "caller_ip": info.client_ip.map(|ip| ip.to_string()),
                });
                let shopper = payment.customer_ip.clone();
                p.identity
                    .security_event_from(event, &info, Some(&principal), shopper);
            }
            let (status, body) = created(&PaymentView::from(&payment))?;
            Ok(json_response(status, body, false))
        }
        Err(e) => {
            if let Some(lease) = lease {
                // Forgotten only if no attempt was recorded and this request still holds
                // the key (the store checks), so the client's retry runs again; a recorded
                // attempt is reconciled instead.
                if let Err(e) = store.idempotency_abandon(&principal.scope, lease).await {
                    tracing::error!(error = %e, "cannot release the idempotency key");
                }
            }
            Err(e)
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/payments/{id}",
    tag = "payments",
    security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "The payment", body = PaymentView),
        (status = 404, description = "No such payment in the caller's tenant", body = ErrorBody),
    )
)]
pub async fn get_payment(
    State(p): State<Payments>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<PaymentView>, ApiError> {
    let payment = p
        .identity
        .store()
        .payment(&principal.scope, &id)
        .await
        .map_err(not_found)?;
    principal.require(PAYMENTS_READ)?;
    Ok(Json(PaymentView::from(&payment)))
}

fn state_schema() -> utoipa::openapi::Object {
    rampart_edge::string_enum_schema(STATES)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only payments in this state.
    #[param(schema_with = state_schema, required = false)]
    status: Option<String>,
    /// RFC 3339; inclusive.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339; exclusive.
    #[param(format = DateTime)]
    to: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^1[0-9]{12}\.[A-Za-z0-9_-]{1,64}$")]
    cursor: Option<String>,
    /// 1 to 100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct PaymentPage {
    pub data: Vec<PaymentView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// An RFC 3339 query parameter as milliseconds since the epoch.
pub(crate) fn parse_ms(field: &'static str, text: &str) -> Result<i64, IdentityError> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| invalid(field, "must be an RFC 3339 time"))
}

/// Every payment state, as the list filter and the console's select name them.
pub(crate) const STATES: &[&str] = &[
    "pending",
    "unknown",
    "authorized",
    "captured",
    "partially_refunded",
    "refunded",
    "canceled",
    "declined",
    "review",
];

#[utoipa::path(
    get,
    path = "/api/v1/payments",
    tag = "payments",
    security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, description = "Newest first", body = PaymentPage))
)]
pub async fn list_payments(
    State(p): State<Payments>,
    principal: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<PaymentPage>, ApiError> {
    principal.require(PAYMENTS_READ)?;
    if let Some(s) = &q.status {
        if !STATES.contains(&s.as_str()) {
            return Err(invalid("status", format!("must be one of {}", STATES.join(", "))).into());
        }
    }
    let limit = q.limit.unwrap_or(25);
    if !(1..=100).contains(&limit) {
        return Err(invalid("limit", "must be between 1 and 100").into());
    }
    let after = match &q.cursor {
        Some(c) => Some(
            rampart_identity::parse_time_id_cursor(c)
                .ok_or_else(|| invalid("cursor", "is not a cursor from this API"))?,
        ),
        None => None,
    };
    let filter = PaymentFilter {
        status: q.status.clone(),
        from_ms: q.from.as_deref().map(|t| parse_ms("from", t)).transpose()?,
        to_ms: q.to.as_deref().map(|t| parse_ms("to", t)).transpose()?,
        after,
        limit: limit + 1,
    };
    let mut rows = p
        .identity
        .store()
        .list_payments(&principal.scope, &filter)
        .await
        .map_err(IdentityError::from)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| {
            rows.last()
                .map(|r| rampart_identity::time_id_cursor(r.created_at, &r.id))
        })
        .flatten();
    Ok(Json(PaymentPage {
        data: rows.iter().map(PaymentView::from).collect(),
        next_cursor,
    }))
}

#[derive(Deserialize, ToSchema, Default)]
pub struct AmountRequest {
    /// Minor units; default: all that is left.
    amount: Option<i64>,
}

/// `{"amount": N}`, `{}` or no body at all.
fn optional_amount(body: &[u8]) -> Result<Option<i64>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let parsed: AmountRequest = serde_json::from_slice(body)
        .map_err(|_| invalid("amount", "send {\"amount\": minor units} or no body"))?;
    Ok(parsed.amount)
}

/// The payment, after checking the caller may act on it (404 before 403).
async fn load(
    p: &Payments,
    principal: &Principal,
    id: &str,
    permission: &'static str,
) -> Result<Payment, ApiError> {
    let payment = p
        .identity
        .store()
        .payment(&principal.scope, id)
        .await
        .map_err(not_found)?;
    principal.require(permission)?;
    Ok(payment)
}

/// Applies a state change; a concurrent change that got there first is a 409.
async fn transition(
    p: &Payments,
    principal: &Principal,
    info: &RequestInfo,
    payment: &Payment,
    from: &[&str],
    change: PaymentChange,
    action: &str,
) -> Result<Json<PaymentView>, ApiError> {
    let audit = rampart_audit::event(
        principal.actor(),
        &format!("payment.{action}"),
        "payment",
        rampart_identity::request_meta(info),
    )
    .changes(json!({ "from": payment.status, "to": change.status, "captured_amount": change.captured_amount }))
    .build();
    match p
        .identity
        .store()
        .transition_payment(
            &principal.scope,
            &payment.id,
            from,
            &change,
            audit,
            crate::webhooks::outbox_for,
        )
        .await
    {
        Ok(updated) => Ok(Json(PaymentView::from(&updated))),
        Err(StoreError::NotFound) => Err(state_conflict(action, "changed")),
        Err(e) => Err(IdentityError::Store(e).into()),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/payments/{id}/capture",
    tag = "payments",
    security(("bearer" = [])),
    params(("id" = String, Path)),
    request_body(content = AmountRequest, description = "Optional; default the authorized amount"),
    responses(
        (status = 200, description = "Captured", body = PaymentView),
        (status = 409, description = "Not authorized (already captured, canceled, ...)", body = ErrorBody),
    )
)]
pub async fn capture_payment(
    State(p): State<Payments>,
    principal: Principal,
    info: RequestInfo,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<PaymentView>, ApiError> {
    let payment = load(&p, &principal, &id, PAYMENTS_WRITE).await?;
    if payment.status != "authorized" {
        return Err(state_conflict("captured", &payment.status));
    }
    let amount = optional_amount(&body)?.unwrap_or(payment.amount);
    if !(1..=payment.amount).contains(&amount) {
        return Err(invalid("amount", "must be between 1 and the authorized amount").into());
    }
    p.processor
        .follow_up(
            payment.processor_reference.as_deref().unwrap_or(""),
            FollowUp::Capture,
            amount,
        )
        .await
        .map_err(processor_error)?;
    let change = PaymentChange {
        status: "captured".into(),
        captured_amount: Some(amount),
        ..PaymentChange::default()
    };
    transition(
        &p,
        &principal,
        &info,
        &payment,
        &["authorized"],
        change,
        "capture",
    )
    .await
}

#[utoipa::path(
    post,
    path = "/api/v1/payments/{id}/cancel",
    tag = "payments",
    security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "Canceled; the authorization is released", body = PaymentView),
        (status = 409, description = "Not authorized any more", body = ErrorBody),
    )
)]
pub async fn cancel_payment(
    State(p): State<Payments>,
    principal: Principal,
    info: RequestInfo,
    Path(id): Path<String>,
) -> Result<Json<PaymentView>, ApiError> {
    let payment = load(&p, &principal, &id, PAYMENTS_WRITE).await?;
    if payment.status != "authorized" {
        return Err(state_conflict("canceled", &payment.status));
    }
    p.processor
        .follow_up(
            payment.processor_reference.as_deref().unwrap_or(""),
            FollowUp::Cancel,
            payment.amount,
        )
        .await
        .map_err(processor_error)?;
    let change = PaymentChange {
        status: "canceled".into(),
        ..PaymentChange::default()
    };
    transition(
        &p,
        &principal,
        &info,
        &payment,
        &["authorized"],
        change,
        "cancel",
    )
    .await
}

#[utoipa::path(
    post,
    path = "/api/v1/payments/{id}/refunds",
    tag = "payments",
    security(("bearer" = [])),
    params(("id" = String, Path)),
    request_body(content = AmountRequest, description = "Optional; default all that is not refunded yet"),
    responses(
        (status = 201, description = "Refunded; the payment as it is now", body = PaymentView),
        (status = 409, description = "Not captured, or the refunds would exceed the captured amount", body = ErrorBody),
    )
)]
pub async fn refund_payment(
    State(p): State<Payments>,
    principal: Principal,
    info: RequestInfo,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<PaymentView>), ApiError> {
    let payment = load(&p, &principal, &id, PAYMENTS_REFUND).await?;
    if !matches!(payment.status.as_str(), "captured" | "partially_refunded") {
        return Err(state_conflict("refunded", &payment.status));
    }
    let left = payment.captured_amount - payment.refunded_amount;
    let amount = optional_amount(&body)?.unwrap_or(left);
    if amount < 1 {
        return Err(invalid("amount", "must be a positive whole number of minor units").into());
    }
    let audit = rampart_audit::event(
        principal.actor(),
        "payment.refund",
        "payment",
        rampart_identity::request_meta(&info),
    )
    .changes(json!({ "amount": amount }))
    .build();
    let refund_id = rampart_crypto::random_secret("re_", 18);
    // Recorded first: the single UPDATE that checks the sum is what keeps concurrent
    // refunds from exceeding the captured amount.
    let updated = match p
        .identity
        .store()
        .refund_payment(
            &principal.scope,
            &payment.id,
            &refund_id,
            amount,
            audit,
            crate::webhooks::outbox_for,
        )
        .await
    {
        Ok(updated) => updated,
        Err(StoreError::Constraint { .. }) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "refund_exceeds_captured",
                "refunds cannot exceed the captured amount",
            ))
        }
        Err(e) => return Err(IdentityError::Store(e).into()),
    };
    p.processor
        .follow_up(
            payment.processor_reference.as_deref().unwrap_or(""),
            FollowUp::Refund,
            amount,
        )
        .await
        .map_err(processor_error)?;
    Ok((StatusCode::CREATED, Json(PaymentView::from(&updated))))
}

#[utoipa::path(
    post,
    path = "/api/v1/payments/{id}/approve",
    tag = "payments",
    security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "Reviewed and sent to the processor: authorized, captured or declined", body = PaymentView),
        (status = 409, description = "Not held for review", body = ErrorBody),
    )
)]
pub async fn approve_payment(
    State(p): State<Payments>,
    principal: Principal,
    info: RequestInfo,
    Path(id): Path<String>,
) -> Result<Json<PaymentView>, ApiError> {
    let payment = load(&p, &principal, &id, PAYMENTS_REVIEW).await?;
    principal.require_user()?;
    if payment.status != "review" {
        return Err(state_conflict("approved", &payment.status));
    }
    let (token, pan) = p
        .vault
        .open_card(&principal.scope, &payment.card_token)
        .await?;
    // As a new payment: `pending` is committed before the processor sees it, so a lost
    // answer is reconciled rather than sent twice.
    let audit = rampart_audit::event(
        principal.actor(),
        "payment.approve",
        "payment",
        rampart_identity::request_meta(&info),
    )
    .changes(json!({ "from": "review", "to": PENDING }))
    .build();
    let change = PaymentChange {
        status: PENDING.into(),
        ..PaymentChange::default()
    };
    let pending = match p
        .identity
        .store()
        .transition_payment(
            &principal.scope,
            &payment.id,
            &["review"],
            &change,
            audit,
            |_| Vec::new(),
        )
        .await
    {
        Ok(pending) => pending,
        Err(StoreError::NotFound) => return Err(state_conflict("approved", "changed")),
        Err(e) => return Err(IdentityError::Store(e).into()),
    };
    let auth = p
        .authorize(&pan, (token.exp_month, token.exp_year), None, &pending)
        .await
        .map_err(|_| unanswered_attempt())?;
    let mut answered = pending.clone();
    apply_authorization(&mut answered, &auth);
    let settled = p
        .settle(
            &principal.scope,
            principal.actor(),
            rampart_identity::request_meta(&info),
            pending,
            change_of(&answered),
            "payment.authorize",
        )
        .await?;
    Ok(Json(PaymentView::from(&settled)))
}

#[utoipa::path(
    post,
    path = "/api/v1/payments/{id}/reject",
    tag = "payments",
    security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "Declined after review", body = PaymentView),
        (status = 409, description = "Not held for review", body = ErrorBody),
    )
)]
pub async fn reject_payment(
    State(p): State<Payments>,
    principal: Principal,
    info: RequestInfo,
    Path(id): Path<String>,
) -> Result<Json<PaymentView>, ApiError> {
    let payment = load(&p, &principal, &id, PAYMENTS_REVIEW).await?;
    principal.require_user()?;
    if payment.status != "review" {
        return Err(state_conflict("rejected", &payment.status));
    }
    let change = PaymentChange {
        status: "declined".into(),
        decline_code: Some("rejected_in_review".into()),
        ..PaymentChange::default()
    };
    transition(
        &p,
        &principal,
        &info,
        &payment,
        &["review"],
        change,
        "reject",
    )
    .await
}

#[utoipa::path(
    get,
    path = "/api/v1/fraud/rules",
    tag = "payments",
    security(("bearer" = [])),
    responses((status = 200, description = "The tenant's fraud rules, defaults filled in", body = Object))
)]
pub async fn get_fraud_rules(
    State(p): State<Payments>,
    principal: Principal,
) -> Result<Json<FraudRules>, ApiError> {
    principal.require(PAYMENTS_READ)?;
    Ok(Json(p.rules(&principal).await?))
}

#[utoipa::path(
    put,
    path = "/api/v1/fraud/rules",
    tag = "payments",
    security(("bearer" = [])),
    request_body(content = Object, description = "Rules; fields left out take their defaults"),
    responses(
        (status = 200, description = "Stored; the rules now in force", body = Object),
        (status = 422, description = "Unknown rule or field, or a value out of range", body = ErrorBody),
    )
)]
pub async fn put_fraud_rules(
    State(p): State<Payments>,
    principal: Principal,
    info: RequestInfo,
    Json(body): Json<Value>,
) -> Result<Json<FraudRules>, ApiError> {
    principal.require(FRAUD_RULES_WRITE)?;
    let rules = FraudRules::from_partial(&body).map_err(|e| invalid("rules", truncate(&e)))?;
    rules.validate().map_err(|e| invalid("rules", e))?;
    let text = serde_json::to_string(&rules).map_err(|_| ApiError::internal())?;
    let audit = rampart_audit::event(
        principal.actor(),
        "fraud_rules.update",
        "fraud_rules",
        rampart_identity::request_meta(&info),
    )
    .changes(serde_json::from_str::<Value>(&text).unwrap_or_default())
    .build();
    p.identity
        .store()
        .set_fraud_rules(&principal.scope, &text, audit)
        .await
        .map_err(IdentityError::from)?;
    Ok(Json(rules))
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod card_text_tests {
    #[test]
    fn card_numbers_in_any_digit_width_are_found() {
        assert!(rampart_edge::holds_card_number(
            "pay 4242 4242 4242 4242 now"
        ));
        assert!(rampart_edge::holds_card_number(
            "４２４２４２４２４２４２４２４２"
        ));
        assert!(rampart_edge::holds_card_number(
            "4242\u{3000}4242\u{3000}4242\u{3000}4242"
        ));
        assert!(rampart_edge::holds_card_number(
            "siti4242424242424242@example.id"
        ));
        assert!(!rampart_edge::holds_card_number("order 2026-12-01 #1234"));
        assert!(!rampart_edge::holds_card_number(
            "４２４２４２４２４２４２４２４３"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_checked_without_echoing_card_numbers() {
        let ok = json!({"amount": 10000, "currency": "idr",
            "card": {"number": "4111 1111 1111 1111", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
            "customer": {"email": "Siti@Example.id", "ip": "203.0.113.9", "country": "id"}});
        let input = parse_input(&ok).unwrap();
        assert_eq!(input.currency, "IDR");
        assert_eq!(input.email.as_deref(), Some("siti@example.id"));
        assert_eq!(input.country.as_deref(), Some("ID"));
        assert!(input.capture);
        for (body, field) in [
            (
                json!({"amount": 0, "currency": "IDR", "token": "tok_x"}),
                "amount",
            ),
            (
                json!({"amount": 1.5, "currency": "IDR", "token": "tok_x"}),
                "amount",
            ),
            (
                json!({"amount": 1, "currency": "RUPIAH", "token": "tok_x"}),
                "currency",
            ),
            (json!({"amount": 1, "currency": "IDR"}), "card"),
            (
                json!({"amount": 1, "currency": "IDR", "token": "4111111111111111"}),
                "token",
            ),
            (
                json!({"amount": 1, "currency": "IDR", "card": {"number": "4111111111111112", "exp_month": 12, "exp_year": 2030}}),
                "card.number",
            ),
            (
                json!({"amount": 1, "currency": "IDR", "token": "tok_x", "description": "card 4111 1111 1111 1111"}),
                "description",
            ),
            (
                json!({"amount": 1, "currency": "IDR", "token": "tok_x", "metadata": {"n": "4111111111111111"}}),
                "metadata",
            ),
            (
                json!({"amount": 1, "currency": "IDR", "token": "tok_x", "customer": {"ip": "nope"}}),
                "customer.ip",
            ),
        ] {
            match parse_input(&body) {
                Err(IdentityError::Invalid { field: f, reason }) => {
                    assert_eq!(f, field, "{body}");
                    assert!(!reason.contains("4111"), "{reason}");
                }
                Err(other) => panic!("{body}: {other}"),
                Ok(_) => panic!("{body} was accepted"),
            }
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"y": 2, "x": [ {"q": 1, "p": 2} ]}});
        let b: Value =
            serde_json::from_str(r#"{"a": {"x": [ {"p": 2, "q": 1} ], "y": 2}, "b": 1}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&canonical(&a)).unwrap(),
            serde_json::to_string(&canonical(&b)).unwrap()
        );
    }
}
