//! Findings pages: the register by urgency with filters, recording and importing findings,
//! and the detail page with the remediation clock, fix evidence, verification and risk
//! acceptance.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::model::{Severity, Status};
use super::store::{self, FindingFilter};
use super::{FindingSettings, NewFinding};
use crate::app::AppState;
use crate::clock::{HOUR, Millis, format_ms};
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};
use crate::web::Form;

pub fn routes() -> Vec<PortalRoute> {
    let read = Access::Rbac("findings", "read");
    let write = Access::Rbac("findings", "write");
    vec![
        PortalRoute::get("/findings", read, finding_list_get),
        PortalRoute::post("/findings", write, finding_create_post),
        PortalRoute::post("/findings/import", write, finding_import_post),
        PortalRoute::get("/findings/{id}", read, finding_detail_get),
        PortalRoute::post("/findings/{id}/status", write, finding_status_post),
        PortalRoute::post(
            "/findings/{id}/accept-risk",
            write,
            finding_accept_risk_post,
        ),
    ]
}

const PAGE_SIZE: i64 = 50;

/// The finding settings from the running configuration.
pub fn settings(state: &AppState) -> FindingSettings<'_> {
    FindingSettings {
        calendar: &state.sla_calendar,
        remediation_hours: state.config.finding_remediation_hours,
        escalation_interval: state.config.incident_escalation_minutes * crate::clock::MINUTE,
    }
}

/// A clock's state in words with its CSS class; engagement pages use it too.
pub(crate) fn clock_text(
    due: Option<Millis>,
    state: Option<&str>,
    now: Millis,
) -> (String, &'static str) {
    match (due, state) {
        (Some(due), Some("running")) if due > now => {
            (crate::sla::format::until(due, now), "normal")
        }
        (Some(due), Some("running" | "breached")) => (crate::sla::format::until(due, now), "red"),
        (Some(_), Some("paused")) => ("paused".into(), "normal"),
        (Some(_), Some("met")) => ("met".into(), "met"),
        _ => ("—".into(), "normal"),
    }
}

struct RowView {
    id: String,
    number: i64,
    title: String,
    severity: &'static str,
    cvss: String,
    asset: String,
    status: &'static str,
    due: String,
    clock: String,
    class: &'static str,
}

#[derive(Template)]
#[template(path = "findings/list.html")]
struct ListPage {
    shell: Shell,
    rows: Vec<RowView>,
    status: String,
    severity: String,
    statuses: Vec<&'static str>,
    severities: Vec<&'static str>,
    remediation: Vec<(String, i64)>,
    total: i64,
    page: i64,
    pages: i64,
    prev_link: Option<String>,
    next_link: Option<String>,
    /// (id, label) of each pentest engagement, for the import form.
    engagements: Vec<(String, String)>,
    can_write: bool,
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    severity: String,
    page: Option<i64>,
}

async fn finding_list_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<ListQuery>,
) -> AppResult<Html<String>> {
    let session = visitor.session()?;
    let now = state.now();
    let page = query.page.unwrap_or(1).clamp(1, 100_000);
    let parse_or_none = |raw: &str| raw.trim().is_empty();
    let filter = FindingFilter {
        status: if parse_or_none(&query.status) {
            None
        } else {
            Some(Status::parse(&query.status).map_err(AppError::BadRequest)?)
        },
        severity: if parse_or_none(&query.severity) {
            None
        } else {
            Some(Severity::parse(&query.severity).map_err(AppError::BadRequest)?)
        },
        engagement_id: None,
        offset: (page - 1) * PAGE_SIZE,
        limit: PAGE_SIZE,
    };
    let mut conn = state.db.pool.acquire().await?;
    let (rows, total) = store::list(&mut conn, &filter).await?;
    let engagements = super::engagements::store::list(&mut conn)
        .await?
        .into_iter()
        .map(|r| {
            let e = r.engagement;
            (e.id, format!("{} — ended {}", e.firm, e.ended_on))
        })
        .collect();
    let rows = rows
        .into_iter()
        .map(|r| {
            let (clock, class) =
                clock_text(r.remediation_due_at, r.remediation_state.as_deref(), now);
            RowView {
                id: r.finding.id.clone(),
                number: r.finding.number,
                title: r.finding.title.clone(),
                severity: r.finding.severity.as_str(),
                cvss: r
                    .finding
                    .cvss_score
                    .map(|s| format!("{s:.1}"))
                    .unwrap_or_default(),
                asset: r.finding.asset.clone(),
                status: r.finding.status.as_str(),
                due: r.remediation_due_at.map(format_ms).unwrap_or_default(),
                clock,
                class,
            }
        })
        .collect();
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let link = |p: i64| {
        format!(
            "/findings?status={}&severity={}&page={p}",
            query.status, query.severity
        )
    };
    html(&ListPage {
        shell: Shell::new(&state, &visitor, "/findings")?,
        rows,
        status: query.status.clone(),
        severity: query.severity.clone(),
        statuses: Status::ALL.iter().map(|s| s.as_str()).collect(),
        severities: Severity::ALL.iter().map(|s| s.as_str()).collect(),
        remediation: Severity::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str().to_owned(),
                    state.config.finding_remediation_hours[s.index()],
                )
            })
            .collect(),
        total,
        page,
        pages,
        prev_link: (page > 1).then(|| link(page - 1)),
        next_link: (page < pages).then(|| link(page + 1)),
        engagements,
        can_write: state.authz.allows(&session.roles, "findings", "write"),
    })
}

#[derive(Deserialize)]
struct NewForm {
    title: String,
    severity: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    cvss_vector: String,
    asset: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    confirmed_at: String,
}

async fn finding_create_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<NewForm>,
) -> AppResult<Response> {
    let now = state.now();
    let new = NewFinding {
        title: form.title,
        description: form.description,
        severity: form.severity,
        cvss_vector: form.cvss_vector,
        asset: form.asset,
        source: form.source,
        confirmed_at: crate::web::datetime_local_utc(&form.confirmed_at, now, "confirmation time")?,
        engagement_id: None,
    };
    let mut tx = state.db.begin().await?;
    let finding = super::create(
        &mut tx,
        &settings(&state),
        &new,
        &visitor.actor(),
        &visitor.ctx.meta(),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/findings/{}", finding.id)).into_response())
}

#[derive(Deserialize)]
struct ImportForm {
    csv: String,
    /// The pentest engagement the findings came from; empty for none.
    #[serde(default)]
    engagement_id: String,
}

async fn finding_import_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<ImportForm>,
) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    let saved = super::import_csv(
        &mut tx,
        &settings(&state),
        &form.csv,
        Some(form.engagement_id.trim()).filter(|id| !id.is_empty()),
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/findings?imported={}", saved.len())).into_response())
}

#[derive(Template)]
#[template(path = "findings/detail.html")]
struct DetailPage {
    shell: Shell,
    id: String,
    number: i64,
    title: String,
    description: String,
    severity: &'static str,
    cvss_vector: String,
    cvss_score: String,
    asset: String,
    source: String,
    engagement_id: String,
    /// (id, `DSC-n`) of the disclosure report this finding came from.
    disclosure: Option<(String, String)>,
    confirmed: String,
    status: &'static str,
    raised_by: String,
    fix_evidence: String,
    fixed: String,
    verified: String,
    risk: String,
    version: i64,
    due: String,
    countdown: Option<crate::sla::pages::Countdown>,
    target: String,
    next_statuses: Vec<&'static str>,
    can_accept_risk: bool,
    can_write: bool,
}

async fn finding_detail_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> AppResult<Html<String>> {
    let session = visitor.session()?;
    let now = state.now();
    let mut conn = state.db.pool.acquire().await?;
    let f = store::find(&mut conn, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let clock = crate::sla::for_subject(&mut conn, &super::subject(&id))
        .await?
        .into_iter()
        .find(|c| c.name == super::REMEDIATION_CLOCK);
    let disclosure = crate::disclosures::for_finding(&mut conn, &id).await?;
    html(&DetailPage {
        shell: Shell::new(&state, &visitor, "/findings")?,
        id: f.id.clone(),
        number: f.number,
        title: f.title.clone(),
        description: f.description.clone(),
        severity: f.severity.as_str(),
        cvss_vector: f.cvss_vector.clone().unwrap_or_default(),
        cvss_score: f.cvss_score.map(|s| format!("{s:.1}")).unwrap_or_default(),
        asset: f.asset.clone(),
        source: f.source.clone(),
        engagement_id: f.engagement_id.clone().unwrap_or_default(),
        disclosure,
        confirmed: format_ms(f.confirmed_at),
        status: f.status.as_str(),
        raised_by: f.raised_by.clone(),
        fix_evidence: f.fix_evidence.clone(),
        fixed: f.fixed_at.map(format_ms).unwrap_or_default(),
        verified: f.verified_at.map(format_ms).unwrap_or_default(),
        risk: match (&f.risk_approver, &f.risk_reason, f.risk_expires_at) {
            (Some(by), Some(why), Some(until)) => {
                format!("accepted by {by} until {}: {why}", format_ms(until))
            }
            _ => String::new(),
        },
        version: f.version,
        due: clock
            .as_ref()
            .map(|c| format_ms(c.due_at))
            .unwrap_or_default(),
        countdown: clock
            .as_ref()
            .map(|c| crate::sla::pages::Countdown::of(c, now)),
        target: clock.as_ref().map(|c| c.target.clone()).unwrap_or_default(),
        next_statuses: f.status.next().iter().map(|s| s.as_str()).collect(),
        can_accept_risk: matches!(f.status, Status::Open | Status::Fixing)
            && f.raised_by != visitor.actor(),
        can_write: state.authz.allows(&session.roles, "findings", "write"),
    })
}

#[derive(Deserialize)]
struct StatusForm {
    version: i64,
    status: String,
    #[serde(default)]
    evidence: String,
}

async fn finding_status_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<StatusForm>,
) -> AppResult<Response> {
    let to = Status::parse(&form.status).map_err(AppError::BadRequest)?;
    let mut tx = state.db.begin().await?;
    super::transition(
        &mut tx,
        &id,
        form.version,
        to,
        &form.evidence,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/findings/{id}")).into_response())
}

#[derive(Deserialize)]
struct RiskForm {
    version: i64,
    reason: String,
    /// Days the acceptance lasts.
    days: i64,
}

async fn finding_accept_risk_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<RiskForm>,
) -> AppResult<Response> {
    let now = state.now();
    let mut tx = state.db.begin().await?;
    super::accept_risk(
        &mut tx,
        &id,
        form.version,
        &form.reason,
        now + form.days.clamp(0, 366) * 24 * HOUR,
        &visitor.actor(),
        &visitor.ctx.meta(),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/findings/{id}")).into_response())
}
