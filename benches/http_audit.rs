//! The audit-log page under load with 100 000 events, next to `/healthz` (no session, no
//! database) and the dashboard (session lookup plus a few status queries) measured in the same
//! run, with `wrk` as the load generator.
//!
//! Run: `cargo bench --bench http_audit` (needs `wrk` on PATH; PostgreSQL at
//! `TRUSTPLANE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`, is
//! skipped with a notice when unreachable). `HTTP_BENCH_SECONDS` changes the 10 s per URL.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use trustplane::audit::{self, AuditEvent, Outcome, RequestMeta};
use trustplane::staff::model::Role;

mod common;

use common::{BenchDb, T0};

const EVENTS: i64 = 100_000;
const EVENTS_PER_TX: i64 = 10_000;
const WRK_THREADS: u32 = 2;
const WRK_CONNECTIONS: u32 = 16;
/// Far above any latency seen, so slow requests count in the percentiles instead of being
/// dropped as timeouts (wrk's default is 2 s).
const WRK_TIMEOUT_SECONDS: u32 = 30;
/// Sequential requests per URL for the unloaded latency.
const SERIAL: usize = 41;

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
    Command::new("wrk")
        .arg("--version")
        .output()
        .context("wrk must be installed (Debian: apt-get install -y wrk)")?;
    let seconds: u32 = match std::env::var("HTTP_BENCH_SECONDS") {
        Ok(raw) => raw.parse().context("HTTP_BENCH_SECONDS")?,
        Err(_) => 10,
    };
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

/// What wrk reported for one URL.
#[derive(Debug, Default)]
struct WrkResult {
    p50_ms: f64,
    p99_ms: f64,
    requests_per_sec: f64,
    non_2xx_3xx: u64,
    timeouts: u64,
}

/// Converts wrk's `812.00us`, `1.23ms`, `1.02s`, `1.00m` to milliseconds.
fn parse_duration_ms(raw: &str) -> Option<f64> {
    let split = raw.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = raw.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(value * factor)
}

fn parse_wrk(output: &str) -> anyhow::Result<WrkResult> {
    let mut result = WrkResult::default();
    let mut seen = (false, false, false);
    for line in output.lines().map(str::trim) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["50%", value] => {
                result.p50_ms = parse_duration_ms(value).context("p50")?;
                seen.0 = true;
            }
            ["99%", value] => {
                result.p99_ms = parse_duration_ms(value).context("p99")?;
                seen.1 = true;
            }
            ["Requests/sec:", value] => {
                result.requests_per_sec = value.parse().context("requests/sec")?;
                seen.2 = true;
            }
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                result.non_2xx_3xx = count.parse().unwrap_or(u64::MAX);
            }
            [
                "Socket",
                "errors:",
                "connect",
                c,
                "read",
                r,
                "write",
                w,
                "timeout",
                t,
            ] => {
                let count = |f: &str| f.trim_end_matches(',').parse::<u64>().unwrap_or(1);
                if count(c) + count(r) + count(w) > 0 {
                    bail!("socket errors:\n{output}");
                }
                result.timeouts = count(t);
            }
            _ => {}
        }
    }
    if seen != (true, true, true) {
        bail!("unexpected wrk output:\n{output}");
    }
    Ok(result)
}

fn run_wrk(url: &str, cookie: &str, seconds: u32) -> anyhow::Result<(WrkResult, String)> {
    let output = Command::new("wrk")
        .arg(format!("-t{WRK_THREADS}"))
        .arg(format!("-c{WRK_CONNECTIONS}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg(format!("--timeout={WRK_TIMEOUT_SECONDS}s"))
        .arg("-H")
        .arg(format!("Cookie: {cookie}"))
        .arg(url)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "wrk failed: {}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((parse_wrk(&text)?, text))
}

/// Median latency of `SERIAL` sequential GETs on one kept-alive connection.
async fn serial_median_ms(
    client: &reqwest::Client,
    url: &str,
    cookie: &str,
) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(SERIAL);
    for _ in 0..SERIAL {
        let started = Instant::now();
        let response = client
            .get(url)
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await?;
        let status = response.status();
        response.bytes().await?;
        if status != reqwest::StatusCode::OK {
            bail!("GET {url}: {status}");
        }
        times.push(started.elapsed().as_secs_f64() * 1_000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[SERIAL / 2])
}

/// One GET that must answer 200 with `needle` in the body (not a redirect to the login page).
async fn check_page(
    client: &reqwest::Client,
    url: &str,
    cookie: &str,
    needle: &str,
) -> anyhow::Result<usize> {
    let response = client
        .get(url)
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    if status != reqwest::StatusCode::OK || !body.contains(needle) {
        bail!(
            "GET {url}: expected 200 with {needle:?}, got {status}: {}",
            body.chars().take(300).collect::<String>()
        );
    }
    Ok(body.len())
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
        sizes.push(check_page(&client, &format!("{base}{path}"), &cookie, needle).await?);
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
        let serial = serial_median_ms(&client, &url, &cookie).await?;
        // wrk blocks; keep the runtime's workers free to serve it.
        let (wrk_url, wrk_cookie) = (url.clone(), cookie.clone());
        let (result, raw) =
            tokio::task::spawn_blocking(move || run_wrk(&wrk_url, &wrk_cookie, seconds)).await??;
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
    check_page(&client, &format!("{base}/audit"), &cookie, "100000 events.").await?;

    running.handle.shutdown();
    running.task.await??;
    println!();
    Ok(())
}
