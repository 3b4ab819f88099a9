//! Photo routes: `POST /api/v1/observations/{id}/photos` (multipart) and
//! `GET /api/v1/observations/{id}/photos/{photo_id}/{size}`.
//!
//! The seed's upload flow in order: the caller is authenticated and must be the observer,
//! the bytes are checked ([`crate::photos`]) and processed on a blocking thread behind a
//! semaphore, every size is sealed under the tenant's key and stored in the object store,
//! then the row, the re-grade and the audit event commit together. A file stored for an
//! upload that then fails is deleted again; one left by a crash in between is unreferenced
//! and harmless (sealed, named by a uuid no row has).

use std::collections::BTreeMap;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rampart_crypto::envelope::Context;
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_identity::{IdentityError, Principal};
use rampart_store::observations::{NewPhoto, PhotoRow, Snapshot};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::api::{
    derive, invalid, keyring_error, ms_rfc3339, parse_uuid, path_id, store_error, ObservationView,
    Observations, OBSERVATIONS_READ, OBSERVATIONS_WRITE,
};
use crate::photos::{self, PhotoError, Prefill, SIZES};

#[derive(Serialize, ToSchema, Debug, Clone)]
pub struct PhotoView {
    pub id: i64,
    pub uuid: String,
    pub position: i64,
    pub license: Option<String>,
    /// The upright upload's size in pixels.
    pub width: i64,
    pub height: i64,
    /// Size name (`original` 2048, `large` 1024, `medium` 500, `small` 240, `thumb` 100,
    /// `square` 75 × 75) → its path; every one is a JPEG without EXIF.
    pub urls: BTreeMap<String, String>,
    pub created_at: String,
}

impl From<&PhotoRow> for PhotoView {
    fn from(p: &PhotoRow) -> PhotoView {
        PhotoView {
            id: p.id,
            uuid: p.uuid.clone(),
            position: p.position,
            license: p.license.clone(),
            width: p.width,
            height: p.height,
            urls: SIZES
                .iter()
                .map(|(name, _)| {
                    (
                        (*name).to_string(),
                        format!(
                            "/api/v1/observations/{}/photos/{}/{name}",
                            p.observation_id, p.id
                        ),
                    )
                })
                .collect(),
            created_at: ms_rfc3339(p.created_at),
        }
    }
}

/// The multipart form (iNaturalist's `observation_photo[uuid]` is read too).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PhotoUpload {
    /// JPEG, PNG or WebP; at most `observations.max_photo_bytes`.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// The client's id for this photo: repeating an upload with it returns the photo.
    #[schema(format = Uuid)]
    uuid: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PhotoUploaded {
    pub photo: PhotoView,
    pub observation: ObservationView,
    /// Where and when the photo's EXIF says it was taken, for the observer to apply to the
    /// observation; kept sealed, never shown to anyone else, never in a served file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefill: Option<Prefill>,
}

fn photo_key(tenant: &str, uuid: &str, size: &str) -> String {
    format!("photos/{tenant}/{uuid}/{size}.jpg")
}

fn photo_context(tenant: &str, uuid: &str, size: &str) -> Context {
    Context::new(tenant, "observation_photos", size, uuid)
}

fn prefill_context(tenant: &str, uuid: &str) -> Context {
    Context::new(tenant, "observation_photos", "prefill", uuid)
}

fn photo_error(e: PhotoError) -> ApiError {
    match e {
        PhotoError::Unsupported(m) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            m,
        ),
        PhotoError::TooLarge(m) => invalid("file", m).into(),
        PhotoError::Corrupt(m) => invalid("file", m).into(),
    }
}

fn multipart_error(e: impl std::fmt::Display, status: StatusCode) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the photo is larger than this server takes (observations.max_photo_bytes)",
        )
    } else {
        ApiError::bad_request("bad_body", format!("the multipart body is malformed: {e}"))
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/observations/{id}/photos",
    tag = "observations",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "One of the caller's observations")),
    request_body(content = PhotoUpload, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored in every size, sealed; the observation re-graded", body = PhotoUploaded),
        (status = 200, description = "This uuid's photo, uploaded before (a retry)", body = PhotoUploaded),
        (status = 400, description = "The multipart body is malformed", body = ErrorBody),
        (status = 403, description = "Only the observer adds photos, in a community tenant", body = ErrorBody),
        (status = 404, description = "No such observation in the caller's tenant", body = ErrorBody),
        (status = 409, description = "Another observation's photo has this uuid", body = ErrorBody),
        (status = 413, description = "Larger than observations.max_photo_bytes", body = ErrorBody),
        (status = 415, description = "Not JPEG, PNG or WebP (HEIC included)", body = ErrorBody),
        (status = 422, description = "No file, an unreadable image, or more than 12,000 px a side or 50 megapixels", body = ErrorBody),
    )
)]
pub async fn upload_photo(
    State(o): State<Observations>,
    principal: Principal,
    info: RequestInfo,
    Path(id): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<PhotoUploaded>), ApiError> {
    // The resource first: another tenant's observation is 404 whatever the caller may do.
    let (row, _) = o.load(&principal.scope, path_id(&id)?).await?;
    principal.require(OBSERVATIONS_WRITE)?;
    let user = principal.require_user()?.clone();
    o.require_community(&principal.scope).await?;
    if row.user_id != user.id {
        return Err(IdentityError::Forbidden("only the observer adds photos").into());
    }
    let mut multipart = multipart.map_err(|e| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send the photo as multipart/form-data: {e}"),
        )
    })?;
    let (mut file, mut uuid) = (None, None);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(&e, e.status())),
        };
        match field.name().unwrap_or_default() {
            "file" | "observation_photo[file]" => {
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| multipart_error(&e, e.status()))?;
                if bytes.len() > o.max_photo_bytes() {
                    return Err(multipart_error("", StatusCode::PAYLOAD_TOO_LARGE));
                }
                file = Some(bytes);
            }
            "uuid" | "observation_photo[uuid]" => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| multipart_error(&e, e.status()))?;
                uuid = Some(parse_uuid(&text)?);
            }
            // Other fields (iNaturalist's observation_photo[observation_id], position)
            // are the path's business here: ignored.
            _ => {}
        }
    }
    let file = file.ok_or_else(|| invalid("file", "is required: the photo itself"))?;
    let uuid = uuid.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let store = o.identity().store().clone();

    // A retry after a lost reply gets the photo it made.
    if let Some(existing) = store
        .photo_by_uuid(&principal.scope, &uuid)
        .await
        .map_err(store_error)?
    {
        if existing.observation_id != row.id {
            return Err(IdentityError::Conflict(
                "uuid_taken",
                "another photo has this uuid; make a new one for a new photo",
            )
            .into());
        }
        let (row, idents) = o.load(&principal.scope, row.id).await?;
        let observation = o.view_of(&principal, &row, &idents).await?;
        return Ok((
            StatusCode::OK,
            Json(PhotoUploaded {
                photo: PhotoView::from(&existing),
                observation,
                prefill: None,
            }),
        ));
    }
    if store.photo_uuid_taken(&uuid).await.map_err(store_error)? {
        return Err(IdentityError::Conflict(
            "uuid_taken",
            "another photo has this uuid; make a new one for a new photo",
        )
        .into());
    }

    // The header is checked before any work is queued: a bomb never takes a worker.
    photos::inspect(&file).map_err(photo_error)?;
    let processed = {
        let _permit = o
            .photo_gate()
            .acquire()
            .await
            .map_err(|_| IdentityError::Task("the photo workers are gone".into()))?;
        let bytes = file.clone();
        tokio::task::spawn_blocking(move || photos::process(&bytes))
            .await
            .map_err(|e| IdentityError::Task(format!("photo processing: {e}")))?
            .map_err(photo_error)?
    };

    let tenant = principal.scope.tenant_id().to_string();
    let key_name = format!("obs-{tenant}");
    let mut stored = Vec::with_capacity(processed.sizes.len());
    for (size, bytes) in &processed.sizes {
        let key = photo_key(&tenant, &uuid, size);
        let put = o
            .objects()
            .put_sealed(
                o.keyring(),
                &key_name,
                &photo_context(&tenant, &uuid, size),
                &key,
                bytes,
            )
            .await;
        if let Err(e) = put {
            remove_objects(&o, &stored).await;
            return Err(IdentityError::Keys(format!("storing a photo: {e}")).into());
        }
        stored.push(key);
    }
    let prefill = if processed.prefill.is_empty() {
        None
    } else {
        let json = serde_json::to_vec(&processed.prefill)
            .map_err(|e| IdentityError::Keys(format!("prefill: {e}")))?;
        Some(
            o.keyring()
                .seal(&key_name, &prefill_context(&tenant, &uuid), &json)
                .await
                .map_err(keyring_error)?,
        )
    };
    let new = NewPhoto {
        uuid: uuid.clone(),
        user_id: user.id.clone(),
        license: row.license.clone(),
        format: processed.format.to_string(),
        width: i64::from(processed.width),
        height: i64::from(processed.height),
        sha256: hex(&Sha256::digest(&file)),
        prefill,
    };
    let result = o.with_location_photo(&principal, &info, row.id, &new).await;
    let (changed, photo) = match result {
        Ok(done) => done,
        Err(e) => {
            // A concurrent retry with the same uuid may have won: its row names the same
            // files (same keys, same content), so they stay and its photo is the answer.
            if let Ok(Some(existing)) = store.photo_by_uuid(&principal.scope, &uuid).await {
                if existing.observation_id == row.id {
                    let (row, idents) = o.load(&principal.scope, row.id).await?;
                    let observation = o.view_of(&principal, &row, &idents).await?;
                    return Ok((
                        StatusCode::OK,
                        Json(PhotoUploaded {
                            photo: PhotoView::from(&existing),
                            observation,
                            prefill: None,
                        }),
                    ));
                }
            }
            remove_objects(&o, &stored).await;
            return Err(e.into());
        }
    };
    let observation = o.changed_view(&principal, &changed).await?;
    Ok((
        StatusCode::CREATED,
        Json(PhotoUploaded {
            photo: PhotoView::from(&photo),
            observation,
            prefill: (!processed.prefill.is_empty()).then_some(processed.prefill),
        }),
    ))
}

async fn remove_objects(o: &Observations, keys: &[String]) {
    for key in keys {
        if let Err(e) = o.objects().delete(key).await {
            tracing::warn!(error = %e, "could not delete the file of a failed photo upload");
        }
    }
}

/// Deletes the stored files of `photos` (after their observation is deleted); failures
/// are logged: the files are sealed and no row names them any more.
pub(crate) async fn remove_photo_files(o: &Observations, tenant: &str, photos: &[PhotoRow]) {
    let keys: Vec<String> = photos
        .iter()
        .flat_map(|p| {
            SIZES
                .iter()
                .map(|(size, _)| photo_key(tenant, &p.uuid, size))
        })
        .collect();
    remove_objects(o, &keys).await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Observations {
    async fn with_location_photo(
        &self,
        principal: &Principal,
        info: &RequestInfo,
        observation_id: i64,
        new: &NewPhoto,
    ) -> Result<(rampart_store::observations::Changed, PhotoRow), IdentityError> {
        let store = self.identity().store().clone();
        let photo: std::sync::Mutex<Option<PhotoRow>> = std::sync::Mutex::new(None);
        let changed = self
            .with_location(&principal.scope, observation_id, |row, location| {
                let store = store.clone();
                let new = new.clone();
                let scope = principal.scope.clone();
                let audit = rampart_audit::event(
                    principal.actor(),
                    "observation.photo.add",
                    "observation",
                    rampart_identity::request_meta(info),
                )
                .changes(serde_json::json!({ "photo_uuid": new.uuid, "sha256": new.sha256 }))
                .build();
                let photo = &photo;
                async move {
                    let opened = row.private_location.clone();
                    let (changed, row) = store
                        .add_photo(
                            &scope,
                            row.id,
                            &new,
                            opened.as_deref(),
                            audit,
                            &|snap: &Snapshot| Ok(derive(snap, location.as_ref())),
                        )
                        .await?;
                    *photo.lock().unwrap_or_else(|p| p.into_inner()) = Some(row);
                    Ok(changed)
                }
            })
            .await?;
        let photo = photo
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .ok_or_else(|| IdentityError::Task("the photo row was not returned".into()))?;
        Ok((changed, photo))
    }
}

fn size_schema() -> utoipa::openapi::Object {
    let names: Vec<&str> = SIZES.iter().map(|(n, _)| *n).collect();
    rampart_edge::string_enum_schema(&names)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PhotoPath {
    /// An observation of the caller's tenant.
    #[param(minimum = 1, value_type = i64)]
    id: String,
    #[param(minimum = 1, value_type = i64)]
    photo_id: String,
    #[param(schema_with = size_schema)]
    size: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/observations/{id}/photos/{photo_id}/{size}",
    tag = "observations",
    security(("bearer" = [])),
    params(PhotoPath),
    responses(
        (status = 200, description = "The JPEG (no EXIF); seen by whoever may see the observation", content_type = "image/jpeg", body = Vec<u8>),
        (status = 304, description = "Unchanged (If-None-Match)"),
        (status = 404, description = "No such observation, photo or size", body = ErrorBody),
    )
)]
pub async fn get_photo(
    State(o): State<Observations>,
    principal: Principal,
    Path(p): Path<PhotoPath>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let observation_id = path_id(&p.id)?;
    let photo_id = path_id(&p.photo_id)?;
    let Some(&(size, _)) = SIZES.iter().find(|(n, _)| *n == p.size) else {
        return Err(IdentityError::NotFound.into());
    };
    let (row, _) = o.load(&principal.scope, observation_id).await?;
    principal.require(OBSERVATIONS_READ)?;
    let photos = o
        .identity()
        .store()
        .photos_of(&principal.scope, row.id)
        .await
        .map_err(store_error)?;
    let photo = photos
        .iter()
        .find(|ph| ph.id == photo_id)
        .ok_or(IdentityError::NotFound)?;
    // Stored sizes never change: the uuid and size name are the version.
    let etag = format!("\"{}-{size}\"", photo.uuid);
    let cache = HeaderValue::from_static("private, max-age=31536000, immutable");
    let etag_value = HeaderValue::from_str(&etag).map_err(|_| IdentityError::NotFound)?;
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag_value), (header::CACHE_CONTROL, cache)],
        )
            .into_response());
    }
    let tenant = principal.scope.tenant_id();
    let bytes = o
        .objects()
        .get_sealed(
            o.keyring(),
            &photo_context(tenant, &photo.uuid, size),
            &photo_key(tenant, &photo.uuid, size),
        )
        .await
        .map_err(|e| IdentityError::Keys(format!("reading a photo: {e}")))?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (header::ETAG, etag_value),
            (header::CACHE_CONTROL, cache),
        ],
        bytes,
    )
        .into_response())
}
