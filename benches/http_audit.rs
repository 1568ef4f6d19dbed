//! The audit-log page under load with 100 000 events, next to `/healthz` (no session, no
//! database) and the dashboard (session lookup plus a few status queries) measured in the same
//! run, with `wrk` as the load generator.
//!
//! Run: `cargo bench --bench http_audit` (needs `wrk` on PATH; PostgreSQL at
//! `TRUSTPLANE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`, is
//! skipped with a notice when unreachable). `HTTP_BENCH_SECONDS` changes the 10 s per URL.

use std::time::Instant;

use anyhow::bail;
use trustplane::audit::{self, AuditEvent, Outcome, RequestMeta};
use trustplane::staff::model::Role;

mod common;

use common::wrk::{self, CONNECTIONS as WRK_CONNECTIONS, SERIAL, THREADS as WRK_THREADS};
use common::{BenchDb, T0};

const EVENTS: i64 = 100_000;
const EVENTS_PER_TX: i64 = 10_000;

/// The URLs measured, the first being the baseline.
const TARGETS: [(&str, &str); 7] = [
    ("/healthz", "baseline: public, no session, no database"),
    ("/", "dashboard: session lookup + status queries"),
    ("/audit", "audit log, newest 50 of 100 000"),
    ("/audit?before=50000", "audit log, a page in the middle"),
    (
        "/audit?actor=nobody",
        "audit log, actor filter that matches nothing",
    ),
    (
        "/audit?actor=user7%40",
        "audit log, actor filter matching one actor (2 500 events)",
    ),
    (
        "/audit?actor=staff%3Auser",
        "audit log, actor filter matching all 40 staff actors",
    ),
];

const ACTIONS: [&str; 5] = [
    "auth.login",
    "auth.logout",
    "auth.mfa",
    "staff.role.grant",
    "authz.denied",
];

fn main() -> anyhow::Result<()> {
    // `cargo test --all-targets` runs bench binaries without `--bench`: do no load test then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("http_audit: skipped (run it with `cargo bench --bench http_audit`)");
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

/// Appends `EVENTS` varied events in large transactions.
async fn seed(db: &BenchDb) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut i = 0;
    while i < EVENTS {
        let mut tx = db.state.db.begin().await?;
        for _ in 0..EVENTS_PER_TX.min(EVENTS - i) {
            let meta = RequestMeta {
                client_ip: Some(format!("10.0.{}.{}", i % 7, i % 251)),
                request_id: Some(format!("req-{i:08}")),
            };
            let outcome = match i % 10 {
                0 => Outcome::Failure,
                1 => Outcome::Denied,
                _ => Outcome::Success,
            };
            let event = AuditEvent::new(
                format!("staff:user{}@example.com", i % 40),
                ACTIONS[(i % ACTIONS.len() as i64) as usize],
                format!("staff:{}", uuid::Uuid::new_v4()),
            )
            .outcome(outcome)
            .detail("i", i)
            .detail("method", "POST");
            audit::append(&mut tx, T0 + i, &meta, event).await?;
            i += 1;
        }
        tx.commit().await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "[{}] seeded {EVENTS} audit events in {secs:.1} s ({:.0} events/s in transactions of \
         {EVENTS_PER_TX})",
        db.backend.name(),
        EVENTS as f64 / secs
    );
    Ok(())
}

async fn measure(db: &BenchDb, seconds: u32) -> anyhow::Result<()> {
    let name = db.backend.name();
    seed(db).await?;
    let token =
        common::staff_with_session(&db.state, "auditor@example.com", &[Role::Auditor]).await?;
    let cookie = format!("tp_session={token}");
    let running = trustplane::server::start(db.state.clone(), "127.0.0.1:0".parse()?).await?;
    let base = format!("http://{}", running.addr);

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let needles = [
        "ok",
        "Dashboard",
        "100000 events.",
        "<td>49999</td>",
        "No events match these filters.",
        "staff:user7@example.com",
        "staff:user39@example.com",
    ];
    let mut sizes = Vec::new();
    for ((path, _), needle) in TARGETS.iter().zip(needles) {
        sizes.push(wrk::check_page(&client, &format!("{base}{path}"), &cookie, needle).await?);
    }

    println!(
        "\n[{name}] wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{seconds}s --latency, \
         {EVENTS} audit events, signed in as auditor; serial = median of {SERIAL} one-at-a-time \
         requests"
    );
    println!(
        "{:<20} {:>9} {:>8} {:>8} {:>7} {:>8} {:>8} {:>8}  what",
        "GET", "serial ms", "p50 ms", "p99 ms", "req/s", "timeouts", "bytes", "p50 x"
    );
    let mut baseline = None;
    for ((path, what), size) in TARGETS.iter().zip(&sizes) {
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
            "{:<20} {:>9.2} {:>8.2} {:>8.2} {:>7.0} {:>8} {:>8} {:>8.1}  {what}",
            path,
            serial,
            result.p50_ms,
            result.p99_ms,
            result.requests_per_sec,
            result.timeouts,
            size,
            result.p50_ms / baseline
        );
    }
    // The session must still be valid afterwards, or wrk measured something else.
    wrk::check_page(&client, &format!("{base}/audit"), &cookie, "100000 events.").await?;

    running.handle.shutdown();
    running.task.await??;
    println!();
    Ok(())
}
