//! The Outbox page: every email, its state (pending, sent, failed), attempts and last error.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Html;
use serde::Deserialize;
use sqlx::Row;

use crate::app::AppState;
use crate::clock::format_ms;
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};

pub fn routes() -> Vec<PortalRoute> {
    vec![PortalRoute::get(
        "/outbox",
        Access::Rbac("outbox", "read"),
        outbox_get,
    )]
}

struct MailView {
    to: String,
    subject: String,
    related: String,
    created_at: String,
    state: &'static str,
    attempts: i64,
    when: String,
    last_error: String,
}

#[derive(Template)]
#[template(path = "notify/outbox.html")]
struct OutboxPage {
    shell: Shell,
    mails: Vec<MailView>,
    state: String,
    transport: String,
}

#[derive(Deserialize, Default)]
struct OutboxQuery {
    #[serde(default)]
    state: String,
}

async fn outbox_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<OutboxQuery>,
) -> AppResult<Html<String>> {
    if !["", "pending", "sent", "failed"].contains(&query.state.as_str()) {
        return Err(AppError::BadRequest(
            "Unknown state: use pending, sent or failed.".into(),
        ));
    }
    let rows = sqlx::query(
        "SELECT to_addr, subject, related, created_at, attempts, next_attempt_at, last_error, sent_at, failed_at \
         FROM outbox WHERE ($1 = '' \
            OR ($1 = 'sent' AND sent_at IS NOT NULL) \
            OR ($1 = 'failed' AND failed_at IS NOT NULL) \
            OR ($1 = 'pending' AND sent_at IS NULL AND failed_at IS NULL)) \
         ORDER BY created_at DESC LIMIT 200",
    )
    .bind(&query.state)
    .fetch_all(&state.db.pool)
    .await?;
    let mut mails = Vec::with_capacity(rows.len());
    for row in rows {
        let sent_at: Option<i64> = row.try_get("sent_at")?;
        let failed_at: Option<i64> = row.try_get("failed_at")?;
        let (mail_state, when) = match (sent_at, failed_at) {
            (Some(at), _) => ("sent", format_ms(at)),
            (None, Some(at)) => ("failed", format_ms(at)),
            _ => (
                "pending",
                format!("next try {}", format_ms(row.try_get("next_attempt_at")?)),
            ),
        };
        mails.push(MailView {
            to: row.try_get("to_addr")?,
            subject: row.try_get("subject")?,
            related: row.try_get("related")?,
            created_at: format_ms(row.try_get("created_at")?),
            state: mail_state,
            attempts: i64::from(row.try_get::<i32, _>("attempts")?),
            when,
            last_error: row
                .try_get::<Option<String>, _>("last_error")?
                .unwrap_or_default(),
        });
    }
    html(&OutboxPage {
        shell: Shell::new(&state, &visitor, "/outbox")?,
        mails,
        state: query.state,
        transport: if state.config.smtp_url.is_empty() {
            format!(
                "files under {}",
                state.config.data_dir.join("mail").display()
            )
        } else {
            crate::config::redact_url(&state.config.smtp_url)
        },
    })
}
