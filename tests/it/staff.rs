//! Staff administration: invitations, roles, disabling, MFA reset, concurrency, last admin.

use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;

async fn disabling_a_person_ends_their_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    let (victim_client, victim) = app.logged_in_as(Role::Security).await;
    assert_eq!(app.get(&victim_client, "/").await.status(), 200);

    let page = app
        .get(&admin, &format!("/staff/{}", victim.id))
        .await
        .text()
        .await
        .unwrap();
    let version = field_of(&page, "version");
    let unconfirmed = app
        .post(
            &admin,
            &format!("/staff/{}/disable", victim.id),
            &[("csrf", &csrf_of(&page)), ("version", &version)],
        )
        .await;
    assert_eq!(unconfirmed.status(), 400, "confirmation is required");
    let response = app
        .post(
            &admin,
            &format!("/staff/{}/disable", victim.id),
            &[
                ("csrf", &csrf_of(&page)),
                ("version", &version),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);

    let after = app.get(&victim_client, "/").await;
    assert_eq!(after.status(), 303);
    assert_eq!(location(&after), "/login");
    let sessions = app
        .count(&format!(
            "SELECT COUNT(*) FROM sessions WHERE staff_id = '{}'",
            victim.id
        ))
        .await;
    assert_eq!(sessions, 0);
    // And the disabled person cannot log in again.
    let again = app.client();
    assert_eq!(
        app.login_password(&again, &victim.email, &victim.password)
            .await
            .status(),
        401
    );
    assert!(
        app.audit_actions()
            .await
            .contains(&("staff.disable".into(), "success".into()))
    );
}
both_backends!(disabling_a_person_ends_their_sessions);

async fn revoking_a_role_ends_sessions_and_takes_effect(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    let auditor = app
        .create_staff("aud@example.com", &[Role::Auditor, Role::Security], true)
        .await;
    let auditor_client = app.client();
    app.login(&auditor_client, &auditor).await;
    assert_eq!(app.get(&auditor_client, "/audit").await.status(), 200);

    let page = app
        .get(&admin, &format!("/staff/{}", auditor.id))
        .await
        .text()
        .await
        .unwrap();
    let response = app
        .post(
            &admin,
            &format!("/staff/{}/roles/revoke", auditor.id),
            &[
                ("csrf", &csrf_of(&page)),
                ("version", &field_of(&page, "version")),
                ("role", "auditor"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        app.get(&auditor_client, "/").await.status(),
        303,
        "sessions ended"
    );
    app.login(&auditor_client, &auditor).await;
    let denied = app.get(&auditor_client, "/audit").await;
    assert_eq!(denied.status(), 403);
}
both_backends!(revoking_a_role_ends_sessions_and_takes_effect);

async fn the_last_admin_cannot_be_removed(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, me) = app.logged_in_as(Role::Admin).await;
    let page = app
        .get(&admin, &format!("/staff/{}", me.id))
        .await
        .text()
        .await
        .unwrap();
    let response = app
        .post(
            &admin,
            &format!("/staff/{}/roles/revoke", me.id),
            &[
                ("csrf", &csrf_of(&page)),
                ("version", &field_of(&page, "version")),
                ("role", "admin"),
            ],
        )
        .await;
    assert_eq!(response.status(), 409);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("no enabled administrator")
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM staff_roles WHERE role = 'admin'")
            .await,
        1
    );
    assert_eq!(
        app.get(&admin, "/staff").await.status(),
        200,
        "still an admin, still signed in"
    );

    // With a second admin, the second one can be disabled but then the first cannot lose admin.
    let second = app
        .create_staff("second@example.com", &[Role::Admin], true)
        .await;
    let page = app
        .get(&admin, &format!("/staff/{}", second.id))
        .await
        .text()
        .await
        .unwrap();
    let response = app
        .post(
            &admin,
            &format!("/staff/{}/disable", second.id),
            &[
                ("csrf", &csrf_of(&page)),
                ("version", &field_of(&page, "version")),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let page = app
        .get(&admin, &format!("/staff/{}", me.id))
        .await
        .text()
        .await
        .unwrap();
    let response = app
        .post(
            &admin,
            &format!("/staff/{}/roles/revoke", me.id),
            &[
                ("csrf", &csrf_of(&page)),
                ("version", &field_of(&page, "version")),
                ("role", "admin"),
            ],
        )
        .await;
    assert_eq!(response.status(), 409, "a disabled admin does not count");
}
both_backends!(the_last_admin_cannot_be_removed);

async fn concurrent_edits_do_not_overwrite_each_other(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    let person = app
        .create_staff("p@example.com", &[Role::Reviewer], true)
        .await;
    let page = app
        .get(&admin, &format!("/staff/{}", person.id))
        .await
        .text()
        .await
        .unwrap();
    let (csrf, version) = (csrf_of(&page), field_of(&page, "version"));
    let first = app
        .post(
            &admin,
            &format!("/staff/{}/roles", person.id),
            &[("csrf", &csrf), ("version", &version), ("role", "auditor")],
        )
        .await;
    assert_eq!(first.status(), 303);
    let stale = app
        .post(
            &admin,
            &format!("/staff/{}/roles", person.id),
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("role", "compliance"),
            ],
        )
        .await;
    assert_eq!(stale.status(), 409);
    assert!(
        stale
            .text()
            .await
            .unwrap()
            .contains("changed by someone else")
    );
    let roles = app
        .count(&format!(
            "SELECT COUNT(*) FROM staff_roles WHERE staff_id = '{}'",
            person.id
        ))
        .await;
    assert_eq!(roles, 2);
}
both_backends!(concurrent_edits_do_not_overwrite_each_other);

async fn an_invitation_lets_a_person_set_a_password_and_enrol(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    let bad = app
        .submit(
            &admin,
            "/staff/new",
            "/staff",
            &[
                ("email", "not-an-email"),
                ("display_name", "Eve"),
                ("role", "security"),
            ],
        )
        .await;
    assert_eq!(bad.status(), 422);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("is not an email address")
    );
    let invited = app
        .submit(
            &admin,
            "/staff/new",
            "/staff",
            &[
                ("email", "Eve@Example.com"),
                ("display_name", "Eve"),
                ("role", "security"),
            ],
        )
        .await;
    assert_eq!(invited.status(), 200);
    let page = invited.text().await.unwrap();
    let start = page.find("/setup?token=").unwrap();
    let end = page[start..].find('<').unwrap() + start;
    let path = page[start..end].to_owned();
    let duplicate = app
        .submit(
            &admin,
            "/staff/new",
            "/staff",
            &[
                ("email", "eve@example.com"),
                ("display_name", "Eve"),
                ("role", "security"),
            ],
        )
        .await;
    assert_eq!(duplicate.status(), 422);

    let eve = app.client();
    app.get(&eve, &path).await;
    let form = app.get(&eve, "/setup").await.text().await.unwrap();
    assert!(form.contains("eve@example.com"));
    let done = app
        .submit(
            &eve,
            "/setup",
            "/setup",
            &[("password", PASSWORD), ("confirm", PASSWORD)],
        )
        .await;
    assert_eq!(location(&done), "/mfa/enrol");
    assert_eq!(
        app.get(&eve, "/").await.status(),
        303,
        "no page before enrolment"
    );
    let text = app.audit_text().await;
    assert!(
        !text.contains(path.trim_start_matches("/setup?token=")),
        "link token not audited"
    );
}
both_backends!(an_invitation_lets_a_person_set_a_password_and_enrol);

async fn staff_list_searches_filters_and_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    for i in 0..30 {
        let now = app.state.now();
        let mut tx = app.state.db.begin().await.unwrap();
        let id = trustplane::staff::store::insert(
            &mut tx,
            &trustplane::staff::model::Email::parse(&format!("person{i:02}@example.com")).unwrap(),
            &trustplane::staff::model::DisplayName::parse(&format!("Person {i:02}")).unwrap(),
            None,
            now,
        )
        .await
        .unwrap();
        let role = if i % 2 == 0 {
            Role::Reviewer
        } else {
            Role::Compliance
        };
        trustplane::staff::store::grant_role(&mut tx, &id, role, "test", now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let first = app.get(&admin, "/staff").await.text().await.unwrap();
    assert!(first.contains("page 1 of 2 · 31 people"));
    let second = app.get(&admin, "/staff?page=2").await.text().await.unwrap();
    assert_eq!(second.matches("<td><a href=\"/staff/").count(), 6);
    let search = app
        .get(&admin, "/staff?q=person0")
        .await
        .text()
        .await
        .unwrap();
    assert!(search.contains("10 people"));
    let reviewers = app
        .get(&admin, "/staff?role=reviewer&state=invited")
        .await
        .text()
        .await
        .unwrap();
    assert!(reviewers.contains("15 people"));
    let none = app.get(&admin, "/staff?q=zzz").await.text().await.unwrap();
    assert!(none.contains("No staff match"));
    assert_eq!(app.get(&admin, "/staff?role=root").await.status(), 400);
}
both_backends!(staff_list_searches_filters_and_pages);

async fn admin_mfa_reset_needs_the_admins_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    let (person_client, person) = app.logged_in_as(Role::Security).await;
    let page = app
        .get(&admin, &format!("/staff/{}", person.id))
        .await
        .text()
        .await
        .unwrap();
    let wrong = app
        .post(
            &admin,
            &format!("/staff/{}/mfa-reset", person.id),
            &[
                ("csrf", &csrf_of(&page)),
                ("version", &field_of(&page, "version")),
                ("confirm", "yes"),
                ("admin_password", "not my password at all"),
            ],
        )
        .await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(app.get(&person_client, "/").await.status(), 200);
    let ok = app
        .post(
            &admin,
            &format!("/staff/{}/mfa-reset", person.id),
            &[
                ("csrf", &csrf_of(&page)),
                ("version", &field_of(&page, "version")),
                ("confirm", "yes"),
                ("admin_password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(ok.status(), 303);
    assert_eq!(app.get(&person_client, "/").await.status(), 303);
    let again = app.client();
    assert_eq!(
        location(&app.login_password(&again, &person.email, PASSWORD).await),
        "/mfa/enrol"
    );
}
both_backends!(admin_mfa_reset_needs_the_admins_password);
