//! Incidents: opened by staff, alerts, disclosures, findings or the CLI; triaged within their
//! clock by on-call staff; moved through allowed statuses; and, for a personal-data breach,
//! carried through the GDPR Art. 33 72-hour notice. Deadlines are SLA clocks
//! ([`crate::sla`]); the timeline is append-only; every change is audited. The portal pages
//! and the CLI share these operations.

pub mod cli;
pub mod model;
pub mod pages;
pub mod store;

use sqlx::AnyConnection;

use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{HOUR, MINUTE, Millis};
use crate::sla::{self, BusinessCalendar, ClockSpec, Subject, SubjectKind};
use model::{Severity, Source, Status};
use store::{BreachNotice, Incident};

/// Name of the triage clock.
pub const TRIAGE_CLOCK: &str = "triage";
/// Name of the GDPR Art. 33 clock.
pub const AUTHORITY_CLOCK: &str = "authority_notice";
/// GDPR Art. 33(1): notify the supervisory authority within 72 hours of becoming aware.
pub const AUTHORITY_NOTICE_HOURS: i64 = 72;
/// The page's promise: every incident triaged within one hour.
pub const MAX_TRIAGE_MINUTES: i64 = 60;

/// Why an incident change was refused.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("{0}")]
    Invalid(String),
    #[error("incident not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Sla(#[from] sla::SlaError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<IncidentError> for crate::error::AppError {
    fn from(err: IncidentError) -> Self {
        use crate::error::AppError;
        match err {
            IncidentError::Invalid(m) => AppError::BadRequest(format!("{m} Nothing was changed.")),
            IncidentError::NotFound => AppError::NotFound,
            IncidentError::Conflict(m) => AppError::Conflict(m),
            IncidentError::Sla(e) => e.into(),
            IncidentError::Db(e) => e.into(),
        }
    }
}

/// The deadline settings incidents need from the configuration.
#[derive(Debug, Clone)]
pub struct IncidentSettings<'a> {
    pub calendar: &'a BusinessCalendar,
    /// Triage target per severity, in minutes (each at most [`MAX_TRIAGE_MINUTES`]).
    pub triage_minutes: [i64; 4],
    /// Reminders and escalations of a breached clock repeat this often.
    pub escalation_interval: Millis,
}

impl IncidentSettings<'_> {
    fn triage_minutes(&self, severity: Severity) -> i64 {
        let index = Severity::ALL
            .iter()
            .position(|s| *s == severity)
            .unwrap_or(0);
        self.triage_minutes[index].clamp(1, MAX_TRIAGE_MINUTES)
    }
}

/// What a new incident is made of.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub source: Source,
    /// When the problem was detected; may be earlier than now.
    pub detected_at: Millis,
    pub affected_customers: String,
    pub affected_systems: String,
    pub tags: String,
    /// A personal-data breach, with when the company became aware of it.
    pub personal_data_aware_at: Option<Millis>,
}

fn subject(id: &str) -> Subject {
    Subject::new(SubjectKind::Incident, id)
}

fn link(id: &str) -> String {
    format!("/incidents/{id}")
}

async fn email_of(
    conn: &mut AnyConnection,
    staff_id: &Option<String>,
) -> Result<Vec<String>, sqlx::Error> {
    Ok(match staff_id {
        Some(id) => crate::oncall::person(conn, id)
            .await?
            .map(|p| vec![p.email])
            .unwrap_or_default(),
        None => Vec::new(),
    })
}

/// Opens an incident: records who was on call when it was detected, starts the triage clock
/// from the detection time (so an incident reported late may already be breached), and for a
/// personal-data breach the 72-hour authority-notice clock from the moment of awareness.
pub async fn open(
    conn: &mut AnyConnection,
    settings: &IncidentSettings<'_>,
    new: &NewIncident,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Incident, IncidentError> {
    let title = model::title(&new.title).map_err(IncidentError::Invalid)?;
    let description =
        model::text(&new.description, 20_000, "description").map_err(IncidentError::Invalid)?;
    if new.detected_at > now + MINUTE {
        return Err(IncidentError::Invalid(
            "The detection time is in the future.".into(),
        ));
    }
    if new
        .personal_data_aware_at
        .is_some_and(|aware| aware > now + MINUTE)
    {
        return Err(IncidentError::Invalid(
            "The time of awareness is in the future.".into(),
        ));
    }
    let on_call = crate::oncall::on_call(conn, new.detected_at).await?;
    let mut incident = Incident {
        id: uuid::Uuid::new_v4().to_string(),
        number: 0,
        title,
        description,
        severity: new.severity,
        status: Status::New,
        source: new.source,
        detected_at: new.detected_at,
        reported_at: now,
        reported_by: actor.to_owned(),
        assignee_id: None,
        oncall_staff_id: on_call.as_ref().map(|c| c.person.id.clone()),
        escalation_staff_id: on_call
            .as_ref()
            .and_then(|c| c.escalation.as_ref().map(|p| p.id.clone())),
        affected_customers: model::text(&new.affected_customers, 2000, "customer list")
            .map_err(IncidentError::Invalid)?,
        affected_systems: model::text(&new.affected_systems, 2000, "system list")
            .map_err(IncidentError::Invalid)?,
        tags: model::text(&new.tags, 500, "tag list").map_err(IncidentError::Invalid)?,
        personal_data: new.personal_data_aware_at.is_some(),
        aware_at: new.personal_data_aware_at,
        triaged_at: None,
        resolved_at: None,
        closed_at: None,
        version: 1,
        updated_at: now,
    };
    let (_, number) = store::insert(conn, &incident).await?;
    incident.number = number;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "incident.open", format!("incident:{}", incident.id))
            .detail("number", number)
            .detail("severity", incident.severity.as_str())
            .detail("source", incident.source.as_str())
            .detail("personal_data", incident.personal_data),
    )
    .await?;
    let on_call_text = match &on_call {
        Some(c) => format!("on call at detection: {}", c.person.email),
        None => "nobody was on call at detection (no rotation set)".into(),
    };
    store::append_timeline(
        conn,
        &incident.id,
        now,
        actor,
        "opened",
        &format!(
            "Opened as {} from {}; detected {}; {on_call_text}.",
            incident.severity.as_str(),
            incident.source.as_str(),
            crate::clock::format_ms(incident.detected_at)
        ),
    )
    .await?;
    let minutes = settings.triage_minutes(incident.severity);
    let notify_to = email_of(conn, &incident.oncall_staff_id).await?;
    let escalate_to = email_of(conn, &incident.escalation_staff_id).await?;
    let link_path = link(&incident.id);
    let target = format!("Triage within {}", minutes_text(minutes));
    sla::start_at(
        conn,
        incident.detected_at,
        now,
        &ClockSpec {
            subject: subject(&incident.id),
            name: TRIAGE_CLOCK,
            target: &target,
            duration: sla::Duration::Millis(minutes * MINUTE),
            calendar: settings.calendar,
            notify_to: notify_to.clone(),
            escalate_to: escalate_to.clone(),
            link_path: &link_path,
            reminder_fraction: Some(0.75),
            escalation_interval: Some(settings.escalation_interval),
        },
        actor,
        meta,
    )
    .await?;
    if let Some(aware_at) = incident.aware_at {
        start_authority_clock(conn, settings, &incident, aware_at, actor, meta, now).await?;
    }
    Ok(incident)
}

fn minutes_text(minutes: i64) -> String {
    if minutes % 60 == 0 {
        let hours = minutes / 60;
        format!("{hours} hour{}", if hours == 1 { "" } else { "s" })
    } else {
        format!("{minutes} minutes")
    }
}

async fn start_authority_clock(
    conn: &mut AnyConnection,
    settings: &IncidentSettings<'_>,
    incident: &Incident,
    aware_at: Millis,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), IncidentError> {
    let mut notify_to = email_of(conn, &incident.oncall_staff_id).await?;
    for email in email_of(conn, &incident.assignee_id).await? {
        if !notify_to.contains(&email) {
            notify_to.push(email);
        }
    }
    let escalate_to = email_of(conn, &incident.escalation_staff_id).await?;
    let link_path = link(&incident.id);
    sla::start_at(
        conn,
        aware_at,
        now,
        &ClockSpec {
            subject: subject(&incident.id),
            name: AUTHORITY_CLOCK,
            target: "Notify the supervisory authority within 72 hours (GDPR Art. 33)",
            duration: sla::Duration::Hours(AUTHORITY_NOTICE_HOURS),
            calendar: settings.calendar,
            notify_to,
            escalate_to,
            link_path: &link_path,
            reminder_fraction: Some(0.5),
            escalation_interval: Some(settings.escalation_interval.max(HOUR)),
        },
        actor,
        meta,
    )
    .await?;
    store::append_timeline(
        conn,
        &incident.id,
        now,
        actor,
        "breach",
        &format!(
            "Personal-data breach; aware since {}. Authority notice due within 72 hours.",
            crate::clock::format_ms(aware_at)
        ),
    )
    .await?;
    Ok(())
}

/// Loads an incident and checks the version the person saw.
async fn load(
    conn: &mut AnyConnection,
    id: &str,
    expected_version: i64,
) -> Result<Incident, IncidentError> {
    let incident = store::find(conn, id)
        .await?
        .ok_or(IncidentError::NotFound)?;
    if incident.version != expected_version {
        return Err(IncidentError::Conflict(format!(
            "INC-{} was changed by someone else while you were looking. Nothing was changed; \
             reload the page and try again.",
            incident.number
        )));
    }
    Ok(incident)
}

async fn save(
    conn: &mut AnyConnection,
    incident: &Incident,
    expected_version: i64,
    now: Millis,
) -> Result<(), IncidentError> {
    if !store::update(conn, incident, expected_version, now).await? {
        return Err(IncidentError::Conflict(format!(
            "INC-{} was changed by someone else meanwhile. Nothing was changed; reload and try \
             again.",
            incident.number
        )));
    }
    Ok(())
}

/// Triage: confirms the severity, names the assignee, and stops the triage clock.
#[allow(clippy::too_many_arguments)]
pub async fn triage(
    conn: &mut AnyConnection,
    id: &str,
    expected_version: i64,
    severity: Severity,
    assignee_email: &str,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Incident, IncidentError> {
    let mut incident = load(conn, id, expected_version).await?;
    if incident.status != Status::New {
        return Err(IncidentError::Invalid(format!(
            "INC-{} is already {}; only a new incident can be triaged.",
            incident.number,
            incident.status.as_str()
        )));
    }
    let assignee =
        crate::staff::store::find_by_email(&mut *conn, &assignee_email.trim().to_lowercase())
            .await?
            .filter(|s| !s.disabled)
            .ok_or_else(|| {
                IncidentError::Invalid(format!(
                    "No enabled staff account is {}; triage needs an assignee.",
                    assignee_email.trim()
                ))
            })?;
    let roles = crate::staff::store::roles_of(&mut *conn, &assignee.id).await?;
    if !roles.iter().any(|r| r == "security" || r == "admin") {
        return Err(IncidentError::Invalid(format!(
            "{} does not have the security role, so cannot be assigned an incident.",
            assignee.email
        )));
    }
    incident.severity = severity;
    incident.assignee_id = Some(assignee.id.clone());
    incident.status = Status::Triaged;
    incident.triaged_at = Some(now);
    save(conn, &incident, expected_version, now).await?;
    let clock = sla::stop(conn, now, &subject(id), TRIAGE_CLOCK, actor, meta).await?;
    let verdict = if clock.state == sla::ClockState::Met {
        "within its clock"
    } else {
        "after its clock was breached"
    };
    store::append_timeline(
        conn,
        id,
        now,
        actor,
        "triaged",
        &format!(
            "Triaged {verdict} as {}; assigned to {}.",
            severity.as_str(),
            assignee.email
        ),
    )
    .await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "incident.triage", format!("incident:{id}"))
            .detail("severity", severity.as_str())
            .detail("assignee", assignee.email.as_str())
            .detail("triage_clock", clock.state.as_str()),
    )
    .await?;
    Ok(incident)
}

/// Moves an incident to `to` when that transition is allowed. Closing a SEV1 or SEV2 needs a
/// completed post-incident review.
pub async fn transition(
    conn: &mut AnyConnection,
    id: &str,
    expected_version: i64,
    to: Status,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Incident, IncidentError> {
    let mut incident = load(conn, id, expected_version).await?;
    let from = incident.status;
    if !from.may_become(to) {
        let hint = if from == Status::New {
            " Triage it first (severity and assignee)."
        } else {
            ""
        };
        return Err(IncidentError::Invalid(format!(
            "INC-{} cannot go from {} to {}.{hint}",
            incident.number,
            from.as_str(),
            to.as_str()
        )));
    }
    if to == Status::Closed && incident.severity.needs_review() && !has_review(conn, id).await? {
        return Err(IncidentError::Invalid(format!(
            "INC-{} is {}: complete the post-incident review before closing it.",
            incident.number,
            incident.severity.as_str()
        )));
    }
    incident.status = to;
    match to {
        Status::Resolved => incident.resolved_at = Some(now),
        Status::Closed => incident.closed_at = Some(now),
        Status::Mitigating => incident.resolved_at = None,
        _ => {}
    }
    save(conn, &incident, expected_version, now).await?;
    store::append_timeline(
        conn,
        id,
        now,
        actor,
        "status",
        &format!("Status {} → {}.", from.as_str(), to.as_str()),
    )
    .await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "incident.status", format!("incident:{id}"))
            .detail("from", from.as_str())
            .detail("to", to.as_str()),
    )
    .await?;
    Ok(incident)
}

/// Adds a plain-text note to the timeline.
pub async fn add_note(
    conn: &mut AnyConnection,
    id: &str,
    note: &str,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), IncidentError> {
    let note = model::text(note, 10_000, "note").map_err(IncidentError::Invalid)?;
    if note.is_empty() {
        return Err(IncidentError::Invalid("The note is empty.".into()));
    }
    store::find(conn, id)
        .await?
        .ok_or(IncidentError::NotFound)?;
    store::append_timeline(conn, id, now, actor, "note", &note).await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "incident.note", format!("incident:{id}"))
            .detail("characters", note.chars().count()),
    )
    .await?;
    Ok(())
}

async fn has_review(conn: &mut AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    use sqlx::Row;
    let row = sqlx::query("SELECT COUNT(*) AS n FROM incident_reviews WHERE incident_id = $1")
        .bind(id)
        .fetch_one(conn)
        .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

/// Records the post-incident review (summary, root cause, actions with owners and dates).
#[allow(clippy::too_many_arguments)]
pub async fn complete_review(
    conn: &mut AnyConnection,
    id: &str,
    summary: &str,
    root_cause: &str,
    actions: &str,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), IncidentError> {
    let summary = model::text(summary, 20_000, "summary").map_err(IncidentError::Invalid)?;
    let root_cause =
        model::text(root_cause, 20_000, "root cause").map_err(IncidentError::Invalid)?;
    let actions = model::text(actions, 20_000, "action list").map_err(IncidentError::Invalid)?;
    if summary.is_empty() || root_cause.is_empty() {
        return Err(IncidentError::Invalid(
            "A review needs a summary and a root cause.".into(),
        ));
    }
    let incident = store::find(conn, id)
        .await?
        .ok_or(IncidentError::NotFound)?;
    if incident.status != Status::Resolved {
        return Err(IncidentError::Invalid(format!(
            "INC-{} is {}; the review is written once it is resolved.",
            incident.number,
            incident.status.as_str()
        )));
    }
    sqlx::query(
        "INSERT INTO incident_reviews (incident_id, summary, root_cause, actions, completed_at, \
         completed_by) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (incident_id) DO UPDATE SET summary = $2, root_cause = $3, actions = $4, \
         completed_at = $5, completed_by = $6",
    )
    .bind(id)
    .bind(&summary)
    .bind(&root_cause)
    .bind(&actions)
    .bind(now)
    .bind(actor)
    .execute(&mut *conn)
    .await?;
    store::append_timeline(
        conn,
        id,
        now,
        actor,
        "review",
        "Post-incident review completed.",
    )
    .await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "incident.review", format!("incident:{id}")),
    )
    .await?;
    Ok(())
}

/// Records the Art. 33 notification and its content. Sending it stops the 72-hour clock; a
/// notice after the deadline needs the reason for the delay (Art. 33(1)).
pub async fn record_authority_notice(
    conn: &mut AnyConnection,
    id: &str,
    notice: &BreachNotice,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), IncidentError> {
    let incident = store::find(conn, id)
        .await?
        .ok_or(IncidentError::NotFound)?;
    if !incident.personal_data {
        return Err(IncidentError::Invalid(format!(
            "INC-{} is not marked as a personal-data breach.",
            incident.number
        )));
    }
    let previous = store::breach_notice(conn, id).await?;
    let clocks = sla::for_subject(conn, &subject(id)).await?;
    let clock = clocks.iter().find(|c| c.name == AUTHORITY_CLOCK);
    if let Some(sent) = notice.notified_at {
        if sent > now + MINUTE {
            return Err(IncidentError::Invalid(
                "The notification time is in the future.".into(),
            ));
        }
        let late = clock.is_some_and(|c| sent >= c.due_at);
        if late && notice.late_reason.trim().is_empty() {
            return Err(IncidentError::Invalid(
                "The notice was sent after the 72-hour deadline: give the reason for the delay \
                 (GDPR Art. 33(1))."
                    .into(),
            ));
        }
        if notice.authority.trim().is_empty() {
            return Err(IncidentError::Invalid(
                "Name the supervisory authority that was notified.".into(),
            ));
        }
    }
    store::save_breach_notice(conn, id, notice, actor, now).await?;
    let first_sending =
        notice.notified_at.is_some() && previous.as_ref().and_then(|p| p.notified_at).is_none();
    if first_sending && clock.is_some_and(|c| c.stopped_at.is_none()) {
        sla::stop(conn, now, &subject(id), AUTHORITY_CLOCK, actor, meta).await?;
    }
    let body = if first_sending {
        format!(
            "Supervisory authority ({}) notified; reference {}.",
            notice.authority.trim(),
            if notice.reference.trim().is_empty() {
                "none"
            } else {
                notice.reference.trim()
            }
        )
    } else if previous.as_ref().and_then(|p| p.notified_at).is_some() {
        "Further information given to the authority (Art. 33(4)).".to_owned()
    } else {
        "Breach notification draft updated.".to_owned()
    };
    store::append_timeline(conn, id, now, actor, "authority_notice", &body).await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "incident.authority_notice", format!("incident:{id}"))
            .detail("sent", notice.notified_at.is_some())
            .detail("authority", notice.authority.trim()),
    )
    .await?;
    Ok(())
}

/// An incident with its clocks and its whole timeline (own entries and clock events), for
/// the detail page and `incidents show --json`.
#[derive(Debug, serde::Serialize)]
pub struct IncidentDetail {
    pub incident: Incident,
    pub clocks: Vec<serde_json::Value>,
    pub timeline: Vec<store::TimelineEntry>,
    pub breach_notice: Option<BreachNotice>,
}

pub async fn detail(
    conn: &mut AnyConnection,
    id: &str,
    now: Millis,
) -> Result<Option<IncidentDetail>, sqlx::Error> {
    let Some(incident) = store::find(conn, id).await? else {
        return Ok(None);
    };
    let clocks = sla::for_subject(conn, &subject(id))
        .await?
        .iter()
        .map(|c| c.summary(now))
        .collect();
    let mut timeline = store::timeline(conn, id).await?;
    for event in sla::events_for_subject(conn, &subject(id)).await? {
        timeline.push(store::TimelineEntry {
            at: event.at,
            author: event.actor,
            kind: format!("clock.{}", event.kind.as_str()),
            body: format!("{} clock: {}", event.clock_name, event.detail),
        });
    }
    timeline.sort_by_key(|e| e.at);
    let breach_notice = store::breach_notice(conn, id).await?;
    Ok(Some(IncidentDetail {
        incident,
        clocks,
        timeline,
        breach_notice,
    }))
}
