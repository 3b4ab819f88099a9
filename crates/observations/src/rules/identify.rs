//! Identifications: the disagreement flag, the community taxon and the categories.

use super::taxa::{TaxonId, Tree};

/// One identification as the rules see it. `id` orders identifications by creation.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub id: i64,
    pub user_id: String,
    pub taxon_id: TaxonId,
    /// The user's current identification (one per user; withdrawn ones are not current).
    pub current: bool,
    /// Hidden by a curator: takes no part in the community taxon.
    pub hidden: bool,
    /// As stored when the identification was made (see [`disagreement`]).
    pub disagreement: Option<bool>,
    /// The observation's probable taxon when the identification was made.
    pub previous_taxon_id: Option<TaxonId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Leading,
    Improving,
    Supporting,
    Maverick,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Leading => "leading",
            Category::Improving => "improving",
            Category::Supporting => "supporting",
            Category::Maverick => "maverick",
        }
    }
}

/// The community taxon and its score (cumulative ÷ (cumulative + disagreement +
/// conservative disagreement)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommunityTaxon {
    pub taxon_id: TaxonId,
    pub score: f64,
}

/// The `disagreement` flag of a new identification of `new_taxon`, made when the
/// observation's probable taxon was `previous_taxon`, given whether other current
/// identifications exist and what the client sent.
pub fn disagreement(
    tree: &Tree,
    new_taxon: TaxonId,
    previous_taxon: Option<TaxonId>,
    other_current: bool,
    client: Option<bool>,
) -> Option<bool> {
    let _ = (tree, new_taxon, previous_taxon, other_current, client);
    todo!()
}

/// `get_community_taxon`: `None` with at most one current identification, or when no
/// candidate has two or more identifications at or below it scoring strictly above 2/3.
pub fn community_taxon(tree: &Tree, idents: &[Ident]) -> Option<CommunityTaxon> {
    let _ = (tree, idents);
    todo!()
}

/// The category of every current identification, by id, against the community taxon.
pub fn categories(
    tree: &Tree,
    idents: &[Ident],
    community: Option<TaxonId>,
) -> Vec<(i64, Category)> {
    let _ = (tree, idents, community);
    todo!()
}
