//! The disclosure inbox: researchers report vulnerabilities through a public form (found
//! from `/.well-known/security.txt`), follow them on a status page reached by a secret link,
//! and talk with staff in a two-way thread. Three SLA clocks keep the page's promises
//! (DSC-1): acknowledge within 24 hours, a triage update within 5 business days, and a fix
//! of a critical report within 72 hours of confirmation (through a linked finding). The
//! portal pages and the CLI share these operations; every change is audited.

pub mod attachments;
pub mod cli;
pub mod model;
pub mod pages;
pub mod public;
pub mod store;

use askama::Template;
use sqlx::AnyConnection;

use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{HOUR, Millis};
use crate::findings::model::Severity;
use crate::sla::{self, BusinessCalendar, ClockSpec, Subject, SubjectKind};
use model::{NewReport, State};
use store::{Disclosure, Message};

/// Acknowledge within 24 hours of receipt.
pub const ACK_CLOCK: &str = "acknowledge";
/// A triage update within 5 business days of receipt.
pub const TRIAGE_CLOCK: &str = "triage_update";
/// A critical report fixed within 72 hours of confirmation.
pub const FIX_CLOCK: &str = "critical_fix";
pub const ACK_HOURS: i64 = 24;
pub const TRIAGE_BUSINESS_DAYS: i64 = 5;
pub const CRITICAL_FIX_HOURS: i64 = 72;
/// Messages a researcher may post on one report per hour.
pub const RESEARCHER_MESSAGES_PER_HOUR: i64 = 20;
/// Longest message in the thread.
pub const MAX_MESSAGE_CHARS: usize = 20_000;

/// Why a disclosure change was refused.
#[derive(Debug, thiserror::Error)]
pub enum DisclosureError {
    #[error("{0}")]
    Invalid(String),
    #[error("report not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// Too many reports or messages from one place; try again later.
    #[error("rate limited")]
    Limited { retry_after_seconds: u64 },
    #[error(transparent)]
    Sla(#[from] sla::SlaError),
    #[error(transparent)]
    Finding(#[from] crate::findings::FindingError),
    #[error(transparent)]
    Incident(#[from] crate::incidents::IncidentError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("attachment storage: {0:#}")]
    Storage(anyhow::Error),
}

impl From<DisclosureError> for crate::error::AppError {
    fn from(err: DisclosureError) -> Self {
        use crate::error::AppError;
        match err {
            DisclosureError::Invalid(m) => {
                AppError::BadRequest(format!("{m} Nothing was changed."))
            }
            DisclosureError::NotFound => AppError::NotFound,
            DisclosureError::Conflict(m) => AppError::Conflict(m),
            DisclosureError::Limited {
                retry_after_seconds,
            } => AppError::Busy {
                retry_after_seconds,
            },
            DisclosureError::Sla(e) => e.into(),
            DisclosureError::Finding(e) => e.into(),
            DisclosureError::Incident(e) => e.into(),
            DisclosureError::Db(e) => e.into(),
            DisclosureError::Storage(e) => AppError::Internal(e),
        }
    }
}

/// What the inbox needs from the configuration.
#[derive(Debug, Clone)]
pub struct DisclosureSettings<'a> {
    pub calendar: &'a BusinessCalendar,
    pub escalation_interval: Millis,
    /// Absolute base of links in emails (`https://trust.example.com`), no trailing slash.
    pub base_url: String,
    pub findings: crate::findings::FindingSettings<'a>,
    pub incidents: crate::incidents::IncidentSettings<'a>,
}

fn subject(id: &str) -> Subject {
    Subject::new(SubjectKind::Disclosure, id)
}

fn link(id: &str) -> String {
    format!("/disclosures/{id}")
}

/// The researcher's status page for `token`.
pub fn status_path(token: &str) -> String {
    format!("/security/reports/{token}")
}

/// SHA-256 of a status token, as stored.
pub fn token_hash(token: &str) -> String {
    crate::crypto::sha256_hex(token.as_bytes())
}

fn message(author: &str, kind: &str, visible: bool, body: &str, now: Millis) -> Message {
    Message {
        id: uuid::Uuid::new_v4().to_string(),
        at: now,
        author: author.to_owned(),
        kind: kind.to_owned(),
        visible,
        body: body.to_owned(),
    }
}

fn message_text(raw: &str, required: bool) -> Result<String, DisclosureError> {
    model::text(raw, MAX_MESSAGE_CHARS, "message", required).map_err(DisclosureError::Invalid)
}

#[derive(Template)]
#[template(path = "email/disclosure_update.txt")]
struct UpdateText<'a> {
    label: &'a str,
    title: &'a str,
    headline: &'a str,
    body: &'a str,
    state: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "email/disclosure_update.html")]
struct UpdateHtml<'a> {
    label: &'a str,
    title: &'a str,
    headline: &'a str,
    body: &'a str,
    state: &'a str,
    link: &'a str,
}

/// Emails the researcher (when they gave an address) through the outbox. The status link
/// is included only in the receipt, the one time the researcher can be sent it; later
/// emails point to "the link from your first email".
async fn email_researcher(
    conn: &mut AnyConnection,
    d: &Disclosure,
    headline: &str,
    body: &str,
    link: &str,
    now: Millis,
) -> Result<(), DisclosureError> {
    if d.reporter_email.is_empty() {
        return Ok(());
    }
    let fields = (
        d.label(),
        d.title.as_str(),
        headline,
        body,
        d.state.label(),
        link,
    );
    let render = |e: askama::Error| DisclosureError::Storage(anyhow::anyhow!("email: {e}"));
    let text = UpdateText {
        label: &fields.0,
        title: fields.1,
        headline: fields.2,
        body: fields.3,
        state: fields.4,
        link: fields.5,
    }
    .render()
    .map_err(render)?;
    let html = UpdateHtml {
        label: &fields.0,
        title: fields.1,
        headline: fields.2,
        body: fields.3,
        state: fields.4,
        link: fields.5,
    }
    .render()
    .map_err(render)?;
    crate::notify::enqueue(
        conn,
        &d.reporter_email,
        &format!("[{}] {headline}", d.label()),
        &text,
        &html,
        &format!("disclosure:{}", d.id),
        now,
    )
    .await?;
    Ok(())
}

async fn on_call_addresses(
    conn: &mut AnyConnection,
    now: Millis,
) -> Result<(Vec<String>, Vec<String>), sqlx::Error> {
    let on_call = crate::oncall::on_call(conn, now).await?;
    let notify_to = on_call.iter().map(|c| c.person.email.clone()).collect();
    let escalate_to = on_call
        .iter()
        .filter_map(|c| c.escalation.as_ref().map(|p| p.email.clone()))
        .collect();
    Ok((notify_to, escalate_to))
}

#[allow(clippy::too_many_arguments)]
async fn start_clock(
    conn: &mut AnyConnection,
    settings: &DisclosureSettings<'_>,
    id: &str,
    name: &str,
    target: &str,
    duration: sla::Duration,
    started_at: Millis,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<sla::SlaClock, DisclosureError> {
    let (notify_to, escalate_to) = on_call_addresses(conn, now).await?;
    let link = link(id);
    Ok(sla::start_at(
        conn,
        started_at,
        now,
        &ClockSpec {
            subject: subject(id),
            name,
            target,
            duration,
            calendar: settings.calendar,
            notify_to,
            escalate_to,
            link_path: &link,
            reminder_fraction: Some(0.75),
            escalation_interval: Some(settings.escalation_interval.max(crate::clock::MINUTE)),
        },
        actor,
        meta,
    )
    .await?)
}

/// Stops the clock `name` of a report if it is still open; returns whether it did.
async fn stop_if_open(
    conn: &mut AnyConnection,
    id: &str,
    name: &str,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<bool, DisclosureError> {
    let open = sla::for_subject(conn, &subject(id))
        .await?
        .into_iter()
        .any(|c| c.name == name && c.stopped_at.is_none() && c.state != sla::ClockState::Met);
    if open {
        sla::stop(conn, now, &subject(id), name, actor, meta).await?;
    }
    Ok(open)
}

/// A report as received, with the status token (shown once, never stored).
#[derive(Debug)]
pub struct Received {
    pub disclosure: Disclosure,
    pub token: String,
}

/// Records a report from the public form: checks the per-network limit, stores the report
/// with the SHA-256 of a fresh 256-bit status token, starts the acknowledge and triage
/// clocks from receipt, and queues the receipt email (which does not count as an
/// acknowledgement). Attachments are added by the caller in the same transaction.
pub async fn submit(
    conn: &mut AnyConnection,
    settings: &DisclosureSettings<'_>,
    report: NewReport,
    network_hash: &str,
    reports_per_hour: i64,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Received, DisclosureError> {
    let report = report.parse().map_err(DisclosureError::Invalid)?;
    crate::db::lock_until_commit(conn, "disclosure submissions").await?;
    let recent = store::count_from_network(conn, network_hash, now - HOUR).await?;
    if recent >= reports_per_hour.max(1) {
        return Err(DisclosureError::Limited {
            retry_after_seconds: 3600,
        });
    }
    let token = crate::crypto::random_token(32);
    let mut d = Disclosure {
        id: uuid::Uuid::new_v4().to_string(),
        number: 0,
        title: report.title,
        description: report.description,
        asset: report.asset,
        steps: report.steps,
        impact: report.impact,
        cvss_vector: report.cvss_vector,
        reporter_name: report.reporter_name,
        reporter_email: report.reporter_email,
        credit_public: report.credit_public,
        state: State::New,
        severity: None,
        assignee_id: None,
        duplicate_of: None,
        finding_id: None,
        incident_id: None,
        received_at: now,
        confirmed_at: None,
        version: 1,
        updated_at: now,
    };
    d.number = store::insert(conn, &d, &token_hash(&token), network_hash).await?;
    let actor = "researcher";
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "disclosure.receive", format!("disclosure:{}", d.id))
            .detail("number", d.number)
            .detail("anonymous", d.reporter_email.is_empty()),
    )
    .await?;
    store::insert_message(
        conn,
        &d.id,
        &message("system", "event", true, "Report received.", now),
    )
    .await?;
    start_clock(
        conn,
        settings,
        &d.id,
        ACK_CLOCK,
        "Acknowledge within 24 hours",
        sla::Duration::Hours(ACK_HOURS),
        now,
        actor,
        meta,
        now,
    )
    .await?;
    start_clock(
        conn,
        settings,
        &d.id,
        TRIAGE_CLOCK,
        "Triage update within 5 business days",
        sla::Duration::BusinessDays(TRIAGE_BUSINESS_DAYS),
        now,
        actor,
        meta,
        now,
    )
    .await?;
    let status_link = format!("{}{}", settings.base_url, status_path(&token));
    email_researcher(
        conn,
        &d,
        "We received your report",
        "Thank you. We will acknowledge your report within 24 hours and send a triage \
         update within 5 business days. Keep the status link below private: anyone with it \
         can read and reply to this report.",
        &status_link,
        now,
    )
    .await?;
    Ok(Received {
        disclosure: d,
        token,
    })
}

async fn load(conn: &mut AnyConnection, id: &str) -> Result<Disclosure, DisclosureError> {
    store::find(conn, id)
        .await?
        .ok_or(DisclosureError::NotFound)
}

async fn load_version(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
) -> Result<Disclosure, DisclosureError> {
    let d = load(conn, id).await?;
    if d.version != version {
        return Err(DisclosureError::Conflict(format!(
            "{} was changed by someone else while you were looking. Nothing was changed; \
             reload and try again.",
            d.label()
        )));
    }
    Ok(d)
}

async fn save(
    conn: &mut AnyConnection,
    d: &Disclosure,
    version: i64,
    now: Millis,
) -> Result<(), DisclosureError> {
    if !store::update(conn, d, version, now).await? {
        return Err(DisclosureError::Conflict(format!(
            "{} was changed by someone else meanwhile. Nothing was changed.",
            d.label()
        )));
    }
    Ok(())
}

/// The researcher link in staff emails: the researcher uses the link of their receipt.
fn researcher_link_hint(settings: &DisclosureSettings<'_>) -> String {
    format!(
        "Use the status link from your first email, or {}/security to report again.",
        settings.base_url
    )
}

/// A staff reply the researcher sees on the status page and by email. The first one
/// acknowledges the report (stops the 24-hour clock, and a new report becomes
/// acknowledged).
pub async fn reply(
    conn: &mut AnyConnection,
    settings: &DisclosureSettings<'_>,
    id: &str,
    body: &str,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Disclosure, DisclosureError> {
    let body = message_text(body, true)?;
    let mut d = load(conn, id).await?;
    store::insert_message(conn, id, &message(actor, "reply", true, &body, now)).await?;
    stop_if_open(conn, id, ACK_CLOCK, actor, meta, now).await?;
    if d.state == State::New {
        let version = d.version;
        d.state = State::Acknowledged;
        save(conn, &d, version, now).await?;
        d.version += 1;
        store::insert_message(
            conn,
            id,
            &message(actor, "event", true, "State changed to acknowledged.", now),
        )
        .await?;
    }
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "disclosure.reply", format!("disclosure:{id}"))
            .detail("chars", body.chars().count()),
    )
    .await?;
    email_researcher(
        conn,
        &d,
        "New message about your report",
        &body,
        &researcher_link_hint(settings),
        now,
    )
    .await?;
    Ok(d)
}

/// An internal note: never shown to the researcher, never emailed, no clock effect.
pub async fn note(
    conn: &mut AnyConnection,
    id: &str,
    body: &str,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), DisclosureError> {
    let body = message_text(body, true)?;
    load(conn, id).await?;
    store::insert_message(conn, id, &message(actor, "note", false, &body, now)).await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "disclosure.note", format!("disclosure:{id}")),
    )
    .await?;
    Ok(())
}

/// A message from the researcher on the status page (limited per report and hour).
pub async fn researcher_message(
    conn: &mut AnyConnection,
    d: &Disclosure,
    body: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), DisclosureError> {
    let body = message_text(body, false)?;
    if store::researcher_messages_since(conn, &d.id, now - HOUR).await?
        >= RESEARCHER_MESSAGES_PER_HOUR
    {
        return Err(DisclosureError::Limited {
            retry_after_seconds: 3600,
        });
    }
    if !body.is_empty() {
        store::insert_message(
            conn,
            &d.id,
            &message("researcher", "researcher", true, &body, now),
        )
        .await?;
    }
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(
            "researcher",
            "disclosure.researcher_message",
            format!("disclosure:{}", d.id),
        )
        .detail("chars", body.chars().count()),
    )
    .await?;
    Ok(())
}

/// Sets the severity and the assignee (staff id, or `None`).
#[allow(clippy::too_many_arguments)]
pub async fn update(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
    severity: Option<Severity>,
    assignee_id: Option<String>,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Disclosure, DisclosureError> {
    let mut d = load_version(conn, id, version).await?;
    if d.confirmed_at.is_some() && severity != d.severity {
        return Err(DisclosureError::Invalid(format!(
            "{} is already accepted; change the severity on its finding instead.",
            d.label()
        )));
    }
    if let Some(staff_id) = &assignee_id
        && crate::oncall::person(conn, staff_id).await?.is_none()
    {
        return Err(DisclosureError::Invalid(
            "The assignee is not a staff member.".into(),
        ));
    }
    d.severity = severity;
    d.assignee_id = assignee_id;
    save(conn, &d, version, now).await?;
    d.version += 1;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "disclosure.update", format!("disclosure:{id}"))
            .detail("severity", d.severity_str())
            .detail("assignee", d.assignee_id.clone().unwrap_or_default()),
    )
    .await?;
    Ok(d)
}

/// What a state change carries besides the new state.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Shown to the researcher and emailed; required for `triaged`.
    pub message: String,
    /// For `duplicate`: the number of the earlier report (`7` or `DSC-7`).
    pub duplicate_of: String,
}

fn parse_number(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    let digits = raw
        .strip_prefix("DSC-")
        .or_else(|| raw.strip_prefix("dsc-"))
        .unwrap_or(raw);
    digits.parse().ok().filter(|n: &i64| *n > 0)
}

/// Moves a report to `to`. Every state change is researcher-visible, so the first one
/// stops the acknowledge clock; a triage outcome stops the triage clock (`triaged` needs a
/// message); accepting a critical report creates a linked finding and starts the 72-hour
/// fix clock, which `fixed` stops.
#[allow(clippy::too_many_arguments)]
pub async fn transition(
    conn: &mut AnyConnection,
    settings: &DisclosureSettings<'_>,
    id: &str,
    version: i64,
    to: State,
    change: &Change,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Disclosure, DisclosureError> {
    let mut d = load_version(conn, id, version).await?;
    let from = d.state;
    if !from.may_become(to) {
        return Err(DisclosureError::Invalid(format!(
            "{} cannot go from {} to {}.",
            d.label(),
            from.as_str(),
            to.as_str()
        )));
    }
    let mut text = message_text(&change.message, false)?;
    if to == State::Triaged && text.is_empty() {
        return Err(DisclosureError::Invalid(
            "Write the triage update for the researcher: what you found and what happens next."
                .into(),
        ));
    }
    match to {
        State::Duplicate => {
            let original = match parse_number(&change.duplicate_of) {
                Some(n) => store::find_by_number(conn, n).await?,
                None => None,
            }
            .filter(|o| o.id != d.id)
            .ok_or_else(|| {
                DisclosureError::Invalid(format!(
                    "Name the earlier report this duplicates, e.g. DSC-3 (“{}” is not another report).",
                    crate::web::clip(change.duplicate_of.trim(), 20)
                ))
            })?;
            d.duplicate_of = Some(original.id.clone());
            if text.is_empty() {
                text = format!(
                    "This report describes the same issue as an earlier report ({}), so it is \
                     closed as a duplicate. Thank you for reporting it.",
                    original.label()
                );
            }
        }
        State::Accepted => {
            let Some(severity) = d.severity else {
                return Err(DisclosureError::Invalid(format!(
                    "Rate the severity of {} before accepting it.",
                    d.label()
                )));
            };
            d.confirmed_at = Some(now);
            if severity == Severity::Critical {
                let finding = crate::findings::create(
                    conn,
                    &settings.findings,
                    &crate::findings::NewFinding {
                        title: d.title.clone(),
                        description: format!(
                            "From disclosure {} ({}).\n\n{}",
                            d.label(),
                            link(&d.id),
                            d.description
                        ),
                        severity: severity.as_str().to_owned(),
                        cvss_vector: d.cvss_vector.clone(),
                        asset: d.asset.clone(),
                        source: "disclosure".into(),
                        confirmed_at: now,
                        engagement_id: None,
                    },
                    actor,
                    meta,
                    now,
                )
                .await?;
                d.finding_id = Some(finding.id.clone());
                start_clock(
                    conn,
                    settings,
                    &d.id,
                    FIX_CLOCK,
                    "Fix a critical report within 72 hours of confirmation",
                    sla::Duration::Hours(CRITICAL_FIX_HOURS),
                    now,
                    actor,
                    meta,
                    now,
                )
                .await?;
            }
        }
        State::Fixed => {
            stop_if_open(conn, id, FIX_CLOCK, actor, meta, now).await?;
        }
        _ => {}
    }
    stop_if_open(conn, id, ACK_CLOCK, actor, meta, now).await?;
    if to.is_triage_outcome() {
        stop_if_open(conn, id, TRIAGE_CLOCK, actor, meta, now).await?;
    }
    d.state = to;
    save(conn, &d, version, now).await?;
    d.version += 1;
    store::insert_message(
        conn,
        id,
        &message(
            actor,
            "event",
            true,
            &format!("State changed to {}.", to.as_str()),
            now,
        ),
    )
    .await?;
    if !text.is_empty() {
        store::insert_message(conn, id, &message(actor, "reply", true, &text, now)).await?;
    }
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "disclosure.state", format!("disclosure:{id}"))
            .detail("from", from.as_str())
            .detail("to", to.as_str())
            .detail("finding", d.finding_id.clone().unwrap_or_default()),
    )
    .await?;
    let body = if text.is_empty() {
        format!("Your report is now: {}.", to.label())
    } else {
        text
    };
    email_researcher(
        conn,
        &d,
        &format!("Your report is now {}", to.label()),
        &body,
        &researcher_link_hint(settings),
        now,
    )
    .await?;
    Ok(d)
}

/// Opens an incident (source `disclosure`) for a report and links it.
pub async fn open_incident(
    conn: &mut AnyConnection,
    settings: &DisclosureSettings<'_>,
    id: &str,
    version: i64,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Disclosure, DisclosureError> {
    use crate::incidents::model::{Severity as Sev, Source};
    let mut d = load_version(conn, id, version).await?;
    if d.incident_id.is_some() {
        return Err(DisclosureError::Conflict(format!(
            "{} already has an incident.",
            d.label()
        )));
    }
    if matches!(
        d.state,
        State::Spam | State::NotApplicable | State::Duplicate
    ) {
        return Err(DisclosureError::Invalid(format!(
            "{} is {}; only a valid report opens an incident.",
            d.label(),
            d.state.as_str()
        )));
    }
    let severity = match d.severity {
        Some(Severity::Critical) => Sev::Sev1,
        Some(Severity::High) => Sev::Sev2,
        Some(Severity::Medium) => Sev::Sev3,
        _ => Sev::Sev4,
    };
    let title: String = format!("{}: {}", d.label(), d.title)
        .chars()
        .take(200)
        .collect();
    let incident = crate::incidents::open(
        conn,
        &settings.incidents,
        &crate::incidents::NewIncident {
            title,
            description: format!(
                "Opened from disclosure {} ({}).\n\nAffected: {}",
                d.label(),
                link(&d.id),
                d.asset
            ),
            severity,
            source: Source::Disclosure,
            detected_at: now,
            affected_customers: String::new(),
            affected_systems: d.asset.chars().take(2000).collect(),
            tags: "disclosure".into(),
            personal_data_aware_at: None,
        },
        actor,
        meta,
        now,
    )
    .await?;
    d.incident_id = Some(incident.id.clone());
    save(conn, &d, version, now).await?;
    d.version += 1;
    store::insert_message(
        conn,
        id,
        &message(
            actor,
            "event",
            false,
            &format!("Incident INC-{} opened.", incident.number),
            now,
        ),
    )
    .await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "disclosure.incident", format!("disclosure:{id}"))
            .detail("incident", incident.id.as_str()),
    )
    .await?;
    Ok(d)
}

/// A report with everything the staff detail page and `disclosures show` need.
#[derive(Debug, Clone)]
pub struct Detail {
    pub disclosure: Disclosure,
    pub messages: Vec<Message>,
    pub attachments: Vec<store::Attachment>,
    pub clocks: Vec<sla::SlaClock>,
    pub duplicate_of: Option<Disclosure>,
}

pub async fn detail(
    conn: &mut AnyConnection,
    id: &str,
    visible_only: bool,
) -> Result<Detail, DisclosureError> {
    let disclosure = load(conn, id).await?;
    let messages = store::messages(conn, id, visible_only).await?;
    let attachments = store::attachments(conn, id).await?;
    let clocks = sla::for_subject(conn, &subject(id)).await?;
    let duplicate_of = match &disclosure.duplicate_of {
        Some(other) => store::find(conn, other).await?,
        None => None,
    };
    Ok(Detail {
        disclosure,
        messages,
        attachments,
        clocks,
        duplicate_of,
    })
}

/// The report behind a status token, or `None` (for every wrong token alike). The lookup
/// is by hash; the stored hash is compared again in constant time.
pub async fn by_token(
    conn: &mut AnyConnection,
    token: &str,
) -> Result<Option<Disclosure>, DisclosureError> {
    if token.len() < 22 || token.len() > 128 {
        return Ok(None);
    }
    let hash = token_hash(token);
    Ok(store::find_by_token_hash(conn, &hash)
        .await?
        .filter(|(_, stored)| crate::crypto::constant_time_eq(stored, &hash))
        .map(|(d, _)| d))
}

/// Finds a report by id or by `DSC-n` / `n`.
pub async fn find(
    conn: &mut AnyConnection,
    id_or_number: &str,
) -> Result<Disclosure, DisclosureError> {
    if let Some(n) = parse_number(id_or_number) {
        return store::find_by_number(conn, n)
            .await?
            .ok_or(DisclosureError::NotFound);
    }
    load(conn, id_or_number.trim()).await
}
