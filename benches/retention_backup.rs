//! Retention purge and backup throughput, each against a baseline in the same run:
//! - purge of 100 000 expired images with local (encrypted) blobs vs `find -delete` of the
//!   same number of files of the same size;
//! - p50/p99 of an authenticated API read while the purge runs vs idle;
//! - `backup create` and `backup restore` (SQLite) vs `sqlite3 .backup` + `openssl enc`.
//!
//! Run: `cargo bench --bench retention_backup` (needs `sqlite3` and `openssl` on PATH).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use trustplane::app::AppState;
use trustplane::audit::{self, AuditEvent, RequestMeta};
use trustplane::clock::{DAY, ManualClock};
use trustplane::config::Config;
use trustplane::crypto::Keyring;
use trustplane::images::{self, ImageRecord};

const T0: i64 = 1_800_000_000_000;
const IMAGES: usize = 100_000;
const BLOB_BYTES: usize = 2_048;

async fn state(dir: &Path) -> anyhow::Result<AppState> {
    let config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        database_url: format!("sqlite://{}?mode=rwc", dir.join("tp.db").display()),
        detect_isolation: "thread".into(),
        detect_workers: 1,
        ..Config::default()
    };
    trustplane::server::build_state(config, ManualClock::new(T0), Keyring::generate()).await
}

/// Writes every dirty page to disk, as it is for blobs stored days ago. Without it, deleting
/// files written a moment before is much cheaper than deleting files on disk (ext4 has not
/// allocated their blocks yet): on this machine `find -delete` of 100 000 fresh 2 KiB files
/// took 0.8 s, of the same files after `sync` 8 s.
fn sync_to_disk() -> anyhow::Result<()> {
    let status = Command::new("sync").status()?;
    anyhow::ensure!(status.success(), "sync failed");
    Ok(())
}

/// One line of read latencies: count, p50 and p99 of sorted milliseconds.
fn print_reads(label: &str, sorted: &[f64]) {
    println!(
        "GET /v1/images/{{id}} {label:<66}: n={:>6} p50 {:>6.2} ms  p99 {:>6.2} ms",
        sorted.len(),
        percentile(sorted, 0.5),
        percentile(sorted, 0.99)
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Reads one image's metadata over HTTP in a loop until `stop`, returning latencies in ms:
/// back to back, or one request per `interval`. Paced, latency counts from when each
/// request was due (so a stalled server is charged for the requests it delayed, not only for
/// the one it was serving), but not the timer's own lateness (up to a millisecond).
async fn reader(
    base: String,
    key: String,
    image: String,
    interval: Option<Duration>,
    stop: Arc<AtomicBool>,
) -> Vec<f64> {
    let client = reqwest::Client::new();
    let mut latencies = Vec::new();
    let mut due = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let started = match interval {
            Some(_) if Instant::now() < due => {
                tokio::time::sleep_until(due.into()).await;
                Instant::now()
            }
            Some(_) => due,
            None => Instant::now(),
        };
        let response = client
            .get(format!("{base}/v1/images/{image}"))
            .header("x-api-key", &key)
            .send()
            .await;
        if matches!(response, Ok(r) if r.status().is_success()) {
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        due += interval.unwrap_or_default();
    }
    latencies
}

/// How the readers load the server: as fast as they can, or at a steady total rate.
#[derive(Clone, Copy)]
enum Load {
    Saturating,
    Paced { total_per_second: u64 },
}

const READERS: u64 = 4;

async fn measure_reads(
    base: &str,
    key: &str,
    image: &str,
    load: Load,
    during: impl std::future::Future<Output = ()>,
) -> Vec<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (base, key, image, stop) = (
                base.to_owned(),
                key.to_owned(),
                image.to_owned(),
                stop.clone(),
            );
            let interval = match load {
                Load::Saturating => None,
                Load::Paced { total_per_second } => Some(Duration::from_micros(
                    1_000_000 * READERS / total_per_second.max(1),
                )),
            };
            tokio::spawn(reader(base, key, image, interval, stop))
        })
        .collect();
    during.await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for r in readers {
        all.extend(r.await.unwrap_or_default());
    }
    all.sort_by(|a, b| a.total_cmp(b));
    all
}

async fn seed_customer(state: &AppState) -> anyhow::Result<(String, String)> {
    let now = state.now();
    let mut tx = state.db.begin().await?;
    let id = trustplane::customers::store::insert(
        &mut tx,
        &trustplane::customers::CustomerName::parse("Bench").map_err(anyhow::Error::msg)?,
        &trustplane::staff::model::Email::parse("ops@bench.example").map_err(anyhow::Error::msg)?,
        trustplane::keys::format::KeyEnv::Live,
        trustplane::customers::RetentionDays::new(30).map_err(anyhow::Error::msg)?,
        "bench",
        now,
    )
    .await?;
    let customer = trustplane::customers::store::find(&mut *tx, &id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("customer"))?;
    let key = trustplane::keys::issue(
        &mut tx,
        &state.keyring,
        &customer,
        "bench",
        &[trustplane::keys::model::Scope::ImagesRead],
        None,
        "bench",
        &RequestMeta::default(),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok((id, key.secret))
}

/// Runs `purge_state`'s purge (after writing everything to disk) while the readers load the
/// server at `base`: their sorted latencies and how long the purge took.
async fn purge_under_load(
    purge_state: &AppState,
    run_id: &str,
    base: &str,
    key: &str,
    image: &str,
    load: Load,
) -> (Vec<f64>, Duration) {
    if let Err(err) = sync_to_disk() {
        eprintln!("sync failed: {err:#}");
    }
    let mut took = Duration::ZERO;
    let reads = measure_reads(base, key, image, load, async {
        let started = Instant::now();
        if let Err(err) = trustplane::retention::purge(purge_state, run_id).await {
            eprintln!("purge failed: {err:#}");
        }
        took = started.elapsed();
    })
    .await;
    (reads, took)
}

async fn purge_bench() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let state = state(dir.path()).await?;
    let (customer, key) = seed_customer(&state).await?;
    let now = state.now();
    let pixels = vec![0x5Au8; BLOB_BYTES - 40];
    // One image that stays, for the reads, and IMAGES that have expired.
    let keep = uuid::Uuid::new_v4().to_string();
    seed_images(&state, &customer, &pixels, std::slice::from_ref(&keep), now).await?;
    seed_expired(&state, &customer, &pixels, now).await?;
    let running = trustplane::server::start(state.clone(), "127.0.0.1:0".parse()?).await?;
    let base = format!("http://{}", running.addr);

    let rate = std::env::var("PURGE_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let paced = Load::Paced {
        total_per_second: rate,
    };
    // The idle readings too, so that writing back the seeded blobs does not disturb them.
    sync_to_disk()?;
    let idle = measure_reads(
        &base,
        &key,
        &keep,
        Load::Saturating,
        tokio::time::sleep(Duration::from_secs(5)),
    )
    .await;
    let idle_paced = measure_reads(
        &base,
        &key,
        &keep,
        paced,
        tokio::time::sleep(Duration::from_secs(5)),
    )
    .await;
    let mut purge_time = Duration::ZERO;
    let mut deleted = serde_json::Value::Null;
    let scheduler = trustplane::jobs::Scheduler::new(state.clone())?;
    sync_to_disk()?;
    let busy = measure_reads(&base, &key, &keep, Load::Saturating, async {
        let started = Instant::now();
        if let Ok(summary) = scheduler.run_now("retention_purge").await {
            deleted = summary.counts;
        }
        purge_time = started.elapsed();
    })
    .await;
    // Again, with the readers at a steady rate, as real clients arrive.
    seed_expired(&state, &customer, &pixels, now).await?;
    let (busy_paced, paced_purge_time) =
        purge_under_load(&state, "paced-purge", &base, &key, &keep, paced).await;
    // The same two loads against a purge that never rests: run from a second state on the same
    // database and blobs, whose request counter sees none of the server's traffic.
    let unrested = crate::state(dir.path()).await?;
    seed_expired(&state, &customer, &pixels, now).await?;
    let (busy_unrested, unrested_time) = purge_under_load(
        &unrested,
        "unrested-purge",
        &base,
        &key,
        &keep,
        Load::Saturating,
    )
    .await;
    seed_expired(&state, &customer, &pixels, now).await?;
    let (busy_paced_unrested, unrested_paced_time) =
        purge_under_load(&unrested, "unrested-paced-purge", &base, &key, &keep, paced).await;
    unrested.db.pool.close().await;
    running.handle.shutdown();

    // The same purge again with nothing else running, as `find` runs below.
    seed_expired(&state, &customer, &pixels, now).await?;
    sync_to_disk()?;
    let started = Instant::now();
    trustplane::retention::purge(&state, "quiet-purge").await?;
    let quiet_purge_time = started.elapsed();

    // Baseline: the same number of files of the same size, deleted by find.
    let plain = tempfile::tempdir()?;
    for i in 0..IMAGES {
        let sub = plain.path().join(format!("{}", i % 256));
        if i < 256 {
            std::fs::create_dir_all(&sub)?;
        }
        std::fs::write(sub.join(format!("{i}")), &pixels)?;
    }
    sync_to_disk()?;
    let started = Instant::now();
    let status = Command::new("find")
        .arg(plain.path())
        .args(["-type", "f", "-delete"])
        .status()?;
    let find_time = started.elapsed();
    anyhow::ensure!(status.success(), "find failed");

    println!(
        "\n== retention purge, {IMAGES} expired images with {BLOB_BYTES}-byte encrypted local blobs =="
    );
    println!("purge counts: {deleted}");
    println!(
        "trustplane purge : {:>8.2} s  {:>9.0} images/s",
        purge_time.as_secs_f64(),
        IMAGES as f64 / purge_time.as_secs_f64()
    );
    println!(
        "trustplane purge, no API load: {:>8.2} s  {:>9.0} images/s  (ratio to find {:.1}x)",
        quiet_purge_time.as_secs_f64(),
        IMAGES as f64 / quiet_purge_time.as_secs_f64(),
        quiet_purge_time.as_secs_f64() / find_time.as_secs_f64()
    );
    println!(
        "find -delete     : {:>8.2} s  {:>9.0 } files/s   (ratio {:.1}x)",
        find_time.as_secs_f64(),
        IMAGES as f64 / find_time.as_secs_f64(),
        purge_time.as_secs_f64() / find_time.as_secs_f64()
    );
    print_reads("idle", &idle);
    print_reads("during purge", &busy);
    print_reads(&format!("idle, {rate}/s steady"), &idle_paced);
    print_reads(
        &format!(
            "during purge, {rate}/s steady (purge {:.2} s)",
            paced_purge_time.as_secs_f64()
        ),
        &busy_paced,
    );
    print_reads(
        &format!(
            "during a purge that never rests (purge {:.2} s)",
            unrested_time.as_secs_f64()
        ),
        &busy_unrested,
    );
    print_reads(
        &format!(
            "during a purge that never rests, {rate}/s steady (purge {:.2} s)",
            unrested_paced_time.as_secs_f64()
        ),
        &busy_paced_unrested,
    );
    state.db.pool.close().await;
    Ok(())
}

/// IMAGES production images that expired a day ago, each with its encrypted local blob.
async fn seed_expired(
    state: &AppState,
    customer: &str,
    pixels: &[u8],
    now: i64,
) -> anyhow::Result<()> {
    let ids: Vec<String> = (0..IMAGES)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    seed_images(state, customer, pixels, &ids, now - 31 * DAY).await
}

/// Images created at `created` (kept 30 days), with blobs, inserted 5 000 per transaction.
async fn seed_images(
    state: &AppState,
    customer: &str,
    pixels: &[u8],
    ids: &[String],
    created: i64,
) -> anyhow::Result<()> {
    let mut records = Vec::with_capacity(ids.len());
    for id in ids {
        let blob_key = format!("{customer}/{id}");
        state
            .blobs
            .put_sealed(&blob_key, pixels, &state.keyring, blob_key.as_bytes())
            .await?;
        records.push(ImageRecord {
            id: id.clone(),
            customer_id: Some(customer.to_owned()),
            key_id: None,
            kind: "production".into(),
            format: "png".into(),
            width: 10,
            height: 10,
            byte_size: BLOB_BYTES as i64,
            blob_key: Some(blob_key),
            result: r#"{"faces":[],"quality":{"brightness":0.5,"sharpness":1.0,"largest_face_ratio":0.0},"processing_ms":1.0}"#.into(),
            created_at: created,
            expires_at: created + 30 * DAY,
            retained_until: Some(created + 30 * DAY),
        });
    }
    for chunk in records.chunks(5_000) {
        let mut tx = state.db.begin().await?;
        for record in chunk {
            images::insert(&mut tx, record).await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

fn timed(mut command: Command) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = command.status()?;
    anyhow::ensure!(status.success(), "{command:?} failed");
    Ok(started.elapsed())
}

async fn backup_bench() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let state = state(dir.path()).await?;
    for batch in 0..20 {
        let mut tx = state.db.begin().await?;
        for i in 0..10_000 {
            let event = AuditEvent::new("system", "bench.event", format!("item:{batch}:{i}"))
                .detail(
                    "text",
                    "a realistic amount of audit detail for one event in the log",
                );
            audit::append(&mut tx, state.now(), &RequestMeta::default(), event).await?;
        }
        tx.commit().await?;
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&state.db.pool)
        .await?;
    let db_bytes = std::fs::metadata(dir.path().join("tp.db"))?.len() as f64;
    let mb = db_bytes / 1_000_000.0;

    let out = dir.path().join("b.tpbk");
    let started = Instant::now();
    trustplane::backup::create(&state, &out, "manual").await?;
    let backup_time = started.elapsed();
    let restored = dir.path().join("restored.db");
    let started = Instant::now();
    trustplane::backup::restore_sqlite(&out, &restored, &state.keyring)?;
    let restore_time = started.elapsed();

    // Baseline: sqlite3 .backup + openssl enc (AES-256-CTR), and the reverse.
    let copy = dir.path().join("copy.db");
    let mut sqlite = Command::new("sqlite3");
    sqlite
        .arg(dir.path().join("tp.db"))
        .arg(format!(".backup '{}'", copy.display()));
    let sqlite_time = timed(sqlite)?;
    let mut enc = Command::new("openssl");
    enc.args([
        "enc",
        "-aes-256-ctr",
        "-pbkdf2",
        "-pass",
        "pass:bench",
        "-in",
    ])
    .arg(&copy)
    .arg("-out")
    .arg(dir.path().join("copy.enc"));
    let enc_time = timed(enc)?;
    let mut dec = Command::new("openssl");
    dec.args([
        "enc",
        "-d",
        "-aes-256-ctr",
        "-pbkdf2",
        "-pass",
        "pass:bench",
        "-in",
    ])
    .arg(dir.path().join("copy.enc"))
    .arg("-out")
    .arg(dir.path().join("copy.dec"));
    let dec_time = timed(dec)?;

    println!("\n== backup and restore, SQLite database of {mb:.1} MB (200 000 audit events) ==");
    let rate = |d: Duration| mb / d.as_secs_f64();
    println!(
        "trustplane backup create : {:>7.3} s  {:>7.1} MB/s",
        backup_time.as_secs_f64(),
        rate(backup_time)
    );
    println!(
        "sqlite3 .backup + openssl enc: {:>7.3} s  {:>7.1} MB/s",
        (sqlite_time + enc_time).as_secs_f64(),
        rate(sqlite_time + enc_time)
    );
    println!(
        "trustplane backup restore (verify + decrypt + rename): {:>7.3} s  {:>7.1} MB/s",
        restore_time.as_secs_f64(),
        rate(restore_time)
    );
    println!(
        "openssl enc -d                  : {:>7.3} s  {:>7.1} MB/s",
        dec_time.as_secs_f64(),
        rate(dec_time)
    );
    state.db.pool.close().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; anything else (filters) is ignored here.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // RETENTION_BENCH_PARTS=purge (or backup) runs one part only.
    let parts = std::env::var("RETENTION_BENCH_PARTS").unwrap_or_else(|_| "backup,purge".into());
    runtime.block_on(async {
        if parts.contains("backup") {
            backup_bench().await?;
        }
        if parts.contains("purge") {
            purge_bench().await?;
        }
        Ok(())
    })
}
