//! SQL of the evaluation history: one row per control per evaluation, with the facts it
//! looked at, and when the control entered its current state.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::model::{ControlState, Outcome, StoredFacts};
use crate::clock::Millis;
use crate::db::Db;

/// One stored evaluation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Evaluation {
    pub id: String,
    pub control_id: String,
    pub state: ControlState,
    /// When the control entered `state` (the first evaluation of this run of states).
    pub state_since: Millis,
    pub summary: String,
    /// `StoredFacts` as JSON.
    pub facts: String,
    pub evaluated_at: Millis,
    /// Who asked: `system:scheduler`, `staff:…`, `cli:…`.
    pub evaluated_by: String,
}

impl Evaluation {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let state: String = row.try_get("state")?;
        Ok(Self {
            id: row.try_get("id")?,
            control_id: row.try_get("control_id")?,
            state: ControlState::parse(&state).unwrap_or(ControlState::NoData),
            state_since: row.try_get("state_since")?,
            summary: row.try_get("summary")?,
            facts: row.try_get("facts")?,
            evaluated_at: row.try_get("evaluated_at")?,
            evaluated_by: row.try_get("evaluated_by")?,
        })
    }

    /// The facts, parsed (an unreadable row shows none rather than failing the page).
    pub fn stored_facts(&self) -> StoredFacts {
        serde_json::from_str(&self.facts).unwrap_or_default()
    }
}

const COLUMNS: &str =
    "id, control_id, state, state_since, summary, facts, evaluated_at, evaluated_by";

/// Records an evaluation; `previous` is the control's latest one before it (its
/// `state_since` carries over while the state holds).
pub async fn insert(
    conn: &mut AnyConnection,
    control_id: &str,
    outcome: &Outcome,
    previous: Option<&Evaluation>,
    evaluated_by: &str,
    now: Millis,
) -> Result<Evaluation, sqlx::Error> {
    let state_since = match previous {
        Some(p) if p.state == outcome.state => p.state_since,
        _ => now,
    };
    let facts = serde_json::to_string(&StoredFacts {
        facts: outcome.facts.clone(),
        offending: outcome.offending.clone(),
        public_note: outcome.public_note.clone(),
    })
    .unwrap_or_else(|_| "{}".to_owned());
    let evaluation = Evaluation {
        id: uuid::Uuid::new_v4().to_string(),
        control_id: control_id.to_owned(),
        state: outcome.state,
        state_since,
        summary: outcome.summary.clone(),
        facts,
        evaluated_at: now,
        evaluated_by: evaluated_by.to_owned(),
    };
    sqlx::query(&format!(
        "INSERT INTO control_evaluations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(&evaluation.id)
    .bind(&evaluation.control_id)
    .bind(evaluation.state.as_str())
    .bind(evaluation.state_since)
    .bind(&evaluation.summary)
    .bind(&evaluation.facts)
    .bind(evaluation.evaluated_at)
    .bind(&evaluation.evaluated_by)
    .execute(conn)
    .await?;
    Ok(evaluation)
}

/// The newest evaluation of one control.
pub async fn latest(
    conn: &mut AnyConnection,
    control_id: &str,
) -> Result<Option<Evaluation>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM control_evaluations WHERE control_id = $1 \
         ORDER BY evaluated_at DESC, id DESC LIMIT 1"
    ))
    .bind(control_id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(Evaluation::from_row)
    .transpose()
}

/// The newest evaluation of every control that has one.
pub async fn latest_all(db: &Db) -> Result<Vec<Evaluation>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM control_evaluations e WHERE evaluated_at = \
         (SELECT MAX(evaluated_at) FROM control_evaluations l WHERE l.control_id = e.control_id) \
         ORDER BY control_id, id"
    ))
    .fetch_all(&db.pool)
    .await?;
    let mut out: Vec<Evaluation> = Vec::new();
    for row in &rows {
        let e = Evaluation::from_row(row)?;
        // Two evaluations in the same millisecond: keep one.
        if out.last().is_none_or(|l| l.control_id != e.control_id) {
            out.push(e);
        }
    }
    Ok(out)
}

/// The newest `limit` evaluations of one control, newest first.
pub async fn history(
    conn: &mut AnyConnection,
    control_id: &str,
    limit: i64,
) -> Result<Vec<Evaluation>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM control_evaluations WHERE control_id = $1 \
         ORDER BY evaluated_at DESC, id DESC LIMIT $2"
    ))
    .bind(control_id)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(Evaluation::from_row).collect()
}

/// Every evaluation in `[from, to)`, oldest first, for evidence exports.
pub async fn history_between(
    db: &Db,
    from: Millis,
    to: Millis,
) -> Result<Vec<Evaluation>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM control_evaluations WHERE evaluated_at >= $1 AND evaluated_at < $2 \
         ORDER BY evaluated_at, control_id, id"
    ))
    .bind(from)
    .bind(to)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(Evaluation::from_row).collect()
}

/// The audit chain head at the end of each of the `days` UTC days before `today_start`:
/// (day start, last sequence number of that day or before, its hash). Days before the first
/// event are left out.
pub async fn daily_heads(
    db: &Db,
    today_start: Millis,
    days: i64,
) -> Result<Vec<(Millis, i64, String)>, sqlx::Error> {
    let mut heads = Vec::new();
    for back in 1..=days {
        let day_start = today_start - back * crate::clock::DAY;
        let end = day_start + crate::clock::DAY;
        let row = sqlx::query(
            "SELECT seq, hash FROM audit_log WHERE at < $1 ORDER BY at DESC, seq DESC LIMIT 1",
        )
        .bind(end)
        .fetch_optional(&db.pool)
        .await?;
        match row {
            Some(row) => heads.push((day_start, row.try_get("seq")?, row.try_get("hash")?)),
            None => break,
        }
    }
    Ok(heads)
}
