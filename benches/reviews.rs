//! Opening an access-review campaign over 2 000 staff role grants and 50 000 API keys
//! (`trustplane::reviews::open`: snapshot, flags, round-robin reviewers, multi-row inserts,
//! the SLA clock, the audit row), next to copying the same rows with two bare
//! `INSERT … SELECT` statements in the same run; then the campaign page with those 52 000
//! items, filtered and paginated, against `/healthz` on the same server (median of 41
//! sequential requests each).
//!
//! Every opening is measured inside a transaction that is rolled back, so each run starts
//! from the same database; the page is measured on a campaign opened for real.
//!
//! Run: `cargo bench --bench reviews` (PostgreSQL at `TRUSTPLANE_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, is skipped with a notice when unreachable).

use std::time::Instant;

use trustplane::audit::RequestMeta;
use trustplane::clock::DAY;
use trustplane::reviews::model::Quarter;
use trustplane::staff::model::Role;

mod common;

use common::{BenchDb, T0};

const STAFF: i64 = 1_000;
/// Each account holds two roles: 2 000 grants. The first 20 accounts review.
const REVIEWERS: i64 = 20;
const CUSTOMERS: i64 = 100;
const KEYS: i64 = 50_000;
const RUNS: usize = 3;
const ROWS_PER_INSERT: i64 = 500;

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("reviews: skipped (run it with `cargo bench --bench reviews`)");
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

/// Runs `sql` with `rows` value tuples of `width` placeholders each, binding `bind(i, q)`.
async fn insert_rows(
    db: &BenchDb,
    head: &str,
    total: i64,
    values: impl Fn(i64) -> String,
) -> anyhow::Result<()> {
    let mut i = 0;
    while i < total {
        let end = (i + ROWS_PER_INSERT).min(total);
        let rows: Vec<String> = (i..end).map(&values).collect();
        sqlx::query(&format!("{head} VALUES {}", rows.join(", ")))
            .execute(&db.state.db.pool)
            .await?;
        i = end;
    }
    Ok(())
}

async fn seed(db: &BenchDb) -> anyhow::Result<()> {
    let started = Instant::now();
    // Values are generated numbers and fixed words only, so inlining them is safe here.
    insert_rows(
        db,
        "INSERT INTO staff (id, email, display_name, password_hash, totp_enabled, created_at, updated_at, last_login_at)",
        STAFF,
        |i| {
            let login = if i % 3 == 0 { "NULL".to_owned() } else { (T0 - (i % 200) * DAY).to_string() };
            format!("('s{i}', 'person{i:04}@example.com', 'Person {i}', 'x', {}, {}, {}, {login})",
                i32::from(i % 50 != 0), T0 - 400 * DAY, T0 - 400 * DAY)
        },
    )
    .await?;
    let roles = ["security", "compliance", "auditor", "admin"];
    insert_rows(
        db,
        "INSERT INTO staff_roles (staff_id, role, granted_by, granted_at)",
        STAFF * 2,
        |n| {
            let i = n / 2;
            let role = if n % 2 == 0 {
                if i < REVIEWERS {
                    "reviewer"
                } else {
                    roles[(i % 4) as usize]
                }
            } else {
                roles[((i + 1) % 4) as usize]
            };
            format!(
                "('s{i}', '{role}', 'staff:person{:04}@example.com', {})",
                (i + 7) % STAFF,
                T0 - 300 * DAY
            )
        },
    )
    .await?;
    insert_rows(
        db,
        "INSERT INTO customers (id, name, contact_email, environment, retention_days, created_at, created_by, updated_at)",
        CUSTOMERS,
        |c| format!("('c{c}', 'Customer {c:03}', 'ops@example.com', 'live', 30, {}, 'bench', {})", T0 - 500 * DAY, T0 - 500 * DAY),
    )
    .await?;
    let scopes = [
        "faces:detect",
        "faces:detect,images:read",
        "faces:detect,images:delete,images:read",
    ];
    insert_rows(
        db,
        "INSERT INTO api_keys (id, customer_id, name, prefix, key_hash, pepper_id, scopes, created_at, created_by, expires_at, last_used_at, request_count)",
        KEYS,
        |k| {
            let used = if k % 4 == 0 { "NULL".to_owned() } else { (T0 - (k % 180) * DAY).to_string() };
            let expires = if k % 10 == 0 { (T0 + 30 * DAY).to_string() } else { "NULL".to_owned() };
            format!("('k{k}', 'c{}', 'key {k}', 'tp_live_{k:08}', 'hash{k}', 'p1', '{}', {}, 'staff:person{:04}@example.com', {expires}, {used}, {})",
                k % CUSTOMERS, scopes[(k % 3) as usize], T0 - 200 * DAY, k % STAFF, k % 1000)
        },
    )
    .await?;
    let period_hour = Quarter::parse("2026Q4")
        .ok()
        .and_then(|q| q.starts_at(chrono_tz::Tz::UTC))
        .unwrap_or(T0 - 90 * DAY)
        + 10 * DAY;
    insert_rows(
        db,
        "INSERT INTO api_usage (key_id, hour_start, requests, errors)",
        KEYS,
        |k| format!("('k{k}', {period_hour}, {}, 0)", k % 1000),
    )
    .await?;
    sqlx::query("ANALYZE").execute(&db.state.db.pool).await?;
    println!(
        "[{}] seeded {} grants, {KEYS} keys in {:.1} s",
        db.backend.name(),
        STAFF * 2,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn median(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

async fn open_once(db: &BenchDb, commit: bool) -> anyhow::Result<(f64, String)> {
    let settings = trustplane::reviews::Settings::from_config(&db.state.config);
    let started = Instant::now();
    let mut tx = db.state.db.begin().await?;
    let campaign = trustplane::reviews::open(
        &mut tx,
        &settings,
        &db.state.sla_calendar,
        Quarter::parse("2027Q1").map_err(anyhow::Error::msg)?,
        "bench",
        &RequestMeta::default(),
        T0,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        campaign.item_count == STAFF * 2 + KEYS,
        "{} items",
        campaign.item_count
    );
    if commit {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok((started.elapsed().as_secs_f64() * 1_000.0, campaign.id))
}

/// The floor: the same rows copied by the database alone, no flags, reviewers or clock.
async fn insert_select_once(db: &BenchDb) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tx = db.state.db.begin().await?;
    sqlx::query(
        "INSERT INTO review_campaigns (id, quarter, state, opened_at, opened_by, period_start, period_end) \
         VALUES ('base', 'base', 'open', $1, 'bench', 0, $1)",
    )
    .bind(T0)
    .execute(&mut *tx)
    .await?;
    let staff = sqlx::query(
        "INSERT INTO review_items (id, campaign_id, number, kind, subject_id, subject_label, role, \
         granted_by, granted_at, mfa, account_created_at, last_login_at, flags) \
         SELECT s.id || ':' || r.role, 'base', ROW_NUMBER() OVER (ORDER BY s.email, r.role), 'staff_role', s.id, s.email, r.role, r.granted_by, \
         r.granted_at, CASE WHEN s.totp_enabled = 1 THEN 'totp' ELSE 'none' END, s.created_at, \
         s.last_login_at, '' FROM staff_roles r JOIN staff s ON s.id = r.staff_id",
    )
    .execute(&mut *tx)
    .await?;
    let keys = sqlx::query(
        "INSERT INTO review_items (id, campaign_id, number, kind, subject_id, subject_label, \
         customer_id, customer_name, scopes, key_created_at, key_created_by, last_used_at, \
         requests_in_period, expires_at, flags) \
         SELECT k.id, 'base', 100000 + ROW_NUMBER() OVER (ORDER BY c.name, k.created_at, k.id), 'api_key', k.id, k.prefix, k.customer_id, c.name, k.scopes, \
         k.created_at, k.created_by, k.last_used_at, k.request_count, k.expires_at, '' \
         FROM api_keys k JOIN customers c ON c.id = k.customer_id \
         WHERE k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $1)",
    )
    .bind(T0)
    .execute(&mut *tx)
    .await?;
    anyhow::ensure!(staff.rows_affected() as i64 + keys.rows_affected() as i64 == STAFF * 2 + KEYS);
    tx.rollback().await?;
    Ok(started.elapsed().as_secs_f64() * 1_000.0)
}

async fn measure(db: &BenchDb) -> anyhow::Result<()> {
    seed(db).await?;
    let name = db.backend.name();
    let mut opens = Vec::new();
    let mut floors = Vec::new();
    for _ in 0..RUNS {
        opens.push(open_once(db, false).await?.0);
        floors.push(insert_select_once(db).await?);
    }
    let (open_ms, floor_ms) = (median(opens), median(floors));
    println!(
        "[{name}] open a campaign of {} items: {open_ms:.0} ms (median of {RUNS}); INSERT … SELECT of the same rows: {floor_ms:.0} ms; × {:.1}",
        STAFF * 2 + KEYS,
        open_ms / floor_ms
    );

    let (_, id) = open_once(db, true).await?;
    let token =
        common::staff_with_session(&db.state, "bench-reviewer@example.com", &[Role::Reviewer])
            .await?;
    let cookie = format!("tp_session={token}");
    let running = trustplane::server::start(db.state.clone(), "127.0.0.1:0".parse()?).await?;
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::new();
    let pages = [
        ("/healthz".to_owned(), "ok"),
        (format!("/reviews/{id}"), "page 1 of 1040"),
        (
            format!("/reviews/{id}?kind=api_key&flag=dormant&page=100"),
            "page 100 of",
        ),
        (
            format!("/reviews/{id}?status=open&mine=&q=customer%20042&page=5"),
            "page 5 of",
        ),
    ];
    let mut healthz = 0.0;
    for (path, needle) in &pages {
        let url = format!("{base}{path}");
        if path != "/healthz" {
            common::wrk::check_page(&client, &url, &cookie, needle).await?;
        }
        let ms = common::wrk::serial_median_ms(&client, &url, &cookie).await?;
        if path == "/healthz" {
            healthz = ms;
        }
        println!(
            "[{name}] GET {path}: p50 {ms:.2} ms (× {:.0} /healthz)",
            ms / healthz.max(0.001)
        );
    }
    running.handle.shutdown();
    Ok(())
}
