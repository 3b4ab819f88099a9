//! Payments, the first complete seed system on Rampart (seed 003).
//!
//! What is here so far is the part that holds no state of its own:
//!
//! - [`connector`]: the `Processor` trait an acquirer connection implements, and the
//!   built-in `test` simulator that answers like an acquirer for well-known test cards and
//!   says in every answer that it is a simulator.
//! - [`fraud`]: the per-merchant rules (velocity by card, IP and e-mail, amount, card
//!   testing, cards per IP, country mismatch), each adding to a 0–100 score with a reason
//!   code, and the decision (`approve`, `review` ≥ 65, `decline` ≥ 75 by default). Rules
//!   evaluate [`fraud::Signals`], counts over sliding windows that the caller computes
//!   (from the live velocity store, or from history in a backtest), so one function decides
//!   in production and in `rampart fraud backtest`.
//! - [`backtest`]: replays past transactions from CSV through the rules and reports, per
//!   rule and overall, how many were flagged and, with labels, precision and recall.
//!
//! The payment flow itself (the API, idempotency, the state machine, records, webhooks
//! through the job queue, reports) builds on these and on the vault, audit log and job
//! queue.
#![forbid(unsafe_code)]

pub mod api;
pub mod backtest;
pub mod connector;
pub mod console;
pub mod currency;
pub mod fraud;
pub mod report;
pub mod webhooks;
