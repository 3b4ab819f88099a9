//! Rampart's WAF rule engine: a SecLang (ModSecurity rule language)
//! compiler and evaluator that runs the OWASP Core Rule Set, plus an
//! in-process runner for CRS's go-ftw regression tests.
//!
//! # Using it
//!
//! ```no_run
//! use rampart_waf::RuleSet;
//! use std::path::Path;
//!
//! let crs = Path::new("/etc/crs");
//! let rules = RuleSet::load(&[crs.join("crs-setup.conf")], &crs.join("rules"))?;
//! let mut tx = rules.transaction();
//! tx.process_connection("203.0.113.9", 51000, "10.0.0.1", 443);
//! tx.process_uri(b"GET", b"/search?q=1' OR '1'='1", b"HTTP/1.1");
//! tx.add_request_header(b"Host", b"example.com");
//! if let Some(stop) = tx.process_request_headers() {
//!     println!("blocked by {} with {}", stop.rule_id, stop.status);
//! }
//! tx.process_request_body();
//! for m in tx.matched_rules() {
//!     println!("{} {}", m.id, m.msg);
//! }
//! # Ok::<(), rampart_waf::LoadError>(())
//! ```
//!
//! A [`RuleSet`] is compiled once (regexes built, `@pm` word lists loaded
//! into Aho-Corasick automata, `@pmFromFile` read relative to the rule
//! file) and is `Send + Sync`; a [`Transaction`] borrows it per request.
//! The engine never logs request data itself: matches are returned to the
//! caller ([`MatchedRule`], [`Interruption`]).
//!
//! # What is implemented
//!
//! - Directives: `SecRule`, `SecAction`, `SecMarker`, `SecDefaultAction`,
//!   `SecRuleRemoveById/ByTag/ByMsg`, `SecRuleUpdateTargetById/ByTag/ByMsg`,
//!   `SecRuleUpdateActionById`, `SecRuleEngine`, `SecRequestBodyAccess`,
//!   `SecRequestBodyJsonDepthLimit`,
//!   `SecResponseBodyAccess`, `SecResponseBodyMimeType`, body and argument
//!   limits; other `Sec*` housekeeping directives are accepted and ignored.
//!   `Include` is rejected: rule sets load from a directory in file-name
//!   order after the setup files.
//! - Phases 1–5, chains, `skip`, `skipAfter`, `capture` (TX:0–9),
//!   `multiMatch`, `setvar` (`=`, `=+`, `=-`, `!`), the `ctl` actions CRS
//!   uses, macro expansion, `&` counts, `!` exclusions and `/regex/` keys.
//! - Operators: `@rx @pm @pmFromFile @streq @contains @containsWord
//!   @beginsWith @endsWith @within @eq @ge @gt @le @lt @detectSQLi
//!   @detectXSS @validateByteRange @validateUrlEncoding
//!   @validateUtf8Encoding @ipMatch @ipMatchFromFile @unconditionalMatch
//!   @noMatch @verifyCC`, all matching on bytes.
//! - Transformations: everything CRS names and more (see [`transform`]).
//! - Body processors: URL-encoded, JSON (`json.a.b` argument names;
//!   array elements take the array's name, as in ModSecurity v2), XML
//!   (`XML:/*` text and `XML://@*` attributes) and multipart with the
//!   `MULTIPART_*` strictness flags.
//! - `ftw` (cargo feature `ftw`, on by default): runs go-ftw YAML test
//!   suites in-process.
//!
//! # Semantics worth knowing
//!
//! - Matching follows ModSecurity v2 (the engine CRS's suite is written
//!   against): a rule's `setvar`/`ctl` actions run once per matching value,
//!   disruptive actions and logging once per matched chain; `REQUEST_BODY`
//!   exists for URL-encoded bodies or after `ctl:forceRequestBodyVariable`;
//!   `REQUEST_FILENAME` is the percent-decoded path.
//! - Response bodies are inspected only for `SecResponseBodyMimeType`
//!   types (default `text/plain text/html text/xml`).
//! - The request body processor is chosen from Content-Type before phase 1
//!   (URL-encoded, multipart, JSON incl. `+json`, XML), as ModSecurity's
//!   recommended configuration does; `ctl:requestBodyProcessor` overrides.
//! - [`http::parse_request`] rejects what a strict server (Apache httpd)
//!   answers with 400, but keeps repeated headers separate (httpd merges
//!   them), so CRS rule 920620 can see duplicate Content-Type headers.
//!
//! # What is not, and why
//!
//! - Persistent collections (IP, GLOBAL, SESSION) live only for one
//!   transaction: CRS v4 no longer needs them across requests, and shared
//!   state would need a store the integrator chooses.
//! - `@rx` uses the `regex` crate, so PCRE-only constructs (backreferences,
//!   lookaround) are rejected at load time; CRS v4 avoids them because
//!   Coraza (RE2) must run it too.
//! - Full XPath is not evaluated: any `XML:` key yields the document text,
//!   or attribute values when the key names attributes (`@`).
//! - No audit log, `exec`, `SecRuleScript` (Lua), `@inspectFile`, `@rbl`,
//!   `@geoLookup`, or GeoIP variables: they need infrastructure outside a
//!   pure library. Unsupported directives and operators are load errors, so
//!   a rule set never half-loads silently.
//! - `@detectSQLi`/`@detectXSS` come from `libinjectionrs`, a Rust port of
//!   libinjection; rare fingerprints may differ from the C library.

#![forbid(unsafe_code)]

mod body;
#[cfg(feature = "ftw")]
pub mod ftw;
pub mod http;
mod injection;
mod macros;
mod operator;
mod parser;
mod prefilter;
mod rule;
mod ruleset;
mod transaction;
pub mod transform;

pub use body::json_nesting_depth;
pub use operator::luhn;
pub use rule::{Disruptive, EngineMode};
pub use ruleset::{EngineConfig, LoadError, RuleSet, RuleSetBuilder};
pub use transaction::{Interruption, MatchedRule, Transaction};
pub use transform::decimal_digit;

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn ruleset_is_send_and_sync() {
        assert_send_sync::<RuleSet>();
    }
}
