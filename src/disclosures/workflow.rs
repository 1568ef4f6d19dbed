//! What staff do with a report: reply (the first reply acknowledges it), internal notes,
//! the researcher's own messages, severity and assignee, state changes with their clock
//! effects (triage, duplicate, critical acceptance → finding, fixed), and opening an incident.

use sqlx::AnyConnection;

use super::model::State;
use super::store::{self, Disclosure};
use super::{
    ACK_CLOCK, CRITICAL_FIX_HOURS, DisclosureError, DisclosureSettings, FIX_CLOCK,
    RESEARCHER_MESSAGES_PER_HOUR, TRIAGE_CLOCK, email_researcher, link, load, load_version,
    message, message_text, save, start_clock, stop_if_open,
};
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{HOUR, Millis};
use crate::findings::model::Severity;
use crate::sla;

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
    if d.state.is_closed() {
        return Err(DisclosureError::Invalid(format!(
            "{} is closed ({}), so it takes no more messages; send a new report if \
             something has changed.",
            d.label(),
            d.state.label()
        )));
    }
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

pub(super) fn parse_number(raw: &str) -> Option<i64> {
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
