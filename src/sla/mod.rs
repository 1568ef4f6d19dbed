//! The SLA-clock engine: every deadline in trustplane (incident triage and authority notice,
//! finding remediation, disclosure acknowledgement and triage, access-review and vendor due
//! dates) is a clock in one `sla_clocks` table, started, paused, resumed and stopped through
//! the functions below. A capability never computes its own deadline.
//!
//! The `sla_watch` job ([`watch`]) records breaches at the exact deadline, sends the one
//! reminder and the repeated escalations by email (and signed webhooks, [`webhook`]), and
//! writes every step to `sla_events`, which capabilities read for their timelines
//! ([`events_for_subject`], [`events_after`]). Every change is audited in the caller's
//! transaction.
//!
//! ```ignore
//! let clock = sla::start(&mut tx, now, &ClockSpec { subject: Subject::new(SubjectKind::Incident, &id),
//!     name: "triage", target: "Triage within 1 hour", duration: Duration::Hours(1),
//!     calendar: &state.sla_calendar, notify_to: vec![on_call], escalate_to: vec![lead],
//!     link_path: &format!("/incidents/{id}"), reminder_fraction: Some(0.75),
//!     escalation_interval: Some(30 * MINUTE) }, &actor, &meta).await?;
//! // … when triaged:
//! let clock = sla::stop(&mut tx, now, &subject, "triage", &actor, &meta).await?;
//! ```

pub mod calendar;
pub mod events;
pub mod format;
pub mod model;
pub mod pages;
pub mod spec;
pub mod store;
pub mod watch;
pub mod webhook;

use sqlx::AnyConnection;

use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::Millis;
pub use calendar::BusinessCalendar;
pub use model::{
    ClockFilter, ClockState, EventKind, Page, SlaClock, SlaEvent, SlaRecord, Subject, SubjectKind,
};
pub use pages::Countdown;
pub use spec::{ClockSpec, Duration};

/// Why an SLA operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SlaError {
    /// The clock specification cannot be used; the message says why.
    #[error("{0}")]
    Invalid(String),
    #[error("{subject} already has a {name} clock")]
    AlreadyStarted { subject: String, name: String },
    #[error("{subject} has no {name} clock")]
    NotFound { subject: String, name: String },
    /// The clock is not in a state that allows the operation, e.g. resuming a running clock.
    #[error("the {name} clock of {subject} is {state}, so it cannot be {action}")]
    WrongState {
        subject: String,
        name: String,
        state: &'static str,
        action: &'static str,
    },
    /// The clock kept changing under a concurrent update (the watch job); try again.
    #[error("the {name} clock of {subject} changed meanwhile; try again")]
    Changed { subject: String, name: String },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<SlaError> for crate::error::AppError {
    fn from(err: SlaError) -> Self {
        use crate::error::AppError;
        match err {
            SlaError::Invalid(message) => AppError::BadRequest(message),
            SlaError::NotFound { .. } => AppError::NotFound,
            SlaError::AlreadyStarted { .. }
            | SlaError::WrongState { .. }
            | SlaError::Changed { .. } => AppError::Conflict(err.to_string()),
            SlaError::Database(err) => err.into(),
        }
    }
}

/// Attempts at a state change that keeps losing a race with the watch job before giving up.
const RACE_RETRIES: usize = 3;

async fn existing(
    conn: &mut AnyConnection,
    subject: &Subject,
    name: &str,
) -> Result<SlaClock, SlaError> {
    store::find(conn, subject, name)
        .await?
        .ok_or_else(|| SlaError::NotFound {
            subject: subject.label(),
            name: name.to_owned(),
        })
}

fn wrong_state(clock: &SlaClock, now: Millis, action: &'static str) -> SlaError {
    let state = if clock.stopped_at.is_some() && clock.state == model::ClockState::Breached {
        "breached and stopped"
    } else {
        clock.state_at(now).as_str()
    };
    SlaError::WrongState {
        subject: clock.subject.label(),
        name: clock.name.clone(),
        state,
        action,
    }
}

/// Records one change of a clock: an `sla_events` row and an audit row, in the caller's
/// transaction.
async fn note(
    conn: &mut AnyConnection,
    clock: &SlaClock,
    at: Millis,
    kind: EventKind,
    detail: &str,
    audit_event: AuditEvent,
    meta: &RequestMeta,
) -> Result<(), sqlx::Error> {
    events::insert_event(conn, &clock.id, at, kind, &audit_event.actor, detail).await?;
    audit::append(
        conn,
        at,
        meta,
        audit_event
            .detail("subject", clock.subject.label())
            .detail("clock", clock.name.as_str())
            .detail("due_at", clock.due_at),
    )
    .await?;
    Ok(())
}

/// Starts a clock for `spec.subject`. Fails with [`SlaError::AlreadyStarted`] when the
/// subject already has a clock of that name (a clock runs once per subject and name).
pub async fn start(
    conn: &mut AnyConnection,
    now: Millis,
    spec: &ClockSpec<'_>,
    actor: &str,
    meta: &RequestMeta,
) -> Result<SlaClock, SlaError> {
    start_at(conn, now, now, spec, actor, meta).await
}

/// Starts a clock whose deadline counts from `started_at`, which may lie before `now`: an
/// incident detected two hours before it was reported has its one-hour triage clock
/// already breached. The watch job marks such a breach on its next run.
pub async fn start_at(
    conn: &mut AnyConnection,
    started_at: Millis,
    now: Millis,
    spec: &ClockSpec<'_>,
    actor: &str,
    meta: &RequestMeta,
) -> Result<SlaClock, SlaError> {
    spec.check().map_err(SlaError::Invalid)?;
    if started_at > now + crate::clock::MINUTE {
        return Err(SlaError::Invalid(
            "A clock cannot start in the future.".into(),
        ));
    }
    let due_at = spec.duration.due_from(started_at, spec.calendar);
    let duration_ms = due_at - started_at;
    let clock = SlaClock {
        id: uuid::Uuid::new_v4().to_string(),
        subject: spec.subject.clone(),
        name: spec.name.to_owned(),
        target: spec.target.trim().to_owned(),
        state: ClockState::Running,
        started_at,
        due_at,
        duration_ms,
        reminder_fraction: spec.reminder_fraction,
        // Rounded to the millisecond: a reminder is never early, by a fraction or otherwise.
        remind_at: spec
            .reminder_fraction
            .map(|f| started_at + (duration_ms as f64 * f).ceil() as Millis),
        last_reminded_at: None,
        reminders_sent: 0,
        breached_at: None,
        stopped_at: None,
        paused_at: None,
        pause_reason: None,
        paused_total_ms: 0,
        escalation_interval_ms: spec.escalation_interval,
        last_escalated_at: None,
        escalations_sent: 0,
        notify_to: spec.notify_to.clone(),
        escalate_to: spec.escalate_to.clone(),
        link_path: spec.link_path.to_owned(),
        created_at: now,
    };
    if !store::insert(conn, &clock).await? {
        return Err(SlaError::AlreadyStarted {
            subject: spec.subject.label(),
            name: spec.name.to_owned(),
        });
    }
    let detail = format!("{} (due {})", clock.target, crate::clock::format_ms(due_at));
    let event = AuditEvent::new(actor, "sla.start", format!("sla:{}", clock.id))
        .detail("target", clock.target.as_str())
        .detail("duration", spec.duration.describe())
        .detail("calendar", spec.calendar.zone_name());
    note(conn, &clock, now, EventKind::Started, &detail, event, meta).await?;
    Ok(clock)
}

/// Stops a running, paused or breached clock. Stopped before its deadline it is `met`; at or
/// after it, `breached` (met late still counts as a breach). A paused clock is resumed first,
/// so the paused time does not count against it.
pub async fn stop(
    conn: &mut AnyConnection,
    now: Millis,
    subject: &Subject,
    name: &str,
    actor: &str,
    meta: &RequestMeta,
) -> Result<SlaClock, SlaError> {
    for _ in 0..RACE_RETRIES {
        let clock = existing(conn, subject, name).await?;
        if clock.stopped_at.is_some() || clock.state == ClockState::Met {
            return Err(wrong_state(&clock, now, "stopped"));
        }
        let mut stopped = clock.clone();
        if let Some(paused_at) = clock
            .paused_at
            .filter(|_| clock.state == ClockState::Paused)
        {
            stopped.due_at += now - paused_at;
            stopped.paused_total_ms += now - paused_at;
        }
        stopped.stopped_at = Some(now);
        stopped.paused_at = None;
        stopped.pause_reason = None;
        let unrecorded_breach = clock.state != ClockState::Breached && now >= stopped.due_at;
        if now >= stopped.due_at {
            stopped.state = ClockState::Breached;
            stopped.breached_at = Some(clock.breached_at.unwrap_or(stopped.due_at));
        } else {
            stopped.state = ClockState::Met;
        }
        if !store::record_stop(conn, &stopped, clock.state).await? {
            continue; // The watch job changed it meanwhile; read it again.
        }
        if unrecorded_breach {
            // Stopped late before the watch job saw the deadline pass: the breach is recorded
            // here, dated at the deadline in the timeline, so timelines and figures show it.
            // No escalation follows, because the clock is already stopped.
            let due_at = stopped.due_at;
            events::insert_event(
                conn,
                &clock.id,
                due_at,
                EventKind::Breached,
                "system",
                "deadline passed",
            )
            .await?;
            let event = AuditEvent::new("system", "sla.breach", format!("sla:{}", clock.id))
                .detail("subject", clock.subject.label())
                .detail("clock", clock.name.as_str())
                .detail("due_at", due_at)
                .detail("breached_at", due_at);
            audit::append(conn, now, meta, event).await?;
        }
        let detail = match stopped.state {
            ClockState::Met => format!(
                "met {} before the deadline",
                format::span(stopped.due_at - now)
            ),
            _ => format!(
                "stopped {} after the deadline",
                format::span(now - stopped.due_at)
            ),
        };
        let event = AuditEvent::new(actor, "sla.stop", format!("sla:{}", clock.id))
            .detail("outcome", stopped.state.as_str());
        note(
            conn,
            &stopped,
            now,
            EventKind::Stopped,
            &detail,
            event,
            meta,
        )
        .await?;
        return Ok(stopped);
    }
    Err(SlaError::Changed {
        subject: subject.label(),
        name: name.to_owned(),
    })
}

/// Pauses a running clock that is not yet due (e.g. waiting on the reporter). Its deadline
/// moves later by the paused time when it is resumed.
pub async fn pause(
    conn: &mut AnyConnection,
    now: Millis,
    subject: &Subject,
    name: &str,
    reason: &str,
    actor: &str,
    meta: &RequestMeta,
) -> Result<SlaClock, SlaError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 300 {
        return Err(SlaError::Invalid(
            "Say why the clock is paused (up to 300 characters).".into(),
        ));
    }
    let clock = existing(conn, subject, name).await?;
    if !store::record_pause(conn, &clock.id, reason, now).await? {
        return Err(wrong_state(&clock, now, "paused"));
    }
    let paused = existing(conn, subject, name).await?;
    let event =
        AuditEvent::new(actor, "sla.pause", format!("sla:{}", clock.id)).detail("reason", reason);
    note(conn, &paused, now, EventKind::Paused, reason, event, meta).await?;
    Ok(paused)
}

/// Resumes a paused clock; its deadline (and reminder) move later by the time it was paused.
pub async fn resume(
    conn: &mut AnyConnection,
    now: Millis,
    subject: &Subject,
    name: &str,
    actor: &str,
    meta: &RequestMeta,
) -> Result<SlaClock, SlaError> {
    let clock = existing(conn, subject, name).await?;
    if !store::record_resume(conn, &clock.id, now).await? {
        return Err(wrong_state(&clock, now, "resumed"));
    }
    let resumed = existing(conn, subject, name).await?;
    let paused_for = resumed.paused_total_ms - clock.paused_total_ms;
    let detail = format!(
        "paused for {}, now due {}",
        format::span(paused_for),
        crate::clock::format_ms(resumed.due_at)
    );
    let event = AuditEvent::new(actor, "sla.resume", format!("sla:{}", clock.id))
        .detail("paused_ms", paused_for);
    note(
        conn,
        &resumed,
        now,
        EventKind::Resumed,
        &detail,
        event,
        meta,
    )
    .await?;
    Ok(resumed)
}

/// Changes who a clock reminds (and escalates to, with `escalate_to`) from now on, e.g. the
/// access reviewers who still have open items. Not audited: it changes no deadline.
pub async fn set_notify_to(
    conn: &mut AnyConnection,
    subject: &Subject,
    name: &str,
    notify_to: &[String],
) -> Result<(), SlaError> {
    for address in notify_to {
        format::email(address).map_err(SlaError::Invalid)?;
    }
    let clock = existing(conn, subject, name).await?;
    store::set_notify_to(conn, &clock.id, notify_to).await?;
    Ok(())
}

/// Every clock of a subject, oldest first.
pub async fn for_subject(
    conn: &mut AnyConnection,
    subject: &Subject,
) -> Result<Vec<SlaClock>, sqlx::Error> {
    store::for_subject(conn, subject).await
}

/// Clocks of every kind matching `filter` (states as of `now`), open ones first, with the
/// total count for paging.
pub async fn list(
    conn: &mut AnyConnection,
    now: Millis,
    filter: &ClockFilter,
    page: Page,
) -> Result<(Vec<SlaClock>, i64), sqlx::Error> {
    store::list(conn, now, filter, page).await
}

/// Met and breached clocks of `kind` decided since `since` (met: stopped in the period;
/// breached: deadline in the period), in total and per clock name.
pub async fn record(
    conn: &mut AnyConnection,
    now: Millis,
    kind: SubjectKind,
    since: Millis,
) -> Result<SlaRecord, sqlx::Error> {
    store::record(conn, now, kind, since).await
}

/// Open clocks and, of those, the breached ones at `now` (the dashboard card).
pub async fn open_counts(conn: &mut AnyConnection, now: Millis) -> Result<(i64, i64), sqlx::Error> {
    store::open_counts(conn, now).await
}

/// What happened to the clocks of a subject, oldest first, for its timeline.
pub async fn events_for_subject(
    conn: &mut AnyConnection,
    subject: &Subject,
) -> Result<Vec<SlaEvent>, sqlx::Error> {
    events::events_for_subject(conn, subject).await
}

/// Events of clocks of `kind` after event id `after_id`, oldest first, at most `limit`.
pub async fn events_after(
    conn: &mut AnyConnection,
    kind: SubjectKind,
    after_id: i64,
    limit: i64,
) -> Result<Vec<SlaEvent>, sqlx::Error> {
    events::events_after(conn, kind, after_id, limit).await
}
