//! The `sla_watch` job, run every minute: records breaches, sends reminders and escalations.
//!
//! Each step claims its work with a conditional `UPDATE` (see [`super::store`]) in the same
//! transaction as the emails, webhooks, event and audit row it causes, and acts only when
//! its update changed a row. The job lease already keeps two nodes from running the same
//! occurrence; the claims also hold when a manual run and a scheduled run overlap, so an
//! escalation is never sent twice.

use askama::Template;
use serde::Serialize;
use sqlx::AnyConnection;

use super::format::span;
use super::model::{ClockState, EventKind, SlaClock};
use super::{store, webhook};
use crate::app::AppState;
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{Millis, format_ms};

/// What one run did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct WatchReport {
    pub breached: i64,
    pub reminded: i64,
    pub escalated: i64,
    pub emails: i64,
    pub webhooks: i64,
}

/// Batches per step and run; a backlog larger than this waits for the next minute.
const MAX_BATCHES: usize = 20;

#[derive(Template)]
#[template(path = "email/sla_notice.txt")]
struct NoticeText<'a> {
    notice: &'a Notice,
}

#[derive(Template)]
#[template(path = "email/sla_notice.html")]
struct NoticeHtml<'a> {
    notice: &'a Notice,
}

/// The fields both email bodies show.
struct Notice {
    headline: String,
    subject_label: String,
    target: String,
    clock_name: String,
    started: String,
    due: String,
    due_local: String,
    status: String,
    link: String,
}

/// Runs the three steps once at the current time: breaches first, so a clock whose deadline
/// has come is escalated in the same run and never reminded.
pub async fn run(state: &AppState) -> anyhow::Result<WatchReport> {
    let now = state.now();
    let mut report = WatchReport::default();
    record_breaches(state, now, &mut report).await?;
    send_reminders(state, now, &mut report).await?;
    send_escalations(state, now, &mut report).await?;
    Ok(report)
}

/// Marks running clocks whose deadline has come as breached, dated at the deadline.
async fn record_breaches(
    state: &AppState,
    now: Millis,
    report: &mut WatchReport,
) -> anyhow::Result<()> {
    for _ in 0..MAX_BATCHES {
        let due = store::unrecorded_breaches(&mut *state.db.pool.acquire().await?, now).await?;
        for clock in &due {
            let mut tx = state.db.begin().await?;
            if store::record_breach(&mut tx, &clock.id, now).await? {
                let mut breached = clock.clone();
                breached.state = ClockState::Breached;
                breached.breached_at = Some(clock.due_at);
                note(
                    &mut tx,
                    &breached,
                    EventKind::Breached,
                    clock.due_at,
                    now,
                    "deadline passed",
                    "sla.breach",
                )
                .await?;
                report.webhooks += announce(state, &mut tx, &breached, "sla.breached", now).await?;
                report.breached += 1;
            }
            tx.commit().await?;
        }
        if due.len() < store::WATCH_BATCH as usize {
            break;
        }
    }
    Ok(())
}

/// Sends each running clock's one reminder to `notify_to` once its share of time has passed.
async fn send_reminders(
    state: &AppState,
    now: Millis,
    report: &mut WatchReport,
) -> anyhow::Result<()> {
    for _ in 0..MAX_BATCHES {
        let due = store::due_reminders(&mut *state.db.pool.acquire().await?, now).await?;
        for clock in &due {
            let mut tx = state.db.begin().await?;
            if store::claim_reminder(&mut tx, &clock.id, now).await? {
                let status = format!("{} left", span(clock.due_at - now));
                let headline = format!(
                    "Reminder: {} is due in {}",
                    clock.target,
                    span(clock.due_at - now)
                );
                report.emails += email(
                    state,
                    &mut tx,
                    clock,
                    &clock.notify_to,
                    &headline,
                    &status,
                    now,
                )
                .await?;
                let detail = format!("reminded {} people, {status}", clock.notify_to.len());
                note(
                    &mut tx,
                    clock,
                    EventKind::Reminded,
                    now,
                    now,
                    &detail,
                    "sla.remind",
                )
                .await?;
                report.webhooks += announce(state, &mut tx, clock, "sla.reminder", now).await?;
                report.reminded += 1;
            }
            tx.commit().await?;
        }
        if due.len() < store::WATCH_BATCH as usize {
            break;
        }
    }
    Ok(())
}

/// Escalates breached, unstopped clocks to `notify_to` and `escalate_to`: at the breach, then
/// once per escalation interval.
async fn send_escalations(
    state: &AppState,
    now: Millis,
    report: &mut WatchReport,
) -> anyhow::Result<()> {
    for _ in 0..MAX_BATCHES {
        let due = store::due_escalations(&mut *state.db.pool.acquire().await?, now).await?;
        for clock in &due {
            let mut tx = state.db.begin().await?;
            if store::claim_escalation(&mut tx, &clock.id, now).await? {
                let mut escalated = clock.clone();
                escalated.last_escalated_at = Some(now);
                escalated.escalations_sent += 1;
                let late = span(now - clock.due_at);
                let status = format!("Breached {late} ago and not yet done.");
                let headline = format!("SLA breached: {} ({late} late)", clock.target);
                let recipients = clock.escalation_recipients();
                report.emails +=
                    email(state, &mut tx, clock, &recipients, &headline, &status, now).await?;
                let detail = format!(
                    "escalation {} to {} people, {late} late",
                    escalated.escalations_sent,
                    recipients.len()
                );
                note(
                    &mut tx,
                    &escalated,
                    EventKind::Escalated,
                    now,
                    now,
                    &detail,
                    "sla.escalate",
                )
                .await?;
                report.webhooks +=
                    announce(state, &mut tx, &escalated, "sla.escalation", now).await?;
                report.escalated += 1;
            }
            tx.commit().await?;
        }
        if due.len() < store::WATCH_BATCH as usize {
            break;
        }
    }
    Ok(())
}

/// The `sla_events` row (dated `event_at`, when it happened: a breach happens at the
/// deadline) and the audit row (dated `now`, when it was recorded) of a step, by `system`.
async fn note(
    conn: &mut AnyConnection,
    clock: &SlaClock,
    kind: EventKind,
    event_at: Millis,
    now: Millis,
    detail: &str,
    action: &'static str,
) -> Result<(), sqlx::Error> {
    super::events::insert_event(conn, &clock.id, event_at, kind, "system", detail).await?;
    audit::append(
        conn,
        now,
        &RequestMeta::default(),
        AuditEvent::new("system", action, format!("sla:{}", clock.id))
            .detail("subject", clock.subject.label())
            .detail("clock", clock.name.as_str())
            .detail("due_at", clock.due_at)
            .detail("detail", detail),
    )
    .await?;
    Ok(())
}

/// The link to the subject: absolute when `public_url` is configured.
fn link(state: &AppState, clock: &SlaClock) -> String {
    let base = state.config.public_url.trim_end_matches('/');
    format!("{base}{}", clock.link_path)
}

/// Queues one email per recipient; returns how many.
async fn email(
    state: &AppState,
    conn: &mut AnyConnection,
    clock: &SlaClock,
    recipients: &[String],
    headline: &str,
    status: &str,
    now: Millis,
) -> anyhow::Result<i64> {
    if recipients.is_empty() {
        return Ok(0);
    }
    let notice = Notice {
        headline: headline.to_owned(),
        subject_label: clock.subject.label(),
        target: clock.target.clone(),
        clock_name: clock.name.clone(),
        started: format_ms(clock.started_at),
        due: format_ms(clock.due_at),
        due_local: state.sla_calendar.format_local(clock.due_at),
        status: status.to_owned(),
        link: link(state, clock),
    };
    let text = NoticeText { notice: &notice }.render()?;
    let html = NoticeHtml { notice: &notice }.render()?;
    let subject = format!("[trustplane] {headline} ({})", clock.subject.label());
    for to in recipients {
        crate::notify::enqueue(
            conn,
            to,
            &subject,
            &text,
            &html,
            &format!("sla:{}", clock.id),
            now,
        )
        .await?;
    }
    Ok(recipients.len() as i64)
}

/// Queues the signed webhook of a step for every configured receiver; returns how many.
async fn announce(
    state: &AppState,
    conn: &mut AnyConnection,
    clock: &SlaClock,
    event: &str,
    now: Millis,
) -> anyhow::Result<i64> {
    let body = webhook::payload(event, clock, &link(state, clock), now);
    let queued =
        webhook::enqueue(conn, &state.config.sla_webhooks, event, &body, clock, now).await?;
    Ok(queued)
}
