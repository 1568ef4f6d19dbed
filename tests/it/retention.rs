//! The scheduler and the retention purge: once per occurrence across nodes, lease take-over,
//! catch-up once, exactly the expired images deleted, no orphans after a crash, the control.

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use trustplane::clock::{DAY, HOUR, MINUTE};
use trustplane::images::{self, ImageRecord};
use trustplane::jobs::Scheduler;
use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;

/// Stores an image record (and, when kept, a sealed blob) created at `created_at`.
async fn put_image(
    app: &TestApp,
    customer: Option<&str>,
    created_at: i64,
    retention_days: i64,
) -> (String, Option<String>) {
    let id = uuid::Uuid::new_v4().to_string();
    let kind = if customer.is_some() {
        "production"
    } else {
        "demo"
    };
    let blob_key = (retention_days > 0).then(|| format!("{}/{id}", customer.unwrap_or("demo")));
    if let Some(key) = &blob_key {
        app.state
            .blobs
            .put_sealed(key, b"pixels", &app.state.keyring, key.as_bytes())
            .await
            .unwrap();
    }
    let lifetime = if retention_days > 0 {
        retention_days * DAY
    } else {
        30 * DAY
    };
    let record = ImageRecord {
        id: id.clone(),
        customer_id: customer.map(str::to_owned),
        key_id: None,
        kind: kind.into(),
        format: "png".into(),
        width: 10,
        height: 10,
        byte_size: 6,
        blob_key: blob_key.clone(),
        result: "{}".into(),
        created_at,
        expires_at: created_at + lifetime,
        retained_until: blob_key.as_ref().map(|_| created_at + lifetime),
    };
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    images::insert(&mut conn, &record).await.unwrap();
    (id, blob_key)
}

/// How many of `runs` were retention purges.
fn purges(runs: &[trustplane::jobs::RunSummary]) -> usize {
    runs.iter().filter(|r| r.job == "retention_purge").count()
}

async fn purge(app: &TestApp) -> serde_json::Value {
    let scheduler = Scheduler::new(app.state.clone()).unwrap();
    let summary = scheduler.run_now("retention_purge").await.unwrap();
    assert!(summary.ok, "{:?}", summary.error);
    summary.counts
}

async fn purge_deletes_exactly_the_expired_images(backend: Backend) {
    let app = spawn_app(backend).await;
    let customer = app.create_customer("Acme", "live", 30).await;
    for seed in [7_u64, 42, 1234] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut expected_alive = BTreeSet::new();
        let mut all = Vec::new();
        let now_after = app.state.now() + rng.gen_range(0..40) * DAY;
        for _ in 0..40 {
            let created = app.state.now() - rng.gen_range(0..35 * DAY);
            let demo = rng.gen_bool(0.3);
            let retention = if demo {
                rng.gen_range(0..=7)
            } else {
                rng.gen_range(0..=30)
            };
            let (id, blob) = put_image(
                &app,
                (!demo).then_some(customer.as_str()),
                created,
                retention,
            )
            .await;
            let lifetime = if retention > 0 {
                retention * DAY
            } else {
                30 * DAY
            };
            if created + lifetime > now_after {
                expected_alive.insert(id.clone());
            }
            all.push((id, blob));
        }
        app.clock.set(now_after);
        purge(&app).await;
        let mut alive = BTreeSet::new();
        for (id, blob) in &all {
            let record = images::find(&app.state.db, id).await.unwrap();
            if record.is_some() {
                alive.insert(id.clone());
            }
            if let Some(blob) = blob {
                assert_eq!(
                    app.state.blobs.exists(blob).await.unwrap(),
                    record.is_some(),
                    "blob follows its record"
                );
            }
        }
        assert_eq!(alive, expected_alive, "seed {seed}");
        // Everything still kept is within its limit.
        let control = trustplane::retention::control(&app.state).await.unwrap();
        assert!(control.production_ok && control.demo_ok);
    }
}
both_backends!(purge_deletes_exactly_the_expired_images);

async fn a_crash_in_the_middle_of_a_purge_leaves_no_orphans_after_the_next_run(backend: Backend) {
    let app = spawn_app(backend).await;
    let customer = app.create_customer("Acme", "live", 1).await;
    let now = app.state.now();
    let (expired, expired_blob) = put_image(&app, Some(&customer), now - 2 * DAY, 1).await;
    let (kept, kept_blob) = put_image(&app, Some(&customer), now, 1).await;
    // A purge that died after deleting the blob but before deleting the record…
    app.state
        .blobs
        .delete(expired_blob.as_ref().unwrap())
        .await
        .unwrap();
    // …and an upload that died after writing its blob but before its record.
    let orphan = format!("{customer}/{}", uuid::Uuid::new_v4());
    app.state
        .blobs
        .put_sealed(&orphan, b"x", &app.state.keyring, orphan.as_bytes())
        .await
        .unwrap();

    let counts = purge(&app).await;
    assert_eq!(counts["production_deleted"], 1);
    assert_eq!(counts["orphans_removed"], 1);
    assert!(
        images::find(&app.state.db, &expired)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!app.state.blobs.exists(&orphan).await.unwrap());
    assert!(
        images::find(&app.state.db, &kept).await.unwrap().is_some(),
        "nothing unexpired deleted"
    );
    assert!(
        app.state
            .blobs
            .exists(kept_blob.as_ref().unwrap())
            .await
            .unwrap()
    );
    // Idempotent: running again changes nothing.
    app.clock.advance(trustplane::clock::SECOND);
    let again = purge(&app).await;
    assert_eq!(
        (
            again["production_deleted"].as_i64(),
            again["orphans_removed"].as_i64()
        ),
        (Some(0), Some(0))
    );
}
both_backends!(a_crash_in_the_middle_of_a_purge_leaves_no_orphans_after_the_next_run);

async fn two_schedulers_never_run_the_same_occurrence_twice(backend: Backend) {
    let app = spawn_app(backend).await;
    let other_node = app.second_node().await;
    let a = Scheduler::new(app.state.clone()).unwrap();
    let b = Scheduler::new(other_node).unwrap();
    let mut total = 0;
    for _ in 0..5 {
        app.clock.advance(10 * MINUTE);
        let (ra, rb) = tokio::join!(a.tick(), b.tick());
        let runs = purges(&ra.unwrap()) + purges(&rb.unwrap());
        assert_eq!(runs, 1, "exactly one node runs each occurrence");
        total += runs;
    }
    let rows = app
        .count("SELECT COUNT(*) FROM job_runs WHERE job = 'retention_purge'")
        .await;
    let distinct = app
        .count("SELECT COUNT(DISTINCT occurrence) FROM job_runs WHERE job = 'retention_purge'")
        .await;
    assert_eq!((rows, distinct, total as i64), (5, 5, 5));
}
both_backends!(two_schedulers_never_run_the_same_occurrence_twice);

async fn a_dead_nodes_run_is_taken_over_after_its_lease(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = app.state.now();
    // Node "dead" claimed an occurrence and then vanished.
    let occurrence = now - now.rem_euclid(10 * MINUTE);
    trustplane::jobs::store::claim(
        &app.state.db,
        "retention_purge",
        occurrence,
        trustplane::jobs::Trigger::Schedule,
        "dead-node",
        now,
        now + trustplane::jobs::LEASE,
    )
    .await
    .unwrap()
    .unwrap();
    let survivor = Scheduler::new(app.state.clone()).unwrap();
    app.clock.advance(MINUTE);
    assert_eq!(
        purges(&survivor.tick().await.unwrap()),
        0,
        "lease still valid: hands off"
    );
    app.clock.advance(trustplane::jobs::LEASE);
    let runs = survivor.tick().await.unwrap();
    assert!(
        runs.iter().any(|r| r.occurrence == occurrence && r.ok),
        "{runs:?}"
    );
    let attempts = app
        .count(&format!(
            "SELECT CAST(attempts AS BIGINT) FROM job_runs WHERE job = 'retention_purge' AND occurrence = {occurrence}"
        ))
        .await;
    assert_eq!(attempts, 2);
    let finished = app
        .count(
            "SELECT COUNT(*) FROM job_runs WHERE outcome = 'running' AND job = 'retention_purge'",
        )
        .await;
    assert_eq!(finished, 0);
}
both_backends!(a_dead_nodes_run_is_taken_over_after_its_lease);

async fn missed_occurrences_after_downtime_run_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let scheduler = Scheduler::new(app.state.clone()).unwrap();
    assert_eq!(
        purges(&scheduler.tick().await.unwrap()),
        1,
        "first start catches up once"
    );
    assert_eq!(purges(&scheduler.tick().await.unwrap()), 0);
    app.clock.advance(5 * HOUR + 3 * MINUTE); // 30 occurrences missed
    assert_eq!(purges(&scheduler.tick().await.unwrap()), 1);
    assert_eq!(purges(&scheduler.tick().await.unwrap()), 0);
    let runs = app
        .count("SELECT COUNT(*) FROM job_runs WHERE job = 'retention_purge'")
        .await;
    assert_eq!(runs, 2);
}
both_backends!(missed_occurrences_after_downtime_run_once);

async fn the_retention_control_shows_on_the_dashboard_and_in_metrics(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let now = app.state.now();
    put_image(&app, Some(&customer), now - 3 * DAY, 30).await;
    put_image(&app, None, now - 40 * DAY, 7).await; // expired demo image awaiting purge

    let page = app.get(&admin, "/").await.text().await.unwrap();
    assert!(
        page.contains("card control bad\" data-control=\"RET\""),
        "red before the purge"
    );
    let metrics = app.get(&admin, "/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("trustplane_retention_control_ok{kind=\"demo\"} 0"),
        "{metrics}"
    );

    let response = app
        .submit(&admin, "/jobs", "/jobs/retention_purge/run", &[])
        .await;
    assert_eq!(response.status(), 303);
    let page = app.get(&admin, "/").await.text().await.unwrap();
    assert!(
        page.contains("card control ok\" data-control=\"RET\""),
        "green after the purge"
    );
    assert!(page.contains("Oldest production image: <strong>3 d 0 h</strong>"));
    assert!(page.contains("Oldest demo image: <strong>none kept</strong>"));
    let metrics = app.get(&admin, "/metrics").await.text().await.unwrap();
    assert!(metrics.contains("trustplane_retention_control_ok{kind=\"production\"} 1"));
    assert!(metrics.contains("trustplane_oldest_image_age_seconds{kind=\"production\"} 259200"));
    let jobs = app.get(&admin, "/jobs").await.text().await.unwrap();
    assert!(
        jobs.contains("<dt>Demo deleted</dt><dd>"),
        "counts read as labelled values"
    );
    assert!(
        jobs.contains("demo_deleted"),
        "the raw JSON stays one click away"
    );
    let actions = app.audit_actions().await;
    assert!(actions.contains(&("job.run_now".into(), "success".into())));
    assert!(actions.contains(&("retention.purge".into(), "success".into())));
}
both_backends!(the_retention_control_shows_on_the_dashboard_and_in_metrics);

async fn purge_run_from_the_cli(backend: Backend) {
    let app = spawn_app(backend).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trustplane"))
        .args(["purge", "run"])
        .env("TRUSTPLANE_DATABASE_URL", &app.database_url)
        .env("TRUSTPLANE_DATA_DIR", app.dir.path())
        .env(
            "TRUSTPLANE_KEYRING_PATH",
            app.dir.path().join("shared-keyring.json"),
        )
        .current_dir(app.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("retention_purge: ok"));
    assert_eq!(app.count("SELECT COUNT(*) FROM purge_ledger").await, 1);
}
both_backends!(purge_run_from_the_cli);
