//! The disclosure inbox: researchers report vulnerabilities through a public form (found
//! from `/.well-known/security.txt`), follow them on a status page reached by a secret link,
//! and talk with staff in a two-way thread. Three SLA clocks keep the page's promises
//! (DSC-1): acknowledge within 24 hours, a triage update within 5 business days, and a fix
//! of a critical report within 72 hours of confirmation (through a linked finding). The
//! portal pages and the CLI share these operations; every change is audited.

mod actions;
pub mod attachments;
pub mod cli;
pub mod model;
pub mod pages;
pub mod policy;
pub mod public;
pub mod signing;
pub mod store;
mod workflow;

use askama::Template;
use sqlx::AnyConnection;

use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{HOUR, Millis};
use crate::sla::{self, BusinessCalendar, ClockSpec, Subject, SubjectKind};
use model::{NewReport, State};
use store::{Disclosure, Message};
pub use workflow::{Change, note, open_incident, reply, researcher_message, transition, update};

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
    if let Some(n) = workflow::parse_number(id_or_number) {
        return store::find_by_number(conn, n)
            .await?
            .ok_or(DisclosureError::NotFound);
    }
    load(conn, id_or_number.trim()).await
}

/// The report a finding was created from, as (id, `DSC-n`): the finding's link back.
pub async fn for_finding(
    conn: &mut AnyConnection,
    finding_id: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    Ok(store::find_by_finding(conn, finding_id)
        .await?
        .map(|d| (d.id.clone(), d.label())))
}
