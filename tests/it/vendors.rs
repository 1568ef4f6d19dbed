//! The sub-processor register: the onboarding gate from the store, the portal and the CLI;
//! the customer notice period and its emails; reminders and escalations of the vendor
//! clocks; DPA type checks; and the public list and feed.

use trustplane::audit::RequestMeta;
use trustplane::clock::{DAY, MINUTE, Millis};
use trustplane::jobs::Scheduler;
use trustplane::staff::model::Role;
use trustplane::vendors::assess::{AnswerInput, AssessmentInput};
use trustplane::vendors::dpa::{DpaInput, DpaVault};
use trustplane::vendors::store::Vendor;
use trustplane::vendors::{self, Activation, VendorInput, VendorSettings};

use crate::both_backends;
use crate::helpers::*;
use crate::mail::{SmtpServer, free_port};

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n";

fn biometric_us(name: &str) -> VendorInput {
    VendorInput {
        name: name.into(),
        legal_entity: format!("{name} Inc."),
        purpose: "Face matching fallback".into(),
        data_categories: "biometric".into(),
        data_subjects: "customer_end_users".into(),
        locations: "US".into(),
        owner_email: "owner-secret@example.com".into(),
        notes: "INTERNAL-NOTE-XYZ".into(),
        ..Default::default()
    }
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

async fn create(app: &TestApp, input: &VendorInput) -> Vendor {
    let state = &app.state;
    let settings = VendorSettings::new(&state.config, &state.sla_calendar, &state.keyring);
    let mut tx = state.db.begin().await.unwrap();
    let vendor = vendors::create(
        &mut tx,
        &settings,
        input,
        "test",
        &RequestMeta::default(),
        state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    vendor
}

async fn find(app: &TestApp, id: &str) -> Vendor {
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    vendors::store::find(&mut conn, id).await.unwrap().unwrap()
}

async fn move_to(app: &TestApp, id: &str, to: vendors::model::State) {
    let version = find(app, id).await.version;
    let mut tx = app.state.db.begin().await.unwrap();
    vendors::transition(
        &mut tx,
        id,
        version,
        to,
        "test",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn approve(app: &TestApp, id: &str) {
    move_to(app, id, vendors::model::State::Assessing).await;
    move_to(app, id, vendors::model::State::Approved).await;
}

async fn assess(app: &TestApp, id: &str, result: &str, assessed_at: Millis) {
    let state = &app.state;
    let settings = VendorSettings::new(&state.config, &state.sla_calendar, &state.keyring);
    let mut conn = state.db.pool.acquire().await.unwrap();
    let questions = vendors::questions::list(&mut conn, true).await.unwrap();
    drop(conn);
    let input = AssessmentInput {
        answers: questions
            .iter()
            .map(|q| AnswerInput {
                question_id: q.id.clone(),
                answer: "yes".into(),
                evidence: "https://vendor.example/soc2".into(),
            })
            .collect(),
        result: result.into(),
        assessed_at,
        ..Default::default()
    };
    let mut tx = state.db.begin().await.unwrap();
    vendors::assess::record(
        &mut tx,
        &settings,
        id,
        &input,
        "test",
        &RequestMeta::default(),
        state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn upload_dpa(app: &TestApp, id: &str, expires_at: Millis) {
    let state = &app.state;
    let settings = VendorSettings::new(&state.config, &state.sla_calendar, &state.keyring);
    let mut tx = state.db.begin().await.unwrap();
    vendors::dpa::upload(
        &mut tx,
        &settings,
        DpaVault {
            blobs: &state.blobs,
            keyring: &state.keyring,
        },
        id,
        &DpaInput {
            version: "v1".into(),
            signed_at: state.now() - DAY,
            expires_at,
            file: Some(("dpa.pdf".into(), PDF.to_vec())),
        },
        "test",
        &RequestMeta::default(),
        state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn activate(app: &TestApp, id: &str) -> Activation {
    let mut tx = app.state.db.begin().await.unwrap();
    let outcome = vendors::activate(
        &mut tx,
        id,
        None,
        "test",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    outcome
}

fn refused(outcome: &Activation) -> String {
    match outcome {
        Activation::Refused(missing) => missing.join("\n"),
        Activation::Activated(v) => panic!("VND-{} was activated", v.number),
    }
}

async fn the_store_gate_refuses_without_a_passed_valid_assessment_a_dpa_or_the_notice(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let mut input = biometric_us("FaceCloud");
    input.transfer_mechanism = "scc".into();
    input.scc_module = "2".into();
    let vendor = create(&app, &input).await;

    // Not even approved: everything is named at once.
    let missing = refused(&activate(&app, &vendor.id).await);
    assert!(missing.contains("approval"), "{missing}");
    assert!(missing.contains("none is recorded"), "{missing}");
    assert!(missing.contains("signed DPA"), "{missing}");
    assert!(missing.contains("customer notice period"), "{missing}");

    approve(&app, &vendor.id).await;
    assess(&app, &vendor.id, "fail", app.state.now()).await;
    let missing = refused(&activate(&app, &vendor.id).await);
    assert!(missing.contains("failed"), "{missing}");
    assert!(!missing.contains("approval"), "{missing}");

    // A pass from 400 days ago has expired: high risk is reassessed every 12 months.
    assess(&app, &vendor.id, "pass", app.state.now() - 400 * DAY).await;
    let missing = refused(&activate(&app, &vendor.id).await);
    assert!(missing.contains("expired"), "{missing}");

    assess(&app, &vendor.id, "pass", app.state.now()).await;
    let missing = refused(&activate(&app, &vendor.id).await);
    assert!(!missing.contains("assessment"), "{missing}");
    assert!(missing.contains("signed DPA"), "{missing}");

    upload_dpa(&app, &vendor.id, app.state.now() + 400 * DAY).await;
    // The orphan sweep keeps DPA documents: they belong to a record.
    app.clock.advance(20 * MINUTE);
    run_job(&app, "retention_purge").await;
    let dpa_id: String = {
        use sqlx::Row;
        sqlx::query("SELECT id FROM vendor_dpas")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap()
            .get(0)
    };
    let (_, document) = vendors::dpa::document(
        &mut app.state.db.pool.acquire().await.unwrap(),
        DpaVault {
            blobs: &app.state.blobs,
            keyring: &app.state.keyring,
        },
        &dpa_id,
    )
    .await
    .unwrap();
    assert_eq!(document, PDF);
    let ends = find(&app, &vendor.id).await.notice_ends_at.unwrap();
    assert_eq!(
        ends,
        vendor.created_at + 30 * DAY,
        "30-day notice by default"
    );
    app.clock.set(ends - 1);
    let missing = refused(&activate(&app, &vendor.id).await);
    assert_eq!(missing.lines().count(), 1, "{missing}");
    assert!(missing.contains("customer notice period"), "{missing}");

    app.clock.set(ends);
    assert!(matches!(
        activate(&app, &vendor.id).await,
        Activation::Activated(_)
    ));
    assert_eq!(find(&app, &vendor.id).await.state.as_str(), "active");

    // Every refusal was audited, denied, with what was missing.
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'vendor.activate' AND outcome = 'denied'"
        )
        .await,
        5
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'vendor.activate' AND outcome = 'success'"
        )
        .await,
        1
    );

    // Once the DPA expires, the register shows the active vendor as lapsed.
    app.clock.set(vendor.created_at + 400 * DAY);
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let status = vendors::register_status(&mut conn, app.state.now())
        .await
        .unwrap();
    assert_eq!(status.active, 1);
    assert!(
        status.lapsed.iter().any(|l| l.contains("unexpired DPA")),
        "{:?}",
        status.lapsed
    );
}
both_backends!(the_store_gate_refuses_without_a_passed_valid_assessment_a_dpa_or_the_notice);

async fn a_vendor_outside_the_eea_needs_a_transfer_mechanism_to_go_live(backend: Backend) {
    let app = spawn_app(backend).await;
    let vendor = create(&app, &biometric_us("NoTransfer")).await;
    approve(&app, &vendor.id).await;
    assess(&app, &vendor.id, "pass", app.state.now()).await;
    upload_dpa(&app, &vendor.id, app.state.now() + 400 * DAY).await;
    app.clock.advance(31 * DAY);
    let missing = refused(&activate(&app, &vendor.id).await);
    assert!(missing.contains("transfer mechanism for US"), "{missing}");
    assert_eq!(missing.lines().count(), 1, "{missing}");
}
both_backends!(a_vendor_outside_the_eea_needs_a_transfer_mechanism_to_go_live);

fn upload_form(csrf: &str, bytes: Vec<u8>, file_name: &str) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("csrf", csrf.to_owned())
        .text("version", "2027-01".to_owned())
        .text("signed_on", "2027-01-10".to_owned())
        .text("expires_on", "2029-01-15".to_owned())
        .part(
            "document",
            reqwest::multipart::Part::bytes(bytes)
                .file_name(file_name.to_owned())
                .mime_str("application/pdf")
                .unwrap(),
        )
}

fn vendor_form<'a>(name: &'a str, transfer: &'a str, module: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("name", name),
        ("legal_entity", "FaceCloud Inc."),
        ("purpose", "Face matching fallback"),
        ("data_categories", "biometric"),
        ("data_subjects", "customer_end_users"),
        ("locations", "US"),
        ("transfer_mechanism", transfer),
        ("scc_module", module),
        ("access_level", "content"),
        ("owner_email", "owner@example.com"),
        ("notes", "INTERNAL-NOTE-XYZ"),
    ]
}

async fn a_biometric_us_vendor_goes_live_only_after_assessment_dpa_sccs_and_the_notice(
    backend: Backend,
) {
    let port = free_port();
    let server = SmtpServer::start(port);
    let app = spawn_app_with(backend, |c| c.smtp_url = format!("smtp://127.0.0.1:{port}")).await;
    let subscriber = "privacy@customer.example";

    // A customer subscribes on the public page and confirms by the emailed link.
    let public = app.client();
    let page = app.get(&public, "/trust/subprocessors").await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("No sub-processor currently"), "{page}");
    let subscribed = app
        .post(
            &public,
            "/trust/subprocessors/subscribe",
            &[("csrf", &csrf_of(&page)), ("email", subscriber)],
        )
        .await;
    assert_eq!(subscribed.status(), 200);
    run_job(&app, "outbox_deliver").await;
    assert!(server.wait_for("/trust/subprocessors/confirm?s="));
    let subscriber_id: String = {
        use sqlx::Row;
        sqlx::query("SELECT id FROM vendor_subscribers WHERE email = $1")
            .bind(subscriber)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap()
            .get(0)
    };
    let token = vendors::notice::link_token(&app.state.keyring, "confirm", &subscriber_id);
    let confirm_page = app
        .get(
            &public,
            &format!("/trust/subprocessors/confirm?s={subscriber_id}&t={token}"),
        )
        .await
        .text()
        .await
        .unwrap();
    let confirmed = app
        .post(
            &public,
            "/trust/subprocessors/confirm",
            &[
                ("csrf", &csrf_of(&confirm_page)),
                ("s", &subscriber_id),
                ("t", &token),
            ],
        )
        .await;
    assert_eq!(confirmed.status(), 200);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM vendor_subscribers WHERE confirmed_at IS NOT NULL")
            .await,
        1
    );

    // A compliance user adds the vendor: biometric data, processed in the US, no SCCs yet.
    let (compliance, _) = app.logged_in_as(Role::Compliance).await;
    let created = app
        .submit(
            &compliance,
            "/vendors/new",
            "/vendors",
            &vendor_form("FaceCloud", "", ""),
        )
        .await;
    assert_eq!(created.status(), 303);
    let path = location(&created);
    let id = path.trim_start_matches("/vendors/").to_owned();
    let vendor = find(&app, &id).await;
    assert_eq!(vendor.risk_tier().as_str(), "high");
    let planned_from = vendors::notice::day(vendor.notice_ends_at.unwrap());
    assert_eq!(planned_from, "2027-02-14");

    // Subscribers are emailed at once, once.
    run_job(&app, "outbox_deliver").await;
    assert!(server.wait_for("New sub-processor planned: FaceCloud"));
    assert_eq!(messages_to(&server, subscriber), 2, "confirmation + notice");

    // The public list and feed show it as planned, with nothing internal.
    let html = app
        .get(&public, "/trust/subprocessors")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(&format!("planned from {planned_from}")),
        "{html}"
    );
    let json: serde_json::Value = app
        .get(&public, "/trust/subprocessors.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json["subprocessors"][0]["status"], "planned");
    assert_eq!(json["subprocessors"][0]["planned_from"], planned_from);
    let atom = app
        .get(&public, "/trust/subprocessors.atom")
        .await
        .text()
        .await
        .unwrap();
    assert!(atom.contains("FaceCloud is planned as a sub-processor from 2027-02-14"));
    for text in [&html, &json.to_string(), &atom] {
        assert!(!text.contains("INTERNAL-NOTE"), "{text}");
        assert!(!text.contains("owner@example.com"), "{text}");
    }

    // Approved but nothing else: the portal refuses and names what is missing.
    for to in ["assessing", "approved"] {
        let detail = app.get(&compliance, &path).await.text().await.unwrap();
        let moved = app
            .post(
                &compliance,
                &format!("{path}/state"),
                &[
                    ("csrf", &csrf_of(&detail)),
                    ("version", &field_of(&detail, "version")),
                    ("state", to),
                ],
            )
            .await;
        assert_eq!(moved.status(), 303, "{to}");
    }
    let try_activate = || async {
        let detail = app.get(&compliance, &path).await.text().await.unwrap();
        app.post(
            &compliance,
            &format!("{path}/activate"),
            &[
                ("csrf", &csrf_of(&detail)),
                ("version", &field_of(&detail, "version")),
            ],
        )
        .await
    };
    let response = try_activate().await;
    assert_eq!(response.status(), 409);
    let body = response.text().await.unwrap();
    assert!(body.contains("a passed assessment"), "{body}");
    assert!(body.contains("a signed DPA"), "{body}");
    assert!(body.contains("transfer mechanism for US"), "{body}");
    assert!(body.contains("customer notice period"), "{body}");

    // The assessment passes.
    let assess_page = app
        .get(&compliance, &format!("{path}/assess"))
        .await
        .text()
        .await
        .unwrap();
    let question_ids: Vec<String> = {
        use sqlx::Row;
        sqlx::query("SELECT id FROM vendor_questions WHERE active = 1")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let keys: Vec<String> = question_ids.iter().map(|q| format!("answer_{q}")).collect();
    let csrf = csrf_of(&assess_page);
    let mut fields: Vec<(&str, &str)> = vec![("csrf", &csrf), ("result", "pass")];
    for key in &keys {
        fields.push((key, "yes"));
    }
    let assessed = app
        .post(&compliance, &format!("{path}/assessments"), &fields)
        .await;
    assert_eq!(assessed.status(), 303);

    // The DPA is uploaded (a PDF; sealed in the blob store with its SHA-256 kept).
    let detail = app.get(&compliance, &path).await.text().await.unwrap();
    let uploaded = compliance
        .post(app.url(&format!("{path}/dpas")))
        .multipart(upload_form(&csrf_of(&detail), PDF.to_vec(), "dpa.pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 303);
    let dpa_sha: String = {
        use sqlx::Row;
        sqlx::query("SELECT sha256 FROM vendor_dpas")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap()
            .get(0)
    };
    assert_eq!(dpa_sha, trustplane::crypto::sha256_hex(PDF));

    // SCCs are recorded.
    let edit = app
        .get(&compliance, &format!("{path}/edit"))
        .await
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&edit);
    let version = field_of(&edit, "version");
    let mut fields = vendor_form("FaceCloud", "scc", "2");
    fields.push(("csrf", &csrf));
    fields.push(("version", &version));
    let edited = app
        .post(&compliance, &format!("{path}/edit"), &fields)
        .await;
    assert_eq!(edited.status(), 303);

    // Only the notice period is left.
    let body = try_activate().await.text().await.unwrap();
    assert!(body.contains("customer notice period"), "{body}");
    assert!(!body.contains("DPA"), "{body}");
    assert!(!body.contains("assessment"), "{body}");
    assert!(!body.contains("transfer mechanism"), "{body}");

    // The notice runs its 30 days; then the vendor goes live.
    let ends = vendor.notice_ends_at.unwrap();
    app.clock.set(ends - 1);
    assert!(matches!(activate(&app, &id).await, Activation::Refused(_)));
    app.clock.set(ends);
    let (compliance, _) = app.logged_in_as(Role::Compliance).await;
    let detail = app.get(&compliance, &path).await.text().await.unwrap();
    let activated = app
        .post(
            &compliance,
            &format!("{path}/activate"),
            &[
                ("csrf", &csrf_of(&detail)),
                ("version", &field_of(&detail, "version")),
            ],
        )
        .await;
    assert_eq!(activated.status(), 303);
    assert_eq!(find(&app, &id).await.state.as_str(), "active");

    // The public list and feed now show it active.
    let html = app
        .get(&public, "/trust/subprocessors")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(r#"data-subprocessor="FaceCloud" data-status="active""#),
        "{html}"
    );
    assert!(html.contains("Standard contractual clauses (module 2)"));
    let json: serde_json::Value = app
        .get(&public, "/trust/subprocessors.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json["subprocessors"][0]["status"], "active");
    let atom = app
        .get(&public, "/trust/subprocessors.atom")
        .await
        .text()
        .await
        .unwrap();
    assert!(atom.contains("FaceCloud is now a sub-processor"), "{atom}");

    // The subscriber was emailed about the change once, not again on activation.
    run_job(&app, "outbox_deliver").await;
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(messages_to(&server, subscriber), 2);
}
both_backends!(a_biometric_us_vendor_goes_live_only_after_assessment_dpa_sccs_and_the_notice);

async fn a_dpa_that_is_not_a_pdf_is_refused_and_nothing_is_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let vendor = create(&app, &biometric_us("FaceCloud")).await;
    let (compliance, _) = app.logged_in_as(Role::Compliance).await;
    let path = format!("/vendors/{}", vendor.id);
    let detail = app.get(&compliance, &path).await.text().await.unwrap();
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR not a pdf at all".to_vec();
    let response = compliance
        .post(app.url(&format!("{path}/dpas")))
        .multipart(upload_form(&csrf_of(&detail), png, "dpa.pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap();
    assert!(body.contains("must be a PDF"), "{body}");
    assert_eq!(app.count("SELECT COUNT(*) FROM vendor_dpas").await, 0);
    assert!(!app.dir.path().join("blobs/vendor-dpas").exists());
}
both_backends!(a_dpa_that_is_not_a_pdf_is_refused_and_nothing_is_stored);

async fn outbox_count(app: &TestApp, to: &str, subject_like: &str) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) FROM outbox WHERE to_addr = $1 AND subject LIKE $2")
        .bind(to)
        .bind(format!("%{subject_like}%"))
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
        .get::<i64, _>(0)
}

async fn reassessment_and_dpa_clocks_remind_60_30_and_7_days_before_and_escalate(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_staff("compliance-lead@example.com", &[Role::Compliance], true)
        .await;
    let owner = "owner-secret@example.com";
    let vendor = create(
        &app,
        &VendorInput {
            name: "Payroll GmbH".into(),
            legal_entity: "Payroll GmbH".into(),
            purpose: "Payroll".into(),
            data_categories: "contact, financial".into(),
            data_subjects: "our_staff".into(),
            locations: "DE".into(),
            owner_email: owner.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(vendor.risk_tier().as_str(), "medium");
    let start = app.state.now();
    let dpa_expires = start + 90 * DAY;
    upload_dpa(&app, &vendor.id, dpa_expires).await;
    assess(&app, &vendor.id, "pass", start).await;

    run_job(&app, "vendor_reminders").await;
    assert_eq!(
        outbox_count(&app, owner, "Reminder").await,
        0,
        "90 days left"
    );

    app.clock.set(dpa_expires - 60 * DAY - 1);
    run_job(&app, "vendor_reminders").await;
    assert_eq!(outbox_count(&app, owner, "Reminder").await, 0, "1 ms early");
    app.clock.set(dpa_expires - 60 * DAY);
    run_job(&app, "vendor_reminders").await;
    assert_eq!(outbox_count(&app, owner, "Reminder").await, 1, "60 days");
    app.clock.advance(1);
    run_job(&app, "vendor_reminders").await;
    assert_eq!(outbox_count(&app, owner, "Reminder").await, 1, "once");
    app.clock.set(dpa_expires - 30 * DAY);
    run_job(&app, "vendor_reminders").await;
    assert_eq!(outbox_count(&app, owner, "Reminder").await, 2, "30 days");
    app.clock.set(dpa_expires - 7 * DAY);
    run_job(&app, "vendor_reminders").await;
    assert_eq!(outbox_count(&app, owner, "Reminder").await, 3, "7 days");

    // At the expiry the engine escalates to the owner and compliance staff.
    app.clock.set(dpa_expires - 1);
    run_job(&app, "sla_watch").await;
    assert_eq!(
        outbox_count(&app, "compliance-lead@example.com", "SLA breached").await,
        0
    );
    app.clock.set(dpa_expires);
    run_job(&app, "sla_watch").await;
    run_job(&app, "vendor_reminders").await;
    assert_eq!(
        outbox_count(&app, "compliance-lead@example.com", "SLA breached").await,
        1
    );
    assert_eq!(outbox_count(&app, owner, "SLA breached").await, 1);
    assert_eq!(outbox_count(&app, owner, "Reminder").await, 3);

    // The reassessment clock (medium risk: 24 months) reminds and escalates the same way.
    let clocks = trustplane::sla::for_subject(
        &mut app.state.db.pool.acquire().await.unwrap(),
        &vendors::subject(&vendor.id),
    )
    .await
    .unwrap();
    let reassessment = clocks
        .iter()
        .find(|c| c.name.starts_with("reassessment"))
        .unwrap();
    assert_eq!(
        reassessment.due_at,
        app.state.sla_calendar.add_months(start, 24)
    );
    app.clock.set(reassessment.due_at - 7 * DAY);
    run_job(&app, "vendor_reminders").await;
    assert_eq!(
        outbox_count(&app, owner, "Reminder: Reassess VND-").await,
        1,
        "only the nearest reminder when several thresholds passed at once"
    );
    app.clock.set(reassessment.due_at + MINUTE);
    run_job(&app, "sla_watch").await;
    assert_eq!(
        outbox_count(
            &app,
            "compliance-lead@example.com",
            "SLA breached: Reassess"
        )
        .await,
        1
    );
}
both_backends!(reassessment_and_dpa_clocks_remind_60_30_and_7_days_before_and_escalate);

async fn the_public_list_and_feed_show_exactly_active_and_planned_customer_data_vendors(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let in_eu = |name: &str, categories: &str, subjects: &str| VendorInput {
        name: name.into(),
        legal_entity: format!("{name} SE"),
        purpose: format!("{name} purpose"),
        data_categories: categories.into(),
        data_subjects: subjects.into(),
        locations: "DE".into(),
        owner_email: "owner-secret@example.com".into(),
        notes: "INTERNAL-NOTE-XYZ".into(),
        ..Default::default()
    };
    let active = create(&app, &in_eu("ActiveCo", "biometric", "customer_end_users")).await;
    create(&app, &in_eu("PlannedCo", "contact", "customer_staff")).await;
    let no_data = create(&app, &in_eu("NoDataCo", "", "")).await;
    let staff_only = create(&app, &in_eu("StaffOnlyCo", "contact", "our_staff")).await;
    let dropped = create(&app, &in_eu("DroppedCo", "images", "customer_end_users")).await;
    for v in [&active, &no_data, &staff_only] {
        approve(&app, &v.id).await;
        assess(&app, &v.id, "pass", app.state.now()).await;
        upload_dpa(&app, &v.id, app.state.now() + 400 * DAY).await;
    }
    move_to(&app, &dropped.id, vendors::model::State::Retired).await;
    app.clock.advance(30 * DAY);
    for v in [&active, &no_data, &staff_only] {
        assert!(matches!(
            activate(&app, &v.id).await,
            Activation::Activated(_)
        ));
    }

    let client = app.client();
    let json: serde_json::Value = app
        .get(&client, "/trust/subprocessors.json")
        .await
        .json()
        .await
        .unwrap();
    let listed: Vec<(String, String)> = json["subprocessors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("ActiveCo".to_owned(), "active".to_owned()),
            ("PlannedCo".to_owned(), "planned".to_owned())
        ]
    );
    let keys: Vec<String> = json["subprocessors"][0]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        keys,
        [
            "locations",
            "name",
            "planned_from",
            "purpose",
            "status",
            "transfer_mechanism"
        ]
    );
    let html = app
        .get(&client, "/trust/subprocessors")
        .await
        .text()
        .await
        .unwrap();
    let atom = app
        .get(&client, "/trust/subprocessors.atom")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("ActiveCo") && html.contains("PlannedCo"));
    assert!(atom.contains("ActiveCo is now a sub-processor"), "{atom}");
    assert!(atom.contains("PlannedCo is planned"), "{atom}");
    for text in [&html, &json.to_string(), &atom] {
        for hidden in [
            "NoDataCo",
            "StaffOnlyCo",
            "INTERNAL-NOTE",
            "owner-secret",
            "score",
            "VND-",
        ] {
            assert!(!text.contains(hidden), "{hidden} in {text}");
        }
    }
    // The list no longer shows a vendor dropped before going live; the feed says so.
    assert!(!html.contains("DroppedCo"));
    assert!(!json.to_string().contains("DroppedCo"));
    assert!(
        atom.contains("DroppedCo will not become a sub-processor"),
        "{atom}"
    );
}
both_backends!(the_public_list_and_feed_show_exactly_active_and_planned_customer_data_vendors);

async fn public_routes_are_rate_limited_per_network_with_the_usual_headers(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.trust_requests_per_minute = 2).await;
    let client = app.client();
    for _ in 0..2 {
        let ok = app.get(&client, "/trust/subprocessors.json").await;
        assert_eq!(ok.status(), 200);
        assert!(ok.headers().contains_key("x-content-type-options"));
    }
    let limited = app.get(&client, "/trust/subprocessors.atom").await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert!(limited.headers().contains_key("x-content-type-options"));
    assert!(limited.headers().contains_key("content-security-policy"));
}
both_backends!(public_routes_are_rate_limited_per_network_with_the_usual_headers);

async fn the_cli_imports_all_or_nothing_and_activation_fails_with_what_is_missing(
    backend: Backend,
) {
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
    let header =
        "name,legal_entity,purpose,data_categories,locations,transfer_mechanism,risk_tier\n";
    let bad = app.dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!(
            "{header}FaceCloud,FaceCloud Inc.,Face matching,biometric,US,scc:2,high\n\
             Mailer,Mailer SE,Email,contact,Germany,,medium\n"
        ),
    )
    .unwrap();
    let out = run(&[
        "vendors",
        "import",
        "--csv",
        bad.to_str().unwrap(),
        "--owner",
        "o@example.com",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("row 3"), "{stderr}");
    assert!(stderr.contains("Germany"), "{stderr}");
    assert_eq!(app.count("SELECT COUNT(*) FROM vendors").await, 0);

    let good = app.dir.path().join("good.csv");
    std::fs::write(
        &good,
        format!(
            "{header}FaceCloud,FaceCloud Inc.,Face matching,biometric (special category),US,SCCs module 2,high\n\
             Mailer,Mailer SE,Email,contact,DE,,low\n"
        ),
    )
    .unwrap();
    let out = run(&[
        "vendors",
        "import",
        "--csv",
        good.to_str().unwrap(),
        "--owner",
        "o@example.com",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = run(&["vendors", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["state"], "proposed");
    assert_eq!(
        listed[0]["transfer"],
        "Standard contractual clauses (module 2)"
    );
    // The spreadsheet's tier overrides the derived one, with a reason.
    assert_eq!(listed[1]["risk_tier"], "low");

    let out = run(&["vendors", "activate", "VND-1"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a passed assessment"), "{stderr}");
    assert!(stderr.contains("a signed DPA"), "{stderr}");
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'vendor.activate' \
             AND outcome = 'denied' AND actor LIKE 'cli:alice@%'"
        )
        .await,
        1
    );
    let shown = run(&["vendors", "show", "VND-1", "--json"]);
    assert!(shown.status.success());
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert!(!shown["gate_missing"].as_array().unwrap().is_empty());
    assert_eq!(shown["risk_tier"], "high");
}
both_backends!(the_cli_imports_all_or_nothing_and_activation_fails_with_what_is_missing);

async fn the_register_pages_filter_search_and_confirm_before_ending_a_vendor(backend: Backend) {
    let app = spawn_app(backend).await;
    let (compliance, _) = app.logged_in_as(Role::Compliance).await;
    let empty = app.get(&compliance, "/vendors").await.text().await.unwrap();
    assert!(empty.contains("The register is empty"), "{empty}");

    let face = create(&app, &biometric_us("FaceCloud")).await;
    let mut mailer = biometric_us("Mailer");
    mailer.data_categories = "contact".into();
    mailer.locations = "DE".into();
    mailer.purpose = "Transactional email".into();
    let mailer = create(&app, &mailer).await;
    for n in 0..26 {
        let mut other = biometric_us(&format!("Tool {n:02}"));
        other.data_categories = String::new();
        other.data_subjects = String::new();
        other.locations = "FR".into();
        create(&app, &other).await;
    }

    let found = app
        .get(&compliance, "/vendors?q=transactional")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        found.contains("Mailer") && !found.contains("FaceCloud"),
        "{found}"
    );
    let special = app
        .get(&compliance, "/vendors?special=1")
        .await
        .text()
        .await
        .unwrap();
    assert!(special.contains("FaceCloud") && !special.contains("Mailer"));
    let none = app
        .get(&compliance, "/vendors?state=active")
        .await
        .text()
        .await
        .unwrap();
    assert!(none.contains("No vendor matches"), "{none}");
    let first = app.get(&compliance, "/vendors").await.text().await.unwrap();
    assert!(first.contains("page 1 of 2 · 28 vendors"), "{first}");
    assert!(first.contains("Next »"));
    let bad = app.get(&compliance, "/vendors?state=live").await;
    assert_eq!(bad.status(), 400);

    // A pass with conditions tracks them; the detail page shows the gate and the clock.
    let state = &app.state;
    let settings = VendorSettings::new(&state.config, &state.sla_calendar, &state.keyring);
    let mut conn = state.db.pool.acquire().await.unwrap();
    let questions = vendors::questions::list(&mut conn, true).await.unwrap();
    drop(conn);
    let mut tx = state.db.begin().await.unwrap();
    let missing_conditions = vendors::assess::record(
        &mut tx,
        &settings,
        &face.id,
        &AssessmentInput {
            answers: questions
                .iter()
                .map(|q| AnswerInput {
                    question_id: q.id.clone(),
                    answer: "partial".into(),
                    evidence: String::new(),
                })
                .collect(),
            result: "pass_with_conditions".into(),
            assessed_at: state.now(),
            ..Default::default()
        },
        "test",
        &RequestMeta::default(),
        state.now(),
    )
    .await;
    assert!(missing_conditions.is_err(), "conditions are required");
    drop(tx);
    let mut tx = state.db.begin().await.unwrap();
    let assessment = vendors::assess::record(
        &mut tx,
        &settings,
        &face.id,
        &AssessmentInput {
            answers: questions
                .iter()
                .map(|q| AnswerInput {
                    question_id: q.id.clone(),
                    answer: "partial".into(),
                    evidence: String::new(),
                })
                .collect(),
            result: "pass_with_conditions".into(),
            assessed_at: state.now(),
            conditions: "Enable SSO for our tenant | 2027-03-31".into(),
            ..Default::default()
        },
        "test",
        &RequestMeta::default(),
        state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(assessment.score, 50.0);
    let path = format!("/vendors/{}", face.id);
    let detail = app.get(&compliance, &path).await.text().await.unwrap();
    assert!(detail.contains(r#"data-gate="closed""#), "{detail}");
    assert!(detail.contains("Enable SSO for our tenant"));
    assert!(detail.contains("pass with conditions"));
    assert!(
        detail.contains(r#"data-clock="reassessment_1""#),
        "{detail}"
    );
    let condition_id: String = {
        use sqlx::Row;
        sqlx::query("SELECT id FROM vendor_conditions")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap()
            .get(0)
    };
    let done = app
        .post(
            &compliance,
            &format!("{path}/conditions/{condition_id}/done"),
            &[("csrf", &csrf_of(&detail))],
        )
        .await;
    assert_eq!(done.status(), 303);

    // Retiring needs the confirmation box.
    let unconfirmed = app
        .post(
            &compliance,
            &format!("/vendors/{}/state", mailer.id),
            &[
                ("csrf", &csrf_of(&detail)),
                ("version", &mailer.version.to_string()),
                ("state", "retired"),
            ],
        )
        .await;
    assert_eq!(unconfirmed.status(), 400);
    assert_eq!(find(&app, &mailer.id).await.state.as_str(), "proposed");
    let confirmed = app
        .post(
            &compliance,
            &format!("/vendors/{}/state", mailer.id),
            &[
                ("csrf", &csrf_of(&detail)),
                ("version", &mailer.version.to_string()),
                ("state", "retired"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(confirmed.status(), 303);
    assert_eq!(find(&app, &mailer.id).await.state.as_str(), "retired");

    // The questionnaire is editable; customers are subscribed by their record's email.
    let added = app
        .submit(
            &compliance,
            "/vendors/questions",
            "/vendors/questions",
            &[("text", "Runs an annual penetration test"), ("weight", "2")],
        )
        .await;
    assert_eq!(added.status(), 303);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM vendor_questions WHERE active = 1")
            .await,
        7
    );
    let customer = app.create_customer("Acme", "live", 30).await;
    let subscribed = app
        .submit(
            &compliance,
            "/vendors/subscribers",
            "/vendors/subscribers",
            &[("customer_id", &customer)],
        )
        .await;
    assert_eq!(subscribed.status(), 303);
    let list = app
        .get(&compliance, "/vendors/subscribers")
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains("ops@customer.example") && list.contains("customer record"));

    // An objection is recorded against the change it concerns.
    let change_id: String = {
        use sqlx::Row;
        sqlx::query("SELECT id FROM vendor_changes WHERE vendor_id = $1")
            .bind(&face.id)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap()
            .get(0)
    };
    let objected = app
        .submit(
            &compliance,
            &path,
            &format!("{path}/objections"),
            &[
                ("change_id", &change_id),
                ("customer_id", &customer),
                ("contact", "dpo@acme.example"),
                ("reason", "No biometric data to the US, please"),
            ],
        )
        .await;
    assert_eq!(objected.status(), 303);
    let detail = app.get(&compliance, &path).await.text().await.unwrap();
    assert!(detail.contains("No biometric data to the US"));

    // Auditors read the register but get no forms.
    let (auditor, _) = app.logged_in_as(Role::Auditor).await;
    let read = app.get(&auditor, &path).await.text().await.unwrap();
    assert!(read.contains("FaceCloud"));
    assert!(!read.contains("/activate") && !read.contains("Upload DPA"));
    let dashboard = app.get(&compliance, "/").await.text().await.unwrap();
    assert!(dashboard.contains(r#"data-control="VND""#), "{dashboard}");
    assert!(!dashboard.contains("Assessment and DPA gate before onboarding"));
}
both_backends!(the_register_pages_filter_search_and_confirm_before_ending_a_vendor);

async fn only_confirmed_subscribers_get_notices_and_forged_links_do_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let public = app.client();
    for email in ["confirmed@customer.example", "silent@customer.example"] {
        let page = app
            .get(&public, "/trust/subprocessors")
            .await
            .text()
            .await
            .unwrap();
        let response = app
            .post(
                &public,
                "/trust/subprocessors/subscribe",
                &[("csrf", &csrf_of(&page)), ("email", email)],
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    let id_of = |email: &'static str| {
        let pool = app.state.db.pool.clone();
        async move {
            use sqlx::Row;
            sqlx::query("SELECT id FROM vendor_subscribers WHERE email = $1")
                .bind(email)
                .fetch_one(&pool)
                .await
                .unwrap()
                .get::<String, _>(0)
        }
    };
    let confirmed = id_of("confirmed@customer.example").await;
    let silent = id_of("silent@customer.example").await;
    let follow = |purpose: &'static str, id: String, token: String| {
        let app = &app;
        let public = &public;
        async move {
            let page = app
                .get(
                    public,
                    &format!("/trust/subprocessors/{purpose}?s={id}&t={token}"),
                )
                .await
                .text()
                .await
                .unwrap();
            app.post(
                public,
                &format!("/trust/subprocessors/{purpose}"),
                &[("csrf", &csrf_of(&page)), ("s", &id), ("t", &token)],
            )
            .await
            .status()
        }
    };
    // A link signed for one subscriber does not confirm another.
    let token = vendors::notice::link_token(&app.state.keyring, "confirm", &confirmed);
    assert_eq!(follow("confirm", silent.clone(), token.clone()).await, 400);
    assert_eq!(follow("confirm", confirmed.clone(), token).await, 200);

    create(&app, &biometric_us("FaceCloud")).await;
    assert_eq!(
        outbox_count(
            &app,
            "confirmed@customer.example",
            "New sub-processor planned"
        )
        .await,
        1
    );
    assert_eq!(
        outbox_count(&app, "silent@customer.example", "New sub-processor planned").await,
        0
    );

    // After unsubscribing, the next notice does not go out.
    let token = vendors::notice::link_token(&app.state.keyring, "unsubscribe", &confirmed);
    assert_eq!(follow("unsubscribe", confirmed.clone(), token).await, 200);
    create(&app, &biometric_us("OtherCloud")).await;
    assert_eq!(
        outbox_count(
            &app,
            "confirmed@customer.example",
            "New sub-processor planned"
        )
        .await,
        1
    );
}
both_backends!(only_confirmed_subscribers_get_notices_and_forged_links_do_nothing);
