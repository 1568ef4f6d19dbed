//! SQL for what is recorded against a vendor: assessments, their conditions, and DPAs.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::model::{Outcome, RiskTier};
use crate::clock::Millis;

/// A stored assessment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Assessment {
    pub id: String,
    pub vendor_id: String,
    pub sequence: i64,
    pub reviewer: String,
    pub assessed_at: Millis,
    pub result: Outcome,
    pub score: f64,
    /// JSON: `[{question, weight, answer, evidence}]`.
    pub answers: serde_json::Value,
    pub notes: String,
    pub risk_tier: RiskTier,
    pub next_due_at: Option<Millis>,
    pub clock_name: Option<String>,
    pub created_at: Millis,
}

impl Assessment {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let bad =
            |what: &str, e: String| sqlx::Error::Decode(format!("assessment {what}: {e}").into());
        let result: String = row.try_get("result")?;
        let tier: String = row.try_get("risk_tier")?;
        let answers: String = row.try_get("answers")?;
        Ok(Self {
            id: row.try_get("id")?,
            vendor_id: row.try_get("vendor_id")?,
            sequence: i64::from(row.try_get::<i32, _>("sequence")?),
            reviewer: row.try_get("reviewer")?,
            assessed_at: row.try_get("assessed_at")?,
            result: Outcome::parse(&result).map_err(|e| bad("result", e))?,
            score: row.try_get("score")?,
            answers: serde_json::from_str(&answers).map_err(|e| bad("answers", e.to_string()))?,
            notes: row.try_get("notes")?,
            risk_tier: RiskTier::parse(&tier).map_err(|e| bad("tier", e))?,
            next_due_at: row.try_get("next_due_at")?,
            clock_name: row.try_get("clock_name")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

pub async fn insert_assessment(
    conn: &mut AnyConnection,
    a: &Assessment,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO vendor_assessments (id, vendor_id, sequence, reviewer, assessed_at, result, \
           score, answers, notes, risk_tier, next_due_at, clock_name, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&a.id)
    .bind(&a.vendor_id)
    .bind(i32::try_from(a.sequence).unwrap_or(i32::MAX))
    .bind(&a.reviewer)
    .bind(a.assessed_at)
    .bind(a.result.as_str())
    .bind(a.score)
    .bind(a.answers.to_string())
    .bind(&a.notes)
    .bind(a.risk_tier.as_str())
    .bind(a.next_due_at)
    .bind(&a.clock_name)
    .bind(a.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Assessments of a vendor, newest first.
pub async fn assessments(
    conn: &mut AnyConnection,
    vendor_id: &str,
) -> Result<Vec<Assessment>, sqlx::Error> {
    sqlx::query(
        "SELECT id, vendor_id, sequence, reviewer, assessed_at, result, score, answers, notes, \
           risk_tier, next_due_at, clock_name, created_at \
         FROM vendor_assessments WHERE vendor_id = $1 ORDER BY sequence DESC",
    )
    .bind(vendor_id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(Assessment::from_row)
    .collect()
}

/// The next sequence number of a vendor's assessments or DPAs.
pub async fn next_sequence(
    conn: &mut AnyConnection,
    table: &str,
    vendor_id: &str,
) -> Result<i64, sqlx::Error> {
    let table = match table {
        "dpas" => "vendor_dpas",
        _ => "vendor_assessments",
    };
    let next: i32 = sqlx::query_scalar(&format!(
        "SELECT CAST(COALESCE(MAX(sequence), 0) + 1 AS INTEGER) FROM {table} WHERE vendor_id = $1"
    ))
    .bind(vendor_id)
    .fetch_one(conn)
    .await?;
    Ok(i64::from(next))
}

/// A condition of a passed-with-conditions assessment, tracked to done.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Condition {
    pub id: String,
    pub assessment_id: String,
    pub vendor_id: String,
    pub text: String,
    pub due_at: Millis,
    pub done_at: Option<Millis>,
    pub done_by: Option<String>,
}

pub async fn insert_condition(
    conn: &mut AnyConnection,
    c: &Condition,
    now: Millis,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO vendor_conditions (id, assessment_id, vendor_id, text, due_at, done_at, \
           done_by, created_at) VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6)",
    )
    .bind(&c.id)
    .bind(&c.assessment_id)
    .bind(&c.vendor_id)
    .bind(&c.text)
    .bind(c.due_at)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn conditions(
    conn: &mut AnyConnection,
    vendor_id: &str,
) -> Result<Vec<Condition>, sqlx::Error> {
    sqlx::query(
        "SELECT id, assessment_id, vendor_id, text, due_at, done_at, done_by \
         FROM vendor_conditions WHERE vendor_id = $1 ORDER BY due_at, id",
    )
    .bind(vendor_id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Condition {
            id: r.try_get("id")?,
            assessment_id: r.try_get("assessment_id")?,
            vendor_id: r.try_get("vendor_id")?,
            text: r.try_get("text")?,
            due_at: r.try_get("due_at")?,
            done_at: r.try_get("done_at")?,
            done_by: r.try_get("done_by")?,
        })
    })
    .collect()
}

/// Marks an open condition of `vendor_id` done; `false` when there is none such.
pub async fn close_condition(
    conn: &mut AnyConnection,
    vendor_id: &str,
    id: &str,
    actor: &str,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE vendor_conditions SET done_at = $1, done_by = $2 \
         WHERE id = $3 AND vendor_id = $4 AND done_at IS NULL",
    )
    .bind(now)
    .bind(actor)
    .bind(id)
    .bind(vendor_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A stored DPA record; the document itself is sealed in the blob store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Dpa {
    pub id: String,
    pub vendor_id: String,
    pub sequence: i64,
    pub version: String,
    pub signed_at: Millis,
    pub expires_at: Millis,
    #[serde(skip)]
    pub blob_key: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub file_name: String,
    pub clock_name: String,
    pub uploaded_by: String,
    pub created_at: Millis,
}

const DPA_COLUMNS: &str = "id, vendor_id, sequence, version, signed_at, expires_at, blob_key, \
     sha256, size_bytes, file_name, clock_name, uploaded_by, created_at";

impl Dpa {
    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: r.try_get("id")?,
            vendor_id: r.try_get("vendor_id")?,
            sequence: i64::from(r.try_get::<i32, _>("sequence")?),
            version: r.try_get("version")?,
            signed_at: r.try_get("signed_at")?,
            expires_at: r.try_get("expires_at")?,
            blob_key: r.try_get("blob_key")?,
            sha256: r.try_get("sha256")?,
            size_bytes: r.try_get("size_bytes")?,
            file_name: r.try_get("file_name")?,
            clock_name: r.try_get("clock_name")?,
            uploaded_by: r.try_get("uploaded_by")?,
            created_at: r.try_get("created_at")?,
        })
    }
}

pub async fn insert_dpa(conn: &mut AnyConnection, d: &Dpa) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO vendor_dpas ({DPA_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(&d.id)
    .bind(&d.vendor_id)
    .bind(i32::try_from(d.sequence).unwrap_or(i32::MAX))
    .bind(&d.version)
    .bind(d.signed_at)
    .bind(d.expires_at)
    .bind(&d.blob_key)
    .bind(&d.sha256)
    .bind(d.size_bytes)
    .bind(&d.file_name)
    .bind(&d.clock_name)
    .bind(&d.uploaded_by)
    .bind(d.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// DPAs of a vendor, newest first.
pub async fn dpas(conn: &mut AnyConnection, vendor_id: &str) -> Result<Vec<Dpa>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {DPA_COLUMNS} FROM vendor_dpas WHERE vendor_id = $1 ORDER BY sequence DESC"
    ))
    .bind(vendor_id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(Dpa::from_row)
    .collect()
}

pub async fn find_dpa(conn: &mut AnyConnection, id: &str) -> Result<Option<Dpa>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {DPA_COLUMNS} FROM vendor_dpas WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .map(|r| Dpa::from_row(&r))
    .transpose()
}

/// Which of `keys` belong to a DPA; the orphan sweep must keep those.
pub async fn owned_dpa_blobs(
    conn: &mut AnyConnection,
    keys: &[String],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(Default::default());
    }
    let sql = format!(
        "SELECT blob_key FROM vendor_dpas WHERE blob_key IN ({})",
        crate::db::placeholders(1, keys.len())
    );
    let mut query = sqlx::query(&sql);
    for key in keys {
        query = query.bind(key.as_str());
    }
    query
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| r.try_get("blob_key"))
        .collect()
}
