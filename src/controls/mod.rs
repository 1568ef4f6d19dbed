//! The control catalogue (one control per promise of the Trust & Safety page), its
//! evaluation from live records with history, the portal pages, the public trust page, RES-1
//! enforcement and the security-questionnaire answer library.

pub mod answers;
pub mod answers_pages;
pub mod catalogue;
pub mod cli;
pub mod evaluate;
pub mod model;
pub mod pages;
pub mod public;
pub mod residency;
pub mod store;

use serde::Serialize;

use crate::app::AppState;
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::config::Config;
use model::{ControlState, Outcome};

/// The actor of scheduled evaluations.
pub const SCHEDULER_ACTOR: &str = "system:scheduler";

/// Checks `control_owners` (known ids, email addresses) and `trust_failing_wording`.
pub fn validate_config(config: &Config) -> Result<(), (String, String)> {
    for (id, email) in &config.control_owners {
        if catalogue::find(id).is_none() {
            return Err((
                format!("control_owners.{id}"),
                format!(
                    "no control {id}; controls: {}",
                    catalogue::CATALOGUE.map(|c| c.id).join(", ")
                ),
            ));
        }
        if crate::staff::model::Email::parse(email).is_err() {
            return Err((
                format!("control_owners.{id}"),
                "must be an email address".to_owned(),
            ));
        }
    }
    let wording = config.trust_failing_wording.trim();
    if wording.is_empty() || wording.chars().count() > 60 {
        return Err((
            "trust_failing_wording".to_owned(),
            "must be 1 to 60 characters, e.g. \"under review\"".to_owned(),
        ));
    }
    Ok(())
}

/// Who is told when `control` starts failing: its configured owner, else the enabled staff
/// holding its owner role.
pub async fn owner_addresses(
    conn: &mut sqlx::AnyConnection,
    config: &Config,
    control: &model::Control,
) -> Result<Vec<String>, sqlx::Error> {
    if let Some(email) = config.control_owners.get(control.id) {
        return Ok(vec![email.clone()]);
    }
    crate::staff::store::emails_with_role(conn, control.owner_role).await
}

/// The owner as the pages show it.
pub fn owner_label(config: &Config, control: &model::Control) -> String {
    match config.control_owners.get(control.id) {
        Some(email) => format!("{email} ({})", control.owner_role),
        None => format!("{} role", control.owner_role),
    }
}

/// What one evaluation run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub evaluated: i64,
    pub passing: i64,
    pub failing: i64,
    pub not_applicable: i64,
    pub no_data: i64,
    /// Controls whose state changed.
    pub changed: i64,
    /// Owner notifications queued.
    pub notified: i64,
    /// Controls whose evaluator itself failed (recorded as no data).
    pub errors: i64,
}

/// Evaluates every control, stores the results, audits state changes (not every run) and
/// queues an email to the owner of each control that has just started failing.
pub async fn evaluate_all(
    state: &AppState,
    actor: &str,
    meta: &RequestMeta,
) -> anyhow::Result<RunReport> {
    let mut report = RunReport::default();
    for control in &catalogue::CATALOGUE {
        let outcome = match evaluate::evaluate(state, control.id).await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::error!(
                    control = control.id,
                    error = format!("{err:#}"),
                    "control evaluation failed"
                );
                report.errors += 1;
                Outcome::new(
                    ControlState::NoData,
                    "The evaluation could not read its records; see the server log.",
                )
            }
        };
        record(state, control, &outcome, actor, meta, &mut report).await?;
    }
    Ok(report)
}

async fn record(
    state: &AppState,
    control: &model::Control,
    outcome: &Outcome,
    actor: &str,
    meta: &RequestMeta,
    report: &mut RunReport,
) -> anyhow::Result<()> {
    let now = state.now();
    let mut tx = state.db.begin().await?;
    let previous = store::latest(&mut tx, control.id).await?;
    store::insert(&mut tx, control.id, outcome, previous.as_ref(), actor, now).await?;
    report.evaluated += 1;
    match outcome.state {
        ControlState::Passing => report.passing += 1,
        ControlState::Failing => report.failing += 1,
        ControlState::NotApplicable => report.not_applicable += 1,
        ControlState::NoData => report.no_data += 1,
    }
    let from = previous.as_ref().map(|p| p.state);
    if from != Some(outcome.state) {
        report.changed += 1;
        audit::append(
            &mut tx,
            now,
            meta,
            AuditEvent::new(actor, "control.state", format!("control:{}", control.id))
                .detail("from", from.map_or("none", ControlState::as_str))
                .detail("to", outcome.state.as_str())
                .detail("summary", outcome.summary.as_str()),
        )
        .await?;
        if outcome.state == ControlState::Failing {
            let base = crate::disclosures::policy::base_url(state);
            for to in owner_addresses(&mut tx, &state.config, control).await? {
                let subject = format!("Control {} is failing: {}", control.id, control.title);
                let body = format!(
                    "Control {} ({}) is now failing.\n\nWhy: {}\n\nIt proves: \"{}\"\n\n\
                     The records behind it: {base}/controls/{}\n\nThe public trust page shows \
                     it as \"{}\" until it passes again.\n",
                    control.id,
                    control.title,
                    outcome.summary,
                    control.claim,
                    control.id,
                    state.config.trust_failing_wording.trim(),
                );
                let html = format!(
                    "<p>Control <strong>{}</strong> ({}) is now failing.</p><p>Why: {}</p>\
                     <p><a href=\"{base}/controls/{}\">The records behind it</a></p>",
                    crate::chart::escape(control.id),
                    crate::chart::escape(control.title),
                    crate::chart::escape(&outcome.summary),
                    crate::chart::escape(control.id),
                );
                crate::notify::enqueue(
                    &mut tx,
                    &to,
                    &subject,
                    &body,
                    &html,
                    &format!("control:{}", control.id),
                    now,
                )
                .await?;
                report.notified += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// The job entry point.
pub async fn scheduled(state: &AppState) -> anyhow::Result<serde_json::Value> {
    let report = evaluate_all(state, SCHEDULER_ACTOR, &RequestMeta::default()).await?;
    Ok(serde_json::to_value(report)?)
}
