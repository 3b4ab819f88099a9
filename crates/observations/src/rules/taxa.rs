//! Taxa as the rules see them: an id, a rank level (lower is finer) and the ancestry.

use std::collections::HashMap;

pub type TaxonId = i64;

/// iNaturalist's `RANK_LEVELS` (taxon.rb): rank name → level, lower is finer.
pub const RANKS: &[(&str, f64)] = &[];

/// The level of a rank name (case-insensitive), `None` for an unknown rank.
pub fn rank_level(rank: &str) -> Option<f64> {
    let _ = rank;
    todo!()
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
        let _ = nodes;
        todo!()
    }

    pub fn get(&self, id: TaxonId) -> Option<&TaxonNode> {
        let _ = id;
        todo!()
    }

    /// `a` is `b` or one of `b`'s ancestors.
    pub fn is_ancestor_or_self(&self, a: TaxonId, b: TaxonId) -> bool {
        let _ = (a, b);
        todo!()
    }

    /// The ancestors of `id` from the root, then `id` itself; empty for an unknown id.
    pub fn lineage(&self, id: TaxonId) -> Vec<TaxonId> {
        let _ = id;
        todo!()
    }
}
