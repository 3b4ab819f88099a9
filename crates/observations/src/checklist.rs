//! Taxonomy imports: `rampart taxa import FILE.csv`, and the seed checklist loaded into
//! an empty database so a fresh install can identify Indonesia's best-known species.
//!
//! The CSV has one header line and the columns `id, parent_id, scientific_name, rank,
//! common_name_en, common_name_id, iucn, geoprivacy` (the last four may be empty). `iucn`
//! is a Red List category (NE, DD, LC, NT, VU, EN, CR, EW, EX); `geoprivacy` is what a
//! status imposes on observations of the taxon and everything below it. Left empty, it is
//! `obscured` from NT up (threatened and near-threatened sites are not published) and
//! `open` below; set it to `obscured` for a species that is common but trapped (the
//! cage-bird trade), or `private` to publish no point at all.
//!
//! The seed checklist (`data/indonesia-seed.csv`) is written for this project and
//! dedicated to the public domain (CC0): 48 taxa, scientific names with English and
//! Indonesian names and their IUCN categories as published by the Red List. Operators load
//! a full checklist with `rampart taxa import`.

use std::collections::{BTreeMap, BTreeSet};

use rampart_store::observations::{NewTaxon, StatusRow};

use crate::rules::taxa::rank_level;

pub const SEED_CSV: &str = include_str!("../data/indonesia-seed.csv");

/// The authority named on statuses read from the `iucn` column.
pub const IUCN_AUTHORITY: &str = "IUCN Red List";

/// A row that cannot be imported: its line (1 is the header) and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ImportError {
    pub line: u64,
    pub reason: String,
}

/// The IUCN level of a Red List category.
pub fn iucn_level(code: &str) -> Option<i64> {
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "NE" => 0,
        "DD" => 5,
        "LC" => 10,
        "NT" => 20,
        "VU" => 30,
        "EN" => 40,
        "CR" => 50,
        "EW" => 60,
        "EX" => 70,
        _ => return None,
    })
}

fn opt(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Parses a checklist, parents before children. A parent may be in the file or already
/// in the database (the store checks the latter).
pub fn parse(csv_text: &[u8]) -> Result<Vec<NewTaxon>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(csv_text);
    let headers = reader
        .headers()
        .map_err(|e| ImportError {
            line: 1,
            reason: e.to_string(),
        })?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let need = |name: &str| {
        column(name).ok_or_else(|| ImportError {
            line: 1,
            reason: format!("no `{name}` column"),
        })
    };
    let (c_id, c_parent, c_name, c_rank) = (
        need("id")?,
        need("parent_id")?,
        need("scientific_name")?,
        need("rank")?,
    );
    let (c_en, c_idn, c_iucn, c_geo) = (
        column("common_name_en"),
        column("common_name_id"),
        column("iucn"),
        column("geoprivacy"),
    );
    let mut taxa: BTreeMap<i64, (u64, NewTaxon)> = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| ImportError {
            line: e.position().map_or(0, |p| p.line()),
            reason: e.to_string(),
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let bad = |reason: String| ImportError { line, reason };
        let get = |c: Option<usize>| c.and_then(|c| record.get(c));
        let id: i64 = get(Some(c_id))
            .and_then(|v| v.parse().ok())
            .filter(|id| *id > 0)
            .ok_or_else(|| bad("id must be a positive whole number".into()))?;
        let parent_id = match opt(get(Some(c_parent))) {
            None => None,
            Some(p) => Some(
                p.parse::<i64>()
                    .ok()
                    .filter(|p| *p > 0 && *p != id)
                    .ok_or_else(|| bad("parent_id must be another taxon's id".into()))?,
            ),
        };
        let name = opt(get(Some(c_name))).ok_or_else(|| bad("scientific_name is empty".into()))?;
        if name.chars().count() > 256 {
            return Err(bad("scientific_name is longer than 256 characters".into()));
        }
        let rank = opt(get(Some(c_rank)))
            .unwrap_or_default()
            .to_ascii_lowercase();
        let level = rank_level(&rank).ok_or_else(|| bad(format!("unknown rank `{rank}`")))?;
        let mut statuses = Vec::new();
        if let Some(code) = opt(get(c_iucn)) {
            let iucn =
                iucn_level(&code).ok_or_else(|| bad(format!("unknown IUCN category `{code}`")))?;
            let geoprivacy = match opt(get(c_geo)).as_deref() {
                None => if iucn >= 20 { "obscured" } else { "open" }.to_string(),
                Some(g @ ("open" | "obscured" | "private")) => g.to_string(),
                Some(other) => {
                    return Err(bad(format!(
                        "geoprivacy `{other}` is not open, obscured or private"
                    )))
                }
            };
            statuses.push(StatusRow {
                taxon_id: id,
                authority: IUCN_AUTHORITY.into(),
                status: code.to_ascii_uppercase(),
                iucn,
                geoprivacy,
            });
        } else if let Some(g) = opt(get(c_geo)) {
            if !matches!(g.as_str(), "open" | "obscured" | "private") {
                return Err(bad(format!(
                    "geoprivacy `{g}` is not open, obscured or private"
                )));
            }
            // A national protection without a Red List category: not evaluated.
            statuses.push(StatusRow {
                taxon_id: id,
                authority: "national".into(),
                status: "protected".into(),
                iucn: 0,
                geoprivacy: g,
            });
        }
        let taxon = NewTaxon {
            id,
            parent_id,
            name,
            rank,
            rank_level: level,
            name_en: opt(get(c_en)),
            name_id: opt(get(c_idn)),
            active: true,
            statuses,
        };
        if taxa.insert(id, (line, taxon)).is_some() {
            return Err(bad(format!("taxon {id} appears twice")));
        }
    }
    order(taxa)
}

/// Parents before children; a cycle within the file is refused.
fn order(taxa: BTreeMap<i64, (u64, NewTaxon)>) -> Result<Vec<NewTaxon>, ImportError> {
    let mut placed: BTreeSet<i64> = BTreeSet::new();
    let mut out = Vec::with_capacity(taxa.len());
    let mut pending: Vec<(u64, NewTaxon)> = taxa.into_values().collect();
    while !pending.is_empty() {
        let in_file: BTreeSet<i64> = pending.iter().map(|(_, t)| t.id).collect();
        let (ready, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(_, t)| {
            t.parent_id
                .is_none_or(|p| placed.contains(&p) || !in_file.contains(&p))
        });
        if ready.is_empty() {
            let line = rest.iter().map(|(l, _)| *l).min().unwrap_or(0);
            return Err(ImportError {
                line,
                reason: "these taxa are each other's ancestors (a cycle)".into(),
            });
        }
        for (_, t) in ready {
            placed.insert(t.id);
            out.push(t);
        }
        pending = rest;
    }
    Ok(out)
}

/// Loads the seed checklist into an empty taxonomy (a fresh install); does nothing once
/// any taxon exists, so an operator's own import is never overwritten. Nodes starting
/// together may both load it: the import is an upsert, so that is harmless.
pub async fn seed_if_empty(
    store: &rampart_store::Store,
) -> Result<Option<rampart_store::observations::ImportReport>, rampart_store::StoreError> {
    if store.taxa_count().await? > 0 {
        return Ok(None);
    }
    let taxa = parse(SEED_CSV.as_bytes()).map_err(|e| rampart_store::StoreError::Constraint {
        constraint: format!("seed checklist: {e}"),
    })?;
    store.import_taxa(&taxa).await.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_parses_with_parents_first() {
        let taxa = parse(SEED_CSV.as_bytes()).unwrap();
        assert_eq!(taxa.len(), 48);
        let mut seen = BTreeSet::new();
        for t in &taxa {
            if let Some(p) = t.parent_id {
                assert!(seen.contains(&p), "{} before its parent", t.name);
            }
            seen.insert(t.id);
        }
        let straw = taxa.iter().find(|t| t.id == 13).unwrap();
        assert_eq!(straw.statuses[0].geoprivacy, "obscured", "CR is obscured");
        let kutilang = taxa.iter().find(|t| t.id == 11).unwrap();
        assert_eq!(kutilang.statuses[0].geoprivacy, "open", "LC is open");
        let shama = taxa.iter().find(|t| t.id == 16).unwrap();
        assert_eq!(
            shama.statuses[0].geoprivacy, "obscured",
            "trapped: obscured"
        );
    }

    #[test]
    fn bad_rows_name_their_line() {
        let e = parse(b"id,parent_id,scientific_name,rank\n1,,Life,stateofmatter\n2,1,X,clade\n")
            .unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("clade"));
        let e =
            parse(b"id,parent_id,scientific_name,rank\n1,2,A,genus\n2,1,B,genus\n").unwrap_err();
        assert!(e.reason.contains("cycle"));
        let e = parse(b"id,scientific_name,rank\n1,Life,stateofmatter\n").unwrap_err();
        assert!(e.reason.contains("parent_id"));
        let e = parse(b"id,parent_id,scientific_name,rank,iucn\n1,,A,genus,XX\n").unwrap_err();
        assert!(e.reason.contains("XX"));
    }
}
