//! Geoprivacy: obscuring a point to its 0.2° cell, the public accuracy, and the taxon
//! geoprivacy from conservation statuses.

use super::taxa::{TaxonId, Tree};

/// Ordered from least to most strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Geoprivacy {
    Open,
    Obscured,
    Private,
}

impl Geoprivacy {
    pub fn as_str(self) -> &'static str {
        match self {
            Geoprivacy::Open => "open",
            Geoprivacy::Obscured => "obscured",
            Geoprivacy::Private => "private",
        }
    }

    /// `open`, `obscured` or `private`; iNaturalist treats anything else as open, the API
    /// refuses it instead, so this returns `None`.
    pub fn parse(s: &str) -> Option<Geoprivacy> {
        match s {
            "open" => Some(Geoprivacy::Open),
            "obscured" => Some(Geoprivacy::Obscured),
            "private" => Some(Geoprivacy::Private),
            _ => None,
        }
    }
}

/// The side of an obscuring cell, in degrees.
pub const CELL_DEGREES: f64 = 0.2;

/// The south-west corner of the 0.2° cell holding the point (floored modulo).
pub fn cell_origin(lat: f64, lon: f64) -> (f64, f64) {
    let _ = (lat, lon);
    todo!()
}

/// A random point in the point's cell: the cell's centre plus, on each axis, a random
/// fraction in [−1, 1] (in steps of 1e-5) of half the cell.
pub fn obscure(lat: f64, lon: f64, rng: &mut impl rand::Rng) -> (f64, f64) {
    let _ = (lat, lon, rng);
    todo!()
}

/// The haversine length (R = 6,370,997 m) of the cell's SW→NE diagonal, rounded up.
pub fn cell_diagonal_m(lat: f64, lon: f64) -> u32 {
    let _ = (lat, lon);
    todo!()
}

/// A conservation status of a taxon (global: this build has no places yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub taxon_id: TaxonId,
    /// IUCN level: NE 0, DD 5, LC 10, NT 20, VU 30, EN 40, CR 50, EW 60, EX 70.
    pub iucn: i32,
    pub geoprivacy: Geoprivacy,
}

/// The strictest geoprivacy of the statuses of `taxa` and all their ancestors (the taxa of
/// every current, unhidden identification, so a wrong one cannot reveal a site).
pub fn taxon_geoprivacy(tree: &Tree, taxa: &[TaxonId], statuses: &[Status]) -> Geoprivacy {
    let _ = (tree, taxa, statuses);
    todo!()
}
