//! Records of processed images. The pixels, when kept, are in the blob store (encrypted);
//! the record holds the owner, the key that sent it, size, format, the detection result and
//! `expires_at`, which the purge job honours.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::clock::Millis;
use crate::db::Db;

/// Whose image it is, which decides the retention cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Production,
    Demo,
}

impl ImageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Production => "production",
            ImageKind::Demo => "demo",
        }
    }
}

/// A stored image record.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub id: String,
    pub customer_id: Option<String>,
    pub key_id: Option<String>,
    pub kind: String,
    pub format: String,
    pub width: i64,
    pub height: i64,
    /// Size of the sanitised copy (what is sealed and stored when the image is kept).
    pub byte_size: i64,
    /// Where the sealed pixels are; `None` when the image was not kept.
    pub blob_key: Option<String>,
    /// The detection result as JSON.
    pub result: String,
    pub created_at: Millis,
    /// When the record (and blob) must be gone.
    pub expires_at: Millis,
    /// When the pixels will be deleted; `None` when they were never stored.
    pub retained_until: Option<Millis>,
}

impl ImageRecord {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            customer_id: row.try_get("customer_id")?,
            key_id: row.try_get("key_id")?,
            kind: row.try_get("kind")?,
            format: row.try_get("format")?,
            width: i64::from(row.try_get::<i32, _>("width")?),
            height: i64::from(row.try_get::<i32, _>("height")?),
            byte_size: row.try_get("byte_size")?,
            blob_key: row.try_get("blob_key")?,
            result: row.try_get("result")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            retained_until: row.try_get("retained_until")?,
        })
    }
}

pub async fn insert(conn: &mut AnyConnection, image: &ImageRecord) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO images (id, customer_id, key_id, kind, format, width, height, byte_size, \
         blob_key, result, created_at, expires_at, retained_until) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&image.id)
    .bind(&image.customer_id)
    .bind(&image.key_id)
    .bind(&image.kind)
    .bind(&image.format)
    .bind(i32::try_from(image.width).unwrap_or(i32::MAX))
    .bind(i32::try_from(image.height).unwrap_or(i32::MAX))
    .bind(image.byte_size)
    .bind(&image.blob_key)
    .bind(&image.result)
    .bind(image.created_at)
    .bind(image.expires_at)
    .bind(image.retained_until)
    .execute(conn)
    .await
    .map(|_| ())
}

const COLUMNS: &str = "id, customer_id, key_id, kind, format, width, height, byte_size, blob_key, \
     result, created_at, expires_at, retained_until";

/// The image if it belongs to `customer_id` (anything else is "not found").
pub async fn find_for_customer(
    db: &Db,
    id: &str,
    customer_id: &str,
) -> Result<Option<ImageRecord>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM images WHERE id = $1 AND customer_id = $2");
    let row = sqlx::query(&sql)
        .bind(id)
        .bind(customer_id)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(ImageRecord::from_row).transpose()
}

/// Any image by id (operators and tests).
pub async fn find(db: &Db, id: &str) -> Result<Option<ImageRecord>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM images WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&db.pool).await?;
    row.as_ref().map(ImageRecord::from_row).transpose()
}

/// What the images of one kind hold in storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredUsage {
    /// Sum of the stored copies' sizes, in bytes.
    pub bytes: i64,
    /// Images whose copy is stored.
    pub images: i64,
}

/// Storage held by images of `kind`: every record that still has a blob, expired or not,
/// because the space comes back only when the retention purge deletes the blob.
///
/// `byte_size` is the size of the copy that was sealed; the seal adds a fixed few dozen bytes
/// per blob (header, nonce, tag), which this figure leaves out.
pub async fn stored_usage(db: &Db, kind: ImageKind) -> Result<StoredUsage, sqlx::Error> {
    // PostgreSQL's SUM of a BIGINT is NUMERIC; the cast keeps it an integer on both backends.
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(byte_size), 0) AS BIGINT) AS bytes, COUNT(*) AS images \
         FROM images WHERE kind = $1 AND blob_key IS NOT NULL",
    )
    .bind(kind.as_str())
    .fetch_one(&db.pool)
    .await?;
    Ok(StoredUsage {
        bytes: row.try_get("bytes")?,
        images: row.try_get("images")?,
    })
}

/// Deletes many records in a few statements; returns the ids that were there (the purge's
/// batches: one statement per image made the record side the purge's bottleneck).
pub async fn delete_many(
    conn: &mut AnyConnection,
    ids: &[String],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    let mut deleted = std::collections::HashSet::with_capacity(ids.len());
    // 500 per statement: SQLite slows down sharply with thousands of parameters.
    for chunk in ids.chunks(500) {
        let sql = format!(
            "DELETE FROM images WHERE id IN ({}) RETURNING id",
            crate::db::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            deleted.insert(row.try_get::<String, _>("id")?);
        }
    }
    Ok(deleted)
}

pub async fn delete(conn: &mut AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM images WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}
