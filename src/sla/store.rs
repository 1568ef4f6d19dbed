//! SQL for SLA clocks and their events. Every state change is a conditional `UPDATE` whose
//! `WHERE` repeats the state it expects, and callers act only when one row changed: two
//! scheduler nodes, or a person and the watch job, can race on a clock and only one wins.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::format::{join_recipients, split_recipients};
use super::model::{
    ClockFilter, ClockState, NameRecord, Page, SlaClock, SlaRecord, Subject, SubjectKind,
};
use crate::clock::Millis;

const COLUMNS: &str = "id, subject_kind, subject_id, name, target, state, started_at, due_at, \
     duration_ms, reminder_fraction, remind_at, last_reminded_at, reminders_sent, breached_at, \
     stopped_at, paused_at, pause_reason, paused_total_ms, escalation_interval_ms, \
     last_escalated_at, escalations_sent, notify_to, escalate_to, link_path, created_at";

pub(super) fn decode_error(column: &str, problem: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: problem.into(),
    }
}

impl SlaClock {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let kind = SubjectKind::parse(&row.try_get::<String, _>("subject_kind")?)
            .map_err(|e| decode_error("subject_kind", e))?;
        let state = ClockState::parse(&row.try_get::<String, _>("state")?)
            .map_err(|e| decode_error("state", e))?;
        Ok(Self {
            id: row.try_get("id")?,
            subject: Subject::new(kind, row.try_get::<String, _>("subject_id")?),
            name: row.try_get("name")?,
            target: row.try_get("target")?,
            state,
            started_at: row.try_get("started_at")?,
            due_at: row.try_get("due_at")?,
            duration_ms: row.try_get("duration_ms")?,
            reminder_fraction: row.try_get("reminder_fraction")?,
            remind_at: row.try_get("remind_at")?,
            last_reminded_at: row.try_get("last_reminded_at")?,
            reminders_sent: i64::from(row.try_get::<i32, _>("reminders_sent")?),
            breached_at: row.try_get("breached_at")?,
            stopped_at: row.try_get("stopped_at")?,
            paused_at: row.try_get("paused_at")?,
            pause_reason: row.try_get("pause_reason")?,
            paused_total_ms: row.try_get("paused_total_ms")?,
            escalation_interval_ms: row.try_get("escalation_interval_ms")?,
            last_escalated_at: row.try_get("last_escalated_at")?,
            escalations_sent: i64::from(row.try_get::<i32, _>("escalations_sent")?),
            notify_to: split_recipients(&row.try_get::<String, _>("notify_to")?),
            escalate_to: split_recipients(&row.try_get::<String, _>("escalate_to")?),
            link_path: row.try_get("link_path")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

fn clocks(rows: &[AnyRow]) -> Result<Vec<SlaClock>, sqlx::Error> {
    rows.iter().map(SlaClock::from_row).collect()
}

/// Inserts a new running clock; `false` when the subject already has a clock of that name.
pub async fn insert(conn: &mut AnyConnection, clock: &SlaClock) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO sla_clocks (id, subject_kind, subject_id, name, target, state, started_at, \
         due_at, duration_ms, reminder_fraction, remind_at, escalation_interval_ms, notify_to, \
         escalate_to, link_path, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (subject_kind, subject_id, name) DO NOTHING",
    )
    .bind(&clock.id)
    .bind(clock.subject.kind.as_str())
    .bind(&clock.subject.id)
    .bind(&clock.name)
    .bind(&clock.target)
    .bind(clock.state.as_str())
    .bind(clock.started_at)
    .bind(clock.due_at)
    .bind(clock.duration_ms)
    .bind(clock.reminder_fraction)
    .bind(clock.remind_at)
    .bind(clock.escalation_interval_ms)
    .bind(join_recipients(&clock.notify_to))
    .bind(join_recipients(&clock.escalate_to))
    .bind(&clock.link_path)
    .bind(clock.created_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn find(
    conn: &mut AnyConnection,
    subject: &Subject,
    name: &str,
) -> Result<Option<SlaClock>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sla_clocks WHERE subject_kind = $1 AND subject_id = $2 AND name = $3"
    );
    let row = sqlx::query(&sql)
        .bind(subject.kind.as_str())
        .bind(&subject.id)
        .bind(name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(SlaClock::from_row).transpose()
}

pub async fn find_by_id(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<SlaClock>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM sla_clocks WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(SlaClock::from_row).transpose()
}

/// Every clock of a subject, in the order they were started.
pub async fn for_subject(
    conn: &mut AnyConnection,
    subject: &Subject,
) -> Result<Vec<SlaClock>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sla_clocks WHERE subject_kind = $1 AND subject_id = $2 \
         ORDER BY started_at, name"
    );
    let rows = sqlx::query(&sql)
        .bind(subject.kind.as_str())
        .bind(&subject.id)
        .fetch_all(conn)
        .await?;
    clocks(&rows)
}

/// Writes the outcome of a stop, if the clock is still in `expected` and not stopped.
pub async fn record_stop(
    conn: &mut AnyConnection,
    stopped: &SlaClock,
    expected: ClockState,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sla_clocks SET state = $1, stopped_at = $2, due_at = $3, paused_total_ms = $4, \
         breached_at = $5, paused_at = NULL, pause_reason = NULL \
         WHERE id = $6 AND state = $7 AND stopped_at IS NULL",
    )
    .bind(stopped.state.as_str())
    .bind(stopped.stopped_at)
    .bind(stopped.due_at)
    .bind(stopped.paused_total_ms)
    .bind(stopped.breached_at)
    .bind(&stopped.id)
    .bind(expected.as_str())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Pauses a running clock that is not yet due.
pub async fn record_pause(
    conn: &mut AnyConnection,
    id: &str,
    reason: &str,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sla_clocks SET state = 'paused', paused_at = $1, pause_reason = $2 \
         WHERE id = $3 AND state = 'running' AND due_at > $1",
    )
    .bind(now)
    .bind(reason)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Resumes a paused clock, moving its deadline and reminder later by the paused time.
pub async fn record_resume(
    conn: &mut AnyConnection,
    id: &str,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sla_clocks SET state = 'running', due_at = due_at + ($1 - paused_at), \
         remind_at = remind_at + ($1 - paused_at), \
         paused_total_ms = paused_total_ms + ($1 - paused_at), paused_at = NULL, \
         pause_reason = NULL WHERE id = $2 AND state = 'paused'",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How many clocks the watch job handles per query.
pub const WATCH_BATCH: i64 = 200;

/// Running clocks whose deadline has come but whose breach is not recorded yet.
pub async fn unrecorded_breaches(
    conn: &mut AnyConnection,
    now: Millis,
) -> Result<Vec<SlaClock>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sla_clocks WHERE state = 'running' AND due_at <= $1 \
         ORDER BY due_at LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(now)
        .bind(WATCH_BATCH)
        .fetch_all(conn)
        .await?;
    clocks(&rows)
}

/// Records a breach at the deadline itself; `true` only for the one caller that did.
pub async fn record_breach(
    conn: &mut AnyConnection,
    id: &str,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sla_clocks SET state = 'breached', breached_at = due_at \
         WHERE id = $1 AND state = 'running' AND due_at <= $2",
    )
    .bind(id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Running clocks whose reminder time has come (and whose deadline has not).
pub async fn due_reminders(
    conn: &mut AnyConnection,
    now: Millis,
) -> Result<Vec<SlaClock>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sla_clocks WHERE state = 'running' AND reminders_sent = 0 \
         AND remind_at <= $1 AND due_at > $1 ORDER BY remind_at LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(now)
        .bind(WATCH_BATCH)
        .fetch_all(conn)
        .await?;
    clocks(&rows)
}

/// Claims a clock's one reminder; `true` only for the one caller that did.
pub async fn claim_reminder(
    conn: &mut AnyConnection,
    id: &str,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sla_clocks SET reminders_sent = reminders_sent + 1, last_reminded_at = $1 \
         WHERE id = $2 AND state = 'running' AND reminders_sent = 0 AND remind_at <= $1 \
         AND due_at > $1",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The escalation condition: breached, not stopped, and never escalated or not within the
/// interval (no interval: escalated once).
const ESCALATION_DUE: &str = "state = 'breached' AND stopped_at IS NULL \
     AND (last_escalated_at IS NULL OR (escalation_interval_ms IS NOT NULL \
     AND last_escalated_at <= $1 - escalation_interval_ms))";

/// Breached, unstopped clocks due an escalation.
pub async fn due_escalations(
    conn: &mut AnyConnection,
    now: Millis,
) -> Result<Vec<SlaClock>, sqlx::Error> {
    let sql =
        format!("SELECT {COLUMNS} FROM sla_clocks WHERE {ESCALATION_DUE} ORDER BY due_at LIMIT $2");
    let rows = sqlx::query(&sql)
        .bind(now)
        .bind(WATCH_BATCH)
        .fetch_all(conn)
        .await?;
    clocks(&rows)
}

/// Claims the next escalation of a clock; `true` only for the one caller that did, so two
/// nodes never send the same escalation twice.
pub async fn claim_escalation(
    conn: &mut AnyConnection,
    id: &str,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(&format!(
        "UPDATE sla_clocks SET last_escalated_at = $1, escalations_sent = escalations_sent + 1 \
         WHERE id = $2 AND {ESCALATION_DUE}"
    ))
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `state` is matched as of `$3` (now): a running clock past its deadline counts as breached.
const LIST_CONDITION: &str = "($1 = '' OR subject_kind = $1) AND ($2 = '' \
     OR ($2 = 'running' AND state = 'running' AND due_at > $3) \
     OR ($2 = 'breached' AND (state = 'breached' OR (state = 'running' AND due_at <= $3))) \
     OR ($2 = 'met' AND state = 'met') OR ($2 = 'paused' AND state = 'paused'))";

/// Clocks matching `filter`, open ones first (soonest deadline first), with the total count.
pub async fn list(
    conn: &mut AnyConnection,
    now: Millis,
    filter: &ClockFilter,
    page: Page,
) -> Result<(Vec<SlaClock>, i64), sqlx::Error> {
    let kind = filter.kind.map_or("", SubjectKind::as_str);
    let state = filter.state.map_or("", ClockState::as_str);
    let total: i64 = sqlx::query(&format!(
        "SELECT COUNT(*) AS n FROM sla_clocks WHERE {LIST_CONDITION}"
    ))
    .bind(kind)
    .bind(state)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?
    .try_get("n")?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM sla_clocks WHERE {LIST_CONDITION} \
         ORDER BY CASE WHEN stopped_at IS NULL THEN 0 ELSE 1 END, due_at, id LIMIT $4 OFFSET $5"
    ))
    .bind(kind)
    .bind(state)
    .bind(now)
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(&mut *conn)
    .await?;
    Ok((clocks(&rows)?, total))
}

/// Met and breached clocks of `kind` decided in `[since, now]`: a met clock by when it was
/// stopped, a breached one by its deadline (the moment it breached).
pub async fn record(
    conn: &mut AnyConnection,
    now: Millis,
    kind: SubjectKind,
    since: Millis,
) -> Result<SlaRecord, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT name, \
         SUM(CASE WHEN state = 'met' THEN 1 ELSE 0 END) AS met, \
         SUM(CASE WHEN state = 'met' THEN 0 ELSE 1 END) AS breached \
         FROM sla_clocks WHERE subject_kind = $1 AND ( \
           (state = 'met' AND stopped_at >= $2 AND stopped_at <= $3) \
           OR (state IN ('breached', 'running') AND due_at >= $2 AND due_at <= $3)) \
         GROUP BY name ORDER BY name",
    )
    .bind(kind.as_str())
    .bind(since)
    .bind(now)
    .fetch_all(conn)
    .await?;
    let mut record = SlaRecord::default();
    for row in rows {
        let line = NameRecord {
            name: row.try_get("name")?,
            met: row.try_get("met")?,
            breached: row.try_get("breached")?,
        };
        record.met += line.met;
        record.breached += line.breached;
        record.by_name.push(line);
    }
    Ok(record)
}

/// Open and breached-and-open clock counts at `now`, for the dashboard card.
pub async fn open_counts(conn: &mut AnyConnection, now: Millis) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS open_count, \
         COALESCE(SUM(CASE WHEN state = 'breached' OR (state = 'running' AND due_at <= $1) \
         THEN 1 ELSE 0 END), 0) AS breached_count FROM sla_clocks WHERE stopped_at IS NULL",
    )
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok((row.try_get("open_count")?, row.try_get("breached_count")?))
}

/// Replaces who is reminded of (and escalated to about) a clock.
pub async fn set_notify_to(
    conn: &mut AnyConnection,
    clock_id: &str,
    notify_to: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sla_clocks SET notify_to = $1 WHERE id = $2")
        .bind(join_recipients(notify_to))
        .bind(clock_id)
        .execute(conn)
        .await
        .map(|_| ())
}
