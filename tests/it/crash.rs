//! `kill -9` at the worst moment: the real binary is killed during a burst of uploads, a
//! retention purge and a backup. Whenever the kill lands, afterwards the audit chain
//! verifies, every stored blob has its record and every record its blob (after the next
//! purge), no partial backup carries its final name, and the server serves again.

use std::collections::BTreeSet;
use std::process::Stdio;

use trustplane::clock::{DAY, SystemClock};
use trustplane::images::{self, ImageKind, ImageRecord};

use crate::api::ASTRONAUT;
use crate::both_backends;
use crate::helpers::*;

/// The binary, pointed at the test app's database, data folder and keyring, real clock.
fn binary(app: &TestApp) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_trustplane"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TRUSTPLANE_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(app.dir.path())
        .env("TRUSTPLANE_DATABASE_URL", &app.database_url)
        .env("TRUSTPLANE_DATA_DIR", app.dir.path())
        .env(
            "TRUSTPLANE_KEYRING_PATH",
            app.dir.path().join("shared-keyring.json"),
        )
        .env("TRUSTPLANE_SCHEDULER_ENABLED", "false")
        .env("TRUSTPLANE_DETECT_WORKERS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn serve(app: &TestApp, port: u16) -> tokio::process::Child {
    let child = binary(app)
        .arg("serve")
        .env("TRUSTPLANE_LISTEN", format!("127.0.0.1:{port}"))
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return child;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready");
}

async fn kill_9(child: &mut tokio::process::Child) {
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "killed, not finished: {status:?}");
}

async fn audit_verifies(app: &TestApp) {
    let out = binary(app)
        .args(["audit", "verify"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "audit verify after the crash: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the purge as of `now` and then compares the blob store with the image records.
async fn purge_leaves_blobs_and_records_matching(app: &TestApp, now: i64) {
    app.clock.set(now);
    trustplane::retention::purge(&app.state, "after-crash")
        .await
        .unwrap();
    let blobs: BTreeSet<String> = app
        .state
        .blobs
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let records: BTreeSet<String> =
        sqlx::query_scalar("SELECT blob_key FROM images WHERE blob_key IS NOT NULL")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(
        blobs.difference(&records).count(),
        0,
        "no blob without a record"
    );
    assert_eq!(
        records.difference(&blobs).count(),
        0,
        "no record pointing at nothing"
    );
}

fn real_now() -> i64 {
    use trustplane::clock::Clock;
    SystemClock.now_ms()
}

async fn a_kill_during_an_upload_burst_loses_nothing_that_was_answered(backend: Backend) {
    let app = spawn_app(backend).await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (key_id, key) = app.issue_key(&customer, "faces:detect,images:read").await;
    let port = crate::mail::free_port();
    let mut server = serve(&app, port).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/faces/detect");
    let mut uploads = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let request = client
            .post(&url)
            .header("X-API-Key", &key)
            .header("Content-Type", "image/png")
            .body(ASTRONAUT.to_vec())
            .send();
        uploads.spawn(async move {
            let response = request.await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
            body["image_id"]
                .as_str()
                .map(str::to_owned)
                .ok_or(format!("{status}: {body}"))
        });
    }
    // Kill as soon as the first answer is in: some uploads are done, others mid-way.
    let mut answered = Vec::new();
    let mut refused = Vec::new();
    while answered.is_empty() {
        match uploads.join_next().await.unwrap().unwrap() {
            Ok(id) => answered.push(id),
            Err(error) => refused.push(error),
        }
    }
    kill_9(&mut server).await;
    while let Some(upload) = uploads.join_next().await {
        match upload.unwrap() {
            Ok(id) => answered.push(id),
            Err(error) => refused.push(error),
        }
    }
    // Before the kill every answer was a success; after it, connections just end.
    assert!(refused.iter().all(|e| !e.starts_with('4')), "{refused:?}");

    // After a restart every answered image is there and the server serves.
    let mut server = serve(&app, port).await;
    for id in &answered {
        let response = client
            .get(format!("http://127.0.0.1:{port}/v1/images/{id}"))
            .header("X-API-Key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "answered image {id} survives");
    }
    server.start_kill().unwrap();
    server.wait().await.unwrap();

    audit_verifies(&app).await;
    // Counts are written once a second: at most the last second's are lost, never more
    // than were made.
    let counted = app
        .count(&format!(
            "SELECT request_count FROM api_keys WHERE id = '{key_id}'"
        ))
        .await;
    assert!(counted <= 24 + i64::try_from(answered.len()).unwrap());
    // The half-written uploads left at most orphans, which the purge removes after the
    // grace period; nothing points at a missing blob.
    purge_leaves_blobs_and_records_matching(
        &app,
        real_now() + trustplane::retention::ORPHAN_GRACE + 1000,
    )
    .await;
    for id in &answered {
        assert!(images::find(&app.state.db, id).await.unwrap().is_some());
    }
}
both_backends!(a_kill_during_an_upload_burst_loses_nothing_that_was_answered);

async fn a_kill_during_the_purge_is_finished_by_the_next_purge(backend: Backend) {
    let app = spawn_app(backend).await;
    // Expired in real time, so the binary's own purge (real clock) deletes them.
    let created = real_now() - 10 * DAY;
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    for i in 0..1500 {
        let id = uuid::Uuid::new_v4().to_string();
        let blob_key = format!("demo/{id}");
        app.state
            .blobs
            .put_sealed(
                &blob_key,
                b"pixels",
                &app.state.keyring,
                blob_key.as_bytes(),
            )
            .await
            .unwrap();
        images::insert(
            &mut conn,
            &ImageRecord {
                id,
                customer_id: None,
                key_id: None,
                kind: ImageKind::Demo.as_str().to_owned(),
                format: "jpeg".into(),
                width: 10,
                height: 10,
                byte_size: 6,
                blob_key: Some(blob_key),
                result: "{}".into(),
                created_at: created + i,
                expires_at: created + 7 * DAY,
                retained_until: Some(created + 7 * DAY),
            },
        )
        .await
        .unwrap();
    }
    drop(conn);

    let mut purge = binary(&app).args(["purge", "run"]).spawn().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let _ = purge.start_kill();
    purge.wait().await.unwrap();

    audit_verifies(&app).await;
    purge_leaves_blobs_and_records_matching(&app, real_now()).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM images").await, 0);
    audit_verifies(&app).await;
}
both_backends!(a_kill_during_the_purge_is_finished_by_the_next_purge);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_a_backup_leaves_no_partial_file_under_its_name() {
    let app = spawn_app(Backend::Sqlite).await;
    // Some bulk so the backup takes a moment.
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    for i in 0..3000 {
        sqlx::query(
            "INSERT INTO customers (id, name, contact_email, environment, retention_days, \
             created_at, created_by, updated_at) VALUES ($1, $2, $3, 'live', 30, $4, 'test', $4)",
        )
        .bind(format!("c{i}"))
        .bind(format!("Customer {i} {}", "x".repeat(200)))
        .bind(format!("c{i}@example.com"))
        .bind(T0)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    drop(conn);
    for delay_ms in [5_u64, 40, 150] {
        let name = format!("backup-{delay_ms}.tpbk");
        let mut backup = binary(&app)
            .args(["backup", "create", "--out", &name])
            .spawn()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        let _ = backup.start_kill();
        let status = backup.wait().await.unwrap();
        let path = app.dir.path().join(&name);
        if path.exists() {
            // Only a finished backup may carry the name, and then it verifies.
            let out = binary(&app)
                .args(["backup", "verify", &name])
                .stdout(Stdio::piped())
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{name} exists, so it is whole ({status:?})"
            );
        }
    }
    audit_verifies(&app).await;
}
