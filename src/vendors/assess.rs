//! Assessments: the questionnaire answered with evidence, a weighted score, the reviewer's
//! result, and — for a pass — the reassessment clock on the shared engine, due after the
//! months the vendor's risk tier calls for. Conditions of a pass with conditions are
//! tracked items with due dates.

use sqlx::AnyConnection;

use super::model::Outcome;
use super::store::{self, Assessment, Condition};
use super::{VendorError, VendorSettings, subject};
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{DAY, MINUTE, Millis, format_ms};
use crate::sla::{self, ClockSpec, Duration};

/// Prefix of reassessment clock names; the assessment's sequence follows.
pub const REASSESSMENT_CLOCK: &str = "reassessment";
/// Once overdue, escalations repeat weekly until the vendor is reassessed.
pub const ESCALATION_INTERVAL: Millis = 7 * DAY;

/// One answer as typed: `yes`, `partial`, `no` or `n/a`, with an evidence link or note.
#[derive(Debug, Clone, Default)]
pub struct AnswerInput {
    pub question_id: String,
    pub answer: String,
    pub evidence: String,
}

/// A new assessment as typed.
#[derive(Debug, Clone, Default)]
pub struct AssessmentInput {
    pub answers: Vec<AnswerInput>,
    pub result: String,
    pub assessed_at: Millis,
    pub notes: String,
    /// One condition per line: `text | YYYY-MM-DD`.
    pub conditions: String,
}

fn answer_value(raw: &str) -> Result<Option<f64>, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "yes" => Ok(Some(1.0)),
        "partial" => Ok(Some(0.5)),
        "no" => Ok(Some(0.0)),
        "n/a" | "na" => Ok(None),
        "" => Err("answer every question (yes, partial, no or n/a)".into()),
        other => Err(format!(
            "“{other}” is not an answer; use yes, partial, no or n/a"
        )),
    }
}

fn parse_conditions(raw: &str) -> Result<Vec<(String, Millis)>, String> {
    let mut out = Vec::new();
    for line in raw.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (text, due) = line
            .rsplit_once('|')
            .ok_or_else(|| format!("condition “{line}” needs a due date: text | 2027-03-31"))?;
        let due = chrono::NaiveDate::parse_from_str(due.trim(), "%Y-%m-%d")
            .map_err(|_| format!("“{}” is not a date like 2027-03-31", due.trim()))?;
        let due = due
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .ok_or("bad date")?;
        let text = text.trim();
        if text.is_empty() || text.chars().count() > 1000 {
            return Err("a condition must be 1 to 1000 characters".into());
        }
        out.push((text.to_owned(), due));
    }
    Ok(out)
}

/// Records an assessment. A pass (with or without conditions) starts a reassessment clock
/// from the assessment date; any earlier reassessment clock stops, since this assessment
/// replaces it.
pub async fn record(
    conn: &mut AnyConnection,
    settings: &VendorSettings<'_>,
    vendor_id: &str,
    input: &AssessmentInput,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Assessment, VendorError> {
    let invalid = |m: String| VendorError::Invalid(super::sentence(m));
    let vendor = store::find(conn, vendor_id)
        .await?
        .ok_or(VendorError::NotFound)?;
    let result = Outcome::parse(&input.result).map_err(invalid)?;
    if input.assessed_at > now + MINUTE {
        return Err(invalid("the assessment date is in the future".into()));
    }
    if input.notes.chars().count() > 10_000 {
        return Err(invalid(
            "the notes are longer than 10 000 characters".into(),
        ));
    }
    let questions = super::questions::list(conn, true).await?;
    let mut answers = Vec::new();
    let (mut earned, mut possible) = (0.0, 0.0);
    for q in &questions {
        let given = input.answers.iter().find(|a| a.question_id == q.id);
        let given = given.cloned().unwrap_or_default();
        let value = answer_value(&given.answer).map_err(|e| invalid(format!("{}: {e}", q.text)))?;
        if given.evidence.chars().count() > 2000 {
            return Err(invalid(
                "evidence is at most 2000 characters per answer".into(),
            ));
        }
        if let Some(v) = value {
            earned += v * q.weight as f64;
            possible += q.weight as f64;
        }
        answers.push(serde_json::json!({
            "question": q.text,
            "weight": q.weight,
            "answer": given.answer.trim().to_ascii_lowercase(),
            "evidence": given.evidence.trim(),
        }));
    }
    let score = if possible > 0.0 {
        (earned / possible * 1000.0).round() / 10.0
    } else {
        0.0
    };
    let conditions = parse_conditions(&input.conditions).map_err(invalid)?;
    if result == Outcome::PassWithConditions && conditions.is_empty() {
        return Err(invalid(
            "a pass with conditions needs its conditions, one per line: text | 2027-03-31".into(),
        ));
    }
    if result != Outcome::PassWithConditions && !conditions.is_empty() {
        return Err(invalid(
            "conditions belong to a pass with conditions; choose that result or remove them".into(),
        ));
    }
    let sequence = store::next_sequence(conn, "assessments", vendor_id).await?;
    // The new assessment replaces earlier ones: their clocks stop.
    for clock in sla::for_subject(conn, &subject(vendor_id)).await? {
        if clock.name.starts_with(REASSESSMENT_CLOCK)
            && clock.stopped_at.is_none()
            && clock.state != sla::ClockState::Met
        {
            sla::stop(conn, now, &subject(vendor_id), &clock.name, actor, meta).await?;
        }
    }
    let tier = vendor.risk_tier();
    let (clock_name, next_due_at) = if result.passed() {
        let months = settings.reassessment_months[tier.index()];
        let name = format!("{REASSESSMENT_CLOCK}_{sequence}");
        let escalate_to = crate::staff::store::emails_with_role(conn, "compliance").await?;
        let target = format!(
            "Reassess VND-{} {} ({} risk: every {months} months)",
            vendor.number,
            vendor.name,
            tier.as_str()
        );
        let target: String = target.chars().take(200).collect();
        let clock = sla::start_at(
            conn,
            input.assessed_at,
            now,
            &ClockSpec {
                subject: subject(vendor_id),
                name: &name,
                target: &target,
                duration: Duration::Months(months),
                calendar: settings.calendar,
                notify_to: vec![vendor.owner_email.clone()],
                escalate_to,
                link_path: &format!("/vendors/{vendor_id}"),
                reminder_fraction: None,
                escalation_interval: Some(ESCALATION_INTERVAL),
            },
            actor,
            meta,
        )
        .await?;
        (Some(name), Some(clock.due_at))
    } else {
        (None, None)
    };
    let assessment = Assessment {
        id: uuid::Uuid::new_v4().to_string(),
        vendor_id: vendor_id.to_owned(),
        sequence,
        reviewer: actor.to_owned(),
        assessed_at: input.assessed_at,
        result,
        score,
        answers: serde_json::Value::Array(answers),
        notes: input.notes.trim().to_owned(),
        risk_tier: tier,
        next_due_at,
        clock_name,
        created_at: now,
    };
    store::insert_assessment(conn, &assessment).await?;
    for (text, due_at) in conditions {
        store::insert_condition(
            conn,
            &Condition {
                id: uuid::Uuid::new_v4().to_string(),
                assessment_id: assessment.id.clone(),
                vendor_id: vendor_id.to_owned(),
                text,
                due_at,
                done_at: None,
                done_by: None,
            },
            now,
        )
        .await?;
    }
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "vendor.assess", format!("vendor:{vendor_id}"))
            .detail("result", result.as_str())
            .detail("score", score)
            .detail("risk_tier", tier.as_str())
            .detail(
                "next_due_at",
                next_due_at.map(format_ms).unwrap_or_default(),
            ),
    )
    .await?;
    Ok(assessment)
}

/// Marks a condition done.
pub async fn close_condition(
    conn: &mut AnyConnection,
    vendor_id: &str,
    condition_id: &str,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), VendorError> {
    if !store::close_condition(conn, vendor_id, condition_id, actor, now).await? {
        return Err(VendorError::Conflict(
            "That condition is already done or does not exist.".into(),
        ));
    }
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(
            actor,
            "vendor.condition_done",
            format!("vendor:{vendor_id}"),
        )
        .detail("condition", condition_id),
    )
    .await?;
    Ok(())
}
