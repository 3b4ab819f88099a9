//! iNaturalist's rules (inaturalist/inaturalist, app/models/: identification.rb,
//! observation.rb, quality_metric.rb, taxon.rb, conservation_status.rb), as pure functions
//! over plain data. The API loads the rows, calls [`grade::assess`], and stores what it
//! returns in the same transaction as the change.

pub mod geoprivacy;
pub mod grade;
pub mod identify;
pub mod taxa;
