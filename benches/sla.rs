//! The SLA watch tick (`trustplane::sla::watch::run`, the `sla_watch` job's body) with 100 000
//! running clocks, next to the bare indexed query for due clocks in the same run.
//!
//! Of the clocks, 1 000 are past their deadline and 1 000 past their reminder time at `T0`,
//! 100 fall due during the next ten minutes (10 a minute) and the rest are due between four
//! hours and 30 days later. The first tick records the 1 000 breaches, escalates them and
//! sends the 1 000 reminders (one transaction each, with its event, emails and audit row); the
//! next ten ticks move the clock one minute each, as the scheduler does, and find only what
//! fell due in that minute; the last ticks run again at the same time, with nothing to do.
//!
//! Run: `cargo bench --bench sla` (PostgreSQL at `TRUSTPLANE_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, is skipped with a notice when unreachable).

use std::time::{Duration, Instant};

use sqlx::Row;
use trustplane::clock::{DAY, HOUR, MINUTE};
use trustplane::sla::watch::WatchReport;
use trustplane::sla::{ClockState, SlaClock, Subject, SubjectKind};

mod common;

use common::{BenchDb, T0};

const CLOCKS: i64 = 100_000;
const CLOCKS_PER_TX: i64 = 10_000;
/// Clocks past their deadline at `T0`, and clocks past their reminder time (not deadline).
const DUE: i64 = 1_000;
const REMINDER_DUE: i64 = 1_000;
/// Ticks after the first, one minute apart.
const STEADY_TICKS: usize = 10;
/// Clocks falling due during those ticks, one every `ARRIVAL_SPACING` ms (10 a minute).
const ARRIVING: i64 = 100;
const ARRIVAL_SPACING: i64 = 6_000;
/// Ticks at the end without moving the clock: nothing at all to do.
const IDLE_TICKS: usize = 5;
/// Runs of the baseline query.
const BASELINE_RUNS: usize = 21;

const KINDS: [SubjectKind; 5] = [
    SubjectKind::Incident,
    SubjectKind::Finding,
    SubjectKind::Disclosure,
    SubjectKind::AccessReview,
    SubjectKind::Vendor,
];

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("sla: skipped (run it with `cargo bench --bench sla`)");
        return Ok(());
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        for backend in common::backends().await {
            let db = BenchDb::open(backend).await?;
            let result = measure(&db).await;
            db.close().await?;
            result?;
        }
        Ok(())
    })
}

/// Clock `i`: overdue, reminder due, falling due during the one-minute ticks, or due hours to
/// a month after `T0` (most of them).
fn clock(i: i64) -> SlaClock {
    let (started_at, duration, reminder) = if i < DUE {
        (T0 - HOUR - 1 - i * 1_000, HOUR, true)
    } else if i < DUE + REMINDER_DUE {
        // Due 30 minutes after T0, reminded at 3/4 of four hours: the reminder has come.
        (T0 + 30 * MINUTE + i - 4 * HOUR, 4 * HOUR, true)
    } else if i < DUE + REMINDER_DUE + ARRIVING {
        // Falls due during the one-minute ticks; its reminder went out long ago.
        let due_at = T0 + 1 + (i - DUE - REMINDER_DUE) * ARRIVAL_SPACING;
        (due_at - HOUR, HOUR, false)
    } else {
        // Started within the last hour; due four hours to 30 days after it.
        let duration = [4 * HOUR, DAY, 7 * DAY, 30 * DAY][(i % 4) as usize];
        (T0 - (i * 7_919 % HOUR), duration, true)
    };
    let due_at = started_at + duration;
    let (reminder_fraction, remind_at) = if reminder {
        (Some(0.75), Some(started_at + duration * 3 / 4))
    } else {
        (None, None)
    };
    let kind = KINDS[(i % KINDS.len() as i64) as usize];
    let subject_id = uuid::Uuid::new_v4().to_string();
    SlaClock {
        id: uuid::Uuid::new_v4().to_string(),
        link_path: format!("/{}/{subject_id}", kind.as_str()),
        subject: Subject::new(kind, subject_id),
        name: "triage".into(),
        target: "Triage within the agreed time".into(),
        state: ClockState::Running,
        started_at,
        due_at,
        duration_ms: duration,
        reminder_fraction,
        remind_at,
        last_reminded_at: None,
        reminders_sent: 0,
        breached_at: None,
        stopped_at: None,
        paused_at: None,
        pause_reason: None,
        paused_total_ms: 0,
        escalation_interval_ms: Some(30 * MINUTE),
        last_escalated_at: None,
        escalations_sent: 0,
        notify_to: vec![format!("owner{}@example.com", i % 50)],
        escalate_to: vec!["lead@example.com".into()],
        created_at: started_at,
    }
}

/// Inserts the clocks with the store's own insert, in large transactions.
async fn seed(db: &BenchDb) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut i = 0;
    while i < CLOCKS {
        let mut tx = db.state.db.begin().await?;
        for _ in 0..CLOCKS_PER_TX.min(CLOCKS - i) {
            anyhow::ensure!(trustplane::sla::store::insert(&mut tx, &clock(i)).await?);
            i += 1;
        }
        tx.commit().await?;
    }
    if db.backend == common::Backend::Postgres {
        sqlx::query("ANALYZE sla_clocks")
            .execute(&db.state.db.pool)
            .await?;
    } else {
        sqlx::query("ANALYZE").execute(&db.state.db.pool).await?;
    }
    println!(
        "[{}] seeded {CLOCKS} running clocks in {:.1} s",
        db.backend.name(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The plain indexed question: which running clocks are due at `now`.
async fn due_ids(db: &BenchDb, now: i64) -> anyhow::Result<usize> {
    let rows = sqlx::query("SELECT id FROM sla_clocks WHERE state = 'running' AND due_at <= $1")
        .bind(now)
        .fetch_all(&db.state.db.pool)
        .await?;
    Ok(rows.len())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

async fn measure(db: &BenchDb) -> anyhow::Result<()> {
    let name = db.backend.name();
    seed(db).await?;

    // Baseline before the first tick, at T0: the query finds the DUE clocks.
    let mut baseline = Vec::with_capacity(BASELINE_RUNS);
    for _ in 0..BASELINE_RUNS {
        let started = Instant::now();
        let found = due_ids(db, T0).await?;
        baseline.push(ms(started.elapsed()));
        anyhow::ensure!(found == DUE as usize, "baseline found {found} due clocks");
    }

    println!("\n[{name}] {CLOCKS} running clocks; tick = trustplane::sla::watch::run(&state)");
    println!(
        "{:<28} {:>10} {:>9} {:>9} {:>10} {:>7} {:>9}",
        "what", "time ms", "breached", "reminded", "escalated", "emails", "webhooks"
    );
    let (first_ms, first) = tick_once(db).await?;
    print_tick("tick 1 (marks breaches)", first_ms, &first);
    anyhow::ensure!(
        first.breached == DUE && first.escalated == DUE && first.reminded == REMINDER_DUE,
        "unexpected first tick: {first:?}"
    );

    let mut steady = Vec::with_capacity(STEADY_TICKS);
    let mut arrived = 0;
    for tick in 0..STEADY_TICKS {
        db.clock.advance(MINUTE);
        let (took, report) = tick_once(db).await?;
        arrived += report.breached;
        steady.push(took);
        print_tick(
            &format!("tick {} (+{} min)", tick + 2, tick + 1),
            took,
            &report,
        );
    }
    anyhow::ensure!(arrived == ARRIVING, "{arrived} breaches during the ticks");
    let mut idle = Vec::with_capacity(IDLE_TICKS);
    for tick in 0..IDLE_TICKS {
        let (took, report) = tick_once(db).await?;
        anyhow::ensure!(report.breached + report.reminded + report.escalated == 0);
        idle.push(took);
        print_tick(
            &format!("tick {} (same time)", tick + STEADY_TICKS + 2),
            took,
            &report,
        );
    }

    // The baseline again at the time of the last tick, when it finds nothing.
    let now = db.state.now();
    let mut after = Vec::with_capacity(BASELINE_RUNS);
    for _ in 0..BASELINE_RUNS {
        let started = Instant::now();
        let found = due_ids(db, now).await?;
        after.push(ms(started.elapsed()));
        anyhow::ensure!(found == 0, "{found} due clocks left");
    }
    let running: i64 = sqlx::query("SELECT COUNT(*) AS n FROM sla_clocks WHERE state = 'running'")
        .fetch_one(&db.state.db.pool)
        .await?
        .try_get("n")?;
    println!("\n[{name}] summary ({running} clocks still running afterwards)");
    println!("| measurement | median | min | max |\n|---|---:|---:|---:|");
    let baseline_median = summary_row(
        &format!(
            "baseline: `SELECT id … WHERE state = 'running' AND due_at <= $1`, {DUE} rows \
             ({BASELINE_RUNS} runs)"
        ),
        &baseline,
    );
    let after_median = summary_row(
        &format!("same query after the ticks, 0 rows ({BASELINE_RUNS} runs)"),
        &after,
    );
    summary_row(
        &format!("tick 1: {DUE} breaches, {DUE} escalations, {REMINDER_DUE} reminders"),
        &[first_ms],
    );
    let steady_median = summary_row(
        &format!(
            "ticks 2–{}: one minute apart, {} breaches + escalations each",
            STEADY_TICKS + 1,
            ARRIVING / STEADY_TICKS as i64
        ),
        &steady,
    );
    let idle_median = summary_row(
        &format!(
            "ticks {}–{}: nothing due",
            STEADY_TICKS + 2,
            STEADY_TICKS + IDLE_TICKS + 1
        ),
        &idle,
    );
    println!(
        "tick 1 per step (a breach, an escalation or a reminder): {:.2} ms; steady tick ÷ \
         baseline: {:.1}; idle tick ÷ same query with 0 rows: {:.1}\n",
        first_ms / (first.breached + first.escalated + first.reminded) as f64,
        steady_median / baseline_median,
        idle_median / after_median
    );
    Ok(())
}

async fn tick_once(db: &BenchDb) -> anyhow::Result<(f64, WatchReport)> {
    let started = Instant::now();
    let report = trustplane::sla::watch::run(&db.state).await?;
    Ok((ms(started.elapsed()), report))
}

fn print_tick(what: &str, took: f64, report: &WatchReport) {
    println!(
        "{what:<28} {took:>10.2} {:>9} {:>9} {:>10} {:>7} {:>9}",
        report.breached, report.reminded, report.escalated, report.emails, report.webhooks
    );
}

/// Prints a summary table row; returns the median.
fn summary_row(what: &str, values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "| {what} | {median:.2} ms | {:.2} ms | {:.2} ms |",
        sorted[0],
        sorted[sorted.len() - 1]
    );
    median
}
