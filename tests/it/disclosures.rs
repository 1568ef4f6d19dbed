//! The disclosure inbox end to end: security.txt → the public form → the status link, the
//! staff inbox with its clocks, two-way messages (emails through a real SMTP server), the
//! business-day triage clock, critical → finding, duplicates, the rate limit, attachments,
//! and hostile input shown as text.

use sqlx::Row;
use trustplane::audit::RequestMeta;
use trustplane::clock::{DAY, HOUR, MINUTE};
use trustplane::disclosures::{self, Change, model::State};
use trustplane::jobs::Scheduler;
use trustplane::sla::{self, Subject, SubjectKind};
use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;
use crate::mail::{SmtpServer, free_port};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDRfake-but-typed-by-its-magic";

fn fields(title: &str) -> Vec<(&'static str, String)> {
    vec![
        ("title", title.to_owned()),
        ("asset", "https://api.example.com/v1/faces".to_owned()),
        (
            "description",
            "The detect endpoint returns other customers' results.".to_owned(),
        ),
        ("steps", "1. Call it\n2. Look".to_owned()),
        ("impact", "Data of other customers".to_owned()),
        ("cvss_vector", String::new()),
        ("reporter_name", "Rae Searcher".to_owned()),
        ("reporter_email", String::new()),
    ]
}

/// Sends the public form as a browser would (multipart, CSRF first) from `client`.
async fn send_report(
    app: &TestApp,
    client: &reqwest::Client,
    fields: &[(&str, String)],
    files: Vec<(&str, Vec<u8>)>,
) -> reqwest::Response {
    let page = app
        .get(client, "/security/report")
        .await
        .text()
        .await
        .unwrap();
    let mut form = reqwest::multipart::Form::new().text("csrf", csrf_of(&page));
    for (name, value) in fields {
        form = form.text(name.to_string(), value.clone());
    }
    for (name, bytes) in files {
        form = form.part(
            "files",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
        );
    }
    client
        .post(app.url("/security/report"))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// The status path (`/security/reports/…`) on a confirmation page.
fn status_path_of(page: &str) -> String {
    let start = page
        .find("/security/reports/")
        .unwrap_or_else(|| panic!("no status link in:\n{page}"));
    let end = page[start..].find('"').unwrap() + start;
    page[start..end].to_owned()
}

/// Reports through the form; returns (report id, status path).
async fn report(app: &TestApp, title: &str, email: &str) -> (String, String) {
    let mut f = fields(title);
    f.retain(|(k, _)| *k != "reporter_email");
    f.push(("reporter_email", email.to_owned()));
    let response = send_report(app, &app.client(), &f, Vec::new()).await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    let path = status_path_of(&page);
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let token = path.rsplit('/').next().unwrap();
    let d = disclosures::by_token(&mut conn, token)
        .await
        .unwrap()
        .expect("report stored");
    (d.id, path)
}

fn subject(id: &str) -> Subject {
    Subject::new(SubjectKind::Disclosure, id)
}

async fn clock(app: &TestApp, id: &str, name: &str) -> sla::SlaClock {
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    sla::for_subject(&mut conn, &subject(id))
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} clock"))
}

/// Waits for `needle` in the received mail with quoted-printable soft line breaks undone.
fn wait_unfolded(server: &SmtpServer, needle: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        // Soft line breaks, raw (aiosmtpd) or as Python's debugging server prints lines.
        let received = server.received().replace("='\nb'", "").replace("=\n", "");
        if received.contains(needle) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

async fn run_job(app: &TestApp, job: &str) {
    app.clock.advance(1);
    let summary = Scheduler::new(app.state.clone())
        .unwrap()
        .run_now(job)
        .await
        .unwrap();
    assert!(summary.ok, "{job}: {:?}", summary.error);
}

async fn transition(app: &TestApp, id: &str, to: State, message: &str, duplicate_of: &str) {
    let settings = disclosures::pages::settings(&app.state);
    let mut tx = app.state.db.begin().await.unwrap();
    let d = disclosures::find(&mut tx, id).await.unwrap();
    disclosures::transition(
        &mut tx,
        &settings,
        id,
        d.version,
        to,
        &Change {
            message: message.into(),
            duplicate_of: duplicate_of.into(),
        },
        "staff:test@example.com",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn a_newcomer_reports_from_security_txt_and_reads_the_staff_reply_on_the_status_page_and_by_email(
    backend: Backend,
) {
    let port = free_port();
    let server = SmtpServer::start(port);
    let app = spawn_app_with(backend, |c| {
        c.smtp_url = format!("smtp://127.0.0.1:{port}");
        c.public_url = "https://trust.example.com".into();
    })
    .await;
    let researcher = app.client();

    // security.txt names the form; Expires lies in the future, under a year ahead.
    let response = app.get(&researcher, "/.well-known/security.txt").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert!(response.headers().contains_key("content-security-policy"));
    let txt = response.text().await.unwrap();
    assert!(
        txt.contains("Contact: https://trust.example.com/security/report"),
        "{txt}"
    );
    assert!(txt.contains("Policy: https://trust.example.com/security"));
    assert!(txt.contains("Canonical: https://trust.example.com/.well-known/security.txt"));
    assert!(txt.contains("Preferred-Languages: en"));
    let expires = txt
        .lines()
        .find_map(|l| l.strip_prefix("Expires: "))
        .expect("Expires line");
    let expires = chrono::DateTime::parse_from_rfc3339(expires)
        .unwrap()
        .timestamp_millis();
    assert!(expires > app.state.now() && expires < app.state.now() + 365 * DAY);
    assert_eq!(
        app.get(&researcher, "/security.txt")
            .await
            .text()
            .await
            .unwrap(),
        txt
    );
    let policy = app
        .get(&researcher, "/security")
        .await
        .text()
        .await
        .unwrap();
    assert!(policy.contains("within <strong>24 hours</strong>"));

    // The form, without an account; the confirmation shows the status link once.
    let mut f = fields("IDOR on the detect endpoint");
    f.retain(|(k, _)| *k != "reporter_email");
    f.push(("reporter_email", "rae@researcher.example".into()));
    let response = send_report(&app, &researcher, &f, vec![("shot.png", PNG.to_vec())]).await;
    assert_eq!(response.status(), 200);
    let confirmation = response.text().await.unwrap();
    assert!(confirmation.contains("DSC-1"));
    assert!(confirmation.contains("https://trust.example.com/security/reports/"));
    let status_path = status_path_of(&confirmation);
    let token = status_path.rsplit('/').next().unwrap().to_owned();
    assert!(token.len() >= 43, "256-bit token");

    // Staff see it with a 24-hour and a 5-business-day countdown.
    let (staff, _) = app.logged_in_as(Role::Security).await;
    let inbox = app.get(&staff, "/disclosures").await.text().await.unwrap();
    assert!(inbox.contains("IDOR on the detect endpoint"), "{inbox}");
    let id = {
        let start = inbox.find("/disclosures/").unwrap() + "/disclosures/".len();
        inbox[start..start + 36].to_owned()
    };
    let detail = app
        .get(&staff, &format!("/disclosures/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(detail.contains(r#"data-clock="acknowledge" data-state="running""#));
    assert!(detail.contains(r#"data-clock="triage_update" data-state="running""#));
    assert!(detail.contains("Acknowledge within 24 hours"));
    assert!(detail.contains("Triage update within 5 business days"));
    assert!(detail.contains("shot.png"));

    // Staff reply; the researcher reads it on the status page …
    app.clock.advance(20 * MINUTE);
    let response = app
        .submit(
            &staff,
            &format!("/disclosures/{id}"),
            &format!("/disclosures/{id}/reply"),
            &[("body", "Thanks, we can reproduce it and are on it.")],
        )
        .await;
    assert_eq!(response.status(), 303);
    let status = app
        .get(&researcher, &status_path)
        .await
        .text()
        .await
        .unwrap();
    assert!(status.contains("Thanks, we can reproduce it and are on it."));
    assert!(status.contains("acknowledged"));
    assert!(clock(&app, &id, "acknowledge").await.state == sla::ClockState::Met);

    // … and by email, after the receipt that carried the link.
    run_job(&app, "outbox_deliver").await;
    assert!(wait_unfolded(
        &server,
        "Thanks, we can reproduce it and are on it."
    ));
    assert!(
        wait_unfolded(&server, &token),
        "the receipt carries the status link"
    );

    // The researcher replies on the status page; staff see it.
    let page = app
        .get(&researcher, &status_path)
        .await
        .text()
        .await
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf_of(&page))
        .text("message", "Great, here is one more request that shows it.")
        .part(
            "files",
            reqwest::multipart::Part::bytes(b"GET /v1/faces/42 HTTP/1.1\n".to_vec())
                .file_name("request.txt"),
        );
    let response = researcher
        .post(app.url(&status_path))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let detail = app
        .get(&staff, &format!("/disclosures/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(detail.contains("Great, here is one more request that shows it."));
    assert!(
        detail.contains("request.txt"),
        "files added on the status page"
    );
}
both_backends!(
    a_newcomer_reports_from_security_txt_and_reads_the_staff_reply_on_the_status_page_and_by_email
);

async fn the_triage_update_is_due_five_business_days_later_across_a_weekend_and_a_holiday(
    backend: Backend,
) {
    // T0 is Friday 2027-01-15 08:00 UTC; Wednesday the 20th is a holiday.
    let app = spawn_app_with(backend, |c| c.sla_holidays = vec!["2027-01-20".into()]).await;
    let (id, _) = report(&app, "Weekend report", "").await;
    let triage = clock(&app, &id, disclosures::TRIAGE_CLOCK).await;
    // Mon 18, Tue 19, (Wed 20 off), Thu 21, Fri 22, Mon 25: due Monday the 25th, 08:00.
    assert_eq!(triage.due_at, T0 + 10 * DAY);
    let ack = clock(&app, &id, disclosures::ACK_CLOCK).await;
    assert_eq!(
        ack.due_at,
        T0 + 24 * HOUR,
        "acknowledgement counts real hours"
    );

    assert_eq!(triage.state_at(T0 + 10 * DAY - 1), sla::ClockState::Running);
    assert_eq!(triage.state_at(T0 + 10 * DAY), sla::ClockState::Breached);

    // Moving to triaged needs a message, and meets the clock.
    app.clock.set(T0 + 10 * DAY - 1);
    let settings = disclosures::pages::settings(&app.state);
    let mut tx = app.state.db.begin().await.unwrap();
    let d = disclosures::find(&mut tx, &id).await.unwrap();
    let refused = disclosures::transition(
        &mut tx,
        &settings,
        &id,
        d.version,
        State::Triaged,
        &Change::default(),
        "staff:test@example.com",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await;
    assert!(refused.is_err(), "triaged without a message");
    drop(tx);
    transition(
        &app,
        &id,
        State::Triaged,
        "Confirmed; fixing this week.",
        "",
    )
    .await;
    assert_eq!(
        clock(&app, &id, disclosures::TRIAGE_CLOCK).await.state,
        sla::ClockState::Met
    );
}
both_backends!(the_triage_update_is_due_five_business_days_later_across_a_weekend_and_a_holiday);

async fn the_receipt_email_does_not_acknowledge_but_a_researcher_visible_message_does(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (first, _) = report(&app, "First report", "rae@researcher.example").await;
    let (second, _) = report(&app, "Second report", "").await;
    // The receipt went out; internal notes do not count either.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE to_addr = 'rae@researcher.example'")
            .await,
        1
    );
    run_job(&app, "outbox_deliver").await;
    let mut tx = app.state.db.begin().await.unwrap();
    disclosures::note(
        &mut tx,
        &first,
        "Looks real; checking logs.",
        "staff:test@example.com",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        clock(&app, &first, disclosures::ACK_CLOCK).await.stopped_at,
        None
    );

    // A reply 1 ms before the deadline meets it.
    let ack = clock(&app, &first, disclosures::ACK_CLOCK).await;
    app.clock.set(ack.due_at - 1);
    let settings = disclosures::pages::settings(&app.state);
    let mut tx = app.state.db.begin().await.unwrap();
    disclosures::reply(
        &mut tx,
        &settings,
        &first,
        "We have your report.",
        "staff:test@example.com",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        clock(&app, &first, disclosures::ACK_CLOCK).await.state,
        sla::ClockState::Met
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE to_addr = 'rae@researcher.example'")
            .await,
        2,
        "the reply is emailed"
    );

    // A state change the researcher sees also acknowledges; at the deadline it is late.
    let ack = clock(&app, &second, disclosures::ACK_CLOCK).await;
    app.clock.set(ack.due_at);
    transition(&app, &second, State::Acknowledged, "", "").await;
    let ack = clock(&app, &second, disclosures::ACK_CLOCK).await;
    assert_eq!(ack.state, sla::ClockState::Breached);
    assert!(ack.stopped_at.is_some());
}
both_backends!(the_receipt_email_does_not_acknowledge_but_a_researcher_visible_message_does);

async fn accepting_a_critical_report_creates_a_linked_finding_with_a_72_hour_clock(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (id, _) = report(&app, "Remote code execution", "").await;
    transition(&app, &id, State::Triaged, "Reproduced.", "").await;

    // Acceptance needs a severity.
    let settings = disclosures::pages::settings(&app.state);
    let mut tx = app.state.db.begin().await.unwrap();
    let d = disclosures::find(&mut tx, &id).await.unwrap();
    assert!(
        disclosures::transition(
            &mut tx,
            &settings,
            &id,
            d.version,
            State::Accepted,
            &Change::default(),
            "staff:test@example.com",
            &RequestMeta::default(),
            app.state.now(),
        )
        .await
        .is_err()
    );
    drop(tx);
    let mut tx = app.state.db.begin().await.unwrap();
    let d = disclosures::find(&mut tx, &id).await.unwrap();
    disclosures::update(
        &mut tx,
        &id,
        d.version,
        Some(trustplane::findings::model::Severity::Critical),
        None,
        "staff:test@example.com",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    app.clock.advance(3 * HOUR);
    let confirmed = app.state.now();
    transition(&app, &id, State::Accepted, "", "").await;
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let d = disclosures::find(&mut conn, &id).await.unwrap();
    let finding_id = d.finding_id.clone().expect("finding linked");
    let finding = trustplane::findings::store::find(&mut conn, &finding_id)
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    assert_eq!(finding.source, "disclosure");
    assert!(finding.description.contains(&format!("/disclosures/{id}")));
    let fix = clock(&app, &id, disclosures::FIX_CLOCK).await;
    assert_eq!(fix.started_at, confirmed);
    assert_eq!(fix.due_at, confirmed + 72 * HOUR);
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let remediation = sla::for_subject(&mut conn, &Subject::new(SubjectKind::Finding, &finding_id))
        .await
        .unwrap();
    drop(conn);
    assert_eq!(remediation[0].due_at, confirmed + 72 * HOUR);

    // The staff page links the finding; fixing meets the clock.
    let (staff, _) = app.logged_in_as(Role::Security).await;
    let detail = app
        .get(&staff, &format!("/disclosures/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(detail.contains(&format!("/findings/{finding_id}")));
    let finding_page = app
        .get(&staff, &format!("/findings/{finding_id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        finding_page.contains(&format!(
            r#"<a href="/disclosures/{id}" data-disclosure>DSC-1</a>"#
        )),
        "the finding links back"
    );
    transition(&app, &id, State::Fixed, "Fixed in release 4.2.", "").await;
    assert_eq!(
        clock(&app, &id, disclosures::FIX_CLOCK).await.state,
        sla::ClockState::Met
    );
}
both_backends!(accepting_a_critical_report_creates_a_linked_finding_with_a_72_hour_clock);

async fn a_duplicate_names_the_earlier_report_and_the_researcher_is_told(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_first, _) = report(&app, "Open redirect", "").await;
    let (second, second_path) = report(&app, "Open redirect again", "").await;

    // Not a duplicate of itself, nor of a report that does not exist.
    let settings = disclosures::pages::settings(&app.state);
    for bad in ["DSC-2", "DSC-99", "nonsense"] {
        let mut tx = app.state.db.begin().await.unwrap();
        let d = disclosures::find(&mut tx, &second).await.unwrap();
        let result = disclosures::transition(
            &mut tx,
            &settings,
            &second,
            d.version,
            State::Duplicate,
            &Change {
                message: String::new(),
                duplicate_of: bad.into(),
            },
            "staff:test@example.com",
            &RequestMeta::default(),
            app.state.now(),
        )
        .await;
        assert!(result.is_err(), "{bad}");
    }

    transition(&app, &second, State::Duplicate, "", "DSC-1").await;
    let status = app
        .get(&app.client(), &second_path)
        .await
        .text()
        .await
        .unwrap();
    assert!(status.contains("duplicate of an earlier report"));
    assert!(status.contains("DSC-1"), "{status}");
    assert!(
        !status.contains("<textarea"),
        "a closed report takes no replies"
    );
    let researcher = app.client();
    let page = app
        .get(&researcher, "/security/report")
        .await
        .text()
        .await
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf_of(&page))
        .text("message", "But it is different!");
    let response = researcher
        .post(app.url(&second_path))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("is closed"));
    assert_eq!(
        clock(&app, &second, disclosures::TRIAGE_CLOCK).await.state,
        sla::ClockState::Met
    );
    let (staff, _) = app.logged_in_as(Role::Compliance).await;
    let detail = app
        .get(&staff, &format!("/disclosures/{second}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(detail.contains(">DSC-1</a>"));
    assert!(!detail.contains("Send reply"), "compliance reads only");
}
both_backends!(a_duplicate_names_the_earlier_report_and_the_researcher_is_told);

async fn the_status_link_works_only_with_the_right_token_and_shows_nothing_internal(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (id, path) = report(&app, "Token test", "").await;
    let (_, other_path) = report(&app, "Another researcher's report", "").await;
    let mut tx = app.state.db.begin().await.unwrap();
    disclosures::note(
        &mut tx,
        &id,
        "INTERNAL: the on-call engineer thinks this is a false alarm",
        "staff:secret-person@example.com",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let settings = disclosures::pages::settings(&app.state);
    let mut tx = app.state.db.begin().await.unwrap();
    disclosures::reply(
        &mut tx,
        &settings,
        &id,
        "We are looking at it.",
        "staff:secret-person@example.com",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let client = app.client();
    let page = app.get(&client, &path).await.text().await.unwrap();
    assert!(page.contains("We are looking at it."));
    assert!(!page.contains("INTERNAL"), "notes stay internal");
    assert!(!page.contains("secret-person"), "staff stay unnamed");
    assert!(!page.contains("Another researcher"));

    let token = path.rsplit('/').next().unwrap();
    let mut flipped: Vec<char> = token.chars().collect();
    flipped[10] = if flipped[10] == 'A' { 'B' } else { 'A' };
    let flipped: String = flipped.into_iter().collect();
    for wrong in [
        format!("/security/reports/{flipped}"),
        format!("/security/reports/{}", &token[..token.len() - 1]),
        "/security/reports/short".to_owned(),
        format!("/security/reports/{id}"),
    ] {
        let response = app.get(&client, &wrong).await;
        assert_eq!(response.status(), 404, "{wrong}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("Token test"));
    }
    // A wrong token cannot post either.
    let page = app.get(&client, &other_path).await.text().await.unwrap();
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf_of(&page))
        .text("message", "hello");
    let response = client
        .post(app.url(&format!("/security/reports/{flipped}")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // Only the token's SHA-256 is stored; it is in no audit detail.
    assert!(!app.database_dump().await.contains(token));
    assert!(!app.audit_text().await.contains(token));
}
both_backends!(the_status_link_works_only_with_the_right_token_and_shows_nothing_internal);

async fn reports_over_the_hourly_limit_get_a_readable_429_page_and_bots_meet_the_honeypot(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |c| c.disclosure_reports_per_hour = 2).await;
    let client = app.client();
    for n in 0..2 {
        let response = send_report(&app, &client, &fields(&format!("Report {n}")), vec![]).await;
        assert_eq!(response.status(), 200);
    }
    let response = send_report(&app, &client, &fields("One too many"), vec![]).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert!(response.headers().contains_key("content-security-policy"));
    let page = response.text().await.unwrap();
    assert!(page.contains("Too many reports from your network"));
    assert_eq!(app.count("SELECT COUNT(*) FROM disclosures").await, 2);

    // An hour later the network may report again.
    app.clock.advance(HOUR);
    let response = send_report(&app, &client, &fields("Next hour"), vec![]).await;
    assert_eq!(response.status(), 200);

    // The honeypot: refused, nothing stored.
    app.clock.advance(HOUR);
    let mut bot = fields("Buy cheap things");
    bot.push(("website", "https://spam.example".into()));
    let response = send_report(&app, &client, &bot, vec![]).await;
    assert_eq!(response.status(), 400);
    assert_eq!(app.count("SELECT COUNT(*) FROM disclosures").await, 3);
}
both_backends!(reports_over_the_hourly_limit_get_a_readable_429_page_and_bots_meet_the_honeypot);

async fn attachments_of_the_wrong_type_are_refused_and_the_rest_download_only_as_files(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let client = app.client();
    // HTML dressed as a PNG, and an executable: refused by content, nothing stored.
    for (name, bytes) in [
        (
            "shot.png",
            b"<html><script>alert(1)</script></html>".to_vec(),
        ),
        (
            "page.txt",
            b"<!doctype html><script>alert(1)</script>".to_vec(),
        ),
        ("notes.txt", b"MZ\x90\x00\x03\x00\x00\x00".to_vec()),
    ] {
        let response = send_report(
            &app,
            &client,
            &fields("With a bad file"),
            vec![(name, bytes)],
        )
        .await;
        assert_eq!(response.status(), 400, "{name}");
        let page = response.text().await.unwrap();
        assert!(
            page.contains("PNG or JPEG"),
            "{name}: the page says what is accepted"
        );
        assert!(page.contains("With a bad file"), "the typed text is kept");
    }
    // Too large.
    let response = send_report(
        &app,
        &client,
        &fields("Too big"),
        vec![("big.txt", vec![b'a'; 5 * 1024 * 1024 + 1])],
    )
    .await;
    assert_eq!(response.status(), 400);
    assert_eq!(app.count("SELECT COUNT(*) FROM disclosures").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM disclosure_attachments")
            .await,
        0
    );

    let response = send_report(
        &app,
        &client,
        &fields("With a screenshot"),
        vec![
            ("../../shot <1>.png", PNG.to_vec()),
            ("log.txt", b"GET /x 200\n".to_vec()),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let (staff, _) = app.logged_in_as(Role::Auditor).await;
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let d = disclosures::find(&mut conn, "DSC-1").await.unwrap();
    let files = disclosures::store::attachments(&mut conn, &d.id)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(files.len(), 2);
    let png = files
        .iter()
        .find(|f| f.content_type == "image/png")
        .unwrap();
    assert_eq!(png.file_name, "shot_1.png");
    let response = app
        .get(
            &staff,
            &format!("/disclosures/{}/attachments/{}", d.id, png.id),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"shot_1.png\""
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), PNG);
    // Sealed at rest.
    let raw = app.state.blobs.get_raw(&png.blob_key).await.unwrap();
    assert!(!raw.windows(8).any(|w| w == b"fake-but"));
}
both_backends!(attachments_of_the_wrong_type_are_refused_and_the_rest_download_only_as_files);

async fn html_and_script_in_every_field_show_as_text_in_the_staff_view(backend: Backend) {
    let app = spawn_app(backend).await;
    let evil = "<script>alert('x')</script><img src=x onerror=alert(1)>";
    let f: Vec<(&str, String)> = vec![
        ("title", format!("T{evil}")),
        ("asset", format!("A{evil}")),
        ("description", format!("D{evil}")),
        ("steps", format!("S{evil}")),
        ("impact", format!("I{evil}")),
        ("reporter_name", format!("N{}", &evil[..40])),
        ("reporter_email", String::new()),
    ];
    let response = send_report(&app, &app.client(), &f, vec![]).await;
    assert_eq!(response.status(), 200);
    let path = status_path_of(&response.text().await.unwrap());
    let researcher = app.client();
    let page = app.get(&researcher, &path).await.text().await.unwrap();
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf_of(&page))
        .text("message", format!("M{evil}"));
    researcher
        .post(app.url(&path))
        .multipart(form)
        .send()
        .await
        .unwrap();

    let (staff, _) = app.logged_in_as(Role::Security).await;
    let inbox = app.get(&staff, "/disclosures").await.text().await.unwrap();
    assert!(!inbox.contains("<script>alert"));
    assert!(inbox.contains("T&#60;script&#62;") || inbox.contains("T&lt;script&gt;"));
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let d = disclosures::find(&mut conn, "DSC-1").await.unwrap();
    drop(conn);
    let detail = app
        .get(&staff, &format!("/disclosures/{}", d.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(!detail.contains("<script>alert"), "{detail}");
    assert!(!detail.contains("<img src=x"));
    for prefix in ["T", "A", "D", "S", "I", "N", "M"] {
        assert!(
            detail.contains(&format!("{prefix}&#60;script&#62;"))
                || detail.contains(&format!("{prefix}&lt;script&gt;")),
            "{prefix} shown as text"
        );
    }
    // Stored as typed: nothing stripped.
    assert!(d.description.contains("<script>"));
    let status = app.get(&researcher, &path).await.text().await.unwrap();
    assert!(!status.contains("<script>alert"));
}
both_backends!(html_and_script_in_every_field_show_as_text_in_the_staff_view);

async fn a_valid_report_opens_an_incident_with_one_click_and_credits_the_researcher(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let mut f = fields("Session fixation");
    f.push(("credit_public", "1".into()));
    let response = send_report(&app, &app.client(), &f, vec![]).await;
    assert_eq!(response.status(), 200);
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let d = disclosures::find(&mut conn, "1").await.unwrap();
    drop(conn);

    let (staff, _) = app.logged_in_as(Role::Security).await;
    let response = app
        .submit(
            &staff,
            &format!("/disclosures/{}", d.id),
            &format!("/disclosures/{}/incident", d.id),
            &[("version", &d.version.to_string())],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert!(location(&response).starts_with("/incidents/"));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM incidents WHERE source = 'disclosure'")
            .await,
        1
    );

    // Credit appears once the report is accepted.
    let thanks = app.client();
    let page = app
        .get(&thanks, "/security/acknowledgements")
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("Rae Searcher"));
    transition(&app, &d.id, State::Triaged, "Valid.", "").await;
    let mut tx = app.state.db.begin().await.unwrap();
    let current = disclosures::find(&mut tx, &d.id).await.unwrap();
    disclosures::update(
        &mut tx,
        &d.id,
        current.version,
        Some(trustplane::findings::model::Severity::Medium),
        None,
        "staff:test@example.com",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    transition(&app, &d.id, State::Accepted, "", "").await;
    let page = app
        .get(&thanks, "/security/acknowledgements")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Rae Searcher"));

    // The dashboard card is live.
    let dashboard = app.get(&staff, "/").await.text().await.unwrap();
    assert!(
        dashboard.contains(r#"data-disclosures-open="1""#),
        "{dashboard}"
    );
}
both_backends!(a_valid_report_opens_an_incident_with_one_click_and_credits_the_researcher);

async fn the_cli_lists_reports_and_shows_one_with_its_clocks(backend: Backend) {
    let app = spawn_app(backend).await;
    report(&app, "CLI visible report", "rae@researcher.example").await;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_trustplane"))
            .args(args)
            .env("TRUSTPLANE_DATABASE_URL", &app.database_url)
            .env("TRUSTPLANE_DATA_DIR", app.dir.path())
            .env(
                "TRUSTPLANE_KEYRING_PATH",
                app.dir.path().join("shared-keyring.json"),
            )
            .output()
            .expect("run trustplane")
    };
    let listed = run(&["disclosures", "list", "--json"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(rows[0]["number"], 1);
    assert_eq!(rows[0]["state"], "new");
    let shown = run(&["disclosures", "show", "DSC-1", "--json"]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let detail: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let names: Vec<&str> = detail["clocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acknowledge", "triage_update"]);
    assert!(detail["clocks"][0]["due_at"].as_str().is_some());
    let text = run(&["disclosures", "show", "1"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("Acknowledge within 24 hours"), "{text}");
    assert!(
        !String::from_utf8_lossy(&shown.stdout).contains("rae@researcher.example"),
        "contact addresses are not printed"
    );
    let missing = run(&["disclosures", "show", "DSC-9"]);
    assert!(!missing.status.success());
}
both_backends!(the_cli_lists_reports_and_shows_one_with_its_clocks);

async fn a_missed_acknowledgement_escalates_to_the_person_on_call(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_staff("ana@example.com", &[Role::Security], true)
        .await;
    app.create_staff("lead@example.com", &[Role::Admin], true)
        .await;
    let mut tx = app.state.db.begin().await.unwrap();
    trustplane::oncall::set_rotation(
        &mut tx,
        &trustplane::oncall::RotationInput {
            member_emails: &["ana@example.com".to_owned()],
            handoff: "Mon 09:00",
            timezone: "UTC",
            escalation_email: Some("lead@example.com"),
        },
        "test",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (id, _) = report(&app, "Nobody answers", "").await;
    let ack = clock(&app, &id, disclosures::ACK_CLOCK).await;
    assert_eq!(ack.notify_to, vec!["ana@example.com".to_owned()]);

    // `run_job` moves the clock 1 ms: the watch runs at 23:59:59.999, then at 24:00:00.000.
    app.clock.set(ack.due_at - 2);
    run_job(&app, "sla_watch").await;
    assert_eq!(
        clock(&app, &id, disclosures::ACK_CLOCK).await.state,
        sla::ClockState::Running
    );
    run_job(&app, "sla_watch").await;
    assert_eq!(app.state.now(), ack.due_at);
    assert_eq!(
        clock(&app, &id, disclosures::ACK_CLOCK).await.state,
        sla::ClockState::Breached
    );
    for to in ["ana@example.com", "lead@example.com"] {
        let sql =
            format!("SELECT COUNT(*) FROM outbox WHERE to_addr = '{to}' AND related LIKE 'sla:%'");
        assert!(app.count(&sql).await >= 1, "{to} hears of the breach");
    }
}
both_backends!(a_missed_acknowledgement_escalates_to_the_person_on_call);

async fn an_operator_policy_file_replaces_the_built_in_policy_as_text(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.md");
    std::fs::write(
        &file,
        "# Our scope\nOnly api.example.com.\n\n- no DoS\n- no phishing\n\n<script>alert(1)</script>",
    )
    .unwrap();
    let path = file.display().to_string();
    let app = spawn_app_with(backend, |c| c.disclosure_policy_file = path).await;
    let page = app
        .get(&app.client(), "/security")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("<h2>Our scope</h2>"));
    assert!(page.contains("<li>no phishing</li>"));
    assert!(!page.contains("<script>alert"), "the file is shown as text");
    assert!(
        !page.contains("Safe harbour"),
        "the built-in text is replaced"
    );
}
both_backends!(an_operator_policy_file_replaces_the_built_in_policy_as_text);

async fn the_inbox_filters_by_state_severity_overdue_and_assignee(backend: Backend) {
    let app = spawn_app(backend).await;
    let (handled, _) = report(&app, "Handled report", "").await;
    report(&app, "Waiting report", "").await;
    transition(&app, &handled, State::Triaged, "Seen and understood.", "").await;
    let (staff, me) = app.logged_in_as(Role::Security).await;
    let mut tx = app.state.db.begin().await.unwrap();
    let d = disclosures::find(&mut tx, &handled).await.unwrap();
    disclosures::update(
        &mut tx,
        &handled,
        d.version,
        Some(trustplane::findings::model::Severity::High),
        Some(me.id.clone()),
        "staff:test@example.com",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let rows = |page: &str| page.matches("data-report=\"DSC-").count();
    let all = app.get(&staff, "/disclosures").await.text().await.unwrap();
    assert_eq!(rows(&all), 2);
    for (query, expected) in [
        ("state=triaged", "Handled report"),
        ("state=new", "Waiting report"),
        ("severity=high", "Handled report"),
        ("severity=unrated", "Waiting report"),
        ("assignee=none", "Waiting report"),
    ] {
        let page = app
            .get(&staff, &format!("/disclosures?{query}"))
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(rows(&page), 1, "{query}");
        assert!(page.contains(expected), "{query}");
    }
    let mine = app
        .get(&staff, &format!("/disclosures?assignee={}", me.email))
        .await
        .text()
        .await
        .unwrap();
    assert!(mine.contains("Handled report") && !mine.contains("Waiting report"));

    // Nothing is overdue until the 24-hour acknowledgement passes unanswered.
    let overdue = app
        .get(&staff, "/disclosures?overdue=1")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(rows(&overdue), 0);
    assert!(overdue.contains("No reports match"));
    app.clock.advance(24 * HOUR);
    let (staff, _) = app.logged_in_as(Role::Security).await;
    let overdue = app
        .get(&staff, "/disclosures?overdue=1")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(rows(&overdue), 1);
    assert!(overdue.contains("Waiting report"));
    let bad = app.get(&staff, "/disclosures?state=bogus").await;
    assert_eq!(bad.status(), 400);
}
both_backends!(the_inbox_filters_by_state_severity_overdue_and_assignee);

async fn the_public_disclosure_pages_share_the_per_network_page_limit(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.trust_requests_per_minute = 3).await;
    let client = app.client();
    for path in ["/.well-known/security.txt", "/security", "/security/report"] {
        assert_eq!(app.get(&client, path).await.status(), 200, "{path}");
    }
    for path in [
        "/security.txt",
        "/security/acknowledgements",
        "/security/reports/0000000000000000000000000000000000000000000",
    ] {
        let limited = app.get(&client, path).await;
        assert_eq!(limited.status(), 429, "{path}");
        assert!(limited.headers().contains_key("retry-after"));
        assert!(
            limited
                .text()
                .await
                .unwrap()
                .contains("Too many requests from your network")
        );
    }
}
both_backends!(the_public_disclosure_pages_share_the_per_network_page_limit);

/// A fresh Ed25519 OpenPGP key that signs; (armoured secret key, armoured public key).
fn openpgp_key(passphrase: Option<&str>) -> (String, String) {
    use pgp::composed::{ArmorOptions, KeyType, SecretKeyParamsBuilder};
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id("Security Team <security@example.com>".into())
        .passphrase(passphrase.map(str::to_owned));
    let key = params
        .build()
        .unwrap()
        .generate(rand::thread_rng())
        .unwrap();
    (
        key.to_armored_string(ArmorOptions::default()).unwrap(),
        key.to_public_key()
            .to_armored_string(ArmorOptions::default())
            .unwrap(),
    )
}

#[tokio::test]
async fn security_txt_carries_a_cleartext_signature_that_gpg_verifies_when_a_key_is_configured() {
    use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = openpgp_key(None);
    let key_path = dir.path().join("security-txt.asc");
    std::fs::write(&key_path, &secret).unwrap();
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.public_url = "https://trust.example.com".into();
        c.security_txt_openpgp_key = key_path.display().to_string();
    })
    .await;
    let researcher = app.client();
    let response = app.get(&researcher, "/.well-known/security.txt").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    let signed = response.text().await.unwrap();
    assert!(
        signed.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\n"),
        "{signed}"
    );
    assert!(signed.trim_end().ends_with("-----END PGP SIGNATURE-----"));

    // The signature verifies with the public key, over the fields a researcher reads.
    let (message, _) = CleartextSignedMessage::from_string(&signed).unwrap();
    let (public_key, _) = SignedPublicKey::from_string(&public).unwrap();
    message.verify(&public_key).unwrap();
    let text = message.signed_text();
    assert!(text.contains("Contact: https://trust.example.com/security/report"));
    assert!(text.contains("Canonical: https://trust.example.com/.well-known/security.txt"));
    let expires = text
        .lines()
        .find_map(|l| l.strip_prefix("Expires: "))
        .expect("Expires line");
    assert!(expires.ends_with("T00:00:00Z"), "a whole day: {expires}");

    // Later the same day the same signed document is served; the next day a new one.
    app.clock.advance(HOUR);
    assert_eq!(
        app.get(&researcher, "/security.txt")
            .await
            .text()
            .await
            .unwrap(),
        signed
    );
    app.clock.advance(DAY);
    let next_day = app
        .get(&researcher, "/security.txt")
        .await
        .text()
        .await
        .unwrap();
    assert_ne!(next_day, signed);
    let (message, _) = CleartextSignedMessage::from_string(&next_day).unwrap();
    message.verify(&public_key).unwrap();

    // GnuPG, what a researcher would run, accepts it; and refuses a tampered copy.
    let home = dir.path().join("gnupg");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str], input: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new("gpg")
            .arg("--homedir")
            .arg(&home)
            .args(["--batch", "--no-tty"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("gpg (Debian: gnupg) must be installed");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = gpg(&["--import"], &public);
    assert!(ok, "{err}");
    let (ok, err) = gpg(&["--verify"], &next_day);
    assert!(ok, "gpg --verify: {err}");
    assert!(err.contains("Good signature"), "{err}");
    let tampered = next_day.replace(
        "Contact: https://trust.example.com",
        "Contact: https://evil.example",
    );
    let (ok, err) = gpg(&["--verify"], &tampered);
    assert!(!ok, "a tampered security.txt must not verify: {err}");
}

#[tokio::test]
async fn a_security_txt_key_that_cannot_sign_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, _) = openpgp_key(Some("correct horse battery staple"));
    let protected = dir.path().join("protected.asc");
    std::fs::write(&protected, &secret).unwrap();
    let garbage = dir.path().join("garbage.asc");
    std::fs::write(&garbage, "not a key").unwrap();
    for (path, expected) in [
        (protected, "cannot sign"),
        (garbage, "not an ASCII-armoured OpenPGP secret key"),
        (dir.path().join("missing.asc"), "missing.asc"),
    ] {
        let mut config = test_config(
            dir.path(),
            &format!("sqlite://{}?mode=rwc", dir.path().join("tp.db").display()),
        );
        config.security_txt_openpgp_key = path.display().to_string();
        let err = trustplane::server::build_state(
            config,
            trustplane::clock::ManualClock::new(T0),
            trustplane::crypto::Keyring::generate(),
        )
        .await
        .expect_err("a key that cannot sign must stop the start");
        assert!(format!("{err:#}").contains(expected), "{err:#}");
    }
}

async fn staff_attach_files_to_a_report_that_the_researcher_never_sees(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, status_path) = report(&app, "Key prefix leak", "rae@example.com").await;
    let (staff, person) = app.logged_in_as(Role::Security).await;
    let detail_path = format!("/disclosures/{id}");
    let attach = |client: reqwest::Client, files: Vec<(&'static str, Vec<u8>)>| {
        let app = &app;
        let detail_path = detail_path.clone();
        async move {
            let page = app.get(&client, &detail_path).await.text().await.unwrap();
            let mut form = reqwest::multipart::Form::new().text("csrf", csrf_of(&page));
            for (name, bytes) in files {
                form = form.part(
                    "files",
                    reqwest::multipart::Part::bytes(bytes).file_name(name),
                );
            }
            client
                .post(app.url(&format!("{detail_path}/attachments")))
                .multipart(form)
                .send()
                .await
                .unwrap()
        }
    };
    let patch = b"--- a/src/keys/format.rs\n+++ b/src/keys/format.rs\n@@ fix @@\n".to_vec();
    let response = attach(staff.clone(), vec![("fix.patch", patch.clone())]).await;
    assert_eq!(response.status(), 303, "back to the report");
    let detail = app.get(&staff, &detail_path).await.text().await.unwrap();
    // Stored under a safe name with the extension of what it holds (plain text).
    assert!(detail.contains("fix.txt"), "{detail}");
    assert!(
        detail.contains(&person.email),
        "listed as uploaded by the person"
    );
    let sha = trustplane::crypto::sha256_hex(&patch);
    assert!(detail.contains(&sha));
    let audited: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'disclosure.attachment_add' \
         AND target = $1 AND actor = $2",
    )
    .bind(format!("disclosure:{id}"))
    .bind(format!("staff:{}", person.email))
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap()
    .get("n");
    assert_eq!(audited, 1);

    // The file downloads intact; the researcher's status page does not list it.
    let file_id: String = sqlx::query(
        "SELECT id FROM disclosure_attachments WHERE disclosure_id = $1 AND file_name = 'fix.txt'",
    )
    .bind(&id)
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap()
    .get("id");
    let download = app
        .get(&staff, &format!("{detail_path}/attachments/{file_id}"))
        .await;
    assert_eq!(download.status(), 200);
    assert!(
        download.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(download.bytes().await.unwrap().as_ref(), patch.as_slice());
    let status = app
        .get(&app.client(), &status_path)
        .await
        .text()
        .await
        .unwrap();
    assert!(!status.contains("fix.txt"), "{status}");

    // A file of the wrong type and an empty upload are refused and add nothing; a reader
    // cannot attach at all.
    let response = attach(
        staff.clone(),
        vec![("tool.exe", b"MZ\x90\x00binary".to_vec())],
    )
    .await;
    assert_eq!(response.status(), 400);
    let response = attach(staff.clone(), Vec::new()).await;
    assert_eq!(response.status(), 400);
    let (auditor, _) = app.logged_in_as(Role::Auditor).await;
    let response = attach(auditor, vec![("note.txt", b"hello".to_vec())]).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM disclosure_attachments WHERE disclosure_id = '{id}'"
        ))
        .await,
        1
    );
}
both_backends!(staff_attach_files_to_a_report_that_the_researcher_never_sees);
