//! SQL for pentest engagements (`pentest_engagements`, migration 0014). Dates are stored as
//! `YYYY-MM-DD` text, which sorts like the dates; the next-test clock lives in `sla_clocks`.

use std::collections::HashSet;

use chrono::NaiveDate;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::clock::Millis;

fn serialize_date<S: serde::Serializer>(date: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&date.format("%Y-%m-%d"))
}

/// A stored engagement.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Engagement {
    pub id: String,
    pub firm: String,
    pub scope: String,
    #[serde(serialize_with = "serialize_date")]
    pub started_on: NaiveDate,
    #[serde(serialize_with = "serialize_date")]
    pub ended_on: NaiveDate,
    /// Blob key of the sealed report; internal, never shown.
    #[serde(skip)]
    pub report_blob: Option<String>,
    pub report_sha256: Option<String>,
    pub report_name: Option<String>,
    pub report_bytes: Option<i64>,
    pub created_at: Millis,
    pub created_by: String,
}

const COLUMNS: &str = "e.id, e.firm, e.scope, e.started_on, e.ended_on, e.report_blob, \
     e.report_sha256, e.report_name, e.report_bytes, e.created_at, e.created_by";

fn stored_date(row: &AnyRow, column: &str) -> Result<NaiveDate, sqlx::Error> {
    let raw: String = row.try_get(column)?;
    NaiveDate::parse_from_str(&raw, "%Y-%m-%d")
        .map_err(|e| sqlx::Error::Decode(format!("engagement {column} “{raw}”: {e}").into()))
}

impl Engagement {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            firm: row.try_get("firm")?,
            scope: row.try_get("scope")?,
            started_on: stored_date(row, "started_on")?,
            ended_on: stored_date(row, "ended_on")?,
            report_blob: row.try_get("report_blob")?,
            report_sha256: row.try_get("report_sha256")?,
            report_name: row.try_get("report_name")?,
            report_bytes: row.try_get("report_bytes")?,
            created_at: row.try_get("created_at")?,
            created_by: row.try_get("created_by")?,
        })
    }
}

pub async fn insert(conn: &mut AnyConnection, e: &Engagement) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO pentest_engagements (id, firm, scope, started_on, ended_on, report_blob, \
           report_sha256, report_name, report_bytes, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&e.id)
    .bind(&e.firm)
    .bind(&e.scope)
    .bind(e.started_on.format("%Y-%m-%d").to_string())
    .bind(e.ended_on.format("%Y-%m-%d").to_string())
    .bind(&e.report_blob)
    .bind(&e.report_sha256)
    .bind(&e.report_name)
    .bind(e.report_bytes)
    .bind(e.created_at)
    .bind(&e.created_by)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<Engagement>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM pentest_engagements e WHERE e.id = $1");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|r| Engagement::from_row(&r))
        .transpose()
}

/// The engagement that ended last (of two ending the same day, the one recorded last).
pub async fn latest(conn: &mut AnyConnection) -> Result<Option<Engagement>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM pentest_engagements e \
         ORDER BY e.ended_on DESC, e.created_at DESC, e.id DESC LIMIT 1"
    );
    sqlx::query(&sql)
        .fetch_optional(conn)
        .await?
        .map(|r| Engagement::from_row(&r))
        .transpose()
}

/// A list row: the engagement, its next-test clock and how many findings it produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EngagementRow {
    #[serde(flatten)]
    pub engagement: Engagement,
    pub next_pentest_due_at: Option<Millis>,
    /// The stored clock state (`running` past its deadline reads as breached at `now`).
    pub next_pentest_state: Option<String>,
    pub findings: i64,
}

/// Every engagement, most recent end first.
pub async fn list(conn: &mut AnyConnection) -> Result<Vec<EngagementRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS}, c.due_at AS next_pentest_due_at, c.state AS next_pentest_state, \
           (SELECT COUNT(*) FROM findings f WHERE f.engagement_id = e.id) AS finding_count \
         FROM pentest_engagements e LEFT JOIN sla_clocks c ON c.subject_kind = 'pentest' \
           AND c.subject_id = e.id AND c.name = 'next_pentest' \
         ORDER BY e.ended_on DESC, e.created_at DESC, e.id DESC LIMIT 1000"
    );
    sqlx::query(&sql)
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| {
            Ok(EngagementRow {
                engagement: Engagement::from_row(r)?,
                next_pentest_due_at: r.try_get("next_pentest_due_at")?,
                next_pentest_state: r.try_get("next_pentest_state")?,
                findings: r.try_get("finding_count")?,
            })
        })
        .collect()
}

/// Which of `keys` are report blobs of an engagement (so the orphan sweep keeps them).
pub async fn owned_report_blobs(
    conn: &mut AnyConnection,
    keys: &[String],
) -> Result<HashSet<String>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let sql = format!(
        "SELECT report_blob FROM pentest_engagements WHERE report_blob IN ({})",
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
        .map(|r| r.try_get("report_blob"))
        .collect()
}
