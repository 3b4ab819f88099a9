//! Detection: Sigma rules and Sigma correlation rules over Rampart's security events.
//!
//! A pure library: it parses and compiles rules (the built-in set in `rules/`, compiled
//! into the binary, plus an operator's directory), and turns events into [`Alert`]s. It
//! owns no storage, network or clock: the caller hands each event with its own time, and
//! stores, delivers and deduplicates alerts. It must not depend on another Rampart crate.
//!
//! Events are the JSON the security log writes (`event`, `severity`, `source_ip`,
//! `tenant_id`, `user_id`, `api_key_id`, `request_id`, `detail`); a rule's field is a
//! top-level key or a dotted path (`detail.permission`).
//!
//! ```
//! use rampart_detection::Detector;
//! let mut detector = Detector::load(true, None).expect("the built-in rules load");
//! let event = serde_json::json!({"event": "refresh_token_reuse", "severity": "critical",
//!     "user_id": "u1", "request_id": "r1"});
//! let alerts = detector.observe(&event, 1_700_000_000_000);
//! assert_eq!(alerts[0].rule_id, "rampart-refresh-token-reuse");
//! ```

#![forbid(unsafe_code)]

mod builtin;
mod condition;
mod detector;
mod error;
mod matcher;
mod rule;
mod window;
mod yaml;

pub use builtin::RULES as BUILTIN_RULES;
pub use detector::{Alert, Detector};
pub use error::RuleError;
pub use rule::{Level, RuleInfo};
pub use window::Limits;
