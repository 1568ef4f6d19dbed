//! Encrypted backups: a round trip restores identical data and a server starts on it; a
//! tampered, truncated or wrong-key backup is refused without touching the live database;
//! scheduled backups are pruned and restore-tested; PostgreSQL goes through pg_dump.

use trustplane::clock::{DAY, SECOND};
use trustplane::crypto::Keyring;
use trustplane::jobs::Scheduler;
use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;

fn keyring_of(app: &TestApp) -> Keyring {
    Keyring::load_or_create(&app.dir.path().join("shared-keyring.json")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_a_fresh_data_dir_and_the_server_starts_on_it() {
    let app = spawn_app(Backend::Sqlite).await;
    let staff = app
        .create_staff("ana@example.com", &[Role::Admin], true)
        .await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (_, key) = app.issue_key(&customer, "faces:detect").await;
    // The scheduler's daily backup.
    let summary = Scheduler::new(app.state.clone())
        .unwrap()
        .run_now("backup_daily")
        .await
        .unwrap();
    assert!(summary.ok, "{:?}", summary.error);
    let backup = std::path::PathBuf::from(summary.counts["file"].as_str().unwrap());
    assert_eq!(summary.counts["source"], "sqlite");
    let bytes = std::fs::read(&backup).unwrap();
    assert!(bytes.starts_with(b"TPBK1\n"));
    assert!(
        !bytes.windows(15).any(|w| w == b"SQLite format 3"),
        "encrypted"
    );
    assert!(!bytes.windows(15).any(|w| w == b"ana@example.com"));

    // A fresh data dir with the same keyring.
    let fresh = tempfile::tempdir().unwrap();
    let target = fresh.path().join("trustplane.db");
    trustplane::backup::restore_sqlite(&backup, &target, &keyring_of(&app)).unwrap();
    let mut config = test_config(
        fresh.path(),
        &format!("sqlite://{}?mode=rwc", target.display()),
    );
    config.detect_isolation = "thread".into();
    let clock = trustplane::clock::ManualClock::new(app.state.now() + 60 * SECOND);
    let state = trustplane::server::build_state(config, clock, keyring_of(&app))
        .await
        .unwrap();
    assert!(trustplane::audit::verify(&state.db).await.unwrap().ok());
    let running = trustplane::server::start(state.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let response = client
        .post(format!("{base}/login"))
        .form(&[
            ("email", staff.email.as_str()),
            ("password", PASSWORD),
            ("csrf", &csrf_of(&page)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        location(&response),
        "/login/totp",
        "the restored account logs in"
    );
    let verified = trustplane::keys::verify::verify(&state, Some(&key), &Default::default())
        .await
        .unwrap();
    assert!(verified.is_ok(), "API keys survive the restore");
    running.handle.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_foreign_backups_are_refused_and_nothing_is_overwritten() {
    let app = spawn_app(Backend::Sqlite).await;
    app.create_staff("ana@example.com", &[Role::Admin], true)
        .await;
    let backup = app.dir.path().join("backup.tpbk");
    trustplane::backup::create(&app.state, &backup, "manual")
        .await
        .unwrap();
    let good = std::fs::read(&backup).unwrap();
    let live = app.dir.path().join("live.db");
    std::fs::write(&live, b"the live database, untouched").unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let truncated = good[..good.len() - 100].to_vec();
    let cases: Vec<(&str, Vec<u8>, Keyring)> = vec![
        ("flipped byte", flipped, keyring_of(&app)),
        ("truncated", truncated, keyring_of(&app)),
        ("wrong key", good.clone(), Keyring::generate()),
        (
            "not a backup",
            b"SQLite format 3\0 plain".to_vec(),
            keyring_of(&app),
        ),
    ];
    for (name, bytes, keyring) in cases {
        let path = app.dir.path().join("candidate.tpbk");
        std::fs::write(&path, &bytes).unwrap();
        let err = trustplane::backup::restore_sqlite(&path, &live, &keyring).unwrap_err();
        assert!(
            format!("{err:#}").contains("refusing to restore"),
            "{name}: {err:#}"
        );
        assert_eq!(
            std::fs::read(&live).unwrap(),
            b"the live database, untouched",
            "{name}"
        );
        let leftovers = std::fs::read_dir(app.dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".restore-"))
            .count();
        assert_eq!(leftovers, 0, "{name}: no temp files left");
    }
    // And through the CLI, with a clear message and a non-zero exit.
    let mut flipped = good;
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    std::fs::write(app.dir.path().join("bad.tpbk"), &flipped).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trustplane"))
        .args(["backup", "restore", "bad.tpbk"])
        .env(
            "TRUSTPLANE_DATABASE_URL",
            format!("sqlite://{}?mode=rwc", live.display()),
        )
        .env(
            "TRUSTPLANE_KEYRING_PATH",
            app.dir.path().join("shared-keyring.json"),
        )
        .current_dir(app.dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("damaged or was altered"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&live).unwrap(),
        b"the live database, untouched"
    );
}

async fn scheduled_backups_are_pruned_restore_tested_and_shown(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.backup_keep = 2).await;
    let (admin, admin_staff) = app.logged_in_as(Role::Admin).await;
    let scheduler = Scheduler::new(app.state.clone()).unwrap();
    for _ in 0..3 {
        app.clock.advance(DAY);
        let summary = scheduler.run_now("backup_daily").await.unwrap();
        assert!(summary.ok, "{:?}", summary.error);
    }
    let files: Vec<_> = std::fs::read_dir(app.dir.path().join("backups"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(files.len(), 2, "only the newest backup_keep files stay");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM backups WHERE pruned_at IS NOT NULL")
            .await,
        1
    );

    app.clock.advance(SECOND);
    let tested = scheduler.run_now("backup_restore_test").await.unwrap();
    assert!(tested.ok, "{:?}", tested.error);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM backups WHERE restore_ok = 1")
            .await,
        1
    );

    app.login(&admin, &admin_staff).await;
    let page = app.get(&admin, "/").await.text().await.unwrap();
    assert!(
        page.contains("card control ok\" data-control=\"BAK\""),
        "BAK-1 green"
    );
    assert!(page.contains("Last restore test: <strong>passed"));
    if backend == Backend::Postgres {
        let newest = files.iter().map(|f| f.path()).max().unwrap();
        let mut plain = Vec::new();
        trustplane::backup::decrypt_file(&newest, &mut plain, &keyring_of(&app)).unwrap();
        assert!(plain.starts_with(b"PGDMP"), "a pg_dump archive inside");
    }
}
both_backends!(scheduled_backups_are_pruned_restore_tested_and_shown);
