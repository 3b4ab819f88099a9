//! The observations REST API (`/api/v1/observations`, `/api/v1/identifications`,
//! `/api/v1/taxa`), shaped like iNaturalist's v1 API: bodies wrap the resource
//! (`{"observation": {…}}`), deep paging by `id_above` / `id_below`.
//!
//! True coordinates never reach the database in clear: the point, the obscured point drawn
//! for it and the observer's place name are sealed together under the tenant's
//! observations key (`obs-<tenant>`), bound to the tenant, table, column and the
//! observation's uuid. The public point in the row is what anyone in the tenant may see;
//! only the observer gets `private_location` back.
//!
//! Every write loads what the rules need, runs [`crate::rules`] and stores the decision in
//! the same transaction (see `rampart_store::observations`). A write that raced another
//! one moving the point (`observation_changed`) is retried here, at most three times.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use rampart_crypto::envelope::Context;
use rampart_crypto::keyring::Keyring;
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_identity::{Identity, IdentityError, Principal};
use rampart_store::observations::{
    Changed, Derived, IdentificationRow, NewIdentification, ObservationFilter, ObservationRow,
    ObservationWrite, Snapshot, TaxonRow,
};
use rampart_store::{StoreError, TenantKind, TenantScope};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::rules::geoprivacy::{self, Geoprivacy, Status};
use crate::rules::grade::{self, GradeInput, Metric, MetricVotes};
use crate::rules::identify::{self, Ident};
use crate::rules::taxa::{TaxonNode, Tree};

pub const OBSERVATIONS_READ: &str = "observations:read";
pub const OBSERVATIONS_WRITE: &str = "observations:write";

/// The licences an observation may carry (Creative Commons 4.0, CC0 1.0).
pub const LICENSES: &[&str] = &[
    "CC0",
    "CC-BY",
    "CC-BY-NC",
    "CC-BY-SA",
    "CC-BY-ND",
    "CC-BY-NC-SA",
    "CC-BY-NC-ND",
];
/// iNaturalist's default, kept: usable by GBIF, not commercially.
pub const DEFAULT_LICENSE: &str = "CC-BY-NC";
const GRADES: &[&str] = &["casual", "needs_id", "research"];
const GEOPRIVACIES: &[&str] = &["open", "obscured", "private"];
/// How old an observation may be (iNaturalist: 130 years).
const MAX_AGE_YEARS: i32 = 130;
const MAX_GUESS_CHARS: usize = 256;
const MAX_TAGS_CHARS: usize = 750;
const MAX_BODY_CHARS: usize = 5000;
const MAX_DESCRIPTION_CHARS: usize = 10_000;
const MAX_FIELD_VALUE_CHARS: usize = 2048;
const MAX_FIELDS: usize = 50;
/// Larger than the Earth's half circumference: no honest accuracy is worse.
const MAX_ACCURACY_M: f64 = 20_000_000.0;
const SAVE_ATTEMPTS: usize = 3;

#[derive(Clone)]
pub struct Observations {
    identity: Identity,
    keyring: Arc<Keyring>,
    objects: rampart_objects::Objects,
    /// Photos being decoded and resized at once.
    photo_gate: Arc<tokio::sync::Semaphore>,
    max_photo_bytes: usize,
}

impl Observations {
    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }
    pub(crate) fn keyring(&self) -> &Keyring {
        &self.keyring
    }
    pub(crate) fn objects(&self) -> &rampart_objects::Objects {
        &self.objects
    }
    pub(crate) fn photo_gate(&self) -> &tokio::sync::Semaphore {
        &self.photo_gate
    }
    pub(crate) fn max_photo_bytes(&self) -> usize {
        self.max_photo_bytes
    }
}

impl FromRef<Observations> for Identity {
    fn from_ref(o: &Observations) -> Identity {
        o.identity.clone()
    }
}

impl Observations {
    pub fn new(
        identity: Identity,
        keyring: Arc<Keyring>,
        objects: rampart_objects::Objects,
        config: &rampart_config::ObservationsConfig,
    ) -> Observations {
        Observations {
            identity,
            keyring,
            objects,
            photo_gate: Arc::new(tokio::sync::Semaphore::new(config.photo_workers)),
            max_photo_bytes: config.max_photo_bytes,
        }
    }
}

/// Observers, identifiers and admins of a tenant write; auditors read.
pub fn register_permissions(rbac: &mut rampart_identity::rbac::RbacBuilder) {
    use rampart_store::Role;
    let all = [OBSERVATIONS_READ, OBSERVATIONS_WRITE];
    rbac.grant(Role::Member, &all);
    rbac.grant(Role::TenantAdmin, &all);
    rbac.grant(Role::PlatformAdmin, &all);
    rbac.grant(Role::Auditor, &[OBSERVATIONS_READ]);
}

/// The routes. Photo uploads take their own body limit (`observations.max_photo_bytes`)
/// in place of `http.max_body_bytes`.
pub fn router(max_photo_bytes: usize) -> OpenApiRouter<Observations> {
    let (schemas, paths, upload) = routes!(crate::photo_api::upload_photo);
    let upload = upload.layer(axum::extract::DefaultBodyLimit::max(max_photo_bytes));
    OpenApiRouter::new()
        .routes((schemas, paths, upload))
        .routes(routes!(crate::photo_api::get_photo))
        .routes(routes!(create_observation, search))
        .routes(routes!(deleted))
        .routes(routes!(
            get_observation,
            update_observation,
            delete_observation
        ))
        .routes(routes!(add_identification))
        .routes(routes!(update_identification))
        .routes(routes!(vote_quality, unvote_quality))
        .routes(routes!(vote_needs_id, unvote_needs_id))
        .routes(routes!(search_taxa))
        .routes(routes!(get_taxon))
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> IdentityError {
    IdentityError::Invalid {
        field,
        reason: reason.into(),
    }
}

pub(crate) fn keyring_error(e: rampart_crypto::keyring::KeyringError) -> IdentityError {
    IdentityError::Keys(e.to_string())
}

pub(crate) fn store_error(e: StoreError) -> IdentityError {
    match e {
        StoreError::Conflict { constraint } if constraint == "observations_uuid" => {
            IdentityError::Conflict(
                "uuid_taken",
                "another observation has this uuid; make a new one for a new observation",
            )
        }
        StoreError::Constraint { constraint } if constraint == "identification_taxon" => {
            invalid("taxon_id", "no such taxon")
        }
        StoreError::NotFound => IdentityError::NotFound,
        other => IdentityError::Store(other),
    }
}

fn location_key(tenant: &str) -> String {
    format!("obs-{tenant}")
}

fn location_context(tenant: &str, uuid: &str) -> Context {
    Context::new(tenant, "observations", "private_location", uuid)
}

/// What is sealed in `private_location`: the true point, the obscured point drawn for it
/// (kept, so re-saves and geoprivacy changes never publish a fresh draw: iNaturalist
/// #2609), the stated accuracy and the observer's place name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Location {
    lat: f64,
    lon: f64,
    obscured_lat: f64,
    obscured_lon: f64,
    #[serde(default)]
    place_guess: Option<String>,
}

impl Observations {
    pub(crate) async fn open_location(
        &self,
        row: &ObservationRow,
    ) -> Result<Option<Location>, IdentityError> {
        let Some(sealed) = &row.private_location else {
            return Ok(None);
        };
        let bytes = self
            .keyring
            .open(&location_context(&row.tenant_id, &row.uuid), sealed)
            .await
            .map_err(keyring_error)?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| IdentityError::Keys("sealed location is not a location".into()))
    }

    async fn seal_location(
        &self,
        tenant: &str,
        uuid: &str,
        location: &Location,
    ) -> Result<Vec<u8>, IdentityError> {
        let bytes = serde_json::to_vec(location)
            .map_err(|e| IdentityError::Keys(format!("location: {e}")))?;
        self.keyring
            .seal(
                &location_key(tenant),
                &location_context(tenant, uuid),
                &bytes,
            )
            .await
            .map_err(keyring_error)
    }

    /// Observations are written only in `community` tenants (Amaturalist's kind); reads
    /// work anywhere and find nothing elsewhere.
    pub(crate) async fn require_community(&self, scope: &TenantScope) -> Result<(), IdentityError> {
        let tenant = self.identity.store().get_tenant(scope.tenant_id()).await?;
        if tenant.kind != TenantKind::Community {
            return Err(IdentityError::Forbidden(
                "observations are recorded in community tenants only",
            ));
        }
        Ok(())
    }

    pub(crate) async fn load(
        &self,
        scope: &TenantScope,
        id: i64,
    ) -> Result<(ObservationRow, Vec<IdentificationRow>), IdentityError> {
        self.identity
            .store()
            .observation(scope, id)
            .await
            .map_err(store_error)
    }

    async fn taxa(&self, ids: &[i64]) -> Result<BTreeMap<i64, TaxonRow>, IdentityError> {
        let mut out = BTreeMap::new();
        for &id in ids {
            if out.contains_key(&id) {
                continue;
            }
            match self.identity.store().taxon(id).await {
                Ok(t) => {
                    out.insert(id, t);
                }
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    async fn view(
        &self,
        principal: &Principal,
        row: &ObservationRow,
        idents: Option<&[IdentificationRow]>,
    ) -> Result<ObservationView, IdentityError> {
        let owner = principal.user().is_some_and(|u| u.id == row.user_id);
        let private_location = if owner {
            self.open_location(row).await?.map(|l| PrivateLocation {
                latitude: l.lat,
                longitude: l.lon,
                positional_accuracy: row.positional_accuracy,
                place_guess: l.place_guess,
            })
        } else {
            None
        };
        let mut taxon_ids: Vec<i64> = row.taxon_id.into_iter().collect();
        if let Some(idents) = idents {
            taxon_ids.extend(idents.iter().map(|i| i.taxon_id));
        }
        let taxa = self.taxa(&taxon_ids).await?;
        let mut view = ObservationView::new(row, idents, &taxa, private_location);
        if idents.is_some() && row.photos_count > 0 {
            let photos = self
                .identity
                .store()
                .photos_of(&principal.scope, row.id)
                .await
                .map_err(store_error)?;
            view.photos = Some(
                photos
                    .iter()
                    .map(crate::photo_api::PhotoView::from)
                    .collect(),
            );
        }
        Ok(view)
    }
}

// ---------------------------------------------------------------------------------------
// The rules, over a snapshot

fn tree_of(snap: &Snapshot) -> Tree {
    Tree::new(snap.taxa.iter().map(|t| TaxonNode {
        id: t.id,
        rank_level: t.rank_level,
        ancestry: t.ancestry(),
        active: t.active,
    }))
}

fn idents_of(snap: &Snapshot) -> Vec<Ident> {
    snap.identifications
        .iter()
        .map(|i| Ident {
            id: i.id,
            user_id: i.user_id.clone(),
            taxon_id: i.taxon_id,
            current: i.current,
            hidden: i.hidden,
            disagreement: i.disagreement,
            previous_taxon_id: i.previous_taxon_id,
        })
        .collect()
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// What the rules decide for the snapshot, given the observation's opened location.
pub(crate) fn derive(snap: &Snapshot, location: Option<&Location>) -> Derived {
    let tree = tree_of(snap);
    let idents = idents_of(snap);
    let obs = &snap.observation;
    let metrics: Vec<MetricVotes> = snap
        .metric_votes
        .iter()
        .filter_map(|(metric, agree, disagree)| {
            Some(MetricVotes {
                metric: Metric::parse(metric)?,
                agree: count(*agree),
                disagree: count(*disagree),
            })
        })
        .collect();
    let assessment = grade::assess(&GradeInput {
        tree: &tree,
        idents: &idents,
        owner_id: &obs.user_id,
        prefers_community_taxon: obs.prefers_community_taxon,
        has_coordinates: location.is_some(),
        has_date: obs.observed_on.is_some(),
        has_media: obs.photos_count > 0,
        flagged: obs.flagged,
        metrics: &metrics,
        needs_id_up: count(snap.needs_id_up),
        needs_id_down: count(snap.needs_id_down),
        homo: snap.homo,
    });

    // Every current, visible identification's lineage counts, so a wrong ID of a common
    // species cannot lift the obscuring of a threatened one (iNaturalist #711).
    let identified: Vec<i64> = idents
        .iter()
        .filter(|i| i.current && !i.hidden)
        .map(|i| i.taxon_id)
        .collect();
    let statuses: Vec<Status> = snap
        .statuses
        .iter()
        .filter_map(|s| {
            Some(Status {
                taxon_id: s.taxon_id,
                iucn: i32::try_from(s.iucn).unwrap_or(0),
                geoprivacy: Geoprivacy::parse(&s.geoprivacy)?,
            })
        })
        .collect();
    let taxon_geoprivacy = geoprivacy::taxon_geoprivacy(&tree, &identified, &statuses);
    let chosen = Geoprivacy::parse(&obs.geoprivacy).unwrap_or(Geoprivacy::Open);
    let effective = chosen.max(taxon_geoprivacy);

    let accuracy = obs
        .positional_accuracy
        .and_then(|a| u32::try_from(a.max(0)).ok());
    let (latitude, longitude, public_accuracy, place_guess) = match (location, effective) {
        (None, _) | (Some(_), Geoprivacy::Private) => (None, None, None, None),
        (Some(l), Geoprivacy::Open) => (Some(l.lat), Some(l.lon), accuracy, l.place_guess.clone()),
        (Some(l), Geoprivacy::Obscured) => (
            Some(l.obscured_lat),
            Some(l.obscured_lon),
            geoprivacy::public_accuracy(Geoprivacy::Obscured, accuracy, l.lat, l.lon),
            // No coarse place name without a places table: none at all rather than the
            // observer's words, which name the site (iNaturalist #265, #317).
            None,
        ),
    };
    Derived {
        taxon_id: assessment.taxon_id,
        community_taxon_id: assessment.community.map(|c| c.taxon_id),
        community_score: assessment.community.map(|c| c.score),
        quality_grade: assessment.grade.as_str().to_string(),
        agreements: i64::from(assessment.agreements),
        disagreements: i64::from(assessment.disagreements),
        taxon_geoprivacy: taxon_geoprivacy.as_str().to_string(),
        latitude,
        longitude,
        public_positional_accuracy: public_accuracy.map(i64::from),
        place_guess,
        categories: assessment
            .categories
            .into_iter()
            .map(|(id, c)| (id, c.as_str().to_string()))
            .collect(),
    }
}

/// The `disagreement` flag of `user`'s new identification of `taxon`.
fn flag(snap: &Snapshot, user: &str, taxon: i64, client: Option<bool>) -> Option<bool> {
    let tree = tree_of(snap);
    let other_current = snap
        .identifications
        .iter()
        .any(|i| i.current && i.user_id != user);
    identify::disagreement(
        &tree,
        taxon,
        snap.observation.taxon_id,
        other_current,
        client,
    )
}

// ---------------------------------------------------------------------------------------
// Requests

/// `{"observation": {…}}`.
#[derive(Deserialize, ToSchema)]
pub struct ObservationBody {
    pub observation: ObservationInput,
}

/// An observation as the observer writes it. On update (PATCH, or a POST repeating a
/// uuid), absent or null fields keep their value.
#[derive(Deserialize, ToSchema, Default, Clone)]
pub struct ObservationInput {
    /// The client's id for this observation (a lowercase v4 UUID is best). A POST with a
    /// uuid the caller already used updates that observation: retries never duplicate.
    #[schema(format = Uuid)]
    pub uuid: Option<String>,
    /// `YYYY-MM-DD`, or an RFC 3339 time with the observer's offset
    /// (`2026-11-30T07:15:00+07:00`). Not in the future, at most 130 years ago.
    #[schema(max_length = 64)]
    pub observed_on: Option<String>,
    #[schema(exclusive_minimum = -90.0, exclusive_maximum = 90.0)]
    pub latitude: Option<f64>,
    #[schema(minimum = -180.0, maximum = 180.0)]
    pub longitude: Option<f64>,
    /// Metres; 0 means unknown.
    #[schema(minimum = 0.0, maximum = 20000000.0)]
    pub positional_accuracy: Option<f64>,
    /// `open` (default), `obscured` (the public point moves within its 0.2° cell) or
    /// `private` (no public point). A threatened taxon can make it stricter, never laxer.
    #[schema(value_type = Option<String>, pattern = "^(open|obscured|private)$")]
    pub geoprivacy: Option<String>,
    #[schema(max_length = 256)]
    pub place_guess: Option<String>,
    #[schema(max_length = 256)]
    pub species_guess: Option<String>,
    #[schema(max_length = 10000)]
    pub description: Option<String>,
    /// A Creative Commons code; default `CC-BY-NC`.
    #[schema(value_type = Option<String>, pattern = "^(CC0|CC-BY|CC-BY-NC|CC-BY-SA|CC-BY-ND|CC-BY-NC-SA|CC-BY-NC-ND)$")]
    pub license: Option<String>,
    /// Captive or cultivated: the observer's own "not wild" vote.
    pub captive: Option<bool>,
    /// At most 750 characters in all.
    #[schema(max_items = 100)]
    pub tags: Option<Vec<String>>,
    /// Observation fields: name → value (at most 50; values at most 2,048 characters).
    pub fields: Option<BTreeMap<String, String>>,
    /// False: the observer's own identification stays the observation's taxon.
    pub prefers_community_taxon: Option<bool>,
    /// The observer's identification.
    #[schema(minimum = 1)]
    pub taxon_id: Option<i64>,
}

/// An observation's fields, validated, before sealing.
struct Valid {
    observed_on: Option<String>,
    time_observed_at: Option<i64>,
    utc_offset_mins: Option<i64>,
    point: Option<(f64, f64)>,
    positional_accuracy: Option<i64>,
    geoprivacy: String,
    place_guess: Option<String>,
    species_guess: Option<String>,
    description: Option<String>,
    license: String,
    captive: bool,
    tags: Vec<String>,
    fields: BTreeMap<String, String>,
    prefers_community_taxon: bool,
    taxon_id: Option<i64>,
}

fn chars(field: &'static str, value: &Option<String>, max: usize) -> Result<(), IdentityError> {
    match value {
        Some(v) if v.chars().count() > max => {
            Err(invalid(field, format!("at most {max} characters")))
        }
        _ => Ok(()),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `observed_on` as (local date, instant in ms, offset in minutes), refusing the future
/// and the too old. A bare date is in the future only once it has begun everywhere
/// (UTC+14), since its zone is not known.
fn parse_observed_on(
    text: &str,
    now: OffsetDateTime,
) -> Result<(String, Option<i64>, Option<i64>), IdentityError> {
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    let text = text.trim();
    let (date, instant, offset) = if let Ok(d) = Date::parse(text, &date_format) {
        let latest_today = (now + time::Duration::hours(14)).date();
        if d > latest_today {
            return Err(invalid("observed_on", "is in the future"));
        }
        (d, None, None)
    } else if let Ok(t) =
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        // A minute of grace for clocks a little ahead.
        if t > now + time::Duration::minutes(1) {
            return Err(invalid("observed_on", "is in the future"));
        }
        let ms = i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| invalid("observed_on", "is out of range"))?;
        (
            t.date(),
            Some(ms),
            Some(i64::from(t.offset().whole_minutes())),
        )
    } else {
        return Err(invalid(
            "observed_on",
            "must be one day: YYYY-MM-DD, or an RFC 3339 time with its offset",
        ));
    };
    let oldest = now
        .date()
        .replace_year(now.year() - MAX_AGE_YEARS)
        .unwrap_or(Date::MIN);
    if date < oldest {
        return Err(invalid(
            "observed_on",
            format!("is more than {MAX_AGE_YEARS} years ago"),
        ));
    }
    let date_text = date
        .format(&date_format)
        .map_err(|_| invalid("observed_on", "is out of range"))?;
    Ok((date_text, instant, offset))
}

fn validate(input: ObservationInput, now: OffsetDateTime) -> Result<Valid, IdentityError> {
    let (observed_on, time_observed_at, utc_offset_mins) = match &input.observed_on {
        Some(text) if !text.trim().is_empty() => {
            let (d, t, o) = parse_observed_on(text, now)?;
            (Some(d), t, o)
        }
        _ => (None, None, None),
    };
    let point = match (input.latitude, input.longitude) {
        (None, None) => None,
        (Some(lat), Some(lon)) => {
            if !lat.is_finite() || lat <= -90.0 || lat >= 90.0 {
                return Err(invalid(
                    "latitude",
                    "must be between -90 and 90 (exclusive)",
                ));
            }
            if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
                return Err(invalid("longitude", "must be between -180 and 180"));
            }
            if lat == 0.0 && lon == 0.0 {
                return Err(invalid(
                    "latitude",
                    "(0, 0) is where a missing location lands; send none instead",
                ));
            }
            Some((lat, lon))
        }
        (Some(_), None) => return Err(invalid("longitude", "is required with a latitude")),
        (None, Some(_)) => return Err(invalid("latitude", "is required with a longitude")),
    };
    let positional_accuracy = match input.positional_accuracy {
        None => None,
        Some(a) if !a.is_finite() || !(0.0..=MAX_ACCURACY_M).contains(&a) => {
            return Err(invalid(
                "positional_accuracy",
                "must be between 0 and 20,000,000 metres",
            ))
        }
        // 0 is "unknown", as iNaturalist stores it.
        Some(0.0) => None,
        // Within range, so the cast is exact enough and cannot overflow.
        Some(a) => Some(a.ceil() as i64),
    };
    let geoprivacy = match input.geoprivacy.as_deref() {
        None => "open".to_string(),
        Some(g) if GEOPRIVACIES.contains(&g) => g.to_string(),
        Some(_) => return Err(invalid("geoprivacy", "must be open, obscured or private")),
    };
    let license = match input.license.as_deref() {
        None => DEFAULT_LICENSE.to_string(),
        Some(l) if LICENSES.contains(&l) => l.to_string(),
        Some(_) => {
            return Err(invalid(
                "license",
                format!("must be one of {}", LICENSES.join(", ")),
            ))
        }
    };
    chars("place_guess", &input.place_guess, MAX_GUESS_CHARS)?;
    chars("species_guess", &input.species_guess, MAX_GUESS_CHARS)?;
    chars("description", &input.description, MAX_DESCRIPTION_CHARS)?;
    let tags: Vec<String> = input
        .tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if tags.iter().map(|t| t.chars().count()).sum::<usize>() > MAX_TAGS_CHARS {
        return Err(invalid(
            "tags",
            format!("at most {MAX_TAGS_CHARS} characters in all"),
        ));
    }
    let fields = input.fields.unwrap_or_default();
    if fields.len() > MAX_FIELDS {
        return Err(invalid("fields", format!("at most {MAX_FIELDS} fields")));
    }
    for (name, value) in &fields {
        if name.trim().is_empty() || name.chars().count() > MAX_GUESS_CHARS {
            return Err(invalid("fields", "names are 1 to 256 characters"));
        }
        if value.chars().count() > MAX_FIELD_VALUE_CHARS {
            return Err(invalid(
                "fields",
                format!("values are at most {MAX_FIELD_VALUE_CHARS} characters"),
            ));
        }
    }
    if let Some(t) = input.taxon_id {
        if t < 1 {
            return Err(invalid("taxon_id", "no such taxon"));
        }
    }
    Ok(Valid {
        observed_on,
        time_observed_at,
        utc_offset_mins,
        point,
        positional_accuracy,
        geoprivacy,
        place_guess: non_empty(input.place_guess),
        species_guess: non_empty(input.species_guess),
        description: non_empty(input.description),
        license,
        captive: input.captive.unwrap_or(false),
        tags,
        fields,
        prefers_community_taxon: input.prefers_community_taxon.unwrap_or(true),
        taxon_id: input.taxon_id,
    })
}

/// `patch` over what is stored (absent fields keep their value).
fn merged(
    patch: ObservationInput,
    row: &ObservationRow,
    location: Option<&Location>,
) -> ObservationInput {
    let stored_observed_on = match (row.time_observed_at, row.utc_offset_mins) {
        (Some(ms), Some(offset)) => rfc3339(ms, offset),
        _ => row.observed_on.clone(),
    };
    ObservationInput {
        uuid: Some(row.uuid.clone()),
        observed_on: patch.observed_on.or(stored_observed_on),
        latitude: patch.latitude.or(location.map(|l| l.lat)),
        longitude: patch.longitude.or(location.map(|l| l.lon)),
        positional_accuracy: patch
            .positional_accuracy
            .or(row.positional_accuracy.map(|a| a as f64)),
        geoprivacy: patch.geoprivacy.or(Some(row.geoprivacy.clone())),
        place_guess: patch
            .place_guess
            .or(location.and_then(|l| l.place_guess.clone())),
        species_guess: patch.species_guess.or(row.species_guess.clone()),
        description: patch.description.or(row.description.clone()),
        license: patch.license.or(row.license.clone()),
        captive: patch.captive.or(Some(row.captive)),
        tags: patch.tags.or_else(|| serde_json::from_str(&row.tags).ok()),
        fields: patch
            .fields
            .or_else(|| serde_json::from_str(&row.fields).ok()),
        prefers_community_taxon: patch
            .prefers_community_taxon
            .or(Some(row.prefers_community_taxon)),
        // Only a taxon named in this request makes a new identification.
        taxon_id: patch.taxon_id,
    }
}

fn rfc3339(ms: i64, offset_mins: i64) -> Option<String> {
    let offset = time::UtcOffset::from_whole_seconds(i32::try_from(offset_mins * 60).ok()?).ok()?;
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()?
        .to_offset(offset);
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

pub(crate) fn ms_rfc3339(ms: i64) -> String {
    rfc3339(ms, 0).unwrap_or_default()
}

pub(crate) fn parse_uuid(text: &str) -> Result<String, IdentityError> {
    uuid::Uuid::parse_str(text.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| invalid("uuid", "must be a UUID"))
}

// ---------------------------------------------------------------------------------------
// Views

/// The observer's own view of the true location (never shown to anyone else).
#[derive(Serialize, ToSchema, Debug, Clone)]
pub struct PrivateLocation {
    pub latitude: f64,
    pub longitude: f64,
    pub positional_accuracy: Option<i64>,
    pub place_guess: Option<String>,
}

#[derive(Serialize, ToSchema, Debug, Clone)]
pub struct TaxonView {
    pub id: i64,
    pub name: String,
    pub rank: String,
    pub rank_level: f64,
    pub parent_id: Option<i64>,
    /// The ancestors' ids, root first.
    pub ancestor_ids: Vec<i64>,
    pub english_name: Option<String>,
    pub indonesian_name: Option<String>,
    pub is_active: bool,
}

impl From<&TaxonRow> for TaxonView {
    fn from(t: &TaxonRow) -> TaxonView {
        TaxonView {
            id: t.id,
            name: t.name.clone(),
            rank: t.rank.clone(),
            rank_level: t.rank_level,
            parent_id: t.parent_id,
            ancestor_ids: t.ancestry(),
            english_name: t.name_en.clone(),
            indonesian_name: t.name_id.clone(),
            is_active: t.active,
        }
    }
}

#[derive(Serialize, ToSchema, Debug, Clone)]
pub struct IdentificationView {
    pub id: i64,
    pub uuid: String,
    pub observation_id: i64,
    pub user_id: String,
    pub taxon_id: i64,
    pub taxon: Option<TaxonView>,
    pub body: Option<String>,
    pub current: bool,
    pub hidden: bool,
    /// Null when there was nothing to disagree with.
    pub disagreement: Option<bool>,
    pub previous_observation_taxon_id: Option<i64>,
    /// `leading`, `improving`, `supporting` or `maverick` (current identifications).
    pub category: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl IdentificationView {
    fn new(i: &IdentificationRow, taxa: &BTreeMap<i64, TaxonRow>) -> IdentificationView {
        IdentificationView {
            id: i.id,
            uuid: i.uuid.clone(),
            observation_id: i.observation_id,
            user_id: i.user_id.clone(),
            taxon_id: i.taxon_id,
            taxon: taxa.get(&i.taxon_id).map(TaxonView::from),
            body: i.body.clone(),
            current: i.current,
            hidden: i.hidden,
            disagreement: i.disagreement,
            previous_observation_taxon_id: i.previous_taxon_id,
            category: i.category.clone(),
            created_at: ms_rfc3339(i.created_at),
            updated_at: ms_rfc3339(i.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema, Debug, Clone)]
pub struct ObservationView {
    pub id: i64,
    pub uuid: String,
    pub user_id: String,
    /// The day, in the observer's zone.
    pub observed_on: Option<String>,
    /// RFC 3339 with the observer's offset, when a time was given.
    pub time_observed_at: Option<String>,
    /// The public point: the true one (open), a random point in its 0.2° cell
    /// (obscured), or none (private, or no location).
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// Metres; at least the cell's diagonal when obscured.
    pub public_positional_accuracy: Option<i64>,
    /// The observer's choice.
    pub geoprivacy: String,
    /// What the taxa's conservation statuses impose.
    pub taxon_geoprivacy: String,
    /// True when the public point is not the true one.
    pub obscured: bool,
    pub place_guess: Option<String>,
    pub species_guess: Option<String>,
    pub description: Option<String>,
    pub license: Option<String>,
    pub captive: bool,
    pub tags: Vec<String>,
    pub fields: BTreeMap<String, String>,
    pub prefers_community_taxon: bool,
    pub taxon_id: Option<i64>,
    pub taxon: Option<TaxonView>,
    pub community_taxon_id: Option<i64>,
    /// Cumulative ÷ (cumulative + disagreements) at the community taxon.
    pub community_score: Option<f64>,
    /// `casual`, `needs_id` or `research`.
    pub quality_grade: String,
    pub identifications_agree: i64,
    pub identifications_disagree: i64,
    pub photos_count: i64,
    pub created_at: String,
    pub updated_at: String,
    /// Only for the observer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_location: Option<PrivateLocation>,
    /// Only on a single observation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifications: Option<Vec<IdentificationView>>,
    /// Only on a single observation that has photos.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub photos: Option<Vec<crate::photo_api::PhotoView>>,
}

impl ObservationView {
    fn new(
        row: &ObservationRow,
        idents: Option<&[IdentificationRow]>,
        taxa: &BTreeMap<i64, TaxonRow>,
        private_location: Option<PrivateLocation>,
    ) -> ObservationView {
        let effective = Geoprivacy::parse(&row.geoprivacy)
            .unwrap_or(Geoprivacy::Open)
            .max(Geoprivacy::parse(&row.taxon_geoprivacy).unwrap_or(Geoprivacy::Open));
        ObservationView {
            id: row.id,
            uuid: row.uuid.clone(),
            user_id: row.user_id.clone(),
            observed_on: row.observed_on.clone(),
            time_observed_at: match (row.time_observed_at, row.utc_offset_mins) {
                (Some(ms), offset) => rfc3339(ms, offset.unwrap_or(0)),
                _ => None,
            },
            latitude: row.latitude,
            longitude: row.longitude,
            public_positional_accuracy: row.public_positional_accuracy,
            geoprivacy: row.geoprivacy.clone(),
            taxon_geoprivacy: row.taxon_geoprivacy.clone(),
            obscured: effective != Geoprivacy::Open && row.private_location.is_some(),
            place_guess: row.place_guess.clone(),
            species_guess: row.species_guess.clone(),
            description: row.description.clone(),
            license: row.license.clone(),
            captive: row.captive,
            tags: serde_json::from_str(&row.tags).unwrap_or_default(),
            fields: serde_json::from_str(&row.fields).unwrap_or_default(),
            prefers_community_taxon: row.prefers_community_taxon,
            taxon_id: row.taxon_id,
            taxon: row.taxon_id.and_then(|t| taxa.get(&t)).map(TaxonView::from),
            community_taxon_id: row.community_taxon_id,
            community_score: row.community_score,
            quality_grade: row.quality_grade.clone(),
            identifications_agree: row.agreements,
            identifications_disagree: row.disagreements,
            photos_count: row.photos_count,
            created_at: ms_rfc3339(row.created_at),
            updated_at: ms_rfc3339(row.updated_at),
            private_location,
            identifications: idents.map(|ids| {
                ids.iter()
                    .map(|i| IdentificationView::new(i, taxa))
                    .collect()
            }),
            photos: None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Observations

pub(crate) fn path_id(text: &str) -> Result<i64, IdentityError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(IdentityError::NotFound)
}

impl Observations {
    /// Creates or updates (`existing`) the observation from a validated input, retrying a
    /// race with another write that moved the point.
    #[allow(clippy::too_many_arguments)]
    async fn save(
        &self,
        principal: &Principal,
        info: &RequestInfo,
        uuid: &str,
        input: ObservationInput,
        patch: bool,
    ) -> Result<Changed, IdentityError> {
        let user = principal.require_user()?.clone();
        let tenant = principal.scope.tenant_id().to_string();
        let store = self.identity.store();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let existing = store
                .observation_by_uuid(&principal.scope, uuid)
                .await
                .map_err(store_error)?;
            if let Some(row) = &existing {
                if row.user_id != user.id {
                    return Err(store_error(StoreError::Conflict {
                        constraint: "observations_uuid".into(),
                    }));
                }
            }
            let opened = match &existing {
                Some(row) => self.open_location(row).await?,
                None => None,
            };
            let input = match (&existing, patch) {
                (Some(row), true) => merged(input.clone(), row, opened.as_ref()),
                _ => input.clone(),
            };
            let valid = validate(input, OffsetDateTime::now_utc())?;
            // The obscured point is drawn once per true point.
            let location = valid.point.map(|(lat, lon)| {
                let kept = opened
                    .as_ref()
                    .filter(|l| l.lat == lat && l.lon == lon)
                    .map(|l| (l.obscured_lat, l.obscured_lon));
                let (obscured_lat, obscured_lon) =
                    kept.unwrap_or_else(|| geoprivacy::obscure(lat, lon, &mut rand::thread_rng()));
                Location {
                    lat,
                    lon,
                    obscured_lat,
                    obscured_lon,
                    place_guess: valid.place_guess.clone(),
                }
            });
            let sealed = match (&location, &existing) {
                (Some(l), Some(row)) if opened.as_ref() == Some(l) => row.private_location.clone(),
                (Some(l), _) => Some(self.seal_location(&tenant, uuid, l).await?),
                (None, _) => None,
            };
            let write = ObservationWrite {
                observed_on: valid.observed_on.clone(),
                time_observed_at: valid.time_observed_at,
                utc_offset_mins: valid.utc_offset_mins,
                positional_accuracy: valid.positional_accuracy,
                private_location: sealed,
                geoprivacy: valid.geoprivacy.clone(),
                species_guess: valid.species_guess.clone(),
                description: valid.description.clone(),
                license: Some(valid.license.clone()),
                captive: valid.captive,
                tags: serde_json::to_string(&valid.tags).unwrap_or_else(|_| "[]".into()),
                fields: serde_json::to_string(&valid.fields).unwrap_or_else(|_| "{}".into()),
                prefers_community_taxon: valid.prefers_community_taxon,
                taxon_id: valid.taxon_id,
            };
            let action = if existing.is_some() {
                "observation.update"
            } else {
                "observation.create"
            };
            // What changed, without the place: coordinates and place names stay sealed.
            let audit = rampart_audit::event(
                principal.actor(),
                action,
                "observation",
                rampart_identity::request_meta(info),
            )
            .changes(serde_json::json!({
                "uuid": uuid,
                "geoprivacy": valid.geoprivacy,
                "has_location": location.is_some(),
                "taxon_id": valid.taxon_id,
                "license": valid.license,
            }))
            .build();
            let previous = existing.as_ref().map(|r| r.private_location.as_deref());
            let ident_uuid = uuid::Uuid::new_v4().to_string();
            let user_id = user.id.clone();
            let taxon = valid.taxon_id;
            let result = store
                .save_observation(
                    &principal.scope,
                    uuid,
                    &user.id,
                    &write,
                    previous,
                    audit,
                    &ident_uuid,
                    &|snap| taxon.and_then(|t| flag(snap, &user_id, t, None)),
                    &|snap| Ok(derive(snap, location.as_ref())),
                )
                .await;
            match result {
                Err(StoreError::Conflict { constraint })
                    if constraint == "observation_changed" && attempt < SAVE_ATTEMPTS =>
                {
                    continue
                }
                other => return other.map_err(store_error),
            }
        }
    }

    /// Runs `change` with the observation's opened location, retrying when a concurrent
    /// write moved the point in between.
    pub(crate) async fn with_location<F, Fut>(
        &self,
        scope: &TenantScope,
        id: i64,
        change: F,
    ) -> Result<Changed, IdentityError>
    where
        F: Fn(ObservationRow, Option<Location>) -> Fut,
        Fut: std::future::Future<Output = Result<Changed, StoreError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (row, _) = self.load(scope, id).await?;
            let location = self.open_location(&row).await?;
            match change(row, location).await {
                Err(StoreError::Conflict { constraint })
                    if constraint == "observation_changed" && attempt < SAVE_ATTEMPTS =>
                {
                    continue
                }
                other => return other.map_err(store_error),
            }
        }
    }

    pub(crate) async fn view_of(
        &self,
        principal: &Principal,
        row: &ObservationRow,
        idents: &[IdentificationRow],
    ) -> Result<ObservationView, IdentityError> {
        self.view(principal, row, Some(idents)).await
    }

    pub(crate) async fn changed_view(
        &self,
        principal: &Principal,
        changed: &Changed,
    ) -> Result<ObservationView, IdentityError> {
        self.view(
            principal,
            &changed.observation,
            Some(&changed.identifications),
        )
        .await
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/observations",
    tag = "observations",
    security(("bearer" = [])),
    request_body = ObservationBody,
    responses(
        (status = 201, description = "Created", body = ObservationView),
        (status = 200, description = "The caller's observation with this uuid, updated (a retry)", body = ObservationView),
        (status = 403, description = "Not a user with observations:write in a community tenant", body = ErrorBody),
        (status = 409, description = "Another user's observation has this uuid", body = ErrorBody),
        (status = 422, description = "A field is invalid; the message names it", body = ErrorBody),
    )
)]
pub async fn create_observation(
    State(o): State<Observations>,
    principal: Principal,
    info: RequestInfo,
    Json(body): Json<ObservationBody>,
) -> Result<(StatusCode, Json<ObservationView>), ApiError> {
    principal.require(OBSERVATIONS_WRITE)?;
    principal.require_user()?;
    o.require_community(&principal.scope).await?;
    let uuid = match &body.observation.uuid {
        Some(u) => parse_uuid(u)?,
        None => uuid::Uuid::new_v4().to_string(),
    };
    // A retry repeats the whole observation: it replaces what is stored.
    let changed = o
        .save(&principal, &info, &uuid, body.observation, false)
        .await?;
    let status = if changed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(o.changed_view(&principal, &changed).await?)))
}

#[utoipa::path(
    get,
    path = "/api/v1/observations/{id}",
    tag = "observations",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "An observation of the caller's tenant")),
    responses(
        (status = 200, description = "The observation with its identifications; the true location only for its observer", body = ObservationView),
        (status = 404, description = "No such observation in the caller's tenant", body = ErrorBody),
    )
)]
pub async fn get_observation(
    State(o): State<Observations>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<ObservationView>, ApiError> {
    // The resource first: another tenant's observation is 404 whatever the caller may do.
    let (row, idents) = o.load(&principal.scope, path_id(&id)?).await?;
    principal.require(OBSERVATIONS_READ)?;
    Ok(Json(o.view(&principal, &row, Some(&idents)).await?))
}

#[utoipa::path(
    patch,
    path = "/api/v1/observations/{id}",
    tag = "observations",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "One of the caller's observations")),
    request_body = ObservationBody,
    responses(
        (status = 200, description = "Updated", body = ObservationView),
        (status = 403, description = "Only the observer changes an observation", body = ErrorBody),
        (status = 404, description = "No such observation in the caller's tenant", body = ErrorBody),
        (status = 422, description = "A field is invalid; the message names it", body = ErrorBody),
    )
)]
pub async fn update_observation(
    State(o): State<Observations>,
    principal: Principal,
    info: RequestInfo,
    Path(id): Path<String>,
    Json(body): Json<ObservationBody>,
) -> Result<Json<ObservationView>, ApiError> {
    let (row, _) = o.load(&principal.scope, path_id(&id)?).await?;
    principal.require(OBSERVATIONS_WRITE)?;
    let user = principal.require_user()?;
    if user.id != row.user_id {
        return Err(IdentityError::Forbidden("only the observer changes an observation").into());
    }
    let changed = o
        .save(&principal, &info, &row.uuid, body.observation, true)
        .await?;
    Ok(Json(o.changed_view(&principal, &changed).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/observations/{id}",
    tag = "observations",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "One of the caller's observations")),
    responses(
        (status = 204, description = "Deleted (listed by GET /api/v1/observations/deleted)"),
        (status = 403, description = "Only the observer deletes an observation", body = ErrorBody),
        (status = 404, description = "No such observation in the caller's tenant", body = ErrorBody),
    )
)]
pub async fn delete_observation(
    State(o): State<Observations>,
    principal: Principal,
    info: RequestInfo,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (row, _) = o.load(&principal.scope, path_id(&id)?).await?;
    principal.require(OBSERVATIONS_WRITE)?;
    let user = principal.require_user()?;
    if user.id != row.user_id {
        return Err(IdentityError::Forbidden("only the observer deletes an observation").into());
    }
    let audit = rampart_audit::event(
        principal.actor(),
        "observation.delete",
        "observation",
        rampart_identity::request_meta(&info),
    )
    .changes(serde_json::json!({ "uuid": row.uuid }))
    .build();
    let photos = o
        .identity
        .store()
        .photos_of(&principal.scope, row.id)
        .await
        .map_err(store_error)?;
    o.identity
        .store()
        .delete_observation(&principal.scope, row.id, audit)
        .await
        .map_err(store_error)?;
    crate::photo_api::remove_photo_files(&o, principal.scope.tenant_id(), &photos).await;
    Ok(StatusCode::NO_CONTENT)
}

fn grade_schema() -> utoipa::openapi::Object {
    rampart_edge::string_enum_schema(GRADES)
}

fn license_schema() -> utoipa::openapi::Object {
    rampart_edge::string_enum_schema(LICENSES)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The taxon and everything below it.
    #[param(minimum = 1)]
    taxon_id: Option<i64>,
    user_id: Option<String>,
    #[param(schema_with = grade_schema, required = false)]
    quality_grade: Option<String>,
    #[param(schema_with = license_schema, required = false)]
    license: Option<String>,
    /// South-west and north-east corners of a box on the public point (all four or none).
    #[param(minimum = -90.0, maximum = 90.0)]
    swlat: Option<f64>,
    #[param(minimum = -180.0, maximum = 180.0)]
    swlng: Option<f64>,
    #[param(minimum = -90.0, maximum = 90.0)]
    nelat: Option<f64>,
    #[param(minimum = -180.0, maximum = 180.0)]
    nelng: Option<f64>,
    /// Observed on or after this day (`YYYY-MM-DD`).
    #[param(format = Date)]
    d1: Option<String>,
    /// Observed on or before this day (`YYYY-MM-DD`).
    #[param(format = Date)]
    d2: Option<String>,
    photos: Option<bool>,
    /// RFC 3339: changed at or after this time (for clients that sync).
    #[param(format = DateTime)]
    updated_since: Option<String>,
    /// Oldest first, from after this id.
    #[param(minimum = 0)]
    id_above: Option<i64>,
    /// Newest first, from before this id.
    #[param(minimum = 1)]
    id_below: Option<i64>,
    /// 1 to 200 (default 30).
    #[param(minimum = 1, maximum = 200)]
    per_page: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ObservationPage {
    pub per_page: i64,
    /// Page on with `id_below` (the last id here) or, oldest first, `id_above`.
    pub results: Vec<ObservationView>,
}

fn parse_day(field: &'static str, text: &str) -> Result<String, IdentityError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text.trim(), &format)
        .ok()
        .and_then(|d| d.format(&format).ok())
        .ok_or_else(|| invalid(field, "must be a day: YYYY-MM-DD"))
}

#[utoipa::path(
    get,
    path = "/api/v1/observations",
    tag = "observations",
    security(("bearer" = [])),
    params(SearchQuery),
    responses(
        (status = 200, description = "Newest first, or oldest first with id_above", body = ObservationPage),
        (status = 422, description = "A filter is invalid", body = ErrorBody),
    )
)]
pub async fn search(
    State(o): State<Observations>,
    principal: Principal,
    Query(q): Query<SearchQuery>,
) -> Result<Json<ObservationPage>, ApiError> {
    principal.require(OBSERVATIONS_READ)?;
    let per_page = q.per_page.unwrap_or(30);
    if !(1..=200).contains(&per_page) {
        return Err(invalid("per_page", "must be between 1 and 200").into());
    }
    if q.taxon_id.is_some_and(|t| t < 1) {
        return Err(invalid("taxon_id", "must be a taxon id (1 or more)").into());
    }
    if q.id_above.is_some_and(|i| i < 0) {
        return Err(invalid("id_above", "must be 0 or more").into());
    }
    if q.id_below.is_some_and(|i| i < 1) {
        return Err(invalid("id_below", "must be 1 or more").into());
    }
    if let Some(g) = &q.quality_grade {
        if !GRADES.contains(&g.as_str()) {
            return Err(invalid("quality_grade", "must be casual, needs_id or research").into());
        }
    }
    if let Some(l) = &q.license {
        if !LICENSES.contains(&l.as_str()) {
            return Err(
                invalid("license", format!("must be one of {}", LICENSES.join(", "))).into(),
            );
        }
    }
    let bbox = match (q.swlat, q.swlng, q.nelat, q.nelng) {
        (None, None, None, None) => None,
        (Some(s), Some(w), Some(n), Some(e)) => {
            let lat_ok = |v: f64| (-90.0..=90.0).contains(&v);
            let lon_ok = |v: f64| (-180.0..=180.0).contains(&v);
            if !(lat_ok(s) && lat_ok(n) && lon_ok(w) && lon_ok(e)) {
                return Err(invalid("swlat", "the box's corners must be on the globe").into());
            }
            Some((s, w, n, e))
        }
        _ => return Err(invalid("swlat", "swlat, swlng, nelat and nelng come together").into()),
    };
    let taxon_path = match q.taxon_id {
        None => None,
        Some(id) => match o.identity.store().taxon(id).await {
            Ok(t) => Some(t.path),
            Err(StoreError::NotFound) => {
                // No such taxon: nothing is of it.
                return Ok(Json(ObservationPage {
                    per_page,
                    results: Vec::new(),
                }));
            }
            Err(e) => return Err(IdentityError::from(e).into()),
        },
    };
    if let (Some(a), Some(b)) = (q.id_above, q.id_below) {
        if a >= b {
            return Ok(Json(ObservationPage {
                per_page,
                results: Vec::new(),
            }));
        }
    }
    let filter = ObservationFilter {
        taxon_path,
        user_id: q.user_id.clone(),
        quality_grade: q.quality_grade.clone(),
        license: q.license.clone(),
        bbox,
        observed_from: q.d1.as_deref().map(|d| parse_day("d1", d)).transpose()?,
        observed_to: q.d2.as_deref().map(|d| parse_day("d2", d)).transpose()?,
        has_photos: q.photos,
        updated_since: q
            .updated_since
            .as_deref()
            .map(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
                    .ok_or_else(|| invalid("updated_since", "must be an RFC 3339 time"))
            })
            .transpose()?,
        id_above: q.id_above,
        id_below: q.id_below,
        limit: per_page,
    };
    let rows = o
        .identity
        .store()
        .search_observations(&principal.scope, &filter)
        .await
        .map_err(store_error)?;
    let mut results = Vec::with_capacity(rows.len());
    for row in &rows {
        results.push(o.view(&principal, row, None).await?);
    }
    Ok(Json(ObservationPage { per_page, results }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeletedQuery {
    /// RFC 3339: deletions at or after this time.
    #[param(format = DateTime)]
    since: String,
}

#[derive(Serialize, ToSchema)]
pub struct DeletedView {
    pub id: i64,
    pub uuid: String,
    pub deleted_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct DeletedPage {
    /// Oldest first, at most 1,000; ask again from the last `deleted_at` for more.
    pub results: Vec<DeletedView>,
}

#[utoipa::path(
    get,
    path = "/api/v1/observations/deleted",
    tag = "observations",
    security(("bearer" = [])),
    params(DeletedQuery),
    responses(
        (status = 200, description = "Observations deleted since then, for clients that sync", body = DeletedPage),
        (status = 422, description = "since is not an RFC 3339 time", body = ErrorBody),
    )
)]
pub async fn deleted(
    State(o): State<Observations>,
    principal: Principal,
    Query(q): Query<DeletedQuery>,
) -> Result<Json<DeletedPage>, ApiError> {
    principal.require(OBSERVATIONS_READ)?;
    let since = OffsetDateTime::parse(&q.since, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
        .ok_or_else(|| invalid("since", "must be an RFC 3339 time"))?;
    let rows = o
        .identity
        .store()
        .deleted_observations(&principal.scope, since, 1000)
        .await
        .map_err(store_error)?;
    Ok(Json(DeletedPage {
        results: rows
            .into_iter()
            .map(|d| DeletedView {
                id: d.observation_id,
                uuid: d.uuid,
                deleted_at: ms_rfc3339(d.deleted_at),
            })
            .collect(),
    }))
}

// ---------------------------------------------------------------------------------------
// Identifications and votes

/// `{"identification": {…}}`.
#[derive(Deserialize, ToSchema)]
pub struct IdentificationBody {
    pub identification: IdentificationInput,
}

#[derive(Deserialize, ToSchema)]
pub struct IdentificationInput {
    #[schema(minimum = 1)]
    pub taxon_id: i64,
    /// A remark, at most 5,000 characters.
    #[schema(max_length = 5000)]
    pub body: Option<String>,
    /// True, on an identification coarser than the observation's taxon, says "it is this,
    /// and not that finer taxon" (otherwise it is decided from the taxa).
    pub disagreement: Option<bool>,
    #[schema(format = Uuid)]
    pub uuid: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/observations/{id}/identifications",
    tag = "observations",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "An observation of the caller's tenant")),
    request_body = IdentificationBody,
    responses(
        (status = 201, description = "The caller's current identification; the observation re-graded", body = ObservationView),
        (status = 403, description = "Not a user with observations:write", body = ErrorBody),
        (status = 404, description = "No such observation in the caller's tenant", body = ErrorBody),
        (status = 422, description = "No such taxon, or the body is too long", body = ErrorBody),
    )
)]
pub async fn add_identification(
    State(o): State<Observations>,
    principal: Principal,
    info: RequestInfo,
    Path(id): Path<String>,
    Json(body): Json<IdentificationBody>,
) -> Result<(StatusCode, Json<ObservationView>), ApiError> {
    let id = path_id(&id)?;
    o.load(&principal.scope, id).await?;
    principal.require(OBSERVATIONS_WRITE)?;
    let input = body.identification;
    chars("body", &input.body, MAX_BODY_CHARS)?;
    if input.taxon_id < 1 {
        return Err(invalid("taxon_id", "no such taxon").into());
    }
    let user = principal.require_user()?.clone();
    let uuid = match &input.uuid {
        Some(u) => parse_uuid(u)?,
        None => uuid::Uuid::new_v4().to_string(),
    };
    let new = NewIdentification {
        uuid,
        user_id: user.id.clone(),
        taxon_id: input.taxon_id,
        body: non_empty(input.body.clone()),
        client_disagreement: input.disagreement,
    };
    let store = o.identity.store().clone();
    let changed = o
        .with_location(&principal.scope, id, |row, location| {
            let store = store.clone();
            let new = new.clone();
            let audit = rampart_audit::event(
                principal.actor(),
                "identification.create",
                "observation",
                rampart_identity::request_meta(&info),
            )
            .changes(serde_json::json!({ "taxon_id": new.taxon_id, "uuid": new.uuid }))
            .build();
            let scope = principal.scope.clone();
            async move {
                let opened = row.private_location.clone();
                store
                    .add_identification(
                        &scope,
                        row.id,
                        &new,
                        opened.as_deref(),
                        audit,
                        &|snap| flag(snap, &new.user_id, new.taxon_id, new.client_disagreement),
                        &|snap| Ok(derive(snap, location.as_ref())),
                    )
                    .await
            }
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(o.changed_view(&principal, &changed).await?),
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct IdentificationUpdateBody {
    pub identification: IdentificationUpdate,
}

#[derive(Deserialize, ToSchema)]
pub struct IdentificationUpdate {
    /// False withdraws the identification; true restores it as the author's current one.
    pub current: bool,
}

#[utoipa::path(
    patch,
    path = "/api/v1/identifications/{id}",
    tag = "observations",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "One of the caller's identifications")),
    request_body = IdentificationUpdateBody,
    responses(
        (status = 200, description = "The observation, re-graded", body = ObservationView),
        (status = 403, description = "Only its author withdraws or restores an identification", body = ErrorBody),
        (status = 404, description = "No such identification in the caller's tenant", body = ErrorBody),
    )
)]
pub async fn update_identification(
    State(o): State<Observations>,
    principal: Principal,
    info: RequestInfo,
    Path(id): Path<String>,
    Json(body): Json<IdentificationUpdateBody>,
) -> Result<Json<ObservationView>, ApiError> {
    let ident = o
        .identity
        .store()
        .identification(&principal.scope, path_id(&id)?)
        .await
        .map_err(store_error)?;
    principal.require(OBSERVATIONS_WRITE)?;
    let user = principal.require_user()?;
    if user.id != ident.user_id {
        return Err(IdentityError::Forbidden(
            "only its author withdraws or restores an identification",
        )
        .into());
    }
    let current = body.identification.current;
    let store = o.identity.store().clone();
    let changed = o
        .with_location(&principal.scope, ident.observation_id, |row, location| {
            let store = store.clone();
            let ident = ident.clone();
            let audit = rampart_audit::event(
                principal.actor(),
                if current {
                    "identification.restore"
                } else {
                    "identification.withdraw"
                },
                "observation",
                rampart_identity::request_meta(&info),
            )
            .changes(serde_json::json!({ "identification_id": ident.id }))
            .build();
            let scope = principal.scope.clone();
            async move {
                let opened = row.private_location.clone();
                store
                    .set_identification_current(
                        &scope,
                        &ident,
                        current,
                        opened.as_deref(),
                        audit,
                        &|snap| Ok(derive(snap, location.as_ref())),
                    )
                    .await
            }
        })
        .await?;
    Ok(Json(o.changed_view(&principal, &changed).await?))
}

fn metric_of(text: &str) -> Result<Metric, IdentityError> {
    Metric::parse(text).ok_or(IdentityError::NotFound)
}

#[derive(Deserialize, ToSchema)]
pub struct QualityVote {
    /// True (default): the metric holds; false: it does not (e.g. `wild` false: captive).
    pub agree: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
pub struct NeedsIdVote {
    /// True: the community can still improve the identification; false: it is as good as
    /// it will get (a research grade above species).
    pub vote: bool,
}

impl Observations {
    async fn vote(
        &self,
        principal: &Principal,
        info: &RequestInfo,
        id: &str,
        what: Vote,
    ) -> Result<ObservationView, IdentityError> {
        let id = path_id(id)?;
        self.load(&principal.scope, id).await?;
        principal.require(OBSERVATIONS_WRITE)?;
        let user = principal.require_user()?.clone();
        let store = self.identity.store().clone();
        let changed = self
            .with_location(&principal.scope, id, |row, location| {
                let store = store.clone();
                let user_id = user.id.clone();
                let audit = rampart_audit::event(
                    principal.actor(),
                    "observation.vote",
                    "observation",
                    rampart_identity::request_meta(info),
                )
                .changes(what.describe())
                .build();
                let scope = principal.scope.clone();
                async move {
                    let opened = row.private_location.clone();
                    let derive = |snap: &Snapshot| Ok(derive(snap, location.as_ref()));
                    match what {
                        Vote::Quality(metric, agree) => {
                            store
                                .vote_quality(
                                    &scope,
                                    row.id,
                                    &user_id,
                                    metric.as_str(),
                                    agree,
                                    opened.as_deref(),
                                    audit,
                                    &derive,
                                )
                                .await
                        }
                        Vote::NeedsId(up) => {
                            store
                                .vote_needs_id(
                                    &scope,
                                    row.id,
                                    &user_id,
                                    up,
                                    opened.as_deref(),
                                    audit,
                                    &derive,
                                )
                                .await
                        }
                    }
                }
            })
            .await?;
        self.changed_view(principal, &changed).await
    }
}

#[derive(Clone, Copy)]
enum Vote {
    Quality(Metric, Option<bool>),
    NeedsId(Option<bool>),
}

impl Vote {
    fn describe(self) -> serde_json::Value {
        match self {
            Vote::Quality(metric, agree) => {
                serde_json::json!({ "metric": metric.as_str(), "agree": agree })
            }
            Vote::NeedsId(up) => serde_json::json!({ "metric": "needs_id", "agree": up }),
        }
    }
}

fn metric_schema() -> utoipa::openapi::Object {
    let names: Vec<&str> = Metric::ALL.iter().map(|m| m.as_str()).collect();
    rampart_edge::string_enum_schema(&names)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MetricPath {
    /// An observation of the caller's tenant.
    #[param(minimum = 1, value_type = i64)]
    id: String,
    #[param(schema_with = metric_schema)]
    metric: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/observations/{id}/quality/{metric}",
    tag = "observations",
    security(("bearer" = [])),
    params(MetricPath),
    request_body = QualityVote,
    responses(
        (status = 200, description = "The caller's vote replaces any earlier one; the observation re-graded", body = ObservationView),
        (status = 404, description = "No such observation or metric", body = ErrorBody),
    )
)]
pub async fn vote_quality(
    State(o): State<Observations>,
    principal: Principal,
    info: RequestInfo,
    Path(p): Path<MetricPath>,
    Json(body): Json<QualityVote>,
) -> Result<Json<ObservationView>, ApiError> {
    let metric = metric_of(&p.metric)?;
    let vote = Vote::Quality(metric, Some(body.agree.unwrap_or(true)));
    Ok(Json(o.vote(&principal, &info, &p.id, vote).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/observations/{id}/quality/{metric}",
    tag = "observations",
    security(("bearer" = [])),
    params(MetricPath),
    responses(
        (status = 200, description = "The caller's vote removed; the observation re-graded", body = ObservationView),
        (status = 404, description = "No such observation or metric", body = ErrorBody),
    )
)]
pub async fn unvote_quality(
    State(o): State<Observations>,
    principal: Principal,
    info: RequestInfo,
    Path(p): Path<MetricPath>,
) -> Result<Json<ObservationView>, ApiError> {
    let metric = metric_of(&p.metric)?;
    Ok(Json(
        o.vote(&principal, &info, &p.id, Vote::Quality(metric, None))
            .await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/observations/{id}/needs_id",
    tag = "observations",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "An observation of the caller's tenant")),
    request_body = NeedsIdVote,
    responses(
        (status = 200, description = "The caller's vote replaces any earlier one; the observation re-graded", body = ObservationView),
        (status = 404, description = "No such observation in the caller's tenant", body = ErrorBody),
    )
)]
pub async fn vote_needs_id(
    State(o): State<Observations>,
    principal: Principal,
    info: RequestInfo,
    Path(id): Path<String>,
    Json(body): Json<NeedsIdVote>,
) -> Result<Json<ObservationView>, ApiError> {
    Ok(Json(
        o.vote(&principal, &info, &id, Vote::NeedsId(Some(body.vote)))
            .await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/api/v1/observations/{id}/needs_id",
    tag = "observations",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "An observation of the caller's tenant")),
    responses(
        (status = 200, description = "The caller's vote removed; the observation re-graded", body = ObservationView),
        (status = 404, description = "No such observation in the caller's tenant", body = ErrorBody),
    )
)]
pub async fn unvote_needs_id(
    State(o): State<Observations>,
    principal: Principal,
    info: RequestInfo,
    Path(id): Path<String>,
) -> Result<Json<ObservationView>, ApiError> {
    Ok(Json(
        o.vote(&principal, &info, &id, Vote::NeedsId(None)).await?,
    ))
}

// ---------------------------------------------------------------------------------------
// Taxa

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaxaQuery {
    /// A scientific or common name (English or Indonesian), or its start.
    #[param(min_length = 1, max_length = 100)]
    q: String,
    /// 1 to 100 (default 30).
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct TaxonPage {
    /// Exact names first, then name starts, then other matches.
    pub results: Vec<TaxonView>,
}

#[utoipa::path(
    get,
    path = "/api/v1/taxa",
    tag = "observations",
    security(("bearer" = [])),
    params(TaxaQuery),
    responses(
        (status = 200, description = "Matching taxa", body = TaxonPage),
        (status = 422, description = "q is empty or too long", body = ErrorBody),
    )
)]
pub async fn search_taxa(
    State(o): State<Observations>,
    principal: Principal,
    Query(q): Query<TaxaQuery>,
) -> Result<Json<TaxonPage>, ApiError> {
    principal.require(OBSERVATIONS_READ)?;
    let text = q.q.trim();
    if q.q.is_empty() || q.q.chars().count() > 100 {
        return Err(invalid("q", "must be 1 to 100 characters").into());
    }
    if text.is_empty() {
        // Only spaces: no name matches nothing.
        return Ok(Json(TaxonPage {
            results: Vec::new(),
        }));
    }
    let per_page = q.per_page.unwrap_or(30);
    if !(1..=100).contains(&per_page) {
        return Err(invalid("per_page", "must be between 1 and 100").into());
    }
    let rows = o
        .identity
        .store()
        .search_taxa(text, per_page)
        .await
        .map_err(store_error)?;
    Ok(Json(TaxonPage {
        results: rows.iter().map(TaxonView::from).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct StatusView {
    pub authority: String,
    /// The category as the authority writes it (`CR`, `EN`, …).
    pub status: String,
    /// NE 0, DD 5, LC 10, NT 20, VU 30, EN 40, CR 50, EW 60, EX 70.
    pub iucn: i64,
    /// What the status imposes on observations of the taxon and below.
    pub geoprivacy: String,
}

#[derive(Serialize, ToSchema)]
pub struct TaxonDetail {
    #[serde(flatten)]
    pub taxon: TaxonView,
    /// Root first.
    pub ancestors: Vec<TaxonView>,
    pub conservation_statuses: Vec<StatusView>,
}

#[utoipa::path(
    get,
    path = "/api/v1/taxa/{id}",
    tag = "observations",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "A taxon")),
    responses(
        (status = 200, description = "The taxon with its ancestors and statuses", body = TaxonDetail),
        (status = 404, description = "No such taxon", body = ErrorBody),
    )
)]
pub async fn get_taxon(
    State(o): State<Observations>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<TaxonDetail>, ApiError> {
    principal.require(OBSERVATIONS_READ)?;
    let id = path_id(&id)?;
    let (lineage, statuses) = o
        .identity
        .store()
        .taxon_with_lineage(id)
        .await
        .map_err(store_error)?;
    let taxon = lineage
        .iter()
        .find(|t| t.id == id)
        .ok_or(IdentityError::NotFound)?;
    Ok(Json(TaxonDetail {
        taxon: TaxonView::from(taxon),
        ancestors: lineage
            .iter()
            .filter(|t| t.id != id)
            .map(TaxonView::from)
            .collect(),
        conservation_statuses: statuses
            .into_iter()
            .map(|s| StatusView {
                authority: s.authority,
                status: s.status,
                iucn: s.iucn,
                geoprivacy: s.geoprivacy,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-12-04 03:00 UTC)
    }

    #[test]
    fn observed_on_takes_a_day_or_a_time_with_its_offset() {
        let (d, t, o) = parse_observed_on("2026-11-30", now()).unwrap();
        assert_eq!((d.as_str(), t, o), ("2026-11-30", None, None));
        let (d, t, o) = parse_observed_on("2026-12-04T07:15:00+07:00", now()).unwrap();
        assert_eq!(d, "2026-12-04");
        assert_eq!(o, Some(420));
        assert_eq!(t, Some(1_796_343_300_000));
        // Tomorrow has begun in UTC+14 at 03:00 UTC? No: 17:00 there, still the 4th.
        assert!(parse_observed_on("2026-12-05", now()).is_err());
        assert!(parse_observed_on("2026-12-04", now()).is_ok());
        assert!(parse_observed_on("2026-12-04T12:00:00+07:00", now()).is_err());
        assert!(parse_observed_on("1896-12-04", now()).is_ok());
        assert!(parse_observed_on("1896-12-03", now()).is_err());
        assert!(parse_observed_on("2004", now()).is_err());
        assert!(parse_observed_on("last week", now()).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let field_of = |input: ObservationInput| match validate(input, now()) {
            Err(IdentityError::Invalid { field, .. }) => field,
            Err(other) => panic!("{other}"),
            Ok(_) => "ok",
        };
        let at = |lat, lon| ObservationInput {
            latitude: Some(lat),
            longitude: Some(lon),
            ..Default::default()
        };
        assert_eq!(field_of(at(-6.2, 106.8)), "ok");
        assert_eq!(field_of(at(0.0, 0.0)), "latitude");
        assert_eq!(field_of(at(90.0, 10.0)), "latitude");
        assert_eq!(field_of(at(-90.0, 10.0)), "latitude");
        assert_eq!(field_of(at(10.0, 180.5)), "longitude");
        assert_eq!(field_of(at(10.0, -180.0)), "ok");
        assert_eq!(
            field_of(ObservationInput {
                latitude: Some(1.0),
                ..Default::default()
            }),
            "longitude"
        );
        assert_eq!(
            field_of(ObservationInput {
                license: Some("GPL".into()),
                ..Default::default()
            }),
            "license"
        );
        assert_eq!(
            field_of(ObservationInput {
                species_guess: Some("x".repeat(257)),
                ..Default::default()
            }),
            "species_guess"
        );
        assert_eq!(
            field_of(ObservationInput {
                tags: Some(vec!["a".repeat(400), "b".repeat(400)]),
                ..Default::default()
            }),
            "tags"
        );
        assert_eq!(
            field_of(ObservationInput {
                geoprivacy: Some("hidden".into()),
                ..Default::default()
            }),
            "geoprivacy"
        );
        let valid = validate(
            ObservationInput {
                positional_accuracy: Some(0.0),
                ..Default::default()
            },
            now(),
        )
        .unwrap();
        assert_eq!(valid.positional_accuracy, None, "0 is unknown");
        assert_eq!(valid.license, DEFAULT_LICENSE);
    }
}
