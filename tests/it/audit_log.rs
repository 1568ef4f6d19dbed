//! The hash-chained audit log: it verifies, it refuses edits, and tampering is detected
//! both by the library and by `trustplane audit verify`.

use trustplane::audit::{self, AuditEvent, RequestMeta};
use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;

async fn append_events(app: &TestApp, n: usize) {
    for i in 0..n {
        let event = AuditEvent::new("system", "test.event", format!("item:{i}")).detail("i", i);
        audit::append_alone(
            &app.state.db,
            app.state.now(),
            &RequestMeta::default(),
            event,
        )
        .await
        .unwrap();
    }
}

fn run_verify(app: &TestApp) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_trustplane"))
        .args(["audit", "verify"])
        .env("TRUSTPLANE_DATABASE_URL", &app.database_url)
        .env("TRUSTPLANE_DATA_DIR", app.dir.path())
        .current_dir(app.dir.path())
        .output()
        .unwrap()
}

async fn audit_chain_verifies_and_one_tampered_row_is_named(backend: Backend) {
    let app = spawn_app(backend).await;
    append_events(&app, 5).await;
    let result = audit::verify(&app.state.db).await.unwrap();
    assert!(result.ok(), "{result:?}");
    assert_eq!(result.checked, 5);
    let ok = run_verify(&app);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("audit chain OK: 5 events"));

    // The database itself refuses to edit or delete rows.
    let edit = sqlx::query("UPDATE audit_log SET details = '{}' WHERE seq = 3")
        .execute(&app.state.db.pool)
        .await;
    assert!(edit.is_err(), "append-only trigger");
    assert!(
        sqlx::query("DELETE FROM audit_log WHERE seq = 5")
            .execute(&app.state.db.pool)
            .await
            .is_err()
    );

    // Someone with direct database access switches the guard off and edits row 3.
    let disable = match backend {
        Backend::Sqlite => "DROP TRIGGER audit_log_no_update",
        Backend::Postgres => "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update",
    };
    sqlx::query(disable)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET outcome = 'failure' WHERE seq = 3")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let result = audit::verify(&app.state.db).await.unwrap();
    assert_eq!(
        result.first_bad.as_ref().map(|b| b.0),
        Some(3),
        "{result:?}"
    );
    let broken = run_verify(&app);
    assert!(!broken.status.success());
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(stderr.contains("BROKEN at event #3"), "{stderr}");
}
both_backends!(audit_chain_verifies_and_one_tampered_row_is_named);

async fn deleting_the_newest_rows_is_detected(backend: Backend) {
    let app = spawn_app(backend).await;
    append_events(&app, 4).await;
    let disable = match backend {
        Backend::Sqlite => "DROP TRIGGER audit_log_no_delete",
        Backend::Postgres => "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update",
    };
    sqlx::query(disable)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = 4")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let result = audit::verify(&app.state.db).await.unwrap();
    assert_eq!(result.first_bad.map(|b| b.0), Some(4));
}
both_backends!(deleting_the_newest_rows_is_detected);

async fn concurrent_appends_keep_one_unbroken_chain(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let state = app.state.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let event = AuditEvent::new("system", "test.concurrent", format!("t{t}:{i}"));
                audit::append_alone(&state.db, state.now(), &RequestMeta::default(), event)
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let result = audit::verify(&app.state.db).await.unwrap();
    assert!(result.ok(), "{result:?}");
    assert_eq!(result.checked, 80);
}
both_backends!(concurrent_appends_keep_one_unbroken_chain);

async fn a_failed_audit_write_fails_the_change(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    // Break the audit table so appends fail; the change must not happen either.
    sqlx::query("ALTER TABLE audit_log RENAME TO audit_log_moved")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let before = app.count("SELECT COUNT(*) FROM staff").await;
    let response = app
        .submit(
            &admin,
            "/staff/new",
            "/staff",
            &[
                ("email", "x@example.com"),
                ("display_name", "X"),
                ("role", "auditor"),
            ],
        )
        .await;
    assert_eq!(response.status(), 500);
    assert_eq!(
        error_code(&response.text().await.unwrap()).as_deref(),
        Some("internal")
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM staff").await, before);
}
both_backends!(a_failed_audit_write_fails_the_change);

async fn audit_page_filters_and_pages_and_hides_secrets(backend: Backend) {
    let app = spawn_app(backend).await;
    let (auditor, _) = app.logged_in_as(Role::Auditor).await;
    append_events(&app, 120).await;
    let page = app.get(&auditor, "/audit").await.text().await.unwrap();
    assert_eq!(page.matches("<td><code>test.event</code></td>").count(), 50);
    assert!(page.contains("Older »"));
    let filtered = app
        .get(&auditor, "/audit?action=auth.&outcome=success")
        .await
        .text()
        .await
        .unwrap();
    assert!(filtered.contains("auth.mfa") && !filtered.contains("test.event"));
    let none = app
        .get(&auditor, "/audit?actor=nobody-at-all")
        .await
        .text()
        .await
        .unwrap();
    assert!(none.contains("No events match"));
    assert_eq!(
        app.get(&auditor, "/audit?outcome=maybe").await.status(),
        400
    );
    let text = app.audit_text().await;
    assert!(!text.contains(PASSWORD));
}
both_backends!(audit_page_filters_and_pages_and_hides_secrets);

async fn client_addresses_are_cut_to_their_network_after_the_window_and_the_chain_still_verifies(
    backend: Backend,
) {
    use trustplane::clock::DAY;
    let app = spawn_app(backend).await;
    let db = &app.state.db;
    let from = |ip: &str| RequestMeta {
        client_ip: Some(ip.into()),
        request_id: None,
    };
    for ip in ["203.0.113.77", "2001:db8:abcd:12::1"] {
        let event = AuditEvent::new("anonymous", "auth.login", "staff:x")
            .outcome(trustplane::audit::Outcome::Failure);
        audit::append_alone(db, app.state.now(), &from(ip), event)
            .await
            .unwrap();
    }
    let kept = |net: &'static str| {
        format!(
            "SELECT COUNT(*) FROM audit_log WHERE client_net = '{net}' AND client_ip IS NOT NULL AND ip_salt IS NOT NULL"
        )
    };
    assert_eq!(app.count(&kept("203.0.113.0/24")).await, 1);
    assert_eq!(app.count(&kept("2001:db8:abcd::/48")).await, 1);

    // The database lets nobody change an address, or erase anything but address and salt.
    for edit in [
        "UPDATE audit_log SET client_ip = '198.51.100.1' WHERE client_net = '203.0.113.0/24'",
        "UPDATE audit_log SET client_ip = NULL, ip_salt = NULL, client_net = NULL \
         WHERE client_net = '203.0.113.0/24'",
        "UPDATE audit_log SET client_ip = NULL, ip_salt = NULL, details = '{\"x\":1}' \
         WHERE client_net = '203.0.113.0/24'",
    ] {
        assert!(sqlx::query(edit).execute(&db.pool).await.is_err(), "{edit}");
    }

    let purge = |app: &TestApp| {
        let state = app.state.clone();
        async move {
            let scheduler = trustplane::jobs::Scheduler::new(state).unwrap();
            let summary = scheduler.run_now("retention_purge").await.unwrap();
            assert!(summary.ok, "{:?}", summary.error);
            summary.counts["client_ips_erased"].as_i64().unwrap()
        }
    };
    // Within the 30-day window nothing is erased.
    app.clock.advance(29 * DAY);
    assert_eq!(purge(&app).await, 0);
    let recent = AuditEvent::new("anonymous", "auth.login", "staff:y");
    audit::append_alone(db, app.state.now(), &from("198.51.100.9"), recent)
        .await
        .unwrap();

    // Past it, the two old addresses are cut to their networks; the recent one stays.
    app.clock.advance(2 * DAY);
    assert_eq!(purge(&app).await, 2);
    assert_eq!(app.count(&kept("203.0.113.0/24")).await, 0);
    assert_eq!(app.count(&kept("2001:db8:abcd::/48")).await, 0);
    assert_eq!(app.count(&kept("198.51.100.0/24")).await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE client_net = '203.0.113.0/24'")
            .await,
        1,
        "the network stays"
    );
    assert_eq!(
        app.count("SELECT CAST(SUM(client_ips_erased) AS BIGINT) FROM purge_ledger")
            .await,
        2,
        "the ledger counts erased addresses"
    );
    let result = audit::verify(db).await.unwrap();
    assert!(result.ok(), "{result:?}");
    assert!(run_verify(&app).status.success());

    // The audit page shows the network where the address is gone.
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    let page = app
        .get(&admin, "/audit?action=auth.login")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("203.0.113.0/24"), "{page}");
    assert!(!page.contains("203.0.113.77"));
    assert!(page.contains("198.51.100.9"));

    // With the guard switched off, swapping a kept address for another is still detected.
    let disable = match backend {
        Backend::Sqlite => "DROP TRIGGER audit_log_no_update",
        Backend::Postgres => "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update",
    };
    sqlx::query(disable).execute(&db.pool).await.unwrap();
    sqlx::query(
        "UPDATE audit_log SET client_ip = '198.51.100.10' WHERE client_ip = '198.51.100.9'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let result = audit::verify(db).await.unwrap();
    let (_, problem) = result.first_bad.expect("swap detected");
    assert!(problem.contains("commitment"), "{problem}");
}
both_backends!(
    client_addresses_are_cut_to_their_network_after_the_window_and_the_chain_still_verifies
);

async fn the_actor_filter_matches_parts_of_names_across_actors_and_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let db = &app.state.db;
    let actors = [
        "staff:Ana@example.com",
        "staff:anabel@example.com",
        "staff:bob@example.com",
        "staff:a_b@example.com",
        "system",
    ];
    for i in 0..60 {
        let event = AuditEvent::new(actors[i % actors.len()], "test.event", format!("n:{i}"));
        audit::append_alone(db, app.state.now(), &RequestMeta::default(), event)
            .await
            .unwrap();
    }
    let page = |actor: &str, before: Option<i64>, limit: i64| audit::AuditFilter {
        actor: actor.into(),
        before_seq: before,
        limit,
        ..Default::default()
    };
    let seqs = |rows: &[audit::AuditRow]| rows.iter().map(|r| r.seq).collect::<Vec<_>>();

    // "ana" matches two actors, case-insensitively, newest first.
    let ana = audit::list(db, &page("ANA", None, 100)).await.unwrap();
    assert_eq!(ana.len(), 24);
    assert!(ana.iter().all(|r| r.actor.to_lowercase().contains("ana")));
    assert!(seqs(&ana).windows(2).all(|w| w[0] > w[1]));

    // Paging through a filtered list returns the same rows in the same order.
    let first = audit::list(db, &page("ana", None, 10)).await.unwrap();
    let second = audit::list(db, &page("ana", first.last().map(|r| r.seq), 10))
        .await
        .unwrap();
    assert_eq!(
        [seqs(&first), seqs(&second)].concat(),
        seqs(&ana)[..20].to_vec()
    );

    // LIKE wildcards in the filter are literal; unknown actors match nothing.
    let underscore = audit::list(db, &page("a_b", None, 100)).await.unwrap();
    assert_eq!(underscore.len(), 12);
    assert!(
        underscore
            .iter()
            .all(|r| r.actor == "staff:a_b@example.com")
    );
    assert!(
        audit::list(db, &page("%", None, 100))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        audit::list(db, &page("carol", None, 100))
            .await
            .unwrap()
            .is_empty()
    );

    // Combined with the other filters.
    let mut system_denied = page("system", None, 100);
    system_denied.outcome = "denied".into();
    assert!(audit::list(db, &system_denied).await.unwrap().is_empty());
    let mut system_ok = page("sys", None, 100);
    system_ok.action = "test.".into();
    assert_eq!(audit::list(db, &system_ok).await.unwrap().len(), 12);
}
both_backends!(the_actor_filter_matches_parts_of_names_across_actors_and_pages);

async fn audit_details_read_as_labelled_values_with_links_and_the_raw_json_folded(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (auditor, _) = app.logged_in_as(Role::Auditor).await;
    let event = AuditEvent::new("system", "test.readable", "incident:abc-123")
        .detail("due_at", 1_799_999_999_000_i64)
        .detail("report_bytes", 5 * 1024 * 1024)
        .detail("staff_id", "s-1")
        .detail("refused_while_locked", 30);
    audit::append_alone(
        &app.state.db,
        app.state.now(),
        &RequestMeta::default(),
        event,
    )
    .await
    .unwrap();

    let page = app
        .get(&auditor, "/audit?action=test.readable")
        .await
        .text()
        .await
        .unwrap();

    assert!(
        page.contains(r#"<a href="/incidents/abc-123">incident:abc-123</a>"#),
        "{page}"
    );
    assert!(
        page.contains("<dt>Due at</dt><dd>2027-01-15 07:59 UTC</dd>"),
        "{page}"
    );
    assert!(page.contains("<dt>Report bytes</dt><dd>5.0 MiB</dd>"));
    assert!(page.contains(r#"<dt>Staff ID</dt><dd><a href="/staff/s-1">s-1</a></dd>"#));
    assert!(page.contains("<dt>Refused while locked</dt><dd>30</dd>"));
    assert!(page.contains("<summary>Raw JSON</summary>"));
    assert!(
        page.contains("&quot;report_bytes&quot;:5242880")
            || page.contains("&#34;report_bytes&#34;:5242880"),
        "{page}"
    );
}
both_backends!(audit_details_read_as_labelled_values_with_links_and_the_raw_json_folded);
