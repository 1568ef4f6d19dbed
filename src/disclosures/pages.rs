//! The staff inbox: reports with filters (state, severity, overdue, assignee) and pages, and
//! the detail page with the report, the thread, internal notes, attachments (downloads
//! only), the three clocks, and the actions (reply, note, state, severity and assignee,
//! open an incident).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::DisclosureSettings;
use super::actions;
use super::model::State as ReportState;
use super::store::{self, InboxFilter};
use crate::app::AppState;
use crate::audit::{self, AuditEvent};
use crate::clock::{MINUTE, format_ms};
use crate::error::{AppError, AppResult};
use crate::findings::model::Severity;
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};
use crate::sla::Countdown;

pub fn routes() -> Vec<PortalRoute> {
    let read = Access::Rbac("disclosures", "read");
    let write = Access::Rbac("disclosures", "write");
    vec![
        PortalRoute::get("/disclosures", read, inbox_get),
        PortalRoute::get("/disclosures/{id}", read, detail_get),
        PortalRoute::get("/disclosures/{id}/attachments/{file}", read, attachment_get),
        PortalRoute::post("/disclosures/{id}/reply", write, actions::reply_post),
        PortalRoute::post("/disclosures/{id}/note", write, actions::note_post),
        PortalRoute::post("/disclosures/{id}/attachments", write, actions::attach_post)
            .with_body_limit(super::attachments::UPLOAD_BODY_LIMIT),
        PortalRoute::post("/disclosures/{id}/state", write, actions::state_post),
        PortalRoute::post("/disclosures/{id}/update", write, actions::update_post),
        PortalRoute::post("/disclosures/{id}/incident", write, actions::incident_post),
    ]
}

/// The inbox settings from the running configuration.
pub fn settings(state: &AppState) -> DisclosureSettings<'_> {
    DisclosureSettings {
        calendar: &state.sla_calendar,
        escalation_interval: state.config.incident_escalation_minutes * MINUTE,
        base_url: super::policy::base_url(state),
        findings: crate::findings::pages::settings(state),
        incidents: crate::incidents::pages::settings(state),
    }
}

const PAGE_SIZE: i64 = 50;

struct RowView {
    id: String,
    label: String,
    title: String,
    state: &'static str,
    severity: &'static str,
    received: String,
    assignee: String,
    next_due: String,
    overdue: bool,
}

#[derive(Template)]
#[template(path = "disclosures/inbox.html")]
struct InboxPage {
    shell: Shell,
    rows: Vec<RowView>,
    state: String,
    severity: String,
    overdue: bool,
    assignee: String,
    states: Vec<&'static str>,
    severities: Vec<&'static str>,
    total: i64,
    page: i64,
    pages: i64,
    prev_link: Option<String>,
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct InboxQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    overdue: String,
    #[serde(default)]
    assignee: String,
    page: Option<i64>,
}

fn encode(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

async fn inbox_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<InboxQuery>,
) -> AppResult<Html<String>> {
    let now = state.now();
    let page = query.page.unwrap_or(1).clamp(1, 100_000);
    let state_filter = match query.state.trim() {
        "" => None,
        raw => Some(ReportState::parse(raw).map_err(AppError::BadRequest)?),
    };
    let severity_filter = match query.severity.trim() {
        "" => None,
        "unrated" => Some(None),
        raw => Some(Some(Severity::parse(raw).map_err(AppError::BadRequest)?)),
    };
    let mut conn = state.db.pool.acquire().await?;
    let assignee_filter = match query.assignee.trim() {
        "" => None,
        "none" => Some(String::new()),
        email => Some(
            crate::staff::store::find_by_email(&mut *conn, &email.to_lowercase())
                .await?
                .map(|s| s.id)
                // Nobody by that address: a filter that matches nothing.
                .unwrap_or_else(|| "-".to_owned()),
        ),
    };
    let overdue = !query.overdue.trim().is_empty();
    let (rows, total) = store::list(
        &mut conn,
        &InboxFilter {
            state: state_filter,
            severity: severity_filter,
            overdue,
            assignee: assignee_filter,
            offset: (page - 1) * PAGE_SIZE,
            limit: PAGE_SIZE,
        },
        now,
    )
    .await?;
    let rows = rows
        .into_iter()
        .map(|r| RowView {
            id: r.disclosure.id.clone(),
            label: r.disclosure.label(),
            title: r.disclosure.title.clone(),
            state: r.disclosure.state.as_str(),
            severity: r.disclosure.severity_str(),
            received: format_ms(r.disclosure.received_at),
            assignee: r.assignee_email.unwrap_or_else(|| "—".into()),
            next_due: r
                .next_due_at
                .map(|due| crate::sla::format::until(due, now))
                .unwrap_or_else(|| "—".into()),
            overdue: r.next_due_at.is_some_and(|due| due <= now),
        })
        .collect();
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let link = |p: i64| {
        format!(
            "/disclosures?state={}&severity={}&overdue={}&assignee={}&page={p}",
            encode(&query.state),
            encode(&query.severity),
            if overdue { "1" } else { "" },
            encode(&query.assignee)
        )
    };
    html(&InboxPage {
        shell: Shell::new(&state, &visitor, "/disclosures")?,
        rows,
        state: query.state.clone(),
        severity: query.severity.clone(),
        overdue,
        assignee: query.assignee.clone(),
        states: ReportState::ALL.iter().map(|s| s.as_str()).collect(),
        severities: Severity::ALL.iter().map(|s| s.as_str()).collect(),
        total,
        page,
        pages,
        prev_link: (page > 1).then(|| link(page - 1)),
        next_link: (page < pages).then(|| link(page + 1)),
    })
}

struct ClockView {
    name: String,
    target: String,
    due: String,
    countdown: Countdown,
}

struct MessageView {
    at: String,
    author: String,
    kind: String,
    visible: bool,
    body: String,
}

struct FileView {
    id: String,
    name: String,
    content_type: String,
    size: String,
    sha256: String,
    uploaded: String,
}

#[derive(Template)]
#[template(path = "disclosures/detail.html")]
struct DetailPage {
    shell: Shell,
    id: String,
    label: String,
    title: String,
    description: String,
    asset: String,
    steps: String,
    impact: String,
    cvss_vector: String,
    reporter: String,
    credit_public: bool,
    state: &'static str,
    severity: &'static str,
    assignee: String,
    received: String,
    confirmed: String,
    duplicate_of: Option<(String, String)>,
    finding_id: String,
    incident_id: String,
    version: i64,
    clocks: Vec<ClockView>,
    messages: Vec<MessageView>,
    files: Vec<FileView>,
    next_states: Vec<&'static str>,
    severities: Vec<&'static str>,
    can_write: bool,
}

fn size_label(bytes: i64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}

async fn detail_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> AppResult<Html<String>> {
    let session = visitor.session()?;
    let now = state.now();
    let mut conn = state.db.pool.acquire().await?;
    let detail = super::detail(&mut conn, &id, false).await?;
    let d = &detail.disclosure;
    let assignee = match &d.assignee_id {
        Some(staff_id) => crate::staff::store::find(&mut *conn, staff_id)
            .await?
            .map(|s| s.email)
            .unwrap_or_default(),
        None => String::new(),
    };
    drop(conn);
    let reporter = match (d.reporter_name.is_empty(), d.reporter_email.is_empty()) {
        (true, true) => "anonymous".to_owned(),
        (false, true) => d.reporter_name.clone(),
        (true, false) => d.reporter_email.clone(),
        (false, false) => format!("{} <{}>", d.reporter_name, d.reporter_email),
    };
    html(&DetailPage {
        shell: Shell::new(&state, &visitor, "/disclosures")?,
        id: d.id.clone(),
        label: d.label(),
        title: d.title.clone(),
        description: d.description.clone(),
        asset: d.asset.clone(),
        steps: d.steps.clone(),
        impact: d.impact.clone(),
        cvss_vector: d.cvss_vector.clone(),
        reporter,
        credit_public: d.credit_public,
        state: d.state.as_str(),
        severity: d.severity_str(),
        assignee,
        received: format_ms(d.received_at),
        confirmed: d.confirmed_at.map(format_ms).unwrap_or_default(),
        duplicate_of: detail
            .duplicate_of
            .as_ref()
            .map(|o| (o.id.clone(), o.label())),
        finding_id: d.finding_id.clone().unwrap_or_default(),
        incident_id: d.incident_id.clone().unwrap_or_default(),
        version: d.version,
        clocks: detail
            .clocks
            .iter()
            .map(|c| ClockView {
                name: c.name.clone(),
                target: c.target.clone(),
                due: format_ms(c.due_at),
                countdown: Countdown::of(c, now),
            })
            .collect(),
        messages: detail
            .messages
            .iter()
            .map(|m| MessageView {
                at: format_ms(m.at),
                author: m.author.clone(),
                kind: m.kind.clone(),
                visible: m.visible,
                body: m.body.clone(),
            })
            .collect(),
        files: detail
            .attachments
            .iter()
            .map(|a| FileView {
                id: a.id.clone(),
                name: a.file_name.clone(),
                content_type: a.content_type.clone(),
                size: size_label(a.bytes),
                sha256: a.sha256.clone(),
                uploaded: format!("{} by {}", format_ms(a.created_at), a.uploaded_by),
            })
            .collect(),
        next_states: d.state.next().iter().map(|s| s.as_str()).collect(),
        severities: Severity::ALL.iter().map(|s| s.as_str()).collect(),
        can_write: state.authz.allows(&session.roles, "disclosures", "write"),
    })
}

/// Downloads an attachment: always `Content-Disposition: attachment` and an opaque type,
/// so a hostile file is never rendered by the browser inside the portal.
async fn attachment_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((id, file)): Path<(String, String)>,
) -> AppResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    let (attachment, bytes) =
        super::attachments::open(&mut conn, &state.blobs, &state.keyring, &id, &file).await?;
    drop(conn);
    audit::append_alone(
        &state.db,
        state.now(),
        &visitor.ctx.meta(),
        AuditEvent::new(
            visitor.actor(),
            "disclosure.attachment_download",
            format!("disclosure:{id}"),
        )
        .detail("attachment", attachment.id.as_str())
        .detail("sha256", attachment.sha256.as_str()),
    )
    .await?;
    let disposition = format!("attachment; filename=\"{}\"", attachment.file_name);
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition)
            .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    Ok(response)
}
