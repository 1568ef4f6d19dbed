//! One tick of the anomaly detectors (`trustplane::alerts::tick::run`) with 10 000 active keys
//! and 48 hours of per-minute counter rows, next to reading the same minute's rows with one
//! bare `SELECT` in the same run.
//!
//! Each tick evaluates exactly one completed minute: the minute's counter rows, every
//! subject's baseline (loaded, updated, written back), the new-network check and the
//! progress row. The detectors read only the minute they evaluate, so the kept history should
//! not show in the tick's time; the bare read is the floor it is compared with.
//!
//! Run: `cargo bench --bench monitoring` (PostgreSQL at `TRUSTPLANE_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, is skipped with a notice when unreachable).
//! `MONITORING_BENCH_KEYS` (default 10 000) and `MONITORING_BENCH_HOURS` (default 48) size
//! the seeded history; `MONITORING_BENCH_TICKS` (default 15) is the number of ticks timed.

use std::time::Instant;

use anyhow::Context;
use sqlx::Row;
use trustplane::clock::{MINUTE, Millis};

mod common;

use common::{BenchDb, T0};

/// Counter columns of `signal_minutes` after (kind, subject, minute_start).
const COUNTS: &str = "requests, s2xx, s401, s403, s4xx_input, s429, s4xx_other, s5xx, bytes";

fn env_i64(name: &str, default: i64) -> anyhow::Result<i64> {
    match std::env::var(name) {
        Ok(raw) => raw.parse().with_context(|| name.to_owned()),
        Err(_) => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("monitoring: skipped (run it with `cargo bench --bench monitoring`)");
        return Ok(());
    }
    let keys = env_i64("MONITORING_BENCH_KEYS", 10_000)?;
    let hours = env_i64("MONITORING_BENCH_HOURS", 48)?;
    let ticks = env_i64("MONITORING_BENCH_TICKS", 15)?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut rows = Vec::new();
    rt.block_on(async {
        for backend in common::backends().await {
            let db = BenchDb::open(backend).await?;
            let result = measure(&db, keys, hours, ticks).await;
            db.close().await?;
            rows.push((backend.name(), result?));
        }
        anyhow::Ok(())
    })?;
    println!(
        "\n### Detector tick, {keys} active keys, {hours} h of minute rows ({} rows), {ticks} ticks\n",
        keys * hours * 60
    );
    println!(
        "| backend | seed | tick p50 | tick max | bare read of the minute's rows p50 | tick / read |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, m) in &rows {
        println!(
            "| {name} | {:.0} s | {:.1} ms | {:.1} ms | {:.1} ms | {:.1}× |",
            m.seed_s,
            m.tick_p50_ms,
            m.tick_max_ms,
            m.read_p50_ms,
            m.tick_p50_ms / m.read_p50_ms
        );
    }
    Ok(())
}

struct Measured {
    seed_s: f64,
    tick_p50_ms: f64,
    tick_max_ms: f64,
    read_p50_ms: f64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Builds `first..last` as one `INSERT … SELECT` from a row generator, so seeding millions of
/// rows is one statement per key block on either database.
fn series(backend: common::Backend, name: &str, from: i64, to: i64) -> String {
    match backend {
        common::Backend::Postgres => {
            format!("generate_series({from}, {to}) AS {name}(v)")
        }
        common::Backend::Sqlite => format!(
            "(WITH RECURSIVE s(v) AS (SELECT {from} UNION ALL SELECT v + 1 FROM s WHERE v < {to}) \
             SELECT v FROM s) AS {name}"
        ),
    }
}

async fn seed(db: &BenchDb, keys: i64, minutes: i64, first_minute: Millis) -> anyhow::Result<()> {
    let pool = &db.state.db.pool;
    // Key-major order: each key's rows arrive in primary-key order.
    const KEYS_PER_STATEMENT: i64 = 250;
    let mut k = 0;
    while k < keys {
        let last = (k + KEYS_PER_STATEMENT).min(keys) - 1;
        let sql = format!(
            "INSERT INTO signal_minutes (kind, subject, minute_start, {COUNTS}) \
             SELECT 'key', 'key' || CAST(k.v AS TEXT), {first_minute} + m.v * {MINUTE}, \
             20 + (k.v + m.v) % 7, 19 + (k.v + m.v) % 7, 0, 0, 1, 0, 0, 0, 4096 \
             FROM {} CROSS JOIN {}",
            series(db.backend, "k", k, last),
            series(db.backend, "m", 0, minutes - 1),
        );
        sqlx::query(&sql).execute(pool).await?;
        k = last + 1;
    }
    // Every key has a settled baseline up to the minute before the timed ones.
    let baseline_minute = first_minute + (minutes - ticks_margin()) * MINUTE - MINUTE;
    sqlx::query(&format!(
        "INSERT INTO signal_baselines (kind, subject, mean, variance, share_mean, share_variance, \
         samples, last_minute) SELECT 'key', 'key' || CAST(k.v AS TEXT), 23.0, 4.0, 0.04, 0.0004, \
         {}, {baseline_minute} FROM {}",
        minutes - ticks_margin(),
        series(db.backend, "k", 0, keys - 1)
    ))
    .execute(pool)
    .await?;
    sqlx::query("INSERT INTO alert_progress (name, minute) VALUES ('detectors', $1)")
        .bind(baseline_minute)
        .execute(pool)
        .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

/// The timed ticks are the last minutes of the seeded history (at most this many).
fn ticks_margin() -> i64 {
    60
}

async fn measure(db: &BenchDb, keys: i64, hours: i64, ticks: i64) -> anyhow::Result<Measured> {
    let minutes = hours * 60;
    let ticks = ticks.min(ticks_margin());
    let now_minute = T0 - T0.rem_euclid(MINUTE);
    let first_minute = now_minute - minutes * MINUTE;
    println!(
        "[{}] seeding {} minute rows for {keys} keys …",
        db.backend.name(),
        keys * minutes
    );
    let started = Instant::now();
    seed(db, keys, minutes, first_minute).await?;
    let seed_s = started.elapsed().as_secs_f64();
    let seeded: i64 = sqlx::query("SELECT COUNT(*) AS n FROM signal_minutes")
        .fetch_one(&db.state.db.pool)
        .await?
        .try_get("n")?;
    println!(
        "[{}] seeded {seeded} rows in {seed_s:.0} s",
        db.backend.name()
    );

    let mut tick_ms = Vec::new();
    let mut read_ms = Vec::new();
    let mut evaluated = first_minute + (minutes - ticks_margin()) * MINUTE - MINUTE;
    for _ in 0..ticks {
        let minute = evaluated + MINUTE;
        // The clock stands just after the minute (and its grace) has ended: one minute to do.
        db.clock
            .set(minute + MINUTE + trustplane::alerts::tick::GRACE);
        let started = Instant::now();
        let report = trustplane::alerts::tick::run(&db.state).await?;
        tick_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            report.minutes_evaluated == 1 && report.subjects_seen == keys,
            "the tick evaluated {} minutes and {} subjects",
            report.minutes_evaluated,
            report.subjects_seen
        );
        anyhow::ensure!(
            report.alerts_raised == 0,
            "steady traffic raised {} alerts",
            report.alerts_raised
        );
        let started = Instant::now();
        let rows = sqlx::query(&format!(
            "SELECT kind, subject, {COUNTS} FROM signal_minutes WHERE minute_start = $1"
        ))
        .bind(minute)
        .fetch_all(&db.state.db.pool)
        .await?;
        read_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(rows.len() as i64 == keys, "read {} rows", rows.len());
        evaluated = minute;
    }
    let tick_max_ms = tick_ms.iter().copied().fold(0.0, f64::max);
    Ok(Measured {
        seed_s,
        tick_p50_ms: median(&mut tick_ms),
        tick_max_ms,
        read_p50_ms: median(&mut read_ms),
    })
}
