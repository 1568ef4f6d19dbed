//! SQL of the monitoring counters: the batched upserts of minute and hour rows and of the
//! networks each key was used from, and the purge of rows past their window.

use std::collections::HashMap;

use sqlx::AnyConnection;

use super::signals::{BASELINES_KEPT, COUNT_COLUMNS, Counts, HOUR_ROWS_KEPT, Pending};
use crate::clock::{HOUR, Millis};

/// Rows per multi-row INSERT (12 parameters each, well under every backend's limit).
const ROWS_PER_STATEMENT: usize = 50;

async fn upsert_counts(
    conn: &mut AnyConnection,
    table: &str,
    time_column: &str,
    rows: &[(&str, &str, Millis, Counts)],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut sql =
            format!("INSERT INTO {table} (kind, subject, {time_column}, {COUNT_COLUMNS}) VALUES ");
        for i in 0..chunk.len() {
            let base = i * 12;
            let params: Vec<String> = (1..=12).map(|n| format!("${}", base + n)).collect();
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            sql.push_str(&params.join(", "));
            sql.push(')');
        }
        sql.push_str(&format!(
            " ON CONFLICT (kind, subject, {time_column}) DO UPDATE SET "
        ));
        let updates: Vec<String> = COUNT_COLUMNS
            .split(", ")
            .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
            .collect();
        sql.push_str(&updates.join(", "));
        let mut query = sqlx::query(&sql);
        for (kind, subject, at, counts) in chunk {
            query = query.bind(*kind).bind(*subject).bind(*at);
            for value in counts.values() {
                query = query.bind(value);
            }
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

pub(super) async fn write(conn: &mut AnyConnection, pending: &Pending) -> Result<(), sqlx::Error> {
    let minutes: Vec<(&str, &str, Millis, Counts)> = pending
        .counts
        .iter()
        .map(|((kind, subject, minute), c)| (kind.as_str(), subject.as_str(), *minute, *c))
        .collect();
    let mut hours: HashMap<(&str, &str, Millis), Counts> = HashMap::new();
    for (kind, subject, minute, c) in &minutes {
        hours
            .entry((kind, subject, minute - minute.rem_euclid(HOUR)))
            .or_default()
            .merge(*c);
    }
    let hours: Vec<(&str, &str, Millis, Counts)> = hours
        .into_iter()
        .map(|((k, s, h), c)| (k, s, h, c))
        .collect();
    upsert_counts(conn, "signal_minutes", "minute_start", &minutes).await?;
    upsert_counts(conn, "signal_hours", "hour_start", &hours).await?;
    for ((key_id, network), (first, last)) in &pending.key_networks {
        sqlx::query(
            "INSERT INTO key_networks (key_id, network, first_seen_at, last_seen_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (key_id, network) DO UPDATE SET \
             last_seen_at = CASE WHEN key_networks.last_seen_at < $4 THEN $4 \
             ELSE key_networks.last_seen_at END",
        )
        .bind(key_id.as_str())
        .bind(network.as_str())
        .bind(*first)
        .bind(*last)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Deletes minute rows older than `minute_window`, hour rows older than [`HOUR_ROWS_KEPT`]
/// and baselines idle for [`BASELINES_KEPT`]; returns the rows deleted (the purge ledger
/// records it).
pub async fn purge(
    conn: &mut AnyConnection,
    now: Millis,
    minute_window: Millis,
) -> Result<i64, sqlx::Error> {
    let minutes = sqlx::query("DELETE FROM signal_minutes WHERE minute_start < $1")
        .bind(now - minute_window)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let hours = sqlx::query("DELETE FROM signal_hours WHERE hour_start < $1")
        .bind(now - HOUR_ROWS_KEPT)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let baselines = sqlx::query("DELETE FROM signal_baselines WHERE last_minute < $1")
        .bind(now - BASELINES_KEPT)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(i64::try_from(minutes + hours + baselines).unwrap_or(i64::MAX))
}
