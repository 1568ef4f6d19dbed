//! Monitoring (MON-1): counters of API traffic and authentication failures
//! ([`signals`]), detectors over them ([`detect`], run every minute by [`tick`]), Prometheus
//! Alertmanager intake ([`hook`]), and the alerts they raise. An alert carries its evidence,
//! is deduplicated per (detector, subject) within a window, and opens an incident with source
//! `alert` (or adds to the open incident of the same subject), which starts the triage clock;
//! the person on call is paged by email. The portal pages and the CLI share these operations.

mod baselines;
pub mod cli;
pub mod detect;
mod firing;
pub mod hook;
pub mod model;
pub mod pages;
mod signal_store;
pub mod signals;
pub mod store;
pub mod tick;
pub mod traffic;

use sqlx::AnyConnection;

use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{MINUTE, Millis};
use crate::incidents::model::{Severity, Source};
use crate::incidents::{IncidentError, IncidentSettings, NewIncident};
use model::{AlertState, Detector, Evidence};
use store::Alert;

/// The audit actor of the detectors.
pub const DETECTOR_ACTOR: &str = "system:alerts";

/// Why an alert change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("{0}")]
    Invalid(String),
    #[error("alert not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Incident(#[from] IncidentError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("email template: {0}")]
    Template(#[from] askama::Error),
}

impl From<AlertError> for crate::error::AppError {
    fn from(err: AlertError) -> Self {
        use crate::error::AppError;
        match err {
            AlertError::Invalid(m) => AppError::BadRequest(format!("{m} Nothing was changed.")),
            AlertError::NotFound => AppError::NotFound,
            AlertError::Conflict(m) => AppError::Conflict(m),
            AlertError::Incident(e) => e.into(),
            AlertError::Db(e) => e.into(),
            AlertError::Template(e) => AppError::Internal(anyhow::anyhow!("{e}")),
        }
    }
}

/// An alert about to be raised.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub detector: Detector,
    /// What the alert is about, as stored (key id, network, prefix, hashed account, or an
    /// Alertmanager fingerprint). Never a full key or a full address.
    pub subject: String,
    /// The subject as staff read it (key prefix, network …).
    pub subject_label: String,
    pub summary: String,
    pub evidence: Evidence,
    pub fingerprint: Option<String>,
    pub severity: Severity,
    /// When the anomaly happened (the incident's detection time).
    pub detected_at: Millis,
}

/// What [`raise`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raised {
    /// A new alert; `incident_opened` tells whether it opened its incident or joined one.
    New {
        alert_id: String,
        incident_id: String,
        incident_opened: bool,
    },
    /// The same detector already alerted on the subject within the window.
    Repeated { alert_id: String },
}

/// Raises an alert: deduplicates it against the same (detector, subject) within
/// `dedupe_window` (Alertmanager alerts: against the active alert of the same fingerprint),
/// records it, and opens an incident with source `alert` (starting its triage clock and
/// paging whoever is on call) or adds a timeline entry to the open incident of the subject.
pub async fn raise(
    conn: &mut AnyConnection,
    settings: &IncidentSettings<'_>,
    candidate: &Candidate,
    dedupe_window: Millis,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Raised, AlertError> {
    crate::db::lock_until_commit(conn, "alerts.raise").await?;
    let earlier = match &candidate.fingerprint {
        Some(fingerprint) => store::active_by_fingerprint(conn, fingerprint).await?,
        None => {
            store::recent(
                conn,
                candidate.detector,
                &candidate.subject,
                now - dedupe_window,
            )
            .await?
        }
    };
    if let Some(earlier) = earlier {
        store::seen_again(conn, &earlier.id, now).await?;
        return Ok(Raised::Repeated {
            alert_id: earlier.id,
        });
    }
    let mut alert = Alert {
        id: uuid::Uuid::new_v4().to_string(),
        detector: candidate.detector,
        subject: candidate.subject.clone(),
        subject_label: crate::web::clip(&candidate.subject_label, 200),
        summary: crate::web::clip(&candidate.summary, 500),
        state: AlertState::Open,
        source: if candidate.detector == Detector::Alertmanager {
            "alertmanager".into()
        } else {
            "detector".into()
        },
        fingerprint: candidate.fingerprint.clone(),
        evidence: candidate.evidence.clone(),
        opened_at: now,
        last_seen_at: now,
        occurrences: 1,
        incident_id: None,
        state_changed_at: None,
        state_changed_by: None,
        false_positive_reason: None,
    };
    store::insert(conn, &alert).await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "alert.raise", format!("alert:{}", alert.id))
            .detail("detector", alert.detector.as_str())
            .detail("subject", alert.subject_label.as_str()),
    )
    .await?;

    let joined = open_incident_of_subject(conn, &alert.subject).await?;
    let (incident_id, opened) = match joined {
        Some(incident) => {
            crate::incidents::add_note(
                conn,
                &incident,
                &format!(
                    "Alert added: {} ({}). Evidence: /alerts/{}",
                    alert.summary,
                    alert.detector.label(),
                    alert.id
                ),
                actor,
                meta,
                now,
            )
            .await?;
            (incident, false)
        }
        None => {
            let incident = crate::incidents::open(
                conn,
                settings,
                &NewIncident {
                    title: crate::web::clip(&format!("Alert: {}", alert.summary), 200),
                    description: format!(
                        "Raised by the detector “{}” for {}.\n\n{}\n\nRule: {}\nEvidence: /alerts/{}",
                        alert.detector.label(),
                        alert.subject_label,
                        alert.summary,
                        alert.evidence.rule,
                        alert.id
                    ),
                    severity: candidate.severity,
                    source: Source::Alert,
                    detected_at: candidate.detected_at.min(now),
                    affected_customers: String::new(),
                    affected_systems: "processing API".into(),
                    tags: format!("alert,{}", alert.detector.as_str()),
                    personal_data_aware_at: None,
                },
                actor,
                meta,
                now,
            )
            .await?;
            page_on_call(conn, settings, &alert, &incident, now).await?;
            (incident.id, true)
        }
    };
    store::set_incident(conn, &alert.id, &incident_id).await?;
    alert.incident_id = Some(incident_id.clone());
    Ok(Raised::New {
        alert_id: alert.id,
        incident_id,
        incident_opened: opened,
    })
}

/// The open incident an earlier alert about `subject` opened or joined, if any.
async fn open_incident_of_subject(
    conn: &mut AnyConnection,
    subject: &str,
) -> Result<Option<String>, AlertError> {
    for id in store::incidents_for_subject(conn, subject).await? {
        if let Some(incident) = crate::incidents::store::find(conn, &id).await?
            && incident.status.is_open()
        {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

#[derive(askama::Template)]
#[template(path = "email/alert_page.txt")]
struct PageText<'a> {
    summary: &'a str,
    number: i64,
    triage: String,
    detector: &'static str,
    subject: &'a str,
    incident_link: String,
    alert_link: String,
}

#[derive(askama::Template)]
#[template(path = "email/alert_page.html")]
struct PageHtml<'a> {
    summary: &'a str,
    number: i64,
    triage: String,
    detector: &'static str,
    subject: &'a str,
    incident_link: String,
    alert_link: String,
}

/// Emails the person on call at detection (through the outbox) about a new incident.
async fn page_on_call(
    conn: &mut AnyConnection,
    settings: &IncidentSettings<'_>,
    alert: &Alert,
    incident: &crate::incidents::store::Incident,
    now: Millis,
) -> Result<(), AlertError> {
    use askama::Template;
    let Some(staff_id) = &incident.oncall_staff_id else {
        tracing::warn!(
            incident = incident.number,
            "alert opened an incident but nobody is on call"
        );
        return Ok(());
    };
    let Some(person) = crate::oncall::person(conn, staff_id).await? else {
        return Ok(());
    };
    let index = Severity::ALL
        .iter()
        .position(|s| *s == incident.severity)
        .unwrap_or(0);
    let minutes = settings.triage_minutes[index].clamp(1, crate::incidents::MAX_TRIAGE_MINUTES);
    let triage = if minutes == 60 {
        "1 hour".to_owned()
    } else {
        format!("{minutes} minutes")
    };
    let incident_link = format!("/incidents/{}", incident.id);
    let alert_link = format!("/alerts/{}", alert.id);
    let text = PageText {
        summary: &alert.summary,
        number: incident.number,
        triage: triage.clone(),
        detector: alert.detector.label(),
        subject: &alert.subject_label,
        incident_link: incident_link.clone(),
        alert_link: alert_link.clone(),
    }
    .render()?;
    let html = PageHtml {
        summary: &alert.summary,
        number: incident.number,
        triage,
        detector: alert.detector.label(),
        subject: &alert.subject_label,
        incident_link,
        alert_link,
    }
    .render()?;
    crate::notify::enqueue(
        conn,
        &person.email,
        &format!(
            "[trustplane] Alert: INC-{} {}",
            incident.number,
            crate::web::clip(&alert.summary, 120)
        ),
        &text,
        &html,
        &format!("incident:{}", incident.id),
        now,
    )
    .await?;
    Ok(())
}

/// Moves an alert to another state. A false positive needs a reason; it changes no threshold
/// (it is counted per detector on the settings page, for people to decide).
pub async fn change_state(
    conn: &mut AnyConnection,
    id: &str,
    to: AlertState,
    reason: &str,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Alert, AlertError> {
    let alert = store::find(conn, id).await?.ok_or(AlertError::NotFound)?;
    if !alert.state.may_become(to) {
        return Err(AlertError::Conflict(format!(
            "The alert is {} and cannot become {}. Nothing was changed.",
            alert.state.label(),
            to.label()
        )));
    }
    let reason = reason.trim();
    let reason = match to {
        AlertState::FalsePositive => {
            if reason.chars().count() < 3 {
                return Err(AlertError::Invalid(
                    "Say why this is a false positive (at least 3 characters).".into(),
                ));
            }
            Some(crate::web::clip(reason, 1000))
        }
        _ => None,
    };
    if !store::set_state(conn, id, alert.state, to, actor, reason.as_deref(), now).await? {
        return Err(AlertError::Conflict(
            "Someone else changed the alert meanwhile. Nothing was changed; reload and try again."
                .into(),
        ));
    }
    let mut event = AuditEvent::new(actor, "alert.state", format!("alert:{id}"))
        .detail("from", alert.state.as_str())
        .detail("to", to.as_str());
    if let Some(reason) = &reason {
        event = event.detail("reason_characters", reason.chars().count());
    }
    audit::append(conn, now, meta, event).await?;
    if let Some(incident) = &alert.incident_id {
        let note = match &reason {
            Some(reason) => format!("Alert /alerts/{id} marked false positive: {reason}"),
            None => format!("Alert /alerts/{id} is now {}.", to.label()),
        };
        crate::incidents::add_note(conn, incident, &note, actor, meta, now).await?;
    }
    store::find(conn, id).await?.ok_or(AlertError::NotFound)
}

/// The dedupe window from the thresholds.
pub fn dedupe_window(thresholds: &model::Thresholds) -> Millis {
    thresholds.dedupe_minutes * MINUTE
}
