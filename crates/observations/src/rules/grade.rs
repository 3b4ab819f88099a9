//! Data-quality metrics, the observation's taxon and its quality grade.

use super::identify::{Category, CommunityTaxon, Ident};
use super::taxa::{TaxonId, Tree};

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

/// A metric passes with no votes or when agrees ÷ votes ≥ 0.5.
pub fn metric_passes(votes: &MetricVotes) -> bool {
    let _ = votes;
    todo!()
}

pub fn assess(input: &GradeInput) -> Assessment {
    let _ = input;
    todo!()
}
