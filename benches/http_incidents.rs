//! The incident list under load with 50 000 incidents (each with its triage clock), next to
//! `/healthz` (no session, no database) measured in the same run, with `wrk` as the load
//! generator.
//!
//! Run: `cargo bench --bench http_incidents` (needs `wrk` on PATH; PostgreSQL at
//! `TRUSTPLANE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`, is
//! skipped with a notice when unreachable). `HTTP_BENCH_SECONDS` changes the 10 s per URL.

use std::time::Instant;

use anyhow::bail;
use trustplane::clock::{HOUR, MINUTE, SECOND};
use trustplane::staff::model::Role;

mod common;

use common::wrk::{self, CONNECTIONS, SERIAL, THREADS};
use common::{BenchDb, T0};

const INCIDENTS: i64 = 50_000;
const PER_TX: i64 = 5_000;
/// The newest incidents are new and inside their triage hour.
const FRESH: i64 = 100;

const SEVERITIES: [&str; 4] = ["SEV1", "SEV2", "SEV3", "SEV4"];
const SOURCES: [&str; 5] = ["manual", "alert", "disclosure", "finding", "api"];

/// What the seed made, for checking the pages.
#[derive(Debug, Default)]
struct Seeded {
    open: i64,
    breached: i64,
}

fn main() -> anyhow::Result<()> {
    // `cargo test --all-targets` runs bench binaries without `--bench`: do no load test then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("http_incidents: skipped (run it with `cargo bench --bench http_incidents`)");
        return Ok(());
    }
    wrk::require()?;
    let seconds = wrk::seconds()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        for backend in common::backends().await {
            let db = BenchDb::open(backend).await?;
            let result = measure(&db, seconds).await;
            db.close().await?;
            result?;
        }
        Ok(())
    })
}

/// One incident and its triage clock, as `incidents::open` and `sla::start_at` store them,
/// with the later columns (triage, resolution, closing) filled in as the incident's status
/// requires.
struct Row {
    status: &'static str,
    detected_at: i64,
    triaged_at: Option<i64>,
    resolved_at: Option<i64>,
    closed_at: Option<i64>,
    clock_state: &'static str,
    clock_stopped_at: Option<i64>,
    clock_breached_at: Option<i64>,
}

/// Incident `i` (numbered `i + 1`, one every ten minutes for the past year): most closed, the
/// rest new (a third of those inside their triage hour, the others overdue), triaged,
/// mitigating or resolved; one in twenty was triaged late.
fn row(i: i64) -> Row {
    if i >= INCIDENTS - FRESH {
        let detected_at = T0 - (INCIDENTS - 1 - i) * 30 * SECOND;
        return Row {
            status: "new",
            detected_at,
            triaged_at: None,
            resolved_at: None,
            closed_at: None,
            clock_state: "running",
            clock_stopped_at: None,
            clock_breached_at: None,
        };
    }
    let detected_at = T0 - (INCIDENTS - i) * 10 * MINUTE;
    let due_at = detected_at + HOUR;
    let on_time = Some(detected_at + 20 * MINUTE);
    let done = |status, triaged_at: Option<i64>, late: bool| Row {
        status,
        detected_at,
        triaged_at,
        resolved_at: (status == "resolved" || status == "closed").then_some(detected_at + 5 * HOUR),
        closed_at: (status == "closed").then_some(detected_at + 6 * HOUR),
        clock_state: if late { "breached" } else { "met" },
        clock_stopped_at: triaged_at,
        clock_breached_at: late.then_some(due_at),
    };
    match i % 20 {
        // Overdue: every other breach already recorded by the watch job.
        0 => {
            let recorded = i % 40 == 0;
            Row {
                status: "new",
                detected_at,
                triaged_at: None,
                resolved_at: None,
                closed_at: None,
                clock_state: if recorded { "breached" } else { "running" },
                clock_stopped_at: None,
                clock_breached_at: recorded.then_some(due_at),
            }
        }
        1 => done("triaged", on_time, false),
        2 => done("mitigating", on_time, false),
        3 => done("resolved", on_time, false),
        4 => done("closed", Some(detected_at + 2 * HOUR), true),
        _ => done("closed", on_time, false),
    }
}

async fn seed(db: &BenchDb) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let mut seeded = Seeded::default();
    let mut i = 0;
    while i < INCIDENTS {
        let mut tx = db.state.db.begin().await?;
        for _ in 0..PER_TX.min(INCIDENTS - i) {
            let r = row(i);
            let id = uuid::Uuid::new_v4().to_string();
            let updated_at = r.closed_at.or(r.resolved_at).or(r.triaged_at);
            sqlx::query(
                "INSERT INTO incidents (id, number, title, description, severity, status, \
                   source, detected_at, reported_at, reported_by, assignee_id, oncall_staff_id, \
                   escalation_staff_id, affected_customers, affected_systems, tags, \
                   personal_data, aware_at, triaged_at, resolved_at, closed_at, version, \
                   updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, NULL, $11, $12, \
                   $13, 0, NULL, $14, $15, $16, $17, $18)",
            )
            .bind(&id)
            .bind(i + 1)
            .bind(format!("Elevated error rate on service {} ({i})", i % 37))
            .bind("Seen by the monitoring; see the timeline.")
            .bind(SEVERITIES[(i % 4) as usize])
            .bind(r.status)
            .bind(SOURCES[(i % 5) as usize])
            .bind(r.detected_at)
            .bind(r.detected_at + MINUTE)
            .bind("staff:oncall@example.com")
            .bind(format!("customer-{}", i % 11))
            .bind("api")
            .bind("")
            .bind(r.triaged_at)
            .bind(r.resolved_at)
            .bind(r.closed_at)
            .bind(1 + i64::from(r.triaged_at.is_some()) + i64::from(r.closed_at.is_some()))
            .bind(updated_at.unwrap_or(r.detected_at + MINUTE))
            .execute(&mut *tx)
            .await?;
            let due_at = r.detected_at + HOUR;
            sqlx::query(
                "INSERT INTO sla_clocks (id, subject_kind, subject_id, name, target, state, \
                   started_at, due_at, duration_ms, reminder_fraction, remind_at, \
                   reminders_sent, breached_at, stopped_at, escalation_interval_ms, notify_to, \
                   escalate_to, link_path, created_at) \
                 VALUES ($1, 'incident', $2, 'triage', 'Triage within 60 minutes', $3, $4, $5, \
                   $6, 0.75, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&id)
            .bind(r.clock_state)
            .bind(r.detected_at)
            .bind(due_at)
            .bind(HOUR)
            .bind(r.detected_at + 45 * MINUTE)
            .bind(i32::from(due_at - 15 * MINUTE <= T0))
            .bind(r.clock_breached_at)
            .bind(r.clock_stopped_at)
            .bind(15 * MINUTE)
            .bind("oncall@example.com")
            .bind("lead@example.com")
            .bind(format!("/incidents/{id}"))
            .bind(r.detected_at + MINUTE)
            .execute(&mut *tx)
            .await?;
            if r.status != "resolved" && r.status != "closed" {
                seeded.open += 1;
            }
            if r.clock_state == "breached" || (r.clock_state == "running" && due_at <= T0) {
                seeded.breached += 1;
            }
            i += 1;
        }
        tx.commit().await?;
    }
    let analyze = match db.backend {
        common::Backend::Postgres => "ANALYZE incidents, sla_clocks",
        common::Backend::Sqlite => "ANALYZE",
    };
    sqlx::query(analyze).execute(&db.state.db.pool).await?;
    println!(
        "[{}] seeded {INCIDENTS} incidents with their triage clocks in {:.1} s: {} open, {} \
         with a breached clock",
        db.backend.name(),
        started.elapsed().as_secs_f64(),
        seeded.open,
        seeded.breached
    );
    Ok(seeded)
}

async fn measure(db: &BenchDb, seconds: u32) -> anyhow::Result<()> {
    let name = db.backend.name();
    let seeded = seed(db).await?;
    let token =
        common::staff_with_session(&db.state, "security@example.com", &[Role::Security]).await?;
    let cookie = format!("tp_session={token}");
    let running = trustplane::server::start(db.state.clone(), "127.0.0.1:0".parse()?).await?;
    let base = format!("http://{}", running.addr);

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let pages = (INCIDENTS + 49) / 50;
    let breached_pages = (seeded.breached + 49) / 50;
    let targets = [
        (
            "/healthz".to_owned(),
            "ok".to_owned(),
            "baseline: public, no session, no database",
        ),
        (
            "/incidents".to_owned(),
            format!("page 1 of {pages} · {INCIDENTS} incidents"),
            "first page: open incidents, soonest triage deadline first",
        ),
        (
            "/incidents?page=500".to_owned(),
            format!("page 500 of {pages} · {INCIDENTS} incidents"),
            "page 500 (offset 24 950)",
        ),
        (
            "/incidents?breached=1".to_owned(),
            format!("page 1 of {breached_pages} · {} incidents", seeded.breached),
            "only incidents with a breached clock",
        ),
    ];
    let mut sizes = Vec::new();
    for (path, needle, _) in &targets {
        sizes.push(wrk::check_page(&client, &format!("{base}{path}"), &cookie, needle).await?);
    }

    println!(
        "\n[{name}] wrk -t{THREADS} -c{CONNECTIONS} -d{seconds}s --latency, {INCIDENTS} \
         incidents ({} open, {} breached), signed in as security; serial = median of {SERIAL} \
         one-at-a-time requests",
        seeded.open, seeded.breached
    );
    println!("| GET | serial | p50 | p99 | req/s | timeouts | bytes | p50 × `/healthz` | what |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut baseline = None;
    for ((path, _, what), size) in targets.iter().zip(&sizes) {
        let url = format!("{base}{path}");
        let serial = wrk::serial_median_ms(&client, &url, &cookie).await?;
        // wrk blocks; keep the runtime's workers free to serve it.
        let (wrk_url, wrk_cookie) = (url.clone(), cookie.clone());
        let (result, raw) =
            tokio::task::spawn_blocking(move || wrk::run(&wrk_url, &wrk_cookie, seconds)).await??;
        if result.non_2xx_3xx > 0 {
            bail!("[{name}] GET {path}: error responses under load:\n{raw}");
        }
        let baseline = *baseline.get_or_insert(result.p50_ms);
        println!(
            "| `{path}` | {serial:.2} ms | {:.2} ms | {:.2} ms | {:.0} | {} | {size} | {:.0} | {what} |",
            result.p50_ms,
            result.p99_ms,
            result.requests_per_sec,
            result.timeouts,
            result.p50_ms / baseline
        );
    }
    // The session must still be valid afterwards, or wrk measured something else.
    let (path, needle, _) = &targets[1];
    wrk::check_page(&client, &format!("{base}{path}"), &cookie, needle).await?;

    running.handle.shutdown();
    running.task.await??;
    println!();
    Ok(())
}
