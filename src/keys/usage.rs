//! Per-key request counting kept in memory and written in batches.
//!
//! Writing a row per API request made every request a write transaction, and requests of
//! one key queued behind each other on the key's row. Requests are now tallied in memory
//! per (key, hour) and [`UsageTally::flush`] writes all tallies in one transaction, from a
//! background task every [`FLUSH_EVERY`] and once more at shutdown. A flush that fails puts
//! its tallies back, so a database outage delays counts but loses none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::model::Scope;
use crate::clock::{HOUR, Millis};
use crate::db::Db;

/// How often the background task writes tallies. Counts shown in the portal lag by at most
/// this much.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Pending {
    requests: i64,
    errors: i64,
    last_used_at: Millis,
    /// Requests that exercised each scope, in [`Scope::ALL`] order: the access review flags
    /// a key holding a scope it never used.
    by_scope: [i64; 3],
}

impl Pending {
    fn merge(&mut self, other: Pending) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.last_used_at = self.last_used_at.max(other.last_used_at);
        for (mine, theirs) in self.by_scope.iter_mut().zip(other.by_scope) {
            *mine += theirs;
        }
    }
}

/// Unwritten request counts, keyed by (key id, start of the hour).
#[derive(Debug, Default)]
pub struct UsageTally {
    pending: Mutex<HashMap<(String, Millis), Pending>>,
    /// One flush at a time, so a flush that returns has seen every earlier request written.
    flushing: tokio::sync::Mutex<()>,
}

impl UsageTally {
    /// Counts one request of `key_id` at `now`.
    pub fn record(&self, key_id: &str, now: Millis, failed: bool) {
        self.record_scoped(key_id, now, failed, None);
    }

    /// Counts one request of `key_id` at `now` that exercised `scope` (the key held it).
    pub fn record_scoped(&self, key_id: &str, now: Millis, failed: bool, scope: Option<Scope>) {
        let mut by_scope = [0; 3];
        if let Some(index) = scope.and_then(|s| Scope::ALL.iter().position(|x| *x == s)) {
            by_scope[index] = 1;
        }
        let one = Pending {
            requests: 1,
            errors: i64::from(failed),
            last_used_at: now,
            by_scope,
        };
        let hour = now - now.rem_euclid(HOUR);
        self.lock()
            .entry((key_id.to_owned(), hour))
            .or_default()
            .merge(one);
    }

    /// Number of (key, hour) tallies waiting to be written.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// A poisoned lock still holds valid counts: every update is a single merge.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Millis), Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes every pending tally in one transaction and returns how many requests it wrote.
    /// On failure the tallies are put back for the next flush.
    pub async fn flush(&self, db: &Db) -> Result<i64, sqlx::Error> {
        let _one_at_a_time = self.flushing.lock().await;
        let taken = std::mem::take(&mut *self.lock());
        if taken.is_empty() {
            return Ok(0);
        }
        match write(db, &taken).await {
            Ok(written) => Ok(written),
            Err(err) => {
                let mut pending = self.lock();
                for (slot, counts) in taken {
                    pending.entry(slot).or_default().merge(counts);
                }
                Err(err)
            }
        }
    }

    /// Flushes every [`FLUSH_EVERY`] until the task is aborted.
    pub fn spawn_flusher(self: Arc<Self>, db: Db) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(FLUSH_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(err) = self.flush(&db).await {
                    tracing::warn!(error = %err, pending = self.pending(), "could not write API usage counts; will retry");
                }
            }
        })
    }
}

async fn write(db: &Db, tallies: &HashMap<(String, Millis), Pending>) -> Result<i64, sqlx::Error> {
    // Per key: totals across hours for the key row; per (key, hour): the usage row.
    let mut per_key: HashMap<&str, Pending> = HashMap::new();
    for ((key_id, _), counts) in tallies {
        per_key.entry(key_id.as_str()).or_default().merge(*counts);
    }
    let mut tx = db.begin().await?;
    for (key_id, counts) in &per_key {
        sqlx::query(
            "UPDATE api_keys SET request_count = request_count + $1, \
             last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $2 THEN $2 \
             ELSE last_used_at END WHERE id = $3",
        )
        .bind(counts.requests)
        .bind(counts.last_used_at)
        .bind(*key_id)
        .execute(&mut *tx)
        .await?;
    }
    for ((key_id, hour), counts) in tallies {
        let [detect, read, delete] = counts.by_scope;
        sqlx::query(
            "INSERT INTO api_usage (key_id, hour_start, requests, errors, detect_requests, \
             read_requests, delete_requests) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (key_id, hour_start) DO UPDATE SET \
             requests = api_usage.requests + $3, errors = api_usage.errors + $4, \
             detect_requests = api_usage.detect_requests + $5, \
             read_requests = api_usage.read_requests + $6, \
             delete_requests = api_usage.delete_requests + $7",
        )
        .bind(key_id.as_str())
        .bind(*hour)
        .bind(counts.requests)
        .bind(counts.errors)
        .bind(detect)
        .bind(read)
        .bind(delete)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(per_key.values().map(|c| c.requests).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_of_one_key_and_hour_add_up_in_one_tally() {
        let tally = UsageTally::default();
        tally.record("k1", 10, false);
        tally.record("k1", 20, true);
        tally.record("k1", HOUR + 5, false);
        tally.record("k2", 30, false);
        let pending = tally.lock();
        assert_eq!(pending.len(), 3);
        assert_eq!(
            pending[&("k1".to_owned(), 0)],
            Pending {
                requests: 2,
                errors: 1,
                last_used_at: 20,
                by_scope: [0; 3],
            }
        );
        assert_eq!(pending[&("k1".to_owned(), HOUR)].requests, 1);
    }

    #[test]
    fn scoped_requests_are_counted_per_scope() {
        let tally = UsageTally::default();
        tally.record_scoped("k1", 10, false, Some(Scope::ImagesRead));
        tally.record_scoped("k1", 20, true, Some(Scope::ImagesRead));
        tally.record_scoped("k1", 30, false, Some(Scope::ImagesDelete));
        tally.record_scoped("k1", 40, true, None);
        let pending = tally.lock();
        let counts = pending[&("k1".to_owned(), 0)];
        assert_eq!(counts.requests, 4);
        assert_eq!(counts.by_scope, [0, 2, 1]);
    }
}
