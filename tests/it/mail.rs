//! The outbox against a real SMTP server on loopback (aiosmtpd from PyPI, which `.ci/run`
//! installs; Python 3.11's own `smtpd` module stands in where aiosmtpd is absent), retries
//! while the server is down, the .eml default, permanent failure, and the failed-jobs digest.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use trustplane::clock::MINUTE;
use trustplane::jobs::Scheduler;
use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;

/// A real SMTP server that prints every message it receives.
pub struct SmtpServer {
    child: Child,
    received: Arc<Mutex<String>>,
}

impl SmtpServer {
    pub fn start(port: u16) -> Self {
        let has_aiosmtpd = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        let listen = format!("127.0.0.1:{port}");
        let mut command = Command::new("python3");
        if has_aiosmtpd {
            command.args(["-u", "-m", "aiosmtpd", "-n", "-l", &listen]);
        } else {
            command.args([
                "-u",
                "-W",
                "ignore",
                "-m",
                "smtpd",
                "-n",
                "-c",
                "DebuggingServer",
                &listen,
            ]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 for the SMTP server");
        let stdout = child.stdout.take().unwrap();
        let received = Arc::new(Mutex::new(String::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(&listen).is_err() {
            assert!(Instant::now() < deadline, "SMTP server did not start");
            assert!(
                child.try_wait().ok().flatten().is_none(),
                "SMTP server exited (port {port} taken?)"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Something answered; make sure it is this server and not another listener.
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "SMTP server exited: port {port} belongs to another listener"
        );
        Self { child, received }
    }

    pub fn received(&self) -> String {
        self.received.lock().unwrap().clone()
    }

    pub fn wait_for(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.received().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that is free now, chosen below the kernel's ephemeral range (32768–60999 here),
/// so a server another test binds to port 0 cannot be handed it while its owner has it
/// closed (the SMTP test stops and restarts its server on the same port).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 20_000 + (std::process::id() % 1_000) as u16 * 12;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 12_000;
        let port = 20_000 + (start - 20_000 + offset) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

async fn queue(app: &TestApp, to: &str, subject: &str) -> String {
    let mut tx = app.state.db.begin().await.unwrap();
    let id = trustplane::notify::enqueue(
        &mut tx,
        to,
        subject,
        "plain body",
        "<p>html body</p>",
        "test",
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn deliver(app: &TestApp) -> serde_json::Value {
    app.clock.advance(1);
    let summary = Scheduler::new(app.state.clone())
        .unwrap()
        .run_now("outbox_deliver")
        .await
        .unwrap();
    assert!(summary.ok, "{:?}", summary.error);
    summary.counts
}

async fn email_reaches_a_real_smtp_server_and_is_retried_while_it_is_down(backend: Backend) {
    let port = free_port();
    let app = spawn_app_with(backend, |c| c.smtp_url = format!("smtp://127.0.0.1:{port}")).await;
    let id = queue(&app, "ana@example.com", "Retention purge report 1").await;

    // The server is down: the message waits with backoff.
    let counts = deliver(&app).await;
    assert_eq!(counts["retried"], 1, "{counts}");
    let attempts = app
        .count(&format!(
            "SELECT CAST(attempts AS BIGINT) FROM outbox WHERE id = '{id}'"
        ))
        .await;
    assert_eq!(attempts, 1);
    assert_eq!(deliver(&app).await["retried"], 0, "not before the backoff");

    let server = SmtpServer::start(port);
    app.clock.advance(2 * MINUTE);
    let counts = deliver(&app).await;
    assert_eq!(counts["sent"], 1, "{counts}");
    assert!(
        server.wait_for("Retention purge report 1"),
        "{}",
        server.received()
    );
    assert!(server.received().contains("ana@example.com"));
    let sent = app
        .count(&format!(
            "SELECT COUNT(*) FROM outbox WHERE id = '{id}' AND sent_at IS NOT NULL"
        ))
        .await;
    assert_eq!(sent, 1);
    assert_eq!(deliver(&app).await["sent"], 0, "delivered once");
}
both_backends!(email_reaches_a_real_smtp_server_and_is_retried_while_it_is_down);

async fn without_smtp_mail_is_written_as_eml_files(backend: Backend) {
    let app = spawn_app(backend).await;
    queue(&app, "ops@example.com", "Local delivery check").await;
    assert_eq!(deliver(&app).await["sent"], 1);
    let dir = app.dir.path().join("mail");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    let eml = std::fs::read_to_string(files[0].path()).unwrap();
    assert!(eml.contains("Subject: Local delivery check") && eml.contains("To: ops@example.com"));
    // Once out, the body (which may hold a one-time link) is erased; the record stays.
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM outbox WHERE subject = 'Local delivery check' \
             AND sent_at IS NOT NULL AND body_text = '' AND body_html = ''"
        )
        .await,
        1
    );
}
both_backends!(without_smtp_mail_is_written_as_eml_files);

async fn undeliverable_mail_fails_for_good_visibly_and_audited(backend: Backend) {
    let port = free_port();
    let app = spawn_app_with(backend, |c| c.smtp_url = format!("smtp://127.0.0.1:{port}")).await;
    queue(&app, "ana@example.com", "Never arrives").await;
    for _ in 0..trustplane::notify::MAX_ATTEMPTS {
        deliver(&app).await;
        app.clock.advance(7 * 60 * MINUTE);
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE failed_at IS NOT NULL")
            .await,
        1
    );
    assert!(
        app.audit_actions()
            .await
            .contains(&("outbox.failed".into(), "failure".into()))
    );
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    let page = app
        .get(&admin, "/outbox?state=failed")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Never arrives") && page.contains(">failed<"));
}
both_backends!(undeliverable_mail_fails_for_good_visibly_and_audited);

async fn admins_get_a_digest_of_failed_job_runs(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app
        .create_staff("boss@example.com", &[Role::Admin], true)
        .await;
    app.create_staff("reader@example.com", &[Role::Auditor], true)
        .await;
    let now = app.state.now();
    let run = trustplane::jobs::store::claim(
        &app.state.db,
        "retention_purge",
        now - MINUTE,
        trustplane::jobs::Trigger::Schedule,
        "n1",
        now,
        now,
    )
    .await
    .unwrap()
    .unwrap();
    trustplane::jobs::store::finish(
        &app.state.db,
        &run,
        "n1",
        now,
        false,
        &serde_json::json!({}),
        Some("blob store unreachable"),
    )
    .await
    .unwrap();
    app.clock.advance(1);
    let summary = Scheduler::new(app.state.clone())
        .unwrap()
        .run_now("failed_jobs_digest")
        .await
        .unwrap();
    assert_eq!(summary.counts["emails"], 1, "{:?}", summary.counts);
    let body = app.count(&format!(
        "SELECT COUNT(*) FROM outbox WHERE to_addr = '{}' AND body_text LIKE '%blob store unreachable%'",
        admin.email
    ))
    .await;
    assert_eq!(body, 1);
}
both_backends!(admins_get_a_digest_of_failed_job_runs);
