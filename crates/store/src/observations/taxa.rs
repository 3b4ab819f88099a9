//! Taxa and their conservation statuses: reference data shared by every community tenant
//! (no tenant column, no row-level security), written only by `rampart taxa import` and
//! the seed checklist.

use std::collections::{BTreeSet, HashMap};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::{now_ms, Backend, Store, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub struct TaxonRow {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub name: String,
    pub rank: String,
    pub rank_level: f64,
    /// `/1/47/…/id/`: the root first, the taxon last.
    pub path: String,
    pub name_en: Option<String>,
    pub name_id: Option<String>,
    pub active: bool,
}

impl TaxonRow {
    /// The ancestors' ids, the root first (the taxon itself left out).
    pub fn ancestry(&self) -> Vec<i64> {
        let mut ids = path_ids(&self.path);
        ids.pop();
        ids
    }
}

/// The ids in a `/1/2/3/` path.
pub fn path_ids(path: &str) -> Vec<i64> {
    path.split('/').filter_map(|p| p.parse().ok()).collect()
}

const TAXON_COLUMNS: &str = "id, parent_id, name, rank, rank_level, path, name_en, name_id, active";

fn taxon_row(r: &AnyRow) -> Result<TaxonRow, StoreError> {
    Ok(TaxonRow {
        id: r.try_get("id")?,
        parent_id: r.try_get("parent_id")?,
        name: r.try_get("name")?,
        rank: r.try_get("rank")?,
        rank_level: r.try_get("rank_level")?,
        path: r.try_get("path")?,
        name_en: r.try_get("name_en")?,
        name_id: r.try_get("name_id")?,
        active: r.try_get::<i64, _>("active")? != 0,
    })
}

/// A status of a taxon: IUCN level (NE 0 … EX 70) and the geoprivacy it imposes.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRow {
    pub taxon_id: i64,
    pub authority: String,
    pub status: String,
    pub iucn: i64,
    pub geoprivacy: String,
}

/// One taxon of an import, parents before children (the importer orders them).
#[derive(Debug, Clone, PartialEq)]
pub struct NewTaxon {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub name: String,
    pub rank: String,
    pub rank_level: f64,
    pub name_en: Option<String>,
    pub name_id: Option<String>,
    pub active: bool,
    pub statuses: Vec<StatusRow>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ImportReport {
    pub taxa: usize,
    pub statuses: usize,
    /// Observations whose taxon moved in the tree (their stored subtree path followed).
    pub observations_moved: u64,
}

/// Integers of our own in a statement: no driver binds a list the same way on both.
pub(crate) fn id_list(ids: &BTreeSet<i64>) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

pub(crate) async fn taxa_in(
    conn: &mut AnyConnection,
    ids: &BTreeSet<i64>,
) -> Result<Vec<TaxonRow>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(&format!(
        "SELECT {TAXON_COLUMNS} FROM taxa WHERE id IN ({})",
        id_list(ids)
    ))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(taxon_row).collect()
}

/// The taxa `ids` with all their ancestors.
pub(crate) async fn taxa_with_ancestors(
    conn: &mut AnyConnection,
    ids: &BTreeSet<i64>,
) -> Result<Vec<TaxonRow>, StoreError> {
    let direct = taxa_in(conn, ids).await?;
    let ancestors: BTreeSet<i64> = direct
        .iter()
        .flat_map(TaxonRow::ancestry)
        .filter(|id| !ids.contains(id))
        .collect();
    let mut all = direct;
    all.extend(taxa_in(conn, &ancestors).await?);
    Ok(all)
}

pub(crate) async fn statuses_of(
    conn: &mut AnyConnection,
    ids: &BTreeSet<i64>,
) -> Result<Vec<StatusRow>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(&format!(
        "SELECT taxon_id, authority, status, iucn, geoprivacy FROM conservation_statuses \
         WHERE taxon_id IN ({})",
        id_list(ids)
    ))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StatusRow {
                taxon_id: r.try_get("taxon_id")?,
                authority: r.try_get("authority")?,
                status: r.try_get("status")?,
                iucn: r.try_get("iucn")?,
                geoprivacy: r.try_get("geoprivacy")?,
            })
        })
        .collect()
}

/// The genus *Homo*, if the taxonomy has it (observations of people are casual).
pub(crate) async fn homo(conn: &mut AnyConnection) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM taxa WHERE name = 'Homo' AND rank = 'genus' LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?,
    )
}

impl Store {
    pub async fn taxa_count(&self) -> Result<i64, StoreError> {
        let mut tx = self.system_read().await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM taxa")
            .fetch_one(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    pub async fn taxon(&self, id: i64) -> Result<TaxonRow, StoreError> {
        let mut tx = self.system_read().await?;
        let ids = BTreeSet::from([id]);
        let row = taxa_in(tx.conn(), &ids).await?.pop();
        tx.commit().await?;
        row.ok_or(StoreError::NotFound)
    }

    /// A taxon with its ancestors (root first) and its statuses.
    pub async fn taxon_with_lineage(
        &self,
        id: i64,
    ) -> Result<(Vec<TaxonRow>, Vec<StatusRow>), StoreError> {
        let mut tx = self.system_read().await?;
        let mut lineage = taxa_with_ancestors(tx.conn(), &BTreeSet::from([id])).await?;
        if !lineage.iter().any(|t| t.id == id) {
            return Err(StoreError::NotFound);
        }
        let statuses = statuses_of(tx.conn(), &BTreeSet::from([id])).await?;
        tx.commit().await?;
        lineage.sort_by_key(|t| t.path.len());
        Ok((lineage, statuses))
    }

    /// Name search: `q` as the start of the scientific, English or Indonesian name or of
    /// any word in it ("kutilang" finds "Cucak kutilang", "aurigaster" finds "Pycnonotus
    /// aurigaster"), active taxa only. Ranked: an exact name first, then names that start
    /// with `q`, then word matches, shorter names before longer.
    pub async fn search_taxa(&self, q: &str, limit: i64) -> Result<Vec<TaxonRow>, StoreError> {
        let needle = q.trim().to_lowercase();
        let cleaned = needle.replace(['%', '_', '\\'], "");
        let pattern = format!("{cleaned}%");
        let word = format!("% {cleaned}%");
        // SQLite: NOCASE indexes serve `LIKE`; PostgreSQL: `lower(...)` pattern indexes.
        let col = |c: &str| match self.backend() {
            Backend::Sqlite => c.to_string(),
            Backend::Postgres => format!("lower({c})"),
        };
        let sql = format!(
            "SELECT {TAXON_COLUMNS}, \
             CASE WHEN lower(name) = $2 OR lower(name_en) = $2 OR lower(name_id) = $2 THEN 0 \
                  WHEN {n} LIKE $1 THEN 1 \
                  WHEN {en} LIKE $1 OR {id} LIKE $1 THEN 2 ELSE 3 END AS score \
             FROM taxa WHERE active = 1 AND ({n} LIKE $1 OR {en} LIKE $1 OR {id} LIKE $1 \
                  OR {n} LIKE $4 OR {en} LIKE $4 OR {id} LIKE $4) \
             ORDER BY score, length(name), name LIMIT $3",
            n = col("name"),
            en = col("name_en"),
            id = col("name_id"),
        );
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(&sql)
            .bind(&pattern)
            .bind(&needle)
            .bind(limit)
            .bind(&word)
            .fetch_all(tx.conn())
            .await?;
        tx.commit().await?;
        rows.iter().map(taxon_row).collect()
    }

    /// Adds or updates taxa (parents before children) and replaces their statuses, in one
    /// transaction: a file that fails half way changes nothing. Paths are computed here
    /// from the parents', and observations of a taxon that moved follow it.
    pub async fn import_taxa(&self, taxa: &[NewTaxon]) -> Result<ImportReport, StoreError> {
        let now = now_ms();
        let mut tx = self.system_write().await?;
        let mut paths: HashMap<i64, String> = HashMap::new();
        let mut report = ImportReport::default();
        for t in taxa {
            let parent_path = match t.parent_id {
                None => "/".to_string(),
                Some(p) => match paths.get(&p) {
                    Some(path) => path.clone(),
                    None => {
                        let stored: Option<String> =
                            sqlx::query_scalar("SELECT path FROM taxa WHERE id = $1")
                                .bind(p)
                                .fetch_optional(tx.conn())
                                .await?;
                        stored.ok_or_else(|| StoreError::Constraint {
                            constraint: format!("taxon {} names unknown parent {p}", t.id),
                        })?
                    }
                },
            };
            let path = format!("{parent_path}{}/", t.id);
            sqlx::query(
                "INSERT INTO taxa (id, parent_id, name, rank, rank_level, path, name_en, \
                 name_id, active, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (id) DO UPDATE SET parent_id = excluded.parent_id, \
                 name = excluded.name, rank = excluded.rank, rank_level = excluded.rank_level, \
                 path = excluded.path, name_en = excluded.name_en, name_id = excluded.name_id, \
                 active = excluded.active, updated_at = excluded.updated_at",
            )
            .bind(t.id)
            .bind(t.parent_id)
            .bind(&t.name)
            .bind(&t.rank)
            .bind(t.rank_level)
            .bind(&path)
            .bind(&t.name_en)
            .bind(&t.name_id)
            .bind(i64::from(t.active))
            .bind(now)
            .execute(tx.conn())
            .await?;
            sqlx::query("DELETE FROM conservation_statuses WHERE taxon_id = $1")
                .bind(t.id)
                .execute(tx.conn())
                .await?;
            for s in &t.statuses {
                sqlx::query(
                    "INSERT INTO conservation_statuses (taxon_id, authority, status, iucn, \
                     geoprivacy) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(t.id)
                .bind(&s.authority)
                .bind(&s.status)
                .bind(s.iucn)
                .bind(&s.geoprivacy)
                .execute(tx.conn())
                .await?;
                report.statuses += 1;
            }
            paths.insert(t.id, path);
            report.taxa += 1;
        }
        // A re-parented taxon moves its whole subtree: descendants not in this file get
        // their paths from their parents again, top down. No real tree is deeper than
        // MAX_DEPTH; a file that made a cycle with the stored tree never settles, and is
        // refused (the transaction rolls back).
        const MAX_DEPTH: usize = 64;
        let mut rounds = 0;
        loop {
            rounds += 1;
            if rounds > MAX_DEPTH {
                return Err(StoreError::Constraint {
                    constraint: "the import makes a cycle in the taxon tree".into(),
                });
            }
            let moved = sqlx::query(
                "UPDATE taxa SET path = (SELECT p.path FROM taxa p WHERE p.id = taxa.parent_id) \
                 || CAST(taxa.id AS TEXT) || '/' WHERE parent_id IS NOT NULL AND path <> \
                 (SELECT p.path FROM taxa p WHERE p.id = taxa.parent_id) || CAST(taxa.id AS TEXT) || '/'",
            )
            .execute(tx.conn())
            .await?;
            if moved.rows_affected() == 0 {
                break;
            }
        }
        report.observations_moved = sqlx::query(
            "UPDATE observations SET taxon_path = (SELECT path FROM taxa WHERE taxa.id = \
             observations.taxon_id) WHERE taxon_id IS NOT NULL AND taxon_path <> \
             (SELECT path FROM taxa WHERE taxa.id = observations.taxon_id)",
        )
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(report)
    }
}
