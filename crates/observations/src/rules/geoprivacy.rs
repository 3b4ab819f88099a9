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
    // `rem_euclid`, never `%`: the truncating remainder puts southern and western points
    // (all of Java and Bali) one cell too far north or east.
    (
        lat - lat.rem_euclid(CELL_DEGREES),
        lon - lon.rem_euclid(CELL_DEGREES),
    )
}

/// A random point in the point's cell: the cell's centre plus, on each axis, a random
/// fraction in [−1, 1] (in steps of 1e-5) of half the cell.
pub fn obscure(lat: f64, lon: f64, rng: &mut impl rand::Rng) -> (f64, f64) {
    const STEPS: i32 = 100_000;
    let half = CELL_DEGREES / 2.0;
    let (base_lat, base_lon) = cell_origin(lat, lon);
    let mut axis = |base: f64| {
        let fraction = f64::from(rng.gen_range(-STEPS..=STEPS)) / f64::from(STEPS);
        base + half + fraction * half
    };
    let lat = axis(base_lat);
    let lon = axis(base_lon);
    (lat, lon)
}

/// The haversine length (R = 6,370,997 m) of the cell's SW→NE diagonal, rounded up.
pub fn cell_diagonal_m(lat: f64, lon: f64) -> u32 {
    let (lat1, lon1) = cell_origin(lat, lon);
    let metres = haversine_m(lat1, lon1, lat1 + CELL_DEGREES, lon1 + CELL_DEGREES).ceil();
    // At most ~31.5 km; the cast cannot truncate.
    metres as u32
}

/// The great-circle distance in metres on iNaturalist's sphere.
pub fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_RADIUS_M: f64 = 6_370_997.0;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let d_lat = p2 - p1;
    let d_lon = (lon2 - lon1).to_radians();
    let a = (d_lat / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (d_lon / 2.0).sin().powi(2);
    EARTH_RADIUS_M * 2.0 * a.sqrt().atan2((1.0 - a).sqrt())
}

/// The accuracy published for a point: the stated accuracy for an open point, at least
/// the cell's diagonal for an obscured one (private points publish none).
pub fn public_accuracy(
    geoprivacy: Geoprivacy,
    accuracy_m: Option<u32>,
    lat: f64,
    lon: f64,
) -> Option<u32> {
    match geoprivacy {
        Geoprivacy::Open => accuracy_m,
        Geoprivacy::Obscured => {
            let diagonal = cell_diagonal_m(lat, lon);
            Some(accuracy_m.map_or(diagonal, |a| a.max(diagonal)))
        }
        Geoprivacy::Private => None,
    }
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
    let mut involved: Vec<TaxonId> = Vec::new();
    for &taxon in taxa {
        // An unknown taxon still counts by its own id (its statuses may be loaded).
        let lineage = tree.lineage(taxon);
        if lineage.is_empty() {
            involved.push(taxon);
        }
        involved.extend(lineage);
    }
    statuses
        .iter()
        .filter(|s| involved.contains(&s.taxon_id))
        .map(|s| s.geoprivacy)
        .max()
        .unwrap_or(Geoprivacy::Open)
}
