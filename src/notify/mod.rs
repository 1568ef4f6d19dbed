//! Email through an outbox. Every message is written to the `outbox` table in the same
//! transaction as the change that caused it, then delivered by the `outbox_deliver` job
//! through lettre: SMTP (STARTTLS, implicit TLS, or plain on loopback) with authentication
//! from config, or — the local default — `.eml` files under the data dir, so nothing is lost
//! when no mail server is configured. Failures are retried with exponential backoff; after
//! [`MAX_ATTEMPTS`] or a permanent SMTP error the message is marked failed, shown on the
//! Outbox page and audited.

pub mod pages;

use askama::Template;
use lettre::message::MultiPart;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::app::AppState;
use crate::audit::{self, AuditEvent, Outcome, RequestMeta};
use crate::clock::{HOUR, MINUTE, Millis};

/// Attempts before a message is given up.
pub const MAX_ATTEMPTS: i64 = 8;
const BATCH: i64 = 50;

/// Queues a message inside the caller's transaction.
pub async fn enqueue(
    conn: &mut AnyConnection,
    to: &str,
    subject: &str,
    body_text: &str,
    body_html: &str,
    related: &str,
    now: Millis,
) -> Result<String, sqlx::Error> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO outbox (id, to_addr, subject, body_text, body_html, related, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(&id)
    .bind(to)
    .bind(subject)
    .bind(body_text)
    .bind(body_html)
    .bind(related)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(id)
}

/// Backoff before attempt `attempts + 1`: 1 min, 2, 4, … capped at 6 h.
pub fn backoff(attempts: i64) -> Millis {
    let exp = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    (MINUTE * 2_i64.pow(exp)).min(6 * HOUR)
}

/// Where mail goes.
enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(AsyncFileTransport<Tokio1Executor>),
}

fn mailer(state: &AppState) -> anyhow::Result<Mailer> {
    let config = &state.config;
    if config.smtp_url.is_empty() {
        let dir = config.data_dir.join("mail");
        std::fs::create_dir_all(&dir)?;
        return Ok(Mailer::Files(AsyncFileTransport::<Tokio1Executor>::new(
            dir,
        )));
    }
    let url = url::Url::parse(&config.smtp_url)?;
    let host = url
        .host_str()
        .ok_or_else(|| anyhow::anyhow!("smtp_url has no host"))?
        .to_owned();
    let mut builder = match url.scheme() {
        "smtps" => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)?,
        "smtp+starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)?,
        "smtp" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host),
        other => anyhow::bail!("smtp_url scheme {other} is not smtp, smtp+starttls or smtps"),
    };
    if let Some(port) = url.port() {
        builder = builder.port(port);
    }
    if !config.smtp_username.is_empty() {
        builder = builder.credentials(Credentials::new(
            config.smtp_username.clone(),
            config.smtp_password.clone(),
        ));
    }
    Ok(Mailer::Smtp(
        builder
            .timeout(Some(std::time::Duration::from_secs(20)))
            .build(),
    ))
}

/// What one delivery run did.
#[derive(Debug, Default, Serialize)]
pub struct DeliveryReport {
    pub sent: i64,
    pub retried: i64,
    pub failed: i64,
}

/// Delivers due messages.
pub async fn deliver(state: &AppState) -> anyhow::Result<DeliveryReport> {
    let mailer = mailer(state)?;
    let now = state.now();
    let rows = sqlx::query(
        "SELECT id, to_addr, subject, body_text, body_html, attempts FROM outbox \
         WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 ORDER BY created_at LIMIT $2",
    )
    .bind(now)
    .bind(BATCH)
    .fetch_all(&state.db.pool)
    .await?;
    let mut report = DeliveryReport::default();
    for row in rows {
        let id: String = row.try_get("id")?;
        let attempts = i64::from(row.try_get::<i32, _>("attempts")?) + 1;
        let message = build_message(
            &state.config.mail_from,
            &row.try_get::<String, _>("to_addr")?,
            &row.try_get::<String, _>("subject")?,
            row.try_get("body_text")?,
            row.try_get("body_html")?,
        );
        let result = match message {
            Err(err) => Err((true, err.to_string())),
            Ok(message) => match &mailer {
                Mailer::Smtp(smtp) => smtp
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| (e.is_permanent(), e.to_string())),
                Mailer::Files(files) => files
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| (false, e.to_string())),
            },
        };
        let now = state.now();
        match result {
            Ok(()) => {
                // Bodies can carry one-time links (setup, researcher status pages): once the
                // message is out they are erased; recipient, subject and times stay as the record.
                sqlx::query(
                    "UPDATE outbox SET sent_at = $1, attempts = $2, last_error = NULL, \
                     body_text = '', body_html = '' WHERE id = $3",
                )
                .bind(now)
                .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
                .bind(&id)
                .execute(&state.db.pool)
                .await?;
                report.sent += 1;
            }
            Err((permanent, error)) if permanent || attempts >= MAX_ATTEMPTS => {
                let mut tx = state.db.begin().await?;
                sqlx::query(
                    "UPDATE outbox SET failed_at = $1, attempts = $2, last_error = $3, \
                     body_text = '', body_html = '' WHERE id = $4",
                )
                .bind(now)
                .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
                .bind(&error)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                audit::append(
                    &mut tx,
                    now,
                    &RequestMeta::default(),
                    AuditEvent::new("system", "outbox.failed", format!("email:{id}"))
                        .outcome(Outcome::Failure)
                        .detail("attempts", attempts)
                        .detail("error", crate::web::clip(&error, 300)),
                )
                .await?;
                tx.commit().await?;
                report.failed += 1;
            }
            Err((_, error)) => {
                sqlx::query("UPDATE outbox SET attempts = $1, last_error = $2, next_attempt_at = $3 WHERE id = $4")
                    .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
                    .bind(crate::web::clip(&error, 500))
                    .bind(now + backoff(attempts))
                    .bind(&id)
                    .execute(&state.db.pool)
                    .await?;
                report.retried += 1;
            }
        }
    }
    Ok(report)
}

fn build_message(
    from: &str,
    to: &str,
    subject: &str,
    text: String,
    html: String,
) -> anyhow::Result<Message> {
    Ok(Message::builder()
        .from(from.parse()?)
        .to(to.parse()?)
        .subject(subject)
        .multipart(MultiPart::alternative_plain_html(text, html))?)
}

#[derive(Template)]
#[template(path = "email/failed_jobs.txt")]
struct FailedJobsText<'a> {
    runs: &'a [(String, String, String)],
}

#[derive(Template)]
#[template(path = "email/failed_jobs.html")]
struct FailedJobsHtml<'a> {
    runs: &'a [(String, String, String)],
}

/// The daily digest to admins of job runs that failed in the last 24 hours.
pub async fn failed_jobs_digest(state: &AppState) -> anyhow::Result<serde_json::Value> {
    let now = state.now();
    let failed: Vec<(String, String, String)> = sqlx::query(
        "SELECT job, started_at, error FROM job_runs WHERE outcome = 'failed' AND started_at > $1 ORDER BY started_at",
    )
    .bind(now - 24 * HOUR)
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(|r| {
        Ok((
            r.try_get::<String, _>("job")?,
            crate::clock::format_ms(r.try_get("started_at")?),
            r.try_get::<Option<String>, _>("error")?.unwrap_or_default(),
        ))
    })
    .collect::<Result<_, sqlx::Error>>()?;
    if failed.is_empty() {
        return Ok(serde_json::json!({ "failed_runs": 0, "emails": 0 }));
    }
    let admins: Vec<String> = sqlx::query(
        "SELECT s.email FROM staff s JOIN staff_roles r ON r.staff_id = s.id WHERE r.role = 'admin' AND s.disabled = 0",
    )
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(|r| r.try_get("email"))
    .collect::<Result<_, _>>()?;
    let text = FailedJobsText { runs: &failed }.render()?;
    let html = FailedJobsHtml { runs: &failed }.render()?;
    let subject = format!(
        "trustplane: {} failed job run(s) in the last 24 hours",
        failed.len()
    );
    let mut tx = state.db.begin().await?;
    for admin in &admins {
        enqueue(
            &mut tx,
            admin,
            &subject,
            &text,
            &html,
            "digest:failed_jobs",
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(serde_json::json!({ "failed_runs": failed.len(), "emails": admins.len() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), MINUTE);
        assert_eq!(backoff(1), 2 * MINUTE);
        assert_eq!(backoff(3), 8 * MINUTE);
        assert_eq!(backoff(12), 6 * HOUR);
    }
}
