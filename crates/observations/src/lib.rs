//! Amaturalist, Indonesia's citizen-science app (seed 000), on the platform.
//!
//! - [`rules`]: iNaturalist's rules as pure functions: taxon trees and ranks, the
//!   disagreement flag, identification categories, the community taxon, the quality grade,
//!   geoprivacy (obscuring to a 0.2° cell, taxon geoprivacy from conservation statuses).
//!   Everything that decides lives here, so one table-driven test covers it.
//! - [`api`]: the REST API over the store (`rampart_store::observations`), sealing true
//!   locations under the tenant's key, running the rules in each write's transaction.
#![forbid(unsafe_code)]

pub mod api;
pub mod checklist;
pub mod photo_api;
pub mod photos;
pub mod rules;
