//! Amaturalist's observations, identifications and votes (seed 000).
//!
//! Every change is one write transaction: the change, then a [`Snapshot`] of everything
//! the rules read (identifications, their taxa with ancestors and statuses, vote counts),
//! then the caller's `derive` (the observations crate's pure rules) and the write of what
//! it decided (community taxon, grade, categories, taxon geoprivacy, public point), then
//! the audit event. So the stored grade always matches the stored identifications.
//!
//! True coordinates are sealed by the caller into `private_location`; this module never
//! sees them in clear. `derive` gets the opened location from the caller, who passes the
//! sealed bytes it opened: if the row holds other bytes by the time the transaction
//! reads it (a concurrent edit moved the point), the change is refused with
//! `Conflict { constraint: "observation_changed" }` and the caller retries.

pub mod photos;
pub mod taxa;

use std::collections::BTreeSet;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::tx::TenantTx;
use crate::{now_ms, NewAuditEvent, Store, StoreError, TenantScope};
pub use photos::{NewPhoto, PhotoRow};
pub use taxa::{ImportReport, NewTaxon, StatusRow, TaxonRow};

#[derive(Debug, Clone, PartialEq)]
pub struct ObservationRow {
    pub id: i64,
    pub tenant_id: String,
    pub uuid: String,
    pub user_id: String,
    /// `YYYY-MM-DD` in the observer's zone.
    pub observed_on: Option<String>,
    pub time_observed_at: Option<i64>,
    pub utc_offset_mins: Option<i64>,
    /// The public point: the true one (open), a point in its cell (obscured), or none.
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub positional_accuracy: Option<i64>,
    pub public_positional_accuracy: Option<i64>,
    /// Sealed by the caller: true point, the obscured point drawn for it, place guess.
    pub private_location: Option<Vec<u8>>,
    /// The observer's choice.
    pub geoprivacy: String,
    /// From the conservation statuses of every current identification's lineage.
    pub taxon_geoprivacy: String,
    pub place_guess: Option<String>,
    pub species_guess: Option<String>,
    pub description: Option<String>,
    pub license: Option<String>,
    pub captive: bool,
    /// JSON array of strings.
    pub tags: String,
    /// JSON object of observation fields.
    pub fields: String,
    pub prefers_community_taxon: bool,
    pub taxon_id: Option<i64>,
    pub community_taxon_id: Option<i64>,
    pub community_score: Option<f64>,
    pub quality_grade: String,
    pub agreements: i64,
    pub disagreements: i64,
    pub photos_count: i64,
    pub flagged: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

const OBS_COLUMNS: &str = "id, tenant_id, uuid, user_id, observed_on, time_observed_at, \
    utc_offset_mins, latitude, longitude, positional_accuracy, public_positional_accuracy, \
    private_location, geoprivacy, taxon_geoprivacy, place_guess, species_guess, description, \
    license, captive, tags, fields, prefers_community_taxon, taxon_id, community_taxon_id, \
    community_score, quality_grade, agreements, disagreements, photos_count, flagged, \
    created_at, updated_at";

fn obs_row(r: &AnyRow) -> Result<ObservationRow, StoreError> {
    Ok(ObservationRow {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        uuid: r.try_get("uuid")?,
        user_id: r.try_get("user_id")?,
        observed_on: r.try_get("observed_on")?,
        time_observed_at: r.try_get("time_observed_at")?,
        utc_offset_mins: r.try_get("utc_offset_mins")?,
        latitude: r.try_get("latitude")?,
        longitude: r.try_get("longitude")?,
        positional_accuracy: r.try_get("positional_accuracy")?,
        public_positional_accuracy: r.try_get("public_positional_accuracy")?,
        private_location: r.try_get("private_location")?,
        geoprivacy: r.try_get("geoprivacy")?,
        taxon_geoprivacy: r.try_get("taxon_geoprivacy")?,
        place_guess: r.try_get("place_guess")?,
        species_guess: r.try_get("species_guess")?,
        description: r.try_get("description")?,
        license: r.try_get("license")?,
        captive: r.try_get::<i64, _>("captive")? != 0,
        tags: r.try_get("tags")?,
        fields: r.try_get("fields")?,
        prefers_community_taxon: r.try_get::<i64, _>("prefers_community_taxon")? != 0,
        taxon_id: r.try_get("taxon_id")?,
        community_taxon_id: r.try_get("community_taxon_id")?,
        community_score: r.try_get("community_score")?,
        quality_grade: r.try_get("quality_grade")?,
        agreements: r.try_get("agreements")?,
        disagreements: r.try_get("disagreements")?,
        photos_count: r.try_get("photos_count")?,
        flagged: r.try_get::<i64, _>("flagged")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct IdentificationRow {
    pub id: i64,
    pub uuid: String,
    pub observation_id: i64,
    pub user_id: String,
    pub taxon_id: i64,
    pub body: Option<String>,
    pub current: bool,
    pub hidden: bool,
    pub disagreement: Option<bool>,
    pub previous_taxon_id: Option<i64>,
    pub category: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const IDENT_COLUMNS: &str = "id, uuid, observation_id, user_id, taxon_id, body, is_current, \
    hidden, disagreement, previous_taxon_id, category, created_at, updated_at";

fn ident_row(r: &AnyRow) -> Result<IdentificationRow, StoreError> {
    Ok(IdentificationRow {
        id: r.try_get("id")?,
        uuid: r.try_get("uuid")?,
        observation_id: r.try_get("observation_id")?,
        user_id: r.try_get("user_id")?,
        taxon_id: r.try_get("taxon_id")?,
        body: r.try_get("body")?,
        current: r.try_get::<i64, _>("is_current")? != 0,
        hidden: r.try_get::<i64, _>("hidden")? != 0,
        disagreement: r.try_get::<Option<i64>, _>("disagreement")?.map(|d| d != 0),
        previous_taxon_id: r.try_get("previous_taxon_id")?,
        category: r.try_get("category")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The fields an observer writes (create, or update of the whole set).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservationWrite {
    pub observed_on: Option<String>,
    pub time_observed_at: Option<i64>,
    pub utc_offset_mins: Option<i64>,
    pub positional_accuracy: Option<i64>,
    pub private_location: Option<Vec<u8>>,
    pub geoprivacy: String,
    pub species_guess: Option<String>,
    pub description: Option<String>,
    pub license: Option<String>,
    pub captive: bool,
    pub tags: String,
    pub fields: String,
    pub prefers_community_taxon: bool,
    /// The observer's own identification, when they name a taxon.
    pub taxon_id: Option<i64>,
}

/// Everything the rules read, as of this transaction.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub observation: ObservationRow,
    /// Every identification, by id (current or not, hidden or not).
    pub identifications: Vec<IdentificationRow>,
    /// Every identification's taxon (and the `extra` taxon asked for) with all ancestors.
    pub taxa: Vec<TaxonRow>,
    pub statuses: Vec<StatusRow>,
    /// Per metric: (metric, agree, disagree).
    pub metric_votes: Vec<(String, i64, i64)>,
    pub needs_id_up: i64,
    pub needs_id_down: i64,
    pub homo: Option<i64>,
}

/// What the rules decided, written back in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub taxon_id: Option<i64>,
    pub community_taxon_id: Option<i64>,
    pub community_score: Option<f64>,
    pub quality_grade: String,
    pub agreements: i64,
    pub disagreements: i64,
    pub taxon_geoprivacy: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub public_positional_accuracy: Option<i64>,
    /// The observer's place name when the point is open; none otherwise (it would name
    /// the site).
    pub place_guess: Option<String>,
    /// (identification id, category) for every current identification.
    pub categories: Vec<(i64, String)>,
}

/// A new identification; its `disagreement` is decided in the transaction by the
/// caller's `flag`, from the observation's taxon at that moment.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIdentification {
    pub uuid: String,
    pub user_id: String,
    pub taxon_id: i64,
    pub body: Option<String>,
    pub client_disagreement: Option<bool>,
}

/// A change and the row afterwards.
#[derive(Debug, Clone)]
pub struct Changed {
    pub observation: ObservationRow,
    pub identifications: Vec<IdentificationRow>,
    /// False when a retried create found the row it had made (nothing written).
    pub created: bool,
}

/// Search filters; all optional and ANDed. Coordinates filter on the public point.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservationFilter {
    /// A taxon path (`/1/2/`): the taxon and its descendants.
    pub taxon_path: Option<String>,
    pub user_id: Option<String>,
    pub quality_grade: Option<String>,
    pub license: Option<String>,
    /// (south, west, north, east) on the public point.
    pub bbox: Option<(f64, f64, f64, f64)>,
    pub observed_from: Option<String>,
    pub observed_to: Option<String>,
    pub has_photos: Option<bool>,
    pub updated_since: Option<i64>,
    pub id_above: Option<i64>,
    pub id_below: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeletedObservation {
    pub observation_id: i64,
    pub uuid: String,
    pub deleted_at: i64,
}

async fn observation_in(
    conn: &mut AnyConnection,
    tenant: &str,
    id: i64,
) -> Result<ObservationRow, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {OBS_COLUMNS} FROM observations WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound)?;
    obs_row(&row)
}

async fn identifications_of(
    conn: &mut AnyConnection,
    observation_id: i64,
) -> Result<Vec<IdentificationRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {IDENT_COLUMNS} FROM identifications WHERE observation_id = $1 ORDER BY id"
    ))
    .bind(observation_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(ident_row).collect()
}

async fn snapshot(
    tx: &mut TenantTx,
    observation_id: i64,
    extra: Option<i64>,
) -> Result<Snapshot, StoreError> {
    let tenant = tx.tenant_id().to_string();
    let observation = observation_in(tx.conn(), &tenant, observation_id).await?;
    let identifications = identifications_of(tx.conn(), observation_id).await?;
    let mut ids: BTreeSet<i64> = identifications.iter().map(|i| i.taxon_id).collect();
    ids.extend(identifications.iter().filter_map(|i| i.previous_taxon_id));
    ids.extend(extra);
    ids.extend(observation.taxon_id);
    let taxa = taxa::taxa_with_ancestors(tx.conn(), &ids).await?;
    let all: BTreeSet<i64> = taxa.iter().map(|t| t.id).collect();
    let statuses = taxa::statuses_of(tx.conn(), &all).await?;
    let votes = sqlx::query(
        "SELECT metric, CAST(SUM(agree) AS BIGINT) AS agree, \
         CAST(SUM(1 - agree) AS BIGINT) AS disagree FROM quality_votes \
         WHERE observation_id = $1 GROUP BY metric ORDER BY metric",
    )
    .bind(observation_id)
    .fetch_all(tx.conn())
    .await?;
    let metric_votes = votes
        .iter()
        .map(|r| {
            Ok((
                r.try_get("metric")?,
                r.try_get::<i64, _>("agree")?,
                r.try_get::<i64, _>("disagree")?,
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let needs = sqlx::query(
        "SELECT CAST(COALESCE(SUM(vote_up), 0) AS BIGINT) AS up, \
         CAST(COALESCE(SUM(1 - vote_up), 0) AS BIGINT) AS down \
         FROM needs_id_votes WHERE observation_id = $1",
    )
    .bind(observation_id)
    .fetch_one(tx.conn())
    .await?;
    let homo = taxa::homo(tx.conn()).await?;
    Ok(Snapshot {
        observation,
        identifications,
        taxa,
        statuses,
        metric_votes,
        needs_id_up: needs.try_get("up")?,
        needs_id_down: needs.try_get("down")?,
        homo,
    })
}

/// Runs `derive` on a fresh snapshot and writes its decision. A change of community taxon
/// clears the needs-ID votes (as iNaturalist does), and the rules run once more on that.
pub(crate) async fn recompute(
    tx: &mut TenantTx,
    observation_id: i64,
    derive: &(dyn Fn(&Snapshot) -> Result<Derived, StoreError> + Send + Sync),
) -> Result<(), StoreError> {
    let mut snap = snapshot(tx, observation_id, None).await?;
    let mut derived = derive(&snap)?;
    let had_votes = snap.needs_id_up + snap.needs_id_down > 0;
    if had_votes && derived.community_taxon_id != snap.observation.community_taxon_id {
        sqlx::query("DELETE FROM needs_id_votes WHERE observation_id = $1")
            .bind(observation_id)
            .execute(tx.conn())
            .await?;
        snap.needs_id_up = 0;
        snap.needs_id_down = 0;
        derived = derive(&snap)?;
    }
    let taxon_path = derived
        .taxon_id
        .and_then(|id| snap.taxa.iter().find(|t| t.id == id))
        .map(|t| t.path.clone());
    sqlx::query(
        "UPDATE observations SET taxon_id = $1, taxon_path = $2, community_taxon_id = $3, \
         community_score = CAST($4 AS DOUBLE PRECISION), quality_grade = $5, agreements = $6, \
         disagreements = $7, taxon_geoprivacy = $8, latitude = CAST($9 AS DOUBLE PRECISION), \
         longitude = CAST($10 AS DOUBLE PRECISION), public_positional_accuracy = $11, \
         place_guess = $12 WHERE id = $13",
    )
    .bind(derived.taxon_id)
    .bind(taxon_path)
    .bind(derived.community_taxon_id)
    .bind(float_text(derived.community_score))
    .bind(&derived.quality_grade)
    .bind(derived.agreements)
    .bind(derived.disagreements)
    .bind(&derived.taxon_geoprivacy)
    .bind(float_text(derived.latitude))
    .bind(float_text(derived.longitude))
    .bind(derived.public_positional_accuracy)
    .bind(&derived.place_guess)
    .bind(observation_id)
    .execute(tx.conn())
    .await?;
    for (id, category) in &derived.categories {
        sqlx::query("UPDATE identifications SET category = $1 WHERE id = $2")
            .bind(category)
            .bind(id)
            .execute(tx.conn())
            .await?;
    }
    Ok(())
}

/// A nullable float as text for `CAST(… AS DOUBLE PRECISION)`. sqlx 0.8.6's Any driver
/// sends a NULL `f64` to PostgreSQL as a `real` (sqlx-core any/arguments.rs swaps `Real`
/// and `Double` for nulls); the connection's cached statement then expects four-byte
/// floats, and the next non-null `f64` fails with "incorrect binary data format". Text
/// has one type whatever the value, and Rust's `Display` of an `f64` round-trips exactly.
fn float_text(value: Option<f64>) -> Option<String> {
    value.filter(|v| v.is_finite()).map(|v| v.to_string())
}

/// A change's transaction and the observation as it reads there, refused with
/// `observation_changed` when its sealed location is no longer the one the caller opened.
pub(crate) async fn begin_change(
    store: &Store,
    scope: &TenantScope,
    observation_id: i64,
    opened: Option<&[u8]>,
) -> Result<(TenantTx, ObservationRow), StoreError> {
    let mut tx = store.tenant_write(scope).await?;
    let tenant = tx.tenant_id().to_string();
    let row = observation_in(tx.conn(), &tenant, observation_id).await?;
    expect_location(&row, opened)?;
    Ok((tx, row))
}

/// The row's sealed location must still be the one the caller opened.
fn expect_location(row: &ObservationRow, opened: Option<&[u8]>) -> Result<(), StoreError> {
    if row.private_location.as_deref() != opened {
        return Err(StoreError::Conflict {
            constraint: "observation_changed".into(),
        });
    }
    Ok(())
}

/// Makes `user`'s identification of `taxon` their current one (the others stop being
/// current), unless it already is. Returns whether anything changed.
async fn identify(
    tx: &mut TenantTx,
    observation_id: i64,
    new: &NewIdentification,
    flag: &(dyn Fn(&Snapshot) -> Option<bool> + Send + Sync),
    now: i64,
) -> Result<bool, StoreError> {
    let existing = sqlx::query(
        "SELECT id FROM identifications WHERE observation_id = $1 AND user_id = $2 \
         AND is_current = 1 AND taxon_id = $3",
    )
    .bind(observation_id)
    .bind(&new.user_id)
    .bind(new.taxon_id)
    .fetch_optional(tx.conn())
    .await?;
    if existing.is_some() {
        return Ok(false);
    }
    let snap = snapshot(tx, observation_id, Some(new.taxon_id)).await?;
    if !snap.taxa.iter().any(|t| t.id == new.taxon_id) {
        return Err(StoreError::Constraint {
            constraint: "identification_taxon".into(),
        });
    }
    let disagreement = flag(&snap);
    sqlx::query(
        "UPDATE identifications SET is_current = 0, updated_at = $1 \
         WHERE observation_id = $2 AND user_id = $3 AND is_current = 1",
    )
    .bind(now)
    .bind(observation_id)
    .bind(&new.user_id)
    .execute(tx.conn())
    .await?;
    let tenant = tx.tenant_id().to_string();
    sqlx::query(
        "INSERT INTO identifications (tenant_id, uuid, observation_id, user_id, taxon_id, \
         body, is_current, hidden, disagreement, previous_taxon_id, category, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, 0, $7, $8, NULL, $9, $9)",
    )
    .bind(&tenant)
    .bind(&new.uuid)
    .bind(observation_id)
    .bind(&new.user_id)
    .bind(new.taxon_id)
    .bind(&new.body)
    .bind(disagreement.map(i64::from))
    .bind(snap.observation.taxon_id)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(true)
}

pub(crate) async fn touch(
    tx: &mut TenantTx,
    observation_id: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE observations SET updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(observation_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

async fn set_captive_vote(
    tx: &mut TenantTx,
    observation_id: i64,
    user_id: &str,
    captive: bool,
    now: i64,
) -> Result<(), StoreError> {
    // The observer's captive flag is their own `wild = false` vote.
    sqlx::query(
        "DELETE FROM quality_votes WHERE observation_id = $1 AND metric = 'wild' AND user_id = $2",
    )
    .bind(observation_id)
    .bind(user_id)
    .execute(tx.conn())
    .await?;
    if captive {
        let tenant = tx.tenant_id().to_string();
        sqlx::query(
            "INSERT INTO quality_votes (tenant_id, observation_id, user_id, metric, agree, \
             created_at) VALUES ($1, $2, $3, 'wild', 0, $4)",
        )
        .bind(&tenant)
        .bind(observation_id)
        .bind(user_id)
        .bind(now)
        .execute(tx.conn())
        .await?;
    }
    Ok(())
}

pub(crate) async fn finish(
    mut tx: TenantTx,
    observation_id: i64,
    mut audit: NewAuditEvent,
    created: bool,
) -> Result<Changed, StoreError> {
    let tenant = tx.tenant_id().to_string();
    audit.target_id = Some(observation_id.to_string());
    tx.audit(&tenant, &audit).await?;
    let observation = observation_in(tx.conn(), &tenant, observation_id).await?;
    let identifications = identifications_of(tx.conn(), observation_id).await?;
    tx.commit().await?;
    Ok(Changed {
        observation,
        identifications,
        created,
    })
}

impl Store {
    pub async fn observation(
        &self,
        scope: &TenantScope,
        id: i64,
    ) -> Result<(ObservationRow, Vec<IdentificationRow>), StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let tenant = tx.tenant_id().to_string();
        let row = observation_in(tx.conn(), &tenant, id).await?;
        let idents = identifications_of(tx.conn(), id).await?;
        tx.commit().await?;
        Ok((row, idents))
    }

    /// The observation with this client uuid in the caller's tenant, if any.
    pub async fn observation_by_uuid(
        &self,
        scope: &TenantScope,
        uuid: &str,
    ) -> Result<Option<ObservationRow>, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let row = sqlx::query(&format!(
            "SELECT {OBS_COLUMNS} FROM observations WHERE tenant_id = $1 AND uuid = $2"
        ))
        .bind(scope.tenant_id())
        .bind(uuid)
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        row.as_ref().map(obs_row).transpose()
    }

    /// Creates the observation, or, when `user` already owns one with this uuid (a retry
    /// after a lost reply, perhaps edited since), updates it. Another user's uuid is
    /// `Conflict { constraint: "observations_uuid" }`. `previous` is the sealed location
    /// the caller read before (for the optimistic check on update).
    #[allow(clippy::too_many_arguments)]
    pub async fn save_observation(
        &self,
        scope: &TenantScope,
        uuid: &str,
        user_id: &str,
        write: &ObservationWrite,
        previous: Option<Option<&[u8]>>,
        audit: NewAuditEvent,
        identification_uuid: &str,
        flag: &(dyn Fn(&Snapshot) -> Option<bool> + Send + Sync),
        derive: &(dyn Fn(&Snapshot) -> Result<Derived, StoreError> + Send + Sync),
    ) -> Result<Changed, StoreError> {
        let now = now_ms();
        let mut tx = self.tenant_write(scope).await?;
        let tenant = tx.tenant_id().to_string();
        let existing = sqlx::query(&format!(
            "SELECT {OBS_COLUMNS} FROM observations WHERE uuid = $1"
        ))
        .bind(uuid)
        .fetch_optional(tx.conn())
        .await?
        .as_ref()
        .map(obs_row)
        .transpose()?;
        let (id, created) = match existing {
            Some(row) if row.tenant_id != tenant || row.user_id != user_id => {
                return Err(StoreError::Conflict {
                    constraint: "observations_uuid".into(),
                });
            }
            Some(row) => {
                if let Some(previous) = previous {
                    expect_location(&row, previous)?;
                }
                update_fields(&mut tx, row.id, write, now).await?;
                (row.id, false)
            }
            None => {
                // The row, then the observer's fields by the same statement an update uses.
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO observations (tenant_id, uuid, user_id, geoprivacy, \
                     taxon_geoprivacy, tags, fields, prefers_community_taxon, quality_grade, \
                     created_at, updated_at) VALUES ($1, $2, $3, 'open', 'open', '[]', '{}', 1, \
                     'casual', $4, $4) RETURNING id",
                )
                .bind(&tenant)
                .bind(uuid)
                .bind(user_id)
                .bind(now)
                .fetch_one(tx.conn())
                .await?;
                update_fields(&mut tx, id, write, now).await?;
                (id, true)
            }
        };
        set_captive_vote(&mut tx, id, user_id, write.captive, now).await?;
        if let Some(taxon_id) = write.taxon_id {
            let new = NewIdentification {
                uuid: identification_uuid.to_string(),
                user_id: user_id.to_string(),
                taxon_id,
                body: None,
                client_disagreement: None,
            };
            identify(&mut tx, id, &new, flag, now).await?;
        }
        recompute(&mut tx, id, derive).await?;
        finish(tx, id, audit, created).await
    }

    /// An identification by `new.user_id`, which becomes their current one.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_identification(
        &self,
        scope: &TenantScope,
        observation_id: i64,
        new: &NewIdentification,
        opened: Option<&[u8]>,
        audit: NewAuditEvent,
        flag: &(dyn Fn(&Snapshot) -> Option<bool> + Send + Sync),
        derive: &(dyn Fn(&Snapshot) -> Result<Derived, StoreError> + Send + Sync),
    ) -> Result<Changed, StoreError> {
        let now = now_ms();
        let (mut tx, _) = begin_change(self, scope, observation_id, opened).await?;
        identify(&mut tx, observation_id, new, flag, now).await?;
        touch(&mut tx, observation_id, now).await?;
        recompute(&mut tx, observation_id, derive).await?;
        finish(tx, observation_id, audit, true).await
    }

    /// The identification, if it is in the caller's tenant.
    pub async fn identification(
        &self,
        scope: &TenantScope,
        id: i64,
    ) -> Result<IdentificationRow, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let row = sqlx::query(&format!(
            "SELECT {IDENT_COLUMNS} FROM identifications WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(scope.tenant_id())
        .bind(id)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        ident_row(&row)
    }

    /// Withdraws (`current = false`) or restores an identification of its author's. A
    /// restored one becomes the author's current one again.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_identification_current(
        &self,
        scope: &TenantScope,
        ident: &IdentificationRow,
        current: bool,
        opened: Option<&[u8]>,
        audit: NewAuditEvent,
        derive: &(dyn Fn(&Snapshot) -> Result<Derived, StoreError> + Send + Sync),
    ) -> Result<Changed, StoreError> {
        let now = now_ms();
        let (mut tx, _) = begin_change(self, scope, ident.observation_id, opened).await?;
        if current {
            sqlx::query(
                "UPDATE identifications SET is_current = 0, updated_at = $1 \
                 WHERE observation_id = $2 AND user_id = $3 AND is_current = 1",
            )
            .bind(now)
            .bind(ident.observation_id)
            .bind(&ident.user_id)
            .execute(tx.conn())
            .await?;
        }
        sqlx::query(
            "UPDATE identifications SET is_current = $1, updated_at = $2, \
             category = CASE WHEN $1 = 0 THEN NULL ELSE category END WHERE id = $3",
        )
        .bind(i64::from(current))
        .bind(now)
        .bind(ident.id)
        .execute(tx.conn())
        .await?;
        touch(&mut tx, ident.observation_id, now).await?;
        recompute(&mut tx, ident.observation_id, derive).await?;
        finish(tx, ident.observation_id, audit, false).await
    }

    /// A data-quality vote (`Some(agree)`) or its removal (`None`), one per user and metric.
    #[allow(clippy::too_many_arguments)]
    pub async fn vote_quality(
        &self,
        scope: &TenantScope,
        observation_id: i64,
        user_id: &str,
        metric: &str,
        agree: Option<bool>,
        opened: Option<&[u8]>,
        audit: NewAuditEvent,
        derive: &(dyn Fn(&Snapshot) -> Result<Derived, StoreError> + Send + Sync),
    ) -> Result<Changed, StoreError> {
        let now = now_ms();
        let (mut tx, row) = begin_change(self, scope, observation_id, opened).await?;
        sqlx::query(
            "DELETE FROM quality_votes WHERE observation_id = $1 AND metric = $2 AND user_id = $3",
        )
        .bind(observation_id)
        .bind(metric)
        .bind(user_id)
        .execute(tx.conn())
        .await?;
        if let Some(agree) = agree {
            sqlx::query(
                "INSERT INTO quality_votes (tenant_id, observation_id, user_id, metric, agree, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&row.tenant_id)
            .bind(observation_id)
            .bind(user_id)
            .bind(metric)
            .bind(i64::from(agree))
            .bind(now)
            .execute(tx.conn())
            .await?;
        }
        if metric == "wild" && user_id == row.user_id {
            sqlx::query("UPDATE observations SET captive = $1 WHERE id = $2")
                .bind(i64::from(agree == Some(false)))
                .bind(observation_id)
                .execute(tx.conn())
                .await?;
        }
        touch(&mut tx, observation_id, now).await?;
        recompute(&mut tx, observation_id, derive).await?;
        finish(tx, observation_id, audit, false).await
    }

    /// A needs-ID vote (`Some(true)` up: the community can still improve it) or its removal.
    #[allow(clippy::too_many_arguments)]
    pub async fn vote_needs_id(
        &self,
        scope: &TenantScope,
        observation_id: i64,
        user_id: &str,
        up: Option<bool>,
        opened: Option<&[u8]>,
        audit: NewAuditEvent,
        derive: &(dyn Fn(&Snapshot) -> Result<Derived, StoreError> + Send + Sync),
    ) -> Result<Changed, StoreError> {
        let now = now_ms();
        let (mut tx, row) = begin_change(self, scope, observation_id, opened).await?;
        sqlx::query("DELETE FROM needs_id_votes WHERE observation_id = $1 AND user_id = $2")
            .bind(observation_id)
            .bind(user_id)
            .execute(tx.conn())
            .await?;
        if let Some(up) = up {
            sqlx::query(
                "INSERT INTO needs_id_votes (tenant_id, observation_id, user_id, vote_up, \
                 created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&row.tenant_id)
            .bind(observation_id)
            .bind(user_id)
            .bind(i64::from(up))
            .bind(now)
            .execute(tx.conn())
            .await?;
        }
        touch(&mut tx, observation_id, now).await?;
        // The vote itself must count: recompute without the reset a CT change would do
        // (the CT does not change on a vote).
        recompute(&mut tx, observation_id, derive).await?;
        finish(tx, observation_id, audit, false).await
    }

    /// Deletes the observation with its identifications and votes, and records it for
    /// clients that sync (`GET /observations/deleted`).
    pub async fn delete_observation(
        &self,
        scope: &TenantScope,
        id: i64,
        mut audit: NewAuditEvent,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.tenant_write(scope).await?;
        let tenant = tx.tenant_id().to_string();
        let row = observation_in(tx.conn(), &tenant, id).await?;
        for table in [
            "identifications",
            "quality_votes",
            "needs_id_votes",
            "observation_photos",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE observation_id = $1"))
                .bind(id)
                .execute(tx.conn())
                .await?;
        }
        sqlx::query("DELETE FROM observations WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        sqlx::query(
            "INSERT INTO deleted_observations (tenant_id, observation_id, uuid, user_id, \
             deleted_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&tenant)
        .bind(id)
        .bind(&row.uuid)
        .bind(&row.user_id)
        .bind(now)
        .execute(tx.conn())
        .await?;
        audit.target_id = Some(id.to_string());
        tx.audit(&tenant, &audit).await?;
        tx.commit().await
    }

    /// Observations deleted at or after `since_ms`, oldest first (at most `limit`).
    pub async fn deleted_observations(
        &self,
        scope: &TenantScope,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<DeletedObservation>, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let rows = sqlx::query(
            "SELECT observation_id, uuid, deleted_at FROM deleted_observations \
             WHERE tenant_id = $1 AND deleted_at >= $2 ORDER BY deleted_at, observation_id \
             LIMIT $3",
        )
        .bind(scope.tenant_id())
        .bind(since_ms)
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(DeletedObservation {
                    observation_id: r.try_get("observation_id")?,
                    uuid: r.try_get("uuid")?,
                    deleted_at: r.try_get("deleted_at")?,
                })
            })
            .collect()
    }

    /// A page of the tenant's observations, newest id first (`id_below` pages down) or,
    /// with `id_above`, oldest first from there (how iNaturalist's clients walk a search).
    pub async fn search_observations(
        &self,
        scope: &TenantScope,
        f: &ObservationFilter,
    ) -> Result<Vec<ObservationRow>, StoreError> {
        let mut sql = format!("SELECT {OBS_COLUMNS} FROM observations WHERE tenant_id = $1");
        let mut n = 1;
        let mut next = |clause: &str, sql: &mut String| {
            n += 1;
            sql.push_str(&clause.replace('?', &format!("${n}")));
        };
        if f.taxon_path.is_some() {
            next(" AND taxon_path LIKE ?", &mut sql);
        }
        if f.user_id.is_some() {
            next(" AND user_id = ?", &mut sql);
        }
        if f.quality_grade.is_some() {
            next(" AND quality_grade = ?", &mut sql);
        }
        if f.license.is_some() {
            next(" AND license = ?", &mut sql);
        }
        if f.bbox.is_some() {
            next(" AND latitude >= ?", &mut sql);
            next(" AND longitude >= ?", &mut sql);
            next(" AND latitude <= ?", &mut sql);
            next(" AND longitude <= ?", &mut sql);
        }
        if f.observed_from.is_some() {
            next(" AND observed_on >= ?", &mut sql);
        }
        if f.observed_to.is_some() {
            next(" AND observed_on <= ?", &mut sql);
        }
        match f.has_photos {
            Some(true) => sql.push_str(" AND photos_count > 0"),
            Some(false) => sql.push_str(" AND photos_count = 0"),
            None => {}
        }
        if f.updated_since.is_some() {
            next(" AND updated_at >= ?", &mut sql);
        }
        if f.id_above.is_some() {
            next(" AND id > ?", &mut sql);
        }
        if f.id_below.is_some() {
            next(" AND id < ?", &mut sql);
        }
        let order = if f.id_above.is_some() { "ASC" } else { "DESC" };
        next(&format!(" ORDER BY id {order} LIMIT ?"), &mut sql);

        let mut q = sqlx::query(&sql).bind(scope.tenant_id());
        if let Some(p) = &f.taxon_path {
            q = q.bind(format!("{p}%"));
        }
        if let Some(u) = &f.user_id {
            q = q.bind(u.clone());
        }
        if let Some(g) = &f.quality_grade {
            q = q.bind(g.clone());
        }
        if let Some(l) = &f.license {
            q = q.bind(l.clone());
        }
        if let Some((s, w, no, e)) = f.bbox {
            q = q.bind(s).bind(w).bind(no).bind(e);
        }
        if let Some(d) = &f.observed_from {
            q = q.bind(d.clone());
        }
        if let Some(d) = &f.observed_to {
            q = q.bind(d.clone());
        }
        if let Some(t) = f.updated_since {
            q = q.bind(t);
        }
        if let Some(id) = f.id_above {
            q = q.bind(id);
        }
        if let Some(id) = f.id_below {
            q = q.bind(id);
        }
        q = q.bind(f.limit);
        let mut tx = self.tenant_read(scope).await?;
        let rows = q.fetch_all(tx.conn()).await?;
        tx.commit().await?;
        rows.iter().map(obs_row).collect()
    }
}

async fn update_fields(
    tx: &mut TenantTx,
    id: i64,
    w: &ObservationWrite,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE observations SET observed_on = $1, time_observed_at = $2, utc_offset_mins = $3, \
         positional_accuracy = $4, private_location = $5, geoprivacy = $6, species_guess = $7, \
         description = $8, license = $9, captive = $10, tags = $11, fields = $12, \
         prefers_community_taxon = $13, updated_at = $14 WHERE id = $15",
    )
    .bind(&w.observed_on)
    .bind(w.time_observed_at)
    .bind(w.utc_offset_mins)
    .bind(w.positional_accuracy)
    .bind(w.private_location.clone())
    .bind(&w.geoprivacy)
    .bind(&w.species_guess)
    .bind(&w.description)
    .bind(&w.license)
    .bind(i64::from(w.captive))
    .bind(&w.tags)
    .bind(&w.fields)
    .bind(i64::from(w.prefers_community_taxon))
    .bind(now)
    .bind(id)
    .execute(tx.conn())
    .await?;
    Ok(())
}
