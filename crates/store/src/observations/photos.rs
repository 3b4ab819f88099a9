//! Photos of observations: the rows (the files are sealed objects the caller stored
//! first). Adding one counts it on the observation and re-grades it in the same
//! transaction: a photo is the evidence that can make an observation research grade.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{begin_change, finish, recompute, touch, Changed, Derived, Snapshot};
use crate::{now_ms, NewAuditEvent, Store, StoreError, TenantScope};

#[derive(Debug, Clone, PartialEq)]
pub struct PhotoRow {
    pub id: i64,
    pub uuid: String,
    pub observation_id: i64,
    pub user_id: String,
    pub position: i64,
    pub license: Option<String>,
    /// The upload's format (`jpeg`, `png`, `webp`); every stored size is JPEG.
    pub format: String,
    pub width: i64,
    pub height: i64,
    /// SHA-256 of the uploaded bytes.
    pub sha256: String,
    /// Sealed by the caller: the EXIF prefill.
    pub prefill: Option<Vec<u8>>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewPhoto {
    pub uuid: String,
    pub user_id: String,
    pub license: Option<String>,
    pub format: String,
    pub width: i64,
    pub height: i64,
    pub sha256: String,
    pub prefill: Option<Vec<u8>>,
}

const PHOTO_COLUMNS: &str = "id, uuid, observation_id, user_id, position, license, format, \
    width, height, sha256, prefill, created_at";

fn photo_row(r: &AnyRow) -> Result<PhotoRow, StoreError> {
    Ok(PhotoRow {
        id: r.try_get("id")?,
        uuid: r.try_get("uuid")?,
        observation_id: r.try_get("observation_id")?,
        user_id: r.try_get("user_id")?,
        position: r.try_get("position")?,
        license: r.try_get("license")?,
        format: r.try_get("format")?,
        width: r.try_get("width")?,
        height: r.try_get("height")?,
        sha256: r.try_get("sha256")?,
        prefill: r.try_get("prefill")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    /// The photo with this client uuid in the caller's tenant, if any.
    pub async fn photo_by_uuid(
        &self,
        scope: &TenantScope,
        uuid: &str,
    ) -> Result<Option<PhotoRow>, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let row = sqlx::query(&format!(
            "SELECT {PHOTO_COLUMNS} FROM observation_photos WHERE tenant_id = $1 AND uuid = $2"
        ))
        .bind(scope.tenant_id())
        .bind(uuid)
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        row.as_ref().map(photo_row).transpose()
    }

    /// Whether any tenant holds a photo with this uuid (uuids are global).
    pub async fn photo_uuid_taken(&self, uuid: &str) -> Result<bool, StoreError> {
        let mut tx = self.system_read().await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM observation_photos WHERE uuid = $1")
            .bind(uuid)
            .fetch_one(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    /// An observation's photos in their order.
    pub async fn photos_of(
        &self,
        scope: &TenantScope,
        observation_id: i64,
    ) -> Result<Vec<PhotoRow>, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let rows = sqlx::query(&format!(
            "SELECT {PHOTO_COLUMNS} FROM observation_photos WHERE tenant_id = $1 \
             AND observation_id = $2 ORDER BY position, id"
        ))
        .bind(scope.tenant_id())
        .bind(observation_id)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(photo_row).collect()
    }

    /// Records a photo whose files are stored, as the observation's last, and re-grades
    /// the observation.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_photo(
        &self,
        scope: &TenantScope,
        observation_id: i64,
        new: &NewPhoto,
        opened: Option<&[u8]>,
        audit: NewAuditEvent,
        derive: &(dyn Fn(&Snapshot) -> Result<Derived, StoreError> + Send + Sync),
    ) -> Result<(Changed, PhotoRow), StoreError> {
        let now = now_ms();
        let (mut tx, row) = begin_change(self, scope, observation_id, opened).await?;
        let tenant = row.tenant_id.clone();
        let position: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(position), 0) + 1 AS BIGINT) FROM observation_photos \
             WHERE observation_id = $1",
        )
        .bind(observation_id)
        .fetch_one(tx.conn())
        .await?;
        sqlx::query(
            "INSERT INTO observation_photos (tenant_id, uuid, observation_id, user_id, position, \
             license, format, width, height, sha256, prefill, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&tenant)
        .bind(&new.uuid)
        .bind(observation_id)
        .bind(&new.user_id)
        .bind(position)
        .bind(&new.license)
        .bind(&new.format)
        .bind(new.width)
        .bind(new.height)
        .bind(&new.sha256)
        .bind(new.prefill.clone())
        .bind(now)
        .execute(tx.conn())
        .await?;
        sqlx::query("UPDATE observations SET photos_count = photos_count + 1 WHERE id = $1")
            .bind(observation_id)
            .execute(tx.conn())
            .await?;
        touch(&mut tx, observation_id, now).await?;
        recompute(&mut tx, observation_id, derive).await?;
        let photo = sqlx::query(&format!(
            "SELECT {PHOTO_COLUMNS} FROM observation_photos WHERE uuid = $1"
        ))
        .bind(&new.uuid)
        .fetch_one(tx.conn())
        .await?;
        let photo = photo_row(&photo)?;
        let changed = finish(tx, observation_id, audit, true).await?;
        Ok((changed, photo))
    }
}
