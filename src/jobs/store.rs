//! SQL for job runs: claiming an occurrence, taking over an expired lease, finishing.

use serde_json::Value;
use sqlx::Row;

use super::Trigger;
use crate::clock::Millis;
use crate::db::Db;

/// The newest scheduled occurrence recorded for `job` (running or finished).
pub async fn last_scheduled_occurrence(db: &Db, job: &str) -> Result<Option<Millis>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT MAX(occurrence) AS last FROM job_runs WHERE job = $1 AND run_trigger = 'schedule'",
    )
    .bind(job)
    .fetch_one(&db.pool)
    .await?;
    row.try_get("last")
}

/// Claims an occurrence; `None` if another node already has it.
pub async fn claim(
    db: &Db,
    job: &str,
    occurrence: Millis,
    trigger: Trigger,
    owner: &str,
    now: Millis,
    lease_until: Millis,
) -> Result<Option<String>, sqlx::Error> {
    let id = uuid::Uuid::new_v4().to_string();
    let done = sqlx::query(
        "INSERT INTO job_runs (id, job, occurrence, run_trigger, owner, lease_until, started_at, outcome) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'running') ON CONFLICT (job, occurrence) DO NOTHING",
    )
    .bind(&id)
    .bind(job)
    .bind(occurrence)
    .bind(trigger.as_str())
    .bind(owner)
    .bind(lease_until)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok((done.rows_affected() == 1).then_some(id))
}

/// Takes over one run of `job` whose owner's lease expired; returns (run id, occurrence).
pub async fn take_over_expired(
    db: &Db,
    job: &str,
    owner: &str,
    now: Millis,
    lease_until: Millis,
) -> Result<Option<(String, Millis)>, sqlx::Error> {
    let stale = sqlx::query(
        "SELECT id, occurrence, owner FROM job_runs WHERE job = $1 AND outcome = 'running' AND lease_until < $2 \
         ORDER BY occurrence LIMIT 1",
    )
    .bind(job)
    .bind(now)
    .fetch_optional(&db.pool)
    .await?;
    let Some(stale) = stale else { return Ok(None) };
    let id: String = stale.try_get("id")?;
    let previous_owner: String = stale.try_get("owner")?;
    // Compare-and-set on the old owner and lease: only one node wins the take-over.
    let done = sqlx::query(
        "UPDATE job_runs SET owner = $1, lease_until = $2, attempts = attempts + 1 \
         WHERE id = $3 AND owner = $4 AND outcome = 'running' AND lease_until < $5",
    )
    .bind(owner)
    .bind(lease_until)
    .bind(&id)
    .bind(&previous_owner)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok((done.rows_affected() == 1).then_some((id, stale.try_get("occurrence")?)))
}

/// Records the end of a run (only by its current owner).
#[allow(clippy::too_many_arguments)]
pub async fn finish(
    db: &Db,
    run_id: &str,
    owner: &str,
    now: Millis,
    ok: bool,
    counts: &Value,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE job_runs SET finished_at = $1, outcome = $2, counts = $3, error = $4 \
         WHERE id = $5 AND owner = $6",
    )
    .bind(now)
    .bind(if ok { "ok" } else { "failed" })
    .bind(counts.to_string())
    .bind(error)
    .bind(run_id)
    .bind(owner)
    .execute(&db.pool)
    .await
    .map(|_| ())
}

/// One row of the runs list.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: String,
    pub job: String,
    pub occurrence: Millis,
    pub trigger: String,
    pub owner: String,
    pub attempts: i64,
    pub started_at: Millis,
    pub finished_at: Option<Millis>,
    pub outcome: String,
    pub counts: String,
    pub error: Option<String>,
}

/// The latest runs of `job` (or of every job when empty), newest first.
pub async fn recent_runs(db: &Db, job: &str, limit: i64) -> Result<Vec<RunRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, job, occurrence, run_trigger, owner, attempts, started_at, finished_at, outcome, counts, error \
         FROM job_runs WHERE ($1 = '' OR job = $1) ORDER BY started_at DESC LIMIT $2",
    )
    .bind(job)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(RunRow {
                id: r.try_get("id")?,
                job: r.try_get("job")?,
                occurrence: r.try_get("occurrence")?,
                trigger: r.try_get("run_trigger")?,
                owner: r.try_get("owner")?,
                attempts: i64::from(r.try_get::<i32, _>("attempts")?),
                started_at: r.try_get("started_at")?,
                finished_at: r.try_get("finished_at")?,
                outcome: r.try_get("outcome")?,
                counts: r.try_get("counts")?,
                error: r.try_get("error")?,
            })
        })
        .collect()
}
