//! Drives `wrk` against a running server and reads its report; plus the one-at-a-time
//! latency and the content check every HTTP benchmark does before loading a URL.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

pub const THREADS: u32 = 2;
pub const CONNECTIONS: u32 = 16;
/// Far above any latency seen, so slow requests count in the percentiles instead of being
/// dropped as timeouts (wrk's default is 2 s).
pub const TIMEOUT_SECONDS: u32 = 30;
/// Sequential requests per URL for the unloaded latency.
pub const SERIAL: usize = 41;

/// Fails early, with the way to install it, when `wrk` is missing.
pub fn require() -> anyhow::Result<()> {
    Command::new("wrk")
        .arg("--version")
        .output()
        .context("wrk must be installed (Debian: apt-get install -y wrk)")?;
    Ok(())
}

/// `HTTP_BENCH_SECONDS`, default 10: wrk's duration per URL.
pub fn seconds() -> anyhow::Result<u32> {
    match std::env::var("HTTP_BENCH_SECONDS") {
        Ok(raw) => raw.parse().context("HTTP_BENCH_SECONDS"),
        Err(_) => Ok(10),
    }
}

/// What wrk reported for one URL.
#[derive(Debug, Default)]
pub struct WrkResult {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests_per_sec: f64,
    pub non_2xx_3xx: u64,
    pub timeouts: u64,
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

/// `wrk -t THREADS -c CONNECTIONS -d seconds --latency` with the session cookie; blocks.
pub fn run(url: &str, cookie: &str, seconds: u32) -> anyhow::Result<(WrkResult, String)> {
    let output = Command::new("wrk")
        .arg(format!("-t{THREADS}"))
        .arg(format!("-c{CONNECTIONS}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg(format!("--timeout={TIMEOUT_SECONDS}s"))
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
pub async fn serial_median_ms(
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

/// One GET that must answer 200 with `needle` in the body (not a redirect to the login page);
/// returns the body's size.
pub async fn check_page(
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
