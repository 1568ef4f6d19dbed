//! Signed outgoing webhooks for SLA reminders, breaches and escalations.
//!
//! Like email, a webhook is queued in `webhook_outbox` in the same transaction as the step
//! that caused it and delivered by its own job (`webhook_deliver`), so a slow or dead
//! receiver never holds up breach detection. Each POST carries the JSON body and
//! `X-Trustplane-Signature-256: sha256=<hex HMAC-SHA256 of the body>` (the scheme of
//! GitHub's `X-Hub-Signature-256`), keyed with the receiver's secret, which is read from the
//! environment variable named in the configuration and never stored or logged. Failures are
//! retried with the email outbox's backoff; after [`crate::notify::MAX_ATTEMPTS`] or a
//! permanent answer (4xx other than 408 and 429) the delivery is marked failed and audited.

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::{AnyConnection, Row};
use zeroize::Zeroizing;

use super::model::SlaClock;
use crate::app::AppState;
use crate::audit::{self, AuditEvent, Outcome, RequestMeta};
use crate::clock::Millis;
use crate::config::SlaWebhook;
use crate::db::Db;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Trustplane-Signature-256";
const BATCH: i64 = 50;
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A receiver's signing secret; kept out of `Debug` output and wiped when dropped.
pub struct WebhookSecret(Zeroizing<String>);

impl WebhookSecret {
    pub fn new(secret: String) -> Self {
        Self(Zeroizing::new(secret))
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// A receiver with its secret at hand.
#[derive(Debug)]
pub struct Receiver {
    pub url: String,
    pub secret: WebhookSecret,
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &WebhookSecret, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail; an empty MAC would be refused by
    // every receiver rather than silently accepted.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.0.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The JSON a receiver gets.
pub fn payload(event: &str, clock: &SlaClock, link: &str, now: Millis) -> Value {
    let mut summary = clock.summary(now);
    summary["link"] = Value::from(link);
    json!({ "event": event, "at": now, "clock": summary })
}

/// Queues `body` for every configured receiver; returns how many deliveries were queued.
pub async fn enqueue(
    conn: &mut AnyConnection,
    receivers: &[SlaWebhook],
    event: &str,
    body: &Value,
    clock: &SlaClock,
    now: Millis,
) -> Result<i64, sqlx::Error> {
    let text = body.to_string();
    for receiver in receivers {
        sqlx::query(
            "INSERT INTO webhook_outbox (id, url, event, body, related, created_at, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(&receiver.url)
        .bind(event)
        .bind(&text)
        .bind(format!("sla:{}", clock.id))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(receivers.len() as i64)
}

/// What one delivery run did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct WebhookReport {
    pub sent: i64,
    pub retried: i64,
    pub failed: i64,
}

/// The `webhook_deliver` job: the configured receivers with secrets from the environment.
pub async fn deliver(state: &AppState) -> anyhow::Result<WebhookReport> {
    let receivers: Vec<Receiver> = state
        .config
        .sla_webhooks
        .iter()
        .filter_map(|hook| {
            let secret = std::env::var(hook.secret_env.trim()).ok()?;
            Some(Receiver {
                url: hook.url.clone(),
                secret: WebhookSecret::new(secret),
            })
        })
        .collect();
    deliver_due(&state.db, &receivers, state.now()).await
}

/// How one attempt ended.
enum Attempt {
    Delivered(u16),
    /// Worth trying again later.
    Retry(Option<u16>, String),
    /// Trying again cannot help.
    Permanent(Option<u16>, String),
}

async fn post(
    client: &reqwest::Client,
    receiver: &Receiver,
    id: &str,
    event: &str,
    body: String,
) -> Attempt {
    let signed = signature(&receiver.secret, body.as_bytes());
    let sent = client
        .post(&receiver.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signed)
        .header("X-Trustplane-Event", event)
        .header("X-Trustplane-Delivery", id)
        .body(body)
        .send()
        .await;
    match sent {
        Err(err) => Attempt::Retry(None, err.without_url().to_string()),
        Ok(response) => {
            let status = response.status();
            let code = status.as_u16();
            if status.is_success() {
                Attempt::Delivered(code)
            } else if status.is_client_error() && code != 408 && code != 429 {
                Attempt::Permanent(Some(code), format!("receiver answered {status}"))
            } else {
                Attempt::Retry(Some(code), format!("receiver answered {status}"))
            }
        }
    }
}

/// Delivers every queued webhook that is due at `now` to `receivers` (matched by URL).
pub async fn deliver_due(
    db: &Db,
    receivers: &[Receiver],
    now: Millis,
) -> anyhow::Result<WebhookReport> {
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("trustplane-webhook/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let rows = sqlx::query(
        "SELECT id, url, event, body, attempts FROM webhook_outbox \
         WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 \
         ORDER BY created_at LIMIT $2",
    )
    .bind(now)
    .bind(BATCH)
    .fetch_all(&db.pool)
    .await?;
    let mut report = WebhookReport::default();
    for row in rows {
        let id: String = row.try_get("id")?;
        let url: String = row.try_get("url")?;
        let event: String = row.try_get("event")?;
        let attempts = i64::from(row.try_get::<i32, _>("attempts")?) + 1;
        let attempt = match receivers.iter().find(|r| r.url == url) {
            Some(receiver) => post(&client, receiver, &id, &event, row.try_get("body")?).await,
            None => Attempt::Retry(
                None,
                "no configured receiver with a secret for this URL".to_owned(),
            ),
        };
        let attempts_column = i32::try_from(attempts).unwrap_or(i32::MAX);
        let (code, error, permanent) = match attempt {
            Attempt::Delivered(code) => {
                sqlx::query(
                    "UPDATE webhook_outbox SET sent_at = $1, attempts = $2, last_status = $3, \
                     last_error = NULL WHERE id = $4",
                )
                .bind(now)
                .bind(attempts_column)
                .bind(i32::from(code))
                .bind(&id)
                .execute(&db.pool)
                .await?;
                report.sent += 1;
                continue;
            }
            Attempt::Retry(code, error) => (code, error, false),
            Attempt::Permanent(code, error) => (code, error, true),
        };
        if !permanent && attempts < crate::notify::MAX_ATTEMPTS {
            sqlx::query(
                "UPDATE webhook_outbox SET attempts = $1, last_status = $2, last_error = $3, \
                 next_attempt_at = $4 WHERE id = $5",
            )
            .bind(attempts_column)
            .bind(code.map(i32::from))
            .bind(crate::web::clip(&error, 500))
            .bind(now + crate::notify::backoff(attempts))
            .bind(&id)
            .execute(&db.pool)
            .await?;
            report.retried += 1;
            continue;
        }
        let mut tx = db.begin().await?;
        sqlx::query(
            "UPDATE webhook_outbox SET failed_at = $1, attempts = $2, last_status = $3, \
             last_error = $4 WHERE id = $5",
        )
        .bind(now)
        .bind(attempts_column)
        .bind(code.map(i32::from))
        .bind(crate::web::clip(&error, 500))
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            now,
            &RequestMeta::default(),
            AuditEvent::new("system", "webhook.failed", format!("webhook:{id}"))
                .outcome(Outcome::Failure)
                .detail("event", event.as_str())
                .detail("attempts", attempts)
                .detail("error", crate::web::clip(&error, 300)),
        )
        .await?;
        tx.commit().await?;
        report.failed += 1;
    }
    Ok(report)
}
