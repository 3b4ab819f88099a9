//! Processor connectors: how a payment reaches an acquirer.
//!
//! The payment flow talks to a [`Processor`] only: it hands over an [`AuthorizationRequest`]
//! (a card number opened from the vault for this one call, the CVC if the client sent one,
//! the amount) and gets an [`Authorization`] back. A real acquirer connection implements
//! the same trait (its HTTP or ISO 8583 client, its credentials) and is chosen by name in
//! configuration; the flow does not change.
//!
//! Every authorization carries our payment id as its `reference`, recorded (as a
//! `pending` payment) before the call, so an acquirer can drop a repeat and, after a crash
//! or a lost answer, [`Processor::lookup`] asks it what became of that attempt.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One authorization (or sale, with `capture`) request. The card number and CVC live
/// only as long as this value; `Debug` shows neither.
pub struct AuthorizationRequest<'a> {
    pub card_number: &'a str,
    pub exp_month: u8,
    pub exp_year: u16,
    /// Used for this one request and never stored (PCI DSS 3.3.1.2).
    pub cvc: Option<&'a str>,
    /// Minor units of `currency`.
    pub amount: i64,
    /// ISO 4217, upper case.
    pub currency: &'a str,
    pub capture: bool,
    /// Our transaction id, so the acquirer's records can be matched to ours.
    pub reference: &'a str,
}

impl std::fmt::Debug for AuthorizationRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("amount", &self.amount)
            .field("currency", &self.currency)
            .field("capture", &self.capture)
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

/// What the acquirer answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    pub approved: bool,
    /// The acquirer's id for this authorization (for capture, refund, disputes).
    pub processor_reference: String,
    /// Our stable decline code (`card_declined`, `insufficient_funds`, `expired_card`,
    /// `incorrect_cvc`, `processing_error`), `None` when approved.
    pub decline_code: Option<String>,
    /// The acquirer's own response code (ISO 8583 field 39 style), for support.
    pub response_code: String,
    /// The issuing country of the card, when the acquirer reports it (ISO 3166 alpha-2).
    pub card_country: Option<String>,
    /// True for the built-in simulator: no money moved.
    pub simulated: bool,
}

/// A follow-up on an earlier authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    Capture,
    Cancel,
    Refund,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// The acquirer could not be reached or did not answer in time: the outcome is
    /// unknown, and the payment must be reconciled, never silently retried.
    #[error("the processor is unreachable: {0}")]
    Unreachable(String),
    #[error("the processor refused the request: {0}")]
    Refused(String),
    /// The connector cannot ask the acquirer about an earlier attempt.
    #[error("the processor cannot look up an earlier authorization")]
    Unsupported,
}

/// An acquirer connection.
pub trait Processor: Send + Sync {
    /// The configured name (`test`, or a real acquirer's).
    fn name(&self) -> &'static str;

    /// The issuing country of cards with this BIN (ISO 3166 alpha-2), when the acquirer
    /// can tell before an authorization; the fraud rules compare it with the customer's.
    fn issuing_country(&self, bin: &str) -> Option<String>;

    /// Authorizes (and with `capture`, captures) a card payment.
    fn authorize(
        &self,
        request: &AuthorizationRequest<'_>,
    ) -> impl std::future::Future<Output = Result<Authorization, ProcessorError>> + Send;

    /// What became of the authorization sent with `reference` (our payment id): the
    /// acquirer's answer, or `None` when it never received it. Asked only about attempts
    /// whose answer we lost (a crash, a client gone, a timeout); a connector whose
    /// acquirer cannot tell returns [`ProcessorError::Unsupported`].
    fn lookup(
        &self,
        reference: &str,
    ) -> impl std::future::Future<Output = Result<Option<Authorization>, ProcessorError>> + Send;

    /// Captures, cancels or refunds (`amount` in minor units) an earlier authorization.
    fn follow_up(
        &self,
        processor_reference: &str,
        action: FollowUp,
        amount: i64,
    ) -> impl std::future::Future<Output = Result<(), ProcessorError>> + Send;
}

/// The built-in `test` connector: a simulator that answers like an acquirer for the
/// well-known test cards and approves every other valid card. Every answer says
/// `simulated: true`, and its references start with `sim_`.
///
/// | card | answer |
/// |---|---|
/// | 4242 4242 4242 4242, 4111 1111 1111 1111, 5555 5555 5555 4444, … | approved |
/// | 4000 0000 0000 0002 | `card_declined` (05) |
/// | 4000 0000 0000 9995 | `insufficient_funds` (51) |
/// | 4000 0000 0000 0069 | `expired_card` (54) |
/// | 4000 0000 0000 0127 | `incorrect_cvc` (N7) |
/// | 4000 0000 0000 0119 | `processing_error` (96) |
///
/// Cards starting 4000 0566 report issuing country `GB`; 4000 0036 `ID`; other cards `US`.
///
/// Like an acquirer, it keeps its own record of what it authorized, outside our database
/// (a JSON line per authorization in `ledger`, no card data: reference, amount, answer),
/// so [`Processor::lookup`] answers for attempts whose answer we lost. Writing is one
/// appended line per authorization; only a lookup (rare: after a crash or a lost answer)
/// reads the file. `delay` holds each answer back after it is recorded (a slow acquirer).
#[derive(Debug, Default, Clone)]
pub struct Simulator {
    ledger: Option<Arc<Ledger>>,
    delay: Duration,
}

#[derive(Debug)]
struct Ledger {
    path: PathBuf,
    /// One writer at a time in this process; lines are appended with one `write`.
    lock: tokio::sync::Mutex<()>,
}

/// One line of the simulator's ledger.
#[derive(Debug, Serialize, Deserialize)]
struct LedgerEntry {
    reference: String,
    amount: i64,
    currency: String,
    capture: bool,
    answer: Authorization,
}

impl Simulator {
    /// A simulator that records its authorizations in `ledger` (a file it creates) and
    /// waits `delay` before each answer.
    pub fn with_ledger(ledger: PathBuf, delay: Duration) -> Simulator {
        Simulator {
            ledger: Some(Arc::new(Ledger {
                path: ledger,
                lock: tokio::sync::Mutex::new(()),
            })),
            delay,
        }
    }

    fn country(digits: &str) -> &'static str {
        if digits.starts_with("40000566") {
            "GB"
        } else if digits.starts_with("40000036") {
            "ID"
        } else {
            "US"
        }
    }

    fn answer(&self, r: &AuthorizationRequest<'_>) -> Authorization {
        let digits: String = r.card_number.chars().filter(char::is_ascii_digit).collect();
        let (decline_code, response_code) = match digits.as_str() {
            "4000000000000002" => (Some("card_declined"), "05"),
            "4000000000009995" => (Some("insufficient_funds"), "51"),
            "4000000000000069" => (Some("expired_card"), "54"),
            "4000000000000127" => (Some("incorrect_cvc"), "N7"),
            "4000000000000119" => (Some("processing_error"), "96"),
            _ => (None, "00"),
        };
        let decline_code = decline_code.map(str::to_string);
        let country = Simulator::country(&digits);
        Authorization {
            approved: decline_code.is_none(),
            processor_reference: format!("sim_{}", r.reference),
            decline_code,
            response_code: response_code.to_string(),
            card_country: Some(country.to_string()),
            simulated: true,
        }
    }
}

impl Processor for Simulator {
    fn name(&self) -> &'static str {
        "test"
    }

    fn issuing_country(&self, bin: &str) -> Option<String> {
        // The simulator knows its test cards by their first eight digits; a six-digit BIN
        // is all a payment has, so look at what is there.
        Some(Simulator::country(bin).to_string())
    }

    async fn authorize(
        &self,
        request: &AuthorizationRequest<'_>,
    ) -> Result<Authorization, ProcessorError> {
        let Some(ledger) = &self.ledger else {
            return Ok(self.answer(request));
        };
        let answer = self.answer(request);
        ledger
            .append(&LedgerEntry {
                reference: request.reference.to_string(),
                amount: request.amount,
                currency: request.currency.to_string(),
                capture: request.capture,
                answer: answer.clone(),
            })
            .await?;
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        Ok(answer)
    }

    async fn lookup(&self, reference: &str) -> Result<Option<Authorization>, ProcessorError> {
        match &self.ledger {
            Some(ledger) => ledger.find(reference).await,
            None => Err(ProcessorError::Unsupported),
        }
    }

    async fn follow_up(
        &self,
        processor_reference: &str,
        _action: FollowUp,
        amount: i64,
    ) -> Result<(), ProcessorError> {
        if !processor_reference.starts_with("sim_") {
            return Err(ProcessorError::Refused(
                "not an authorization of the simulator".into(),
            ));
        }
        if amount <= 0 {
            return Err(ProcessorError::Refused("amount must be positive".into()));
        }
        Ok(())
    }
}

impl Ledger {
    fn io(e: std::io::Error) -> ProcessorError {
        ProcessorError::Unreachable(format!("simulator ledger: {e}"))
    }

    /// The answer recorded for `reference`, if any. Reads the whole file: the simulator
    /// is for tests and rehearsals, and only a lookup reads it.
    async fn find(&self, reference: &str) -> Result<Option<Authorization>, ProcessorError> {
        let text = match tokio::fs::read_to_string(&self.path).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Ledger::io(e)),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<LedgerEntry>(l).ok())
            .find(|e| e.reference == reference)
            .map(|e| e.answer))
    }

    /// Appends one line, in one blocking-pool task (one hop per authorization, not one per
    /// file operation).
    async fn append(&self, entry: &LedgerEntry) -> Result<(), ProcessorError> {
        let mut line = serde_json::to_vec(entry)
            .map_err(|e| ProcessorError::Unreachable(format!("simulator ledger: {e}")))?;
        line.push(b'\n');
        let path = self.path.clone();
        let _one_writer = self.lock.lock().await;
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?
                .write_all(&line)
        })
        .await
        .map_err(|e| ProcessorError::Unreachable(format!("simulator ledger: {e}")))?
        .map_err(Ledger::io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(number: &str) -> AuthorizationRequest<'_> {
        AuthorizationRequest {
            card_number: number,
            exp_month: 12,
            exp_year: 2030,
            cvc: Some("123"),
            amount: 10_000,
            currency: "IDR",
            capture: true,
            reference: "txn_1",
        }
    }

    #[test]
    fn the_simulator_answers_like_an_acquirer_for_test_cards() {
        let sim = Simulator::default();
        let ok = sim.answer(&request("4242 4242 4242 4242"));
        assert!(ok.approved && ok.simulated && ok.decline_code.is_none());
        assert_eq!(ok.processor_reference, "sim_txn_1");
        for (card, code) in [
            ("4000000000000002", "card_declined"),
            ("4000000000009995", "insufficient_funds"),
            ("4000000000000069", "expired_card"),
            ("4000000000000127", "incorrect_cvc"),
        ] {
            let a = sim.answer(&request(card));
            assert!(!a.approved, "{card}");
            assert_eq!(a.decline_code.as_deref(), Some(code));
        }
        assert_eq!(
            sim.answer(&request("4000056655665556"))
                .card_country
                .as_deref(),
            Some("GB")
        );
    }

    #[test]
    fn debug_never_shows_the_card_or_cvc() {
        let text = format!("{:?}", request("4242424242424242"));
        assert!(!text.contains("4242") && !text.contains("123"), "{text}");
    }
}
