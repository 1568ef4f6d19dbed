//! SQL for incidents, their timeline and their breach-notification record. Deadlines are read
//! from `sla_clocks` (joined for urgency and the breached filter), never computed here.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::model::{Severity, Source, Status};
use crate::clock::Millis;

/// A stored incident.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Incident {
    pub id: String,
    pub number: i64,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub status: Status,
    pub source: Source,
    pub detected_at: Millis,
    pub reported_at: Millis,
    pub reported_by: String,
    pub assignee_id: Option<String>,
    pub oncall_staff_id: Option<String>,
    pub escalation_staff_id: Option<String>,
    pub affected_customers: String,
    pub affected_systems: String,
    pub tags: String,
    pub personal_data: bool,
    pub aware_at: Option<Millis>,
    pub triaged_at: Option<Millis>,
    pub resolved_at: Option<Millis>,
    pub closed_at: Option<Millis>,
    pub version: i64,
    pub updated_at: Millis,
}

const COLUMNS: &str = "i.id, i.number, i.title, i.description, i.severity, i.status, i.source, \
     i.detected_at, i.reported_at, i.reported_by, i.assignee_id, i.oncall_staff_id, \
     i.escalation_staff_id, i.affected_customers, i.affected_systems, i.tags, i.personal_data, \
     i.aware_at, i.triaged_at, i.resolved_at, i.closed_at, i.version, i.updated_at";

fn decode<T>(value: Result<T, String>, what: &str) -> Result<T, sqlx::Error> {
    value.map_err(|e| sqlx::Error::Decode(format!("incident {what}: {e}").into()))
}

impl Incident {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let severity: String = row.try_get("severity")?;
        let status: String = row.try_get("status")?;
        let source: String = row.try_get("source")?;
        let personal: i32 = row.try_get("personal_data")?;
        Ok(Self {
            id: row.try_get("id")?,
            number: row.try_get("number")?,
            title: row.try_get("title")?,
            description: row.try_get("description")?,
            severity: decode(Severity::parse(&severity), "severity")?,
            status: decode(Status::parse(&status), "status")?,
            source: decode(Source::parse(&source), "source")?,
            detected_at: row.try_get("detected_at")?,
            reported_at: row.try_get("reported_at")?,
            reported_by: row.try_get("reported_by")?,
            assignee_id: row.try_get("assignee_id")?,
            oncall_staff_id: row.try_get("oncall_staff_id")?,
            escalation_staff_id: row.try_get("escalation_staff_id")?,
            affected_customers: row.try_get("affected_customers")?,
            affected_systems: row.try_get("affected_systems")?,
            tags: row.try_get("tags")?,
            personal_data: personal != 0,
            aware_at: row.try_get("aware_at")?,
            triaged_at: row.try_get("triaged_at")?,
            resolved_at: row.try_get("resolved_at")?,
            closed_at: row.try_get("closed_at")?,
            version: row.try_get("version")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// Inserts a new incident with the next number; returns (id, number).
pub async fn insert(
    conn: &mut AnyConnection,
    incident: &Incident,
) -> Result<(String, i64), sqlx::Error> {
    // Two reporters at once must not both take the same next number.
    crate::db::lock_until_commit(conn, "incident numbers").await?;
    let row = sqlx::query("SELECT COALESCE(MAX(number), 0) + 1 AS next FROM incidents")
        .fetch_one(&mut *conn)
        .await?;
    let number: i64 = row.try_get("next")?;
    sqlx::query(
        "INSERT INTO incidents (id, number, title, description, severity, status, source, \
           detected_at, reported_at, reported_by, assignee_id, oncall_staff_id, \
           escalation_staff_id, affected_customers, affected_systems, tags, personal_data, \
           aware_at, triaged_at, resolved_at, closed_at, version, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
           $18, NULL, NULL, NULL, 1, $19)",
    )
    .bind(&incident.id)
    .bind(number)
    .bind(&incident.title)
    .bind(&incident.description)
    .bind(incident.severity.as_str())
    .bind(incident.status.as_str())
    .bind(incident.source.as_str())
    .bind(incident.detected_at)
    .bind(incident.reported_at)
    .bind(&incident.reported_by)
    .bind(&incident.assignee_id)
    .bind(&incident.oncall_staff_id)
    .bind(&incident.escalation_staff_id)
    .bind(&incident.affected_customers)
    .bind(&incident.affected_systems)
    .bind(&incident.tags)
    .bind(i32::from(incident.personal_data))
    .bind(incident.aware_at)
    .bind(incident.updated_at)
    .execute(&mut *conn)
    .await?;
    Ok((incident.id.clone(), number))
}

/// One incident by id.
pub async fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<Incident>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM incidents i WHERE i.id = $1");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|r| Incident::from_row(&r))
        .transpose()
}

/// One incident by its number (`INC-42` → 42).
pub async fn find_by_number(
    conn: &mut AnyConnection,
    number: i64,
) -> Result<Option<Incident>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM incidents i WHERE i.number = $1");
    sqlx::query(&sql)
        .bind(number)
        .fetch_optional(conn)
        .await?
        .map(|r| Incident::from_row(&r))
        .transpose()
}

/// Claims the incident's version (optimistic lock) and sets its changed fields.
pub async fn update(
    conn: &mut AnyConnection,
    incident: &Incident,
    expected_version: i64,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE incidents SET severity = $1, status = $2, assignee_id = $3, triaged_at = $4, \
           resolved_at = $5, closed_at = $6, personal_data = $7, aware_at = $8, \
           version = version + 1, updated_at = $9 \
         WHERE id = $10 AND version = $11",
    )
    .bind(incident.severity.as_str())
    .bind(incident.status.as_str())
    .bind(&incident.assignee_id)
    .bind(incident.triaged_at)
    .bind(incident.resolved_at)
    .bind(incident.closed_at)
    .bind(i32::from(incident.personal_data))
    .bind(incident.aware_at)
    .bind(now)
    .bind(&incident.id)
    .bind(expected_version)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Filters of the incident list.
#[derive(Debug, Default, Clone)]
pub struct IncidentFilter {
    pub status: Option<Status>,
    pub severity: Option<Severity>,
    pub source: Option<Source>,
    pub assignee_id: Option<String>,
    /// Only incidents with a breached clock (as of `now`, whether or not the watch job has
    /// recorded the breach yet).
    pub breached: bool,
    pub now: Millis,
    pub offset: i64,
    pub limit: i64,
}

/// A list row: the incident and its triage clock's due time and state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IncidentRow {
    pub incident: Incident,
    pub triage_due_at: Option<Millis>,
    pub triage_state: Option<String>,
    pub breached_clocks: i64,
}

/// Incidents by urgency: open ones first, then by the earliest triage deadline, then newest.
pub async fn list(
    conn: &mut AnyConnection,
    filter: &IncidentFilter,
) -> Result<(Vec<IncidentRow>, i64), sqlx::Error> {
    let mut conditions = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    if let Some(status) = filter.status {
        binds.push(status.as_str().to_owned());
        conditions.push(format!("i.status = ${}", binds.len()));
    }
    if let Some(severity) = filter.severity {
        binds.push(severity.as_str().to_owned());
        conditions.push(format!("i.severity = ${}", binds.len()));
    }
    if let Some(source) = filter.source {
        binds.push(source.as_str().to_owned());
        conditions.push(format!("i.source = ${}", binds.len()));
    }
    if let Some(assignee) = &filter.assignee_id {
        binds.push(assignee.clone());
        conditions.push(format!("i.assignee_id = ${}", binds.len()));
    }
    // `now` is the server's clock (an integer), never user input, so it is written inline.
    let now = filter.now;
    let breached_state =
        format!("(b.state = 'breached' OR (b.state = 'running' AND b.due_at <= {now}))");
    let breached_clock =
        format!("b.subject_kind = 'incident' AND b.subject_id = i.id AND {breached_state}");
    if filter.breached {
        // One pass over the clocks rather than one probe per incident.
        conditions.push(format!(
            "i.id IN (SELECT b.subject_id FROM sla_clocks b \
             WHERE b.subject_kind = 'incident' AND {breached_state})"
        ));
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let and = if conditions.is_empty() {
        "WHERE"
    } else {
        "AND"
    };
    let open_only = format!("{where_clause} {and} i.status NOT IN ('resolved', 'closed')");
    let done_only = format!("{where_clause} {and} i.status IN ('resolved', 'closed')");
    let total = count_where(conn, &where_clause, &binds).await?;
    let open_total = count_where(conn, &open_only, &binds).await?;

    // Open incidents (few) come first, by their open triage deadline — those without one
    // (already triaged) after those with one, through an explicit maximum since SQLite and
    // PostgreSQL order NULLs differently. Resolved and closed incidents (the many) follow,
    // newest first, paged along the (detected_at, number) index without sorting them all.
    // Each segment picks its page from the sort keys alone; only those rows are read in
    // full and get their breached-clock count.
    let limit = filter.limit.clamp(1, 500);
    let offset = filter.offset.max(0);
    let mut rows = Vec::new();
    if offset < open_total {
        let sql = format!(
            "SELECT {COLUMNS}, t.due_at AS triage_due_at, t.state AS triage_state, \
               (SELECT COUNT(*) FROM sla_clocks b WHERE {breached_clock}) AS breached_clocks \
             FROM ( \
               SELECT i.id AS page_id, \
                 CASE WHEN t.state IN ('running', 'breached') AND t.stopped_at IS NULL \
                      THEN t.due_at ELSE 9223372036854775807 END AS open_due_at, \
                 i.detected_at AS page_detected_at, i.number AS page_number \
               FROM incidents i \
               LEFT JOIN sla_clocks t ON t.subject_kind = 'incident' AND t.subject_id = i.id \
                    AND t.name = 'triage' \
               {open_only} \
               ORDER BY open_due_at, page_detected_at DESC, page_number DESC \
               LIMIT {limit} OFFSET {offset}) p \
             JOIN incidents i ON i.id = p.page_id \
             LEFT JOIN sla_clocks t ON t.subject_kind = 'incident' AND t.subject_id = i.id \
                  AND t.name = 'triage' \
             ORDER BY p.open_due_at, p.page_detected_at DESC, p.page_number DESC"
        );
        rows.extend(fetch_rows(conn, &sql, &binds).await?);
    }
    let remaining = limit - i64::try_from(rows.len()).unwrap_or(limit);
    if remaining > 0 {
        let done_offset = (offset - open_total).max(0);
        let sql = format!(
            "SELECT {COLUMNS}, t.due_at AS triage_due_at, t.state AS triage_state, \
               (SELECT COUNT(*) FROM sla_clocks b WHERE {breached_clock}) AS breached_clocks \
             FROM ( \
               SELECT i.id AS page_id, i.detected_at AS page_detected_at, \
                 i.number AS page_number \
               FROM incidents i {done_only} \
               ORDER BY i.detected_at DESC, i.number DESC \
               LIMIT {remaining} OFFSET {done_offset}) p \
             JOIN incidents i ON i.id = p.page_id \
             LEFT JOIN sla_clocks t ON t.subject_kind = 'incident' AND t.subject_id = i.id \
                  AND t.name = 'triage' \
             ORDER BY p.page_detected_at DESC, p.page_number DESC"
        );
        rows.extend(fetch_rows(conn, &sql, &binds).await?);
    }
    Ok((rows, total))
}

async fn count_where(
    conn: &mut AnyConnection,
    where_clause: &str,
    binds: &[String],
) -> Result<i64, sqlx::Error> {
    let sql = format!("SELECT COUNT(*) AS n FROM incidents i {where_clause}");
    let mut query = sqlx::query(&sql);
    for value in binds {
        query = query.bind(value);
    }
    query.fetch_one(conn).await?.try_get("n")
}

async fn fetch_rows(
    conn: &mut AnyConnection,
    sql: &str,
    binds: &[String],
) -> Result<Vec<IncidentRow>, sqlx::Error> {
    let mut query = sqlx::query(sql);
    for value in binds {
        query = query.bind(value);
    }
    query
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| {
            Ok(IncidentRow {
                incident: Incident::from_row(r)?,
                triage_due_at: r.try_get("triage_due_at")?,
                triage_state: r.try_get("triage_state")?,
                breached_clocks: r.try_get("breached_clocks")?,
            })
        })
        .collect()
}

/// One timeline entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TimelineEntry {
    pub at: Millis,
    pub author: String,
    pub kind: String,
    pub body: String,
}

/// Appends to an incident's timeline (the table refuses updates and deletes).
pub async fn append_timeline(
    conn: &mut AnyConnection,
    incident_id: &str,
    at: Millis,
    author: &str,
    kind: &str,
    body: &str,
) -> Result<(), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM incident_timeline WHERE incident_id = $1",
    )
    .bind(incident_id)
    .fetch_one(&mut *conn)
    .await?;
    let seq: i64 = row.try_get("next")?;
    sqlx::query(
        "INSERT INTO incident_timeline (id, incident_id, at, seq, author, kind, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(incident_id)
    .bind(at)
    .bind(seq)
    .bind(author)
    .bind(kind)
    .bind(body)
    .execute(conn)
    .await
    .map(|_| ())
}

/// An incident's own timeline entries, oldest first.
pub async fn timeline(
    conn: &mut AnyConnection,
    incident_id: &str,
) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT at, author, kind, body FROM incident_timeline WHERE incident_id = $1 \
         ORDER BY seq LIMIT 2000",
    )
    .bind(incident_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TimelineEntry {
                at: r.try_get("at")?,
                author: r.try_get("author")?,
                kind: r.try_get("kind")?,
                body: r.try_get("body")?,
            })
        })
        .collect()
}

/// The GDPR Art. 33 notification record of a personal-data breach.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BreachNotice {
    pub nature: String,
    pub approx_subjects: Option<i64>,
    pub approx_records: Option<i64>,
    pub contact_point: String,
    pub likely_consequences: String,
    pub measures: String,
    pub authority: String,
    pub reference: String,
    pub notified_at: Option<Millis>,
    pub late_reason: String,
}

pub async fn breach_notice(
    conn: &mut AnyConnection,
    incident_id: &str,
) -> Result<Option<BreachNotice>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT nature, approx_subjects, approx_records, contact_point, likely_consequences, \
         measures, authority, reference, notified_at, late_reason \
         FROM incident_breach_notices WHERE incident_id = $1",
    )
    .bind(incident_id)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(BreachNotice {
            nature: r.try_get("nature")?,
            approx_subjects: r.try_get("approx_subjects")?,
            approx_records: r.try_get("approx_records")?,
            contact_point: r.try_get("contact_point")?,
            likely_consequences: r.try_get("likely_consequences")?,
            measures: r.try_get("measures")?,
            authority: r.try_get("authority")?,
            reference: r.try_get("reference")?,
            notified_at: r.try_get("notified_at")?,
            late_reason: r.try_get("late_reason")?,
        })
    })
    .transpose()
}

pub async fn save_breach_notice(
    conn: &mut AnyConnection,
    incident_id: &str,
    notice: &BreachNotice,
    actor: &str,
    now: Millis,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO incident_breach_notices (incident_id, nature, approx_subjects, \
           approx_records, contact_point, likely_consequences, measures, authority, reference, \
           notified_at, late_reason, updated_at, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (incident_id) DO UPDATE SET nature = $2, approx_subjects = $3, \
           approx_records = $4, contact_point = $5, likely_consequences = $6, measures = $7, \
           authority = $8, reference = $9, notified_at = $10, late_reason = $11, \
           updated_at = $12, updated_by = $13",
    )
    .bind(incident_id)
    .bind(&notice.nature)
    .bind(notice.approx_subjects)
    .bind(notice.approx_records)
    .bind(&notice.contact_point)
    .bind(&notice.likely_consequences)
    .bind(&notice.measures)
    .bind(&notice.authority)
    .bind(&notice.reference)
    .bind(notice.notified_at)
    .bind(&notice.late_reason)
    .bind(now)
    .bind(actor)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Incidents detected since `since` by their triage clock as of `now`: (triaged in time,
/// breached — late or still untriaged past the deadline).
pub async fn triage_record(
    conn: &mut AnyConnection,
    now: Millis,
    since: Millis,
) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT \
           COALESCE(SUM(CASE WHEN c.state = 'met' THEN 1 ELSE 0 END), 0) AS met, \
           COALESCE(SUM(CASE WHEN c.state = 'breached' \
                OR (c.state = 'running' AND c.due_at <= $1) THEN 1 ELSE 0 END), 0) AS breached \
         FROM incidents i JOIN sla_clocks c ON c.subject_kind = 'incident' \
           AND c.subject_id = i.id AND c.name = 'triage' \
         WHERE i.detected_at >= $2",
    )
    .bind(now)
    .bind(since)
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.try_get("met")?, row.try_get("breached")?))
}

/// Open incidents (not resolved or closed) by their triage clock as of `now`:
/// (awaiting triage in time, awaiting triage past the deadline, triaged and still open).
pub async fn open_by_triage_state(
    conn: &mut AnyConnection,
    now: Millis,
) -> Result<(i64, i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT \
           COALESCE(SUM(CASE WHEN i.triaged_at IS NULL AND c.due_at > $1 THEN 1 ELSE 0 END), 0) \
             AS waiting, \
           COALESCE(SUM(CASE WHEN i.triaged_at IS NULL AND c.due_at <= $1 THEN 1 ELSE 0 END), 0) \
             AS overdue, \
           COALESCE(SUM(CASE WHEN i.triaged_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS triaged \
         FROM incidents i LEFT JOIN sla_clocks c ON c.subject_kind = 'incident' \
           AND c.subject_id = i.id AND c.name = 'triage' \
         WHERE i.status NOT IN ('resolved', 'closed')",
    )
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok((
        row.try_get("waiting")?,
        row.try_get("overdue")?,
        row.try_get("triaged")?,
    ))
}
