//! Data-quality metrics, the observation's taxon and its quality grade.

use super::identify::{self, Category, CommunityTaxon, Ident};
use super::taxa::{TaxonId, Tree, FAMILY_LEVEL, SPECIES_LEVEL};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grade {
    Casual,
    NeedsId,
    Research,
}

impl Grade {
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Casual => "casual",
            Grade::NeedsId => "needs_id",
            Grade::Research => "research",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Wild,
    Location,
    Date,
    Evidence,
    Recent,
    Subject,
    Accurate,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::Wild,
        Metric::Location,
        Metric::Date,
        Metric::Evidence,
        Metric::Recent,
        Metric::Subject,
        Metric::Accurate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Wild => "wild",
            Metric::Location => "location",
            Metric::Date => "date",
            Metric::Evidence => "evidence",
            Metric::Recent => "recent",
            Metric::Subject => "subject",
            Metric::Accurate => "accurate",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// The votes on one metric (a user votes once per metric; a system `wild = false` vote
/// counts as a disagree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricVotes {
    pub metric: Metric,
    pub agree: u32,
    pub disagree: u32,
}

/// Everything the grade depends on.
#[derive(Debug, Clone)]
pub struct GradeInput<'a> {
    pub tree: &'a Tree,
    /// Every identification of the observation (current or not, hidden or not).
    pub idents: &'a [Ident],
    pub owner_id: &'a str,
    /// False when the observation or its owner opted out of the community taxon.
    pub prefers_community_taxon: bool,
    /// Coordinates, public or private.
    pub has_coordinates: bool,
    pub has_date: bool,
    /// At least one photo or sound.
    pub has_media: bool,
    /// The observation or one of its media is flagged or hidden.
    pub flagged: bool,
    pub metrics: &'a [MetricVotes],
    pub needs_id_up: u32,
    pub needs_id_down: u32,
    /// The genus *Homo*, when the taxonomy has it: an observation of it or below is casual.
    pub homo: Option<TaxonId>,
}

/// What the rules decide for an observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub community: Option<CommunityTaxon>,
    /// The observation's taxon: the community taxon, or the owner's when opted out or
    /// when there is no community taxon.
    pub taxon_id: Option<TaxonId>,
    pub grade: Grade,
    pub categories: Vec<(i64, Category)>,
    pub agreements: u32,
    pub disagreements: u32,
}

/// A metric passes with no votes or when agrees ÷ votes ≥ 0.5 (a tie passes).
pub fn metric_passes(votes: &MetricVotes) -> bool {
    let all = u64::from(votes.agree) + u64::from(votes.disagree);
    all == 0 || 2 * u64::from(votes.agree) >= all
}

pub fn assess(input: &GradeInput) -> Assessment {
    let tree = input.tree;
    let current: Vec<&Ident> = input.idents.iter().filter(|i| i.current).collect();
    let owner = current
        .iter()
        .filter(|i| i.user_id == input.owner_id)
        .max_by_key(|i| i.id)
        .copied();

    let community = identify::community_taxon(tree, input.idents);
    let ct = community.map(|c| c.taxon_id);
    let categories = identify::categories(tree, input.idents, ct);

    // The observation's taxon: the owner's when opted out; otherwise the community's, then
    // the owner's, then the latest other identification's.
    let taxon_id = if !input.prefers_community_taxon {
        owner.map(|i| i.taxon_id)
    } else {
        ct.or(owner.map(|i| i.taxon_id))
            .or_else(|| current.iter().max_by_key(|i| i.id).map(|i| i.taxon_id))
    };

    let (agreements, disagreements) = match taxon_id {
        Some(taxon) if current.len() > 1 => {
            match identify::nodes(tree, input.idents)
                .into_iter()
                .find(|n| n.taxon_id == taxon)
            {
                Some(node) => {
                    let owner_counted = owner
                        .is_some_and(|o| !o.hidden && tree.is_ancestor_or_self(taxon, o.taxon_id));
                    (
                        node.cumulative.saturating_sub(u32::from(owner_counted)),
                        node.disagreement + node.conservative,
                    )
                }
                None => (0, 0),
            }
        }
        _ => (0, 0),
    };

    let grade = grade(input, ct, taxon_id, owner, &categories);
    Assessment {
        community,
        taxon_id,
        grade,
        categories,
        agreements,
        disagreements,
    }
}

/// `get_quality_grade`, given the community taxon, the observation's taxon and the owner's
/// current identification.
fn grade(
    input: &GradeInput,
    ct: Option<TaxonId>,
    taxon_id: Option<TaxonId>,
    owner: Option<&Ident>,
    categories: &[(i64, Category)],
) -> Grade {
    let tree = input.tree;
    let human = match (input.homo, taxon_id) {
        (Some(homo), Some(taxon)) => tree.is_ancestor_or_self(homo, taxon),
        _ => false,
    };
    let candidate = !human
        && input.has_coordinates
        && input.has_date
        && input.has_media
        && !input.flagged
        && input.metrics.iter().all(metric_passes);
    if !candidate {
        return Grade::Casual;
    }
    if input.needs_id_up > input.needs_id_down {
        return Grade::NeedsId;
    }
    let voted_out = input.needs_id_down > input.needs_id_up;
    let Some(ct) = ct else {
        return Grade::NeedsId;
    };
    let ct_level = tree.get(ct).map_or(f64::MAX, |t| t.rank_level);

    if !input.prefers_community_taxon {
        let Some(owner) = owner else {
            return Grade::Casual;
        };
        let maverick = categories
            .iter()
            .any(|&(id, c)| id == owner.id && c == Category::Maverick);
        if maverick {
            return Grade::Casual;
        }
        let owner_level = tree.get(owner.taxon_id).map_or(f64::MAX, |t| t.rank_level);
        let on_lineage = tree.is_ancestor_or_self(ct, owner.taxon_id)
            || tree.is_ancestor_or_self(owner.taxon_id, ct);
        if owner_level <= SPECIES_LEVEL && on_lineage {
            return Grade::Research;
        }
        if owner_level < FAMILY_LEVEL && owner.taxon_id == ct && voted_out {
            return Grade::Research;
        }
        return if voted_out {
            Grade::Casual
        } else {
            Grade::NeedsId
        };
    }

    if ct_level <= SPECIES_LEVEL && taxon_id == Some(ct) {
        return Grade::Research;
    }
    if voted_out {
        return if ct_level < FAMILY_LEVEL && taxon_id == Some(ct) {
            Grade::Research
        } else {
            Grade::Casual
        };
    }
    Grade::NeedsId
}
