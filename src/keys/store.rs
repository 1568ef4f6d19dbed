//! SQL for API keys and their usage counters. Only the HMAC of a key is stored, with the
//! pepper's id and a short display prefix.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use crate::clock::Millis;
use crate::db::Db;

/// A stored key with its customer's name.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: String,
    pub customer_id: String,
    pub customer_name: String,
    pub name: String,
    pub prefix: String,
    pub scopes: String,
    pub created_at: Millis,
    pub created_by: String,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
    pub replaced_by: Option<String>,
    pub last_used_at: Option<Millis>,
    pub request_count: i64,
}

const SELECT: &str = "SELECT k.id, k.customer_id, c.name AS customer_name, k.name, k.prefix, \
     k.scopes, k.created_at, k.created_by, k.expires_at, k.revoked_at, k.replaced_by, \
     k.last_used_at, k.request_count FROM api_keys k JOIN customers c ON c.id = k.customer_id";

impl KeyRecord {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            customer_id: row.try_get("customer_id")?,
            customer_name: row.try_get("customer_name")?,
            name: row.try_get("name")?,
            prefix: row.try_get("prefix")?,
            scopes: row.try_get("scopes")?,
            created_at: row.try_get("created_at")?,
            created_by: row.try_get("created_by")?,
            expires_at: row.try_get("expires_at")?,
            revoked_at: row.try_get("revoked_at")?,
            replaced_by: row.try_get("replaced_by")?,
            last_used_at: row.try_get("last_used_at")?,
            request_count: row.try_get("request_count")?,
        })
    }
}

/// What a key is allowed, and for whom, as read at verification time.
#[derive(Debug, Clone)]
pub struct KeyGrant {
    pub id: String,
    pub customer_id: String,
    pub prefix: String,
    pub scopes: String,
    pub expires_at: Option<Millis>,
    pub revoked: bool,
    pub customer_active: bool,
    pub retention_days: i64,
    pub expiry_audited: bool,
}

/// Fields of a new key.
pub struct NewKey<'a> {
    pub customer_id: &'a str,
    pub name: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a str,
    pub pepper_id: &'a str,
    pub scopes: &'a str,
    pub created_by: &'a str,
    pub expires_at: Option<Millis>,
}

pub async fn insert(
    conn: &mut AnyConnection,
    key: &NewKey<'_>,
    now: Millis,
) -> Result<String, sqlx::Error> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO api_keys (id, customer_id, name, prefix, key_hash, pepper_id, scopes, \
         created_at, created_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&id)
    .bind(key.customer_id)
    .bind(key.name)
    .bind(key.prefix)
    .bind(key.key_hash)
    .bind(key.pepper_id)
    .bind(key.scopes)
    .bind(now)
    .bind(key.created_by)
    .bind(key.expires_at)
    .execute(conn)
    .await?;
    Ok(id)
}

pub async fn find<'c, E: Executor<'c, Database = Any>>(
    executor: E,
    id: &str,
) -> Result<Option<KeyRecord>, sqlx::Error> {
    let sql = format!("{SELECT} WHERE k.id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(executor).await?;
    row.as_ref().map(KeyRecord::from_row).transpose()
}

/// Keys whose display prefix starts with `prefix` (the CLI identifies keys this way).
pub async fn find_by_prefix(db: &Db, prefix: &str) -> Result<Vec<KeyRecord>, sqlx::Error> {
    let sql = format!("{SELECT} WHERE k.prefix = $1 ORDER BY k.created_at");
    let rows = sqlx::query(&sql).bind(prefix).fetch_all(&db.pool).await?;
    rows.iter().map(KeyRecord::from_row).collect()
}

/// Looks a key up by its HMAC.
pub async fn grant_by_hash(db: &Db, key_hash: &str) -> Result<Option<KeyGrant>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT k.id, k.customer_id, k.prefix, k.scopes, k.expires_at, k.revoked_at, \
         k.expiry_audited, c.state, c.retention_days \
         FROM api_keys k JOIN customers c ON c.id = k.customer_id WHERE k.key_hash = $1",
    )
    .bind(key_hash)
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(KeyGrant {
        id: row.try_get("id")?,
        customer_id: row.try_get("customer_id")?,
        prefix: row.try_get("prefix")?,
        scopes: row.try_get("scopes")?,
        expires_at: row.try_get("expires_at")?,
        revoked: row.try_get::<Option<Millis>, _>("revoked_at")?.is_some(),
        customer_active: row.try_get::<String, _>("state")? == "active",
        retention_days: i64::from(row.try_get::<i32, _>("retention_days")?),
        expiry_audited: row.try_get::<i32, _>("expiry_audited")? != 0,
    }))
}

/// Revokes a key now; false if it was already revoked.
pub async fn revoke(
    conn: &mut AnyConnection,
    id: &str,
    by: &str,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(by)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends a rotated key's life at `expires_at` (never later than an expiry it already had).
pub async fn retire(
    conn: &mut AnyConnection,
    id: &str,
    expires_at: Millis,
    replaced_by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api_keys SET replaced_by = $1, \
         expires_at = CASE WHEN expires_at IS NOT NULL AND expires_at < $2 THEN expires_at ELSE $2 END \
         WHERE id = $3",
    )
    .bind(replaced_by)
    .bind(expires_at)
    .bind(id)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Marks the expiry of a key as audited; true only for the first caller.
pub async fn mark_expiry_audited(conn: &mut AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE api_keys SET expiry_audited = 1 WHERE id = $1 AND expiry_audited = 0")
            .bind(id)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Filters for the key inventory; empty means any.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub customer_id: String,
    /// `active`, `expired`, `revoked` or empty.
    pub state: String,
    pub offset: i64,
    pub limit: i64,
}

pub async fn list(
    db: &Db,
    filter: &KeyFilter,
    now: Millis,
) -> Result<(Vec<KeyRecord>, i64), sqlx::Error> {
    let condition = "($1 = '' OR k.customer_id = $1) AND ($2 = '' \
         OR ($2 = 'revoked' AND k.revoked_at IS NOT NULL) \
         OR ($2 = 'expired' AND k.revoked_at IS NULL AND k.expires_at IS NOT NULL AND k.expires_at <= $3) \
         OR ($2 = 'active' AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $3)))";
    let total: i64 = sqlx::query(&format!(
        "SELECT COUNT(*) AS n FROM api_keys k WHERE {condition}"
    ))
    .bind(&filter.customer_id)
    .bind(&filter.state)
    .bind(now)
    .fetch_one(&db.pool)
    .await?
    .try_get("n")?;
    let rows = sqlx::query(&format!(
        "{SELECT} WHERE {condition} ORDER BY k.created_at DESC LIMIT $4 OFFSET $5"
    ))
    .bind(&filter.customer_id)
    .bind(&filter.state)
    .bind(now)
    .bind(filter.limit)
    .bind(filter.offset)
    .fetch_all(&db.pool)
    .await?;
    let keys = rows
        .iter()
        .map(KeyRecord::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((keys, total))
}

/// Replaces the scopes of an unrevoked key if they still are `from`; false otherwise.
pub async fn set_scopes(
    conn: &mut AnyConnection,
    id: &str,
    from: &str,
    to: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE api_keys SET scopes = $1 WHERE id = $2 AND scopes = $3 AND revoked_at IS NULL",
    )
    .bind(to)
    .bind(id)
    .bind(from)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
