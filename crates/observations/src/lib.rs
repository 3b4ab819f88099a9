//! Amaturalist, Indonesia's citizen-science app (seed 000), on the platform.
//!
//! - [`rules`]: iNaturalist's rules as pure functions: taxon trees and ranks, the
//!   disagreement flag, identification categories, the community taxon, the quality grade,
//!   geoprivacy (obscuring to a 0.2° cell, taxon geoprivacy from conservation statuses).
//!   Everything that decides lives here, so one table-driven test covers it.
#![forbid(unsafe_code)]

pub mod rules;
