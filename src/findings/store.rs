//! SQL for findings. Remediation deadlines are read from `sla_clocks`.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::model::{Severity, Status};
use crate::clock::Millis;

/// A stored finding.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub id: String,
    pub number: i64,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub cvss_vector: Option<String>,
    pub cvss_score: Option<f64>,
    pub asset: String,
    pub source: String,
    pub engagement_id: Option<String>,
    pub confirmed_at: Millis,
    pub status: Status,
    pub raised_by: String,
    pub fix_evidence: String,
    pub fixed_at: Option<Millis>,
    pub verified_at: Option<Millis>,
    pub risk_approver: Option<String>,
    pub risk_reason: Option<String>,
    pub risk_expires_at: Option<Millis>,
    pub version: i64,
    pub created_at: Millis,
}

const COLUMNS: &str = "f.id, f.number, f.title, f.description, f.severity, f.cvss_vector, \
     f.cvss_score, f.asset, f.source, f.engagement_id, f.confirmed_at, f.status, f.raised_by, \
     f.fix_evidence, f.fixed_at, f.verified_at, f.risk_approver, f.risk_reason, \
     f.risk_expires_at, f.version, f.created_at";

impl Finding {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let bad =
            |what: &str, e: String| sqlx::Error::Decode(format!("finding {what}: {e}").into());
        let severity: String = row.try_get("severity")?;
        let status: String = row.try_get("status")?;
        Ok(Self {
            id: row.try_get("id")?,
            number: row.try_get("number")?,
            title: row.try_get("title")?,
            description: row.try_get("description")?,
            severity: Severity::parse(&severity).map_err(|e| bad("severity", e))?,
            cvss_vector: row.try_get("cvss_vector")?,
            cvss_score: row.try_get("cvss_score")?,
            asset: row.try_get("asset")?,
            source: row.try_get("source")?,
            engagement_id: row.try_get("engagement_id")?,
            confirmed_at: row.try_get("confirmed_at")?,
            status: Status::parse(&status).map_err(|e| bad("status", e))?,
            raised_by: row.try_get("raised_by")?,
            fix_evidence: row.try_get("fix_evidence")?,
            fixed_at: row.try_get("fixed_at")?,
            verified_at: row.try_get("verified_at")?,
            risk_approver: row.try_get("risk_approver")?,
            risk_reason: row.try_get("risk_reason")?,
            risk_expires_at: row.try_get("risk_expires_at")?,
            version: row.try_get("version")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Inserts a finding with the next number; returns the number.
pub async fn insert(conn: &mut AnyConnection, f: &Finding) -> Result<i64, sqlx::Error> {
    // Two reporters at once must not both take the same next number.
    crate::db::lock_until_commit(conn, "finding numbers").await?;
    let row = sqlx::query("SELECT COALESCE(MAX(number), 0) + 1 AS next FROM findings")
        .fetch_one(&mut *conn)
        .await?;
    let number: i64 = row.try_get("next")?;
    sqlx::query(
        "INSERT INTO findings (id, number, title, description, severity, cvss_vector, \
           cvss_score, asset, source, engagement_id, confirmed_at, status, raised_by, \
           fix_evidence, fixed_at, verified_at, risk_approver, risk_reason, risk_expires_at, \
           version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, '', NULL, NULL, NULL, \
           NULL, NULL, 1, $14, $14)",
    )
    .bind(&f.id)
    .bind(number)
    .bind(&f.title)
    .bind(&f.description)
    .bind(f.severity.as_str())
    .bind(&f.cvss_vector)
    .bind(f.cvss_score)
    .bind(&f.asset)
    .bind(&f.source)
    .bind(&f.engagement_id)
    .bind(f.confirmed_at)
    .bind(f.status.as_str())
    .bind(&f.raised_by)
    .bind(f.created_at)
    .execute(conn)
    .await?;
    Ok(number)
}

pub async fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<Finding>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM findings f WHERE f.id = $1");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|r| Finding::from_row(&r))
        .transpose()
}

/// Writes the changeable fields if the version still matches.
pub async fn update(
    conn: &mut AnyConnection,
    f: &Finding,
    expected_version: i64,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE findings SET status = $1, fix_evidence = $2, fixed_at = $3, verified_at = $4, \
           risk_approver = $5, risk_reason = $6, risk_expires_at = $7, version = version + 1, \
           updated_at = $8 WHERE id = $9 AND version = $10",
    )
    .bind(f.status.as_str())
    .bind(&f.fix_evidence)
    .bind(f.fixed_at)
    .bind(f.verified_at)
    .bind(&f.risk_approver)
    .bind(&f.risk_reason)
    .bind(f.risk_expires_at)
    .bind(now)
    .bind(&f.id)
    .bind(expected_version)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A list row: the finding with its remediation clock.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FindingRow {
    pub finding: Finding,
    pub remediation_due_at: Option<Millis>,
    pub remediation_state: Option<String>,
}

/// Filters of the findings list.
#[derive(Debug, Default, Clone)]
pub struct FindingFilter {
    pub status: Option<Status>,
    pub severity: Option<Severity>,
    /// Only the findings a pentest engagement produced.
    pub engagement_id: Option<String>,
    pub offset: i64,
    pub limit: i64,
}

/// Findings by urgency: unresolved first, earliest remediation deadline first.
pub async fn list(
    conn: &mut AnyConnection,
    filter: &FindingFilter,
) -> Result<(Vec<FindingRow>, i64), sqlx::Error> {
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    if let Some(status) = filter.status {
        binds.push(status.as_str());
        conditions.push(format!("f.status = ${}", binds.len()));
    }
    if let Some(severity) = filter.severity {
        binds.push(severity.as_str());
        conditions.push(format!("f.severity = ${}", binds.len()));
    }
    if let Some(engagement_id) = &filter.engagement_id {
        binds.push(engagement_id.as_str());
        conditions.push(format!("f.engagement_id = ${}", binds.len()));
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let count_sql = format!("SELECT COUNT(*) FROM findings f {where_clause}");
    let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
    for value in &binds {
        count = count.bind(*value);
    }
    let total = count.fetch_one(&mut *conn).await?;
    let sql = format!(
        "SELECT {COLUMNS}, c.due_at AS remediation_due_at, c.state AS remediation_state \
         FROM findings f LEFT JOIN sla_clocks c ON c.subject_kind = 'finding' \
           AND c.subject_id = f.id AND c.name = 'remediation' \
         {where_clause} \
         ORDER BY CASE WHEN f.status IN ('verified', 'risk_accepted') THEN 1 ELSE 0 END, \
           c.due_at, f.number DESC LIMIT {} OFFSET {}",
        filter.limit.clamp(1, 1000),
        filter.offset.max(0)
    );
    let mut query = sqlx::query(&sql);
    for value in &binds {
        query = query.bind(*value);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok(FindingRow {
                finding: Finding::from_row(r)?,
                remediation_due_at: r.try_get("remediation_due_at")?,
                remediation_state: r.try_get("remediation_state")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((rows, total))
}

/// Critical findings confirmed since `since`: (met, breached) as of `now`.
pub async fn critical_record(
    conn: &mut AnyConnection,
    now: Millis,
    since: Millis,
) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT \
           COALESCE(SUM(CASE WHEN c.state = 'met' THEN 1 ELSE 0 END), 0) AS met, \
           COALESCE(SUM(CASE WHEN c.state = 'breached' \
                OR (c.state = 'running' AND c.due_at <= $1) THEN 1 ELSE 0 END), 0) AS breached \
         FROM findings f JOIN sla_clocks c ON c.subject_kind = 'finding' \
           AND c.subject_id = f.id AND c.name = 'remediation' \
         WHERE f.severity = 'critical' AND f.confirmed_at >= $2",
    )
    .bind(now)
    .bind(since)
    .fetch_one(conn)
    .await?;
    Ok((row.try_get("met")?, row.try_get("breached")?))
}

/// Findings whose accepted risk expired at or before `now`.
pub async fn expired_risk_acceptances(
    conn: &mut AnyConnection,
    now: Millis,
) -> Result<Vec<Finding>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM findings f WHERE f.status = 'risk_accepted' \
         AND f.risk_expires_at <= $1 ORDER BY f.number LIMIT 500"
    );
    sqlx::query(&sql)
        .bind(now)
        .fetch_all(conn)
        .await?
        .iter()
        .map(Finding::from_row)
        .collect()
}
