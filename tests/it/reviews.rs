//! Access reviews (REV-1): campaigns open by themselves once per quarter, snapshot staff roles
//! and API keys, refuse self-review at the server, carry out and verify revokes through the
//! same operations as manual changes, keep failed changes open, and export an escaped CSV.

use sqlx::Row;
use trustplane::audit::RequestMeta;
use trustplane::clock::{DAY, HOUR, MINUTE, SECOND};
use trustplane::jobs::Scheduler;
use trustplane::keys::model::Scope;
use trustplane::reviews::model::Quarter;
use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;

/// 2027-04-01 00:00 UTC: the first instant of 2027Q2.
const Q2_2027: i64 = 1_806_537_600_000;
/// 2027-07-01 00:00 UTC: the first instant of 2027Q3.
const Q3_2027: i64 = 1_814_400_000_000;

#[derive(Debug, Clone)]
struct ItemRow {
    id: String,
    kind: String,
    subject: String,
    role: Option<String>,
    reviewer: Option<String>,
    flags: String,
    decision: Option<String>,
    execution: String,
}

async fn items(app: &TestApp, campaign: &str) -> Vec<ItemRow> {
    sqlx::query(
        "SELECT id, kind, subject_label, role, reviewer_email, flags, decision, execution \
         FROM review_items WHERE campaign_id = $1 ORDER BY number",
    )
    .bind(campaign)
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| ItemRow {
        id: r.get("id"),
        kind: r.get("kind"),
        subject: r.get("subject_label"),
        role: r.get("role"),
        reviewer: r.get("reviewer_email"),
        flags: r.get("flags"),
        decision: r.get("decision"),
        execution: r.get("execution"),
    })
    .collect()
}

async fn campaign_of(app: &TestApp, quarter: &str) -> Option<String> {
    sqlx::query("SELECT id FROM review_campaigns WHERE quarter = $1")
        .bind(quarter)
        .fetch_optional(&app.state.db.pool)
        .await
        .unwrap()
        .map(|r| r.get("id"))
}

fn opened(runs: &[trustplane::jobs::RunSummary]) -> Vec<String> {
    runs.iter()
        .filter(|r| r.job == "access_review_open")
        .filter_map(|r| r.counts["opened"].as_str().map(str::to_owned))
        .collect()
}

/// Opens the campaign of the current quarter directly, as the CLI does.
async fn open_now(app: &TestApp) -> String {
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
    campaign.id
}

async fn the_job_opens_one_campaign_per_quarter_across_two_nodes_and_after_downtime(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_staff("admin@example.com", &[Role::Admin], true)
        .await;
    app.create_staff("rita@example.com", &[Role::Reviewer], true)
        .await;
    let customer = app.create_customer("Acme", "live", 30).await;
    app.issue_key(&customer, "faces:detect").await;
    let (a, b) = (
        Scheduler::new(app.state.clone()).unwrap(),
        Scheduler::new(app.second_node().await).unwrap(),
    );

    // The last millisecond of Q1: nothing opens.
    app.clock.set(Q2_2027 - 1);
    let (ra, rb) = tokio::join!(a.tick(), b.tick());
    assert!(opened(&ra.unwrap()).is_empty());
    assert!(opened(&rb.unwrap()).is_empty());
    assert_eq!(app.count("SELECT COUNT(*) FROM review_campaigns").await, 0);

    // The first tick of Q2 (the scheduler runs an occurrence on the tick after it): both nodes
    // tick at once, one campaign opens.
    app.clock.set(Q2_2027 + SECOND);
    let (ra, rb) = tokio::join!(a.tick(), b.tick());
    let mut all = opened(&ra.unwrap());
    all.extend(opened(&rb.unwrap()));
    assert_eq!(all, vec!["2027Q2".to_owned()]);
    let id = campaign_of(&app, "2027Q2").await.unwrap();
    let rows = items(&app, &id).await;
    assert_eq!(rows.len(), 3, "two role grants and one key: {rows:?}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM sla_clocks WHERE subject_kind = 'access_review'")
            .await,
        1
    );

    // Later ticks of the quarter, and a manual open of the same quarter, open nothing more.
    app.clock.set(Q2_2027 + 2 * 60 * MINUTE);
    assert!(opened(&a.tick().await.unwrap()).is_empty());
    let settings = trustplane::reviews::Settings::from_config(&app.state.config);
    let mut tx = app.state.db.begin().await.unwrap();
    let again = trustplane::reviews::open(
        &mut tx,
        &settings,
        &app.state.sla_calendar,
        Quarter::parse("2027Q2").unwrap(),
        "test",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await;
    assert!(
        matches!(again, Err(trustplane::reviews::ReviewError::Conflict(_))),
        "{again:?}"
    );
    drop(tx);

    // Down over the whole first day of Q3: the first tick afterwards opens it, once.
    app.clock.set(Q3_2027 + 2 * DAY + 5 * MINUTE);
    let (ra, rb) = tokio::join!(a.tick(), b.tick());
    let mut all = opened(&ra.unwrap());
    all.extend(opened(&rb.unwrap()));
    assert_eq!(all, vec!["2027Q3".to_owned()]);
    app.clock.advance(60 * MINUTE);
    assert!(opened(&a.tick().await.unwrap()).is_empty());
    assert_eq!(app.count("SELECT COUNT(*) FROM review_campaigns").await, 2);
}
both_backends!(the_job_opens_one_campaign_per_quarter_across_two_nodes_and_after_downtime);

async fn the_snapshot_does_not_change_when_roles_or_keys_change_afterwards(backend: Backend) {
    let app = spawn_app(backend).await;
    let sam = app
        .create_staff("sam@example.com", &[Role::Security], true)
        .await;
    app.create_staff("rita@example.com", &[Role::Reviewer], true)
        .await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (key_id, _) = app.issue_key(&customer, "faces:detect,images:delete").await;
    let campaign = open_now(&app).await;
    let before = items(&app, &campaign).await;
    assert_eq!(before.len(), 3);
    let key_item = before.iter().find(|i| i.kind == "api_key").unwrap();
    assert!(key_item.flags.contains("never_used"), "{key_item:?}");
    assert!(key_item.flags.contains("unused_scopes"), "{key_item:?}");

    // Afterwards: a new role, a revoked key, a new key.
    let now = app.state.now();
    let mut tx = app.state.db.begin().await.unwrap();
    trustplane::staff::store::grant_role(&mut tx, &sam.id, Role::Compliance, "test", now)
        .await
        .unwrap();
    trustplane::keys::store::revoke(&mut tx, &key_id, "test", now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    app.issue_key(&customer, "faces:detect").await;

    let after = items(&app, &campaign).await;
    assert_eq!(
        format!("{before:?}"),
        format!("{after:?}"),
        "the campaign still shows what existed at opening"
    );
    let scopes: String = sqlx::query("SELECT scopes FROM review_items WHERE subject_id = $1")
        .bind(&key_id)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(scopes, "faces:detect,images:delete");
}
both_backends!(the_snapshot_does_not_change_when_roles_or_keys_change_afterwards);

async fn a_key_is_flagged_for_each_scope_it_held_but_did_not_use_last_quarter(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_staff("rita@example.com", &[Role::Reviewer], true)
        .await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (busy, _) = app
        .issue_key(&customer, "faces:detect,images:read,images:delete")
        .await;
    let (reader, _) = app.issue_key(&customer, "images:read").await;
    let now = app.state.now();
    // Last quarter (the period a Q1 campaign reviews): detections and reads, no delete; the
    // reader's only call asked for a scope it does not hold, which is no use of anything.
    let usage = &app.state.key_usage;
    usage.record_scoped(&busy, now - 30 * DAY, false, Some(Scope::FacesDetect));
    usage.record_scoped(&busy, now - 20 * DAY, true, Some(Scope::ImagesRead));
    usage.record_scoped(&reader, now - 20 * DAY, true, None);
    usage.flush(&app.state.db).await.unwrap();
    // A delete this quarter is outside the reviewed period.
    usage.record_scoped(&busy, now - HOUR, false, Some(Scope::ImagesDelete));
    usage.flush(&app.state.db).await.unwrap();

    let campaign = open_now(&app).await;
    let unused = |key: String| {
        let app = &app;
        let campaign = campaign.clone();
        async move {
            let row = sqlx::query(
                "SELECT unused_scopes, flags FROM review_items \
                 WHERE campaign_id = $1 AND subject_id = $2",
            )
            .bind(&campaign)
            .bind(&key)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
            (
                row.get::<Option<String>, _>("unused_scopes"),
                row.get::<String, _>("flags"),
            )
        }
    };
    let (scopes, flags) = unused(busy).await;
    assert_eq!(scopes.as_deref(), Some("images:delete"));
    assert!(flags.contains("unused_scopes"), "{flags}");
    assert!(!flags.contains("never_used"), "{flags}");
    let (scopes, flags) = unused(reader).await;
    assert_eq!(scopes.as_deref(), Some("images:read"));
    assert!(flags.contains("unused_scopes"), "{flags}");
}
both_backends!(a_key_is_flagged_for_each_scope_it_held_but_did_not_use_last_quarter);

async fn a_quarter_opens_at_its_first_instant_and_is_caught_up_for_seven_days(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.review_timezone = "Europe/Berlin".into()).await;
    let settings = trustplane::reviews::Settings::from_config(&app.state.config);
    let open_due = |now: i64| {
        let app = &app;
        async move {
            trustplane::reviews::open_due(&app.state.db, &settings, &app.state.sla_calendar, now)
                .await
                .unwrap()
        }
    };
    // Quarters begin at local midnight: 2027-04-01 00:00 in Berlin is 22:00 UTC the day before.
    let berlin_q2 = Q2_2027 - 2 * 60 * MINUTE;
    assert_eq!(open_due(berlin_q2 - 1).await, None);
    assert_eq!(open_due(berlin_q2).await.as_deref(), Some("2027Q2"));
    assert_eq!(open_due(berlin_q2 + MINUTE).await, None, "once");
    // Missed entirely (down for the first week of Q3): the last moment of day 7 still opens
    // it; a moment later an admin must.
    let berlin_q3 = Q3_2027 - 2 * 60 * MINUTE;
    assert_eq!(open_due(berlin_q3 + 7 * DAY).await, None);
    assert_eq!(
        open_due(berlin_q3 + 7 * DAY - 1).await.as_deref(),
        Some("2027Q3")
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM review_campaigns").await, 2);
}
both_backends!(a_quarter_opens_at_its_first_instant_and_is_caught_up_for_seven_days);

/// GETs the campaign page and posts a decision on `item` with its CSRF token.
async fn decide(
    app: &TestApp,
    client: &reqwest::Client,
    campaign: &str,
    item: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    app.submit(
        client,
        &format!("/reviews/{campaign}"),
        &format!("/reviews/{campaign}/items/{item}/decision"),
        form,
    )
    .await
}

async fn a_reviewer_revokes_a_dormant_key_and_a_role_which_take_effect_and_are_verified(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let admin = app
        .create_staff("admin@example.com", &[Role::Admin], true)
        .await;
    let rita = app
        .create_staff("rita@example.com", &[Role::Reviewer], true)
        .await;
    let rob = app
        .create_staff("rob@example.com", &[Role::Reviewer], true)
        .await;
    let sam = app
        .create_staff("sam@example.com", &[Role::Security], true)
        .await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (_dormant_id, dormant_secret) = app.issue_key(&customer, "faces:detect,images:read").await;
    let probe = format!("/v1/images/{}", uuid::Uuid::new_v4());
    let api = |secret: String| {
        let url = app.url(&probe);
        async move {
            reqwest::Client::new()
                .get(url)
                .header("x-api-key", secret)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(api(dormant_secret.clone()).await, 404, "the key works");

    // The first day of Q3, 167 days later: the campaign opens by itself.
    app.clock.set(Q3_2027);
    let scheduler = Scheduler::new(app.state.clone()).unwrap();
    assert_eq!(opened(&scheduler.tick().await.unwrap()), vec!["2027Q3"]);
    let campaign = campaign_of(&app, "2027Q3").await.unwrap();
    let rows = items(&app, &campaign).await;
    assert_eq!(rows.len(), 5, "four role grants and one key: {rows:?}");
    let key_item = rows.iter().find(|i| i.kind == "api_key").unwrap().clone();
    assert!(key_item.flags.contains("dormant"), "{key_item:?}");
    let sam_item = rows
        .iter()
        .find(|i| i.subject == sam.email)
        .unwrap()
        .clone();
    let rita_own = rows
        .iter()
        .find(|i| i.subject == rita.email)
        .unwrap()
        .clone();
    assert_eq!(
        rita_own.reviewer.as_deref(),
        Some(rob.email.as_str()),
        "nobody is assigned their own account"
    );

    let rita_client = app.client();
    app.login(&rita_client, &rita).await;
    let rob_client = app.client();
    app.login(&rob_client, &rob).await;
    let sam_client = app.client();
    app.login(&sam_client, &sam).await;
    let client_of = |email: &Option<String>| {
        if email.as_deref() == Some(rita.email.as_str()) {
            &rita_client
        } else {
            &rob_client
        }
    };
    let page = app
        .get(&rita_client, &format!("/reviews/{campaign}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Access review 2027Q3"), "{page}");

    // Self-review is refused at the server, even when posted directly.
    let response = decide(
        &app,
        &rita_client,
        &campaign,
        &rita_own.id,
        &[("decision", "keep"), ("justification", "still needed")],
    )
    .await;
    assert_eq!(response.status(), 403);
    let body = response.text().await.unwrap();
    assert_eq!(error_code(&body).as_deref(), Some("review_refused"));
    assert!(body.contains("your own account"), "{body}");
    // So is an item assigned to someone else.
    let other = rows
        .iter()
        .find(|i| i.reviewer.as_deref() == Some(rob.email.as_str()) && i.id != rita_own.id)
        .unwrap();
    let response = decide(
        &app,
        &rita_client,
        &campaign,
        &other.id,
        &[("decision", "keep"), ("justification", "x")],
    )
    .await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM review_items WHERE decision IS NOT NULL")
            .await,
        0,
        "refusals change nothing"
    );

    // A revoke needs a justification.
    let key_reviewer = client_of(&key_item.reviewer);
    let response = decide(
        &app,
        key_reviewer,
        &campaign,
        &key_item.id,
        &[("decision", "revoke"), ("justification", "")],
    )
    .await;
    assert_eq!(response.status(), 400);
    let response = decide(
        &app,
        key_reviewer,
        &campaign,
        &key_item.id,
        &[
            ("decision", "revoke"),
            ("justification", "unused for months"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(api(dormant_secret.clone()).await, 401, "revoked at once");
    app.clock.advance(SECOND);
    assert_eq!(api(dormant_secret).await, 401);

    // Revoking Sam's role ends Sam's sessions.
    assert_eq!(app.get(&sam_client, "/").await.status(), 200);
    let response = decide(
        &app,
        client_of(&sam_item.reviewer),
        &campaign,
        &sam_item.id,
        &[("decision", "revoke"), ("justification", "left the team")],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_ne!(
        app.get(&sam_client, "/").await.status(),
        200,
        "Sam's session ended"
    );
    let rows = items(&app, &campaign).await;
    for id in [&key_item.id, &sam_item.id] {
        let row = rows.iter().find(|i| &i.id == id).unwrap();
        assert_eq!(row.execution, "verified", "{row:?}");
    }
    let audited = app
        .count("SELECT COUNT(*) FROM audit_log WHERE action IN ('key.revoke', 'staff.role.revoke')")
        .await;
    assert_eq!(audited, 2, "the same operations as manual changes");
    let with_campaign = app
        .count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'review.execute' \
             AND details LIKE '%{campaign}%'"
        ))
        .await;
    assert_eq!(with_campaign, 2);

    // Each reviewer keeps the rest in bulk, after a confirmation step.
    for client in [&rita_client, &rob_client] {
        let page = app
            .get(client, &format!("/reviews/{campaign}"))
            .await
            .text()
            .await
            .unwrap();
        let csrf = csrf_of(&page);
        let base = [
            ("csrf", csrf.as_str()),
            ("decision", "keep"),
            ("justification", "confirmed with the team lead"),
        ];
        let confirm = app
            .post(client, &format!("/reviews/{campaign}/bulk"), &base)
            .await;
        assert_eq!(confirm.status(), 200);
        assert!(confirm.text().await.unwrap().contains("Confirm: keep"));
        let mut fields = base.to_vec();
        fields.push(("confirm", "yes"));
        let done = app
            .post(client, &format!("/reviews/{campaign}/bulk"), &fields)
            .await;
        assert_eq!(done.status(), 303);
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM review_items WHERE decision IS NULL")
            .await,
        0
    );

    // The admin signs off; the campaign is read-only afterwards.
    let admin_client = app.client();
    app.login(&admin_client, &admin).await;
    let page = format!("/reviews/{campaign}");
    let response = app
        .submit(
            &admin_client,
            &page,
            &format!("/reviews/{campaign}/sign-off"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(
        app.count("SELECT COUNT(*) FROM review_campaigns WHERE state = 'signed_off'")
            .await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM sla_clocks WHERE subject_kind = 'access_review' AND state = 'met'"
        )
        .await,
        1
    );
    let response = decide(
        &app,
        &rob_client,
        &campaign,
        &rita_own.id,
        &[("decision", "revoke"), ("justification", "late")],
    )
    .await;
    assert_eq!(response.status(), 409);

    // The CSV holds every decision.
    let csv = app
        .get(&admin_client, &format!("/reviews/{campaign}/export.csv"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 1 + 5);
    assert!(csv.contains("unused for months"));
    assert!(csv.contains("left the team"));
    assert_eq!(csv.matches(",verified,").count(), 2, "{csv}");
    assert_eq!(csv.matches(",keep,").count(), 3, "{csv}");

    // The dashboard card is live.
    let dashboard = app.get(&admin_client, "/").await.text().await.unwrap();
    assert!(dashboard.contains("data-control=\"REV\""));
    assert!(dashboard.contains("2027Q3"));
}
both_backends!(a_reviewer_revokes_a_dormant_key_and_a_role_which_take_effect_and_are_verified);

async fn a_failed_execution_stays_open_shown_red_and_blocks_sign_off(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app
        .create_staff("admin@example.com", &[Role::Admin], true)
        .await;
    let rita = app
        .create_staff("rita@example.com", &[Role::Reviewer], true)
        .await;
    let campaign = open_now(&app).await;
    let admin_item = items(&app, &campaign)
        .await
        .into_iter()
        .find(|i| i.role.as_deref() == Some("admin"))
        .unwrap();
    let client = app.client();
    app.login(&client, &rita).await;
    // Removing the only admin is refused by the staff operation: the item fails and stays open.
    let response = decide(
        &app,
        &client,
        &campaign,
        &admin_item.id,
        &[("decision", "revoke"), ("justification", "test")],
    )
    .await;
    assert_eq!(response.status(), 303);
    let row = items(&app, &campaign)
        .await
        .into_iter()
        .find(|i| i.id == admin_item.id)
        .unwrap();
    assert_eq!(row.execution, "failed");
    assert_eq!(row.decision.as_deref(), Some("revoke"));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM staff_roles WHERE role = 'admin'")
            .await,
        1,
        "the role is still there"
    );
    let page = app
        .get(&client, &format!("/reviews/{campaign}?status=failed"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("class=\"failed\""), "{page}");
    assert!(page.contains("no enabled administrator"), "{page}");

    // Rita's own grant is unassigned (she is the only reviewer); sign-off is refused while
    // anything is open.
    let admin_client = app.client();
    app.login(&admin_client, &admin).await;
    let response = app
        .submit(
            &admin_client,
            &format!("/reviews/{campaign}"),
            &format!("/reviews/{campaign}/sign-off"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM review_campaigns WHERE state = 'open'")
            .await,
        1
    );

    // Decided again (keep), the item closes.
    let response = decide(
        &app,
        &client,
        &campaign,
        &admin_item.id,
        &[("decision", "keep"), ("justification", "the only admin")],
    )
    .await;
    assert_eq!(response.status(), 303);
    let row = items(&app, &campaign)
        .await
        .into_iter()
        .find(|i| i.id == admin_item.id)
        .unwrap();
    assert_eq!(row.execution, "none");
    assert_eq!(row.decision.as_deref(), Some("keep"));
}
both_backends!(a_failed_execution_stays_open_shown_red_and_blocks_sign_off);

async fn nobody_decides_a_role_they_granted_and_modify_narrows_a_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let rita = app
        .create_staff("rita@example.com", &[Role::Reviewer], true)
        .await;
    let rob = app
        .create_staff("rob@example.com", &[Role::Reviewer], true)
        .await;
    let sam = app
        .create_staff("sam@example.com", &[Role::Security], true)
        .await;
    // Rita granted Sam a second role.
    let mut tx = app.state.db.begin().await.unwrap();
    trustplane::staff::store::grant_role(
        &mut tx,
        &sam.id,
        Role::Compliance,
        &format!("staff:{}", rita.email),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let customer = app.create_customer("Acme", "live", 30).await;
    let (key_id, secret) = app
        .issue_key(&customer, "faces:detect,images:read,images:delete")
        .await;
    let campaign = open_now(&app).await;
    let rows = items(&app, &campaign).await;
    let granted = rows
        .iter()
        .find(|i| i.role.as_deref() == Some("compliance"))
        .unwrap();
    assert_eq!(granted.reviewer.as_deref(), Some(rob.email.as_str()));

    let rita_client = app.client();
    app.login(&rita_client, &rita).await;
    let response = decide(
        &app,
        &rita_client,
        &campaign,
        &granted.id,
        &[("decision", "keep"), ("justification", "x")],
    )
    .await;
    assert_eq!(response.status(), 403);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("you granted this role")
    );

    // Modify drops the unused delete scope through the keys module.
    let key_item = rows.iter().find(|i| i.kind == "api_key").unwrap();
    let client = if key_item.reviewer.as_deref() == Some(rita.email.as_str()) {
        rita_client.clone()
    } else {
        let c = app.client();
        app.login(&c, &rob).await;
        c
    };
    let response = decide(
        &app,
        &client,
        &campaign,
        &key_item.id,
        &[
            ("decision", "modify"),
            ("drop.images:delete", "on"),
            ("justification", "never deletes"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    let scopes: String = sqlx::query("SELECT scopes FROM api_keys WHERE id = $1")
        .bind(&key_id)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(scopes, "faces:detect,images:read");
    let status = reqwest::Client::new()
        .delete(app.url(&format!("/v1/images/{}", uuid::Uuid::new_v4())))
        .header("x-api-key", &secret)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403, "the dropped scope no longer works");
    let row = items(&app, &campaign)
        .await
        .into_iter()
        .find(|i| i.id == key_item.id)
        .unwrap();
    assert_eq!(row.execution, "verified");
}
both_backends!(nobody_decides_a_role_they_granted_and_modify_narrows_a_key);

async fn the_csv_export_neutralises_formula_leading_cells(backend: Backend) {
    let app = spawn_app(backend).await;
    let rita = app
        .create_staff("rita@example.com", &[Role::Reviewer], true)
        .await;
    app.create_staff("sam@example.com", &[Role::Security], true)
        .await;
    let campaign = open_now(&app).await;
    let sam_item = items(&app, &campaign)
        .await
        .into_iter()
        .find(|i| i.subject == "sam@example.com")
        .unwrap();
    let client = app.client();
    app.login(&client, &rita).await;
    let response = decide(
        &app,
        &client,
        &campaign,
        &sam_item.id,
        &[
            ("decision", "keep"),
            ("justification", "=HYPERLINK(\"http://x\")"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    let csv = app
        .get(&client, &format!("/reviews/{campaign}/export.csv"))
        .await
        .text()
        .await
        .unwrap();
    assert!(csv.contains("\"'=HYPERLINK(\"\"http://x\"\")\""), "{csv}");
    for line in csv.lines() {
        for cell in line.split(',') {
            let cell = cell.trim_start_matches('"');
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "unescaped cell {cell} in {line}"
            );
        }
    }
}
both_backends!(the_csv_export_neutralises_formula_leading_cells);

async fn reviewers_with_open_items_are_reminded_and_admins_hear_when_overdue(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app
        .create_staff("admin@example.com", &[Role::Admin], true)
        .await;
    app.create_staff("rita@example.com", &[Role::Reviewer], true)
        .await;
    let campaign = open_now(&app).await;
    let opened_at = app.state.now();
    let outbox = |to: &'static str| {
        let app = &app;
        async move {
            app.count(&format!(
                "SELECT COUNT(*) FROM outbox WHERE to_addr = '{to}'"
            ))
            .await
        }
    };
    // Halfway (7 days): a reminder to the reviewer with open items.
    app.clock.set(opened_at + 7 * DAY);
    trustplane::sla::watch::run(&app.state).await.unwrap();
    assert_eq!(outbox("rita@example.com").await, 1);
    assert_eq!(outbox("admin@example.com").await, 0);
    // Due after 14 days: one millisecond before, no escalation; at the deadline, admins hear.
    app.clock.set(opened_at + 14 * DAY - 1);
    trustplane::sla::watch::run(&app.state).await.unwrap();
    assert_eq!(outbox("admin@example.com").await, 0);
    app.clock.set(opened_at + 14 * DAY);
    trustplane::sla::watch::run(&app.state).await.unwrap();
    assert_eq!(outbox("admin@example.com").await, 1);
    // The campaign page shows the overdue history.
    let client = app.client();
    app.login(&client, &admin).await;
    let page = app
        .get(&client, &format!("/reviews/{campaign}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Due date history"), "{page}");
    assert!(page.contains("breached"), "{page}");
    assert!(page.contains("escalated"), "{page}");
}
both_backends!(reviewers_with_open_items_are_reminded_and_admins_hear_when_overdue);

fn trustplane_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trustplane"));
    cmd.current_dir(app.dir.path());
    for (key, _) in std::env::vars() {
        if key.starts_with("TRUSTPLANE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("TRUSTPLANE_DATABASE_URL", &app.database_url)
        .args(args)
        .output()
        .unwrap()
}

async fn the_cli_opens_lists_shows_and_exports_a_campaign(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_staff("rita@example.com", &[Role::Reviewer], true)
        .await;
    let customer = app.create_customer("Acme", "live", 30).await;
    app.issue_key(&customer, "faces:detect").await;
    // The CLI runs on the system clock; a quarter long past has begun whatever the date.
    let out = trustplane_cli(&app, &["reviews", "open", "--quarter", "2026Q1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let again = trustplane_cli(&app, &["reviews", "open", "--quarter", "2026Q1"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already open"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let list = trustplane_cli(&app, &["reviews", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["campaign"]["quarter"], "2026Q1");
    assert_eq!(list[0]["summary"]["items"], 2);
    let show = trustplane_cli(&app, &["reviews", "show", "2026Q1", "--json"]);
    let show: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(show["campaign"]["id"], id.as_str());
    assert_eq!(show["items"].as_array().unwrap().len(), 2);
    let file = app.dir.path().join("review.csv");
    let out = trustplane_cli(
        &app,
        &["reviews", "export", &id, "--csv", file.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = std::fs::read_to_string(&file).unwrap();
    assert_eq!(csv.lines().count(), 3);
    assert!(
        app.audit_text().await.contains("review.open"),
        "opening is audited"
    );
}
both_backends!(the_cli_opens_lists_shows_and_exports_a_campaign);

async fn with_execution_at_sign_off_revokes_wait_and_a_sole_deciding_admin_cannot_sign(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |c| c.review_execute = "sign_off".into()).await;
    let boss = app
        .create_staff("boss@example.com", &[Role::Admin, Role::Reviewer], true)
        .await;
    let second = app
        .create_staff("second-admin@example.com", &[Role::Admin], true)
        .await;
    let rex = app
        .create_staff("rex@example.com", &[Role::Reviewer], true)
        .await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (_, secret) = app.issue_key(&customer, "faces:detect,images:read").await;
    let campaign = open_now(&app).await;
    let rows = items(&app, &campaign).await;
    let key_item = rows.iter().find(|i| i.kind == "api_key").unwrap().clone();
    assert_eq!(key_item.reviewer.as_deref(), Some(boss.email.as_str()));
    let client = app.client();
    app.login(&client, &boss).await;
    let probe = app.url(&format!("/v1/images/{}", uuid::Uuid::new_v4()));
    let api = || {
        let (probe, secret) = (probe.clone(), secret.clone());
        async move {
            reqwest::Client::new()
                .get(probe)
                .header("x-api-key", secret)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let response = decide(
        &app,
        &client,
        &campaign,
        &key_item.id,
        &[
            ("decision", "revoke"),
            ("justification", "no longer a customer"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(api().await, 404, "the revoke waits for sign-off");
    for row in items(&app, &campaign).await {
        if row.decision.is_none() && row.reviewer.as_deref() == Some(boss.email.as_str()) {
            let response = decide(
                &app,
                &client,
                &campaign,
                &row.id,
                &[("decision", "keep"), ("justification", "needed")],
            )
            .await;
            assert_eq!(response.status(), 303);
        }
    }
    // Boss decided every decided item alone, so Boss cannot sign off.
    let response = app
        .submit(
            &client,
            &format!("/reviews/{campaign}"),
            &format!("/reviews/{campaign}/sign-off"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(response.status(), 403);
    assert_eq!(api().await, 404, "a refused sign-off carries nothing out");

    // Rex keeps the rest; another admin signs off, which carries out the revoke.
    let rex_client = app.client();
    app.login(&rex_client, &rex).await;
    for row in items(&app, &campaign).await {
        if row.decision.is_none() {
            assert_eq!(row.reviewer.as_deref(), Some(rex.email.as_str()), "{row:?}");
            let response = decide(
                &app,
                &rex_client,
                &campaign,
                &row.id,
                &[("decision", "keep"), ("justification", "needed")],
            )
            .await;
            assert_eq!(response.status(), 303);
        }
    }
    let second_client = app.client();
    app.login(&second_client, &second).await;
    let response = app
        .submit(
            &second_client,
            &format!("/reviews/{campaign}"),
            &format!("/reviews/{campaign}/sign-off"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(api().await, 401, "revoked at sign-off");
    let row = items(&app, &campaign)
        .await
        .into_iter()
        .find(|i| i.id == key_item.id)
        .unwrap();
    assert_eq!(row.execution, "verified");
}
both_backends!(with_execution_at_sign_off_revokes_wait_and_a_sole_deciding_admin_cannot_sign);
