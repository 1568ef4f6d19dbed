//! Incidents end to end: an incident detected two hours ago is breached in the portal and in
//! `incidents show --json`; the on-call person and the escalation target get one email each
//! through a real SMTP server; triage stops the escalations; disallowed transitions and the
//! GDPR clock; findings' remediation clocks and the all-or-nothing CSV import.

use trustplane::audit::RequestMeta;
use trustplane::clock::{HOUR, MINUTE, SECOND};
use trustplane::incidents::model::{Severity, Source, Status};
use trustplane::incidents::{self, NewIncident};
use trustplane::jobs::Scheduler;
use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;
use crate::mail::{SmtpServer, free_port};

const ACTOR: &str = "staff:lead@example.com";

async fn set_rotation(app: &TestApp) {
    let mut tx = app.state.db.begin().await.unwrap();
    trustplane::oncall::set_rotation(
        &mut tx,
        &trustplane::oncall::RotationInput {
            member_emails: &["ana@example.com".to_owned()],
            handoff: "Mon 09:00",
            timezone: "Europe/Berlin",
            escalation_email: Some("lead@example.com"),
        },
        ACTOR,
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

fn new_incident(detected_at: i64) -> NewIncident {
    NewIncident {
        title: "Unusual key use from a new network".into(),
        description: "Seen in the API logs".into(),
        severity: Severity::Sev2,
        source: Source::Manual,
        detected_at,
        affected_customers: String::new(),
        affected_systems: "api".into(),
        tags: String::new(),
        personal_data_aware_at: None,
    }
}

async fn open(app: &TestApp, new: &NewIncident) -> incidents::store::Incident {
    let mut tx = app.state.db.begin().await.unwrap();
    let incident = incidents::open(
        &mut tx,
        &incidents::pages::settings(&app.state),
        new,
        ACTOR,
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    incident
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

fn messages_to(server: &SmtpServer, address: &str) -> usize {
    server
        .received()
        .split("MESSAGE FOLLOWS")
        .filter(|m| m.contains(&format!("To: {address}")) || m.contains(&format!("<{address}>")))
        .count()
}

async fn a_late_reported_incident_is_breached_escalated_once_and_quieted_by_triage(
    backend: Backend,
) {
    let port = free_port();
    let server = SmtpServer::start(port);
    let app = spawn_app_with(backend, |c| c.smtp_url = format!("smtp://127.0.0.1:{port}")).await;
    app.create_staff("ana@example.com", &[Role::Security], true)
        .await;
    app.create_staff("lead@example.com", &[Role::Admin], true)
        .await;
    set_rotation(&app).await;
    let incident = open(&app, &new_incident(T0 - 2 * HOUR)).await;
    assert!(
        incident.oncall_staff_id.is_some(),
        "on call at detection recorded"
    );

    // The portal shows the triage clock breached.
    let (client, _) = app.logged_in_as(Role::Security).await;
    let page = app
        .get(&client, &format!("/incidents/{}", incident.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"data-clock="triage" data-state="breached""#),
        "{page}"
    );
    let list = app
        .get(&client, "/incidents?breached=1")
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains(&format!("INC-{}", incident.number)));

    // One escalation email each to the on-call person and the escalation target.
    run_job(&app, "sla_watch").await;
    run_job(&app, "outbox_deliver").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while (messages_to(&server, "ana@example.com") < 1
        || messages_to(&server, "lead@example.com") < 1)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        messages_to(&server, "ana@example.com"),
        1,
        "{}",
        server.received()
    );
    assert_eq!(messages_to(&server, "lead@example.com"), 1);

    // Within the escalation interval nothing more is sent.
    app.clock
        .advance(app.state.config.incident_escalation_minutes * MINUTE - SECOND);
    run_job(&app, "sla_watch").await;
    run_job(&app, "outbox_deliver").await;
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(messages_to(&server, "ana@example.com"), 1);

    // Triage stops the clock: no further escalations, even much later.
    let page = app
        .get(&client, &format!("/incidents/{}", incident.id))
        .await
        .text()
        .await
        .unwrap();
    let triaged = app
        .post(
            &client,
            &format!("/incidents/{}/triage", incident.id),
            &[
                ("csrf", &csrf_of(&page)),
                ("version", &field_of(&page, "version")),
                ("severity", "SEV2"),
                ("assignee", "ana@example.com"),
            ],
        )
        .await;
    assert_eq!(triaged.status(), 303);
    app.clock.advance(3 * HOUR);
    run_job(&app, "sla_watch").await;
    run_job(&app, "outbox_deliver").await;
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The assignment is the only new message: no escalation after triage.
    assert_eq!(messages_to(&server, "lead@example.com"), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.received().contains("assigned to you") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        messages_to(&server, "ana@example.com"),
        2,
        "{}",
        server.received()
    );
    assert_eq!(server.received().matches("assigned to you").count(), 1);
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let detail = incidents::detail(&mut conn, &incident.id, app.state.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.incident.status, Status::Triaged);
    assert!(detail.timeline.iter().any(|e| e.kind == "triaged"));
}
both_backends!(a_late_reported_incident_is_breached_escalated_once_and_quieted_by_triage);

async fn triage_is_breached_at_exactly_the_deadline_and_not_before(backend: Backend) {
    let app = spawn_app(backend).await;
    let incident = open(&app, &new_incident(T0)).await;
    let subject =
        trustplane::sla::Subject::new(trustplane::sla::SubjectKind::Incident, &incident.id);
    let state_at = |at| {
        let app = &app;
        let subject = subject.clone();
        async move {
            let mut conn = app.state.db.pool.acquire().await.unwrap();
            let clock = trustplane::sla::for_subject(&mut conn, &subject)
                .await
                .unwrap()
                .remove(0);
            clock.state_at(at)
        }
    };
    assert_eq!(
        state_at(T0 + HOUR - 1).await,
        trustplane::sla::ClockState::Running
    );
    assert_eq!(
        state_at(T0 + HOUR).await,
        trustplane::sla::ClockState::Breached
    );
}
both_backends!(triage_is_breached_at_exactly_the_deadline_and_not_before);

async fn disallowed_transitions_are_refused_and_sev2_needs_a_review_to_close(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_staff("ana@example.com", &[Role::Security], true)
        .await;
    let incident = open(&app, &new_incident(T0)).await;
    let meta = RequestMeta::default();
    let now = app.state.now();
    let mut tx = app.state.db.begin().await.unwrap();
    let refused = incidents::transition(
        &mut tx,
        &incident.id,
        1,
        Status::Resolved,
        ACTOR,
        &meta,
        now,
    )
    .await
    .unwrap_err();
    assert!(refused.to_string().contains("Triage it first"), "{refused}");
    let triaged = incidents::triage(
        &mut tx,
        &incident.id,
        1,
        Severity::Sev2,
        "ana@example.com",
        ACTOR,
        &meta,
        now,
    )
    .await
    .unwrap();
    let resolved = incidents::transition(
        &mut tx,
        &incident.id,
        triaged.version + 1,
        Status::Resolved,
        ACTOR,
        &meta,
        now,
    )
    .await
    .unwrap();
    let _ = resolved;
    let version = incidents::store::find(&mut tx, &incident.id)
        .await
        .unwrap()
        .unwrap()
        .version;
    let closing = incidents::transition(
        &mut tx,
        &incident.id,
        version,
        Status::Closed,
        ACTOR,
        &meta,
        now,
    )
    .await
    .unwrap_err();
    assert!(
        closing.to_string().contains("post-incident review"),
        "{closing}"
    );
    let settings = incidents::pages::settings(&app.state);
    let bad_action = incidents::complete_review(
        &mut tx,
        &settings,
        &incident.id,
        "Key misuse",
        "No per-network alerting",
        "Add detector",
        ACTOR,
        &meta,
        now,
    )
    .await
    .unwrap_err();
    assert!(
        bad_action.to_string().contains("owner@email"),
        "{bad_action}"
    );
    incidents::complete_review(
        &mut tx,
        &settings,
        &incident.id,
        "Key misuse",
        "No per-network alerting",
        "Add detector | ana@example.com | 2027-02-01",
        ACTOR,
        &meta,
        now,
    )
    .await
    .unwrap();
    incidents::transition(
        &mut tx,
        &incident.id,
        version,
        Status::Closed,
        ACTOR,
        &meta,
        now,
    )
    .await
    .unwrap();
    let stale = incidents::transition(
        &mut tx,
        &incident.id,
        version,
        Status::Mitigating,
        ACTOR,
        &meta,
        now,
    )
    .await
    .unwrap_err();
    assert!(stale.to_string().contains("changed by someone else"));
    // The review action runs on its own clock until it is done.
    let actions = incidents::followups::actions(&mut tx, &incident.id)
        .await
        .unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
    incidents::followups::complete_action(
        &mut tx,
        &incident.id,
        &actions[0].id,
        ACTOR,
        &meta,
        now + HOUR,
    )
    .await
    .unwrap();
    let clocks = trustplane::sla::for_subject(
        &mut tx,
        &trustplane::sla::Subject::new(trustplane::sla::SubjectKind::Incident, &incident.id),
    )
    .await
    .unwrap();
    let action_clock = clocks.iter().find(|c| c.name == "action_1").unwrap();
    assert_eq!(action_clock.state, trustplane::sla::ClockState::Met);
    tx.commit().await.unwrap();
}
both_backends!(disallowed_transitions_are_refused_and_sev2_needs_a_review_to_close);

async fn the_gdpr_clock_runs_72_hours_from_awareness_and_a_late_notice_needs_a_reason(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_customer("Acme Faces", "live", 30).await;
    let mut new = new_incident(T0);
    new.personal_data_aware_at = Some(T0);
    new.affected_customers = "Nobody Inc".into();
    let mut tx = app.state.db.begin().await.unwrap();
    let unknown = incidents::open(
        &mut tx,
        &incidents::pages::settings(&app.state),
        &new,
        ACTOR,
        &RequestMeta::default(),
        T0,
    )
    .await
    .unwrap_err();
    assert!(unknown.to_string().contains("Nobody Inc"), "{unknown}");
    drop(tx);
    new.affected_customers = "Acme Faces".into();
    let incident = open(&app, &new).await;
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let clocks = trustplane::sla::for_subject(
        &mut conn,
        &trustplane::sla::Subject::new(trustplane::sla::SubjectKind::Incident, &incident.id),
    )
    .await
    .unwrap();
    drop(conn);
    let authority = clocks
        .iter()
        .find(|c| c.name == "authority_notice")
        .unwrap();
    assert_eq!(authority.due_at, T0 + 72 * HOUR);
    let controller = clocks
        .iter()
        .find(|c| c.name == "controller_notice_1")
        .unwrap();
    assert_eq!(
        controller.due_at,
        T0 + 24 * HOUR,
        "the customer is told within 24 h"
    );
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let notices = incidents::followups::controller_notices(&mut conn, &incident.id)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(notices[0].customer_name, "Acme Faces");
    let mut tx = app.state.db.begin().await.unwrap();
    incidents::followups::record_controller_notified(
        &mut tx,
        &incident.id,
        &notices[0].customer_id,
        ACTOR,
        &RequestMeta::default(),
        T0 + 5 * HOUR,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    app.clock.set(T0 + 80 * HOUR);
    let meta = RequestMeta::default();
    let mut notice = incidents::store::BreachNotice {
        nature: "Face images of one customer readable by another".into(),
        approx_subjects: Some(120),
        approx_records: Some(480),
        contact_point: "dpo@example.com".into(),
        likely_consequences: "Identification of people".into(),
        measures: "Access revoked".into(),
        authority: "BfDI".into(),
        reference: "2027-0042".into(),
        notified_at: Some(T0 + 79 * HOUR),
        late_reason: String::new(),
    };
    let mut tx = app.state.db.begin().await.unwrap();
    let refused = incidents::record_authority_notice(
        &mut tx,
        &incident.id,
        &notice,
        ACTOR,
        &meta,
        app.state.now(),
    )
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("reason for the delay"),
        "{refused}"
    );
    notice.late_reason = "The affected customer's logs arrived on day 3".into();
    incidents::record_authority_notice(
        &mut tx,
        &incident.id,
        &notice,
        ACTOR,
        &meta,
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let detail = incidents::detail(&mut conn, &incident.id, app.state.now())
        .await
        .unwrap()
        .unwrap();
    let authority = detail
        .clocks
        .iter()
        .find(|c| c["name"] == "authority_notice")
        .unwrap();
    assert_eq!(authority["state"], "breached", "{authority}");
    assert!(detail.breach_notice.unwrap().late_reason.contains("day 3"));
}
both_backends!(the_gdpr_clock_runs_72_hours_from_awareness_and_a_late_notice_needs_a_reason);

async fn the_cli_opens_a_late_incident_that_shows_breached(backend: Backend) {
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
            .env("USER", "alice")
            .output()
            .expect("run trustplane")
    };
    // The CLI runs on the real clock: detected two hours before now.
    let detected = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    let opened = run(&[
        "incidents",
        "open",
        "--title",
        "Pager test",
        "--severity",
        "SEV3",
        "--detected-at",
        &detected,
    ]);
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    let id = String::from_utf8(opened.stdout).unwrap().trim().to_owned();
    let shown = run(&["incidents", "show", &id, "--json"]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let detail: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(detail["clocks"][0]["name"], "triage");
    assert_eq!(detail["clocks"][0]["state"], "breached", "{detail}");
    let listed = run(&["incidents", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    let bad = run(&[
        "incidents",
        "open",
        "--title",
        "x y z",
        "--severity",
        "SEV9",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("SEV9"));
    let actor = app
        .count("SELECT COUNT(*) FROM audit_log WHERE action = 'incident.open' AND actor LIKE 'cli:alice@%'")
        .await;
    assert_eq!(actor, 1);
}
both_backends!(the_cli_opens_a_late_incident_that_shows_breached);

async fn the_dashboard_figures_come_from_the_incident_and_finding_records(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_staff("ana@example.com", &[Role::Security], true)
        .await;
    app.create_staff("lead@example.com", &[Role::Admin], true)
        .await;
    set_rotation(&app).await;
    let (client, _) = app.logged_in_as(Role::Security).await;
    let empty = app.get(&client, "/").await.text().await.unwrap();
    assert!(
        empty.contains(r#"data-record="INC-1" data-ok="true""#),
        "{empty}"
    );
    assert!(empty.contains("nothing in the period"));
    assert!(empty.contains("ana@example.com"), "who is on call");

    // One incident breached (detected two hours ago), one triaged in time.
    open(&app, &new_incident(T0 - 2 * HOUR)).await;
    let in_time = open(&app, &new_incident(T0)).await;
    let mut tx = app.state.db.begin().await.unwrap();
    incidents::triage(
        &mut tx,
        &in_time.id,
        1,
        Severity::Sev3,
        "ana@example.com",
        ACTOR,
        &RequestMeta::default(),
        T0 + 10 * MINUTE,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    app.clock.set(T0 + 20 * MINUTE);
    let page = app.get(&client, "/").await.text().await.unwrap();
    assert!(
        page.contains(r#"data-record="INC-1" data-ok="false""#),
        "{page}"
    );
    assert!(page.contains("50 % (1 of 2)"), "{page}");
    assert!(page.contains(r#"<article class="card control bad" data-control="INC">"#));
    assert!(page.contains(r#"data-record="PEN-1" data-ok="true""#));
}
both_backends!(the_dashboard_figures_come_from_the_incident_and_finding_records);

async fn the_list_puts_the_most_urgent_first_on_both_backends(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_staff("ana@example.com", &[Role::Security], true)
        .await;
    let triaged = open(&app, &new_incident(T0 - 30 * MINUTE)).await;
    let overdue = open(&app, &new_incident(T0 - 2 * HOUR)).await;
    let waiting = open(&app, &new_incident(T0 - 10 * MINUTE)).await;
    let mut tx = app.state.db.begin().await.unwrap();
    incidents::triage(
        &mut tx,
        &triaged.id,
        1,
        Severity::Sev3,
        "ana@example.com",
        ACTOR,
        &RequestMeta::default(),
        T0,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let (rows, total) = incidents::store::list(
        &mut conn,
        &incidents::store::IncidentFilter {
            limit: 10,
            now: T0,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(total, 3);
    let order: Vec<&str> = rows.iter().map(|r| r.incident.id.as_str()).collect();
    assert_eq!(
        order,
        [
            overdue.id.as_str(),
            waiting.id.as_str(),
            triaged.id.as_str()
        ]
    );
    drop(conn);

    // Resolved incidents follow the open ones, newest first, and pages cross the boundary.
    let mut resolved = Vec::new();
    for detected in [T0 - 5 * HOUR, T0 - 3 * HOUR] {
        let incident = open(&app, &new_incident(detected)).await;
        let mut tx = app.state.db.begin().await.unwrap();
        let meta = RequestMeta::default();
        incidents::triage(
            &mut tx,
            &incident.id,
            1,
            Severity::Sev4,
            "ana@example.com",
            ACTOR,
            &meta,
            T0,
        )
        .await
        .unwrap();
        incidents::transition(&mut tx, &incident.id, 2, Status::Resolved, ACTOR, &meta, T0)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        resolved.push(incident.id);
    }
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let mut pages = Vec::new();
    for offset in [0, 2, 4] {
        let (rows, total) = incidents::store::list(
            &mut conn,
            &incidents::store::IncidentFilter {
                limit: 2,
                offset,
                now: T0,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(total, 5);
        pages.extend(rows.into_iter().map(|r| r.incident.id));
    }
    assert_eq!(
        pages,
        [
            overdue.id.clone(),
            waiting.id.clone(),
            triaged.id.clone(),
            resolved[1].clone(),
            resolved[0].clone()
        ]
    );
}
both_backends!(the_list_puts_the_most_urgent_first_on_both_backends);

async fn concurrent_reports_each_get_their_own_number(backend: Backend) {
    let app = std::sync::Arc::new(spawn_app(backend).await);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            open(&app, &new_incident(T0)).await.number
        }));
    }
    let mut numbers = Vec::new();
    for task in tasks {
        numbers.push(task.await.unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=8).collect::<Vec<i64>>());
}
both_backends!(concurrent_reports_each_get_their_own_number);
