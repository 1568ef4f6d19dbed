//! The security review's findings, each as the attack it describes: concurrent guesses against
//! the lockout, a flood of password hashes, forged forwarded addresses, admins removing each
//! other at once, and malformed setup tokens.

use std::sync::Arc;

use crate::both_backends;
use crate::helpers::*;
use trustplane::audit::{AuditEvent, RequestMeta};
use trustplane::authn::throttle::{self, Gate, Subject};
use trustplane::clock::{MINUTE, SECOND};
use trustplane::staff::model::Role;

/// Audit rows that record a checked (and wrong) secret.
async fn verifications(app: &TestApp, action: &str, reason: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM audit_log WHERE action = '{action}' AND outcome = 'failure' \
         AND details LIKE '%\"{reason}\"%'"
    ))
    .await
}

async fn two_hundred_concurrent_wrong_totp_codes_verify_at_most_the_account_limit(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let staff = app
        .create_staff("target@example.com", &[Role::Admin], true)
        .await;
    let client = app.client();
    let response = app
        .login_password(&client, &staff.email, &staff.password)
        .await;
    assert_eq!(location(&response), "/login/totp");
    // One CSRF token serves every request, as in the attack.
    let csrf = csrf_of(&app.get(&client, "/login/totp").await.text().await.unwrap());
    let right = app.current_code(&staff);
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let (app, client, csrf) = (Arc::clone(&app), client.clone(), csrf.clone());
        let mut code = format!("{:06}", (i * 4999) % 1_000_000);
        if code == right {
            code = format!("{:06}", (i * 4999 + 1) % 1_000_000);
        }
        tasks.push(tokio::spawn(async move {
            app.post(&client, "/login/totp", &[("code", &code), ("csrf", &csrf)])
                .await
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let verified = verifications(&app, "auth.mfa", "wrong_code").await;
    let limit = app.state.config.lockout_account_failures;
    assert!(
        verified <= limit,
        "{verified} codes were checked; the limit is {limit} ({statuses:?})"
    );
    assert!(verified >= 1, "at least one code was checked");
    assert!(
        statuses.iter().all(|s| *s != 200 && *s != 500),
        "{statuses:?}"
    );
}
both_backends!(two_hundred_concurrent_wrong_totp_codes_verify_at_most_the_account_limit);

/// Without the per-node in-flight guard (several nodes), the database alone must hold the
/// line: of 200 attempts charged at once, exactly `threshold` may proceed.
async fn concurrent_claims_on_one_subject_let_exactly_the_threshold_through(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = app.state.now();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let db = app.state.db.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            let gate = throttle::begin_attempt(
                &mut tx,
                &[Subject::new("acct:race".into(), 10)],
                now,
                15 * MINUTE,
                &RequestMeta::default(),
                AuditEvent::new("anonymous", "auth.mfa", "staff:race"),
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            matches!(gate, Gate::Proceed(_))
        }));
    }
    let mut proceeded = 0;
    for task in tasks {
        proceeded += i32::from(task.await.unwrap());
    }
    assert_eq!(proceeded, 10);
    // The 190 refusals wrote one audit row, not 190.
    let denied = app
        .count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.mfa' AND outcome = 'denied'")
        .await;
    assert_eq!(denied, 1);
}
both_backends!(concurrent_claims_on_one_subject_let_exactly_the_threshold_through);

async fn a_hundred_concurrent_failed_logins_from_one_address_verify_at_most_the_ip_limit(
    backend: Backend,
) {
    // A queue long enough that nothing is refused for capacity: only the lockout may refuse.
    let app = spawn_app_with(backend, |c| c.password_hash_queue = 200).await;
    let client = app.client();
    let csrf = csrf_of(&app.get(&client, "/login").await.text().await.unwrap());
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (app, client, csrf) = (Arc::clone(&app), client.clone(), csrf.clone());
        tasks.push(tokio::spawn(async move {
            let email = format!("nobody{i}@example.com");
            app.post(
                &client,
                "/login",
                &[
                    ("email", &email),
                    ("password", "wrong wrong wrong"),
                    ("csrf", &csrf),
                ],
            )
            .await
            .status()
            .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let verified = verifications(&app, "auth.login", "bad_credentials").await;
    let limit = app.state.config.lockout_ip_failures;
    assert_eq!(verified, limit, "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count() as i64,
        100 - limit
    );
}
both_backends!(a_hundred_concurrent_failed_logins_from_one_address_verify_at_most_the_ip_limit);

async fn password_hashing_runs_bounded_and_refuses_beyond_its_queue(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.password_hash_concurrency = 1;
        c.password_hash_queue = 2;
    })
    .await;
    let client = app.client();
    let csrf = csrf_of(&app.get(&client, "/login").await.text().await.unwrap());
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (app, client, csrf) = (Arc::clone(&app), client.clone(), csrf.clone());
        tasks.push(tokio::spawn(async move {
            let email = format!("flood{i}@example.com");
            let response = app
                .post(
                    &client,
                    "/login",
                    &[
                        ("email", &email),
                        ("password", "wrong wrong wrong"),
                        ("csrf", &csrf),
                    ],
                )
                .await;
            let retry_after = response.headers().get("retry-after").cloned();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            (status, retry_after, body)
        }));
    }
    let mut busy = 0;
    let mut checked = 0;
    for task in tasks {
        let (status, retry_after, body) = task.await.unwrap();
        match status {
            503 => {
                busy += 1;
                assert!(retry_after.is_some(), "503 carries Retry-After");
                assert_eq!(error_code(&body).as_deref(), Some("busy"));
            }
            401 => checked += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(busy > 0, "a full queue refuses");
    assert!(checked >= 1);
    assert_eq!(app.state.passwords.peak_running(), 1, "one hash at a time");
    // Refused attempts were given back: the address is not charged for them.
    let charged = app
        .count("SELECT COALESCE(MAX(failures), 0) FROM login_throttle WHERE subject LIKE 'ip:%'")
        .await;
    assert_eq!(charged, checked);
}
both_backends!(password_hashing_runs_bounded_and_refuses_beyond_its_queue);

async fn refusals_during_a_lock_are_audited_once_and_summarised(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = app
        .create_staff("locked@example.com", &[Role::Admin], true)
        .await;
    let client = app.client();
    for _ in 0..10 {
        app.login_password(&client, &staff.email, "not the right password")
            .await;
    }
    for _ in 0..30 {
        let response = app
            .login_password(&client, &staff.email, "still not right")
            .await;
        assert_eq!(response.status(), 429);
    }
    let denied = app
        .count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.login' AND outcome = 'denied'")
        .await;
    assert_eq!(denied, 1, "one row for the first refusal of the lock");

    app.clock.advance(15 * MINUTE + SECOND);
    app.login(&client, &staff).await;
    let summary = app
        .count(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.lockout.refusals' \
             AND details LIKE '%\"refused_while_locked\":30%'",
        )
        .await;
    assert_eq!(summary, 1, "{}", app.audit_text().await);
}
both_backends!(refusals_during_a_lock_are_audited_once_and_summarised);

async fn a_forged_forwarded_line_before_the_proxy_line_is_ignored(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.behind_proxy = true).await;
    let client = app.client();
    let metrics = |lines: &'static [&'static str]| {
        let mut request = client.get(app.url("/metrics"));
        for line in lines {
            request = request.header("x-forwarded-for", *line);
        }
        request.send()
    };
    // The client's own line comes first; HAProxy appends the address it saw as a new line.
    assert_eq!(
        metrics(&["127.0.0.1", "203.0.113.9"])
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        metrics(&["127.0.0.1, 203.0.113.9"]).await.unwrap().status(),
        403
    );
    // The proxy saw a loopback client: allowed.
    assert_eq!(
        metrics(&["203.0.113.9", "127.0.0.1"])
            .await
            .unwrap()
            .status(),
        200
    );

    // The login throttle is keyed on the address the proxy saw, so rotating a forged line
    // does not escape it.
    let staff = app
        .create_staff("proxy@example.com", &[Role::Admin], true)
        .await;
    for i in 0..3 {
        let csrf = csrf_of(&app.get(&client, "/login").await.text().await.unwrap());
        client
            .post(app.url("/login"))
            .header("x-forwarded-for", format!("10.0.0.{i}"))
            .header("x-forwarded-for", "198.51.100.7")
            .form(&[
                ("email", staff.email.as_str()),
                ("password", "wrong wrong wrong"),
                ("csrf", csrf.as_str()),
            ])
            .send()
            .await
            .unwrap();
    }
    let ip_failures = app
        .count("SELECT failures FROM login_throttle WHERE subject = 'ip:198.51.100.7'")
        .await;
    assert_eq!(ip_failures, 3);
}
both_backends!(a_forged_forwarded_line_before_the_proxy_line_is_ignored);

async fn two_proxy_hops_take_the_second_entry_from_the_right(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.behind_proxy = true;
        c.trusted_proxy_hops = 2;
    })
    .await;
    let client = app.client();
    let status = client
        .get(app.url("/metrics"))
        .header("x-forwarded-for", "127.0.0.1, 203.0.113.9")
        .header("x-forwarded-for", "127.0.0.1")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403, "the client is 203.0.113.9, not the last hop");
}
both_backends!(two_proxy_hops_take_the_second_entry_from_the_right);

/// Two admins remove each other's admin role in overlapping transactions: the second count
/// must wait for the first change and see it, so one admin always remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_removing_each_other_at_once_leave_one_admin_on_postgres() {
    use trustplane::staff::store;
    let app = spawn_app(Backend::Postgres).await;
    let a = app
        .create_staff("a@example.com", &[Role::Admin], true)
        .await;
    let b = app
        .create_staff("b@example.com", &[Role::Admin], true)
        .await;

    let mut tx_a = app.state.db.begin().await.unwrap();
    assert!(
        store::revoke_role(&mut tx_a, &b.id, Role::Admin)
            .await
            .unwrap()
    );
    let mut tx_b = app.state.db.begin().await.unwrap();
    assert!(
        store::revoke_role(&mut tx_b, &a.id, Role::Admin)
            .await
            .unwrap()
    );
    assert_eq!(store::count_active_admins(&mut tx_a).await.unwrap(), 1);

    let second = tokio::spawn(async move {
        let n = store::count_active_admins(&mut tx_b).await.unwrap();
        (tx_b, n)
    });
    // While the first change is open the second count must not answer.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second count waits for the first change"
    );
    tx_a.commit().await.unwrap();
    let (tx_b, n) = second.await.unwrap();
    assert_eq!(n, 0, "the second change sees the first and must be refused");
    tx_b.rollback().await.unwrap();
}

async fn admins_revoking_each_other_concurrently_over_http_keep_an_admin(backend: Backend) {
    let app = spawn_app(backend).await;
    let (client_a, a) = app.logged_in_as(Role::Admin).await;
    let (client_b, b) = app.logged_in_as(Role::Admin).await;
    let page_a = app
        .get(&client_a, &format!("/staff/{}", b.id))
        .await
        .text()
        .await
        .unwrap();
    let page_b = app
        .get(&client_b, &format!("/staff/{}", a.id))
        .await
        .text()
        .await
        .unwrap();
    let (csrf_a, version_b) = (csrf_of(&page_a), field_of(&page_a, "version"));
    let (csrf_b, version_a) = (csrf_of(&page_b), field_of(&page_b, "version"));
    let (path_a, path_b) = (
        format!("/staff/{}/roles/revoke", b.id),
        format!("/staff/{}/roles/revoke", a.id),
    );
    let form_a = [
        ("role", "admin"),
        ("version", &version_b),
        ("csrf", &csrf_a),
    ];
    let form_b = [
        ("role", "admin"),
        ("version", &version_a),
        ("csrf", &csrf_b),
    ];
    let (ra, rb) = tokio::join!(
        app.post(&client_a, &path_a, &form_a),
        app.post(&client_b, &path_b, &form_b),
    );
    let admins = app
        .count(
            "SELECT COUNT(*) FROM staff_roles r JOIN staff s ON s.id = r.staff_id \
             WHERE r.role = 'admin' AND s.disabled = 0",
        )
        .await;
    assert!(admins >= 1, "statuses {} {}", ra.status(), rb.status());
}
both_backends!(admins_revoking_each_other_concurrently_over_http_keep_an_admin);

async fn a_setup_token_of_the_wrong_shape_never_reaches_a_cookie(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.client();
    for bad in [
        "short",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa%3BDomain%3Devil",
    ] {
        let response = app.get(&client, &format!("/setup?token={bad}")).await;
        assert_eq!(response.status(), 410, "{bad}");
        let setup_cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().contains("tp_setup"));
        assert!(!setup_cookie, "{bad}");
    }
}
both_backends!(a_setup_token_of_the_wrong_shape_never_reaches_a_cookie);

async fn the_staff_mfa_reset_password_check_is_throttled(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    let person = app
        .create_staff("person@example.com", &[Role::Security], true)
        .await;
    let page = app
        .get(&admin, &format!("/staff/{}", person.id))
        .await
        .text()
        .await
        .unwrap();
    let reset = |password: &'static str| {
        let (csrf, version) = (csrf_of(&page), field_of(&page, "version"));
        let admin = admin.clone();
        let url = app.url(&format!("/staff/{}/mfa-reset", person.id));
        async move {
            admin
                .post(url)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("version", version.as_str()),
                    ("confirm", "yes"),
                    ("admin_password", password),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..10 {
        assert_eq!(reset("not my password at all").await.status(), 400);
    }
    // Locked: even the right password is not checked now.
    let locked = reset(PASSWORD).await;
    assert_eq!(locked.status(), 400);
    assert!(
        locked
            .text()
            .await
            .unwrap()
            .contains("Too many failed attempts")
    );
    let checked = app
        .count(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.reauthenticate' \
             AND outcome = 'failure'",
        )
        .await;
    assert_eq!(checked, 10);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'staff.mfa.reset'")
            .await,
        0
    );
}
both_backends!(the_staff_mfa_reset_password_check_is_throttled);
