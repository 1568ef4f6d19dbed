//! Evidence packs: exported by the CLI and the portal, verified offline, every tampering
//! named, the audit extract's chain checked, old packs verifying after a key rotation, and
//! nothing secret inside.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use trustplane::audit::{self, AuditEvent, RequestMeta};
use trustplane::crypto::Keyring;
use trustplane::evidence::pack::{self, Manifest, SignatureFile};
use trustplane::evidence::verify::{PublicKey, verify_pack};
use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;

fn trustplane(app: &TestApp) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trustplane"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TRUSTPLANE_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(app.dir.path())
        .env("TRUSTPLANE_DATABASE_URL", &app.database_url)
        .env("TRUSTPLANE_DATA_DIR", app.dir.path())
        .env("TRUSTPLANE_KEYRING_PATH", keyring_path(app));
    cmd
}

fn keyring_path(app: &TestApp) -> PathBuf {
    app.dir.path().join("shared-keyring.json")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `trustplane evidence export` of January 2027 (the test clock's month) into `name`.
fn export(app: &TestApp, name: &str) -> PathBuf {
    let out_path = app.dir.path().join(name);
    let out = trustplane(app)
        .args([
            "evidence",
            "export",
            "--from",
            "2027-01-01",
            "--to",
            "2027-02-01",
            "--out",
        ])
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("writing keys/api_keys"),
        "progress on stderr: {stderr}"
    );
    out_path
}

/// The published keys, saved as an auditor would save them.
fn published_keys(app: &TestApp) -> PathBuf {
    let out = trustplane(app)
        .args(["evidence", "public-key"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let path = app.dir.path().join("published-keys.txt");
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

fn verify_cli(app: &TestApp, pack: &Path, keys: &Path) -> Output {
    // Offline: no database or keyring in the environment, an empty working folder.
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trustplane"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TRUSTPLANE_") {
            cmd.env_remove(key);
        }
    }
    let _ = app;
    cmd.current_dir(empty.path())
        .env("TRUSTPLANE_DATA_DIR", empty.path().join("nothing-here"))
        .args(["evidence", "verify"])
        .arg(pack)
        .arg("--public-key")
        .arg(keys)
        .output()
        .unwrap()
}

/// Entries of a zip, in order, decompressed.
fn entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).unwrap();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (entry.name().to_owned(), bytes)
        })
        .collect()
}

fn write_zip(path: &Path, files: &[(String, Vec<u8>)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in files {
        zip.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

fn keys_of(app: &TestApp) -> Vec<PublicKey> {
    let keyring = Keyring::load_or_create(&keyring_path(app)).unwrap();
    keyring
        .evidence
        .published()
        .iter()
        .map(|k| PublicKey::from_base64(&k.public_key).unwrap())
        .collect()
}

/// Replaces the manifest's entry for `name` to match `bytes` and signs it with `keyring`.
fn resign(files: &mut [(String, Vec<u8>)], changed: &str, keyring: &Keyring) {
    let bytes = files.iter().find(|(n, _)| n == changed).unwrap().1.clone();
    let manifest_at = files.iter().position(|(n, _)| n == pack::MANIFEST).unwrap();
    let mut manifest: Manifest = serde_json::from_slice(&files[manifest_at].1).unwrap();
    let entry = manifest
        .files
        .iter_mut()
        .find(|f| f.path == changed)
        .unwrap();
    entry.sha256 = trustplane::crypto::sha256_hex(&bytes);
    entry.size = bytes.len() as u64;
    manifest.key_id = keyring.evidence.current.id.clone();
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    let signature = SignatureFile {
        key_id: keyring.evidence.current.id.clone(),
        signature: keyring.evidence.current.sign_base64(&manifest_bytes),
    };
    files[manifest_at].1 = manifest_bytes;
    let sig_at = files
        .iter()
        .position(|(n, _)| n == pack::SIGNATURE)
        .unwrap();
    files[sig_at].1 = signature.render().into_bytes();
}

async fn seed(app: &TestApp) {
    let customer = app.create_customer("Acme Imaging", "live", 30).await;
    app.issue_key(&customer, "faces:detect").await;
    app.create_staff("ana@example.com", &[Role::Admin], true)
        .await;
    for i in 0..5 {
        audit::append_alone(
            &app.state.db,
            app.state.now(),
            &RequestMeta {
                client_ip: Some("203.0.113.77".into()),
                request_id: Some(format!("req-{i}")),
            },
            AuditEvent::new("staff:ana@example.com", "test.event", format!("thing:{i}")),
        )
        .await
        .unwrap();
    }
    trustplane::controls::evaluate_all(&app.state, "test", &RequestMeta::default())
        .await
        .unwrap();
}

async fn a_pack_verifies_and_every_change_is_named(backend: Backend) {
    let app = spawn_app(backend).await;
    seed(&app).await;
    let pack_path = export(&app, "pack.zip");
    let keys_file = published_keys(&app);

    let ok = verify_cli(&app, &pack_path, &keys_file);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("evidence pack OK"), "{}", text(&ok));

    let files = entries(&pack_path);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let evaluations = files
        .iter()
        .find(|(n, _)| n == "controls/evaluations.csv")
        .map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned())
        .expect("the control evaluation history is in the pack");
    assert!(
        evaluations.contains("MFA-1") && evaluations.contains("AUD-1"),
        "{evaluations}"
    );
    for expected in [
        "keys/api_keys.csv",
        "keys/api_keys.json",
        "staff/staff.csv",
        "staff/role_changes.json",
        "reviews/decisions.csv",
        "incidents/clocks.csv",
        "findings/pentest_engagements.csv",
        "disclosures/clocks.json",
        "vendors/dpas.csv",
        "retention/purge_ledger.csv",
        "backup/backups.csv",
        "config/config_snapshot.csv",
        "config/tls_snapshot.json",
        "audit/audit_log.csv",
        "audit/audit_log.json",
        "README.txt",
        "manifest.json",
        "manifest.sig",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let manifest: Manifest =
        serde_json::from_slice(&files.iter().find(|(n, _)| n == pack::MANIFEST).unwrap().1)
            .unwrap();
    let keys_csv = manifest
        .files
        .iter()
        .find(|f| f.path == "keys/api_keys.csv")
        .unwrap();
    assert_eq!(keys_csv.produced_by.rows, 1);
    assert!(
        keys_csv
            .produced_by
            .query_or_rule
            .starts_with("SELECT k.prefix")
    );
    assert_eq!(
        keys_csv.produced_by.database_backend,
        match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    );
    assert_eq!(
        keys_csv.produced_by.software_version,
        env!("CARGO_PKG_VERSION")
    );
    assert!(manifest.audit.rows >= 5, "{:?}", manifest.audit);
    let (head_seq, _) = audit::head(&app.state.db).await.unwrap();
    assert!(
        manifest.audit.head_seq < head_seq,
        "the export itself is audited after"
    );
    let exported = app
        .count("SELECT COUNT(*) FROM audit_log WHERE action = 'evidence.export' AND actor LIKE 'cli:%'")
        .await;
    assert_eq!(exported, 1);

    let keys = keys_of(&app);
    let scratch = app.dir.path().join("tampered.zip");
    // One changed byte in any file is named.
    for (i, (name, bytes)) in files.iter().enumerate() {
        if bytes.is_empty() {
            continue;
        }
        let mut changed = files.clone();
        let middle = bytes.len() / 2;
        changed[i].1[middle] ^= 0x01;
        write_zip(&scratch, &changed);
        let err = verify_pack(&scratch, &keys).unwrap_err();
        let named = if name == pack::MANIFEST {
            err.contains("manifest.json") && err.contains("signature")
        } else {
            err.contains(name.as_str())
        };
        assert!(named, "changing {name}: {err}");
    }
    // Through the command line: exit status and message.
    let mut changed = files.clone();
    let at = changed
        .iter()
        .position(|(n, _)| n == "staff/staff.csv")
        .unwrap();
    changed[at].1[0] ^= 0x20;
    write_zip(&scratch, &changed);
    let out = verify_cli(&app, &scratch, &keys_file);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("file staff/staff.csv: content does not match"),
        "{}",
        text(&out)
    );

    // A removed file.
    let fewer: Vec<_> = files
        .iter()
        .filter(|(n, _)| n != "vendors/register.json")
        .cloned()
        .collect();
    write_zip(&scratch, &fewer);
    let out = verify_cli(&app, &scratch, &keys_file);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("file vendors/register.json is listed in the manifest but missing"),
        "{}",
        text(&out)
    );

    // An added file.
    let mut more = files.clone();
    more.push(("extra/notes.csv".into(), b"a,b\n".to_vec()));
    write_zip(&scratch, &more);
    let out = verify_cli(&app, &scratch, &keys_file);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("file extra/notes.csv is in the pack but not in the manifest"),
        "{}",
        text(&out)
    );

    // Re-signed with another key (even with a consistent manifest).
    let stranger = Keyring::generate();
    let mut resigned = files.clone();
    resign(&mut resigned, "keys/api_keys.csv", &stranger);
    write_zip(&scratch, &resigned);
    let out = verify_cli(&app, &scratch, &keys_file);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!(
            "manifest.sig: signed with key {}, which is not among the trusted public keys",
            stranger.evidence.current.id
        )),
        "{}",
        text(&out)
    );
    // … or claiming the trusted key's id.
    let mut forged = resigned.clone();
    let sig_at = forged
        .iter()
        .position(|(n, _)| n == pack::SIGNATURE)
        .unwrap();
    let trusted = &keys[0].id;
    let sig = String::from_utf8(forged[sig_at].1.clone())
        .unwrap()
        .replace(&stranger.evidence.current.id, trusted);
    forged[sig_at].1 = sig.into_bytes();
    let manifest_at = forged
        .iter()
        .position(|(n, _)| n == pack::MANIFEST)
        .unwrap();
    let m = String::from_utf8(forged[manifest_at].1.clone())
        .unwrap()
        .replace(&stranger.evidence.current.id, trusted);
    forged[manifest_at].1 = m.into_bytes();
    write_zip(&scratch, &forged);
    let err = verify_pack(&scratch, &keys).unwrap_err();
    assert!(
        err.contains("manifest.sig: the signature does not match manifest.json"),
        "{err}"
    );
}
both_backends!(a_pack_verifies_and_every_change_is_named);

async fn a_broken_chain_in_the_audit_extract_is_caught(backend: Backend) {
    let app = spawn_app(backend).await;
    seed(&app).await;
    let pack_path = export(&app, "pack.zip");
    let files = entries(&pack_path);
    let keyring = Keyring::load_or_create(&keyring_path(&app)).unwrap();
    let keys = keys_of(&app);
    let audit_at = files
        .iter()
        .position(|(n, _)| n == pack::AUDIT_JSON)
        .unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&files[audit_at].1).unwrap();
    assert!(rows.len() >= 5);
    let scratch = app.dir.path().join("chain.zip");

    // One event's content changed; the file hash and signature made consistent again (as
    // by someone holding the signing key): the chain still gives it away.
    let mut edited = rows.clone();
    let victim = edited[2]["seq"].as_i64().unwrap();
    edited[2]["target"] = "thing:rewritten".into();
    let mut changed = files.clone();
    changed[audit_at].1 = serde_json::to_vec(&edited).unwrap();
    resign(&mut changed, pack::AUDIT_JSON, &keyring);
    write_zip(&scratch, &changed);
    let err = verify_pack(&scratch, &keys).unwrap_err();
    assert!(
        err.contains(&format!("event #{victim}: content does not match its hash")),
        "{err}"
    );

    // One event dropped.
    let mut dropped = rows.clone();
    let gone = dropped.remove(1)["seq"].as_i64().unwrap();
    let mut changed = files.clone();
    changed[audit_at].1 = serde_json::to_vec(&dropped).unwrap();
    resign(&mut changed, pack::AUDIT_JSON, &keyring);
    write_zip(&scratch, &changed);
    let err = verify_pack(&scratch, &keys).unwrap_err();
    assert!(err.contains(&format!("row {gone} is missing")), "{err}");

    // The extract relinked onto another history: the first event's predecessor differs.
    let mut relinked = rows.clone();
    relinked[0]["prev_hash"] = "1".repeat(64).into();
    let mut changed = files.clone();
    changed[audit_at].1 = serde_json::to_vec(&relinked).unwrap();
    resign(&mut changed, pack::AUDIT_JSON, &keyring);
    write_zip(&scratch, &changed);
    let err = verify_pack(&scratch, &keys).unwrap_err();
    assert!(err.contains("previous-hash link does not match"), "{err}");

    // Unchanged and re-signed: still fine, so the failures above are the chain's.
    let mut same = files.clone();
    resign(&mut same, pack::AUDIT_JSON, &keyring);
    write_zip(&scratch, &same);
    verify_pack(&scratch, &keys).unwrap();
}
both_backends!(a_broken_chain_in_the_audit_extract_is_caught);

async fn after_a_key_rotation_old_packs_verify_with_the_published_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    seed(&app).await;
    let old_pack = export(&app, "old.zip");
    let old_keys = app.dir.path().join("keys-before-rotation.txt");
    std::fs::copy(published_keys(&app), &old_keys).unwrap();
    let out = trustplane(&app)
        .args(["evidence", "rotate-key"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keyring_path(&app))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let new_pack = export(&app, "new.zip");
    let published = published_keys(&app);
    let listing = std::fs::read_to_string(&published).unwrap();
    assert_eq!(listing.lines().count(), 2, "{listing}");
    assert!(
        listing.lines().nth(1).unwrap().ends_with("retired"),
        "{listing}"
    );

    for pack in [&old_pack, &new_pack] {
        let out = verify_cli(&app, pack, &published);
        assert!(out.status.success(), "{}", text(&out));
    }
    // The new pack is not signed by the old key alone.
    let out = verify_cli(&app, &new_pack, &old_keys);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not among the trusted public keys"),
        "{}",
        text(&out)
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'evidence.key.rotate'")
            .await,
        1
    );
}
both_backends!(after_a_key_rotation_old_packs_verify_with_the_published_keys);

async fn nothing_secret_is_in_a_pack(backend: Backend) {
    let app = spawn_app(backend).await;
    let customer = app.create_customer("Secretive Ltd", "live", 30).await;
    let (key_id, api_key) = app.issue_key(&customer, "faces:detect").await;
    let staff = app
        .create_staff("sam@example.com", &[Role::Compliance], true)
        .await;
    let client = app.client();
    app.login(&client, &staff).await;
    audit::append_alone(
        &app.state.db,
        app.state.now(),
        &RequestMeta {
            client_ip: Some("198.51.100.213".into()),
            request_id: None,
        },
        AuditEvent::new("staff:sam@example.com", "test.event", "thing:1"),
    )
    .await
    .unwrap();
    let pack_path = export(&app, "pack.zip");

    use sqlx::Row;
    let pool = &app.state.db.pool;
    let mut secrets: Vec<String> = vec![
        api_key.clone(),
        staff.password.clone(),
        staff.totp_secret.clone().unwrap(),
        "198.51.100.213".into(),
    ];
    let key_hash: String = sqlx::query("SELECT key_hash FROM api_keys WHERE id = $1")
        .bind(&key_id)
        .fetch_one(pool)
        .await
        .unwrap()
        .get(0);
    secrets.push(key_hash);
    let row = sqlx::query("SELECT password_hash, totp_secret_enc FROM staff WHERE email = $1")
        .bind("sam@example.com")
        .fetch_one(pool)
        .await
        .unwrap();
    secrets.push(row.get::<String, _>(0));
    secrets.push(row.get::<String, _>(1));
    for r in sqlx::query("SELECT token_hash FROM sessions")
        .fetch_all(pool)
        .await
        .unwrap()
    {
        secrets.push(r.get::<String, _>(0));
    }
    for r in sqlx::query("SELECT ip_salt FROM audit_log WHERE ip_salt IS NOT NULL")
        .fetch_all(pool)
        .await
        .unwrap()
    {
        secrets.push(r.get::<String, _>(0));
    }
    for r in sqlx::query("SELECT code_hash FROM recovery_codes")
        .fetch_all(pool)
        .await
        .unwrap_or_default()
    {
        secrets.push(r.get::<String, _>(0));
    }
    let keyring_text = std::fs::read_to_string(keyring_path(&app)).unwrap();
    let keyring_json: serde_json::Value = serde_json::from_str(&keyring_text).unwrap();
    for field in [
        "hmac_pepper",
        "aes_key",
        "session_key",
        "evidence_signing_key",
    ] {
        secrets.push(keyring_json[field]["key"].as_str().unwrap().to_owned());
    }
    // The part of the key that is never displayed, in case only that leaked.
    secrets.push(api_key[16..].to_owned());

    let files = entries(&pack_path);
    let mut scanned = 0;
    for (name, bytes) in &files {
        let haystack = String::from_utf8_lossy(bytes);
        for secret in &secrets {
            assert!(
                secret.len() >= 8,
                "a secret too short to scan for: {secret}"
            );
            assert!(!haystack.contains(secret.as_str()), "{name} holds a secret");
        }
        scanned += bytes.len();
    }
    assert!(scanned > 1000);
    let audit_csv = &files
        .iter()
        .find(|(n, _)| n == "audit/audit_log.csv")
        .unwrap()
        .1;
    let audit_csv = String::from_utf8_lossy(audit_csv);
    assert!(audit_csv.contains("198.51.100.0/24"), "the network stays");
    let keys_csv = &files
        .iter()
        .find(|(n, _)| n == "keys/api_keys.csv")
        .unwrap()
        .1;
    let keys_csv = String::from_utf8_lossy(keys_csv);
    assert!(keys_csv.contains("Secretive Ltd"), "{keys_csv}");
    assert!(
        keys_csv.contains(&api_key[..16]),
        "the display prefix is there: {keys_csv}"
    );
    let staff_csv = &files
        .iter()
        .find(|(n, _)| n == "staff/staff.csv")
        .unwrap()
        .1;
    assert!(String::from_utf8_lossy(staff_csv).contains("sam@example.com,sam,totp"));
}
both_backends!(nothing_secret_is_in_a_pack);

async fn compliance_exports_from_the_portal_and_other_roles_cannot(backend: Backend) {
    let app = spawn_app(backend).await;
    seed(&app).await;
    let (compliance, staff) = app.logged_in_as(Role::Compliance).await;
    let page = app.get(&compliance, "/evidence").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("No pack has been exported yet."));
    assert!(html.contains("Export signed pack"));

    let response = app
        .submit(
            &compliance,
            "/evidence",
            "/evidence/export",
            &[("from", "2027-01-01"), ("to", "2027-02-01")],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    let sha = response.headers()["x-evidence-pack-sha256"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.bytes().await.unwrap();
    assert_eq!(trustplane::crypto::sha256_hex(&body), sha);
    let path = app.dir.path().join("portal.zip");
    std::fs::write(&path, &body).unwrap();
    let verified = verify_pack(&path, &keys_of(&app)).unwrap();
    assert_eq!(
        verified.manifest.generated_by,
        format!("staff:{}", staff.email)
    );

    let html = app
        .get(&compliance, "/evidence")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains(&sha), "the export is listed with its hash");

    // A bad period is refused with a readable message and exports nothing.
    let response = app
        .submit(
            &compliance,
            "/evidence",
            "/evidence/export",
            &[("from", "2027-02-01"), ("to", "2027-01-01")],
        )
        .await;
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("must be after its start")
    );

    // Auditors see the list but cannot export; security cannot see it.
    let (auditor, _) = app.logged_in_as(Role::Auditor).await;
    let html = app.get(&auditor, "/evidence").await.text().await.unwrap();
    assert!(html.contains(&sha));
    assert!(!html.contains("Export signed pack"));
    let response = app
        .submit(
            &auditor,
            "/evidence",
            "/evidence/export",
            &[("from", "2027-01-01"), ("to", "2027-02-01")],
        )
        .await;
    assert_eq!(response.status(), 403);
    let (security, _) = app.logged_in_as(Role::Security).await;
    assert_eq!(app.get(&security, "/evidence").await.status(), 403);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'evidence.export'")
            .await,
        1
    );

    // The public key needs no session.
    let anonymous = app.client();
    let response = app.get(&anonymous, "/trust/evidence-key").await;
    assert_eq!(response.status(), 200);
    let listing = response.text().await.unwrap();
    let current = &app.state.keyring.evidence.current;
    assert!(listing.contains(&format!(
        "{} current {}",
        current.id,
        current.public_key_base64()
    )));
    let json: serde_json::Value = app
        .get(&anonymous, "/trust/evidence-key.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json["keys"][0]["id"], current.id.as_str());
}
both_backends!(compliance_exports_from_the_portal_and_other_roles_cannot);
