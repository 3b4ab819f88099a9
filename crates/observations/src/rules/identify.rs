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
///
/// `None` when there is nothing to disagree with: no previous taxon, no other current
/// identification, or a previous taxon outside the tree (ungrafted). A client's `true` is
/// kept only for an identification at a strict ancestor of the previous taxon (the
/// "I can only say it is this genus, and it is not that species" case); otherwise the flag
/// says whether the new taxon is off the previous taxon's lineage.
pub fn disagreement(
    tree: &Tree,
    new_taxon: TaxonId,
    previous_taxon: Option<TaxonId>,
    other_current: bool,
    client: Option<bool>,
) -> Option<bool> {
    let previous = previous_taxon?;
    if !other_current || tree.get(previous).is_none() {
        return None;
    }
    if client == Some(true) && tree.is_strict_ancestor(new_taxon, previous) {
        return Some(true);
    }
    Some(
        !tree.is_ancestor_or_self(new_taxon, previous)
            && !tree.is_ancestor_or_self(previous, new_taxon),
    )
}

/// The counts behind one candidate of the community taxon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Node {
    pub taxon_id: TaxonId,
    /// Identifications at or below the candidate.
    pub cumulative: u32,
    /// Identifications off the candidate's lineage.
    pub disagreement: u32,
    /// Identifications that explicitly or implicitly said "no finer than this".
    pub conservative: u32,
}

impl Node {
    pub fn score(&self) -> f64 {
        let all = self.cumulative + self.disagreement + self.conservative;
        if all == 0 {
            0.0
        } else {
            f64::from(self.cumulative) / f64::from(all)
        }
    }
}

/// The score a candidate must beat (strictly): two thirds.
pub const SCORE_CUTOFF: f64 = 2.0 / 3.0;

/// The identifications that vote: current, not hidden, of an active taxon the tree knows,
/// in creation order.
fn working(tree: &Tree, idents: &[Ident]) -> Vec<Ident> {
    let mut working: Vec<Ident> = idents
        .iter()
        .filter(|i| i.current && !i.hidden && tree.get(i.taxon_id).is_some_and(|t| t.active))
        .cloned()
        .collect();
    working.sort_by_key(|i| i.id);
    working
}

/// `community_taxon_nodes`: every candidate (each voting identification's taxon and its
/// ancestors) with its counts, in lineage order of first appearance.
pub fn nodes(tree: &Tree, idents: &[Ident]) -> Vec<Node> {
    let working = working(tree, idents);
    let mut candidates: Vec<TaxonId> = Vec::new();
    for ident in &working {
        for id in tree.lineage(ident.taxon_id) {
            if !candidates.contains(&id) && tree.get(id).is_some() {
                candidates.push(id);
            }
        }
    }
    candidates
        .into_iter()
        .map(|candidate| {
            let lineage = tree.lineage(candidate);
            let cumulative = working
                .iter()
                .filter(|i| tree.is_ancestor_or_self(candidate, i.taxon_id))
                .count();
            let disagreement = working
                .iter()
                .filter(|i| {
                    !tree.is_ancestor_or_self(i.taxon_id, candidate)
                        && !tree.is_ancestor_or_self(candidate, i.taxon_id)
                })
                .count();
            let first = working
                .iter()
                .find(|i| tree.is_ancestor_or_self(candidate, i.taxon_id))
                .map(|i| i.id);
            let conservative = match first {
                None => 0,
                Some(first) => working
                    .iter()
                    .filter(|i| match i.disagreement {
                        // An explicit disagreement at an ancestor of the taxon it disagreed
                        // with disagrees with the whole branch below it down to that taxon.
                        Some(true) => {
                            let Some(previous) = i.previous_taxon_id else {
                                return false;
                            };
                            let branch = tree.lineage(previous);
                            let Some(base) = branch.iter().position(|&t| t == i.taxon_id) else {
                                return false;
                            };
                            if base + 1 == branch.len() {
                                return false;
                            }
                            branch[base + 1..].iter().any(|t| lineage.contains(t))
                        }
                        Some(false) => false,
                        // No stated intent: a later, coarser identification is a cautious
                        // disagreement with the finer candidate.
                        None => i.id > first && tree.is_strict_ancestor(i.taxon_id, candidate),
                    })
                    .count(),
            };
            Node {
                taxon_id: candidate,
                cumulative: count(cumulative),
                disagreement: count(disagreement),
                conservative: count(conservative),
            }
        })
        .collect()
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `get_community_taxon`: `None` with at most one current identification, or when no
/// candidate has two or more identifications at or below it scoring strictly above 2/3.
/// Among the candidates that qualify, the finest rank wins (then the deepest lineage, then
/// the lowest id, so the answer never depends on iteration order).
pub fn community_taxon(tree: &Tree, idents: &[Ident]) -> Option<CommunityTaxon> {
    if idents.iter().filter(|i| i.current).count() <= 1 {
        return None;
    }
    nodes(tree, idents)
        .into_iter()
        .filter(|n| n.cumulative >= 2 && n.score() > SCORE_CUTOFF)
        .min_by(|a, b| {
            let key = |n: &Node| {
                let t = tree.get(n.taxon_id);
                (
                    t.map_or(f64::MAX, |t| t.rank_level),
                    std::cmp::Reverse(t.map_or(0, |t| t.ancestry.len())),
                    n.taxon_id,
                )
            };
            let (ra, da, ia) = key(a);
            let (rb, db, ib) = key(b);
            ra.total_cmp(&rb).then(da.cmp(&db)).then(ia.cmp(&ib))
        })
        .map(|n| CommunityTaxon {
            taxon_id: n.taxon_id,
            score: n.score(),
        })
}

/// The category of every current identification, by id, against the community taxon:
/// `leading` with no community taxon or below it; `improving` at it or above it when no
/// earlier improving or supporting identification is at or below this one; `maverick`
/// off its lineage; `supporting` otherwise.
pub fn categories(
    tree: &Tree,
    idents: &[Ident],
    community: Option<TaxonId>,
) -> Vec<(i64, Category)> {
    let mut current: Vec<&Ident> = idents.iter().filter(|i| i.current).collect();
    current.sort_by_key(|i| i.id);
    let mut backing: Vec<TaxonId> = Vec::new();
    let mut out = Vec::with_capacity(current.len());
    for ident in current {
        let category = match community {
            None => Category::Leading,
            Some(ct) if tree.is_strict_ancestor(ct, ident.taxon_id) => Category::Leading,
            Some(ct) if tree.is_ancestor_or_self(ident.taxon_id, ct) => {
                let progressive = !backing
                    .iter()
                    .any(|&earlier| tree.is_ancestor_or_self(ident.taxon_id, earlier));
                backing.push(ident.taxon_id);
                if progressive {
                    Category::Improving
                } else {
                    Category::Supporting
                }
            }
            Some(_) => Category::Maverick,
        };
        out.push((ident.id, category));
    }
    out
}
