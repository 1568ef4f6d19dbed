//! On call: the rotation set from the portal and the CLI, overrides, and "who is on call now"
//! moving with the clock across a handoff.

use crate::both_backends;
use crate::helpers::*;
use trustplane::clock::{DAY, HOUR};
use trustplane::staff::model::Role;

async fn the_rotation_hands_off_weekly_and_an_override_takes_over(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    let ana = app
        .create_staff("ana@example.com", &[Role::Security], true)
        .await;
    let ben = app
        .create_staff("ben@example.com", &[Role::Security], true)
        .await;
    let lead = app
        .create_staff("lead@example.com", &[Role::Admin], true)
        .await;
    let outsider = app
        .create_staff("rev@example.com", &[Role::Reviewer], true)
        .await;

    // T0 is Friday 2027-01-15 08:00 UTC; the handoff is Monday 09:00 in Berlin (08:00 UTC).
    let saved = app
        .submit(
            &admin,
            "/oncall",
            "/oncall/rotation",
            &[
                ("members", "ana@example.com, ben@example.com"),
                ("handoff", "Mon 09:00"),
                ("timezone", "Europe/Berlin"),
                ("escalation", "lead@example.com"),
            ],
        )
        .await;
    assert_eq!(saved.status(), 303);
    let page = app.get(&admin, "/oncall").await.text().await.unwrap();
    assert!(page.contains("ana@example.com"), "{page}");

    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let now = trustplane::oncall::on_call(&mut conn, app.state.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.person.id, ana.id);
    assert_eq!(now.escalation.unwrap().id, lead.id);
    let handoff = now.until;
    assert_eq!(handoff, T0 + 3 * DAY);
    let before = trustplane::oncall::on_call(&mut conn, handoff - 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.person.id, ana.id);
    let after = trustplane::oncall::on_call(&mut conn, handoff)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.person.id, ben.id);
    drop(conn);

    // Someone without the security role cannot join the rotation; nothing changes.
    let refused = app
        .submit(
            &admin,
            "/oncall",
            "/oncall/rotation",
            &[
                ("members", "rev@example.com"),
                ("handoff", "Mon 09:00"),
                ("timezone", "Europe/Berlin"),
            ],
        )
        .await;
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("security role"));
    let _ = outsider;

    // Ben covers from Saturday 00:00 to Sunday 00:00 Berlin time.
    let added = app
        .submit(
            &admin,
            "/oncall",
            "/oncall/overrides",
            &[
                ("email", "ben@example.com"),
                ("from", "2027-01-16T00:00"),
                ("until", "2027-01-17T00:00"),
                ("reason", "swap"),
            ],
        )
        .await;
    assert_eq!(added.status(), 303);
    app.clock.advance(HOUR * 17); // Saturday 01:00 UTC = 02:00 Berlin
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let covered = trustplane::oncall::on_call(&mut conn, app.state.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(covered.person.id, ben.id);
    assert!(covered.via_override);
    let actions = app.audit_actions().await;
    assert!(actions.iter().any(|(a, _)| a == "oncall.rotation.set"));
    assert!(actions.iter().any(|(a, _)| a == "oncall.override.add"));
}
both_backends!(the_rotation_hands_off_weekly_and_an_override_takes_over);

async fn the_cli_sets_the_rotation_and_says_who_is_on_call(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_staff("ana@example.com", &[Role::Security], true)
        .await;
    app.create_staff("ben@example.com", &[Role::Security], true)
        .await;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_trustplane"))
            .args(args)
            .env("TRUSTPLANE_DATABASE_URL", &app.database_url)
            .env("TRUSTPLANE_DATA_DIR", app.dir.path())
            .env(
                "TRUSTPLANE_KEYRING_PATH",
                app.dir.path().join("shared-keyring.json"),
            )
            .env("USER", "alice")
            .output()
            .expect("run trustplane")
    };
    let set = run(&[
        "oncall",
        "set",
        "--members",
        "ben@example.com,ana@example.com",
        "--handoff",
        "Mon 09:00",
        "--timezone",
        "Europe/Berlin",
    ]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let now = run(&["oncall", "now", "--json"]);
    assert!(
        now.status.success(),
        "{}",
        String::from_utf8_lossy(&now.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&now.stdout).unwrap();
    // The real clock is used by the CLI: whoever it is, it is one of the two members.
    let email = parsed["person"]["email"].as_str().unwrap();
    assert!(["ana@example.com", "ben@example.com"].contains(&email));
    let bad = run(&[
        "oncall",
        "set",
        "--members",
        "ana@example.com",
        "--handoff",
        "Someday",
        "--timezone",
        "UTC",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("handoff"));
    let actor = app
        .count(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'oncall.rotation.set' \
             AND actor LIKE 'cli:alice@%'",
        )
        .await;
    assert_eq!(actor, 1);
}
both_backends!(the_cli_sets_the_rotation_and_says_who_is_on_call);
