//! Costs of the processing API, each next to a baseline measured in the same run:
//!
//! 1. API key verification (shape and checksum, HMAC, cached or database lookup) vs one
//!    HMAC-SHA256 of the key, cache hit and cache miss, on SQLite and PostgreSQL (criterion),
//!    plus the two queries `GET /v1/images/{id}` runs after it (image lookup, request count);
//! 2. an authenticated `GET /v1/images/{id}` vs `GET /healthz` on the same server, and the same
//!    URL with a well-formed unknown key (401) to separate the key check from the rest (wrk);
//! 3. `POST /v1/faces/detect` end to end (key, limits, worker process, sanitising, AES-GCM,
//!    blob and record) vs `biometric::analyze` called directly with the same parallelism;
//! 4. detection on a 640×480 image on one thread, with the default settings and with the
//!    SeetaFace reference settings (criterion), next to SeetaFace's published speeds;
//! 5. CPU time per image (server and worker processes, from `/proc`) and p50 at one client for
//!    `POST /v1/faces/detect` vs the pipeline alone on one thread, with a stored copy for
//!    retention 30 d and without one for retention 0 d, as the API runs it (`cpu`, not in the
//!    default set).
//!
//! Run: `cargo build --release && cargo bench --bench api` (needs `wrk` on PATH for part 2;
//! PostgreSQL at `TRUSTPLANE_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, is skipped with a notice when unreachable).
//!
//! Knobs: `API_BENCH_PARTS` (comma list of `keys`, `latency`, `http`, `detect`, `cpu`; default
//! all but `cpu`),
//! `API_BENCH_HTTP_SECONDS` (wrk time per URL, default 10), `API_BENCH_DETECT_SECONDS` (time
//! per detection path, default 15), `API_BENCH_DETECT_ROUNDS` (interleaved slices that time is
//! split into, default 5), `API_BENCH_WORKERS` (detection workers, default the number
//! of CPUs), `TRUSTPLANE_WORKER_EXE` (worker binary, default the `trustplane` binary cargo
//! built next to this benchmark). Criterion's own arguments (a filter, `--save-baseline`, …)
//! apply to parts 1 and 4.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use criterion::{Criterion, SamplingMode, Throughput};
use sqlx::{Connection, Row};
use tokio::runtime::Runtime;
use trustplane::app::AppState;
use trustplane::audit::RequestMeta;
use trustplane::biometric::{DetectorSettings, ImageFormat, Limits, StoragePolicy};
use trustplane::clock::{Clock, ManualClock, SECOND, SystemClock};
use trustplane::config::Config;
use trustplane::crypto::Keyring;
use trustplane::keys::verify::verify;

/// 2027-01-15 08:00 UTC, the start of the manual clock of the key benchmarks.
const T0: i64 = 1_800_000_000_000;

/// The settings SeetaFace publishes its speeds with: min face 40, step 4, pyramid 0.8.
const SEETA_REFERENCE: DetectorSettings = DetectorSettings {
    min_face_size: 40,
    score_thresh: 2.0,
    pyramid_scale_factor: 0.8,
    window_step: 4,
};

/// SeetaFace Detection README: 640×480 on one core of a 3.4 GHz i7-3770, step 4, scale 0.8.
const SEETA_PUBLISHED_MS_MIN40: f64 = 1000.0 / 16.0;
const SEETA_PUBLISHED_MS_MIN80: f64 = 1000.0 / 55.0;

const WRK_THREADS: u32 = 2;
const WRK_CONNECTIONS: u32 = 16;

/// The detection fixtures: (file, what it is).
const IMAGES: [(&str, &str); 2] = [
    ("astronaut.png", "512×512 PNG, one face"),
    ("coffee.png", "600×400 PNG, no face"),
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/faces")
        .join(name)
}

// ---------------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

fn postgres_admin_url() -> String {
    std::env::var("TRUSTPLANE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// SQLite always; PostgreSQL when the server answers.
async fn backends() -> Vec<Backend> {
    sqlx::any::install_default_drivers();
    let admin = postgres_admin_url();
    let reachable = matches!(
        tokio::time::timeout(Duration::from_secs(3), sqlx::AnyConnection::connect(&admin)).await,
        Ok(Ok(_))
    );
    if reachable {
        vec![Backend::Sqlite, Backend::Postgres]
    } else {
        eprintln!("PostgreSQL is not reachable at {admin}: running on SQLite only");
        vec![Backend::Sqlite]
    }
}

/// The `trustplane` binary that serves as the image worker (never this benchmark executable).
fn worker_exe() -> String {
    std::env::var("TRUSTPLANE_WORKER_EXE")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_trustplane").to_owned())
}

fn detect_workers() -> anyhow::Result<usize> {
    match std::env::var("API_BENCH_WORKERS") {
        Ok(raw) => raw.parse().context("API_BENCH_WORKERS"),
        Err(_) => Ok(std::thread::available_parallelism().map_or(2, usize::from)),
    }
}

fn seconds_from_env(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(raw) => raw.parse().with_context(|| name.to_owned()),
        Err(_) => Ok(default),
    }
}

/// A customer's key as issued.
struct BenchKey {
    customer_id: String,
    key_id: String,
    secret: String,
}

/// An app state on its own database, optionally serving HTTP.
struct BenchApp {
    state: AppState,
    backend: Backend,
    pg_database: Option<String>,
    server: Option<trustplane::server::Running>,
    _dir: tempfile::TempDir,
}

impl BenchApp {
    /// A fresh database and state. `workers`: `None` analyses on a thread (no worker
    /// processes started), `Some(n)` starts `n` worker processes of the real binary.
    async fn open(
        backend: Backend,
        clock: Arc<dyn Clock>,
        workers: Option<usize>,
    ) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir()?;
        let (database_url, pg_database) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}?mode=rwc", dir.path().join("tp.db").display()),
                None,
            ),
            Backend::Postgres => {
                let name = format!("tp_bench_api_{}", uuid::Uuid::new_v4().simple());
                let admin = postgres_admin_url();
                let mut conn = sqlx::AnyConnection::connect(&admin)
                    .await
                    .with_context(|| format!("PostgreSQL must be reachable at {admin}"))?;
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut conn)
                    .await?;
                conn.close().await?;
                let mut url = url::Url::parse(&admin)?;
                url.set_path(&format!("/{name}"));
                (url.to_string(), Some(name))
            }
        };
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().to_path_buf(),
            database_url,
            scheduler_enabled: false,
            ..Config::default()
        };
        match workers {
            None => {
                config.detect_isolation = "thread".into();
                config.detect_workers = 1;
            }
            Some(n) => {
                config.detect_isolation = "process".into();
                config.worker_exe = worker_exe();
                config.detect_workers = n;
            }
        }
        let opened = trustplane::server::build_state(config, clock, Keyring::generate()).await;
        let state = match opened {
            Ok(state) => state,
            Err(err) => {
                drop_postgres(pg_database.as_deref()).await;
                return Err(err);
            }
        };
        Ok(Self {
            state,
            backend,
            pg_database,
            server: None,
            _dir: dir,
        })
    }

    /// Serves the state on a loopback port; returns the base URL.
    async fn serve(&mut self) -> anyhow::Result<String> {
        let running = trustplane::server::start(self.state.clone(), "127.0.0.1:0".parse()?).await?;
        let base = format!("http://{}", running.addr);
        self.server = Some(running);
        Ok(base)
    }

    /// A customer with `retention_days` and one key with `scopes`.
    async fn customer_with_key(
        &self,
        name: &str,
        retention_days: i64,
        scopes: &str,
    ) -> anyhow::Result<BenchKey> {
        use trustplane::customers::{CustomerName, RetentionDays, store};
        let now = self.state.now();
        let mut tx = self.state.db.begin().await?;
        let customer_id = store::insert(
            &mut tx,
            &CustomerName::parse(name).map_err(anyhow::Error::msg)?,
            &trustplane::staff::model::Email::parse("ops@customer.example")
                .map_err(anyhow::Error::msg)?,
            trustplane::keys::format::KeyEnv::Live,
            RetentionDays::new(retention_days).map_err(anyhow::Error::msg)?,
            "bench",
            now,
        )
        .await?;
        tx.commit().await?;
        let customer = store::find(&self.state.db.pool, &customer_id)
            .await?
            .context("customer just created")?;
        let scopes =
            trustplane::keys::model::Scope::parse_list(scopes).map_err(anyhow::Error::msg)?;
        let mut tx = self.state.db.begin().await?;
        let issued = trustplane::keys::issue(
            &mut tx,
            &self.state.keyring,
            &customer,
            "bench key",
            &scopes,
            None,
            "bench",
            &RequestMeta::default(),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(BenchKey {
            customer_id,
            key_id: issued.id,
            secret: issued.secret,
        })
    }

    async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        let row = sqlx::query(sql).fetch_one(&self.state.db.pool).await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Stops the server, closes the pool, drops the PostgreSQL database. Worker processes are
    /// killed when the last reference to the state goes.
    async fn close(mut self) {
        if let Some(server) = self.server.take() {
            server.handle.shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), server.task).await;
        }
        self.state.db.pool.close().await;
        drop_postgres(self.pg_database.as_deref()).await;
    }
}

async fn drop_postgres(name: Option<&str>) {
    let Some(name) = name else { return };
    let result = async {
        let mut conn = sqlx::AnyConnection::connect(&postgres_admin_url()).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut conn)
            .await?;
        conn.close().await
    }
    .await;
    if let Err(err) = result {
        eprintln!("could not drop benchmark database {name}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Key verification (criterion)
// ---------------------------------------------------------------------------------------------

fn key_verification(c: &mut Criterion, rt: &Runtime, backends: &[Backend]) -> anyhow::Result<()> {
    for &backend in backends {
        let clock = ManualClock::new(T0);
        let app = rt.block_on(BenchApp::open(backend, clock.clone(), None))?;
        let issued =
            rt.block_on(app.customer_with_key("Bench Keys", 30, "faces:detect,images:read"))?;
        let key = issued.secret.clone();
        let meta = RequestMeta::default();
        let state = &app.state;
        let first = rt.block_on(verify(state, Some(&key), &meta))?;
        if let Err(rejection) = first {
            bail!("the benchmark key was refused: {rejection:?}");
        }

        let mut group = c.benchmark_group(format!("key_verify_{}", backend.name()));
        group
            .throughput(Throughput::Elements(1))
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(5));
        group.bench_function("baseline_hmac_sha256", |b| {
            b.iter(|| state.keyring.pepper_hmac_hex(black_box(key.as_bytes())))
        });
        group.bench_function("parse_checksum", |b| {
            b.iter(|| trustplane::keys::format::parse(black_box(&key)))
        });
        group.bench_function("verify_cache_hit", |b| {
            b.to_async(rt).iter(|| async {
                verify(state, Some(black_box(&key)), &meta)
                    .await
                    .expect("database")
                    .expect("key accepted")
            })
        });
        // The cache keeps a lookup for 500 ms of the injected clock: a second per iteration
        // makes every verification go to the database.
        group.bench_function("verify_cache_miss", |b| {
            b.to_async(rt).iter(|| async {
                clock.advance(SECOND);
                verify(state, Some(black_box(&key)), &meta)
                    .await
                    .expect("database")
                    .expect("key accepted")
            })
        });
        group.finish();

        // The database work of `GET /v1/images/{id}` after the key is verified: the image
        // lookup, and the per-request counting every `/v1` request ends with.
        let image_id = rt.block_on(insert_image(&app.state, &issued))?;
        let mut group = c.benchmark_group(format!("image_get_db_{}", backend.name()));
        group
            .throughput(Throughput::Elements(1))
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(5));
        group.bench_function("find_for_customer", |b| {
            b.to_async(rt).iter(|| async {
                trustplane::images::find_for_customer(&state.db, &image_id, &issued.customer_id)
                    .await
                    .expect("database")
                    .expect("image found")
            })
        });
        // Counting a request in memory (what the API does) vs writing it at once (what a
        // flush costs when it carries one request; it carries a second's worth under load).
        group.bench_function("usage_record", |b| {
            b.iter(|| state.key_usage.record(&issued.key_id, state.now(), false))
        });
        group.bench_function("usage_flush_one", |b| {
            b.to_async(rt).iter(|| async {
                state.key_usage.record(&issued.key_id, state.now(), false);
                state.key_usage.flush(&state.db).await.expect("database")
            })
        });
        group.finish();
        rt.block_on(app.close());
    }
    Ok(())
}

/// An image record like the ones detection writes (results only, no blob).
async fn insert_image(state: &AppState, key: &BenchKey) -> anyhow::Result<String> {
    let now = state.now();
    let record = trustplane::images::ImageRecord {
        id: uuid::Uuid::new_v4().to_string(),
        customer_id: Some(key.customer_id.clone()),
        key_id: Some(key.key_id.clone()),
        kind: "production".into(),
        format: "png".into(),
        width: 600,
        height: 400,
        byte_size: 400_000,
        blob_key: None,
        result: r#"{"faces":[],"quality":{"brightness":0.5,"sharpness":100.0,"largest_face_ratio":0.0},"processing_ms":20.0}"#.into(),
        created_at: now,
        expires_at: now + 30 * trustplane::clock::DAY,
        retained_until: None,
    };
    let mut conn = state.db.pool.acquire().await?;
    trustplane::images::insert(&mut conn, &record).await?;
    Ok(record.id)
}

// ---------------------------------------------------------------------------------------------
// 4. Detection latency on 640×480 (criterion)
// ---------------------------------------------------------------------------------------------

/// astronaut.png resized to 640×480 and converted to luma.
fn gray_640x480() -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(fixture("astronaut.png"))?;
    let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)?;
    Ok(image
        .resize_exact(640, 480, image::imageops::FilterType::Triangle)
        .to_luma8()
        .into_raw())
}

fn detection_latency(c: &mut Criterion) -> anyhow::Result<()> {
    let gray = gray_640x480()?;
    let variants = [
        ("default_min80", DetectorSettings::default()),
        ("seeta_reference_min40", SEETA_REFERENCE),
    ];
    for (name, settings) in &variants {
        let faces = trustplane::biometric::detect_gray(&gray, 640, 480, settings);
        println!("detect_640x480/{name}: {} face(s) found", faces.len());
    }
    let mut group = c.benchmark_group("detect_640x480");
    group
        .throughput(Throughput::Elements(1))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    for (name, settings) in &variants {
        group.bench_function(*name, |b| {
            b.iter(|| trustplane::biometric::detect_gray(black_box(&gray), 640, 480, settings))
        });
    }
    group.finish();
    Ok(())
}

/// Criterion's point estimate for one benchmark, in nanoseconds, from its report folder.
fn criterion_estimate_ns(group: &str, id: &str) -> Option<f64> {
    let root = match std::env::var_os("CRITERION_HOME") {
        Some(home) => PathBuf::from(home),
        // <target>/release/deps/api-<hash>
        None => std::env::current_exe()
            .ok()?
            .parent()?
            .parent()?
            .parent()?
            .join("criterion"),
    };
    let raw = std::fs::read_to_string(root.join(group).join(id).join("new/estimates.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&raw).ok()?;
    ["slope", "mean"]
        .iter()
        .find_map(|k| json.get(k)?.get("point_estimate")?.as_f64())
}

fn fmt_time(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.1} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.1} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn fmt_rate(per_sec: f64) -> String {
    if per_sec >= 1_000_000.0 {
        format!("{:.2} M/s", per_sec / 1_000_000.0)
    } else if per_sec >= 1_000.0 {
        format!("{:.1} k/s", per_sec / 1_000.0)
    } else {
        format!("{per_sec:.1} /s")
    }
}

fn print_key_summary(backends: &[Backend]) {
    println!("\n### 1. Key verification (criterion, one call at a time)\n");
    println!("| backend | measurement | time per call | per second | × baseline |");
    println!("|---|---|---:|---:|---:|");
    for backend in backends {
        let group = format!("key_verify_{}", backend.name());
        let Some(base) = criterion_estimate_ns(&group, "baseline_hmac_sha256") else {
            println!(
                "| {} | (no criterion estimates found) | | | |",
                backend.name()
            );
            continue;
        };
        for id in [
            "baseline_hmac_sha256",
            "parse_checksum",
            "verify_cache_hit",
            "verify_cache_miss",
        ] {
            if let Some(ns) = criterion_estimate_ns(&group, id) {
                println!(
                    "| {} | {id} | {} | {} | {:.2} |",
                    backend.name(),
                    fmt_time(ns),
                    fmt_rate(1e9 / ns),
                    ns / base
                );
            }
        }
    }
    println!(
        "\n### 1b. Database work of GET /v1/images/{{id}} after the key check (criterion, one call at a time)\n"
    );
    println!("| backend | measurement | time per call | per second |");
    println!("|---|---|---:|---:|");
    for backend in backends {
        let group = format!("image_get_db_{}", backend.name());
        for id in ["find_for_customer", "usage_record", "usage_flush_one"] {
            if let Some(ns) = criterion_estimate_ns(&group, id) {
                println!(
                    "| {} | {id} | {} | {} |",
                    backend.name(),
                    fmt_time(ns),
                    fmt_rate(1e9 / ns)
                );
            }
        }
    }
}

fn print_latency_summary() {
    println!("\n### 4. Detection on 640×480, one thread (criterion)\n");
    println!(
        "| settings | measured | SeetaFace published (i7-3770, 1 core) | measured / published |"
    );
    println!("|---|---:|---:|---:|");
    for (id, label, published) in [
        (
            "default_min80",
            "default (min face 80, step 4, pyramid 0.8)",
            SEETA_PUBLISHED_MS_MIN80,
        ),
        (
            "seeta_reference_min40",
            "reference (min face 40, step 4, pyramid 0.8)",
            SEETA_PUBLISHED_MS_MIN40,
        ),
    ] {
        if let Some(ns) = criterion_estimate_ns("detect_640x480", id) {
            let ms = ns / 1e6;
            println!(
                "| {label} | {ms:.1} ms ({:.1} images/s) | {published:.1} ms ({:.1} images/s) | {:.2} |",
                1000.0 / ms,
                1000.0 / published,
                ms / published
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Authenticated endpoint vs /healthz (wrk)
// ---------------------------------------------------------------------------------------------

/// What wrk reported for one URL.
#[derive(Debug, Default, Clone)]
struct WrkResult {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    non_2xx_3xx: u64,
    socket_errors: String,
}

/// `812.00us`, `1.23ms`, `1.02s` → milliseconds.
fn parse_duration_ms(raw: &str) -> Option<f64> {
    let split = raw.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = raw.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        _ => return None,
    };
    Some(value * factor)
}

fn parse_wrk(output: &str) -> anyhow::Result<WrkResult> {
    let mut result = WrkResult::default();
    let (mut p50, mut p99, mut rps) = (false, false, false);
    for line in output.lines().map(str::trim) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["50%", value] => {
                result.p50_ms = parse_duration_ms(value).context("p50")?;
                p50 = true;
            }
            ["99%", value] => {
                result.p99_ms = parse_duration_ms(value).context("p99")?;
                p99 = true;
            }
            ["Requests/sec:", value] => {
                result.requests_per_sec = value.parse().context("Requests/sec")?;
                rps = true;
            }
            [count, "requests", "in", ..] => result.requests = count.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                result.non_2xx_3xx = count.parse().unwrap_or(0);
            }
            ["Socket", "errors:", ..] => result.socket_errors = line.to_owned(),
            _ => {}
        }
    }
    if !(p50 && p99 && rps) {
        bail!("unexpected wrk output:\n{output}");
    }
    Ok(result)
}

/// Runs wrk in a blocking thread so the server keeps its runtime threads.
async fn wrk(url: String, seconds: u64, api_key: Option<String>) -> anyhow::Result<WrkResult> {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("wrk");
        cmd.arg(format!("-t{WRK_THREADS}"))
            .arg(format!("-c{WRK_CONNECTIONS}"))
            .arg(format!("-d{seconds}s"))
            .arg("--latency");
        if let Some(key) = api_key {
            cmd.arg("-H").arg(format!("X-API-Key: {key}"));
        }
        let output = cmd
            .arg(&url)
            .output()
            .context("wrk must be installed (Debian: apt-get install -y wrk)")?;
        if !output.status.success() {
            bail!("wrk failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        parse_wrk(&String::from_utf8_lossy(&output.stdout))
    })
    .await?
}

/// Alternated wrk runs with and without the monitoring counters.
const COUNTER_ROUNDS: usize = 3;

struct HttpComparison {
    backend: Backend,
    healthz: WrkResult,
    image_get: WrkResult,
    /// The same URL with the monitoring counters paused (`SignalTally::set_counting`).
    image_get_uncounted: WrkResult,
    unknown_key: WrkResult,
    counted: i64,
}

/// Averages wrk runs of the same URL (rates and percentiles alike; counts are summed).
fn mean_of(runs: &[WrkResult]) -> WrkResult {
    let n = runs.len().max(1) as f64;
    WrkResult {
        requests_per_sec: runs.iter().map(|r| r.requests_per_sec).sum::<f64>() / n,
        p50_ms: runs.iter().map(|r| r.p50_ms).sum::<f64>() / n,
        p99_ms: runs.iter().map(|r| r.p99_ms).sum::<f64>() / n,
        requests: runs.iter().map(|r| r.requests).sum(),
        non_2xx_3xx: runs.iter().map(|r| r.non_2xx_3xx).sum(),
        socket_errors: runs
            .iter()
            .map(|r| r.socket_errors.as_str())
            .filter(|e| !e.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()?)
}

/// Posts one image and returns the created image id.
async fn create_image(base: &str, key: &str, body: Bytes) -> anyhow::Result<String> {
    let response = client()?
        .post(format!("{base}/v1/faces/detect"))
        .header("x-api-key", key)
        .header("content-type", "image/png")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    if status != 200 {
        bail!("POST /v1/faces/detect answered {status}: {text}");
    }
    let json: serde_json::Value = serde_json::from_str(&text)?;
    Ok(json["image_id"]
        .as_str()
        .context("image_id in the detection answer")?
        .to_owned())
}

async fn http_comparison(
    app: &BenchApp,
    base: &str,
    issued: &BenchKey,
    seconds: u64,
) -> anyhow::Result<HttpComparison> {
    let (key_id, key) = (&issued.key_id, &issued.secret);
    let coffee = Bytes::from(std::fs::read(fixture("coffee.png"))?);
    let image_id = create_image(base, key, coffee).await?;
    let url = format!("{base}/v1/images/{image_id}");
    let check = client()?.get(&url).header("x-api-key", key).send().await?;
    if check.status() != 200 {
        bail!("GET {url} answered {}", check.status());
    }
    let before = app
        .count(&format!(
            "SELECT request_count FROM api_keys WHERE id = '{key_id}'"
        ))
        .await?;
    let healthz = wrk(format!("{base}/healthz"), seconds, None).await?;
    // With and without the monitoring counters, alternated so drift hits both alike.
    let (mut counted_runs, mut uncounted_runs) = (Vec::new(), Vec::new());
    for _ in 0..COUNTER_ROUNDS {
        counted_runs.push(wrk(url.clone(), seconds, Some(key.clone())).await?);
        app.state.signals.set_counting(false);
        let run = wrk(url.clone(), seconds, Some(key.clone())).await;
        app.state.signals.set_counting(true);
        uncounted_runs.push(run?);
    }
    let image_get = mean_of(&counted_runs);
    let image_get_uncounted = mean_of(&uncounted_runs);
    // Well formed (valid checksum) but unknown: the key path up to the 401, no image lookup and
    // no counting. Unknown keys are cached too, so this is mostly cache hits.
    let stranger = trustplane::keys::format::generate(trustplane::keys::format::KeyEnv::Live);
    let unknown_key = wrk(url, seconds, Some(stranger)).await?;
    app.state.key_usage.flush(&app.state.db).await?;
    let after = app
        .count(&format!(
            "SELECT request_count FROM api_keys WHERE id = '{key_id}'"
        ))
        .await?;
    Ok(HttpComparison {
        backend: app.backend,
        healthz,
        image_get,
        image_get_uncounted,
        unknown_key,
        counted: after - before,
    })
}

fn print_http_summary(rows: &[HttpComparison], seconds: u64) {
    println!(
        "\n### 2. Authenticated GET /v1/images/{{id}} vs GET /healthz (wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{seconds}s)\n"
    );
    println!(
        "| backend | request | req/s | p50 | p99 | requests | non-2xx | req/s / healthz req/s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        for (label, r) in [
            ("/healthz", &row.healthz),
            ("/v1/images/{id}, valid key", &row.image_get),
            (
                "/v1/images/{id}, valid key, monitoring counters paused",
                &row.image_get_uncounted,
            ),
            ("/v1/images/{id}, unknown key (401)", &row.unknown_key),
        ] {
            let ratio = if label == "/healthz" {
                String::new()
            } else {
                format!("{:.3}", r.requests_per_sec / row.healthz.requests_per_sec)
            };
            println!(
                "| {} | {label} | {:.0} | {:.2} ms | {:.2} ms | {} | {} | {ratio} |",
                row.backend.name(),
                r.requests_per_sec,
                r.p50_ms,
                r.p99_ms,
                r.requests,
                r.non_2xx_3xx,
            );
        }
        for r in [&row.healthz, &row.image_get, &row.unknown_key] {
            if !r.socket_errors.is_empty() {
                println!("  {}: {}", row.backend.name(), r.socket_errors);
            }
        }
        println!(
            "  {}: monitoring counters cost {:.1} % of throughput ({:.0} vs {:.0} req/s, mean of {COUNTER_ROUNDS} alternated runs each)",
            row.backend.name(),
            100.0
                * (1.0 - row.image_get.requests_per_sec / row.image_get_uncounted.requests_per_sec),
            row.image_get.requests_per_sec,
            row.image_get_uncounted.requests_per_sec,
        );
        println!(
            "  {}: the key's request_count grew by {} during the API run (wrk counted {})",
            row.backend.name(),
            row.counted,
            row.image_get.requests + row.image_get_uncounted.requests
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Detection throughput: API vs the bare pipeline
// ---------------------------------------------------------------------------------------------

/// Completed requests and their latencies over one timed run.
#[derive(Debug, Default, Clone)]
struct LoadResult {
    latencies_ms: Vec<f64>,
    errors: u64,
    elapsed_s: f64,
}

impl LoadResult {
    fn merge(parts: Vec<LoadResult>, elapsed_s: f64) -> Self {
        let mut all = LoadResult {
            elapsed_s,
            ..LoadResult::default()
        };
        for part in parts {
            all.latencies_ms.extend(part.latencies_ms);
            all.errors += part.errors;
        }
        all.latencies_ms.sort_by(f64::total_cmp);
        all
    }

    /// Adds another slice of the same measurement.
    fn absorb(&mut self, other: LoadResult) {
        self.latencies_ms.extend(other.latencies_ms);
        self.latencies_ms.sort_by(f64::total_cmp);
        self.errors += other.errors;
        self.elapsed_s += other.elapsed_s;
    }

    fn rate(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.elapsed_s
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies_ms.len() as f64).ceil() as usize;
        self.latencies_ms[rank.clamp(1, self.latencies_ms.len()) - 1]
    }
}

/// `concurrency` threads calling `analyze` back to back for `length`.
fn direct_load(bytes: &[u8], concurrency: usize, length: Duration) -> LoadResult {
    let limits = Limits::default();
    let settings = DetectorSettings::default();
    let run = |deadline: Option<Instant>| {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..concurrency)
                .map(|_| {
                    scope.spawn(|| {
                        let mut part = LoadResult::default();
                        loop {
                            let started = Instant::now();
                            match trustplane::biometric::analyze(
                                bytes,
                                Some(ImageFormat::Png),
                                &limits,
                                &settings,
                            ) {
                                Ok(analysis) => {
                                    black_box(analysis);
                                    part.latencies_ms
                                        .push(started.elapsed().as_secs_f64() * 1000.0);
                                }
                                Err(_) => part.errors += 1,
                            }
                            match deadline {
                                Some(deadline) if Instant::now() < deadline => {}
                                _ => break,
                            }
                        }
                        part
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("load thread"))
                .collect::<Vec<_>>()
        })
    };
    // One untimed round: the first call on a thread builds its detector.
    run(None);
    let started = Instant::now();
    let parts = run(Some(started + length));
    LoadResult::merge(parts, started.elapsed().as_secs_f64())
}

/// `concurrency` clients posting `body` back to back for `length`.
async fn api_load(
    url: &str,
    key: &str,
    body: Bytes,
    concurrency: usize,
    length: Duration,
) -> anyhow::Result<LoadResult> {
    let client = client()?;
    let run = |deadline: Option<Instant>| {
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, url, key, body) =
                    (client.clone(), url.to_owned(), key.to_owned(), body.clone());
                tokio::spawn(async move {
                    let mut part = LoadResult::default();
                    loop {
                        let started = Instant::now();
                        let sent = client
                            .post(&url)
                            .header("x-api-key", &key)
                            .header("content-type", "image/png")
                            .body(body.clone())
                            .send()
                            .await;
                        let ok = match sent {
                            Ok(response) => {
                                let status = response.status();
                                let read = response.bytes().await;
                                status == 200 && read.is_ok()
                            }
                            Err(_) => false,
                        };
                        if ok {
                            part.latencies_ms
                                .push(started.elapsed().as_secs_f64() * 1000.0);
                        } else {
                            part.errors += 1;
                        }
                        match deadline {
                            Some(deadline) if Instant::now() < deadline => {}
                            _ => break,
                        }
                    }
                    part
                })
            })
            .collect();
        async move {
            let mut parts = Vec::new();
            for task in tasks {
                parts.push(task.await.expect("load task"));
            }
            parts
        }
    };
    // Two untimed rounds: connections and workers warm.
    run(None).await;
    run(None).await;
    let started = Instant::now();
    let parts = run(Some(started + length)).await;
    Ok(LoadResult::merge(parts, started.elapsed().as_secs_f64()))
}

/// One image on one backend: the bare pipeline and the API, measured in interleaved slices so
/// that changes in the machine's load hit all three alike.
#[derive(Default)]
struct DetectCell {
    backend: &'static str,
    image: &'static str,
    direct: LoadResult,
    kept: LoadResult,
    not_kept: LoadResult,
}

/// `rounds` × (direct slice, API slice with retention 30, API slice with retention 0).
#[allow(clippy::too_many_arguments)]
async fn detect_cell(
    backend: Backend,
    image: &'static str,
    bytes: &Bytes,
    url: &str,
    (key_kept, key_not_kept): (&str, &str),
    workers: usize,
    seconds: u64,
    rounds: u32,
) -> anyhow::Result<DetectCell> {
    let slice = Duration::from_secs(seconds) / rounds.max(1);
    let mut cell = DetectCell {
        backend: backend.name(),
        image,
        ..DetectCell::default()
    };
    for _ in 0..rounds.max(1) {
        let direct = tokio::task::block_in_place(|| direct_load(bytes, workers, slice));
        cell.direct.absorb(direct);
        cell.kept
            .absorb(api_load(url, key_kept, bytes.clone(), workers, slice).await?);
        cell.not_kept
            .absorb(api_load(url, key_not_kept, bytes.clone(), workers, slice).await?);
    }
    Ok(cell)
}

fn print_detect_summary(cells: &[DetectCell], workers: usize, seconds: u64, rounds: u32) {
    println!(
        "\n### 3. POST /v1/faces/detect vs biometric::analyze ({workers} worker processes; {workers} concurrent requests vs {workers} threads; {seconds} s per path in {rounds} interleaved slices)\n"
    );
    println!(
        "| image | backend | path | images/s | p50 | p99 | errors | API overhead (time per image) | API overhead (p50) |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|");
    for cell in cells {
        let base = &cell.direct;
        println!(
            "| {} | {} | direct `analyze` | {:.1} | {:.1} ms | {:.1} ms | {} | | |",
            cell.image,
            cell.backend,
            base.rate(),
            base.percentile(50.0),
            base.percentile(99.0),
            base.errors
        );
        for (label, r) in [
            ("API, retention 30 d", &cell.kept),
            ("API, retention 0 d", &cell.not_kept),
        ] {
            println!(
                "| {} | {} | {label} | {:.1} | {:.1} ms | {:.1} ms | {} | {:+.1} % | {:+.1} ms ({:+.1} %) |",
                cell.image,
                cell.backend,
                r.rate(),
                r.percentile(50.0),
                r.percentile(99.0),
                r.errors,
                (base.rate() / r.rate() - 1.0) * 100.0,
                r.percentile(50.0) - base.percentile(50.0),
                (r.percentile(50.0) / base.percentile(50.0) - 1.0) * 100.0,
            );
        }
    }
    println!("  API overhead (time per image) = direct images/s / API images/s - 1");
}

// ---------------------------------------------------------------------------------------------
// 5. CPU time per image and p50 at one client
// ---------------------------------------------------------------------------------------------

/// Linux reports process and thread CPU time in clock ticks of 1/100 s (`USER_HZ`).
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU seconds from a `/proc/.../stat` file; with `children`, also the CPU of
/// waited-for children (`cutime`, `cstime`).
fn stat_cpu_seconds(path: &Path, children: bool) -> Option<f64> {
    let raw = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3 (`state`).
    let after = raw.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let mut ticks = field(14)? + field(15)?;
    if children {
        ticks += field(16)? + field(17)?;
    }
    Some(ticks as f64 / TICKS_PER_SECOND)
}

/// `/proc/{pid}/stat` of each live child of this process (the worker processes).
fn children_stat_paths() -> Vec<std::path::PathBuf> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        paths.extend(
            children
                .split_whitespace()
                .map(|pid| Path::new("/proc").join(pid).join("stat")),
        );
    }
    paths
}

/// Minor page faults and CPU seconds of the live children (the worker processes).
fn children_faults_and_cpu() -> (u64, f64) {
    let (mut faults, mut cpu) = (0, 0.0);
    for stat in children_stat_paths() {
        cpu += stat_cpu_seconds(&stat, false).unwrap_or(0.0);
        let raw = std::fs::read_to_string(&stat).unwrap_or_default();
        let after = raw.rsplit_once(')').map_or("", |(_, after)| after);
        faults += after
            .split_whitespace()
            .nth(10 - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
    }
    (faults, cpu)
}

/// CPU seconds of this process, the children it has waited for, and its live children (the
/// worker processes).
fn process_tree_cpu_seconds() -> f64 {
    stat_cpu_seconds(Path::new("/proc/self/stat"), true).unwrap_or(0.0)
        + children_faults_and_cpu().1
}

/// CPU seconds of the calling thread.
fn thread_cpu_seconds() -> f64 {
    stat_cpu_seconds(Path::new("/proc/thread-self/stat"), false).unwrap_or(0.0)
}

/// One measured slice at one client: requests, their latencies, and CPU seconds spent.
#[derive(Default)]
struct CpuSlice {
    load: LoadResult,
    cpu_s: f64,
}

impl CpuSlice {
    fn absorb(&mut self, other: CpuSlice) {
        self.load.absorb(other.load);
        self.cpu_s += other.cpu_s;
    }

    fn cpu_ms_per_image(&self) -> f64 {
        self.cpu_s * 1000.0 / self.load.latencies_ms.len().max(1) as f64
    }
}

/// The pipeline alone on one thread, its copy shaped by `storage`: its CPU is that thread's.
fn direct_cpu(bytes: &[u8], storage: StoragePolicy, length: Duration) -> CpuSlice {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let (limits, settings) = (Limits::default(), DetectorSettings::default());
                let analyze = || {
                    trustplane::biometric::analyze_for_storage(
                        bytes,
                        Some(ImageFormat::Png),
                        &limits,
                        &settings,
                        &storage,
                    )
                };
                // The first call on a thread builds its detector.
                let _ = black_box(analyze());
                let cpu_before = thread_cpu_seconds();
                let started = Instant::now();
                let mut load = LoadResult::default();
                while started.elapsed() < length {
                    let one = Instant::now();
                    match analyze() {
                        Ok(analysis) => {
                            black_box(analysis);
                            load.latencies_ms.push(one.elapsed().as_secs_f64() * 1000.0);
                        }
                        Err(_) => load.errors += 1,
                    }
                }
                load.elapsed_s = started.elapsed().as_secs_f64();
                load.latencies_ms.sort_by(f64::total_cmp);
                CpuSlice {
                    load,
                    cpu_s: thread_cpu_seconds() - cpu_before,
                }
            })
            .join()
            .expect("pipeline thread")
    })
}

/// One client posting `body` back to back from its own thread, so that its CPU can be told
/// apart: the API's CPU is the whole process tree's (server, its runtime and background jobs,
/// worker processes) minus the client thread's.
fn api_cpu(url: &str, key: &str, body: &Bytes, length: Duration) -> anyhow::Result<CpuSlice> {
    let (url, key, body) = (url.to_owned(), key.to_owned(), body.clone());
    // Both sides start counting once the client has warmed up.
    let warmed = Arc::new(std::sync::Barrier::new(2));
    let client_warmed = Arc::clone(&warmed);
    let client_thread = std::thread::spawn(move || -> anyhow::Result<(LoadResult, f64)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let Ok(rt) = rt else {
            client_warmed.wait();
            anyhow::bail!("cannot build the client runtime");
        };
        rt.block_on(async {
            let client = client();
            let Ok(client) = client else {
                client_warmed.wait();
                anyhow::bail!("cannot build the HTTP client");
            };
            let post = || {
                client
                    .post(&url)
                    .header("x-api-key", &key)
                    .header("content-type", "image/png")
                    .body(body.clone())
                    .send()
            };
            // Warm: the connection, and the worker that will answer.
            let warm_up = async {
                for _ in 0..3 {
                    post().await?.bytes().await?;
                }
                anyhow::Ok(())
            }
            .await;
            client_warmed.wait();
            warm_up?;
            let cpu_before = thread_cpu_seconds();
            let started = Instant::now();
            let mut load = LoadResult::default();
            while started.elapsed() < length {
                let one = Instant::now();
                let ok = match post().await {
                    Ok(response) => response.status() == 200 && response.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    load.latencies_ms.push(one.elapsed().as_secs_f64() * 1000.0);
                } else {
                    load.errors += 1;
                }
            }
            load.elapsed_s = started.elapsed().as_secs_f64();
            load.latencies_ms.sort_by(f64::total_cmp);
            Ok((load, thread_cpu_seconds() - cpu_before))
        })
    });
    // The client passes the barrier even when it fails; its error comes from `join`.
    warmed.wait();
    let tree_before = process_tree_cpu_seconds();
    let workers_before = children_faults_and_cpu();
    let (load, client_cpu) = client_thread
        .join()
        .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    let tree = process_tree_cpu_seconds() - tree_before;
    let workers_after = children_faults_and_cpu();
    let images = load.latencies_ms.len().max(1) as f64;
    println!(
        "    {} images: workers {:.2} ms CPU and {:.0} minor page faults per image; server {:.2} ms CPU per image",
        load.latencies_ms.len(),
        (workers_after.1 - workers_before.1) * 1000.0 / images,
        workers_after.0.saturating_sub(workers_before.0) as f64 / images,
        (tree - client_cpu - (workers_after.1 - workers_before.1)) * 1000.0 / images,
    );
    Ok(CpuSlice {
        load,
        cpu_s: (tree - client_cpu).max(0.0),
    })
}

#[derive(Default)]
struct CpuCell {
    backend: &'static str,
    image: &'static str,
    /// The pipeline with the full-resolution copy the API keeps for 30 days.
    direct_kept: CpuSlice,
    /// The pipeline with no copy, as the API runs it when nothing is kept.
    direct_not_kept: CpuSlice,
    kept: CpuSlice,
    not_kept: CpuSlice,
}

/// `rounds` × (pipeline with a copy, API retention 30 d, pipeline without a copy, API
/// retention 0 d), one client each: each API path against the same work done directly.
async fn cpu_cell(
    backend: Backend,
    image: &'static str,
    bytes: &Bytes,
    url: &str,
    (key_kept, key_not_kept): (&str, &str),
    seconds: u64,
    rounds: u32,
) -> anyhow::Result<CpuCell> {
    let slice = Duration::from_secs(seconds) / rounds.max(1);
    let mut cell = CpuCell {
        backend: backend.name(),
        image,
        ..CpuCell::default()
    };
    for _ in 0..rounds.max(1) {
        tokio::task::block_in_place(|| -> anyhow::Result<()> {
            let full = StoragePolicy::full(StoragePolicy::DEFAULT_MAX_BYTES);
            cell.direct_kept.absorb(direct_cpu(bytes, full, slice));
            cell.kept.absorb(api_cpu(url, key_kept, bytes, slice)?);
            cell.direct_not_kept
                .absorb(direct_cpu(bytes, StoragePolicy::discard(), slice));
            cell.not_kept
                .absorb(api_cpu(url, key_not_kept, bytes, slice)?);
            Ok(())
        })?;
    }
    Ok(cell)
}

fn print_cpu_summary(cells: &[CpuCell], seconds: u64, rounds: u32) {
    println!(
        "\n### 5. CPU per image and latency at one client: POST /v1/faces/detect vs biometric::analyze ({seconds} s per path in {rounds} interleaved slices)\n"
    );
    println!(
        "| image | backend | path | images | CPU per image | p50 | p99 | errors | CPU overhead | p50 overhead |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for cell in cells {
        for (base_label, base, label, r) in [
            (
                "pipeline with a copy",
                &cell.direct_kept,
                "API, retention 30 d",
                &cell.kept,
            ),
            (
                "pipeline, no copy",
                &cell.direct_not_kept,
                "API, retention 0 d",
                &cell.not_kept,
            ),
        ] {
            println!(
                "| {} | {} | {base_label} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {} | | |",
                cell.image,
                cell.backend,
                base.load.latencies_ms.len(),
                base.cpu_ms_per_image(),
                base.load.percentile(50.0),
                base.load.percentile(99.0),
                base.load.errors
            );
            println!(
                "| {} | {} | {label} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {} | {:+.1} % | {:+.2} ms |",
                cell.image,
                cell.backend,
                r.load.latencies_ms.len(),
                r.cpu_ms_per_image(),
                r.load.percentile(50.0),
                r.load.percentile(99.0),
                r.load.errors,
                (r.cpu_ms_per_image() / base.cpu_ms_per_image() - 1.0) * 100.0,
                r.load.percentile(50.0) - base.load.percentile(50.0),
            );
        }
    }
    println!(
        "  API CPU = server process + worker processes - the client thread, from /proc; pipeline CPU = its thread's"
    );
}

// ---------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------

fn main() -> anyhow::Result<()> {
    // `cargo test --all-targets` runs bench binaries without `--bench`: measure nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("api: skipped (run it with `cargo bench --bench api`)");
        return Ok(());
    }
    let parts =
        std::env::var("API_BENCH_PARTS").unwrap_or_else(|_| "keys,latency,http,detect".to_owned());
    let wants = |part: &str| parts.split(',').any(|p| p.trim() == part);
    let http_seconds = seconds_from_env("API_BENCH_HTTP_SECONDS", 10)?;
    let detect_seconds = seconds_from_env("API_BENCH_DETECT_SECONDS", 15)?;
    let detect_rounds = u32::try_from(seconds_from_env("API_BENCH_DETECT_ROUNDS", 5)?)?;
    let workers = detect_workers()?;

    let rt = Runtime::new()?;
    let backends = rt.block_on(backends());
    println!(
        "api benchmarks: {} CPU(s) available, backends {:?}, worker binary {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        backends.iter().map(|b| b.name()).collect::<Vec<_>>(),
        worker_exe()
    );

    let mut c = Criterion::default().configure_from_args();
    if wants("keys") {
        key_verification(&mut c, &rt, &backends)?;
    }
    if wants("latency") {
        detection_latency(&mut c)?;
    }
    c.final_summary();

    let mut http_rows = Vec::new();
    let mut cells = Vec::new();
    let mut cpu_cells = Vec::new();
    if wants("http") || wants("detect") || wants("cpu") {
        let images: Vec<(&'static str, Bytes)> = IMAGES
            .iter()
            .map(|(name, _)| Ok((*name, Bytes::from(std::fs::read(fixture(name))?))))
            .collect::<anyhow::Result<_>>()?;
        rt.block_on(async {
            for &backend in &backends {
                let mut app = BenchApp::open(backend, Arc::new(SystemClock), Some(workers)).await?;
                let base = app.serve().await?;
                let outcome = async {
                    let kept = app
                        .customer_with_key("Bench Kept", 30, "faces:detect,images:read")
                        .await?;
                    if wants("http") {
                        println!("[{}] wrk: /healthz and /v1/images/{{id}}", backend.name());
                        http_rows.push(http_comparison(&app, &base, &kept, http_seconds).await?);
                    }
                    if wants("detect") {
                        let not_kept = app
                            .customer_with_key("Bench Not Kept", 0, "faces:detect")
                            .await?;
                        let url = format!("{base}/v1/faces/detect");
                        for (name, bytes) in &images {
                            println!(
                                "[{}] {name}: direct, API kept, API not kept; {workers} at a time, {detect_seconds} s each in {detect_rounds} slices",
                                backend.name()
                            );
                            cells.push(
                                detect_cell(
                                    backend,
                                    name,
                                    bytes,
                                    &url,
                                    (&kept.secret, &not_kept.secret),
                                    workers,
                                    detect_seconds,
                                    detect_rounds,
                                )
                                .await?,
                            );
                        }
                    }
                    if wants("cpu") {
                        let not_kept = app
                            .customer_with_key("Bench CPU Not Kept", 0, "faces:detect")
                            .await?;
                        let url = format!("{base}/v1/faces/detect");
                        for (name, bytes) in &images {
                            println!(
                                "[{}] {name}: CPU per image at one client, {detect_seconds} s per path in {detect_rounds} slices",
                                backend.name()
                            );
                            cpu_cells.push(
                                cpu_cell(
                                    backend,
                                    name,
                                    bytes,
                                    &url,
                                    (&kept.secret, &not_kept.secret),
                                    detect_seconds,
                                    detect_rounds,
                                )
                                .await?,
                            );
                        }
                    }
                    if wants("detect") || wants("cpu") {
                        println!(
                            "[{}] images: {} records, {} with a stored blob",
                            backend.name(),
                            app.count("SELECT COUNT(*) FROM images").await?,
                            app.count("SELECT COUNT(*) FROM images WHERE blob_key IS NOT NULL")
                                .await?
                        );
                    }
                    anyhow::Ok(())
                }
                .await;
                app.close().await;
                outcome?;
            }
            anyhow::Ok(())
        })?;
    }

    println!("\n## Summary");
    if wants("keys") {
        print_key_summary(&backends);
    }
    if wants("http") {
        print_http_summary(&http_rows, http_seconds);
    }
    if wants("detect") {
        print_detect_summary(&cells, workers, detect_seconds, detect_rounds);
    }
    if wants("cpu") {
        print_cpu_summary(&cpu_cells, detect_seconds, detect_rounds);
    }
    if wants("latency") {
        print_latency_summary();
    }
    Ok(())
}
