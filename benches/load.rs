//! The whole server under 1 000 concurrent connections for 60 s: the release binary (two
//! image workers, the default limits) on SQLite, driven by `wrk` with a mix of demo
//! detections, keyed detections, image reads and signed-in portal pages; next to the same
//! 1 000 connections on `GET /healthz` in the same run as the baseline.
//!
//! Reported: throughput, p50/p99 latency, answers by kind of request and status (only the
//! designed 429 of the demo limit and 503 of a full detection queue may appear besides 2xx),
//! wrk's socket errors, and the peak resident memory (`VmHWM`) of the server and of each
//! worker process.
//!
//! Run: `cargo build --release && cargo bench --bench load` (needs `wrk`; Debian:
//! `apt-get install -y wrk`). `LOAD_BENCH_SECONDS` (default 60) and `LOAD_BENCH_CONNECTIONS`
//! (default 1000) change the run.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use trustplane::audit::RequestMeta;
use trustplane::clock::SystemClock;
use trustplane::config::Config;
use trustplane::crypto::Keyring;
use trustplane::staff::model::Role;

mod common;

const FACE: &[u8] = include_bytes!("../static/examples/face.jpg");

/// One kind of request for a `wrk` process: `init` takes method, path, a body file (or "")
/// and `Name: value` headers; `done` prints the answers by status.
const ONE_KIND: &str = r#"
-- Global, not local: `done` reads each thread's table with `thread:get`.
statuses = {}
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  wrk.method = args[1]
  wrk.path = args[2]
  if args[3] ~= "" then
    local f = assert(io.open(args[3], "rb"))
    wrk.body = f:read("*a")
    f:close()
  end
  for i = 4, #args do
    local k, v = args[i]:match("^([^:]+):%s*(.*)$")
    wrk.headers[k] = v
  end
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do
      total[k] = (total[k] or 0) + v
    end
  end
  for k, v in pairs(total) do
    io.write("STATUS " .. k .. " " .. v .. "\n")
  end
end
"#;

/// The mix: (kind, share of the connections in percent). Each kind runs in its own `wrk`
/// process at the same time, so answers and latencies are known per kind.
const MIX: [(&str, u64); 4] = [("read", 40), ("page", 30), ("detect", 20), ("demo", 10)];

fn env_u64(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(raw) => raw.parse().with_context(|| name.to_owned()),
        Err(_) => Ok(default),
    }
}

/// Lets this process (and wrk, and the server it starts) hold 1 000+ sockets.
fn raise_open_files() -> anyhow::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit)?;
    Ok(limit.current.unwrap_or(u64::MAX))
}

/// `VmHWM` (peak resident set) and `VmRSS` of a process, in KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// The processes the server started (its image workers).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// What one wrk run reported.
#[derive(Debug, Default)]
struct Run {
    requests: u64,
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    socket_errors: String,
    statuses: BTreeMap<String, u64>,
}

fn parse_ms(raw: &str) -> Option<f64> {
    let split = raw.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = raw.split_at(split);
    let value: f64 = number.parse().ok()?;
    Some(
        value
            * match unit {
                "us" => 0.001,
                "ms" => 1.0,
                "s" => 1_000.0,
                "m" => 60_000.0,
                _ => return None,
            },
    )
}

fn wrk(args: &[String]) -> anyhow::Result<Run> {
    let output = Command::new("wrk")
        .args(args)
        .output()
        .context("wrk must be installed (Debian: apt-get install -y wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "wrk failed: {}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut run = Run::default();
    for line in text.lines().map(str::trim) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["50%", v] => run.p50_ms = parse_ms(v).unwrap_or(f64::NAN),
            ["99%", v] => run.p99_ms = parse_ms(v).unwrap_or(f64::NAN),
            ["Requests/sec:", v] => run.requests_per_sec = v.parse().unwrap_or(0.0),
            [n, "requests", "in", ..] => run.requests = n.parse().unwrap_or(0),
            ["Socket", "errors:", ..] => run.socket_errors = line.to_owned(),
            ["STATUS", status, n] => {
                run.statuses
                    .insert((*status).to_owned(), n.parse().unwrap_or(0));
            }
            _ => {}
        }
    }
    if run.requests == 0 {
        bail!("unexpected wrk output:\n{text}");
    }
    Ok(run)
}

struct Seeded {
    key: String,
    image: String,
    session: String,
}

/// Creates a customer with a key, a signed-in security engineer and one stored image, through
/// the library on the database the server will open.
async fn seed(config: Config, keyring_path: &Path) -> anyhow::Result<Seeded> {
    let keyring = Keyring::load_or_create(keyring_path)?;
    let state = trustplane::server::build_state(config, Arc::new(SystemClock), keyring).await?;
    let now = state.now();
    use trustplane::customers::{CustomerName, RetentionDays, store};
    let mut tx = state.db.begin().await?;
    let customer_id = store::insert(
        &mut tx,
        &CustomerName::parse("Load Test").map_err(anyhow::Error::msg)?,
        &trustplane::staff::model::Email::parse("ops@customer.example")
            .map_err(anyhow::Error::msg)?,
        trustplane::keys::format::KeyEnv::Live,
        RetentionDays::new(7).map_err(anyhow::Error::msg)?,
        "bench",
        now,
    )
    .await?;
    tx.commit().await?;
    let customer = store::find(&state.db.pool, &customer_id)
        .await?
        .context("customer just created")?;
    let scopes = trustplane::keys::model::Scope::parse_list("faces:detect,images:read")
        .map_err(anyhow::Error::msg)?;
    let mut tx = state.db.begin().await?;
    let issued = trustplane::keys::issue(
        &mut tx,
        &state.keyring,
        &customer,
        "load key",
        &scopes,
        None,
        "bench",
        &RequestMeta::default(),
        now,
    )
    .await?;
    tx.commit().await?;
    let session =
        common::staff_with_session(&state, "security@example.com", &[Role::Security]).await?;
    state.db.pool.close().await;
    Ok(Seeded {
        key: issued.secret,
        image: String::new(),
        session,
    })
}

async fn stored_image(base: &str, key: &str) -> anyhow::Result<String> {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/faces/detect"))
        .header("x-api-key", key)
        .header("content-type", "image/jpeg")
        .body(FACE)
        .send()
        .await?;
    let status = response.status();
    let json: serde_json::Value = response.json().await?;
    if status != 200 {
        bail!("detect answered {status}: {json}");
    }
    Ok(json["image_id"]
        .as_str()
        .context("image_id in the answer")?
        .to_owned())
}

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("load: skipped (run it with `cargo bench --bench load`)");
        return Ok(());
    }
    let seconds = env_u64("LOAD_BENCH_SECONDS", 60)?;
    let connections = env_u64("LOAD_BENCH_CONNECTIONS", 1000)?;
    let open_files = raise_open_files()?;
    if open_files < connections + 200 {
        bail!("{connections} connections need more open files than the limit {open_files}");
    }
    let dir = tempfile::tempdir()?;
    let database_url = format!("sqlite://{}?mode=rwc", dir.path().join("tp.db").display());
    let keyring_path = dir.path().join("keyring.json");
    Keyring::generate().write_new(&keyring_path)?;
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        database_url: database_url.clone(),
        scheduler_enabled: false,
        detect_isolation: "thread".into(),
        ..Config::default()
    };
    let rt = tokio::runtime::Runtime::new()?;
    let mut seeded = rt.block_on(seed(config, &keyring_path))?;

    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let exe = env!("CARGO_BIN_EXE_trustplane");
    let mut server = Command::new(exe)
        .arg("serve")
        .current_dir(dir.path())
        .env("TRUSTPLANE_DATABASE_URL", &database_url)
        .env("TRUSTPLANE_DATA_DIR", dir.path())
        .env("TRUSTPLANE_KEYRING_PATH", &keyring_path)
        .env("TRUSTPLANE_SCHEDULER_ENABLED", "false")
        .env("TRUSTPLANE_DETECT_WORKERS", "2")
        .env("TRUSTPLANE_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {exe}"))?;
    let pid = server.id();
    let base = format!("http://127.0.0.1:{port}");
    let outcome = rt.block_on(async {
        let client = reqwest::Client::new();
        let started = Instant::now();
        while !client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the server did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seeded.image = stored_image(&base, &seeded.key).await?;
        anyhow::Ok(())
    });
    let result =
        outcome.and_then(|()| measure(&base, pid, &seeded, dir.path(), seconds, connections));
    let _ = server.kill();
    let _ = server.wait();
    result
}

fn measure(
    base: &str,
    pid: u32,
    seeded: &Seeded,
    dir: &Path,
    seconds: u64,
    connections: u64,
) -> anyhow::Result<()> {
    let script = dir.join("one_kind.lua");
    std::fs::write(&script, ONE_KIND)?;
    let face = dir.join("face.jpg");
    std::fs::write(&face, FACE)?;
    let face = face.display().to_string();
    let script = script.display().to_string();
    let args_for = |connections: u64, extra: Vec<String>| -> Vec<String> {
        let mut args = vec![
            "-t1".to_owned(),
            format!("-c{connections}"),
            format!("-d{seconds}s"),
            "--latency".to_owned(),
            "--timeout=30s".to_owned(),
        ];
        args.extend(extra);
        args
    };
    let kind_args = |kind: &str| -> Vec<String> {
        let (method, path, body, headers): (&str, String, &str, Vec<String>) = match kind {
            "read" => (
                "GET",
                format!("/v1/images/{}", seeded.image),
                "",
                vec![format!("X-API-Key: {}", seeded.key)],
            ),
            "page" => (
                "GET",
                "/incidents".into(),
                "",
                vec![format!("Cookie: tp_session={}", seeded.session)],
            ),
            "detect" => (
                "POST",
                "/v1/faces/detect".into(),
                &face,
                vec![
                    format!("X-API-Key: {}", seeded.key),
                    "Content-Type: image/jpeg".into(),
                ],
            ),
            _ => (
                "POST",
                "/demo/v1/faces/detect".into(),
                &face,
                vec!["Content-Type: image/jpeg".into()],
            ),
        };
        let mut args = vec![
            "-s".to_owned(),
            script.clone(),
            base.to_owned(),
            "--".to_owned(),
            method.to_owned(),
            path,
            body.to_owned(),
        ];
        args.extend(headers);
        args
    };

    // The peak of every process, sampled while the load runs (workers may be replaced).
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peaks: BTreeMap<String, u64> = BTreeMap::new();
            while sampling.load(Ordering::Relaxed) {
                if let Some((hwm, _)) = memory_kib(pid) {
                    let e = peaks.entry("server".into()).or_default();
                    *e = (*e).max(hwm);
                }
                for child in children(pid) {
                    if let Some((hwm, _)) = memory_kib(child) {
                        let e = peaks.entry(format!("worker {child}")).or_default();
                        *e = (*e).max(hwm);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            peaks
        })
    };
    let idle = memory_kib(pid).map(|m| m.1).unwrap_or(0);

    println!("load: {connections} connections, {seconds} s each: /healthz, then the mix");
    let mut healthz_args = args_for(connections, vec![format!("{base}/healthz")]);
    healthz_args[0] = "-t2".to_owned();
    let healthz = wrk(&healthz_args)?;
    let after_healthz = memory_kib(pid).map(|m| m.0).unwrap_or(0);
    let runs: Vec<(&str, u64, std::thread::JoinHandle<anyhow::Result<Run>>)> = MIX
        .iter()
        .map(|(kind, share)| {
            let n = connections * share / 100;
            let args = args_for(n, kind_args(kind));
            (*kind, n, std::thread::spawn(move || wrk(&args)))
        })
        .collect();
    let mut mix = Vec::new();
    for (kind, n, handle) in runs {
        let run = handle.join().map_err(|_| anyhow::anyhow!("wrk thread"))??;
        mix.push((kind, n, run));
    }
    sampling.store(false, Ordering::Relaxed);
    let peaks = sampler.join().map_err(|_| anyhow::anyhow!("sampler"))?;
    let still_ready = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{base}/readyz"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();

    println!(
        "\n### {connections} connections for {seconds} s, release binary, SQLite, 2 image workers\n"
    );
    println!(
        "| run | connections | requests | req/s | p50 | p99 | answers by status | socket errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    let mut undesigned = 0;
    let mut rows: Vec<(&str, &str, u64, &Run)> = vec![(
        "`GET /healthz` alone (baseline)",
        "healthz",
        connections,
        &healthz,
    )];
    for (kind, n, run) in &mix {
        let label = match *kind {
            "read" => "mix: `GET /v1/images/{id}` with a key",
            "page" => "mix: `GET /incidents` signed in",
            "detect" => "mix: `POST /v1/faces/detect` with a key",
            _ => "mix: `POST /demo/v1/faces/detect`",
        };
        rows.push((label, kind, *n, run));
    }
    let mut total = (0u64, 0f64);
    for (label, kind, n, r) in rows {
        if kind != "healthz" {
            total.0 += r.requests;
            total.1 += r.requests_per_sec;
        }
        let statuses: Vec<String> = r
            .statuses
            .iter()
            .map(|(status, count)| {
                let designed = status.starts_with('2')
                    || (kind == "demo" && status == "429")
                    || ((kind == "detect" || kind == "demo") && status == "503");
                if !designed {
                    undesigned += count;
                }
                format!(
                    "{status}: {count}{}",
                    if designed { "" } else { " (not designed)" }
                )
            })
            .collect();
        println!(
            "| {label} | {n} | {} | {:.0} | {:.1} ms | {:.1} ms | {} | {} |",
            r.requests,
            r.requests_per_sec,
            r.p50_ms,
            r.p99_ms,
            if statuses.is_empty() {
                "not counted".to_owned()
            } else {
                statuses.join(", ")
            },
            if r.socket_errors.is_empty() {
                "none"
            } else {
                r.socket_errors.as_str()
            }
        );
    }
    println!(
        "\nThe mix in all: {} requests, {:.0} req/s. Undesigned answers: {undesigned}. /readyz after the run: {still_ready}.",
        total.0, total.1
    );
    println!(
        "\nMemory (KiB): server resident {idle} before, peak {after_healthz} after the /healthz run;"
    );
    for (name, kib) in &peaks {
        println!(
            "  peak resident {name}: {kib} KiB ({:.1} MiB)",
            *kib as f64 / 1024.0
        );
    }
    Ok(())
}
