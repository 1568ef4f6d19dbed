//! Findings: remediation clocks by severity (critical 72 hours), the all-or-nothing CSV
//! import, fix → verify, and risk acceptance by someone other than who raised it.

use trustplane::audit::RequestMeta;
use trustplane::clock::{DAY, HOUR};
use trustplane::findings::{self, FindingError, model::Status};
use trustplane::sla::{ClockState, Subject, SubjectKind};
use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;

const RAISER: &str = "staff:raiser@example.com";

async fn import(app: &TestApp, csv: &str) -> Result<Vec<findings::store::Finding>, FindingError> {
    let mut tx = app.state.db.begin().await.unwrap();
    let result = findings::import_csv(
        &mut tx,
        &findings::pages::settings(&app.state),
        csv,
        None,
        RAISER,
        &RequestMeta::default(),
        app.state.now(),
    )
    .await;
    if result.is_ok() {
        tx.commit().await.unwrap();
    }
    result
}

async fn remediation_due(app: &TestApp, id: &str) -> trustplane::sla::SlaClock {
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    trustplane::sla::for_subject(&mut conn, &Subject::new(SubjectKind::Finding, id))
        .await
        .unwrap()
        .remove(0)
}

async fn each_severity_gets_its_remediation_deadline_from_confirmation(backend: Backend) {
    let app = spawn_app(backend).await;
    let confirmed = "2027-01-15T06:00:00Z"; // T0 - 2 h
    let csv = format!(
        "title,severity,asset,confirmed_at,cvss_vector\n\
         SQL injection in search,critical,api.example.com,{confirmed},CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H\n\
         Verbose errors,high,portal,{confirmed},\n\
         Missing header,medium,portal,{confirmed},\n\
         Old TLS cipher listed,low,edge,{confirmed},\n"
    );
    let saved = import(&app, &csv).await.unwrap();
    assert_eq!(saved.len(), 4);
    assert_eq!(saved[0].cvss_score, Some(9.8));
    let start = T0 - 2 * HOUR;
    let expected = [72 * HOUR, 14 * DAY, 30 * DAY, 90 * DAY];
    for (finding, hours) in saved.iter().zip(expected) {
        assert_eq!(
            remediation_due(&app, &finding.id).await.due_at,
            start + hours
        );
    }
    // The critical one shows its 72-hour clock on its page.
    let (client, _) = app.logged_in_as(Role::Security).await;
    let page = app
        .get(&client, &format!("/findings/{}", saved[0].id))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Remediate within 3 days"), "{page}");
    assert!(page.contains("left"), "{page}");
}
both_backends!(each_severity_gets_its_remediation_deadline_from_confirmation);

async fn a_csv_with_one_bad_row_imports_nothing_and_names_every_problem(backend: Backend) {
    let app = spawn_app(backend).await;
    let csv = "title,severity,asset,confirmed_at\n\
               Good one,high,portal,2027-01-15T06:00:00Z\n\
               Bad severity,urgent,portal,2027-01-15T06:00:00Z\n\
               Bad time,low,portal,yesterday\n";
    let Err(FindingError::Rows(rows)) = import(&app, csv).await else {
        panic!("expected row errors");
    };
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0].starts_with("row 3:") && rows[0].contains("urgent"));
    assert!(rows[1].starts_with("row 4:") && rows[1].contains("yesterday"));
    assert_eq!(app.count("SELECT COUNT(*) FROM findings").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM sla_clocks").await, 0);
    let missing = import(&app, "title,severity\nx,low\n").await.unwrap_err();
    assert!(missing.to_string().contains("asset"), "{missing}");
}
both_backends!(a_csv_with_one_bad_row_imports_nothing_and_names_every_problem);

async fn a_fix_in_time_is_met_and_risk_is_accepted_only_by_someone_else(backend: Backend) {
    let app = spawn_app(backend).await;
    let csv = "title,severity,asset,confirmed_at\n\
               Key in logs,critical,api,2027-01-15T08:00:00Z\n\
               Weak rate limit,medium,demo,2027-01-15T08:00:00Z\n";
    let saved = import(&app, csv).await.unwrap();
    let meta = RequestMeta::default();
    let mut tx = app.state.db.begin().await.unwrap();
    let no_evidence = findings::transition(
        &mut tx,
        &saved[0].id,
        1,
        Status::Fixed,
        " ",
        RAISER,
        &meta,
        T0 + HOUR,
    )
    .await
    .unwrap_err();
    assert!(no_evidence.to_string().contains("evidence"));
    findings::transition(
        &mut tx,
        &saved[0].id,
        1,
        Status::Fixed,
        "release 1.4.2",
        RAISER,
        &meta,
        T0 + 70 * HOUR,
    )
    .await
    .unwrap();
    // Verified after the 72 hours: the fix came in time, so the clock is met.
    findings::transition(
        &mut tx,
        &saved[0].id,
        2,
        Status::Verified,
        "",
        RAISER,
        &meta,
        T0 + 80 * HOUR,
    )
    .await
    .unwrap();
    let own = findings::accept_risk(
        &mut tx,
        &saved[1].id,
        1,
        "Compensating WAF rule in place",
        T0 + 30 * DAY,
        RAISER,
        &meta,
        T0,
    )
    .await
    .unwrap_err();
    assert!(own.to_string().contains("someone else"));
    findings::accept_risk(
        &mut tx,
        &saved[1].id,
        1,
        "Compensating WAF rule in place",
        T0 + 30 * DAY,
        "staff:ciso@example.com",
        &meta,
        T0,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let fixed = remediation_due(&app, &saved[0].id).await;
    assert_eq!(fixed.state, ClockState::Met, "{fixed:?}");
    let accepted = remediation_due(&app, &saved[1].id).await;
    assert_eq!(accepted.state, ClockState::Paused);

    // When the acceptance expires, the finding reopens and its clock runs again.
    app.clock.set(T0 + 30 * DAY - 1);
    let summary = trustplane::jobs::Scheduler::new(app.state.clone())
        .unwrap()
        .run_now("risk_acceptance_expiry")
        .await
        .unwrap();
    assert_eq!(summary.counts["reopened"], 0);
    app.clock.set(T0 + 30 * DAY);
    let summary = trustplane::jobs::Scheduler::new(app.state.clone())
        .unwrap()
        .run_now("risk_acceptance_expiry")
        .await
        .unwrap();
    assert_eq!(summary.counts["reopened"], 1);
    let reopened = remediation_due(&app, &saved[1].id).await;
    assert_eq!(reopened.state, ClockState::Running);
    assert_eq!(
        reopened.due_at,
        T0 + 30 * DAY + 30 * DAY,
        "the paused month does not count"
    );
}
both_backends!(a_fix_in_time_is_met_and_risk_is_accepted_only_by_someone_else);
