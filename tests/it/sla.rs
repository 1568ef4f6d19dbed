//! SLA clocks: breach at the exact deadline, reminders and escalations through a real SMTP
//! server, two nodes never escalating twice, pause/resume, business days over Christmas,
//! signed webhooks to a loopback receiver, the SLA page and `sla list --json`.

use std::sync::{Arc, Mutex};

use chrono::TimeZone;
use hmac::{Hmac, Mac};
use trustplane::audit::RequestMeta;
use trustplane::clock::{HOUR, MINUTE, Millis};
use trustplane::jobs::Scheduler;
use trustplane::sla::{
    self, ClockFilter, ClockSpec, ClockState, Duration, EventKind, Page, SlaClock, SlaError,
    Subject, SubjectKind,
};
use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;
use crate::mail::{SmtpServer, free_port};

const ACTOR: &str = "staff:lead@example.com";

fn incident(id: &str) -> Subject {
    Subject::new(SubjectKind::Incident, id)
}

fn spec<'a>(app: &'a TestApp, subject: Subject, duration: Duration) -> ClockSpec<'a> {
    ClockSpec {
        subject,
        name: "triage",
        target: "Triage within the hour",
        duration,
        calendar: &app.state.sla_calendar,
        notify_to: vec!["oncall@example.com".into()],
        escalate_to: vec!["lead@example.com".into()],
        link_path: "/incidents/INC-1",
        reminder_fraction: None,
        escalation_interval: None,
    }
}

async fn start(app: &TestApp, spec: &ClockSpec<'_>) -> SlaClock {
    let mut tx = app.state.db.begin().await.unwrap();
    let clock = sla::start(
        &mut tx,
        app.state.now(),
        spec,
        ACTOR,
        &RequestMeta::default(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    clock
}

async fn stop(app: &TestApp, subject: &Subject, name: &str) -> SlaClock {
    let mut tx = app.state.db.begin().await.unwrap();
    let clock = sla::stop(
        &mut tx,
        app.state.now(),
        subject,
        name,
        ACTOR,
        &RequestMeta::default(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    clock
}

async fn clock_of(app: &TestApp, subject: &Subject) -> SlaClock {
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    sla::for_subject(&mut conn, subject)
        .await
        .unwrap()
        .remove(0)
}

async fn watch(app: &TestApp) -> sla::watch::WatchReport {
    sla::watch::run(&app.state).await.unwrap()
}

async fn event_kinds(app: &TestApp, subject: &Subject) -> Vec<EventKind> {
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    sla::events_for_subject(&mut conn, subject)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

async fn a_clock_is_breached_at_its_deadline_not_a_millisecond_before(backend: Backend) {
    let app = spawn_app(backend).await;
    let subject = incident("INC-1");
    let clock = start(&app, &spec(&app, subject.clone(), Duration::Hours(1))).await;
    assert_eq!(clock.due_at, T0 + HOUR);

    app.clock.set(clock.due_at - 1);
    assert_eq!(watch(&app).await.breached, 0);
    assert_eq!(clock_of(&app, &subject).await.state, ClockState::Running);
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let breached_filter = ClockFilter {
        state: Some(ClockState::Breached),
        kind: None,
    };
    let (_, shown) = sla::list(&mut conn, app.state.now(), &breached_filter, Page::all())
        .await
        .unwrap();
    assert_eq!(shown, 0, "59:59.999 is not breached");
    drop(conn);

    app.clock.set(clock.due_at);
    let report = watch(&app).await;
    assert_eq!((report.breached, report.escalated), (1, 1));
    let breached = clock_of(&app, &subject).await;
    assert_eq!(breached.state, ClockState::Breached);
    assert_eq!(breached.breached_at, Some(clock.due_at));
    assert_eq!(watch(&app).await.breached, 0, "recorded once");

    // Done late: still a breach, now stopped; nothing is escalated any more.
    app.clock.advance(5 * MINUTE);
    let stopped = stop(&app, &subject, "triage").await;
    assert_eq!(stopped.state, ClockState::Breached);
    assert_eq!(stopped.stopped_at, Some(clock.due_at + 5 * MINUTE));
    assert_eq!(
        event_kinds(&app, &subject).await,
        [
            EventKind::Started,
            EventKind::Breached,
            EventKind::Escalated,
            EventKind::Stopped
        ]
    );
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let record = sla::record(&mut conn, app.state.now(), SubjectKind::Incident, T0)
        .await
        .unwrap();
    assert_eq!((record.met, record.breached), (0, 1));
    let actions: Vec<String> = app.audit_actions().await.into_iter().map(|a| a.0).collect();
    for action in ["sla.start", "sla.breach", "sla.escalate", "sla.stop"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    assert!(trustplane::audit::verify(&app.state.db).await.unwrap().ok());
}
both_backends!(a_clock_is_breached_at_its_deadline_not_a_millisecond_before);

async fn deliver_mail(app: &TestApp) {
    let summary = Scheduler::new(app.state.clone())
        .unwrap()
        .run_now("outbox_deliver")
        .await
        .unwrap();
    assert!(summary.ok, "{:?}", summary.error);
    assert_eq!(summary.counts["retried"], 0, "{}", summary.counts);
}

fn messages(server: &SmtpServer) -> usize {
    server.received().matches("MESSAGE FOLLOWS").count()
}

fn wait_for_messages(server: &SmtpServer, expected: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while messages(server) < expected && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(messages(server), expected, "{}", server.received());
}

async fn escalations_repeat_once_per_interval_by_email_and_stop_with_the_clock(backend: Backend) {
    let port = free_port();
    let server = SmtpServer::start(port);
    let app = spawn_app_with(backend, |c| c.smtp_url = format!("smtp://127.0.0.1:{port}")).await;
    let subject = incident("INC-1");
    let clock = start(
        &app,
        &ClockSpec {
            reminder_fraction: Some(0.75),
            escalation_interval: Some(20 * MINUTE),
            ..spec(&app, subject.clone(), Duration::Millis(40 * MINUTE))
        },
    )
    .await;

    // The reminder at 75 % of the time, to notify_to only, once.
    app.clock.set(T0 + 30 * MINUTE - 1);
    assert_eq!(watch(&app).await.reminded, 0);
    app.clock.set(T0 + 30 * MINUTE);
    let report = watch(&app).await;
    assert_eq!((report.reminded, report.emails), (1, 1));
    assert_eq!(watch(&app).await.reminded, 0, "one reminder");
    deliver_mail(&app).await;
    wait_for_messages(&server, 1);
    assert!(
        server
            .received()
            .contains("Reminder: Triage within the hour is due in 10m 0s")
    );

    // The breach escalates at once to notify_to and escalate_to.
    let first = clock.due_at;
    app.clock.set(first);
    let report = watch(&app).await;
    assert_eq!((report.escalated, report.emails), (1, 2));
    deliver_mail(&app).await;
    wait_for_messages(&server, 3);
    let received = server.received();
    assert!(received.contains("lead@example.com") && received.contains("/incidents/INC-1"));

    // Not again within the interval, again exactly at it.
    app.clock.set(first + 20 * MINUTE - 1);
    assert_eq!(watch(&app).await.escalated, 0);
    app.clock.set(first + 20 * MINUTE);
    assert_eq!(watch(&app).await.escalated, 1);
    deliver_mail(&app).await;
    wait_for_messages(&server, 5);

    // Stopped: no more escalations, however long we wait.
    app.clock.advance(MINUTE);
    stop(&app, &subject, "triage").await;
    for _ in 0..3 {
        app.clock.advance(HOUR);
        assert_eq!(watch(&app).await.escalated, 0);
    }
    deliver_mail(&app).await;
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(messages(&server), 5, "nothing after the stop");
    let stored = clock_of(&app, &subject).await;
    assert_eq!((stored.escalations_sent, stored.reminders_sent), (2, 1));
    let queued = app
        .count(&format!(
            "SELECT COUNT(*) FROM outbox WHERE related = 'sla:{}'",
            clock.id
        ))
        .await;
    assert_eq!(queued, 5);
}
both_backends!(escalations_repeat_once_per_interval_by_email_and_stop_with_the_clock);

async fn two_nodes_watching_at_once_send_each_escalation_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let other = app.second_node().await;
    for n in 0..6 {
        start(
            &app,
            &ClockSpec {
                escalation_interval: Some(10 * MINUTE),
                ..spec(&app, incident(&format!("INC-{n}")), Duration::Hours(1))
            },
        )
        .await;
    }
    for round in 1..=3_i64 {
        app.clock.set(T0 + HOUR + (round - 1) * 10 * MINUTE);
        let (a, b) = tokio::join!(sla::watch::run(&app.state), sla::watch::run(&other));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.escalated + b.escalated, 6, "round {round}: {a:?} {b:?}");
        assert_eq!(a.emails + b.emails, 12, "round {round}");
        assert_eq!(a.breached + b.breached, if round == 1 { 6 } else { 0 });
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE related LIKE 'sla:%'")
            .await,
        3 * 12
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM sla_events WHERE kind = 'escalated'")
            .await,
        3 * 6
    );

    // Through the scheduler: the job lease gives each occurrence to one node.
    let (sa, sb) = (
        Scheduler::new(app.state.clone()).unwrap(),
        Scheduler::new(other).unwrap(),
    );
    app.clock.set(T0 + HOUR + 30 * MINUTE);
    let (ra, rb) = tokio::join!(sa.tick(), sb.tick());
    let runs: Vec<_> = ra
        .unwrap()
        .into_iter()
        .chain(rb.unwrap())
        .filter(|r| r.job == "sla_watch")
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].counts["escalated"], 6, "{:?}", runs[0].counts);
}
both_backends!(two_nodes_watching_at_once_send_each_escalation_once);

async fn pausing_moves_the_deadline_by_the_paused_time(backend: Backend) {
    let app = spawn_app(backend).await;
    let subject = Subject::new(SubjectKind::Disclosure, "DSC-7");
    let meta = RequestMeta::default();
    let clock = start(
        &app,
        &ClockSpec {
            name: "acknowledge",
            reminder_fraction: Some(0.5),
            ..spec(&app, subject.clone(), Duration::Hours(1))
        },
    )
    .await;
    assert_eq!(clock.remind_at, Some(T0 + 30 * MINUTE));

    app.clock.set(T0 + 10 * MINUTE);
    let mut tx = app.state.db.begin().await.unwrap();
    let resumed_early = sla::resume(
        &mut tx,
        app.state.now(),
        &subject,
        "acknowledge",
        ACTOR,
        &meta,
    )
    .await;
    assert!(
        matches!(resumed_early, Err(SlaError::WrongState { .. })),
        "{resumed_early:?}"
    );
    let paused = sla::pause(
        &mut tx,
        app.state.now(),
        &subject,
        "acknowledge",
        "waiting for the reporter",
        ACTOR,
        &meta,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(paused.state, ClockState::Paused);

    // Long past the original deadline: a paused clock neither reminds nor breaches.
    app.clock.set(T0 + 2 * HOUR + 10 * MINUTE);
    let report = watch(&app).await;
    assert_eq!((report.breached, report.reminded), (0, 0));

    let mut tx = app.state.db.begin().await.unwrap();
    let resumed = sla::resume(
        &mut tx,
        app.state.now(),
        &subject,
        "acknowledge",
        ACTOR,
        &meta,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(resumed.state, ClockState::Running);
    assert_eq!(resumed.due_at, T0 + 3 * HOUR, "shifted by the 2 h paused");
    assert_eq!(resumed.paused_total_ms, 2 * HOUR);
    assert_eq!(resumed.remind_at, Some(T0 + 2 * HOUR + 30 * MINUTE));

    app.clock.set(T0 + 3 * HOUR - 1);
    let report = watch(&app).await;
    assert_eq!((report.breached, report.reminded), (0, 1));
    app.clock.set(T0 + 3 * HOUR);
    assert_eq!(watch(&app).await.breached, 1);

    let mut tx = app.state.db.begin().await.unwrap();
    let again = sla::pause(
        &mut tx,
        app.state.now(),
        &subject,
        "acknowledge",
        "x",
        ACTOR,
        &meta,
    )
    .await;
    assert!(
        matches!(again, Err(SlaError::WrongState { .. })),
        "breached clocks do not pause"
    );
    drop(tx);
    assert_eq!(
        event_kinds(&app, &subject).await,
        [
            EventKind::Started,
            EventKind::Paused,
            EventKind::Resumed,
            EventKind::Reminded,
            EventKind::Breached,
            EventKind::Escalated
        ]
    );

    // Stopping a paused clock meets it: the paused time does not count.
    let other = Subject::new(SubjectKind::Disclosure, "DSC-8");
    start(&app, &spec(&app, other.clone(), Duration::Hours(1))).await;
    let mut tx = app.state.db.begin().await.unwrap();
    sla::pause(
        &mut tx,
        app.state.now(),
        &other,
        "triage",
        "reporter away",
        ACTOR,
        &meta,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    app.clock.advance(5 * HOUR);
    assert_eq!(stop(&app, &other, "triage").await.state, ClockState::Met);
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    let events = sla::events_after(&mut conn, SubjectKind::Disclosure, 0, 100)
        .await
        .unwrap();
    assert_eq!(events.last().map(|e| e.kind), Some(EventKind::Stopped));
    let later = sla::events_after(&mut conn, SubjectKind::Disclosure, events[2].id, 100)
        .await
        .unwrap();
    assert_eq!(later.len(), events.len() - 3, "events after an id");
}
both_backends!(pausing_moves_the_deadline_by_the_paused_time);

/// The instant of a wall time in Berlin.
fn berlin(y: i32, m: u32, d: u32, h: u32) -> Millis {
    chrono_tz::Europe::Berlin
        .with_ymd_and_hms(y, m, d, h, 0, 0)
        .single()
        .unwrap()
        .timestamp_millis()
}

async fn a_business_day_clock_skips_christmas_and_new_year(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.sla_timezone = "Europe/Berlin".into();
        c.sla_holidays = ["2026-12-24", "2026-12-25", "2026-12-26", "2027-01-01"]
            .map(str::to_owned)
            .to_vec();
    })
    .await;
    // Wednesday 23 December 2026, 10:00 in Berlin.
    app.clock.set(berlin(2026, 12, 23, 10));
    let subject = Subject::new(SubjectKind::Disclosure, "DSC-1");
    let clock = start(
        &app,
        &spec(&app, subject.clone(), Duration::BusinessDays(5)),
    )
    .await;
    // 28, 29, 30, 31 December, then 1 January is a holiday and 2–3 a weekend: Monday 4th.
    assert_eq!(clock.due_at, berlin(2027, 1, 4, 10));

    app.clock.set(clock.due_at - 1);
    assert_eq!(watch(&app).await.breached, 0);
    app.clock.set(clock.due_at);
    assert_eq!(watch(&app).await.breached, 1);
}
both_backends!(a_business_day_clock_skips_christmas_and_new_year);

type Hooks = Arc<Mutex<Vec<(String, serde_json::Value, bool)>>>;

/// A webhook receiver on loopback: checks the signature and fails its first request.
async fn receiver(secret: &'static str) -> (String, Hooks) {
    use axum::http::{HeaderMap, StatusCode};
    let hooks: Hooks = Arc::default();
    let seen = hooks.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                mac.update(&body);
                let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                let given = headers
                    .get("x-trustplane-signature-256")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let event = headers
                    .get("x-trustplane-event")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let json = serde_json::from_slice(&body).unwrap_or_default();
                let mut all = seen.lock().unwrap();
                all.push((event, json, given == expected));
                if all.len() == 1 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), hooks)
}

async fn webhooks_are_signed_and_retried_until_the_receiver_accepts(backend: Backend) {
    const SECRET: &str = "a-receiver-secret-of-some-length";
    let (url, hooks) = receiver(SECRET).await;
    let hook_url = url.clone();
    let app = spawn_app_with(backend, move |c| {
        c.sla_webhooks = vec![trustplane::config::SlaWebhook {
            url: hook_url,
            secret_env: "TRUSTPLANE_WEBHOOK_SECRET_TEST".into(),
        }];
    })
    .await;
    let receivers = [sla::webhook::Receiver {
        url: url.clone(),
        secret: sla::webhook::WebhookSecret::new(SECRET.to_owned()),
    }];
    let subject = incident("INC-9");
    let clock = start(
        &app,
        &ClockSpec {
            reminder_fraction: Some(0.5),
            ..spec(&app, subject, Duration::Hours(2))
        },
    )
    .await;

    app.clock.set(T0 + HOUR);
    assert_eq!(watch(&app).await.webhooks, 1);
    let deliver = |now: Millis| sla::webhook::deliver_due(&app.state.db, &receivers, now);
    let first = deliver(T0 + HOUR).await.unwrap();
    assert_eq!(
        (first.sent, first.retried),
        (0, 1),
        "the receiver fails first"
    );
    let early = deliver(T0 + HOUR + MINUTE).await.unwrap();
    assert_eq!((early.sent, early.retried), (0, 0), "waits for the backoff");
    let second = deliver(T0 + HOUR + 2 * MINUTE).await.unwrap();
    assert_eq!(second.sent, 1);

    {
        let seen = hooks.lock().unwrap();
        assert_eq!(seen.len(), 2);
        for (event, body, valid) in seen.iter() {
            assert!(valid, "signature verifies");
            assert_eq!(event, "sla.reminder");
            assert_eq!(body["event"], "sla.reminder");
            assert_eq!(body["clock"]["id"], clock.id.as_str());
            assert_eq!(body["clock"]["state"], "running");
        }
    }

    // The breach sends a breach and an escalation hook.
    app.clock.set(clock.due_at);
    assert_eq!(watch(&app).await.webhooks, 2);
    assert_eq!(deliver(clock.due_at).await.unwrap().sent, 2);
    let mut events: Vec<String> = hooks.lock().unwrap().iter().map(|h| h.0.clone()).collect();
    events.sort();
    assert_eq!(
        events,
        [
            "sla.breached",
            "sla.escalation",
            "sla.reminder",
            "sla.reminder"
        ]
    );
    assert!(
        hooks.lock().unwrap().iter().all(|h| h.2),
        "every signature verifies"
    );

    // A receiver with another secret would refuse: the signature depends on the secret.
    let other = sla::webhook::signature(
        &sla::webhook::WebhookSecret::new("another-secret-entirely".into()),
        b"{}",
    );
    let ours = sla::webhook::signature(&receivers[0].secret, b"{}");
    assert_ne!(other, ours);
    assert!(ours.starts_with("sha256=") && ours.len() == 7 + 64);
    assert!(
        !app.database_dump().await.contains(SECRET),
        "secret never stored"
    );
}
both_backends!(webhooks_are_signed_and_retried_until_the_receiver_accepts);

async fn the_sla_page_lists_every_kind_with_a_server_rendered_countdown(backend: Backend) {
    let app = spawn_app(backend).await;
    start(&app, &spec(&app, incident("INC-1"), Duration::Hours(1))).await;
    let finding = Subject::new(SubjectKind::Finding, "FND-1");
    start(
        &app,
        &ClockSpec {
            name: "remediation",
            link_path: "/findings/FND-1",
            ..spec(&app, finding, Duration::Millis(10 * MINUTE))
        },
    )
    .await;
    app.clock.advance(20 * MINUTE);
    let (client, _) = app.logged_in_as(Role::Compliance).await;

    let response = app.get(&client, "/sla").await;
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let page = response.text().await.unwrap();
    assert!(
        page.contains("incident:INC-1") && page.contains("finding:FND-1"),
        "{page}"
    );
    assert!(page.contains("class=\"countdown normal\""), "{page}");
    assert!(page.contains("class=\"countdown red\""), "{page}");
    assert!(page.contains(&format!("data-due-ms=\"{}\"", T0 + HOUR)));
    assert!(page.contains("<script src=\"/static/countdown.js\" defer></script>"));

    let breached = app
        .get(&client, "/sla?state=breached")
        .await
        .text()
        .await
        .unwrap();
    assert!(breached.contains("finding:FND-1") && !breached.contains("incident:INC-1"));
    let incidents = app
        .get(&client, "/sla?kind=incident")
        .await
        .text()
        .await
        .unwrap();
    assert!(incidents.contains("incident:INC-1") && !incidents.contains("finding:FND-1"));
    let bad = app.get(&client, "/sla?state=late").await;
    assert_eq!(bad.status(), 400);

    let script = app.get(&client, "/static/countdown.js").await;
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
}
both_backends!(the_sla_page_lists_every_kind_with_a_server_rendered_countdown);

fn trustplane_cli(app: &TestApp) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trustplane"));
    cmd.current_dir(app.dir.path());
    for (key, _) in std::env::vars() {
        if key.starts_with("TRUSTPLANE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("TRUSTPLANE_DATABASE_URL", &app.database_url);
    cmd
}

fn listed(app: &TestApp, args: &[&str]) -> Vec<serde_json::Value> {
    let out = trustplane_cli(app)
        .args(["sla", "list", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

async fn sla_list_prints_one_json_array(backend: Backend) {
    let app = spawn_app(backend).await;
    // Decades long, so it is running whatever the real date is when the CLI looks.
    let running = start(
        &app,
        &spec(&app, incident("INC-1"), Duration::Hours(50 * 365 * 24)),
    )
    .await;
    let met = start(&app, &spec(&app, incident("INC-2"), Duration::Hours(1))).await;
    stop(&app, &met.subject, "triage").await;
    let finding = Subject::new(SubjectKind::Finding, "FND-1");
    start(&app, &spec(&app, finding, Duration::Millis(MINUTE))).await;
    app.clock.advance(MINUTE);
    assert_eq!(watch(&app).await.breached, 1);

    let all = listed(&app, &[]);
    assert_eq!(all.len(), 3);
    assert!(all.iter().any(|c| c["id"] == running.id.as_str()));
    let met_only = listed(&app, &["--state", "met"]);
    assert_eq!(met_only.len(), 1);
    assert_eq!(met_only[0]["subject_id"], "INC-2");
    assert_eq!(met_only[0]["state"], "met");
    let findings = listed(&app, &["--kind", "finding"]);
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0]["state"], "breached");
    assert_eq!(findings[0]["subject_kind"], "finding");

    let bad = trustplane_cli(&app)
        .args(["sla", "list", "--state", "late"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("use running, paused, met or breached"));
    let table = trustplane_cli(&app).args(["sla", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("finding:FND-1"));
}
both_backends!(sla_list_prints_one_json_array);
