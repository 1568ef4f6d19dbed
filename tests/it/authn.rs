//! Login, TOTP, throttling, sessions, CSRF and first-run setup.

use trustplane::clock::{MINUTE, SECOND};
use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;

async fn login_happy_path_with_totp(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = app
        .create_staff("ana@example.com", &[Role::Admin], true)
        .await;
    let client = app.client();

    app.login(&client, &staff).await;

    let dashboard = app.get(&client, "/").await;
    assert_eq!(dashboard.status(), 200);
    assert!(
        dashboard
            .text()
            .await
            .unwrap()
            .contains("<h1>Dashboard</h1>")
    );
    let actions = app.audit_actions().await;
    assert!(actions.contains(&("auth.password".into(), "success".into())));
    assert!(actions.contains(&("auth.mfa".into(), "success".into())));
}
both_backends!(login_happy_path_with_totp);

async fn session_token_changes_when_the_second_factor_is_verified(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = app
        .create_staff("ana@example.com", &[Role::Admin], true)
        .await;
    let client = app.client();
    app.clock.advance(30 * SECOND);
    let response = app
        .login_password(&client, &staff.email, &staff.password)
        .await;
    let pending_cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(pending_cookie.contains("HttpOnly") && pending_cookie.contains("SameSite=Strict"));
    let code = app.current_code(&staff);
    let response = app
        .submit(&client, "/login/totp", "/login/totp", &[("code", &code)])
        .await;
    let full_cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(
        pending_cookie.split(';').next(),
        full_cookie.split(';').next()
    );

    // The pre-MFA token no longer opens anything.
    let stale = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = stale
        .get(app.url("/"))
        .header("cookie", pending_cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/login");
}
both_backends!(session_token_changes_when_the_second_factor_is_verified);

async fn a_totp_code_is_accepted_once_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = app
        .create_staff("ana@example.com", &[Role::Admin], true)
        .await;
    let first = app.client();
    app.clock.advance(30 * SECOND);
    app.login_password(&first, &staff.email, &staff.password)
        .await;
    let code = app.current_code(&staff);
    let ok = app
        .submit(&first, "/login/totp", "/login/totp", &[("code", &code)])
        .await;
    assert_eq!(ok.status(), 303);

    // Same code, same 30-second window, from another browser: refused.
    let second = app.client();
    app.login_password(&second, &staff.email, &staff.password)
        .await;
    let replay = app
        .submit(&second, "/login/totp", "/login/totp", &[("code", &code)])
        .await;
    assert_eq!(replay.status(), 401);
    assert!(
        replay
            .text()
            .await
            .unwrap()
            .contains("That code is not valid")
    );
    assert_eq!(app.get(&second, "/").await.status(), 303);
    let failures = app
        .count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.mfa' AND outcome = 'failure' AND details LIKE '%replayed_code%'")
        .await;
    assert_eq!(failures, 1);
}
both_backends!(a_totp_code_is_accepted_once_only);

async fn wrong_totp_code_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = app
        .create_staff("ana@example.com", &[Role::Admin], true)
        .await;
    let client = app.client();
    app.login_password(&client, &staff.email, &staff.password)
        .await;
    let good = app.current_code(&staff);
    let wrong = if good == "000000" { "111111" } else { "000000" };
    let response = app
        .submit(&client, "/login/totp", "/login/totp", &[("code", wrong)])
        .await;
    assert_eq!(response.status(), 401);
    assert_eq!(app.get(&client, "/").await.status(), 303);
}
both_backends!(wrong_totp_code_is_refused);

async fn wrong_password_and_unknown_email_get_the_same_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_staff("ana@example.com", &[Role::Admin], true)
        .await;
    let client = app.client();
    let wrong_password = app
        .login_password(&client, "ana@example.com", "not the right password")
        .await;
    let unknown = app
        .login_password(&client, "nobody@example.com", "not the right password")
        .await;
    assert_eq!(wrong_password.status(), 401);
    assert_eq!(unknown.status(), 401);
    let a = wrong_password.text().await.unwrap();
    let b = unknown.text().await.unwrap();
    assert!(a.contains("Email or password is incorrect."));
    assert_eq!(
        a.replace("ana@example.com", "X").replace(&csrf_of(&a), "T"),
        b.replace("nobody@example.com", "X")
            .replace(&csrf_of(&b), "T")
    );
}
both_backends!(wrong_password_and_unknown_email_get_the_same_answer);

async fn repeated_failures_lock_the_account_for_fifteen_minutes(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = app
        .create_staff("ana@example.com", &[Role::Admin], true)
        .await;
    let client = app.client();
    for _ in 0..10 {
        let response = app
            .login_password(&client, &staff.email, "not the right password")
            .await;
        assert_eq!(response.status(), 401);
    }
    // Locked: even the right password is refused now.
    let locked = app
        .login_password(&client, &staff.email, &staff.password)
        .await;
    assert_eq!(locked.status(), 429);
    assert!(
        locked
            .text()
            .await
            .unwrap()
            .contains("Too many failed attempts")
    );
    let lockouts = app
        .count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.lockout'")
        .await;
    assert_eq!(lockouts, 1);

    app.clock.advance(14 * MINUTE);
    assert_eq!(
        app.login_password(&client, &staff.email, &staff.password)
            .await
            .status(),
        429
    );
    app.clock.advance(MINUTE + SECOND);
    app.login(&client, &staff).await;
    assert_eq!(app.get(&client, "/").await.status(), 200);
}
both_backends!(repeated_failures_lock_the_account_for_fifteen_minutes);

async fn missing_or_forged_csrf_token_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (client, _) = app.logged_in_as(Role::Admin).await;
    let form = [
        ("email", "new@example.com"),
        ("display_name", "New"),
        ("role", "auditor"),
    ];

    let missing = app.post(&client, "/staff", &form).await;
    assert_eq!(missing.status(), 403);
    assert_eq!(
        error_code(&missing.text().await.unwrap()).as_deref(),
        Some("csrf")
    );

    let mut forged = form.to_vec();
    forged.push(("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    let forged = app.post(&client, "/staff", &forged).await;
    assert_eq!(forged.status(), 403);

    // A token from another session does not work either.
    let (other, _) = app.logged_in_as(Role::Admin).await;
    let other_token = csrf_of(&app.get(&other, "/staff/new").await.text().await.unwrap());
    let mut foreign = form.to_vec();
    foreign.push(("csrf", &other_token));
    assert_eq!(app.post(&client, "/staff", &foreign).await.status(), 403);

    // Login itself is protected too.
    let anonymous = app.client();
    let response = app
        .post(
            &anonymous,
            "/login",
            &[("email", "a@example.com"), ("password", "x")],
        )
        .await;
    assert_eq!(response.status(), 403);

    assert_eq!(
        app.count("SELECT COUNT(*) FROM staff WHERE email = 'new@example.com'")
            .await,
        0
    );
}
both_backends!(missing_or_forged_csrf_token_changes_nothing);

async fn sessions_end_after_idle_timeout_and_absolute_lifetime(backend: Backend) {
    let app = spawn_app(backend).await;
    let (client, _) = app.logged_in_as(Role::Auditor).await;
    app.clock.advance(29 * MINUTE);
    assert_eq!(app.get(&client, "/").await.status(), 200);
    app.clock.advance(30 * MINUTE + SECOND);
    let expired = app.get(&client, "/").await;
    assert_eq!(expired.status(), 303);
    assert_eq!(location(&expired), "/login");

    let (client, _) = app.logged_in_as(Role::Auditor).await;
    for _ in 0..(12 * 60 / 20 - 1) {
        app.clock.advance(20 * MINUTE);
        assert_eq!(app.get(&client, "/").await.status(), 200);
    }
    app.clock.advance(20 * MINUTE);
    assert_eq!(
        app.get(&client, "/").await.status(),
        303,
        "12 h absolute lifetime"
    );
}
both_backends!(sessions_end_after_idle_timeout_and_absolute_lifetime);

async fn an_account_without_mfa_reaches_nothing_but_enrolment(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = app
        .create_staff("new@example.com", &[Role::Admin], false)
        .await;
    let client = app.client();
    let response = app
        .login_password(&client, &staff.email, &staff.password)
        .await;
    assert_eq!(location(&response), "/mfa/enrol");
    for path in ["/", "/staff", "/audit", "/account", "/login/totp"] {
        let response = app.get(&client, path).await;
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(location(&response), "/mfa/enrol", "{path}");
    }
    let page = app.get(&client, "/mfa/enrol").await.text().await.unwrap();
    assert!(page.contains("<svg"), "QR code rendered server-side");
    assert!(page.contains("otpauth://totp/trustplane:new%40example.com"));
    let secret = secret_from_enrol_page(&page);
    app.clock.advance(30 * SECOND);
    let step = trustplane::authn::totp::step_at(app.state.now());
    let code = trustplane::authn::totp::code_at_step(&secret, step).unwrap();
    let csrf = csrf_of(&page);
    let done = app
        .post(&client, "/mfa/enrol", &[("code", &code), ("csrf", &csrf)])
        .await;
    assert_eq!(done.status(), 200);
    let codes_page = done.text().await.unwrap();
    assert_eq!(codes_page.matches("<li><code>").count(), 10);
    assert_eq!(app.get(&client, "/").await.status(), 200);

    // A recovery code works once instead of a TOTP code.
    let code = codes_page
        .split("<li><code>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    for attempt in 0..2 {
        let other = app.client();
        app.login_password(&other, &staff.email, &staff.password)
            .await;
        let response = app
            .submit(&other, "/login/totp", "/login/totp", &[("code", &code)])
            .await;
        assert_eq!(response.status(), if attempt == 0 { 303 } else { 401 });
    }
}
both_backends!(an_account_without_mfa_reaches_nothing_but_enrolment);

pub fn secret_from_enrol_page(page: &str) -> String {
    let start = page.find("class=\"secret\">").unwrap() + "class=\"secret\">".len();
    let end = page[start..].find('<').unwrap() + start;
    page[start..end].replace(' ', "")
}

async fn first_run_setup_link_works_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let link = trustplane::server::first_run_link(&app.state, &app.base)
        .await
        .unwrap()
        .unwrap();
    let path = link.strip_prefix(&app.base).unwrap().to_owned();
    let client = app.client();

    let opened = app.get(&client, &path).await;
    assert_eq!(opened.status(), 303);
    assert_eq!(location(&opened), "/setup", "token leaves the address bar");
    let form = app.get(&client, "/setup").await.text().await.unwrap();
    assert!(form.contains("Create the first administrator"));

    let weak = app
        .submit(
            &client,
            "/setup",
            "/setup",
            &[
                ("email", "root@example.com"),
                ("display_name", "Root"),
                ("password", "password1234"),
                ("confirm", "password1234"),
            ],
        )
        .await;
    assert_eq!(weak.status(), 422);
    assert!(weak.text().await.unwrap().contains("too common"));

    let created = app
        .submit(
            &client,
            "/setup",
            "/setup",
            &[
                ("email", "root@example.com"),
                ("display_name", "Root"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(created.status(), 303);
    assert_eq!(location(&created), "/mfa/enrol");
    let page = app.get(&client, "/mfa/enrol").await.text().await.unwrap();
    let secret = secret_from_enrol_page(&page);
    let code = trustplane::authn::totp::code_at_step(
        &secret,
        trustplane::authn::totp::step_at(app.state.now()),
    )
    .unwrap();
    let done = app
        .post(
            &client,
            "/mfa/enrol",
            &[("code", &code), ("csrf", &csrf_of(&page))],
        )
        .await;
    assert_eq!(done.status(), 200);
    assert_eq!(app.get(&client, "/").await.status(), 200);
    assert_eq!(
        app.get(&client, "/staff").await.status(),
        200,
        "the first account is an admin"
    );

    // The same link again, in a fresh browser: refused.
    let again = app.client();
    app.get(&again, &path).await;
    let refused = app.get(&again, "/setup").await;
    assert_eq!(refused.status(), 410);
    assert_eq!(app.count("SELECT COUNT(*) FROM staff").await, 1);
    assert!(
        trustplane::server::first_run_link(&app.state, &app.base)
            .await
            .unwrap()
            .is_none()
    );
}
both_backends!(first_run_setup_link_works_once);

async fn logout_ends_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let (client, staff) = app.logged_in_as(Role::Security).await;
    let response = app.submit(&client, "/", "/logout", &[]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(app.get(&client, "/").await.status(), 303);
    let sessions = app
        .count(&format!(
            "SELECT COUNT(*) FROM sessions WHERE staff_id = '{}'",
            staff.id
        ))
        .await;
    assert_eq!(sessions, 0);
    assert!(
        app.audit_actions()
            .await
            .contains(&("auth.logout".into(), "success".into()))
    );
}
both_backends!(logout_ends_the_session);

async fn password_change_requires_reauthentication(backend: Backend) {
    let app = spawn_app(backend).await;
    let (client, staff) = app.logged_in_as(Role::Reviewer).await;
    let (other_browser, _) = (app.client(), ());
    app.login(&other_browser, &staff).await;
    app.clock.advance(30 * SECOND);
    let new_password = "another long passphrase here";
    let wrong = app
        .submit(
            &client,
            "/account",
            "/account/password",
            &[
                ("current_password", "wrong password entirely"),
                ("new_password", new_password),
                ("confirm", new_password),
                ("code", &app.current_code(&staff)),
            ],
        )
        .await;
    assert_eq!(wrong.status(), 422);
    app.clock.advance(30 * SECOND);
    let ok = app
        .submit(
            &client,
            "/account",
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", new_password),
                ("confirm", new_password),
                ("code", &app.current_code(&staff)),
            ],
        )
        .await;
    assert_eq!(ok.status(), 303);
    assert_eq!(
        app.get(&client, "/").await.status(),
        200,
        "this session stays"
    );
    assert_eq!(
        app.get(&other_browser, "/").await.status(),
        303,
        "other sessions end"
    );
    let text = app.audit_text().await;
    assert!(
        !text.contains(new_password) && !text.contains(PASSWORD),
        "no secret in audit"
    );
}
both_backends!(password_change_requires_reauthentication);

async fn own_mfa_reset_requires_reauthentication_and_ends_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let (client, staff) = app.logged_in_as(Role::Compliance).await;
    app.clock.advance(30 * SECOND);
    let unconfirmed = app
        .submit(
            &client,
            "/account",
            "/account/mfa-reset",
            &[
                ("current_password", PASSWORD),
                ("code", &app.current_code(&staff)),
            ],
        )
        .await;
    assert_eq!(unconfirmed.status(), 422);
    app.clock.advance(30 * SECOND);
    let reset = app
        .submit(
            &client,
            "/account",
            "/account/mfa-reset",
            &[
                ("current_password", PASSWORD),
                ("code", &app.current_code(&staff)),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(reset.status(), 303);
    assert_eq!(app.get(&client, "/").await.status(), 303);
    let again = app.client();
    let response = app.login_password(&again, &staff.email, PASSWORD).await;
    assert_eq!(location(&response), "/mfa/enrol");
}
both_backends!(own_mfa_reset_requires_reauthentication_and_ends_sessions);

async fn my_sessions_page_lists_and_ends_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let (laptop, staff) = app.logged_in_as(Role::Security).await;
    let phone = app.client();
    app.login(&phone, &staff).await;
    let page = app
        .get(&laptop, "/account/sessions")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(page.matches("/end\"").count(), 2);
    let response = app
        .submit(
            &laptop,
            "/account/sessions",
            "/account/sessions/end-others",
            &[],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(app.get(&phone, "/").await.status(), 303);
    assert_eq!(app.get(&laptop, "/").await.status(), 200);
}
both_backends!(my_sessions_page_lists_and_ends_sessions);
