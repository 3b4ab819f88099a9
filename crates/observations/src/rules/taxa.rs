//! Taxa as the rules see them: an id, a rank level (lower is finer) and the ancestry.

use std::collections::HashMap;

pub type TaxonId = i64;

/// iNaturalist's `RANK_LEVELS` (taxon.rb): rank name → level, lower is finer.
pub const RANKS: &[(&str, f64)] = &[
    ("stateofmatter", 100.0),
    ("kingdom", 70.0),
    ("phylum", 60.0),
    ("subphylum", 57.0),
    ("superclass", 53.0),
    ("class", 50.0),
    ("subclass", 47.0),
    ("infraclass", 45.0),
    ("subterclass", 44.0),
    ("superorder", 43.0),
    ("order", 40.0),
    ("suborder", 37.0),
    ("infraorder", 35.0),
    ("parvorder", 34.5),
    ("zoosection", 34.0),
    ("zoosubsection", 33.5),
    ("superfamily", 33.0),
    ("epifamily", 32.0),
    ("family", 30.0),
    ("subfamily", 27.0),
    ("supertribe", 26.0),
    ("tribe", 25.0),
    ("subtribe", 24.0),
    ("genus", 20.0),
    ("genushybrid", 20.0),
    ("subgenus", 15.0),
    ("section", 13.0),
    ("subsection", 12.0),
    ("complex", 11.0),
    ("species", 10.0),
    ("hybrid", 10.0),
    ("subspecies", 5.0),
    ("variety", 5.0),
    ("form", 5.0),
    ("infrahybrid", 5.0),
];

/// The level of a rank name (case-insensitive), `None` for an unknown rank.
pub fn rank_level(rank: &str) -> Option<f64> {
    let rank = rank.trim();
    RANKS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(rank))
        .map(|&(_, level)| level)
}

/// The level of genus: IDs at or below it are "genus or finer".
pub const GENUS_LEVEL: f64 = 20.0;
/// The level of species.
pub const SPECIES_LEVEL: f64 = 10.0;
/// The level of family.
pub const FAMILY_LEVEL: f64 = 30.0;

#[derive(Debug, Clone, PartialEq)]
pub struct TaxonNode {
    pub id: TaxonId,
    pub rank_level: f64,
    /// Ancestors from the root down to the parent; excludes the taxon itself.
    pub ancestry: Vec<TaxonId>,
    /// Inactive taxa (e.g. merged away) take no part in the community taxon.
    pub active: bool,
}

/// The taxa an observation's rules need: every identification's taxon and its ancestors.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    nodes: HashMap<TaxonId, TaxonNode>,
}

impl Tree {
    pub fn new(nodes: impl IntoIterator<Item = TaxonNode>) -> Tree {
        Tree {
            nodes: nodes.into_iter().map(|n| (n.id, n)).collect(),
        }
    }

    pub fn get(&self, id: TaxonId) -> Option<&TaxonNode> {
        self.nodes.get(&id)
    }

    /// `a` is `b` or one of `b`'s ancestors. An unknown `b` has no ancestors.
    pub fn is_ancestor_or_self(&self, a: TaxonId, b: TaxonId) -> bool {
        a == b || self.is_strict_ancestor(a, b)
    }

    /// `a` is one of `b`'s ancestors (not `b` itself).
    pub fn is_strict_ancestor(&self, a: TaxonId, b: TaxonId) -> bool {
        self.nodes
            .get(&b)
            .is_some_and(|node| node.ancestry.contains(&a))
    }

    /// The ancestors of `id` from the root, then `id` itself; empty for an unknown id.
    pub fn lineage(&self, id: TaxonId) -> Vec<TaxonId> {
        match self.nodes.get(&id) {
            Some(node) => {
                let mut ids = node.ancestry.clone();
                ids.push(id);
                ids
            }
            None => Vec::new(),
        }
    }

    /// The rank level of `id`, `None` for an unknown taxon.
    pub fn rank_level(&self, id: TaxonId) -> Option<f64> {
        self.nodes.get(&id).map(|n| n.rank_level)
    }
}
