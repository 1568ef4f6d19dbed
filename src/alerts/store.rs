//! SQL of the `alerts` table.

use sqlx::{AnyConnection, Row};

use super::model::{AlertState, Detector, Evidence};
use crate::clock::Millis;

/// One alert as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Alert {
    pub id: String,
    pub detector: Detector,
    pub subject: String,
    pub subject_label: String,
    pub summary: String,
    pub state: AlertState,
    /// `detector` or `alertmanager`.
    pub source: String,
    pub fingerprint: Option<String>,
    pub evidence: Evidence,
    pub opened_at: Millis,
    pub last_seen_at: Millis,
    pub occurrences: i64,
    pub incident_id: Option<String>,
    pub state_changed_at: Option<Millis>,
    pub state_changed_by: Option<String>,
    pub false_positive_reason: Option<String>,
}

const COLUMNS: &str = "id, detector, subject, subject_label, summary, state, source, fingerprint, \
     evidence, opened_at, last_seen_at, occurrences, incident_id, state_changed_at, \
     state_changed_by, false_positive_reason";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Alert, sqlx::Error> {
    let decode = |e: String| sqlx::Error::Decode(e.into());
    let detector: String = row.try_get("detector")?;
    let state: String = row.try_get("state")?;
    let evidence: String = row.try_get("evidence")?;
    Ok(Alert {
        id: row.try_get("id")?,
        detector: Detector::parse(&detector)
            .ok_or_else(|| decode(format!("unknown detector {detector}")))?,
        subject: row.try_get("subject")?,
        subject_label: row.try_get("subject_label")?,
        summary: row.try_get("summary")?,
        state: AlertState::parse(&state).map_err(decode)?,
        source: row.try_get("source")?,
        fingerprint: row.try_get("fingerprint")?,
        evidence: serde_json::from_str(&evidence).map_err(|e| decode(e.to_string()))?,
        opened_at: row.try_get("opened_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        occurrences: row.try_get("occurrences")?,
        incident_id: row.try_get("incident_id")?,
        state_changed_at: row.try_get("state_changed_at")?,
        state_changed_by: row.try_get("state_changed_by")?,
        false_positive_reason: row.try_get("false_positive_reason")?,
    })
}

pub async fn insert(conn: &mut AnyConnection, a: &Alert) -> Result<(), sqlx::Error> {
    let evidence = serde_json::to_string(&a.evidence)
        .map_err(|e| sqlx::Error::Encode(e.to_string().into()))?;
    sqlx::query(&format!(
        "INSERT INTO alerts ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13, $14, $15, $16)"
    ))
    .bind(&a.id)
    .bind(a.detector.as_str())
    .bind(&a.subject)
    .bind(&a.subject_label)
    .bind(&a.summary)
    .bind(a.state.as_str())
    .bind(&a.source)
    .bind(&a.fingerprint)
    .bind(evidence)
    .bind(a.opened_at)
    .bind(a.last_seen_at)
    .bind(a.occurrences)
    .bind(&a.incident_id)
    .bind(a.state_changed_at)
    .bind(&a.state_changed_by)
    .bind(&a.false_positive_reason)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<Alert>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM alerts WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// The newest alert of (detector, subject) seen at or after `since`.
pub async fn recent(
    conn: &mut AnyConnection,
    detector: Detector,
    subject: &str,
    since: Millis,
) -> Result<Option<Alert>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM alerts WHERE detector = $1 AND subject = $2 AND last_seen_at >= $3 \
         ORDER BY last_seen_at DESC LIMIT 1"
    ))
    .bind(detector.as_str())
    .bind(subject)
    .bind(since)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// The active Alertmanager alert with this fingerprint.
pub async fn active_by_fingerprint(
    conn: &mut AnyConnection,
    fingerprint: &str,
) -> Result<Option<Alert>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM alerts WHERE fingerprint = $1 AND source = 'alertmanager' \
         AND state IN ('open', 'acknowledged') ORDER BY opened_at DESC LIMIT 1"
    ))
    .bind(fingerprint)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Incidents that alerts about `subject` opened or joined, newest first.
pub async fn incidents_for_subject(
    conn: &mut AnyConnection,
    subject: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT incident_id, MAX(opened_at) AS latest FROM alerts \
         WHERE subject = $1 AND incident_id IS NOT NULL GROUP BY incident_id \
         ORDER BY latest DESC LIMIT 5",
    )
    .bind(subject)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| r.try_get("incident_id")).collect()
}

pub async fn seen_again(
    conn: &mut AnyConnection,
    id: &str,
    now: Millis,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE alerts SET last_seen_at = $1, occurrences = occurrences + 1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_incident(
    conn: &mut AnyConnection,
    id: &str,
    incident_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE alerts SET incident_id = $1 WHERE id = $2")
        .bind(incident_id)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves an alert from `from` to `to`; false when someone else changed it first.
pub async fn set_state(
    conn: &mut AnyConnection,
    id: &str,
    from: AlertState,
    to: AlertState,
    actor: &str,
    reason: Option<&str>,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE alerts SET state = $1, state_changed_at = $2, state_changed_by = $3, \
         false_positive_reason = $4 WHERE id = $5 AND state = $6",
    )
    .bind(to.as_str())
    .bind(now)
    .bind(actor)
    .bind(reason)
    .bind(id)
    .bind(from.as_str())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// Filters of the alert list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub state: Option<AlertState>,
    pub detector: Option<Detector>,
    /// Matches the subject label (key prefix, network …).
    pub search: String,
    pub limit: i64,
    pub offset: i64,
}

/// Alerts newest first, and how many match in all.
pub async fn list(
    conn: &mut AnyConnection,
    filter: &ListFilter,
) -> Result<(Vec<Alert>, i64), sqlx::Error> {
    let state = filter.state.map(|s| s.as_str()).unwrap_or("");
    let detector = filter.detector.map(|d| d.as_str()).unwrap_or("");
    let search = format!("%{}%", filter.search.trim().to_lowercase());
    let condition = "($1 = '' OR state = $1) AND ($2 = '' OR detector = $2) \
                     AND LOWER(subject_label) LIKE $3";
    let total: i64 = sqlx::query(&format!(
        "SELECT COUNT(*) AS n FROM alerts WHERE {condition}"
    ))
    .bind(state)
    .bind(detector)
    .bind(&search)
    .fetch_one(&mut *conn)
    .await?
    .try_get("n")?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM alerts WHERE {condition} ORDER BY opened_at DESC, id \
         LIMIT $4 OFFSET $5"
    ))
    .bind(state)
    .bind(detector)
    .bind(&search)
    .bind(filter.limit)
    .bind(filter.offset)
    .fetch_all(conn)
    .await?;
    Ok((rows.iter().map(from_row).collect::<Result<_, _>>()?, total))
}

/// False positives per detector, for the settings page.
pub async fn false_positives_by_detector(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT detector, COUNT(*) AS total, \
         CAST(SUM(CASE WHEN state = 'false_positive' THEN 1 ELSE 0 END) AS BIGINT) \
         AS false_positives \
         FROM alerts GROUP BY detector",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("detector")?,
                r.try_get("total")?,
                r.try_get::<Option<i64>, _>("false_positives")?.unwrap_or(0),
            ))
        })
        .collect()
}

/// Active alerts, for the dashboard.
pub async fn active_count(conn: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM alerts WHERE state IN ('open', 'acknowledged')")
        .fetch_one(conn)
        .await?
        .try_get("n")
}
