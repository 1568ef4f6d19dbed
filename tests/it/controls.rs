//! The control catalogue: each control passes and fails on constructed records (both
//! databases); the hourly job keeps history, audits only state changes and mails the owner of
//! a control that starts failing; the public trust page shows a failing control as "under
//! review" after the next evaluation without leaking a fact; the portal pages; RES-1's refusal
//! at start; the questionnaire answer library and its CSV.

use sqlx::Row;
use trustplane::audit::RequestMeta;
use trustplane::clock::{DAY, HOUR, MINUTE};
use trustplane::controls::model::{ControlState, Outcome};
use trustplane::controls::{self, evaluate};
use trustplane::jobs::Scheduler;
use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;

/// An app whose background scheduler is off, so only the test decides when jobs run.
async fn quiet(backend: Backend) -> TestApp {
    spawn_app_with(backend, |c| c.scheduler_enabled = false).await
}

async fn quiet_with(
    backend: Backend,
    adjust: impl FnOnce(&mut trustplane::config::Config),
) -> TestApp {
    spawn_app_with(backend, |c| {
        c.scheduler_enabled = false;
        adjust(c);
    })
    .await
}

async fn eval(app: &TestApp, id: &str) -> Outcome {
    evaluate::evaluate(&app.state, id).await.unwrap()
}

async fn exec(app: &TestApp, sql: &str) {
    sqlx::query(sql).execute(&app.state.db.pool).await.unwrap();
}

async fn run_job(app: &TestApp, job: &str) -> serde_json::Value {
    let summary = Scheduler::new(app.state.clone())
        .unwrap()
        .run_now(job)
        .await
        .unwrap();
    assert!(summary.ok, "{job}: {:?}", summary.error);
    summary.counts
}

/// Records a finished run of `job` at the clock's now.
async fn job_run(app: &TestApp, job: &str, outcome: &str) {
    let now = app.state.now();
    sqlx::query(
        "INSERT INTO job_runs (id, job, occurrence, run_trigger, owner, lease_until, started_at, \
         finished_at, outcome) VALUES ($1, $2, $3, 'schedule', 'test', $3, $3, $3, $4)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(job)
    .bind(now)
    .bind(outcome)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
}

fn assert_state(outcome: &Outcome, state: ControlState) {
    assert_eq!(outcome.state, state, "{outcome:#?}");
}

async fn key_control_fails_when_a_key_table_value_parses_as_a_key(backend: Backend) {
    let app = quiet(backend).await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (key_id, secret) = app.issue_key(&customer, "faces:detect").await;
    let ok = eval(&app, "KEY-1").await;
    assert_state(&ok, ControlState::Passing);
    assert_eq!(ok.fact_value("Keys scanned"), Some("1"));
    assert_eq!(ok.fact_value("Values that parse as a key"), Some("0"));

    // Someone pasted the key into its name.
    sqlx::query("UPDATE api_keys SET name = $1 WHERE id = $2")
        .bind(format!("prod key {secret}"))
        .bind(&key_id)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let bad = eval(&app, "KEY-1").await;
    assert_state(&bad, ControlState::Failing);
    assert_eq!(bad.offending, vec![format!("key:{key_id}")]);
    assert!(
        !format!("{bad:?}").contains(&secret),
        "the secret is never a fact"
    );
}
both_backends!(key_control_fails_when_a_key_table_value_parses_as_a_key);

async fn backup(app: &TestApp, at: i64, key_id: &str, restore_ok: Option<bool>) {
    sqlx::query(
        "INSERT INTO backups (id, at, file, byte_size, sha256, key_id, source, run_trigger, \
         restore_tested_at, restore_ok) VALUES ($1, $2, 'b.tpbak', 10, $3, $4, 'sqlite', \
         'schedule', $5, $6)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(at)
    .bind("a".repeat(64))
    .bind(key_id)
    .bind(restore_ok.map(|_| at + HOUR))
    .bind(restore_ok.map(i32::from))
    .execute(&app.state.db.pool)
    .await
    .unwrap();
}

async fn backup_control_needs_a_recent_sealed_backup_and_a_passed_restore_test(backend: Backend) {
    let app = quiet(backend).await;
    assert_state(&eval(&app, "BAK-1").await, ControlState::NoData);
    backup(&app, T0 - 2 * HOUR, "aes-1", Some(true)).await;
    let ok = eval(&app, "BAK-1").await;
    assert_state(&ok, ControlState::Passing);
    assert_eq!(ok.fact_value("Key id"), Some("aes-1"));

    // A day later the restore test of a new backup fails.
    app.clock.advance(DAY);
    backup(&app, app.state.now(), "aes-1", Some(false)).await;
    let bad = eval(&app, "BAK-1").await;
    assert_state(&bad, ControlState::Failing);
    assert!(bad.summary.contains("restore test"), "{}", bad.summary);

    // Three days without any backup at all.
    let app = quiet(backend).await;
    backup(&app, T0, "aes-1", Some(true)).await;
    app.clock.advance(3 * DAY);
    let stale = eval(&app, "BAK-1").await;
    assert_state(&stale, ControlState::Failing);
    assert!(
        stale.summary.contains("older than 2 days"),
        "{}",
        stale.summary
    );
}
both_backends!(backup_control_needs_a_recent_sealed_backup_and_a_passed_restore_test);

async fn image(app: &TestApp, kind: &str, created_at: i64) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO images (id, kind, format, width, height, byte_size, blob_key, result, \
         created_at, expires_at) VALUES ($1, $2, 'jpeg', 10, 10, 100, $3, '{}', $4, $5)",
    )
    .bind(&id)
    .bind(kind)
    .bind(format!("blob/{id}"))
    .bind(created_at)
    .bind(created_at + 30 * DAY)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    id
}

async fn retention_controls_fail_on_an_image_past_its_limit_or_a_failed_purge(backend: Backend) {
    let app = quiet(backend).await;
    assert_state(&eval(&app, "RET-1").await, ControlState::NoData);
    image(&app, "production", T0 - 29 * DAY).await;
    image(&app, "demo", T0 - 6 * DAY).await;
    job_run(&app, "retention_purge", "ok").await;
    assert_state(&eval(&app, "RET-1").await, ControlState::Passing);
    assert_state(&eval(&app, "RET-2").await, ControlState::Passing);

    let old_demo = image(&app, "demo", T0 - 8 * DAY).await;
    let demo = eval(&app, "RET-2").await;
    assert_state(&demo, ControlState::Failing);
    assert_eq!(demo.offending, vec![format!("image:{old_demo}")]);
    assert_state(&eval(&app, "RET-1").await, ControlState::Passing);

    let old = image(&app, "production", T0 - 31 * DAY).await;
    let production = eval(&app, "RET-1").await;
    assert_state(&production, ControlState::Failing);
    assert_eq!(production.offending, vec![format!("image:{old}")]);

    // Within limits again, but the last purge failed.
    exec(&app, "DELETE FROM images").await;
    app.clock.advance(MINUTE);
    job_run(&app, "retention_purge", "failed").await;
    let purge = eval(&app, "RET-1").await;
    assert_state(&purge, ControlState::Failing);
    assert!(purge.summary.contains("purge"), "{}", purge.summary);
}
both_backends!(retention_controls_fail_on_an_image_past_its_limit_or_a_failed_purge);

async fn mfa_control_names_enabled_staff_without_a_second_factor(backend: Backend) {
    let app = quiet(backend).await;
    assert_state(&eval(&app, "MFA-1").await, ControlState::NoData);
    app.create_staff("a@example.com", &[Role::Admin], true)
        .await;
    let disabled = app
        .create_staff("gone@example.com", &[Role::Security], false)
        .await;
    exec(
        &app,
        &format!("UPDATE staff SET disabled = 1 WHERE id = '{}'", disabled.id),
    )
    .await;
    let ok = eval(&app, "MFA-1").await;
    assert_state(&ok, ControlState::Passing);
    assert_eq!(ok.fact_value("Enabled staff accounts"), Some("1"));

    let without = app
        .create_staff("b@example.com", &[Role::Security], false)
        .await;
    let bad = eval(&app, "MFA-1").await;
    assert_state(&bad, ControlState::Failing);
    assert_eq!(bad.offending, vec![format!("staff:{}", without.id)]);

    // Multi-factor authentication asserted by the identity provider at the last single
    // sign-on counts as the second factor; a password-only assertion does not.
    exec(
        &app,
        &format!(
            "UPDATE staff SET last_mfa_method = 'idp_amr' WHERE id = '{}'",
            without.id
        ),
    )
    .await;
    let sso = eval(&app, "MFA-1").await;
    assert_state(&sso, ControlState::Passing);
    assert_eq!(
        sso.fact_value("Of those, MFA asserted by the identity provider only"),
        Some("1")
    );
    exec(
        &app,
        &format!(
            "UPDATE staff SET last_mfa_method = 'local_totp' WHERE id = '{}'",
            without.id
        ),
    )
    .await;
    assert_state(&eval(&app, "MFA-1").await, ControlState::Failing);
}
both_backends!(mfa_control_names_enabled_staff_without_a_second_factor);

#[tokio::test]
async fn rbac_control_fails_on_a_route_no_role_may_use_or_a_missing_policy() {
    use axum::http::Method;
    use trustplane::portal::routes::Access;
    let policy_dir = format!("{}/policies", env!("CARGO_MANIFEST_DIR"));
    let authz = trustplane::authz::Authz::load(&policy_dir).await.unwrap();
    let table = trustplane::portal::routes::table();
    let ok = evaluate::rbac(&table, &authz);
    assert_state(&ok, ControlState::Passing);
    assert_eq!(
        ok.fact_value("Routes"),
        Some(table.len().to_string().as_str())
    );

    let mut broken = table.clone();
    broken.push((Method::GET, "/secret", Access::Rbac("nothing", "delete")));
    broken.push((Method::GET, "/internal/debug", Access::Public));
    let bad = evaluate::rbac(&broken, &authz);
    assert_state(&bad, ControlState::Failing);
    assert_eq!(bad.offending.len(), 2, "{:?}", bad.offending);
    assert!(bad.offending[0].contains("/secret"));
    assert!(bad.offending[1].contains("/internal/debug"));

    let model = std::fs::read_to_string(format!("{policy_dir}/model.conf")).unwrap();
    let empty = trustplane::authz::Authz::from_text(&model, "")
        .await
        .unwrap();
    let unloaded = evaluate::rbac(&table, &empty);
    assert_state(&unloaded, ControlState::Failing);
    assert_eq!(unloaded.fact_value("Policy loaded"), Some("no"));
}

async fn review_control_needs_an_on_time_campaign_this_or_last_quarter(backend: Backend) {
    use trustplane::reviews::model::Quarter;
    let app = quiet(backend).await;
    app.create_staff("admin@example.com", &[Role::Admin], true)
        .await;
    app.create_staff("reviewer@example.com", &[Role::Reviewer], true)
        .await;
    let none = eval(&app, "REV-1").await;
    assert_state(&none, ControlState::Failing);
    assert_eq!(none.fact_value("Latest campaign"), Some("none"));

    let settings = trustplane::reviews::Settings::from_config(&app.state.config);
    let quarter = Quarter::containing(app.state.now(), settings.zone).unwrap();
    let mut tx = app.state.db.begin().await.unwrap();
    let campaign = trustplane::reviews::open(
        &mut tx,
        &settings,
        &app.state.sla_calendar,
        quarter,
        "test",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let ok = eval(&app, "REV-1").await;
    assert_state(&ok, ControlState::Passing);
    assert_eq!(ok.fact_value("Latest campaign"), Some("2027Q1"));

    // Nobody decides; the campaign runs past its due date.
    app.clock
        .advance((app.state.config.review_due_days + 1) * DAY);
    let late = eval(&app, "REV-1").await;
    assert_state(&late, ControlState::Failing);
    assert_eq!(late.offending, vec![format!("review:{}", campaign.id)]);
}
both_backends!(review_control_needs_an_on_time_campaign_this_or_last_quarter);

/// A vendor made active directly in the register (as if its records had lapsed).
async fn active_vendor(app: &TestApp, name: &str, categories: &str, locations: &str) -> String {
    let state = &app.state;
    let settings = trustplane::vendors::VendorSettings::new(
        &state.config,
        &state.sla_calendar,
        &state.keyring,
    );
    let mut tx = state.db.begin().await.unwrap();
    let vendor = trustplane::vendors::create(
        &mut tx,
        &settings,
        &trustplane::vendors::VendorInput {
            name: name.into(),
            legal_entity: format!("{name} GmbH"),
            purpose: "Hosting".into(),
            data_categories: categories.into(),
            data_subjects: "customer_end_users".into(),
            locations: locations.into(),
            owner_email: "owner@example.com".into(),
            ..Default::default()
        },
        "test",
        &RequestMeta::default(),
        state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    exec(
        app,
        &format!(
            "UPDATE vendors SET state = 'active' WHERE id = '{}'",
            vendor.id
        ),
    )
    .await;
    vendor.id
}

async fn vendor_controls_check_assessments_dpas_and_transfers_of_active_vendors(backend: Backend) {
    let app = quiet(backend).await;
    assert_state(&eval(&app, "VND-1").await, ControlState::NotApplicable);
    assert_state(&eval(&app, "VND-2").await, ControlState::NotApplicable);
    let id = active_vendor(&app, "EuroHost", "biometric", "DE").await;
    let vnd1 = eval(&app, "VND-1").await;
    assert_state(&vnd1, ControlState::Failing);
    assert_eq!(vnd1.offending, vec![format!("vendor:{id}")]);
    assert_state(&eval(&app, "VND-2").await, ControlState::Failing);

    let now = app.state.now();
    sqlx::query(
        "INSERT INTO vendor_assessments (id, vendor_id, sequence, reviewer, assessed_at, result, \
         score, answers, risk_tier, next_due_at, created_at) \
         VALUES ($1, $2, 1, 'c@example.com', $3, 'pass', 90.0, '{}', 'high', $4, $3)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(&id)
    .bind(now)
    .bind(now + 365 * DAY)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    assert_state(&eval(&app, "VND-1").await, ControlState::Passing);
    assert_state(&eval(&app, "VND-2").await, ControlState::Failing);
    sqlx::query(
        "INSERT INTO vendor_dpas (id, vendor_id, sequence, version, signed_at, expires_at, \
         blob_key, sha256, size_bytes, file_name, clock_name, uploaded_by, created_at) \
         VALUES ($1, $2, 1, 'v1', $3, $4, 'k', $5, 10, 'dpa.pdf', 'dpa_expiry_1', 'c', $3)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(&id)
    .bind(now)
    .bind(now + 365 * DAY)
    .bind("b".repeat(64))
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    assert_state(&eval(&app, "VND-2").await, ControlState::Passing);

    // The DPA expires a year later, and so does the assessment.
    app.clock.advance(366 * DAY);
    assert_state(&eval(&app, "VND-1").await, ControlState::Failing);
    assert_state(&eval(&app, "VND-2").await, ControlState::Failing);
}
both_backends!(vendor_controls_check_assessments_dpas_and_transfers_of_active_vendors);

async fn monitoring_control_needs_the_detectors_to_have_run_in_the_last_ten_minutes(
    backend: Backend,
) {
    // The scheduler is on, but the detectors' own schedule never comes round in the test.
    let app = spawn_app_with(backend, |c| {
        c.job_schedules
            .insert("alerts_detect".into(), "0 0 0 1 1 *".into());
    })
    .await;
    assert_state(&eval(&app, "MON-1").await, ControlState::NoData);
    job_run(&app, "alerts_detect", "ok").await;
    assert_state(&eval(&app, "MON-1").await, ControlState::Passing);
    app.clock.advance(10 * MINUTE);
    assert_state(&eval(&app, "MON-1").await, ControlState::Passing);
    app.clock.advance(1);
    assert_state(&eval(&app, "MON-1").await, ControlState::Failing);

    let off = quiet(backend).await;
    job_run(&off, "alerts_detect", "ok").await;
    assert_state(&eval(&off, "MON-1").await, ControlState::Failing);
}
both_backends!(monitoring_control_needs_the_detectors_to_have_run_in_the_last_ten_minutes);

async fn open_incident(app: &TestApp, detected_at: i64) -> trustplane::incidents::store::Incident {
    use trustplane::incidents::{self, NewIncident, model::Severity, model::Source};
    let mut tx = app.state.db.begin().await.unwrap();
    let incident = incidents::open(
        &mut tx,
        &incidents::pages::settings(&app.state),
        &NewIncident {
            title: "Unusual key use".into(),
            description: "Seen in the API logs".into(),
            severity: Severity::Sev2,
            source: Source::Manual,
            detected_at,
            affected_customers: String::new(),
            affected_systems: "api".into(),
            tags: String::new(),
            personal_data_aware_at: None,
        },
        "staff:test@example.com",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    incident
}

async fn incident_control_fails_at_exactly_the_triage_deadline(backend: Backend) {
    use trustplane::incidents::{self, model::Severity};
    let app = quiet(backend).await;
    assert_state(&eval(&app, "INC-1").await, ControlState::NotApplicable);
    app.create_staff("ana@example.com", &[Role::Security], true)
        .await;
    let triaged = open_incident(&app, T0).await;
    app.clock.advance(30 * MINUTE);
    let mut tx = app.state.db.begin().await.unwrap();
    incidents::triage(
        &mut tx,
        &triaged.id,
        triaged.version,
        Severity::Sev2,
        "ana@example.com",
        "staff:test@example.com",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let late = open_incident(&app, app.state.now()).await;
    app.clock.advance(HOUR - 1);
    let ok = eval(&app, "INC-1").await;
    assert_state(&ok, ControlState::Passing);
    assert_eq!(ok.fact_value("Triaged in time"), Some("1"));
    app.clock.advance(1);
    let bad = eval(&app, "INC-1").await;
    assert_state(&bad, ControlState::Failing);
    assert_eq!(bad.fact_value("Open, past the triage deadline"), Some("1"));
    assert_eq!(bad.offending.len(), 1, "{:?}", bad.offending);
    assert!(bad.offending[0].contains(&late.id), "{:?}", bad.offending);
}
both_backends!(incident_control_fails_at_exactly_the_triage_deadline);

async fn finding_control_fails_when_a_critical_finding_passes_72_hours(backend: Backend) {
    let app = quiet(backend).await;
    assert_state(&eval(&app, "PEN-1").await, ControlState::NotApplicable);
    let csv = "title,severity,asset,confirmed_at\n\
               SQL injection,critical,api.example.com,2027-01-15T08:00:00Z\n\
               Missing header,low,portal,2027-01-15T08:00:00Z\n";
    let mut tx = app.state.db.begin().await.unwrap();
    let saved = trustplane::findings::import_csv(
        &mut tx,
        &trustplane::findings::pages::settings(&app.state),
        csv,
        None,
        "staff:raiser@example.com",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    app.clock.advance(72 * HOUR - 1);
    let ok = eval(&app, "PEN-1").await;
    assert_state(&ok, ControlState::Passing);
    assert_eq!(ok.fact_value("Still within their clock"), Some("1"));
    app.clock.advance(1);
    let bad = eval(&app, "PEN-1").await;
    assert_state(&bad, ControlState::Failing);
    assert_eq!(bad.offending, vec![format!("finding:{}", saved[0].id)]);
}
both_backends!(finding_control_fails_when_a_critical_finding_passes_72_hours);

async fn pentest_control_goes_red_twelve_months_after_the_last_test(backend: Backend) {
    let app = quiet(backend).await;
    let none = eval(&app, "PEN-2").await;
    assert_state(&none, ControlState::Failing);
    sqlx::query(
        "INSERT INTO pentest_engagements (id, firm, scope, started_on, ended_on, created_at, \
         created_by) VALUES ('e1', 'Independent Testers Ltd', 'API', '2026-12-01', \
         '2026-12-10', $1, 'test')",
    )
    .bind(T0)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    let ok = eval(&app, "PEN-2").await;
    assert_state(&ok, ControlState::Passing);
    assert_eq!(ok.public_note.as_deref(), Some("Most recent test: Q4 2026"));
    app.clock.set(
        chrono::DateTime::parse_from_rfc3339("2027-12-10T00:00:00Z")
            .unwrap()
            .timestamp_millis(),
    );
    let bad = eval(&app, "PEN-2").await;
    assert_state(&bad, ControlState::Failing);
    assert_eq!(bad.offending, vec!["engagement:e1".to_owned()]);
}
both_backends!(pentest_control_goes_red_twelve_months_after_the_last_test);

async fn clock(app: &TestApp, kind: &str, name: &str, state: &str, due_at: i64) {
    sqlx::query(
        "INSERT INTO sla_clocks (id, subject_kind, subject_id, name, target, state, started_at, \
         due_at, duration_ms, stopped_at, link_path, created_at) \
         VALUES ($1, $2, $3, $4, 'x', $5, $6, $7, 1, $8, $9, $6)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(kind)
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(name)
    .bind(state)
    .bind(due_at - HOUR)
    .bind(due_at)
    .bind((state == "met").then_some(due_at - MINUTE))
    .bind("/disclosures/d1")
    .execute(&app.state.db.pool)
    .await
    .unwrap();
}

async fn disclosure_controls_check_the_clocks_and_the_public_channel(backend: Backend) {
    let app = quiet(backend).await;
    assert_state(&eval(&app, "DSC-1").await, ControlState::NotApplicable);
    clock(&app, "disclosure", "acknowledge", "met", T0 - DAY).await;
    let ok = eval(&app, "DSC-1").await;
    assert_state(&ok, ControlState::Passing);
    assert_eq!(ok.fact_value("Clocks met"), Some("1"));
    clock(&app, "disclosure", "triage_update", "breached", T0 - HOUR).await;
    let bad = eval(&app, "DSC-1").await;
    assert_state(&bad, ControlState::Failing);
    assert_eq!(
        bad.offending,
        vec!["triage_update:/disclosures/d1".to_owned()]
    );
    // 91 days later the breach has left the period.
    app.clock.advance(91 * DAY);
    assert_state(&eval(&app, "DSC-1").await, ControlState::NotApplicable);

    let channel = eval(&app, "DSC-2").await;
    assert_state(&channel, ControlState::Passing);
    assert_eq!(channel.fact_value("Contacts listed"), Some("1"));
    let far = quiet_with(backend, |c| c.security_txt_expires_days = 400).await;
    let bad = eval(&far, "DSC-2").await;
    assert_state(&bad, ControlState::Failing);
    assert!(bad.summary.contains("Expires"), "{}", bad.summary);
}
both_backends!(disclosure_controls_check_the_clocks_and_the_public_channel);

async fn minimisation_control_fails_on_a_long_window_or_addresses_kept_past_it(backend: Backend) {
    let app = quiet(backend).await;
    // A failed login records the client's address in the audit log.
    let client = app.client();
    app.login_password(&client, "nobody@example.com", "wrong password here")
        .await;
    assert!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE client_ip IS NOT NULL")
            .await
            > 0
    );
    assert_state(&eval(&app, "DMN-1").await, ControlState::Passing);
    app.clock.advance(32 * DAY);
    let stale = eval(&app, "DMN-1").await;
    assert_state(&stale, ControlState::Failing);
    assert_ne!(stale.fact_value("Rows past the window"), Some("0"));
    let removed = trustplane::audit::minimise_client_ips(&app.state.db, app.state.now() - 30 * DAY)
        .await
        .unwrap();
    assert!(removed > 0);
    assert_state(&eval(&app, "DMN-1").await, ControlState::Passing);

    let long = quiet_with(backend, |c| c.audit_ip_retention_days = 90).await;
    let bad = eval(&long, "DMN-1").await;
    assert_state(&bad, ControlState::Failing);
    assert!(bad.summary.contains("90"), "{}", bad.summary);
}
both_backends!(minimisation_control_fails_on_a_long_window_or_addresses_kept_past_it);

async fn audit_control_fails_when_a_row_is_edited(backend: Backend) {
    let app = quiet(backend).await;
    app.create_staff("a@example.com", &[Role::Admin], true)
        .await;
    let client = app.client();
    app.login_password(&client, "a@example.com", "wrong password here")
        .await;
    let ok = eval(&app, "AUD-1").await;
    assert_state(&ok, ControlState::Passing);
    exec(
        &app,
        match backend {
            Backend::Sqlite => "DROP TRIGGER audit_log_no_update",
            Backend::Postgres => "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update",
        },
    )
    .await;
    exec(
        &app,
        "UPDATE audit_log SET outcome = 'tampered' WHERE seq = 1",
    )
    .await;
    let bad = eval(&app, "AUD-1").await;
    assert_state(&bad, ControlState::Failing);
    assert_eq!(bad.offending, vec!["audit:1".to_owned()]);
}
both_backends!(audit_control_fails_when_a_row_is_edited);

async fn config_controls_follow_tls_isolation_and_region_settings(backend: Backend) {
    // Plain HTTP on loopback, nothing declared: TLS-1 fails, RES-1 has no data.
    let plain = quiet_with(backend, |c| c.detect_isolation = "thread".into()).await;
    assert_state(&eval(&plain, "TLS-1").await, ControlState::Failing);
    assert_state(&eval(&plain, "ISO-1").await, ControlState::Failing);
    assert_state(&eval(&plain, "RES-1").await, ControlState::NoData);

    let declared = quiet_with(backend, |c| {
        c.behind_proxy = true;
        c.public_url = "https://trust.example.com".into();
        c.data_region = "eu-central-1".into();
    })
    .await;
    assert_state(&eval(&declared, "TLS-1").await, ControlState::Passing);
    let res = eval(&declared, "RES-1").await;
    assert_state(&res, ControlState::Passing);
    assert_eq!(
        res.fact_value("Blob store region"),
        Some("eu-central-1 (EU)")
    );
    // Process workers report their confinement once started.
    for _ in 0..200 {
        if declared.state.analyzer.isolation_report()
            != trustplane::biometric::IsolationReport::Pending
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let iso = eval(&declared, "ISO-1").await;
    assert_eq!(
        iso.fact_value("Image analysis"),
        Some("separate worker processes")
    );

    // A personal-data vendor outside the EU without a transfer mechanism fails RES-1.
    let abroad = active_vendor(&declared, "US Faces", "biometric", "US").await;
    let res = eval(&declared, "RES-1").await;
    assert_state(&res, ControlState::Failing);
    assert_eq!(
        res.fact_value("Vendors abroad without a transfer mechanism"),
        Some("1")
    );
    assert!(!abroad.is_empty());

    let overridden = quiet_with(backend, |c| {
        c.data_region = "us-east-1".into();
        c.allow_non_eu_storage = true;
    })
    .await;
    let res = eval(&overridden, "RES-1").await;
    assert_state(&res, ControlState::Failing);
    assert!(
        res.summary
            .to_lowercase()
            .contains("allow_non_eu_storage is on"),
        "{}",
        res.summary
    );
    assert!(res.summary.contains("us-east-1"), "{}", res.summary);
}
both_backends!(config_controls_follow_tls_isolation_and_region_settings);

#[tokio::test]
async fn an_s3_blob_store_outside_the_eu_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = fresh_database(Backend::Sqlite, dir.path()).await;
    let mut config = test_config(dir.path(), &url);
    config.blob_store_url = "s3://images-bucket/prod".into();
    config.data_region = "us-east-1".into();
    config.detect_isolation = "thread".into();
    let keyring = trustplane::crypto::Keyring::generate();
    let clock = trustplane::clock::ManualClock::new(T0);
    let err = trustplane::server::build_state(config.clone(), clock.clone(), keyring)
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("blob_store_region"), "{message}");
    assert!(message.contains("us-east-1"), "{message}");
    assert!(message.contains("outside the European Union"), "{message}");

    config.data_region = String::new();
    let err = trustplane::server::build_state(
        config.clone(),
        clock.clone(),
        trustplane::crypto::Keyring::generate(),
    )
    .await
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("must declare its region"),
        "{err:#}"
    );
}

async fn the_trust_page_shows_a_failing_control_as_under_review_after_the_next_evaluation(
    backend: Backend,
) {
    let app = quiet(backend).await;
    let admin = app
        .create_staff("boss@example.com", &[Role::Admin], true)
        .await;
    // A minute past the hour, so the manual run does not take the 08:00 occurrence.
    app.clock.advance(MINUTE);
    let counts = run_job(&app, "controls_evaluate").await;
    assert_eq!(counts["evaluated"], 20);
    let audited_changes = app
        .count("SELECT COUNT(*) FROM audit_log WHERE action = 'control.state'")
        .await;
    assert_eq!(audited_changes, 20, "the first evaluation sets every state");

    let public = reqwest::Client::new();
    let response = public.get(app.url("/trust")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "public, max-age=60");
    let page = response.text().await.unwrap();
    assert!(
        page.contains("data-control=\"MFA-1\" data-status=\"passing\""),
        "{page}"
    );
    assert!(page.contains("passing since 2027-01-15"), "{page}");
    assert!(page.contains("/trust/evidence-key"));
    assert!(page.contains("/trust/subprocessors"));
    assert!(page.contains("/.well-known/security.txt"));
    assert!(
        page.contains("Production access is restricted to authorised personnel with MFA enforced.")
    );

    // A new account without a second factor: nothing changes until the next evaluation.
    let careless = app
        .create_staff("careless-person@example.com", &[Role::Security], false)
        .await;
    let page = public
        .get(app.url("/trust"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("data-control=\"MFA-1\" data-status=\"passing\""));
    let scheduler = Scheduler::new(app.state.clone()).unwrap();
    app.clock.advance(HOUR);
    let runs = scheduler.tick().await.unwrap();
    assert!(
        runs.iter().any(|r| r.job == "controls_evaluate" && r.ok),
        "{runs:?}"
    );

    let page = public
        .get(app.url("/trust"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("data-control=\"MFA-1\" data-status=\"not_passing\""),
        "{page}"
    );
    let row = page
        .split("data-control=\"MFA-1\"")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(row.contains("under review"), "{row}");
    for secret in [
        careless.id.as_str(),
        "careless-person",
        "second factor",
        "Enabled staff",
        "staff:",
        "boss@example.com",
    ] {
        assert!(
            !page.contains(secret),
            "{secret} leaked into the trust page"
        );
    }
    let json: serde_json::Value = public
        .get(app.url("/trust.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mfa = json["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "MFA-1")
        .unwrap();
    assert_eq!(mfa["status"], "not_passing");
    assert_eq!(mfa["label"], "under review");
    let text = json.to_string();
    assert!(!text.contains(&careless.id) && !text.contains("careless-person"));

    // The owner (the admin role) heard about it once; the change is audited once.
    let mails: Vec<(String, String)> =
        sqlx::query("SELECT to_addr, subject FROM outbox WHERE related = 'control:MFA-1'")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(
        mails,
        vec![(
            admin.email.clone(),
            "Control MFA-1 is failing: MFA for production access".to_owned()
        )]
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'control.state' \
             AND target = 'control:MFA-1'"
        )
        .await,
        2
    );
    // Another hour, same state: history grows, nothing more is audited or mailed.
    app.clock.advance(HOUR);
    scheduler.tick().await.unwrap();
    assert_eq!(
        app.count("SELECT COUNT(*) FROM control_evaluations WHERE control_id = 'MFA-1'")
            .await,
        3
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE related = 'control:MFA-1'")
            .await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'control.state' \
             AND target = 'control:MFA-1'"
        )
        .await,
        2
    );

    // The daily chain heads: the last audit row of 2027-01-15 is published for that day.
    let head_of_day: String =
        sqlx::query_scalar("SELECT hash FROM audit_log WHERE at < $1 ORDER BY seq DESC LIMIT 1")
            .bind(T0 - T0.rem_euclid(DAY) + DAY)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    app.clock.set(T0 - T0.rem_euclid(DAY) + DAY + HOUR);
    let json: serde_json::Value = public
        .get(app.url("/trust.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let heads = json["audit_chain_daily_heads"].as_array().unwrap();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert_eq!(heads[0]["date"], "2027-01-15");
    assert_eq!(heads[0]["hash"], head_of_day.as_str());

    // The evidence export reads the history of a period.
    let history = controls::store::history_between(&app.state.db, T0, T0 + 3 * HOUR)
        .await
        .unwrap();
    assert_eq!(history.len(), 60);
    assert!(
        history
            .windows(2)
            .all(|w| w[0].evaluated_at <= w[1].evaluated_at)
    );
    assert!(
        controls::store::history_between(&app.state.db, T0 + 3 * HOUR, T0 + 4 * HOUR)
            .await
            .unwrap()
            .is_empty()
    );
}
both_backends!(the_trust_page_shows_a_failing_control_as_under_review_after_the_next_evaluation);

async fn the_trust_page_is_rate_limited_per_network_and_the_wording_is_configurable(
    backend: Backend,
) {
    let app = quiet_with(backend, |c| {
        c.trust_requests_per_minute = 2;
        c.trust_failing_wording = "being looked at".into();
    })
    .await;
    controls::evaluate_all(&app.state, "test", &RequestMeta::default())
        .await
        .unwrap();
    let public = reqwest::Client::new();
    let page = public
        .get(app.url("/trust"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // TLS-1 fails on a plain loopback listener.
    assert!(page.contains("being looked at"), "{page}");
    assert_eq!(
        public
            .get(app.url("/trust.json"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let limited = public.get(app.url("/trust")).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
}
both_backends!(the_trust_page_is_rate_limited_per_network_and_the_wording_is_configurable);

async fn the_controls_pages_show_state_mappings_and_records_and_evaluate_now(backend: Backend) {
    let app = quiet(backend).await;
    let (compliance, _) = app.logged_in_as(Role::Compliance).await;
    let page = app
        .get(&compliance, "/controls")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("No control has been evaluated yet"), "{page}");
    let response = app
        .submit(&compliance, "/controls", "/controls/evaluate", &[])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/controls");
    let without = app
        .create_staff("nomfa@example.com", &[Role::Reviewer], false)
        .await;
    app.clock.advance(MINUTE);
    app.submit(&compliance, "/controls", "/controls/evaluate", &[])
        .await;

    let page = app
        .get(&compliance, "/controls")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("data-control=\"MFA-1\" data-state=\"failing\""),
        "{page}"
    );
    assert!(page.contains("CC6.1"));
    assert!(page.contains("A.8.5"));
    assert!(page.contains("<svg class=\"sparkline\""));
    assert!(page.contains("Evaluate every control now"));

    let detail = app
        .get(&compliance, "/controls/MFA-1")
        .await
        .text()
        .await
        .unwrap();
    assert!(detail.contains("<dt>Without</dt><dd>1</dd>"), "{detail}");
    assert!(
        detail.contains(&format!("/staff/{}", without.id)),
        "{detail}"
    );
    assert!(detail.contains("under review"));
    assert!(detail.contains("<svg class=\"chart\""), "{detail}");
    assert!(
        !detail.contains("{\"facts\""),
        "facts are labelled, not raw JSON"
    );
    assert_eq!(app.get(&compliance, "/controls/NOPE-1").await.status(), 404);
    let actions = app.audit_actions().await;
    assert!(actions.iter().any(|(a, _)| a == "controls.evaluate"));

    let (auditor, _) = app.logged_in_as(Role::Auditor).await;
    let page = app.get(&auditor, "/controls").await.text().await.unwrap();
    assert!(!page.contains("Evaluate every control now"));
    let denied = app
        .submit(&auditor, "/controls", "/controls/evaluate", &[])
        .await;
    assert_eq!(denied.status(), 403);
    let (reviewer, _) = app.logged_in_as(Role::Reviewer).await;
    assert_eq!(app.get(&reviewer, "/controls").await.status(), 403);
}
both_backends!(the_controls_pages_show_state_mappings_and_records_and_evaluate_now);

async fn answers_are_kept_audited_exported_and_marked_stale_when_a_cited_control_fails(
    backend: Backend,
) {
    let app = quiet(backend).await;
    let (compliance, _) = app.logged_in_as(Role::Compliance).await;
    let empty = app.get(&compliance, "/answers").await.text().await.unwrap();
    assert!(empty.contains("The library is empty"), "{empty}");
    let bad = app
        .submit(
            &compliance,
            "/answers/new",
            "/answers",
            &[
                ("question", "Do you use MFA?"),
                ("answer", "Yes."),
                ("controls", "MFA-9"),
            ],
        )
        .await;
    assert_eq!(bad.status(), 400);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("There is no control MFA-9")
    );
    let created = app
        .submit(
            &compliance,
            "/answers/new",
            "/answers",
            &[
                ("question", "=cmd|' /C calc'!A0 Is MFA enforced for staff?"),
                ("answer", "Yes, \"always\", with TOTP."),
                ("controls", "mfa-1, AUD-1"),
                ("evidence", "Staff list with MFA state"),
            ],
        )
        .await;
    assert_eq!(created.status(), 303);
    app.submit(
        &compliance,
        "/answers/new",
        "/answers",
        &[
            ("question", "Are backups encrypted?"),
            ("answer", "AES-256-GCM."),
            ("controls", "BAK-1"),
        ],
    )
    .await;

    // The login above made an account with MFA; then one without: MFA-1 fails.
    app.create_staff("nomfa@example.com", &[Role::Security], false)
        .await;
    controls::evaluate_all(&app.state, "test", &RequestMeta::default())
        .await
        .unwrap();
    let list = app.get(&compliance, "/answers").await.text().await.unwrap();
    assert!(
        list.contains("data-answer=\"Q-1\" data-stale=\"yes\""),
        "{list}"
    );
    assert!(
        list.contains("data-answer=\"Q-2\" data-stale=\"no\""),
        "{list}"
    );
    let search = app
        .get(&compliance, "/answers?q=backups")
        .await
        .text()
        .await
        .unwrap();
    assert!(search.contains("Q-2") && !search.contains("Q-1"));

    let csv = app.get(&compliance, "/answers.csv").await;
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("number,question,answer,controls,control_states,evidence,stale"));
    assert!(csv.contains("'=cmd|' /C calc'!A0"), "{csv}");
    assert!(csv.contains("\"Yes, \"\"always\"\", with TOTP.\""), "{csv}");
    assert!(csv.contains("STALE: MFA-1 failing"), "{csv}");
    assert!(
        csv.contains("Q-2,Are backups encrypted?,AES-256-GCM.,BAK-1,BAK-1: no data,,no,"),
        "{csv}"
    );

    // Edit with the version seen; a stale version is refused.
    let id: String = sqlx::query_scalar("SELECT id FROM questionnaire_answers WHERE number = 1")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    let edit = format!("/answers/{id}/edit");
    let saved = app
        .submit(
            &compliance,
            &edit,
            &format!("/answers/{id}"),
            &[
                ("version", "1"),
                ("question", "Is MFA enforced for staff?"),
                ("answer", "Yes."),
                ("controls", "AUD-1"),
            ],
        )
        .await;
    assert_eq!(saved.status(), 303);
    let conflict = app
        .submit(
            &compliance,
            &edit,
            &format!("/answers/{id}"),
            &[
                ("version", "1"),
                ("question", "Q"),
                ("answer", "A"),
                ("controls", "AUD-1"),
            ],
        )
        .await;
    assert_eq!(conflict.status(), 409);
    let list = app.get(&compliance, "/answers").await.text().await.unwrap();
    assert!(
        list.contains("data-answer=\"Q-1\" data-stale=\"no\""),
        "{list}"
    );
    let deleted = app
        .submit(
            &compliance,
            &edit,
            &format!("/answers/{id}/delete"),
            &[("version", "2")],
        )
        .await;
    assert_eq!(deleted.status(), 303);
    assert_eq!(app.get(&compliance, &edit).await.status(), 404);

    let actions: Vec<String> = app
        .audit_actions()
        .await
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    for action in [
        "answer.create",
        "answer.update",
        "answer.delete",
        "answers.export",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action} audited");
    }
    let (auditor, _) = app.logged_in_as(Role::Auditor).await;
    assert_eq!(app.get(&auditor, "/answers.csv").await.status(), 200);
    assert_eq!(app.get(&auditor, "/answers/new").await.status(), 403);
}
both_backends!(answers_are_kept_audited_exported_and_marked_stale_when_a_cited_control_fails);

fn trustplane_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trustplane"));
    cmd.current_dir(app.dir.path());
    for (key, _) in std::env::vars() {
        if key.starts_with("TRUSTPLANE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("TRUSTPLANE_DATABASE_URL", &app.database_url)
        .env("TRUSTPLANE_DETECT_ISOLATION", "thread")
        .env("USER", "ops")
        .args(args)
        .output()
        .unwrap()
}

async fn the_cli_evaluates_every_control_and_lists_them_as_json(backend: Backend) {
    let app = quiet(backend).await;
    let output = trustplane_cli(&app, &["controls", "evaluate"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    // TLS-1 fails on a plain listener: the exit code says so.
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("evaluated 20:"), "{stdout}");
    let actors: Vec<String> =
        sqlx::query_scalar("SELECT actor FROM audit_log WHERE action = 'controls.evaluate'")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(actors.len(), 1);
    assert!(actors[0].starts_with("cli:ops@"), "{actors:?}");
    let output = trustplane_cli(&app, &["controls", "list", "--json"]);
    assert!(output.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 20);
    let tls = rows.iter().find(|r| r["id"] == "TLS-1").unwrap();
    assert_eq!(tls["state"], "failing");
    assert_eq!(tls["soc2"][1], "CC6.7");
}
both_backends!(the_cli_evaluates_every_control_and_lists_them_as_json);
