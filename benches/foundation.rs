//! Costs of the foundation's hot paths, each next to a baseline measured in the same run:
//!
//! - password verification (Argon2id) vs one SHA-256 of the password;
//! - TOTP verification vs one HMAC-SHA256;
//! - a Casbin decision vs a `HashSet` lookup of the same policy;
//! - a session lookup vs `SELECT 1` on the same pool (SQLite and PostgreSQL);
//! - a hash-chained audit append in its own transaction vs a plain single-row insert of the
//!   same width in its own transaction (SQLite and PostgreSQL).
//!
//! Run: `cargo bench --bench foundation` (PostgreSQL at `TRUSTPLANE_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; skipped with a notice when unreachable).

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use trustplane::audit::{self, AuditEvent, RequestMeta};
use trustplane::authn::{password, session, totp};
use trustplane::authz::Authz;
use trustplane::crypto::{Keyring, sha256_hex};
use trustplane::staff::model::Role;

mod common;

use common::{BenchDb, PASSWORD, T0};

fn runtime() -> Runtime {
    Runtime::new().expect("tokio runtime")
}

fn password_verify(c: &mut Criterion) {
    let stored = password::hash(PASSWORD).expect("hash");
    assert!(password::verify(PASSWORD, &stored));
    assert!(!password::verify(
        "a perfectly long benchmark passphrasE",
        &stored
    ));

    let mut group = c.benchmark_group("password");
    group.bench_function("baseline_sha256", |b| {
        b.iter(|| sha256_hex(black_box(PASSWORD).as_bytes()))
    });
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    group.bench_function("argon2id_verify", |b| {
        b.iter(|| password::verify(black_box(PASSWORD), &stored))
    });
    group.finish();
}

fn totp_verify(c: &mut Criterion) {
    let secret = totp::generate_secret();
    let step = totp::step_at(T0);
    let window: Vec<String> = (step - 1..=step + 1)
        .map(|s| totp::code_at_step(&secret, s).expect("code"))
        .collect();
    let valid = window[1].clone();
    let wrong = (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|code| !window.contains(code))
        .expect("a code outside the window");
    assert_eq!(totp::matching_step(&secret, &valid, T0), Some(step));
    assert_eq!(totp::matching_step(&secret, &wrong, T0), None);
    let keyring = Keyring::generate();

    let mut group = c.benchmark_group("totp");
    group.bench_function("baseline_hmac_sha256", |b| {
        b.iter(|| keyring.pepper_hmac_hex(black_box(valid.as_bytes())))
    });
    group.bench_function("matching_step_valid", |b| {
        b.iter(|| totp::matching_step(&secret, black_box(&valid), T0))
    });
    group.bench_function("matching_step_wrong", |b| {
        b.iter(|| totp::matching_step(&secret, black_box(&wrong), T0))
    });
    group.finish();
}

/// The embedded policy as (role, resource, action) triples, for the baseline.
fn policy_triples() -> HashSet<(&'static str, &'static str, &'static str)> {
    include_str!("../policies/policy.csv")
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(',').map(str::trim);
            match (fields.next(), fields.next(), fields.next(), fields.next()) {
                (Some("p"), Some(role), Some(resource), Some(action)) => {
                    Some((role, resource, action))
                }
                _ => None,
            }
        })
        .collect()
}

/// What the Casbin matcher decides, with plain lookups: exact resource, then `*`.
fn baseline_allows<'a>(
    policy: &HashSet<(&'a str, &'a str, &'a str)>,
    roles: &[&'a str],
    resource: &'a str,
    action: &'a str,
) -> bool {
    roles.iter().any(|&role| {
        policy.contains(&(role, resource, action)) || policy.contains(&(role, "*", action))
    })
}

fn casbin_enforce(c: &mut Criterion) {
    let authz = runtime().block_on(Authz::load("")).expect("policies");
    let policy = policy_triples();
    for (roles, resource, action, expected) in [
        (&["auditor"], "staff", "read", true),
        (&["security"], "staff", "read", false),
    ] {
        assert_eq!(authz.allows(roles, resource, action), expected);
        assert_eq!(baseline_allows(&policy, roles, resource, action), expected);
    }

    let mut group = c.benchmark_group("casbin");
    group.bench_function("baseline_hashset_allowed", |b| {
        b.iter(|| baseline_allows(&policy, black_box(&["auditor"]), "staff", "read"))
    });
    group.bench_function("baseline_hashset_denied", |b| {
        b.iter(|| baseline_allows(&policy, black_box(&["security"]), "staff", "read"))
    });
    group.bench_function("enforce_allowed", |b| {
        b.iter(|| authz.allows(black_box(&["auditor"]), "staff", "read"))
    });
    group.bench_function("enforce_denied", |b| {
        b.iter(|| authz.allows(black_box(&["security"]), "staff", "read"))
    });
    group.finish();
}

fn session_lookup(c: &mut Criterion) {
    let rt = runtime();
    for backend in rt.block_on(common::backends()) {
        let db = rt.block_on(BenchDb::open(backend)).expect("database");
        let state = db.state.clone();
        let token = rt
            .block_on(common::staff_with_session(
                &state,
                "auditor@example.com",
                &[Role::Auditor],
            ))
            .expect("session");
        let idle = 30 * 60 * 1000;
        let found = rt
            .block_on(session::lookup(&state.db, &token, T0, idle))
            .expect("lookup")
            .expect("session is valid");
        assert_eq!(found.roles, vec!["auditor".to_owned()]);

        let mut group = c.benchmark_group(format!("session_lookup_{}", db.backend.name()));
        group
            .sample_size(50)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4));
        group.bench_function("baseline_select_1", |b| {
            b.to_async(&rt)
                .iter(|| async { state.db.ping().await.expect("ping") })
        });
        group.bench_function("lookup", |b| {
            b.to_async(&rt).iter(|| async {
                session::lookup(&state.db, &token, T0, idle)
                    .await
                    .expect("lookup")
                    .expect("session is valid")
            })
        });
        group.finish();
        drop(state);
        rt.block_on(db.close()).expect("close");
    }
}

/// A scratch table as wide as `audit_log` (same columns and secondary indexes, no chain).
const PLAIN_TABLE: [&str; 3] = [
    "CREATE TABLE bench_plain (seq BIGINT PRIMARY KEY, at BIGINT NOT NULL, \
     actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL, \
     client_ip TEXT, request_id TEXT, details TEXT NOT NULL, prev_hash TEXT NOT NULL, \
     hash TEXT NOT NULL)",
    "CREATE INDEX bench_plain_actor ON bench_plain(actor, seq)",
    "CREATE INDEX bench_plain_action ON bench_plain(action, seq)",
];

async fn plain_insert(db: &BenchDb, seq: i64) -> Result<(), sqlx::Error> {
    let hash = sha256_hex(&seq.to_be_bytes());
    let mut tx = db.state.db.begin().await?;
    sqlx::query(
        "INSERT INTO bench_plain (seq, at, actor, action, target, outcome, client_ip, \
         request_id, details, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
         $10, $11)",
    )
    .bind(seq)
    .bind(T0)
    .bind("system")
    .bind("bench.event")
    .bind("target")
    .bind("success")
    .bind(None::<String>)
    .bind(None::<String>)
    .bind(format!("{{\"i\":{seq}}}"))
    .bind(audit::GENESIS_HASH)
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

fn audit_append(c: &mut Criterion) {
    let rt = runtime();
    for backend in rt.block_on(common::backends()) {
        let db = rt.block_on(BenchDb::open(backend)).expect("database");
        rt.block_on(async {
            for sql in PLAIN_TABLE {
                sqlx::query(sql).execute(&db.state.db.pool).await?;
            }
            Ok::<_, sqlx::Error>(())
        })
        .expect("scratch table");
        let meta = RequestMeta::default();
        let plain_seq = AtomicI64::new(0);
        let event_no = AtomicI64::new(0);

        let mut group = c.benchmark_group(format!("audit_append_{}", db.backend.name()));
        group
            .throughput(Throughput::Elements(1))
            .sample_size(50)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5));
        group.bench_function("baseline_plain_insert_tx", |b| {
            b.to_async(&rt).iter(|| async {
                let seq = plain_seq.fetch_add(1, Ordering::Relaxed) + 1;
                plain_insert(&db, seq).await.expect("insert")
            })
        });
        group.bench_function("append_alone", |b| {
            b.to_async(&rt).iter(|| async {
                let i = event_no.fetch_add(1, Ordering::Relaxed);
                let event = AuditEvent::new("system", "bench.event", "target").detail("i", i);
                audit::append_alone(&db.state.db, T0, &meta, event)
                    .await
                    .expect("append")
            })
        });
        group.finish();

        let verification = rt.block_on(audit::verify(&db.state.db)).expect("verify");
        assert!(verification.ok(), "{verification:?}");
        eprintln!(
            "audit_append_{}: chain of {} rows verifies",
            backend.name(),
            verification.checked
        );
        rt.block_on(db.close()).expect("close");
    }
}

criterion_group!(
    benches,
    password_verify,
    totp_verify,
    casbin_enforce,
    session_lookup,
    audit_append
);
criterion_main!(benches);
