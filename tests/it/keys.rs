//! Customers and API keys: issue in the portal and CLI, stored only as HMAC, rotation with
//! grace, revocation everywhere within a second, audit without secrets.

use trustplane::audit::RequestMeta;
use trustplane::clock::{HOUR, SECOND};
use trustplane::keys::verify::{KeyRejection, verify};
use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;

fn secret_in(page: &str) -> String {
    let start = page.find("id=\"new-key\">").unwrap() + "id=\"new-key\">".len();
    let end = page[start..].find('<').unwrap() + start;
    page[start..end].to_owned()
}

/// Issuing and rotating answer with a redirect to the page that shows the new key once;
/// follows it and returns that page.
async fn shown_once(
    app: &TestApp,
    client: &reqwest::Client,
    response: reqwest::Response,
) -> String {
    assert_eq!(
        response.status(),
        303,
        "a redirect, so a reload cannot re-submit"
    );
    let page = location(&response);
    assert!(
        page.starts_with("/keys/") && page.ends_with("/issued"),
        "{page}"
    );
    app.get(client, &page).await.text().await.unwrap()
}

async fn a_key_issued_in_the_portal_is_shown_once_and_stored_only_as_hmac(backend: Backend) {
    let app = spawn_app(backend).await;
    let (security, _) = app.logged_in_as(Role::Security).await;
    let created = app
        .submit(
            &security,
            "/customers/new",
            "/customers",
            &[
                ("name", "Acme Vision"),
                ("contact_email", "ops@acme.example"),
                ("environment", "live"),
                ("retention_days", "30"),
            ],
        )
        .await;
    assert_eq!(created.status(), 303);
    let customer_path = location(&created);
    let issued = app
        .submit(
            &security,
            &customer_path,
            &format!("{customer_path}/keys"),
            &[
                ("name", "backend"),
                ("scope_detect", "yes"),
                ("scope_read", "yes"),
            ],
        )
        .await;
    let issued_page = location(&issued);
    let secret = secret_in(&shown_once(&app, &security, issued).await);
    assert_eq!(
        trustplane::keys::format::parse(&secret),
        Ok(trustplane::keys::format::KeyEnv::Live)
    );

    // The secret is nowhere in the database, nor in the audit log; its HMAC is.
    let dump = app.database_dump().await;
    assert!(!dump.contains(&secret));
    assert!(!dump.contains(&secret[8..38]), "not even the random part");
    assert!(dump.contains(&app.state.keyring.pepper_hmac_hex(secret.as_bytes())));
    assert!(!app.audit_text().await.contains(&secret[8..]));

    // Opening (or reloading) the page again does not show it.
    let again = app.get(&security, &issued_page).await;
    assert_eq!(again.status(), 200);
    let again = again.text().await.unwrap();
    assert!(!again.contains(&secret) && again.contains("cannot be shown again"));
    assert_eq!(app.count("SELECT COUNT(*) FROM api_keys").await, 1);

    // Listed afterwards by prefix only.
    let detail = app
        .get(&security, &customer_path)
        .await
        .text()
        .await
        .unwrap();
    assert!(detail.contains(&secret[..16]) && !detail.contains(&secret));
    let inventory = app.get(&security, "/keys").await.text().await.unwrap();
    assert!(inventory.contains(&secret[..16]) && !inventory.contains(&secret));

    let ok = verify(&app.state, Some(&secret), &RequestMeta::default())
        .await
        .unwrap();
    assert!(ok.is_ok());
}
both_backends!(a_key_issued_in_the_portal_is_shown_once_and_stored_only_as_hmac);

async fn malformed_unknown_revoked_and_expired_keys_fail(backend: Backend) {
    let app = spawn_app(backend).await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (key_id, secret) = app.issue_key(&customer, "faces:detect").await;
    let meta = RequestMeta::default();
    let check = |presented: Option<String>| {
        let state = app.state.clone();
        async move {
            verify(&state, presented.as_deref(), &RequestMeta::default())
                .await
                .unwrap()
        }
    };
    assert_eq!(check(None).await.unwrap_err(), KeyRejection::Missing);
    assert_eq!(
        check(Some("hello".into())).await.unwrap_err(),
        KeyRejection::Malformed
    );
    let unknown = trustplane::keys::format::generate(trustplane::keys::format::KeyEnv::Live);
    assert_eq!(
        check(Some(unknown)).await.unwrap_err(),
        KeyRejection::Unknown
    );
    assert!(check(Some(secret.clone())).await.is_ok());

    // Revoked.
    let key = trustplane::keys::store::find(&app.state.db.pool, &key_id)
        .await
        .unwrap()
        .unwrap();
    let mut tx = app.state.db.begin().await.unwrap();
    trustplane::keys::revoke(&mut tx, &key, "test", &meta, app.state.now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    app.state.key_cache.forget(&key_id);
    assert_eq!(
        check(Some(secret)).await.unwrap_err(),
        KeyRejection::Revoked
    );

    // Expired: issue one that expires in an hour and move the clock.
    let customer_row = trustplane::customers::store::find(&app.state.db.pool, &customer)
        .await
        .unwrap()
        .unwrap();
    let mut tx = app.state.db.begin().await.unwrap();
    let expiring = trustplane::keys::issue(
        &mut tx,
        &app.state.keyring,
        &customer_row,
        "short",
        &[trustplane::keys::model::Scope::FacesDetect],
        Some(app.state.now() + HOUR),
        "test",
        &meta,
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(check(Some(expiring.secret.clone())).await.is_ok());
    app.clock.advance(HOUR);
    assert_eq!(
        check(Some(expiring.secret.clone())).await.unwrap_err(),
        KeyRejection::Expired
    );
    assert_eq!(
        check(Some(expiring.secret)).await.unwrap_err(),
        KeyRejection::Expired
    );
    let expired_events = app
        .count("SELECT COUNT(*) FROM audit_log WHERE action = 'key.expired'")
        .await;
    assert_eq!(expired_events, 1, "expiry audited once");
}
both_backends!(malformed_unknown_revoked_and_expired_keys_fail);

async fn a_key_revoked_on_one_node_fails_on_every_node_within_a_second(backend: Backend) {
    let app = spawn_app(backend).await;
    let other_node = app.second_node().await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (key_id, secret) = app.issue_key(&customer, "faces:detect").await;
    let meta = RequestMeta::default();
    // Both nodes have the key in their caches.
    assert!(
        verify(&app.state, Some(&secret), &meta)
            .await
            .unwrap()
            .is_ok()
    );
    assert!(
        verify(&other_node, Some(&secret), &meta)
            .await
            .unwrap()
            .is_ok()
    );

    // Revoked through the other node.
    let key = trustplane::keys::store::find(&other_node.db.pool, &key_id)
        .await
        .unwrap()
        .unwrap();
    let mut tx = other_node.db.begin().await.unwrap();
    trustplane::keys::revoke(&mut tx, &key, "test", &meta, other_node.now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    other_node.key_cache.forget(&key_id);
    assert!(
        verify(&other_node, Some(&secret), &meta)
            .await
            .unwrap()
            .is_err(),
        "at once where revoked"
    );

    app.clock.advance(SECOND);
    assert_eq!(
        verify(&app.state, Some(&secret), &meta)
            .await
            .unwrap()
            .unwrap_err(),
        KeyRejection::Revoked,
        "within one second everywhere"
    );
}
both_backends!(a_key_revoked_on_one_node_fails_on_every_node_within_a_second);

async fn rotation_keeps_the_old_key_for_the_grace_period(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, admin_staff) = app.logged_in_as(Role::Admin).await;
    let customer = app.create_customer("Acme", "test", 7).await;
    let (_, old_secret) = app.issue_key(&customer, "faces:detect,images:read").await;
    let page = app
        .get(&admin, &format!("/customers/{customer}"))
        .await
        .text()
        .await
        .unwrap();
    let key_id = page
        .split("/keys/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let rotated = app
        .post(
            &admin,
            &format!("/keys/{key_id}/rotate"),
            &[("csrf", &csrf_of(&page)), ("grace", "1h")],
        )
        .await;
    let new_secret = secret_in(&shown_once(&app, &admin, rotated).await);
    assert!(new_secret.starts_with("tp_test_"));
    let meta = RequestMeta::default();
    assert!(
        verify(&app.state, Some(&old_secret), &meta)
            .await
            .unwrap()
            .is_ok()
    );
    assert!(
        verify(&app.state, Some(&new_secret), &meta)
            .await
            .unwrap()
            .is_ok()
    );
    app.clock.advance(HOUR);
    assert!(
        verify(&app.state, Some(&old_secret), &meta)
            .await
            .unwrap()
            .is_err(),
        "grace over"
    );
    assert!(
        verify(&app.state, Some(&new_secret), &meta)
            .await
            .unwrap()
            .is_ok()
    );

    // Rotating with no grace stops the old key at once; rotating twice is refused.
    app.login(&admin, &admin_staff).await; // the hour also ended the idle portal session
    let page = app
        .get(&admin, "/keys?state=active")
        .await
        .text()
        .await
        .unwrap();
    let active_id = page
        .split("/keys/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let again = app
        .post(
            &admin,
            &format!("/keys/{active_id}/rotate"),
            &[("csrf", &csrf_of(&page)), ("grace", "none")],
        )
        .await;
    let newest = secret_in(&shown_once(&app, &admin, again).await);
    assert!(
        verify(&app.state, Some(&new_secret), &meta)
            .await
            .unwrap()
            .is_err()
    );
    assert!(
        verify(&app.state, Some(&newest), &meta)
            .await
            .unwrap()
            .is_ok()
    );
    let twice = app
        .post(
            &admin,
            &format!("/keys/{active_id}/rotate"),
            &[("csrf", &csrf_of(&page)), ("grace", "none")],
        )
        .await;
    assert_eq!(twice.status(), 409);
    let actions = app.audit_actions().await;
    assert_eq!(actions.iter().filter(|(a, _)| a == "key.rotate").count(), 2);
    assert_eq!(actions.iter().filter(|(a, _)| a == "key.create").count(), 3);
}
both_backends!(rotation_keeps_the_old_key_for_the_grace_period);

async fn revoking_in_the_portal_needs_confirmation(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (key_id, secret) = app.issue_key(&customer, "faces:detect").await;
    let page = app
        .get(&admin, &format!("/customers/{customer}"))
        .await
        .text()
        .await
        .unwrap();
    let unconfirmed = app
        .post(
            &admin,
            &format!("/keys/{key_id}/revoke"),
            &[("csrf", &csrf_of(&page))],
        )
        .await;
    assert_eq!(unconfirmed.status(), 400);
    assert!(
        verify(&app.state, Some(&secret), &RequestMeta::default())
            .await
            .unwrap()
            .is_ok()
    );
    let revoked = app
        .post(
            &admin,
            &format!("/keys/{key_id}/revoke"),
            &[("csrf", &csrf_of(&page)), ("confirm", "yes")],
        )
        .await;
    assert_eq!(revoked.status(), 303);
    assert_eq!(
        verify(&app.state, Some(&secret), &RequestMeta::default())
            .await
            .unwrap()
            .unwrap_err(),
        KeyRejection::Revoked,
        "immediately on the node that revoked"
    );
    let audit = app.audit_text().await;
    assert!(audit.contains("key.revoke") && !audit.contains(&secret[8..]));
}
both_backends!(revoking_in_the_portal_needs_confirmation);

async fn customer_forms_validate_and_settings_use_versions(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    let too_long = app
        .submit(
            &admin,
            "/customers/new",
            "/customers",
            &[
                ("name", "Acme"),
                ("contact_email", "ops@acme.example"),
                ("environment", "live"),
                ("retention_days", "31"),
            ],
        )
        .await;
    assert_eq!(too_long.status(), 422);
    assert!(too_long.text().await.unwrap().contains("between 0"));
    let customer = app.create_customer("Acme", "live", 30).await;
    let duplicate = app
        .submit(
            &admin,
            "/customers/new",
            "/customers",
            &[
                ("name", "Acme"),
                ("contact_email", "ops@acme.example"),
                ("environment", "live"),
                ("retention_days", "3"),
            ],
        )
        .await;
    assert_eq!(duplicate.status(), 422);
    let page = app
        .get(&admin, &format!("/customers/{customer}"))
        .await
        .text()
        .await
        .unwrap();
    let (csrf, version) = (csrf_of(&page), field_of(&page, "version"));
    let saved = app
        .post(
            &admin,
            &format!("/customers/{customer}/settings"),
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("retention_days", "0"),
                ("active", "yes"),
            ],
        )
        .await;
    assert_eq!(saved.status(), 303);
    let stale = app
        .post(
            &admin,
            &format!("/customers/{customer}/settings"),
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("retention_days", "5"),
                ("active", "yes"),
            ],
        )
        .await;
    assert_eq!(stale.status(), 409);
    let list = app
        .get(&admin, "/customers?q=acm")
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains("not kept"));
    let empty = app
        .get(&admin, "/customers?q=zzz")
        .await
        .text()
        .await
        .unwrap();
    assert!(empty.contains("No customers match"));
}
both_backends!(customer_forms_validate_and_settings_use_versions);

async fn keys_cli_creates_lists_and_revokes(backend: Backend) {
    let app = spawn_app(backend).await;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_trustplane"))
            .args(args)
            .env("TRUSTPLANE_DATABASE_URL", &app.database_url)
            .env("TRUSTPLANE_DATA_DIR", app.dir.path())
            .env(
                "TRUSTPLANE_KEYRING_PATH",
                app.dir.path().join("shared-keyring.json"),
            )
            .current_dir(app.dir.path())
            .output()
            .unwrap()
    };
    let created = run(&[
        "customers",
        "create",
        "--name",
        "Globex",
        "--email",
        "sec@globex.example",
        "--env",
        "test",
        "--retention-days",
        "0",
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let wrong_env = run(&[
        "keys",
        "create",
        "--customer",
        "Globex",
        "--scopes",
        "faces:detect",
        "--env",
        "live",
    ]);
    assert!(!wrong_env.status.success());
    let bad_scope = run(&[
        "keys",
        "create",
        "--customer",
        "Globex",
        "--scopes",
        "faces:detect,root",
    ]);
    assert!(String::from_utf8_lossy(&bad_scope.stderr).contains("Unknown scope"));
    let key = run(&[
        "keys",
        "create",
        "--customer",
        "Globex",
        "--scopes",
        "faces:detect,images:read",
        "--env",
        "test",
    ]);
    assert!(
        key.status.success(),
        "{}",
        String::from_utf8_lossy(&key.stderr)
    );
    let secret = String::from_utf8_lossy(&key.stdout).trim().to_owned();
    assert!(secret.starts_with("tp_test_"));
    assert!(
        verify(&app.state, Some(&secret), &RequestMeta::default())
            .await
            .unwrap()
            .is_ok()
    );

    // The CLI-made key detects the face in a fixture through the HTTP API.
    let response = app
        .client()
        .post(app.url("/v1/faces/detect"))
        .header("x-api-key", &secret)
        .header("content-type", "image/png")
        .body(crate::api::ASTRONAUT.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["faces"].as_array().unwrap().len(), 1);
    assert!(body["retained_until"].is_null(), "Globex keeps no images");

    let listed = String::from_utf8_lossy(&run(&["keys", "list"]).stdout).into_owned();
    assert!(
        listed.contains(&secret[..16]) && listed.contains("Globex") && !listed.contains(&secret)
    );
    let revoked = run(&["keys", "revoke", &secret[..16]]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    app.clock.advance(SECOND);
    assert!(
        verify(&app.state, Some(&secret), &RequestMeta::default())
            .await
            .unwrap()
            .is_err()
    );
    assert!(
        !run(&["keys", "revoke", &secret[..16]]).status.success(),
        "already revoked"
    );
}
both_backends!(keys_cli_creates_lists_and_revokes);
