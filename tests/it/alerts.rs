//! Monitoring end to end: a flood of forged keys from one network opens exactly one alert and
//! one incident on the scheduler's own tick, with the evidence chart, the triage clock running
//! and the on-call person paged through a real SMTP server; nothing stored names a full key or
//! a full address. Alertmanager intake: token, malformed bodies, dedupe, resolution. Login
//! failures, false positives, the settings page, per-key charts and the counters' purge.

use futures_util::StreamExt;
use sqlx::Row;
use trustplane::audit::RequestMeta;
use trustplane::clock::{DAY, HOUR, MINUTE, SECOND};
use trustplane::jobs::Scheduler;
use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;
use crate::mail::{SmtpServer, free_port};

async fn set_rotation(app: &TestApp) {
    app.create_staff("ana@example.com", &[Role::Security], true)
        .await;
    let mut tx = app.state.db.begin().await.unwrap();
    trustplane::oncall::set_rotation(
        &mut tx,
        &trustplane::oncall::RotationInput {
            member_emails: &["ana@example.com".to_owned()],
            handoff: "Mon 09:00",
            timezone: "Europe/Berlin",
            escalation_email: None,
        },
        "test",
        &RequestMeta::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
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

/// Sends `count` forged keys (half well formed with a valid checksum, half junk) to
/// `/v1/faces/detect`, 64 at a time; returns the keys sent.
async fn forged_flood(app: &TestApp, count: usize) -> Vec<String> {
    let client = reqwest::Client::new();
    let keys: Vec<String> = (0..count)
        .map(|i| {
            if i % 2 == 0 {
                trustplane::keys::format::generate(trustplane::keys::format::KeyEnv::Live)
            } else {
                format!("tp_live_forged{i:020}xxxxxx")
            }
        })
        .collect();
    let url = app.url("/v1/faces/detect");
    let statuses: Vec<u16> = futures_util::stream::iter(keys.clone())
        .map(|key| {
            let client = client.clone();
            let url = url.clone();
            async move {
                client
                    .post(&url)
                    .header("x-api-key", key)
                    .header("content-type", "image/jpeg")
                    .body(vec![0u8; 16])
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 401));
    keys
}

/// Everything the monitoring, incident and outbox tables hold, as one string.
async fn monitoring_text(app: &TestApp) -> String {
    let mut out = String::new();
    for sql in [
        "SELECT subject || ' ' || subject_label || ' ' || summary || ' ' || evidence AS t FROM alerts",
        "SELECT kind || ' ' || subject AS t FROM signal_minutes",
        "SELECT kind || ' ' || subject AS t FROM signal_hours",
        "SELECT kind || ' ' || subject AS t FROM signal_baselines",
        "SELECT title || ' ' || description AS t FROM incidents",
        "SELECT body AS t FROM incident_timeline",
        "SELECT subject || ' ' || body_text AS t FROM outbox",
    ] {
        for row in sqlx::query(sql)
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap_or_default()
        {
            out.push_str(&row.get::<String, _>("t"));
            out.push('\n');
        }
    }
    out
}

async fn a_flood_of_forged_keys_from_one_network_opens_one_alert_and_one_incident_and_pages_on_call(
    backend: Backend,
) {
    let port = free_port();
    let server = SmtpServer::start(port);
    let app = spawn_app_with(backend, |c| c.smtp_url = format!("smtp://127.0.0.1:{port}")).await;
    set_rotation(&app).await;
    // Scheduled jobs that have never run would all run at the first tick; mark them done so
    // the tick below runs only what is due now.
    let scheduler = Scheduler::new(app.state.clone()).unwrap();
    scheduler.tick().await.unwrap();

    // 10 000 forged keys within the minute 08:00.
    app.clock.advance(10 * SECOND);
    let mut sent = forged_flood(&app, 5_000).await;
    app.clock.advance(30 * SECOND);
    sent.extend(forged_flood(&app, 5_000).await);

    // The scheduler's own tick at 08:01:05 evaluates the minute 08:00.
    app.clock.set(T0 + MINUTE + 5 * SECOND);
    let runs = scheduler.tick().await.unwrap();
    let detect = runs
        .iter()
        .find(|r| r.job == "alerts_detect")
        .expect("alerts_detect is due every minute");
    assert!(detect.ok, "{:?}", detect.error);
    assert_eq!(detect.counts["alerts_raised"], 1, "{}", detect.counts);
    assert_eq!(detect.counts["incidents_opened"], 1, "{}", detect.counts);

    // The flood goes on in the next minute: the same alert, no second incident.
    forged_flood(&app, 500).await;
    app.clock.set(T0 + 2 * MINUTE + 5 * SECOND);
    scheduler.tick().await.unwrap();
    assert_eq!(app.count("SELECT COUNT(*) FROM alerts").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM incidents WHERE source = 'alert'")
            .await,
        1
    );
    assert_eq!(app.count("SELECT occurrences FROM alerts").await, 2);

    let alert = sqlx::query("SELECT id, detector, subject_label, incident_id FROM alerts")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    let alert_id: String = alert.get("id");
    let incident_id: String = alert.get("incident_id");
    assert_eq!(alert.get::<String, _>("detector"), "key_guess_network");
    assert_eq!(alert.get::<String, _>("subject_label"), "127.0.0.0/24");

    // The triage clock is running, from the end of the flood minute.
    let clock = sqlx::query(
        "SELECT state, due_at FROM sla_clocks WHERE subject_id = $1 AND name = 'triage'",
    )
    .bind(&incident_id)
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(clock.get::<String, _>("state"), "running");
    assert_eq!(clock.get::<i64, _>("due_at"), T0 + MINUTE + HOUR);

    // The alert page draws the evidence as an accessible chart with its numbers.
    let (client, _) = app.logged_in_as(Role::Security).await;
    let page = app
        .get(&client, &format!("/alerts/{alert_id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("<svg class=\"chart\""), "{page}");
    assert!(page.contains("role=\"img\""));
    assert!(page.contains("<title id=\"evidence-title\">"));
    assert!(page.contains("Data table of the chart"));
    assert!(page.contains("10000"), "the firing minute's value: {page}");
    let list = app
        .get(&client, "/alerts?state=open")
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains(&alert_id[..8]));

    // The on-call person gets the page through the outbox and a real SMTP server.
    run_job(&app, "outbox_deliver").await;
    assert!(server.wait_for("ana@example.com"), "{}", server.received());
    assert!(server.received().contains("Alert: INC-"));

    // Nothing stored names a full address or any of the forged keys.
    let stored = monitoring_text(&app).await;
    assert!(!stored.contains("127.0.0.1"), "{stored}");
    for key in sent.iter().step_by(97) {
        assert!(!stored.contains(key.as_str()), "a forged key was stored");
    }
    let audit = app.audit_text().await;
    assert!(sent.iter().step_by(97).all(|k| !audit.contains(k.as_str())));
}
both_backends!(
    a_flood_of_forged_keys_from_one_network_opens_one_alert_and_one_incident_and_pages_on_call
);

async fn steady_refusals_below_the_minimum_raise_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    for minute in 0..5 {
        app.clock.set(T0 + minute * MINUTE + SECOND);
        forged_flood(&app, 20).await;
    }
    app.clock.set(T0 + 5 * MINUTE + 5 * SECOND);
    let counts = run_job(&app, "alerts_detect").await;
    assert!(
        counts["minutes_evaluated"].as_i64().unwrap() >= 5,
        "{counts}"
    );
    assert_eq!(counts["alerts_raised"], 0, "{counts}");
    assert_eq!(app.count("SELECT COUNT(*) FROM incidents").await, 0);
}
both_backends!(steady_refusals_below_the_minimum_raise_nothing);

const TOKEN: &str = "am-token-0123456789abcdef0123";

fn payload(status: &str, fingerprint: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"RetentionControlFailing\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "trustplane",
        "groupLabels": {"alertname": "RetentionControlFailing"},
        "commonLabels": {"alertname": "RetentionControlFailing", "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [{
            "status": status,
            "labels": {"alertname": "RetentionControlFailing", "severity": "critical", "kind": "production"},
            "annotations": {"summary": "Images older than the retention policy are kept"},
            "startsAt": "2027-01-15T07:58:00Z",
            "endsAt": if status == "resolved" { "2027-01-15T08:20:00Z" } else { "0001-01-01T00:00:00Z" },
            "generatorURL": "http://127.0.0.1:9090/graph",
            "fingerprint": fingerprint
        }]
    })
}

async fn hook(app: &TestApp, token: Option<&str>, body: String) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(app.url("/hooks/alertmanager"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn alertmanager_webhooks_open_deduplicate_and_resolve_incidents(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.alertmanager_token = TOKEN.into()).await;
    let firing = payload("firing", "a1b2c3d4e5f60718").to_string();

    // Wrong, missing and malformed.
    for token in [None, Some("wrong-token-wrong-token-wrong"), Some("")] {
        let response = hook(&app, token, firing.clone()).await;
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["type"], "urn:trustplane:problem:unauthorized");
    }
    for body in [
        "not json".to_owned(),
        r#"{"version":"4"}"#.to_owned(),
        payload("firing", "x").to_string().replace("\"4\"", "\"3\""),
        payload("firing", "").to_string(),
    ] {
        let response = hook(&app, Some(TOKEN), body).await;
        assert_eq!(response.status(), 400);
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:trustplane:problem:malformed");
    }
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(300 * 1024));
    assert_eq!(hook(&app, Some(TOKEN), huge).await.status(), 413);
    assert_eq!(app.count("SELECT COUNT(*) FROM incidents").await, 0);

    // Firing: one incident; the same fingerprint again (Alertmanager repeats) adds nothing.
    let response = hook(&app, Some(TOKEN), firing.clone()).await;
    assert_eq!(response.status(), 200);
    let report: serde_json::Value = response.json().await.unwrap();
    assert_eq!(report["opened"], 1);
    app.clock.advance(5 * MINUTE);
    let report: serde_json::Value = hook(&app, Some(TOKEN), firing.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["repeated"], 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM incidents WHERE source = 'alert'")
            .await,
        1
    );
    let incident_id: String = sqlx::query("SELECT incident_id FROM alerts")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
        .get("incident_id");
    let severity: String = sqlx::query("SELECT severity FROM incidents")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
        .get("severity");
    assert_eq!(severity, "SEV2", "severity=critical");

    // Resolved: the alert is resolved and the incident's timeline says so.
    let report: serde_json::Value = hook(
        &app,
        Some(TOKEN),
        payload("resolved", "a1b2c3d4e5f60718").to_string(),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(report["resolved"], 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM alerts WHERE state = 'resolved'")
            .await,
        1
    );
    let timeline = app
        .count(&format!(
            "SELECT COUNT(*) FROM incident_timeline WHERE incident_id = '{incident_id}' \
             AND body LIKE 'Alertmanager: RetentionControlFailing resolved%'"
        ))
        .await;
    assert_eq!(timeline, 1);

    // Firing again after resolution is a new alert, joined to the still-open incident.
    hook(&app, Some(TOKEN), firing).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM alerts").await, 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM incidents").await, 1);
}
both_backends!(alertmanager_webhooks_open_deduplicate_and_resolve_incidents);

async fn the_hook_is_off_without_a_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = hook(&app, Some(""), payload("firing", "f1").to_string()).await;
    assert_eq!(response.status(), 401);
}
both_backends!(the_hook_is_off_without_a_token);

async fn login_failures_alert_before_the_lockout(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = app
        .create_staff("bob@example.com", &[Role::Security], true)
        .await;
    let client = app.client();
    for _ in 0..5 {
        let response = app
            .login_password(&client, &staff.email, "wrong password here")
            .await;
        assert_eq!(response.status(), 401);
    }
    app.clock.set(T0 + MINUTE + 5 * SECOND);
    let counts = run_job(&app, "alerts_detect").await;
    // Five failures reach the account threshold (the lock-out comes at ten); the network
    // threshold (20) is not reached.
    assert_eq!(counts["alerts_raised"], 1, "{counts}");
    let label: String = sqlx::query("SELECT subject_label FROM alerts")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
        .get("subject_label");
    assert_eq!(label, "account bob@example.com");
    assert_eq!(app.count("SELECT COUNT(*) FROM incidents").await, 1);
}
both_backends!(login_failures_alert_before_the_lockout);

async fn a_false_positive_needs_a_reason_and_is_counted_on_the_settings_page(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.alertmanager_token = TOKEN.into()).await;
    hook(&app, Some(TOKEN), payload("firing", "fp01").to_string()).await;
    let alert_id: String = sqlx::query("SELECT id FROM alerts")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
        .get("id");
    let (client, _) = app.logged_in_as(Role::Security).await;
    let page = format!("/alerts/{alert_id}");
    let response = app
        .submit(
            &client,
            &page,
            &format!("/alerts/{alert_id}/state"),
            &[("state", "false_positive"), ("reason", "")],
        )
        .await;
    assert_eq!(response.status(), 400);
    let response = app
        .submit(
            &client,
            &page,
            &format!("/alerts/{alert_id}/state"),
            &[
                ("state", "false_positive"),
                ("reason", "planned retention test"),
            ],
        )
        .await;
    assert!(response.status().is_redirection() || response.status().is_success());
    assert_eq!(
        app.count("SELECT COUNT(*) FROM alerts WHERE state = 'false_positive'")
            .await,
        1
    );
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    let settings = app
        .get(&admin, "/alerts/settings")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        settings.contains(r#"data-false-positives="alertmanager">1<"#),
        "{settings}"
    );
    assert!(settings.contains(r#"data-threshold="z_score">6<"#));
}
both_backends!(a_false_positive_needs_a_reason_and_is_counted_on_the_settings_page);

async fn each_key_page_charts_its_traffic_by_status_class(backend: Backend) {
    let app = spawn_app(backend).await;
    let customer = app.create_customer("Acme", "live", 0).await;
    let (key_id, secret) = app.issue_key(&customer, "faces:detect").await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let response = client
            .get(app.url("/v1/images/00000000-0000-0000-0000-000000000000"))
            .header("x-api-key", &secret)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error());
    }
    app.state.signals.flush(&app.state.db).await.unwrap();
    let (staff, _) = app.logged_in_as(Role::Security).await;
    let page = app
        .get(&staff, &format!("/keys/{key_id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"data-chart="traffic-24h""#), "{page}");
    assert!(page.contains(r#"data-chart="traffic-7d""#));
    assert!(page.contains("Hour (UTC)") && page.contains("Requests per hour"));
    assert!(page.contains("3 requests in all"), "{page}");
    assert!(!page.contains(&secret));
}
both_backends!(each_key_page_charts_its_traffic_by_status_class);

async fn minute_counters_are_purged_after_their_window(backend: Backend) {
    let app = spawn_app(backend).await;
    forged_flood(&app, 3).await;
    app.state.signals.flush(&app.state.db).await.unwrap();
    // The network's 401s, and the two well-formed keys' prefixes.
    let rows = app.count("SELECT COUNT(*) FROM signal_minutes").await;
    assert_eq!(rows, 3);
    // 48 hours later exactly, the rows are still inside the window …
    app.clock.set(T0 + 2 * DAY);
    run_job(&app, "retention_purge").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM signal_minutes").await, rows);
    // … a millisecond later it is gone; the hour row stays 90 days. The ledger says so.
    app.clock.set(T0 + 2 * DAY + 1);
    run_job(&app, "retention_purge").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM signal_minutes").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM signal_hours").await, rows);
    assert_eq!(
        app.count("SELECT MAX(signal_rows_removed) FROM purge_ledger")
            .await,
        rows
    );
    // The hour rows go after 90 days.
    app.clock.set(T0 + 90 * DAY + 1);
    run_job(&app, "retention_purge").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM signal_hours").await, 0);
}
both_backends!(minute_counters_are_purged_after_their_window);

/// Real Prometheus scrapes a test server, a rule fires, real Alertmanager posts to the hook,
/// and an incident appears. Needs the Debian `prometheus` and `prometheus-alertmanager`
/// packages (`.ci/run` installs them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus"]
async fn alertmanager_end_to_end() {
    use std::process::{Command, Stdio};
    let app = spawn_app_with(Backend::Sqlite, |c| c.alertmanager_token = TOKEN.into()).await;
    let dir = tempfile::tempdir().unwrap();
    let prom_port = free_port();
    let am_port = free_port();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: trustplane\n    rules:\n      - alert: TrustplaneScraped\n        \
         expr: trustplane_demo_storage_quota_bytes > 0\n        labels: { severity: warning }\n        \
         annotations: { summary: \"Prometheus scrapes trustplane\" }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             scrape_configs:\n  - job_name: trustplane\n    static_configs: [{{ targets: [\"{}\"] }}]\n\
             rule_files: [\"{}\"]\n\
             alerting:\n  alertmanagers: [{{ static_configs: [{{ targets: [\"127.0.0.1:{am_port}\"] }}] }}]\n",
            app.addr,
            dir.path().join("rules.yml").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("alertmanager.yml"),
        format!(
            "route:\n  receiver: trustplane\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: trustplane\n    webhook_configs:\n      - url: {}/hooks/alertmanager\n        \
             send_resolved: true\n        http_config:\n          authorization: {{ credentials_file: {} }}\n",
            app.base,
            token_file.display()
        ),
    )
    .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _alertmanager = Kill(
        Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager"),
    );
    let _prometheus = Kill(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let n = app
            .count("SELECT COUNT(*) FROM incidents WHERE source = 'alert'")
            .await;
        if n >= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no incident from Alertmanager within 90 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let label: String =
        sqlx::query("SELECT subject_label FROM alerts WHERE source = 'alertmanager'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap()
            .get("subject_label");
    assert_eq!(label, "TrustplaneScraped");
}

/// Feeds the tally directly (as the request layer does) and runs the job every ten minutes
/// of manual time, the way the scheduler would catch up.
async fn feed_minutes(
    app: &TestApp,
    minutes: std::ops::Range<i64>,
    per_minute: impl Fn(
        i64,
    ) -> Vec<(
        Option<&'static str>,
        trustplane::alerts::signals::ApiCaller,
        bool,
        u16,
    )>,
) -> serde_json::Value {
    let mut raised = serde_json::json!({});
    for minute in minutes {
        for (ip, caller, demo, status) in per_minute(minute) {
            app.state.signals.record_api(
                T0 + minute * MINUTE + SECOND,
                ip,
                caller,
                demo,
                status,
                100,
            );
        }
        if minute % 10 == 9 {
            app.clock.set(T0 + (minute + 1) * MINUTE + 5 * SECOND);
            raised = run_job(app, "alerts_detect").await;
        }
    }
    raised
}

async fn a_key_spiking_against_its_own_baseline_alerts_after_its_warm_up(backend: Backend) {
    use trustplane::alerts::signals::ApiCaller;
    let app = spawn_app(backend).await;
    let customer = app.create_customer("Acme", "live", 0).await;
    let (key_id, _) = app.issue_key(&customer, "faces:detect").await;
    let steady = |_m: i64| {
        (0..40)
            .map(|_| {
                (
                    Some("203.0.113.9"),
                    ApiCaller::Key(key_id.clone()),
                    false,
                    200,
                )
            })
            .collect::<Vec<_>>()
    };
    // Two hours of 40 requests a minute: silent.
    feed_minutes(&app, 0..120, steady).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM alerts").await, 0);
    // Then 900 in one minute.
    let counts = feed_minutes(&app, 120..130, |m| {
        let n = if m == 125 { 900 } else { 40 };
        (0..n)
            .map(|_| {
                (
                    Some("203.0.113.9"),
                    ApiCaller::Key(key_id.clone()),
                    false,
                    200,
                )
            })
            .collect()
    })
    .await;
    assert_eq!(counts["alerts_raised"], 1, "{counts}");
    let row = sqlx::query("SELECT detector, subject_label, evidence FROM alerts")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("detector"), "rate_spike");
    let label: String = row.get("subject_label");
    assert!(
        label.starts_with("key tp_live_") && label.ends_with("of Acme"),
        "{label}"
    );
    let evidence: serde_json::Value =
        serde_json::from_str(&row.get::<String, _>("evidence")).unwrap();
    assert_eq!(evidence["value"], 900.0);
    assert!((evidence["baseline_mean"].as_f64().unwrap() - 40.0).abs() < 1.0);
}
both_backends!(a_key_spiking_against_its_own_baseline_alerts_after_its_warm_up);

async fn a_dormant_key_used_from_a_new_network_alerts_but_not_from_a_known_one(backend: Backend) {
    use trustplane::alerts::signals::ApiCaller;
    let app = spawn_app(backend).await;
    let customer = app.create_customer("Acme", "live", 0).await;
    let (key_id, _) = app.issue_key(&customer, "faces:detect").await;
    let use_from = |ip: &'static str, at: i64| {
        app.state
            .signals
            .record_api(at, Some(ip), ApiCaller::Key(key_id.clone()), false, 200, 10);
    };
    use_from("203.0.113.9", T0);
    app.clock.set(T0 + MINUTE + 5 * SECOND);
    run_job(&app, "alerts_detect").await;
    // 30 days less a minute later, from a new network: not dormant yet.
    let early = T0 + 30 * DAY - MINUTE;
    use_from("198.51.100.7", early);
    app.clock.set(early + MINUTE + 5 * SECOND);
    assert_eq!(run_job(&app, "alerts_detect").await["alerts_raised"], 0);
    // 31 days after that, from the known network: no alert; from a third network: one.
    let late = early + 31 * DAY;
    use_from("198.51.100.8", late);
    app.clock.set(late + MINUTE + 5 * SECOND);
    assert_eq!(run_job(&app, "alerts_detect").await["alerts_raised"], 0);
    let later = late + 31 * DAY;
    use_from("192.0.2.44", later);
    app.clock.set(later + MINUTE + 5 * SECOND);
    let counts = run_job(&app, "alerts_detect").await;
    assert_eq!(counts["alerts_raised"], 1, "{counts}");
    let summary: String = sqlx::query("SELECT summary FROM alerts WHERE detector = 'dormant_key'")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
        .get("summary");
    assert!(
        summary.contains("192.0.2.0/24") && summary.contains("31 days"),
        "{summary}"
    );
    assert!(!summary.contains("192.0.2.44"));
}
both_backends!(a_dormant_key_used_from_a_new_network_alerts_but_not_from_a_known_one);

async fn a_network_held_at_the_demo_limit_for_ten_minutes_alerts(backend: Backend) {
    use trustplane::alerts::signals::ApiCaller;
    let app = spawn_app(backend).await;
    let counts = feed_minutes(&app, 0..20, |m| {
        // Limited in minutes 0..9 (nine minutes: silent), then again from minute 10.
        let limited = m != 9;
        let mut answers = vec![(Some("203.0.113.50"), ApiCaller::Unknown, true, 200); 10];
        if limited {
            answers.push((Some("203.0.113.50"), ApiCaller::Unknown, true, 429));
        }
        answers
    })
    .await;
    assert_eq!(counts["alerts_raised"], 1, "{counts}");
    let at: i64 = sqlx::query("SELECT evidence FROM alerts WHERE detector = 'demo_abuse'")
        .fetch_one(&app.state.db.pool)
        .await
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.get::<String, _>("evidence")).unwrap()
                    ["at"]
                    .as_i64()
                    .unwrap()
        })
        .unwrap();
    // Minutes 0..8 and 10 make ten limited minutes within the last fifteen at minute 10.
    assert_eq!(at, T0 + 10 * MINUTE);
}
both_backends!(a_network_held_at_the_demo_limit_for_ten_minutes_alerts);

fn trustplane_cli(dir: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trustplane"));
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("TRUSTPLANE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

async fn the_cli_lists_alerts_as_json_and_bad_thresholds_name_their_key(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.alertmanager_token = TOKEN.into()).await;
    hook(&app, Some(TOKEN), payload("firing", "cli01").to_string()).await;
    let out = trustplane_cli(app.dir.path())
        .args(["alerts", "list", "--state", "open", "--json"])
        .env("TRUSTPLANE_DATABASE_URL", &app.database_url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["alerts"][0]["detector"], "alertmanager");
    assert_eq!(listed["alerts"][0]["subject"], "RetentionControlFailing");

    let out = trustplane_cli(app.dir.path())
        .args(["alerts", "list"])
        .env("TRUSTPLANE_DATABASE_URL", &app.database_url)
        .env("TRUSTPLANE_ALERTMANAGER_TOKEN", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`alertmanager_token`"));
    std::fs::write(
        app.dir.path().join("trustplane.toml"),
        "[alert_thresholds]\nz_score = 0.5\n",
    )
    .unwrap();
    let out = trustplane_cli(app.dir.path())
        .args(["alerts", "list"])
        .env("TRUSTPLANE_DATABASE_URL", &app.database_url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`alert_thresholds.z_score`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
both_backends!(the_cli_lists_alerts_as_json_and_bad_thresholds_name_their_key);
