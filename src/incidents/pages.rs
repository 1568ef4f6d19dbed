//! Incident pages: the list by urgency with filters, opening an incident, and the detail page
//! with its clocks, timeline, triage, status changes, notes, the breach notice and the review.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::model::{Severity, Source, Status};
use super::store::{self, BreachNotice, IncidentFilter};
use super::{IncidentSettings, NewIncident};
use crate::app::AppState;
use crate::clock::{MINUTE, format_ms};
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};
use crate::web::Form;

pub fn routes() -> Vec<PortalRoute> {
    let read = Access::Rbac("incidents", "read");
    let write = Access::Rbac("incidents", "write");
    vec![
        PortalRoute::get("/incidents", read, incident_list_get),
        PortalRoute::get("/incidents/new", write, incident_new_get),
        PortalRoute::post("/incidents", write, incident_create_post),
        PortalRoute::get("/incidents/{id}", read, incident_detail_get),
        PortalRoute::post("/incidents/{id}/triage", write, incident_triage_post),
        PortalRoute::post("/incidents/{id}/status", write, incident_status_post),
        PortalRoute::post("/incidents/{id}/notes", write, incident_note_post),
        PortalRoute::post("/incidents/{id}/review", write, incident_review_post),
        PortalRoute::post(
            "/incidents/{id}/authority-notice",
            write,
            incident_authority_notice_post,
        ),
        PortalRoute::post(
            "/incidents/{id}/controllers/{customer_id}/notified",
            write,
            incident_controller_notified_post,
        ),
        PortalRoute::post(
            "/incidents/{id}/actions/{action_id}/done",
            write,
            incident_action_done_post,
        ),
    ]
}

const PAGE_SIZE: i64 = 50;

/// The incident settings from the running configuration.
pub fn settings(state: &AppState) -> IncidentSettings<'_> {
    IncidentSettings {
        calendar: &state.sla_calendar,
        triage_minutes: state.config.incident_triage_minutes,
        escalation_interval: state.config.incident_escalation_minutes * MINUTE,
        controller_notice_hours: state.config.controller_notice_hours,
    }
}

struct RowView {
    id: String,
    number: i64,
    title: String,
    severity: &'static str,
    status: &'static str,
    source: &'static str,
    detected: String,
    triage: String,
    triage_class: &'static str,
    triage_due_ms: i64,
    triage_duration_ms: i64,
    breached: bool,
}

#[derive(Template)]
#[template(path = "incidents/list.html")]
struct ListPage {
    shell: Shell,
    rows: Vec<RowView>,
    status: String,
    severity: String,
    source: String,
    breached: bool,
    total: i64,
    page: i64,
    pages: i64,
    prev_link: Option<String>,
    next_link: Option<String>,
    can_write: bool,
    statuses: Vec<&'static str>,
    severities: Vec<&'static str>,
    sources: Vec<&'static str>,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    breached: String,
    #[serde(default)]
    assignee: String,
    page: Option<i64>,
}

fn optional<T>(raw: &str, parse: impl Fn(&str) -> Result<T, String>) -> AppResult<Option<T>> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        parse(raw).map(Some).map_err(AppError::BadRequest)
    }
}

async fn incident_list_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<ListQuery>,
) -> AppResult<Html<String>> {
    let session = visitor.session()?;
    let now = state.now();
    let page = query.page.unwrap_or(1).clamp(1, 100_000);
    let mut conn = state.db.pool.acquire().await?;
    let assignee_id = if query.assignee.trim().is_empty() {
        None
    } else {
        Some(
            crate::staff::store::find_by_email(&mut *conn, &query.assignee.trim().to_lowercase())
                .await?
                .map(|s| s.id)
                .unwrap_or_else(|| "-".into()),
        )
    };
    let filter = IncidentFilter {
        status: optional(&query.status, Status::parse)?,
        severity: optional(&query.severity, Severity::parse)?,
        source: optional(&query.source, Source::parse)?,
        assignee_id,
        breached: query.breached == "1",
        now,
        offset: (page - 1) * PAGE_SIZE,
        limit: PAGE_SIZE,
    };
    let (rows, total) = store::list(&mut conn, &filter).await?;
    let rows = rows
        .into_iter()
        .map(|r| {
            let open_clock = r.triage_due_at.filter(|_| {
                matches!(
                    r.triage_state.as_deref(),
                    Some("running") | Some("breached")
                ) && r.incident.triaged_at.is_none()
            });
            let (triage, triage_class, due) = match (open_clock, r.incident.triaged_at) {
                (Some(due), _) if due <= now => (crate::sla::format::until(due, now), "red", due),
                (Some(due), _) => {
                    let span = (due - r.incident.detected_at).max(1);
                    let class = if (due - now) * 4 < span {
                        "amber"
                    } else {
                        "normal"
                    };
                    (crate::sla::format::until(due, now), class, due)
                }
                (None, Some(at)) => (format!("triaged {}", format_ms(at)), "met", 0),
                (None, None) => ("—".into(), "normal", 0),
            };
            RowView {
                id: r.incident.id.clone(),
                number: r.incident.number,
                title: r.incident.title.clone(),
                severity: r.incident.severity.as_str(),
                status: r.incident.status.as_str(),
                source: r.incident.source.as_str(),
                detected: format_ms(r.incident.detected_at),
                triage,
                triage_class,
                triage_due_ms: due,
                triage_duration_ms: (due - r.incident.detected_at).max(1),
                breached: r.breached_clocks > 0,
            }
        })
        .collect();
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let link = |p: i64| {
        format!(
            "/incidents?status={}&severity={}&source={}&breached={}&page={p}",
            query.status, query.severity, query.source, query.breached
        )
    };
    html(&ListPage {
        shell: Shell::new(&state, &visitor, "/incidents")?,
        rows,
        status: query.status.clone(),
        severity: query.severity.clone(),
        source: query.source.clone(),
        breached: query.breached == "1",
        total,
        page,
        pages,
        prev_link: (page > 1).then(|| link(page - 1)),
        next_link: (page < pages).then(|| link(page + 1)),
        can_write: state.authz.allows(&session.roles, "incidents", "write"),
        statuses: Status::ALL.iter().map(|s| s.as_str()).collect(),
        severities: Severity::ALL.iter().map(|s| s.as_str()).collect(),
        sources: Source::ALL.iter().map(|s| s.as_str()).collect(),
    })
}

struct SeverityOption {
    name: &'static str,
    meaning: &'static str,
}

fn severity_options() -> Vec<SeverityOption> {
    Severity::ALL
        .iter()
        .map(|s| SeverityOption {
            name: s.as_str(),
            meaning: s.meaning(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "incidents/new.html")]
struct NewPage {
    shell: Shell,
    severities: Vec<SeverityOption>,
}

async fn incident_new_get(
    State(state): State<AppState>,
    visitor: Visitor,
) -> AppResult<Html<String>> {
    html(&NewPage {
        shell: Shell::new(&state, &visitor, "/incidents")?,
        severities: severity_options(),
    })
}

#[derive(Deserialize)]
struct NewForm {
    title: String,
    #[serde(default)]
    description: String,
    severity: String,
    /// `datetime-local` in UTC; empty = now.
    #[serde(default)]
    detected_at: String,
    #[serde(default)]
    affected_customers: String,
    #[serde(default)]
    affected_systems: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    personal_data: String,
    #[serde(default)]
    aware_at: String,
}

async fn incident_create_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<NewForm>,
) -> AppResult<Response> {
    let now = state.now();
    let detected_at = crate::web::datetime_local_utc(&form.detected_at, now, "detection time")?;
    let aware_at = if form.personal_data == "yes" {
        Some(crate::web::datetime_local_utc(
            &form.aware_at,
            now,
            "time of awareness",
        )?)
    } else {
        None
    };
    let new = NewIncident {
        title: form.title,
        description: form.description,
        severity: Severity::parse(&form.severity).map_err(AppError::BadRequest)?,
        source: Source::Manual,
        detected_at,
        affected_customers: form.affected_customers,
        affected_systems: form.affected_systems,
        tags: form.tags,
        personal_data_aware_at: aware_at,
    };
    let mut tx = state.db.begin().await?;
    let incident = super::open(
        &mut tx,
        &settings(&state),
        &new,
        &visitor.actor(),
        &visitor.ctx.meta(),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/incidents/{}", incident.id)).into_response())
}

struct ClockView {
    name: String,
    target: String,
    state: String,
    due: String,
    countdown: crate::sla::pages::Countdown,
}

struct EntryView {
    at: String,
    author: String,
    kind: String,
    body: String,
}

#[derive(Template)]
#[template(path = "incidents/detail.html")]
struct DetailPage {
    shell: Shell,
    id: String,
    number: i64,
    title: String,
    description: String,
    severity: &'static str,
    severity_meaning: &'static str,
    status: &'static str,
    source: &'static str,
    detected: String,
    reported: String,
    reported_by: String,
    assignee: String,
    on_call: String,
    escalation: String,
    affected_customers: String,
    affected_systems: String,
    tags: String,
    personal_data: bool,
    aware: String,
    version: i64,
    clocks: Vec<ClockView>,
    timeline: Vec<EntryView>,
    next_statuses: Vec<&'static str>,
    can_triage: bool,
    can_review: bool,
    needs_review: bool,
    notice: Option<BreachNotice>,
    notice_sent: String,
    severities: Vec<SeverityOption>,
    can_write: bool,
    controllers: Vec<ControllerView>,
    actions: Vec<ActionView>,
}

struct ControllerView {
    customer_id: String,
    customer: String,
    notified: String,
}

struct ActionView {
    id: String,
    title: String,
    owner: String,
    due: String,
    done: String,
}

async fn label(conn: &mut sqlx::AnyConnection, id: &Option<String>) -> AppResult<String> {
    Ok(match id {
        Some(id) => crate::oncall::person(conn, id)
            .await?
            .map(|p| format!("{} <{}>", p.name, p.email))
            .unwrap_or_else(|| "(account removed)".into()),
        None => "—".into(),
    })
}

async fn incident_detail_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> AppResult<Html<String>> {
    let session = visitor.session()?;
    let now = state.now();
    let mut conn = state.db.pool.acquire().await?;
    let detail = super::detail(&mut conn, &id, now)
        .await?
        .ok_or(AppError::NotFound)?;
    let clocks = crate::sla::for_subject(&mut conn, &super::subject(&id))
        .await?
        .into_iter()
        .map(|c| ClockView {
            name: c.name.clone(),
            target: c.target.clone(),
            state: c.state_at(now).as_str().to_owned(),
            due: format_ms(c.due_at),
            countdown: crate::sla::pages::Countdown::of(&c, now),
        })
        .collect();
    let incident = &detail.incident;
    let assignee = label(&mut conn, &incident.assignee_id).await?;
    let on_call = label(&mut conn, &incident.oncall_staff_id).await?;
    let escalation = label(&mut conn, &incident.escalation_staff_id).await?;
    let controllers = super::followups::controller_notices(&mut conn, &id)
        .await?
        .into_iter()
        .map(|n| ControllerView {
            customer_id: n.customer_id,
            customer: n.customer_name,
            notified: n
                .notified_at
                .map(|at| format!("notified {}", format_ms(at)))
                .unwrap_or_default(),
        })
        .collect();
    let mut actions = Vec::new();
    for a in super::followups::actions(&mut conn, &id).await? {
        actions.push(ActionView {
            owner: label(&mut conn, &Some(a.owner_id.clone())).await?,
            id: a.id,
            title: a.title,
            due: format_ms(a.due_at),
            done: a.done_at.map(format_ms).unwrap_or_default(),
        });
    }
    let notice_sent = detail
        .breach_notice
        .as_ref()
        .and_then(|n| n.notified_at)
        .map(format_ms)
        .unwrap_or_default();
    html(&DetailPage {
        shell: Shell::new(&state, &visitor, "/incidents")?,
        id: incident.id.clone(),
        number: incident.number,
        title: incident.title.clone(),
        description: incident.description.clone(),
        severity: incident.severity.as_str(),
        severity_meaning: incident.severity.meaning(),
        status: incident.status.as_str(),
        source: incident.source.as_str(),
        detected: format_ms(incident.detected_at),
        reported: format_ms(incident.reported_at),
        reported_by: incident.reported_by.clone(),
        assignee,
        on_call,
        escalation,
        affected_customers: incident.affected_customers.clone(),
        affected_systems: incident.affected_systems.clone(),
        tags: incident.tags.clone(),
        personal_data: incident.personal_data,
        aware: incident.aware_at.map(format_ms).unwrap_or_default(),
        version: incident.version,
        clocks,
        timeline: detail
            .timeline
            .iter()
            .map(|e| EntryView {
                at: format_ms(e.at),
                author: e.author.clone(),
                kind: e.kind.clone(),
                body: e.body.clone(),
            })
            .collect(),
        next_statuses: incident.status.next().iter().map(|s| s.as_str()).collect(),
        can_triage: incident.status == Status::New,
        can_review: incident.status == Status::Resolved,
        needs_review: incident.severity.needs_review(),
        notice: detail.breach_notice.clone(),
        notice_sent,
        severities: severity_options(),
        can_write: state.authz.allows(&session.roles, "incidents", "write"),
        controllers,
        actions,
    })
}

#[derive(Deserialize)]
struct TriageForm {
    version: i64,
    severity: String,
    assignee: String,
}

async fn incident_triage_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<TriageForm>,
) -> AppResult<Response> {
    let severity = Severity::parse(&form.severity).map_err(AppError::BadRequest)?;
    let mut tx = state.db.begin().await?;
    super::triage(
        &mut tx,
        &id,
        form.version,
        severity,
        &form.assignee,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/incidents/{id}")).into_response())
}

#[derive(Deserialize)]
struct StatusForm {
    version: i64,
    status: String,
}

async fn incident_status_post(
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
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/incidents/{id}")).into_response())
}

#[derive(Deserialize)]
struct NoteForm {
    note: String,
}

async fn incident_note_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<NoteForm>,
) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    super::add_note(
        &mut tx,
        &id,
        &form.note,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/incidents/{id}")).into_response())
}

#[derive(Deserialize)]
struct ReviewForm {
    summary: String,
    root_cause: String,
    #[serde(default)]
    actions: String,
}

async fn incident_review_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<ReviewForm>,
) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    super::complete_review(
        &mut tx,
        &settings(&state),
        &id,
        &form.summary,
        &form.root_cause,
        &form.actions,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/incidents/{id}")).into_response())
}

#[derive(Deserialize)]
struct NoticeForm {
    #[serde(default)]
    nature: String,
    #[serde(default)]
    approx_subjects: String,
    #[serde(default)]
    approx_records: String,
    #[serde(default)]
    contact_point: String,
    #[serde(default)]
    likely_consequences: String,
    #[serde(default)]
    measures: String,
    #[serde(default)]
    authority: String,
    #[serde(default)]
    reference: String,
    /// `datetime-local` in UTC; empty = not sent yet.
    #[serde(default)]
    notified_at: String,
    #[serde(default)]
    late_reason: String,
}

fn optional_count(raw: &str, what: &str) -> AppResult<Option<i64>> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .map(Some)
        .ok_or_else(|| {
            AppError::BadRequest(format!(
                "The approximate number of {what} must be a whole number."
            ))
        })
}

async fn incident_authority_notice_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<NoticeForm>,
) -> AppResult<Response> {
    let now = state.now();
    let field =
        |raw: &str, what: &str| super::model::text(raw, 10_000, what).map_err(AppError::BadRequest);
    let notice = BreachNotice {
        nature: field(&form.nature, "nature of the breach")?,
        approx_subjects: optional_count(&form.approx_subjects, "people")?,
        approx_records: optional_count(&form.approx_records, "records")?,
        contact_point: field(&form.contact_point, "contact point")?,
        likely_consequences: field(&form.likely_consequences, "likely consequences")?,
        measures: field(&form.measures, "measures")?,
        authority: field(&form.authority, "authority")?,
        reference: field(&form.reference, "reference")?,
        notified_at: if form.notified_at.trim().is_empty() {
            None
        } else {
            Some(crate::web::datetime_local_utc(
                &form.notified_at,
                now,
                "notification time",
            )?)
        },
        late_reason: field(&form.late_reason, "reason for the delay")?,
    };
    let mut tx = state.db.begin().await?;
    super::record_authority_notice(
        &mut tx,
        &id,
        &notice,
        &visitor.actor(),
        &visitor.ctx.meta(),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/incidents/{id}")).into_response())
}

async fn incident_controller_notified_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((id, customer_id)): Path<(String, String)>,
) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    super::followups::record_controller_notified(
        &mut tx,
        &id,
        &customer_id,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/incidents/{id}")).into_response())
}

async fn incident_action_done_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((id, action_id)): Path<(String, String)>,
) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    super::followups::complete_action(
        &mut tx,
        &id,
        &action_id,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/incidents/{id}")).into_response())
}
