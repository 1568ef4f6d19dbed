//! Retention: the purge that makes "production images deleted after at most 30 days, demo
//! after 7" true, and the figures that prove it (the purge ledger and the oldest image kept
//! per kind).
//!
//! Order of deletion: blob first, then record. A crash between the two leaves a record whose
//! blob is already gone; the next run deletes that record (deleting a missing blob is not an
//! error). Blobs that no record owns (a crash between writing a blob and inserting its
//! record) are removed by the orphan sweep once they are older than [`ORPHAN_GRACE`].

use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::Row;

use crate::app::AppState;
use crate::clock::{MINUTE, Millis};
use crate::customers::{MAX_DEMO_RETENTION_DAYS, MAX_PRODUCTION_RETENTION_DAYS};

/// Images deleted per batch; each batch's records go in one transaction. Large enough that
/// the database keeps ahead of the file system (the blobs of one batch are unlinked while the
/// records of the previous one are deleted, and unlinking files that are on disk is the slow
/// part), small enough that the purge's own work between two awaits stays short, so API
/// requests on the same runtime are not held behind it.
pub const BATCH: i64 = 1_000;
/// Blob keys whose owners are looked up per query in the orphan sweep.
const SWEEP_CHUNK: usize = 500;
/// A blob without a record is left alone this long (an upload may be between its two writes).
pub const ORPHAN_GRACE: Millis = 15 * MINUTE;

/// What one purge did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PurgeReport {
    pub production_deleted: i64,
    pub demo_deleted: i64,
    pub bytes_deleted: i64,
    pub orphans_removed: i64,
    pub sessions_removed: i64,
    pub links_removed: i64,
    /// Audit rows whose full client address was cut down to its network.
    pub client_ips_erased: i64,
    /// Monitoring counter rows past their window (minute rows) or 90 days (hour rows).
    pub signal_rows_removed: i64,
    pub duration_ms: i64,
    pub oldest_production_age_ms: Option<Millis>,
    pub oldest_demo_age_ms: Option<Millis>,
}

/// An expired image picked for deletion.
struct Expired {
    id: String,
    demo: bool,
    blob_key: Option<String>,
    byte_size: i64,
}

/// Deletes everything past its expiry, sweeps orphans, and writes the ledger row.
pub async fn purge(state: &AppState, run_id: &str) -> anyhow::Result<PurgeReport> {
    let started = Instant::now();
    let now = state.now();
    let mut report = PurgeReport::default();
    // Pipelined: while one batch's records are deleted, the next batch's blobs are unlinked
    // (the database and the file system work side by side). Within each batch the order
    // stays blob first, then record.
    let mut unlinked: Vec<Expired> = Vec::new();
    loop {
        // The unlinked batch's records are still there and come first in this order, so
        // asking for that many more rows yields up to a full new batch.
        let rows = sqlx::query(
            "SELECT id, kind, blob_key, byte_size FROM images WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2",
        )
        .bind(now)
        .bind(BATCH + i64::try_from(unlinked.len()).unwrap_or(0))
        .fetch_all(&state.db.pool)
        .await?;
        let pending: std::collections::HashSet<&str> =
            unlinked.iter().map(|image| image.id.as_str()).collect();
        let mut batch = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            if pending.contains(id.as_str()) {
                continue;
            }
            batch.push(Expired {
                id,
                demo: row.try_get::<String, _>("kind")? == "demo",
                blob_key: row.try_get("blob_key")?,
                byte_size: row.try_get("byte_size")?,
            });
        }
        let keys: Vec<String> = batch
            .iter()
            .filter_map(|image| image.blob_key.clone())
            .collect();
        let (answered, work_started) = (state.metrics.answered.get(), Instant::now());
        let (records, blobs) = tokio::join!(
            delete_records(state, &unlinked, &mut report),
            state.blobs.delete_many(keys)
        );
        records?;
        blobs?;
        if batch.is_empty() {
            break;
        }
        unlinked = batch;
        let pause = pause_after_batch(
            work_started.elapsed(),
            state.metrics.answered.get().saturating_sub(answered),
        );
        if pause.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(pause).await;
        }
    }
    report.orphans_removed = sweep_orphans(state, now).await?;
    report.client_ips_erased = crate::audit::minimise_client_ips(
        &state.db,
        now - state.config.audit_ip_retention_days * crate::clock::DAY,
    )
    .await?;
    let mut tx = state.db.begin().await?;
    report.sessions_removed = i64::try_from(
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
    )
    .unwrap_or(i64::MAX);
    report.links_removed = i64::try_from(
        sqlx::query("DELETE FROM one_time_tokens WHERE expires_at <= $1 OR used_at IS NOT NULL")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
    )
    .unwrap_or(i64::MAX);
    crate::authn::throttle::sweep(&mut tx, now, now - 24 * 60 * MINUTE).await?;
    crate::api::demo::sweep(&mut tx, now).await?;
    report.signal_rows_removed = crate::alerts::signals::purge(
        &mut tx,
        now,
        state.config.signal_minute_hours * crate::clock::HOUR,
    )
    .await?;
    let (production, demo) = oldest_ages(state, now).await?;
    report.oldest_production_age_ms = production;
    report.oldest_demo_age_ms = demo;
    report.duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO purge_ledger (run_id, at, production_deleted, demo_deleted, bytes_deleted, \
         orphans_removed, duration_ms, oldest_production_age_ms, oldest_demo_age_ms, \
         client_ips_erased, signal_rows_removed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(run_id)
    .bind(now)
    .bind(report.production_deleted)
    .bind(report.demo_deleted)
    .bind(report.bytes_deleted)
    .bind(report.orphans_removed)
    .bind(report.duration_ms)
    .bind(report.oldest_production_age_ms)
    .bind(report.oldest_demo_age_ms)
    .bind(report.client_ips_erased)
    .bind(report.signal_rows_removed)
    .execute(&mut *tx)
    .await?;
    crate::audit::append(
        &mut tx,
        now,
        &crate::audit::RequestMeta::default(),
        crate::audit::AuditEvent::new("system", "retention.purge", format!("run:{run_id}"))
            .detail("production_deleted", report.production_deleted)
            .detail("demo_deleted", report.demo_deleted)
            .detail("orphans_removed", report.orphans_removed)
            .detail("client_ips_erased", report.client_ips_erased)
            .detail("signal_rows_removed", report.signal_rows_removed),
    )
    .await?;
    tx.commit().await?;
    Ok(report)
}

/// Requests per second above which the purge counts the server as busy.
const BUSY_REQUESTS_PER_SECOND: f64 = 50.0;

/// How long the purge waits after a batch that took `work` while the server answered
/// `answered` requests. On an idle server it goes on at once; while the server is busy it
/// rests twice as long as the batch took, leaving the cores (the unlinks are mostly kernel
/// time) to requests. Its interval is minutes long, so a third of the speed under load is
/// still ample: 100 000 images in well under a minute.
fn pause_after_batch(work: Duration, answered: u64) -> Duration {
    let seconds = work.as_secs_f64();
    if seconds > 0.0 && answered as f64 / seconds >= BUSY_REQUESTS_PER_SECOND {
        work.saturating_mul(2)
    } else {
        Duration::ZERO
    }
}

/// Deletes the records of a batch whose blobs are gone, in one transaction, and counts them.
async fn delete_records(
    state: &AppState,
    batch: &[Expired],
    report: &mut PurgeReport,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut tx = state.db.begin().await?;
    let ids: Vec<String> = batch.iter().map(|image| image.id.clone()).collect();
    let deleted = crate::images::delete_many(&mut tx, &ids).await?;
    tx.commit().await?;
    // Counted after the commit: an image deleted by its owner meanwhile is not the purge's.
    for image in batch.iter().filter(|image| deleted.contains(&image.id)) {
        if image.demo {
            report.demo_deleted += 1;
        } else {
            report.production_deleted += 1;
        }
        if image.blob_key.is_some() {
            report.bytes_deleted += image.byte_size;
        }
    }
    Ok(())
}

/// Removes blobs that no image record (nor pentest engagement, nor disclosure attachment) points at and that are older
/// than the grace period.
async fn sweep_orphans(state: &AppState, now: Millis) -> anyhow::Result<i64> {
    let candidates: Vec<String> = state
        .blobs
        .list()
        .await?
        .into_iter()
        .filter(|(_, modified)| now - modified >= ORPHAN_GRACE)
        .map(|(key, _)| key)
        .collect();
    let mut removed = 0;
    // Ownership is looked up a chunk at a time, not a query per blob. An image's blob key is
    // `{scope}/{image id}`, so its owner is found through the primary key (there is no index
    // on `blob_key`), and counts only if it really points at this key.
    for chunk in candidates.chunks(SWEEP_CHUNK) {
        let sql = format!(
            "SELECT blob_key FROM images WHERE id IN ({})",
            crate::db::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for key in chunk {
            query = query.bind(key.rsplit('/').next().unwrap_or(key.as_str()));
        }
        let chunk_keys: std::collections::HashSet<&str> =
            chunk.iter().map(String::as_str).collect();
        let mut owned = std::collections::HashSet::new();
        for row in query.fetch_all(&state.db.pool).await? {
            if let Some(key) = row.try_get::<Option<String>, _>("blob_key")?
                && chunk_keys.contains(key.as_str())
            {
                owned.insert(key);
            }
        }
        // Pentest reports share the blob store; they are kept as long as their engagement.
        owned.extend(
            crate::findings::engagements::owned_report_blobs(
                &mut *state.db.pool.acquire().await?,
                chunk,
            )
            .await?,
        );
        // So are the files researchers attach to disclosure reports.
        owned.extend(
            crate::disclosures::attachments::owned_blobs(
                &mut *state.db.pool.acquire().await?,
                chunk,
            )
            .await?,
        );
        // So are vendors' DPA documents, as long as their record.
        owned.extend(
            crate::vendors::dpa::owned_blobs(&mut *state.db.pool.acquire().await?, chunk).await?,
        );
        let orphans: Vec<String> = chunk
            .iter()
            .filter(|key| !owned.contains(*key))
            .cloned()
            .collect();
        removed += orphans.len() as i64;
        state.blobs.delete_many(orphans).await?;
        tokio::task::yield_now().await;
    }
    Ok(removed)
}

/// Age of the oldest stored (blob-backed) image per kind, at `now`.
pub async fn oldest_ages(
    state: &AppState,
    now: Millis,
) -> Result<(Option<Millis>, Option<Millis>), sqlx::Error> {
    let mut ages = [None, None];
    for (slot, kind) in ["production", "demo"].iter().enumerate() {
        let row = sqlx::query(
            "SELECT MIN(created_at) AS oldest FROM images WHERE kind = $1 AND blob_key IS NOT NULL",
        )
        .bind(*kind)
        .fetch_one(&state.db.pool)
        .await?;
        let oldest: Option<Millis> = row.try_get("oldest")?;
        ages[slot] = oldest.map(|o| (now - o).max(0));
    }
    Ok((ages[0], ages[1]))
}

/// The retention control: is every kept image within its published limit?
#[derive(Debug, Clone)]
pub struct RetentionControl {
    pub oldest_production_age_ms: Option<Millis>,
    pub oldest_demo_age_ms: Option<Millis>,
    pub production_ok: bool,
    pub demo_ok: bool,
    pub last_purge_at: Option<Millis>,
}

/// Evaluates the control from the live data.
pub async fn control(state: &AppState) -> Result<RetentionControl, sqlx::Error> {
    let now = state.now();
    let (production, demo) = oldest_ages(state, now).await?;
    let last_purge_at: Option<Millis> = sqlx::query("SELECT MAX(at) AS at FROM purge_ledger")
        .fetch_one(&state.db.pool)
        .await?
        .try_get("at")?;
    let day = crate::clock::DAY;
    Ok(RetentionControl {
        production_ok: production.is_none_or(|age| age <= MAX_PRODUCTION_RETENTION_DAYS * day),
        demo_ok: demo.is_none_or(|age| age <= MAX_DEMO_RETENTION_DAYS * day),
        oldest_production_age_ms: production,
        oldest_demo_age_ms: demo,
        last_purge_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_rests_between_batches_only_while_the_server_is_busy() {
        let batch = Duration::from_millis(100);
        assert_eq!(pause_after_batch(batch, 0), Duration::ZERO, "idle");
        assert_eq!(pause_after_batch(batch, 4), Duration::ZERO, "40 requests/s");
        assert_eq!(
            pause_after_batch(batch, 6),
            Duration::from_millis(200),
            "60/s"
        );
        assert_eq!(pause_after_batch(batch, 1_000), Duration::from_millis(200));
        assert_eq!(pause_after_batch(Duration::ZERO, 10), Duration::ZERO);
    }
}
