//! Pentest engagements (PEN-2, "annual penetration tests by independent firms"): who tested
//! what and when, the report sealed in the blob store with its SHA-256 kept, the findings
//! each test produced, and a `next_pentest` clock that goes red twelve months after the most
//! recent test ended.
//!
//! The clock counts from the first instant of the last test day (midnight in the SLA
//! calendar's zone) and runs twelve calendar months ([`sla::Duration::Months`]), so a test
//! that ended on 2026-03-20 must be followed by one that ends before 2027-03-20 00:00; the
//! deadline stays on the anniversary across leap years, which 365 × 24 hours would not.
//! Only the most recent engagement's clock counts: recording a newer one stops the older
//! clocks (met if the new test came in time, breached if it came late). An engagement added
//! for history, ending before the most recent one, gets no clock.

pub mod cli;
pub mod model;
pub mod pages;
pub mod store;

use std::collections::HashSet;

use chrono::NaiveDate;
use sqlx::AnyConnection;

use super::FindingError;
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::blobs::BlobStore;
use crate::clock::{DAY, Millis};
use crate::crypto::Keyring;
use crate::sla::{
    self, BusinessCalendar, ClockFilter, ClockSpec, ClockState, Subject, SubjectKind,
};
use model::{Firm, ReportFile, Scope, TestWindow};
use store::Engagement;

/// Name of the clock that says when the next test is due.
pub const NEXT_PENTEST_CLOCK: &str = "next_pentest";
/// Months between the end of one test and the end of the next.
pub const PENTEST_INTERVAL_MONTHS: i64 = 12;
/// Prefix of report blob keys in the blob store.
const REPORT_PREFIX: &str = "pentest-reports";
/// Once overdue, the on-call people are reminded weekly until a new test is recorded.
const ESCALATION_INTERVAL: Millis = 7 * DAY;

/// Where reports are sealed and stored.
#[derive(Debug, Clone, Copy)]
pub struct ReportVault<'a> {
    pub blobs: &'a BlobStore,
    pub keyring: &'a Keyring,
}

/// What a new engagement is made of, as typed by a person.
#[derive(Debug, Clone, Default)]
pub struct NewEngagement {
    pub firm: String,
    pub scope: String,
    /// `YYYY-MM-DD`.
    pub started_on: String,
    /// `YYYY-MM-DD`.
    pub ended_on: String,
    /// The uploaded report: file name and bytes. `None` when no file was chosen.
    pub report: Option<(String, Vec<u8>)>,
}

/// A new engagement that passed every check.
struct ValidEngagement {
    firm: Firm,
    scope: Scope,
    window: TestWindow,
    report: Option<ReportFile>,
}

fn parse(new: &NewEngagement, today: NaiveDate) -> Result<ValidEngagement, FindingError> {
    let invalid = FindingError::Invalid;
    Ok(ValidEngagement {
        firm: Firm::parse(&new.firm).map_err(invalid)?,
        scope: Scope::parse(&new.scope).map_err(invalid)?,
        window: TestWindow::parse(&new.started_on, &new.ended_on, today).map_err(invalid)?,
        report: new
            .report
            .as_ref()
            .map(|(name, bytes)| ReportFile::new(name, bytes.clone()))
            .transpose()
            .map_err(invalid)?,
    })
}

pub fn subject(id: &str) -> Subject {
    Subject::new(SubjectKind::PentestEngagement, id)
}

/// The associated data a report is sealed with: a blob copied under another key won't open.
fn report_aad(key: &str) -> Vec<u8> {
    format!("pentest-report:{key}").into_bytes()
}

/// Records an engagement in the caller's transaction: seals the report into the blob store,
/// inserts the record, moves the next-test clock to it when it is the most recent test, and
/// audits. Bad input changes nothing. If anything after the blob write fails, the blob is
/// removed again; if the caller's commit fails, the orphan sweep removes it later.
pub async fn record(
    conn: &mut AnyConnection,
    calendar: &BusinessCalendar,
    vault: ReportVault<'_>,
    new: &NewEngagement,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Engagement, FindingError> {
    let today = calendar
        .local_date(now)
        .ok_or_else(|| FindingError::Invalid("The current time is out of range.".into()))?;
    let valid = parse(new, today)?;
    let id = uuid::Uuid::new_v4().to_string();
    let report_blob = match &valid.report {
        Some(report) => {
            let key = format!("{REPORT_PREFIX}/{id}");
            vault
                .blobs
                .put_sealed(&key, &report.bytes, vault.keyring, &report_aad(&key))
                .await
                .map_err(FindingError::Storage)?;
            Some(key)
        }
        None => None,
    };
    let engagement = Engagement {
        id,
        firm: valid.firm.as_str().to_owned(),
        scope: valid.scope.as_str().to_owned(),
        started_on: valid.window.started_on,
        ended_on: valid.window.ended_on,
        report_blob: report_blob.clone(),
        report_sha256: valid.report.as_ref().map(|r| r.sha256.clone()),
        report_name: valid.report.as_ref().map(|r| r.name.clone()),
        report_bytes: valid
            .report
            .as_ref()
            .map(|r| i64::try_from(r.bytes.len()).unwrap_or(i64::MAX)),
        created_at: now,
        created_by: actor.to_owned(),
    };
    let saved = save_with_clock(conn, calendar, &engagement, actor, meta, now).await;
    if saved.is_err()
        && let Some(key) = &report_blob
        && let Err(cleanup) = vault.blobs.delete(key).await
    {
        tracing::error!(error = %cleanup, "could not remove a report blob after a failed insert");
    }
    saved.map(|()| engagement)
}

async fn save_with_clock(
    conn: &mut AnyConnection,
    calendar: &BusinessCalendar,
    engagement: &Engagement,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), FindingError> {
    let previous = store::latest(conn).await?;
    let most_recent = previous
        .as_ref()
        .is_none_or(|p| engagement.ended_on >= p.ended_on);
    store::insert(conn, engagement).await?;
    let mut due_at = None;
    if most_recent {
        stop_open_clocks(conn, actor, meta, now).await?;
        due_at = Some(start_clock(conn, calendar, engagement, actor, meta, now).await?);
    }
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(
            actor,
            "pentest.create",
            format!("pentest:{}", engagement.id),
        )
        .detail("firm", engagement.firm.as_str())
        .detail("started_on", engagement.started_on.to_string())
        .detail("ended_on", engagement.ended_on.to_string())
        .detail(
            "report_sha256",
            engagement.report_sha256.clone().unwrap_or_default(),
        )
        .detail("report_bytes", engagement.report_bytes.unwrap_or(0))
        .detail(
            "next_pentest_due_at",
            due_at.map_or_else(
                || "none: an earlier test than the most recent".to_owned(),
                crate::clock::format_ms,
            ),
        ),
    )
    .await?;
    Ok(())
}

/// Stops every next-test clock still open: a newer test has been recorded.
async fn stop_open_clocks(
    conn: &mut AnyConnection,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), FindingError> {
    let (clocks, _) = sla::list(
        conn,
        now,
        &ClockFilter {
            state: None,
            kind: Some(SubjectKind::PentestEngagement),
        },
        sla::Page {
            offset: 0,
            limit: 1000,
        },
    )
    .await?;
    for clock in clocks {
        if clock.name == NEXT_PENTEST_CLOCK
            && clock.stopped_at.is_none()
            && clock.state != ClockState::Met
        {
            sla::stop(conn, now, &clock.subject, NEXT_PENTEST_CLOCK, actor, meta).await?;
        }
    }
    Ok(())
}

async fn start_clock(
    conn: &mut AnyConnection,
    calendar: &BusinessCalendar,
    engagement: &Engagement,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Millis, FindingError> {
    let on_call = crate::oncall::on_call(conn, now).await?;
    let notify_to: Vec<String> = on_call.iter().map(|c| c.person.email.clone()).collect();
    let escalate_to: Vec<String> = on_call
        .iter()
        .filter_map(|c| c.escalation.as_ref().map(|p| p.email.clone()))
        .collect();
    let link = format!("/findings/engagements/{}", engagement.id);
    let clock = sla::start_at(
        conn,
        calendar.start_of_day(engagement.ended_on),
        now,
        &ClockSpec {
            subject: subject(&engagement.id),
            name: NEXT_PENTEST_CLOCK,
            target: "Next pentest within 12 months of the last",
            duration: sla::Duration::Months(PENTEST_INTERVAL_MONTHS),
            calendar,
            notify_to,
            escalate_to,
            link_path: &link,
            // Nine months in: time to book the next firm.
            reminder_fraction: Some(0.75),
            escalation_interval: Some(ESCALATION_INTERVAL),
        },
        actor,
        meta,
    )
    .await?;
    Ok(clock.due_at)
}

/// Reads and opens an engagement's report, checking it against the recorded SHA-256.
pub async fn report(
    conn: &mut AnyConnection,
    vault: ReportVault<'_>,
    id: &str,
) -> Result<(Engagement, Vec<u8>), FindingError> {
    let engagement = store::find(conn, id).await?.ok_or(FindingError::NotFound)?;
    let Some(key) = engagement.report_blob.clone() else {
        return Err(FindingError::NotFound);
    };
    let bytes = vault
        .blobs
        .get_opened(&key, vault.keyring, &report_aad(&key))
        .await
        .map_err(FindingError::Storage)?;
    let sha256 = crate::crypto::sha256_hex(&bytes);
    if engagement.report_sha256.as_deref() != Some(sha256.as_str()) {
        return Err(FindingError::Storage(anyhow::anyhow!(
            "report of engagement {id} does not match its recorded SHA-256"
        )));
    }
    Ok((engagement, bytes))
}

/// Which of `keys` belong to an engagement's report; the orphan sweep must keep those.
pub async fn owned_report_blobs(
    conn: &mut AnyConnection,
    keys: &[String],
) -> Result<HashSet<String>, sqlx::Error> {
    store::owned_report_blobs(conn, keys).await
}

/// The PEN-2 control: the most recent test and when the next one is due.
#[derive(Debug, Clone, PartialEq)]
pub struct PentestStatus {
    pub engagement: Engagement,
    /// `Q1 2026`.
    pub quarter: String,
    pub next_due_at: Millis,
    /// Whole days left until the next test is due; negative once overdue.
    pub days_left: i64,
    pub overdue: bool,
}

/// The most recent test and its deadline, computed from the records: the deadline is its
/// next-test clock's, or, for a record without a clock, twelve months after its end.
pub async fn status(
    conn: &mut AnyConnection,
    calendar: &BusinessCalendar,
    now: Millis,
) -> Result<Option<PentestStatus>, sqlx::Error> {
    let Some(engagement) = store::latest(conn).await? else {
        return Ok(None);
    };
    let clock = sla::for_subject(conn, &subject(&engagement.id))
        .await?
        .into_iter()
        .find(|c| c.name == NEXT_PENTEST_CLOCK);
    let next_due_at = clock.map_or_else(
        || {
            calendar.add_months(
                calendar.start_of_day(engagement.ended_on),
                PENTEST_INTERVAL_MONTHS,
            )
        },
        |c| c.due_at,
    );
    Ok(Some(PentestStatus {
        quarter: model::quarter_label(engagement.ended_on),
        next_due_at,
        days_left: (next_due_at - now).div_euclid(DAY),
        overdue: now >= next_due_at,
        engagement,
    }))
}
