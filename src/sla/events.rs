//! SQL for `sla_events`, the list of what happened to each clock. Capabilities read it for
//! their timelines (an incident shows "triage clock breached" between its own entries)
//! instead of being called back by the watch job, so the job never depends on them.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::model::{EventKind, SlaEvent, Subject, SubjectKind};
use super::store::decode_error;
use crate::clock::Millis;

/// Appends to a clock's event list.
pub async fn insert_event(
    conn: &mut AnyConnection,
    clock_id: &str,
    at: Millis,
    kind: EventKind,
    actor: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sla_events (clock_id, at, kind, actor, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(clock_id)
    .bind(at)
    .bind(kind.as_str())
    .bind(actor)
    .bind(detail)
    .execute(conn)
    .await
    .map(|_| ())
}

const EVENT_COLUMNS: &str = "CAST(e.id AS BIGINT) AS id, e.clock_id, c.name AS clock_name, \
     c.subject_kind, c.subject_id, e.at, e.kind, e.actor, e.detail";

fn event_from_row(row: &AnyRow) -> Result<SlaEvent, sqlx::Error> {
    let kind_text: String = row.try_get("kind")?;
    let kind = EventKind::parse(&kind_text)
        .ok_or_else(|| decode_error("kind", format!("unknown event kind {kind_text}")))?;
    let subject_kind = SubjectKind::parse(&row.try_get::<String, _>("subject_kind")?)
        .map_err(|e| decode_error("subject_kind", e))?;
    Ok(SlaEvent {
        id: row.try_get("id")?,
        clock_id: row.try_get("clock_id")?,
        clock_name: row.try_get("clock_name")?,
        subject: Subject::new(subject_kind, row.try_get::<String, _>("subject_id")?),
        at: row.try_get("at")?,
        kind,
        actor: row.try_get("actor")?,
        detail: row.try_get("detail")?,
    })
}

/// Every event of every clock of a subject, oldest first.
pub async fn events_for_subject(
    conn: &mut AnyConnection,
    subject: &Subject,
) -> Result<Vec<SlaEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM sla_events e JOIN sla_clocks c ON c.id = e.clock_id \
         WHERE c.subject_kind = $1 AND c.subject_id = $2 ORDER BY e.id"
    );
    let rows = sqlx::query(&sql)
        .bind(subject.kind.as_str())
        .bind(&subject.id)
        .fetch_all(conn)
        .await?;
    rows.iter().map(event_from_row).collect()
}

/// Events of clocks of `kind` after event `after_id`, oldest first (for a capability that
/// copies breaches and reminders into its own timeline as they happen).
pub async fn events_after(
    conn: &mut AnyConnection,
    kind: SubjectKind,
    after_id: i64,
    limit: i64,
) -> Result<Vec<SlaEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM sla_events e JOIN sla_clocks c ON c.id = e.clock_id \
         WHERE c.subject_kind = $1 AND e.id > $2 ORDER BY e.id LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(kind.as_str())
        .bind(after_id)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter().map(event_from_row).collect()
}
