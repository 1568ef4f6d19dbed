//! Retention: the purge that makes "production images deleted after at most 30 days, demo
//! after 7" true, and the figures that prove it (the purge ledger and the oldest image kept
//! per kind).
//!
//! Order of deletion: blob first, then record. A crash between the two leaves a record whose
//! blob is already gone; the next run deletes that record (deleting a missing blob is not an
//! error). Blobs that no record owns (a crash between writing a blob and inserting its
//! record) are removed by the orphan sweep once they are older than [`ORPHAN_GRACE`].

use serde::Serialize;
use sqlx::Row;

use crate::app::AppState;
use crate::clock::{MINUTE, Millis};
use crate::customers::{MAX_DEMO_RETENTION_DAYS, MAX_PRODUCTION_RETENTION_DAYS};

/// Images deleted per batch; the purge yields between batches so the API keeps answering.
pub const BATCH: i64 = 500;
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
    let started = std::time::Instant::now();
    let now = state.now();
    let mut report = PurgeReport::default();
    loop {
        let rows = sqlx::query(
            "SELECT id, kind, blob_key, byte_size FROM images WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2",
        )
        .bind(now)
        .bind(BATCH)
        .fetch_all(&state.db.pool)
        .await?;
        if rows.is_empty() {
            break;
        }
        let batch = rows
            .iter()
            .map(|row| {
                Ok::<_, sqlx::Error>(Expired {
                    id: row.try_get("id")?,
                    demo: row.try_get::<String, _>("kind")? == "demo",
                    blob_key: row.try_get("blob_key")?,
                    byte_size: row.try_get("byte_size")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Every blob of the batch is gone before any of its records.
        let keys: Vec<String> = batch
            .iter()
            .filter_map(|image| image.blob_key.clone())
            .collect();
        state.blobs.delete_many(keys).await?;
        let mut tx = state.db.begin().await?;
        let ids: Vec<String> = batch.iter().map(|image| image.id.clone()).collect();
        let deleted = crate::images::delete_many(&mut tx, &ids).await?;
        for image in &batch {
            if deleted.contains(&image.id) {
                if image.demo {
                    report.demo_deleted += 1;
                } else {
                    report.production_deleted += 1;
                }
                if image.blob_key.is_some() {
                    report.bytes_deleted += image.byte_size;
                }
            }
        }
        tx.commit().await?;
        tokio::task::yield_now().await;
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
    // Ownership is looked up a chunk at a time, not a query per blob.
    for chunk in candidates.chunks(BATCH.unsigned_abs() as usize) {
        let sql = format!(
            "SELECT blob_key FROM images WHERE blob_key IN ({})",
            crate::db::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for key in chunk {
            query = query.bind(key.as_str());
        }
        let mut owned: std::collections::HashSet<String> = query
            .fetch_all(&state.db.pool)
            .await?
            .iter()
            .map(|row| row.try_get("blob_key"))
            .collect::<Result<_, _>>()?;
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
