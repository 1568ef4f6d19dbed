//! Findings from pentests, disclosures and internal reviews, each with a remediation clock by
//! severity (critical 72 hours, as the page promises). Imported from a pentest report's CSV
//! all-or-nothing; fixed, verified, or accepted as a risk by someone other than who raised it.
//! Pentest engagements, which produce findings, live in [`engagements`].

pub mod cli;
pub mod engagements;
pub mod model;
pub mod pages;
pub mod store;

use sqlx::AnyConnection;

use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{HOUR, MINUTE, Millis};
use crate::sla::{self, BusinessCalendar, ClockSpec, Subject, SubjectKind};
use model::{Severity, Status};
use store::Finding;

/// Name of the remediation clock.
pub const REMEDIATION_CLOCK: &str = "remediation";
/// The page's promise for critical findings.
pub const MAX_CRITICAL_HOURS: i64 = 72;

#[derive(Debug, thiserror::Error)]
pub enum FindingError {
    #[error("{0}")]
    Invalid(String),
    /// A CSV import with bad rows: every problem, by row; nothing was imported.
    #[error("{} row(s) have problems; nothing was imported", .0.len())]
    Rows(Vec<String>),
    #[error("finding not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Sla(#[from] sla::SlaError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// The blob store (an engagement's report) failed.
    #[error("report storage: {0:#}")]
    Storage(anyhow::Error),
}

impl From<FindingError> for crate::error::AppError {
    fn from(err: FindingError) -> Self {
        use crate::error::AppError;
        match err {
            FindingError::Invalid(m) => AppError::BadRequest(format!("{m} Nothing was changed.")),
            FindingError::Rows(rows) => AppError::BadRequest(format!(
                "Nothing was imported. Fix these rows and try again: {}",
                rows.join(" · ")
            )),
            FindingError::NotFound => AppError::NotFound,
            FindingError::Conflict(m) => AppError::Conflict(m),
            FindingError::Sla(e) => e.into(),
            FindingError::Db(e) => e.into(),
            FindingError::Storage(e) => AppError::Internal(e),
        }
    }
}

/// The deadline settings findings need from the configuration.
#[derive(Debug, Clone)]
pub struct FindingSettings<'a> {
    pub calendar: &'a BusinessCalendar,
    /// Remediation hours for critical, high, medium, low.
    pub remediation_hours: [i64; 4],
    pub escalation_interval: Millis,
}

/// What a new finding is made of.
#[derive(Debug, Clone, Default)]
pub struct NewFinding {
    pub title: String,
    pub description: String,
    pub severity: String,
    pub cvss_vector: String,
    pub asset: String,
    pub source: String,
    pub confirmed_at: Millis,
    pub engagement_id: Option<String>,
}

fn subject(id: &str) -> Subject {
    Subject::new(SubjectKind::Finding, id)
}

/// Turns input into a finding record, or says what is wrong with it.
fn validate(new: &NewFinding, actor: &str, now: Millis) -> Result<Finding, String> {
    let title = new.title.trim();
    if !(3..=200).contains(&title.chars().count()) {
        return Err("the title must be 3 to 200 characters".into());
    }
    let severity = Severity::parse(&new.severity)?;
    let score = model::cvss(&new.cvss_vector)?;
    let asset = new.asset.trim();
    if asset.is_empty() || asset.chars().count() > 500 {
        return Err("the affected asset must be 1 to 500 characters".into());
    }
    if new.confirmed_at > now + MINUTE {
        return Err("the confirmation time is in the future".into());
    }
    if new.description.chars().count() > 20_000 {
        return Err("the description is longer than 20 000 characters".into());
    }
    Ok(Finding {
        id: uuid::Uuid::new_v4().to_string(),
        number: 0,
        title: title.to_owned(),
        description: new.description.trim().to_owned(),
        severity,
        cvss_vector: score.as_ref().map(|s| s.vector.clone()),
        cvss_score: score.map(|s| s.score),
        asset: asset.to_owned(),
        source: model::source(&new.source)?,
        engagement_id: new.engagement_id.clone(),
        confirmed_at: new.confirmed_at,
        status: Status::Open,
        raised_by: actor.to_owned(),
        fix_evidence: String::new(),
        fixed_at: None,
        verified_at: None,
        risk_approver: None,
        risk_reason: None,
        risk_expires_at: None,
        version: 1,
        created_at: now,
    })
}

async fn insert_with_clock(
    conn: &mut AnyConnection,
    settings: &FindingSettings<'_>,
    mut finding: Finding,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Finding, FindingError> {
    finding.number = store::insert(conn, &finding).await?;
    let hours = settings.remediation_hours[finding.severity.index()].max(1);
    let on_call = crate::oncall::on_call(conn, now).await?;
    let notify_to: Vec<String> = on_call.iter().map(|c| c.person.email.clone()).collect();
    let escalate_to: Vec<String> = on_call
        .iter()
        .filter_map(|c| c.escalation.as_ref().map(|p| p.email.clone()))
        .collect();
    let target = if hours % 24 == 0 && hours >= 48 {
        format!("Remediate within {} days", hours / 24)
    } else {
        format!("Remediate within {hours} hours")
    };
    let link = format!("/findings/{}", finding.id);
    sla::start_at(
        conn,
        finding.confirmed_at,
        now,
        &ClockSpec {
            subject: subject(&finding.id),
            name: REMEDIATION_CLOCK,
            target: &target,
            duration: sla::Duration::Hours(hours),
            calendar: settings.calendar,
            notify_to,
            escalate_to,
            link_path: &link,
            reminder_fraction: Some(0.75),
            escalation_interval: Some(settings.escalation_interval.max(HOUR)),
        },
        actor,
        meta,
    )
    .await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "finding.create", format!("finding:{}", finding.id))
            .detail("number", finding.number)
            .detail("severity", finding.severity.as_str())
            .detail("source", finding.source.as_str()),
    )
    .await?;
    Ok(finding)
}

/// Records a finding and starts its remediation clock from the confirmation time.
pub async fn create(
    conn: &mut AnyConnection,
    settings: &FindingSettings<'_>,
    new: &NewFinding,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Finding, FindingError> {
    let finding = validate(new, actor, now).map_err(|e| {
        let mut message = e;
        if let Some(first) = message.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        FindingError::Invalid(format!("{message}."))
    })?;
    insert_with_clock(conn, settings, finding, actor, meta, now).await
}

/// The columns a pentest CSV must have; `description`, `cvss_vector` and `source` may follow.
pub const CSV_REQUIRED: [&str; 4] = ["title", "severity", "asset", "confirmed_at"];

/// Imports every row of a pentest report's CSV, or none: all rows are checked first and each
/// problem is reported with its row number; only a clean file is written (in the caller's
/// transaction).
pub async fn import_csv(
    conn: &mut AnyConnection,
    settings: &FindingSettings<'_>,
    csv_text: &str,
    engagement_id: Option<&str>,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Vec<Finding>, FindingError> {
    if let Some(id) = engagement_id
        && engagements::store::find(conn, id).await?.is_none()
    {
        return Err(FindingError::Invalid(format!(
            "There is no pentest engagement “{id}”; record it first (trustplane findings \
             engagement list shows the ids)."
        )));
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(csv_text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| FindingError::Invalid(format!("The CSV header cannot be read: {e}.")))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let missing: Vec<&str> = CSV_REQUIRED
        .iter()
        .copied()
        .filter(|c| column(c).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(FindingError::Invalid(format!(
            "The CSV header lacks {}; it needs {} (plus optional description, cvss_vector, source).",
            missing.join(", "),
            CSV_REQUIRED.join(",")
        )));
    }
    let mut findings = Vec::new();
    let mut problems = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("row {line}: {e}"));
                continue;
            }
        };
        let get = |name: &str| {
            column(name)
                .and_then(|i| record.get(i))
                .unwrap_or_default()
                .to_owned()
        };
        let confirmed_at = match chrono::DateTime::parse_from_rfc3339(&get("confirmed_at")) {
            Ok(t) => t.timestamp_millis(),
            Err(_) => {
                problems.push(format!(
                    "row {line}: confirmed_at “{}” is not an RFC 3339 time",
                    get("confirmed_at")
                ));
                continue;
            }
        };
        let new = NewFinding {
            title: get("title"),
            description: get("description"),
            severity: get("severity"),
            cvss_vector: get("cvss_vector"),
            asset: get("asset"),
            source: get("source"),
            confirmed_at,
            engagement_id: engagement_id.map(str::to_owned),
        };
        match validate(&new, actor, now) {
            Ok(f) => findings.push(f),
            Err(e) => problems.push(format!("row {line}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(FindingError::Rows(problems));
    }
    if findings.is_empty() {
        return Err(FindingError::Invalid("The CSV has no rows.".into()));
    }
    if findings.len() > 5000 {
        return Err(FindingError::Invalid(
            "At most 5000 findings per import.".into(),
        ));
    }
    let mut saved = Vec::with_capacity(findings.len());
    for finding in findings {
        saved.push(insert_with_clock(conn, settings, finding, actor, meta, now).await?);
    }
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "finding.import", "findings").detail("rows", saved.len()),
    )
    .await?;
    Ok(saved)
}

async fn remediation_clock(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<sla::SlaClock>, sqlx::Error> {
    Ok(sla::for_subject(conn, &subject(id))
        .await?
        .into_iter()
        .find(|c| c.name == REMEDIATION_CLOCK))
}

/// Critical findings confirmed since `since`: (fixed within their clock, breached), as of
/// `now` — an open critical finding past its deadline counts as breached.
pub async fn critical_record(
    conn: &mut AnyConnection,
    now: Millis,
    since: Millis,
) -> Result<(i64, i64), sqlx::Error> {
    store::critical_record(conn, now, since).await
}

async fn load(conn: &mut AnyConnection, id: &str, version: i64) -> Result<Finding, FindingError> {
    let finding = store::find(conn, id).await?.ok_or(FindingError::NotFound)?;
    if finding.version != version {
        return Err(FindingError::Conflict(format!(
            "F-{} was changed by someone else while you were looking. Nothing was changed; \
             reload and try again.",
            finding.number
        )));
    }
    Ok(finding)
}

async fn save(
    conn: &mut AnyConnection,
    f: &Finding,
    version: i64,
    now: Millis,
) -> Result<(), FindingError> {
    if !store::update(conn, f, version, now).await? {
        return Err(FindingError::Conflict(format!(
            "F-{} was changed by someone else meanwhile. Nothing was changed.",
            f.number
        )));
    }
    Ok(())
}

/// Moves a finding along. Marking it fixed needs evidence and pauses the clock while the fix
/// waits for verification; verifying stops the clock (met when the fix came in time); a fix
/// that does not verify resumes it.
#[allow(clippy::too_many_arguments)]
pub async fn transition(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
    to: Status,
    evidence: &str,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Finding, FindingError> {
    let mut finding = load(conn, id, version).await?;
    let from = finding.status;
    if !from.may_become(to) {
        return Err(FindingError::Invalid(format!(
            "F-{} cannot go from {} to {}.",
            finding.number,
            from.as_str(),
            to.as_str()
        )));
    }
    let evidence = evidence.trim();
    if evidence.chars().count() > 10_000 {
        return Err(FindingError::Invalid("The evidence is too long.".into()));
    }
    let clock_subject = subject(id);
    let clock = remediation_clock(conn, id).await?;
    match to {
        Status::Fixed => {
            if evidence.is_empty() {
                return Err(FindingError::Invalid(
                    "Describe the fix (commit, release, config change) as evidence.".into(),
                ));
            }
            finding.fix_evidence = evidence.to_owned();
            finding.fixed_at = Some(now);
            // In time: the clock waits for verification. Late: the breach is final.
            match clock {
                Some(c) if c.state == sla::ClockState::Running && c.due_at > now => {
                    sla::pause(
                        conn,
                        now,
                        &clock_subject,
                        REMEDIATION_CLOCK,
                        "fixed, awaiting verification",
                        actor,
                        meta,
                    )
                    .await?;
                }
                Some(c) if c.stopped_at.is_none() && c.state != sla::ClockState::Paused => {
                    sla::stop(conn, now, &clock_subject, REMEDIATION_CLOCK, actor, meta).await?;
                }
                _ => {}
            }
        }
        Status::Verified => {
            finding.verified_at = Some(now);
            if clock.is_some_and(|c| c.stopped_at.is_none()) {
                sla::stop(conn, now, &clock_subject, REMEDIATION_CLOCK, actor, meta).await?;
            }
        }
        Status::Fixing if matches!(from, Status::Fixed | Status::RiskAccepted) => {
            finding.fixed_at = None;
            finding.risk_approver = None;
            finding.risk_reason = None;
            finding.risk_expires_at = None;
            if clock.is_some_and(|c| c.state == sla::ClockState::Paused) {
                sla::resume(conn, now, &clock_subject, REMEDIATION_CLOCK, actor, meta).await?;
            }
        }
        _ => {}
    }
    finding.status = to;
    save(conn, &finding, version, now).await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "finding.status", format!("finding:{id}"))
            .detail("from", from.as_str())
            .detail("to", to.as_str()),
    )
    .await?;
    Ok(finding)
}

/// Accepts the risk of a finding until `expires_at`, by someone other than who raised it.
#[allow(clippy::too_many_arguments)]
pub async fn accept_risk(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
    reason: &str,
    expires_at: Millis,
    approver: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Finding, FindingError> {
    let mut finding = load(conn, id, version).await?;
    if !matches!(finding.status, Status::Open | Status::Fixing) {
        return Err(FindingError::Invalid(format!(
            "F-{} is {}; only an open finding can have its risk accepted.",
            finding.number,
            finding.status.as_str()
        )));
    }
    if finding.raised_by == approver {
        return Err(FindingError::Invalid(
            "You raised this finding, so someone else must accept its risk.".into(),
        ));
    }
    let reason = reason.trim();
    if reason.chars().count() < 10 || reason.chars().count() > 5000 {
        return Err(FindingError::Invalid(
            "Give the reason for accepting the risk (10 to 5000 characters).".into(),
        ));
    }
    if expires_at <= now || expires_at > now + 366 * 24 * HOUR {
        return Err(FindingError::Invalid(
            "The acceptance must expire in the future and within a year.".into(),
        ));
    }
    finding.status = Status::RiskAccepted;
    finding.risk_approver = Some(approver.to_owned());
    finding.risk_reason = Some(reason.to_owned());
    finding.risk_expires_at = Some(expires_at);
    save(conn, &finding, version, now).await?;
    sla::pause(
        conn,
        now,
        &subject(id),
        REMEDIATION_CLOCK,
        "risk accepted",
        approver,
        meta,
    )
    .await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(approver, "finding.risk_accept", format!("finding:{id}"))
            .detail("until", crate::clock::format_ms(expires_at))
            .detail("reason", reason),
    )
    .await?;
    Ok(finding)
}

/// Reopens every finding whose risk acceptance has expired: back to `open`, with its
/// remediation clock running again (paused time does not count). Returns how many.
pub async fn reopen_expired_risks(
    conn: &mut AnyConnection,
    now: Millis,
) -> Result<usize, FindingError> {
    let expired = store::expired_risk_acceptances(conn, now).await?;
    let meta = RequestMeta::default();
    for mut finding in expired.iter().cloned() {
        let version = finding.version;
        finding.status = Status::Open;
        finding.risk_approver = None;
        finding.risk_reason = None;
        finding.risk_expires_at = None;
        save(conn, &finding, version, now).await?;
        if remediation_clock(conn, &finding.id)
            .await?
            .is_some_and(|c| c.state == sla::ClockState::Paused)
        {
            sla::resume(
                conn,
                now,
                &subject(&finding.id),
                REMEDIATION_CLOCK,
                "system",
                &meta,
            )
            .await?;
        }
        audit::append(
            conn,
            now,
            &meta,
            AuditEvent::new(
                "system",
                "finding.risk_expired",
                format!("finding:{}", finding.id),
            )
            .detail("number", finding.number),
        )
        .await?;
    }
    Ok(expired.len())
}
