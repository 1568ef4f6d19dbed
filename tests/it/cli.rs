//! The binary itself: start-up checks, config errors, migrate, admin create.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::both_backends;
use crate::helpers::*;

fn trustplane(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trustplane"));
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("TRUSTPLANE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn plain_http_on_a_public_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = trustplane(dir.path())
        .arg("serve")
        .env("TRUSTPLANE_LISTEN", "0.0.0.0:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing to serve plain HTTP on 0.0.0.0:0")
    );
}

#[test]
fn invalid_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = trustplane(dir.path())
        .arg("migrate")
        .env("TRUSTPLANE_SESSION_IDLE_MINUTES", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("session_idle_minutes"), "{stderr}");
    std::fs::write(dir.path().join("trustplane.toml"), "lockout_minutes = 0\n").unwrap();
    let out = trustplane(dir.path()).arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`lockout_minutes`: must be greater than 0")
    );
}

#[test]
fn a_corrupt_keyring_stops_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let keyring = dir.path().join("data/keyring.json");
    std::fs::write(&keyring, "{\"version\": 1, \"hmac_pepper\": ").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = trustplane(dir.path())
        .args(["serve"])
        .env("TRUSTPLANE_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("keyring.json is corrupt"), "{stderr}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        trustplane::crypto::Keyring::generate()
            .write_new(&dir.path().join("open.json"))
            .unwrap();
        std::fs::set_permissions(
            dir.path().join("open.json"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let out = trustplane(dir.path())
            .args(["serve"])
            .env("TRUSTPLANE_LISTEN", "127.0.0.1:0")
            .env("TRUSTPLANE_KEYRING_PATH", dir.path().join("open.json"))
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains("readable by other users"));
    }
}

async fn admin_create_makes_an_account_that_must_enrol(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (url, _pg) = fresh_database(backend, dir.path()).await;
    let mut child = trustplane(dir.path())
        .args([
            "admin",
            "create",
            "--email",
            "Ops@Example.com",
            "--role",
            "admin",
            "--password-stdin",
        ])
        .env("TRUSTPLANE_DATABASE_URL", &url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("created ops@example.com with role admin")
    );

    let again = trustplane(dir.path())
        .args([
            "admin",
            "create",
            "--email",
            "ops@example.com",
            "--role",
            "admin",
        ])
        .env("TRUSTPLANE_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad_role = trustplane(dir.path())
        .args([
            "admin",
            "create",
            "--email",
            "x@example.com",
            "--role",
            "root",
        ])
        .env("TRUSTPLANE_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("Unknown role"));
    let generated = trustplane(dir.path())
        .args([
            "admin",
            "create",
            "--email",
            "gen@example.com",
            "--role",
            "auditor",
        ])
        .env("TRUSTPLANE_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&generated.stdout).contains("password (shown once): "));

    // A server on the same database: the CLI-made account logs in and must enrol first.
    let config = test_config(dir.path(), &url);
    let clock = trustplane::clock::ManualClock::new(T0);
    let keyring =
        trustplane::crypto::Keyring::load_or_create(&config.effective_keyring_path()).unwrap();
    let state = trustplane::server::build_state(config, clock, keyring)
        .await
        .unwrap();
    let running = trustplane::server::start(state.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("http://{}", running.addr);
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
            ("email", "ops@example.com"),
            ("password", PASSWORD),
            ("csrf", &csrf_of(&page)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&response), "/mfa/enrol");
    let verified = trustplane::audit::verify(&state.db).await.unwrap();
    assert!(verified.ok());
    running.handle.shutdown();
    if let Some(name) = _pg {
        state.db.pool.close().await;
        use sqlx::Connection;
        let mut admin = sqlx::AnyConnection::connect(&postgres_admin_url())
            .await
            .unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}
both_backends!(admin_create_makes_an_account_that_must_enrol);

#[test]
fn first_run_creates_data_dir_keyring_and_prints_a_setup_link() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = trustplane(dir.path())
        .arg("serve")
        .env("TRUSTPLANE_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let link = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("/setup?token="))
        .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(link.trim().starts_with("http://127.0.0.1:"), "{link}");
    assert!(dir.path().join("data/trustplane.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/keyring.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn secrets_can_come_from_the_environment_instead_of_a_keyring_file() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let key = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    let mut child = trustplane(dir.path())
        .args([
            "admin",
            "create",
            "--email",
            "env@example.com",
            "--role",
            "auditor",
            "--password-stdin",
        ])
        .env("TRUSTPLANE_HMAC_PEPPER", key(1))
        .env("TRUSTPLANE_AES_KEY", key(2))
        .env("TRUSTPLANE_SESSION_KEY", key(3))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !dir.path().join("data/keyring.json").exists(),
        "no keyring file written"
    );

    let half = trustplane(dir.path())
        .args([
            "admin",
            "create",
            "--email",
            "half@example.com",
            "--role",
            "auditor",
        ])
        .env("TRUSTPLANE_AES_KEY", key(2))
        .output()
        .unwrap();
    assert!(!half.status.success());
    assert!(String::from_utf8_lossy(&half.stderr).contains("must be set together"));
}

#[test]
fn the_data_folder_and_everything_created_in_it_is_private_to_the_service_user() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("mail")).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join("mail"), std::fs::Permissions::from_mode(0o775)).unwrap();

    // A shell umask of 000 would make everything world-writable; the binary overrides it.
    let mut cmd = Command::new("sh");
    cmd.current_dir(dir.path())
        .args(["-c", "umask 000 && exec \"$0\" migrate"])
        .arg(env!("CARGO_BIN_EXE_trustplane"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TRUSTPLANE_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("tightened"), "{log}");

    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("mail")), 0o700);
    let created: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert!(
        created.iter().any(|p| p.ends_with("trustplane.db")),
        "{created:?}"
    );
    for file in created {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_detections_finish_writes_their_counts_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = trustplane(dir.path()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&[
        "customers",
        "create",
        "--name",
        "Acme",
        "--email",
        "ops@acme.example",
    ]);
    let issued = run(&[
        "keys",
        "create",
        "--customer",
        "Acme",
        "--scopes",
        "faces:detect",
    ]);
    let key = issued
        .split_whitespace()
        .find(|w| w.starts_with("tp_live_") && w.len() > 20)
        .unwrap()
        .to_owned();
    let port = crate::mail::free_port();
    let mut server = tokio::process::Command::from(trustplane(dir.path()))
        .arg("serve")
        .env("TRUSTPLANE_LISTEN", format!("127.0.0.1:{port}"))
        .env("TRUSTPLANE_SCHEDULER_ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    loop {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Eight detections are in flight (the workers take a few at a time, the rest queue)
    // when the server is told to stop.
    let detections: Vec<_> = (0..8)
        .map(|_| {
            let request = client
                .post(format!("{base}/v1/faces/detect"))
                .header("X-API-Key", &key)
                .header("Content-Type", "image/png")
                .body(crate::api::ASTRONAUT.to_vec())
                .send();
            tokio::spawn(request)
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let pid = server.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );

    for detection in detections {
        let response = detection.await.unwrap().unwrap();
        assert_eq!(response.status(), 200, "an accepted request is finished");
    }
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "a drained shutdown exits 0: {status:?}");
    assert!(
        client.get(format!("{base}/healthz")).send().await.is_err(),
        "nothing listens any more"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&run(&["keys", "list", "--json"])).unwrap();
    assert_eq!(
        listed[0]["requests"], 8,
        "the last counts were written: {listed}"
    );
}
