//! Logins under a burst: 500 concurrent `POST /login` against the real server binary, with
//! the password-hashing gate at its defaults, with a queue long enough to hold every request,
//! and — for comparison, as the code behaved before the gate, when every request hashed at
//! once — 64 requests with 64 hashes allowed at once (the most the configuration accepts:
//! `password_hash_concurrency` is capped at 64). Each scenario runs in a fresh server process
//! so its peak resident memory (`VmHWM`) is its own; `GET /healthz` under the same burst is
//! the baseline.
//!
//! Run: `cargo bench --bench login` (SQLite in a temporary folder; no other service needed).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const BURST: usize = 500;
/// The largest `password_hash_concurrency` the configuration accepts.
const MAX_CONCURRENCY: usize = 64;

struct Scenario {
    name: &'static str,
    concurrency: usize,
    queue: usize,
    requests: usize,
    path: &'static str,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "baseline: GET /healthz",
        concurrency: 0,
        queue: 32,
        requests: BURST,
        path: "/healthz",
    },
    Scenario {
        name: "POST /login, gate at defaults (1 hash per core, queue 32)",
        concurrency: 0,
        queue: 32,
        requests: BURST,
        path: "/login",
    },
    Scenario {
        name: "POST /login, gate with a queue holding all 500",
        concurrency: 0,
        queue: BURST,
        requests: BURST,
        path: "/login",
    },
    Scenario {
        name: "POST /login, 64 hashes at once (as before the gate), 64 requests",
        concurrency: MAX_CONCURRENCY,
        queue: 0,
        requests: MAX_CONCURRENCY,
        path: "/login",
    },
];

fn main() -> anyhow::Result<()> {
    // `cargo test --all-targets` runs bench binaries without `--bench`: no load test then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("login: skipped (run it with `cargo bench --bench login`)");
        return Ok(());
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        println!(
            "| scenario | requests | 401 verified | 503 busy | other | wall time | verified/s | peak RSS |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for scenario in &SCENARIOS {
            run(scenario).await?;
        }
        Ok(())
    })
}

struct Server {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start(scenario: &Scenario) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let child = Command::new(env!("CARGO_BIN_EXE_trustplane"))
        .arg("serve")
        .env("TRUSTPLANE_DATA_DIR", dir.path())
        .env("TRUSTPLANE_LISTEN", format!("127.0.0.1:{port}"))
        .env("TRUSTPLANE_SCHEDULER_ENABLED", "false")
        .env("TRUSTPLANE_LOCKOUT_IP_FAILURES", "1000000")
        .env(
            "TRUSTPLANE_PASSWORD_HASH_CONCURRENCY",
            scenario.concurrency.to_string(),
        )
        .env("TRUSTPLANE_PASSWORD_HASH_QUEUE", scenario.queue.to_string())
        .env("TRUSTPLANE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("server.log"))?)
        .spawn()
        .context("start trustplane serve")?;
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Server { child, base, dir };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        let health = client.get(format!("{}/healthz", server.base)).send().await;
        if health.is_ok_and(|r| r.status().is_success()) {
            return Ok(server);
        }
        if server.child.try_wait()?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default();
    bail!("server did not start ({}):\n{log}", scenario.name)
}

/// Peak resident set of a process, in MiB.
fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmHWM")?;
    Ok(kib / 1024.0)
}

fn csrf_of(html: &str) -> anyhow::Result<String> {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).context("csrf field")? + marker.len();
    let end = html[start..].find('"').context("csrf end")? + start;
    Ok(html[start..end].to_owned())
}

async fn run(scenario: &Scenario) -> anyhow::Result<()> {
    let server = start(scenario).await?;
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(BURST)
        .build()?;
    let page = client
        .get(format!("{}/login", server.base))
        .send()
        .await?
        .text()
        .await?;
    let csrf = csrf_of(&page)?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(scenario.requests);
    for i in 0..scenario.requests {
        let client = client.clone();
        let url = format!("{}{}", server.base, scenario.path);
        let csrf = csrf.clone();
        let is_login = scenario.path == "/login";
        tasks.push(tokio::spawn(async move {
            let response = if is_login {
                let email = format!("nobody{i}@example.com");
                client
                    .post(url)
                    .form(&[
                        ("email", email.as_str()),
                        ("password", "a wrong but plausible password"),
                        ("csrf", csrf.as_str()),
                    ])
                    .send()
                    .await
            } else {
                client.get(url).send().await
            };
            response.map(|r| r.status().as_u16()).unwrap_or(0)
        }));
    }
    let (mut verified, mut busy, mut other) = (0usize, 0usize, 0usize);
    for task in tasks {
        match task.await? {
            401 => verified += 1,
            503 => busy += 1,
            200 if scenario.path == "/healthz" => verified += 1,
            _ => other += 1,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss = peak_rss_mib(server.child.id())?;
    println!(
        "| {} | {} | {verified} | {busy} | {other} | {elapsed:.2} s | {:.0} | {rss:.0} MiB |",
        scenario.name,
        scenario.requests,
        verified as f64 / elapsed
    );
    Ok(())
}
