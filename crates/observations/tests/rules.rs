//! iNaturalist's rules as one table: identifications in, community taxon, grade, counts
//! and categories out. Plus the disagreement flag, the categories against a given taxon,
//! and geoprivacy (cells, draws, diagonals, taxon statuses).

use rampart_observations::rules::geoprivacy::{self, Geoprivacy, Status};
use rampart_observations::rules::grade::{self, Grade, GradeInput, Metric, MetricVotes};
use rampart_observations::rules::identify::{self, Category, Ident};
use rampart_observations::rules::taxa::{rank_level, TaxonId, TaxonNode, Tree};
use rand::SeedableRng;

// Life > Animalia > Chordata > Aves > Passeriformes > Pycnonotidae > Pycnonotus > species;
// Passeriformes > Muscicapidae > Copsychus > C. malabaricus; Chordata > Mammalia > Primates
// > Hominidae > Homo > H. sapiens.
const LIFE: TaxonId = 1;
const ANIMALIA: TaxonId = 2;
const CHORDATA: TaxonId = 3;
const AVES: TaxonId = 4;
const PASSERIFORMES: TaxonId = 5;
const PYCNONOTIDAE: TaxonId = 6;
const PYCNONOTUS: TaxonId = 7;
/// Sooty-headed bulbul.
const A: TaxonId = 8;
/// Yellow-vented bulbul.
const B: TaxonId = 9;
/// Straw-headed bulbul (critically endangered, trapped for the cage-bird trade).
const C: TaxonId = 10;
const A_SUBSPECIES: TaxonId = 11;
const MUSCICAPIDAE: TaxonId = 12;
const COPSYCHUS: TaxonId = 13;
/// White-rumped shama.
const SHAMA: TaxonId = 14;
const MAMMALIA: TaxonId = 15;
const PRIMATES: TaxonId = 16;
const HOMINIDAE: TaxonId = 17;
const HOMO: TaxonId = 18;
const SAPIENS: TaxonId = 19;
/// A species merged away: inactive.
const MERGED: TaxonId = 21;

fn tree() -> Tree {
    let spec: &[(TaxonId, Option<TaxonId>, &str, bool)] = &[
        (LIFE, None, "stateofmatter", true),
        (ANIMALIA, Some(LIFE), "kingdom", true),
        (CHORDATA, Some(ANIMALIA), "phylum", true),
        (AVES, Some(CHORDATA), "class", true),
        (PASSERIFORMES, Some(AVES), "order", true),
        (PYCNONOTIDAE, Some(PASSERIFORMES), "family", true),
        (PYCNONOTUS, Some(PYCNONOTIDAE), "genus", true),
        (A, Some(PYCNONOTUS), "species", true),
        (B, Some(PYCNONOTUS), "species", true),
        (C, Some(PYCNONOTUS), "species", true),
        (A_SUBSPECIES, Some(A), "subspecies", true),
        (MUSCICAPIDAE, Some(PASSERIFORMES), "family", true),
        (COPSYCHUS, Some(MUSCICAPIDAE), "genus", true),
        (SHAMA, Some(COPSYCHUS), "species", true),
        (MAMMALIA, Some(CHORDATA), "class", true),
        (PRIMATES, Some(MAMMALIA), "order", true),
        (HOMINIDAE, Some(PRIMATES), "family", true),
        (HOMO, Some(HOMINIDAE), "genus", true),
        (SAPIENS, Some(HOMO), "species", true),
        (MERGED, Some(PYCNONOTUS), "species", false),
    ];
    let parent_of = |id: TaxonId| spec.iter().find(|s| s.0 == id).and_then(|s| s.1);
    Tree::new(spec.iter().map(|&(id, _, rank, active)| {
        let mut ancestry = Vec::new();
        let mut at = parent_of(id);
        while let Some(p) = at {
            ancestry.insert(0, p);
            at = parent_of(p);
        }
        TaxonNode {
            id,
            rank_level: rank_level(rank).expect("known rank"),
            ancestry,
            active,
        }
    }))
}

/// An identification written as (user, taxon); the owner is "owner".
#[derive(Clone, Copy)]
struct Id {
    user: &'static str,
    taxon: TaxonId,
    current: bool,
    hidden: bool,
    disagreement: Option<bool>,
    previous: Option<TaxonId>,
}

const fn id(user: &'static str, taxon: TaxonId) -> Id {
    Id {
        user,
        taxon,
        current: true,
        hidden: false,
        disagreement: Some(false),
        previous: None,
    }
}

impl Id {
    const fn withdrawn(mut self) -> Id {
        self.current = false;
        self
    }
    const fn hidden(mut self) -> Id {
        self.hidden = true;
        self
    }
    const fn disagreeing(mut self, flag: Option<bool>, previous: TaxonId) -> Id {
        self.disagreement = flag;
        self.previous = Some(previous);
        self
    }
}

fn idents(ids: &[Id]) -> Vec<Ident> {
    ids.iter()
        .enumerate()
        .map(|(n, i)| Ident {
            id: n as i64 + 1,
            user_id: i.user.to_string(),
            taxon_id: i.taxon,
            current: i.current,
            hidden: i.hidden,
            disagreement: i.disagreement,
            previous_taxon_id: i.previous,
        })
        .collect()
}

/// What is true of an observation beyond its identifications.
#[derive(Clone, Copy)]
struct Obs {
    prefers_community_taxon: bool,
    has_coordinates: bool,
    has_date: bool,
    has_media: bool,
    flagged: bool,
    wild: (u32, u32),
    needs_id: (u32, u32),
}

const VERIFIABLE: Obs = Obs {
    prefers_community_taxon: true,
    has_coordinates: true,
    has_date: true,
    has_media: true,
    flagged: false,
    wild: (0, 0),
    needs_id: (0, 0),
};

struct Case {
    name: &'static str,
    ids: &'static [Id],
    obs: Obs,
    community: Option<TaxonId>,
    taxon: Option<TaxonId>,
    grade: Grade,
    /// (agreements, disagreements)
    counts: (u32, u32),
}

const fn opted_out(mut obs: Obs) -> Obs {
    obs.prefers_community_taxon = false;
    obs
}

const CASES: &[Case] = &[
    Case {
        name: "one identification: no community taxon, needs ID",
        ids: &[id("owner", A)],
        obs: VERIFIABLE,
        community: None,
        taxon: Some(A),
        grade: Grade::NeedsId,
        counts: (0, 0),
    },
    Case {
        name: "A + A: community A at species, research grade",
        ids: &[id("owner", A), id("u2", A)],
        obs: VERIFIABLE,
        community: Some(A),
        taxon: Some(A),
        grade: Grade::Research,
        counts: (1, 0),
    },
    Case {
        name: "A + A + B: A scores exactly 2/3 and fails, the genus wins",
        ids: &[id("owner", A), id("u2", A), id("u3", B)],
        obs: VERIFIABLE,
        community: Some(PYCNONOTUS),
        taxon: Some(PYCNONOTUS),
        grade: Grade::NeedsId,
        counts: (2, 0),
    },
    Case {
        name: "A + A + A + B: A scores 0.75",
        ids: &[id("owner", A), id("u2", A), id("u3", A), id("u4", B)],
        obs: VERIFIABLE,
        community: Some(A),
        taxon: Some(A),
        grade: Grade::Research,
        counts: (2, 1),
    },
    Case {
        name: "A + B: the genus, needs ID",
        ids: &[id("owner", A), id("u2", B)],
        obs: VERIFIABLE,
        community: Some(PYCNONOTUS),
        taxon: Some(PYCNONOTUS),
        grade: Grade::NeedsId,
        counts: (1, 0),
    },
    Case {
        name: "A + B voted out of needs ID: research at genus (finer than family)",
        ids: &[id("owner", A), id("u2", B)],
        obs: Obs {
            needs_id: (0, 1),
            ..VERIFIABLE
        },
        community: Some(PYCNONOTUS),
        taxon: Some(PYCNONOTUS),
        grade: Grade::Research,
        counts: (1, 0),
    },
    Case {
        name: "A + shama voted out: community at order, casual",
        ids: &[id("owner", A), id("u2", SHAMA)],
        obs: Obs {
            needs_id: (0, 1),
            ..VERIFIABLE
        },
        community: Some(PASSERIFORMES),
        taxon: Some(PASSERIFORMES),
        grade: Grade::Casual,
        counts: (1, 0),
    },
    Case {
        name: "needs-ID up vote keeps a species consensus at needs ID",
        ids: &[id("owner", A), id("u2", A)],
        obs: Obs {
            needs_id: (1, 0),
            ..VERIFIABLE
        },
        community: Some(A),
        taxon: Some(A),
        grade: Grade::NeedsId,
        counts: (1, 0),
    },
    Case {
        name: "needs-ID tie changes nothing",
        ids: &[id("owner", A), id("u2", A)],
        obs: Obs {
            needs_id: (1, 1),
            ..VERIFIABLE
        },
        community: Some(A),
        taxon: Some(A),
        grade: Grade::Research,
        counts: (1, 0),
    },
    Case {
        name: "no photo or sound: casual",
        ids: &[id("owner", A), id("u2", A)],
        obs: Obs {
            has_media: false,
            ..VERIFIABLE
        },
        community: Some(A),
        taxon: Some(A),
        grade: Grade::Casual,
        counts: (1, 0),
    },
    Case {
        name: "no coordinates: casual",
        ids: &[id("owner", A), id("u2", A)],
        obs: Obs {
            has_coordinates: false,
            ..VERIFIABLE
        },
        community: Some(A),
        taxon: Some(A),
        grade: Grade::Casual,
        counts: (1, 0),
    },
    Case {
        name: "no date: casual",
        ids: &[id("owner", A), id("u2", A)],
        obs: Obs {
            has_date: false,
            ..VERIFIABLE
        },
        community: Some(A),
        taxon: Some(A),
        grade: Grade::Casual,
        counts: (1, 0),
    },
    Case {
        name: "flagged: casual",
        ids: &[id("owner", A), id("u2", A)],
        obs: Obs {
            flagged: true,
            ..VERIFIABLE
        },
        community: Some(A),
        taxon: Some(A),
        grade: Grade::Casual,
        counts: (1, 0),
    },
    Case {
        name: "voted not wild: casual",
        ids: &[id("owner", A), id("u2", A)],
        obs: Obs {
            wild: (0, 1),
            ..VERIFIABLE
        },
        community: Some(A),
        taxon: Some(A),
        grade: Grade::Casual,
        counts: (1, 0),
    },
    Case {
        name: "wild vote tied: the metric passes",
        ids: &[id("owner", A), id("u2", A)],
        obs: Obs {
            wild: (1, 1),
            ..VERIFIABLE
        },
        community: Some(A),
        taxon: Some(A),
        grade: Grade::Research,
        counts: (1, 0),
    },
    Case {
        name: "humans are casual",
        ids: &[id("owner", SAPIENS), id("u2", SAPIENS)],
        obs: VERIFIABLE,
        community: Some(SAPIENS),
        taxon: Some(SAPIENS),
        grade: Grade::Casual,
        counts: (1, 0),
    },
    Case {
        name: "a withdrawn identification does not count",
        ids: &[id("owner", A), id("u2", B).withdrawn()],
        obs: VERIFIABLE,
        community: None,
        taxon: Some(A),
        grade: Grade::NeedsId,
        counts: (0, 0),
    },
    Case {
        name: "a hidden identification does not vote",
        ids: &[id("owner", A), id("u2", A), id("u3", B).hidden()],
        obs: VERIFIABLE,
        community: Some(A),
        taxon: Some(A),
        grade: Grade::Research,
        counts: (1, 0),
    },
    Case {
        name: "an identification of an inactive taxon does not vote",
        ids: &[id("owner", A), id("u2", A), id("u3", MERGED)],
        obs: VERIFIABLE,
        community: Some(A),
        taxon: Some(A),
        grade: Grade::Research,
        counts: (1, 0),
    },
    Case {
        name: "species + its subspecies: community at species",
        ids: &[id("owner", A), id("u2", A_SUBSPECIES)],
        obs: VERIFIABLE,
        community: Some(A),
        taxon: Some(A),
        grade: Grade::Research,
        counts: (1, 0),
    },
    Case {
        name: "two subspecies IDs over a species ID: community at subspecies",
        ids: &[
            id("owner", A),
            id("u2", A_SUBSPECIES),
            id("u3", A_SUBSPECIES),
        ],
        obs: VERIFIABLE,
        community: Some(A_SUBSPECIES),
        taxon: Some(A_SUBSPECIES),
        grade: Grade::Research,
        counts: (2, 0),
    },
    Case {
        name: "A + A + a later class ID without stated intent: a conservative disagreement",
        ids: &[
            id("owner", A),
            id("u2", A),
            id("u3", AVES).disagreeing(None, A),
        ],
        obs: VERIFIABLE,
        community: Some(AVES),
        taxon: Some(AVES),
        grade: Grade::NeedsId,
        counts: (2, 0),
    },
    Case {
        name: "A + A + a later class ID that does not disagree: A stands",
        ids: &[
            id("owner", A),
            id("u2", A),
            id("u3", AVES).disagreeing(Some(false), A),
        ],
        obs: VERIFIABLE,
        community: Some(A),
        taxon: Some(A),
        grade: Grade::Research,
        counts: (1, 0),
    },
    Case {
        name: "A + A + an explicit disagreement at class: the branch below falls",
        ids: &[
            id("owner", A),
            id("u2", A),
            id("u3", AVES).disagreeing(Some(true), A),
        ],
        obs: VERIFIABLE,
        community: Some(AVES),
        taxon: Some(AVES),
        grade: Grade::NeedsId,
        counts: (2, 0),
    },
    Case {
        name: "a bird and a human: community at phylum",
        ids: &[id("owner", A), id("u2", A), id("u3", SAPIENS)],
        obs: VERIFIABLE,
        community: Some(CHORDATA),
        taxon: Some(CHORDATA),
        grade: Grade::NeedsId,
        counts: (2, 0),
    },
    Case {
        name: "opted out, owner at species under the community genus: research",
        ids: &[id("owner", A), id("u2", B), id("u3", B)],
        obs: opted_out(VERIFIABLE),
        community: Some(PYCNONOTUS),
        taxon: Some(A),
        grade: Grade::Research,
        counts: (0, 2),
    },
    Case {
        name: "opted out, owner's ID is maverick: casual, owner's taxon kept",
        ids: &[id("owner", SHAMA), id("u2", A), id("u3", A), id("u4", A)],
        obs: opted_out(VERIFIABLE),
        community: Some(A),
        taxon: Some(SHAMA),
        grade: Grade::Casual,
        counts: (0, 3),
    },
    Case {
        name: "opted out without an owner ID: casual, no taxon",
        ids: &[id("u2", A), id("u3", A)],
        obs: opted_out(VERIFIABLE),
        community: Some(A),
        taxon: None,
        grade: Grade::Casual,
        counts: (0, 0),
    },
    Case {
        name: "opted out, owner at the community genus, voted out: research",
        ids: &[id("owner", PYCNONOTUS), id("u2", A), id("u3", B)],
        obs: Obs {
            needs_id: (0, 1),
            ..opted_out(VERIFIABLE)
        },
        community: Some(PYCNONOTUS),
        taxon: Some(PYCNONOTUS),
        grade: Grade::Research,
        counts: (2, 0),
    },
    Case {
        name: "opted out, owner at the community family, voted out: casual",
        ids: &[id("owner", PYCNONOTIDAE), id("u2", A), id("u3", SHAMA)],
        obs: Obs {
            needs_id: (0, 1),
            ..opted_out(VERIFIABLE)
        },
        community: Some(PASSERIFORMES),
        taxon: Some(PYCNONOTIDAE),
        grade: Grade::Casual,
        counts: (1, 1),
    },
];

#[test]
fn the_rules_table() {
    let tree = tree();
    let mut failures = Vec::new();
    for case in CASES {
        let idents = idents(case.ids);
        let metrics = [MetricVotes {
            metric: Metric::Wild,
            agree: case.obs.wild.0,
            disagree: case.obs.wild.1,
        }];
        let input = GradeInput {
            tree: &tree,
            idents: &idents,
            owner_id: "owner",
            prefers_community_taxon: case.obs.prefers_community_taxon,
            has_coordinates: case.obs.has_coordinates,
            has_date: case.obs.has_date,
            has_media: case.obs.has_media,
            flagged: case.obs.flagged,
            metrics: &metrics,
            needs_id_up: case.obs.needs_id.0,
            needs_id_down: case.obs.needs_id.1,
            homo: Some(HOMO),
        };
        let got = grade::assess(&input);
        let got_tuple = (
            got.community.map(|c| c.taxon_id),
            got.taxon_id,
            got.grade,
            (got.agreements, got.disagreements),
        );
        let want = (case.community, case.taxon, case.grade, case.counts);
        if got_tuple != want {
            failures.push(format!("{}: got {got_tuple:?}, want {want:?}", case.name));
        }
        // Every current identification gets exactly one category.
        let current = idents.iter().filter(|i| i.current).count();
        assert_eq!(got.categories.len(), current, "{}", case.name);
    }
    assert!(CASES.len() >= 25, "the table keeps at least 25 scenarios");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_community_score_is_cumulative_over_all_votes() {
    let tree = tree();
    let four = idents(&[id("owner", A), id("u2", A), id("u3", A), id("u4", B)]);
    let ct = identify::community_taxon(&tree, &four).expect("a community taxon");
    assert_eq!(ct.taxon_id, A);
    assert!((ct.score - 0.75).abs() < 1e-12);

    // The explicit disagreement counts against every taxon on the branch it rejected, and
    // against nothing above it.
    let explicit = idents(&[
        id("owner", A),
        id("u2", A),
        id("u3", AVES).disagreeing(Some(true), A),
    ]);
    let nodes = identify::nodes(&tree, &explicit);
    let conservative = |taxon| {
        nodes
            .iter()
            .find(|n| n.taxon_id == taxon)
            .map(|n| n.conservative)
    };
    assert_eq!(conservative(A), Some(1));
    assert_eq!(conservative(PYCNONOTUS), Some(1));
    assert_eq!(conservative(PASSERIFORMES), Some(1));
    assert_eq!(conservative(AVES), Some(0));
    assert_eq!(conservative(LIFE), Some(0));
}

#[test]
fn the_disagreement_flag() {
    let tree = tree();
    let d =
        |new, previous, other, client| identify::disagreement(&tree, new, previous, other, client);
    // Nothing to disagree with.
    assert_eq!(d(A, None, true, None), None);
    assert_eq!(d(B, Some(A), false, Some(true)), None);
    assert_eq!(
        d(B, Some(999), true, None),
        None,
        "an ungrafted previous taxon"
    );
    // On the lineage: agreement, finer or coarser.
    assert_eq!(d(A, Some(A), true, None), Some(false));
    assert_eq!(d(A_SUBSPECIES, Some(A), true, None), Some(false));
    assert_eq!(d(PYCNONOTUS, Some(A), true, None), Some(false));
    // A coarser ID keeps the client's explicit "no, not that".
    assert_eq!(d(PYCNONOTUS, Some(A), true, Some(true)), Some(true));
    // Off the lineage: a disagreement whatever the client says.
    assert_eq!(d(B, Some(A), true, None), Some(true));
    assert_eq!(d(B, Some(A), true, Some(false)), Some(true));
    // A client's true on a finer ID is not kept.
    assert_eq!(d(A_SUBSPECIES, Some(A), true, Some(true)), Some(false));
}

#[test]
fn categories_follow_the_community_taxon() {
    let tree = tree();
    let ids = idents(&[
        id("u1", PYCNONOTUS),
        id("u2", PYCNONOTUS),
        id("u3", PYCNONOTIDAE),
        id("u4", SHAMA),
        id("u5", A),
        id("u6", B).withdrawn(),
    ]);
    let got = identify::categories(&tree, &ids, Some(PYCNONOTUS));
    assert_eq!(
        got,
        vec![
            (1, Category::Improving),
            (2, Category::Supporting),
            (3, Category::Supporting),
            (4, Category::Maverick),
            (5, Category::Leading),
        ]
    );
    // A coarse ID first and a finer one later: both improved the community taxon.
    let ids = idents(&[id("u1", PYCNONOTIDAE), id("u2", PYCNONOTUS)]);
    assert_eq!(
        identify::categories(&tree, &ids, Some(PYCNONOTUS)),
        vec![(1, Category::Improving), (2, Category::Improving)]
    );
    // No community taxon: everyone leads.
    let ids = idents(&[id("u1", A), id("u2", SHAMA)]);
    assert_eq!(
        identify::categories(&tree, &ids, None),
        vec![(1, Category::Leading), (2, Category::Leading)]
    );
}

#[test]
fn ranks_and_lineages() {
    assert_eq!(rank_level("Genus"), Some(20.0));
    assert_eq!(rank_level("parvorder"), Some(34.5));
    assert_eq!(rank_level(" species "), Some(10.0));
    assert_eq!(rank_level("clade"), None);
    let tree = tree();
    assert_eq!(
        tree.lineage(A),
        vec![
            LIFE,
            ANIMALIA,
            CHORDATA,
            AVES,
            PASSERIFORMES,
            PYCNONOTIDAE,
            PYCNONOTUS,
            A
        ]
    );
    assert!(tree.lineage(999).is_empty());
    assert!(tree.is_ancestor_or_self(AVES, A));
    assert!(tree.is_ancestor_or_self(A, A));
    assert!(!tree.is_ancestor_or_self(A, AVES));
    assert!(!tree.is_ancestor_or_self(MAMMALIA, A));
}

#[test]
fn metric_votes_pass_on_ties_and_silence() {
    let v = |agree, disagree| MetricVotes {
        metric: Metric::Evidence,
        agree,
        disagree,
    };
    assert!(grade::metric_passes(&v(0, 0)));
    assert!(grade::metric_passes(&v(1, 1)));
    assert!(grade::metric_passes(&v(2, 1)));
    assert!(!grade::metric_passes(&v(1, 2)));
    assert!(!grade::metric_passes(&v(0, 1)));
    for m in Metric::ALL {
        assert_eq!(Metric::parse(m.as_str()), Some(m));
    }
    assert_eq!(Metric::parse("pretty"), None);
}

/// The expected cell origin, computed another way: floor of the cell index.
fn floor_origin(x: f64) -> f64 {
    (x / geoprivacy::CELL_DEGREES).floor() * geoprivacy::CELL_DEGREES
}

#[test]
fn indonesian_points_fall_in_their_own_cell() {
    // Interior points (exact multiples of 0.2 are at the mercy of float rounding).
    let points = [
        ("Jakarta, Java", -6.25, 106.85),
        ("Ubud, Bali", -8.45, 115.25),
        ("Jayapura, Papua", -2.5, 140.7),
        ("Medan, Sumatra", 3.65, 98.75),
        ("Pontianak, Borneo (on the equator)", -0.03, 109.33),
    ];
    for (place, lat, lon) in points {
        let (olat, olon) = geoprivacy::cell_origin(lat, lon);
        assert!(
            (olat - floor_origin(lat)).abs() < 1e-9 && (olon - floor_origin(lon)).abs() < 1e-9,
            "{place}: origin ({olat}, {olon})"
        );
        assert!(
            olat <= lat && lat < olat + 0.2,
            "{place}: latitude outside its cell"
        );
        assert!(
            olon <= lon && lon < olon + 0.2,
            "{place}: longitude outside its cell"
        );
    }
    // The truncating remainder would put Jakarta in the cell north of it.
    let (olat, _) = geoprivacy::cell_origin(-6.25, 106.85);
    assert!((olat - -6.4).abs() < 1e-9, "got {olat}");
    let truncated = -6.25 - (-6.25_f64 % 0.2);
    assert!(
        (truncated - -6.2).abs() < 1e-9,
        "the bug this guards against"
    );
}

#[test]
fn obscured_points_stay_in_the_cell_and_cover_it() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (lat, lon) = (-8.45, 115.25);
    let (olat, olon) = geoprivacy::cell_origin(lat, lon);
    let (mut sum_lat, mut sum_lon) = (0.0, 0.0);
    let (mut north, mut east) = (0, 0);
    let n = 10_000;
    for _ in 0..n {
        let (plat, plon) = geoprivacy::obscure(lat, lon, &mut rng);
        assert!(plat >= olat - 1e-9 && plat <= olat + 0.2 + 1e-9, "{plat}");
        assert!(plon >= olon - 1e-9 && plon <= olon + 0.2 + 1e-9, "{plon}");
        sum_lat += plat;
        sum_lon += plon;
        north += usize::from(plat > olat + 0.1);
        east += usize::from(plon > olon + 0.1);
    }
    let n_f = f64::from(n);
    // Uniform over the cell: the mean is near the centre, both halves are used.
    assert!((sum_lat / n_f - (olat + 0.1)).abs() < 0.005);
    assert!((sum_lon / n_f - (olon + 0.1)).abs() < 0.005);
    assert!((4_000..6_000).contains(&north), "{north}");
    assert!((4_000..6_000).contains(&east), "{east}");
}

#[test]
fn the_cell_diagonal_and_the_public_accuracy() {
    assert_eq!(geoprivacy::cell_diagonal_m(0.05, 106.85), 31_451);
    assert_eq!(geoprivacy::cell_diagonal_m(-6.15, 106.85), 31_362);
    let (lat, lon) = (0.05, 106.85);
    assert_eq!(
        geoprivacy::public_accuracy(Geoprivacy::Open, Some(12), lat, lon),
        Some(12)
    );
    assert_eq!(
        geoprivacy::public_accuracy(Geoprivacy::Obscured, Some(12), lat, lon),
        Some(31_451)
    );
    assert_eq!(
        geoprivacy::public_accuracy(Geoprivacy::Obscured, None, lat, lon),
        Some(31_451)
    );
    assert_eq!(
        geoprivacy::public_accuracy(Geoprivacy::Obscured, Some(50_000), lat, lon),
        Some(50_000)
    );
    assert_eq!(
        geoprivacy::public_accuracy(Geoprivacy::Private, Some(12), lat, lon),
        None
    );
}

#[test]
fn taxon_geoprivacy_takes_the_strictest_status_of_every_lineage() {
    let tree = tree();
    let statuses = [
        Status {
            taxon_id: C,
            iucn: 50,
            geoprivacy: Geoprivacy::Obscured,
        },
        Status {
            taxon_id: COPSYCHUS,
            iucn: 30,
            geoprivacy: Geoprivacy::Private,
        },
        Status {
            taxon_id: B,
            iucn: 10,
            geoprivacy: Geoprivacy::Open,
        },
    ];
    let g = |taxa: &[TaxonId]| geoprivacy::taxon_geoprivacy(&tree, taxa, &statuses);
    assert_eq!(g(&[]), Geoprivacy::Open);
    assert_eq!(g(&[A]), Geoprivacy::Open);
    assert_eq!(g(&[B]), Geoprivacy::Open);
    assert_eq!(g(&[C]), Geoprivacy::Obscured);
    // A wrong identification of a common bird cannot lift the obscuring.
    assert_eq!(g(&[A, C]), Geoprivacy::Obscured);
    // A status on a genus covers its species.
    assert_eq!(g(&[SHAMA]), Geoprivacy::Private);
    assert_eq!(g(&[C, SHAMA]), Geoprivacy::Private);
    assert!(Geoprivacy::Open < Geoprivacy::Obscured && Geoprivacy::Obscured < Geoprivacy::Private);
    for gp in [Geoprivacy::Open, Geoprivacy::Obscured, Geoprivacy::Private] {
        assert_eq!(Geoprivacy::parse(gp.as_str()), Some(gp));
    }
    assert_eq!(Geoprivacy::parse("secret"), None);
}
