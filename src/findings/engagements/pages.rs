//! Engagement pages: the list with the recording form (a multipart upload with its own body
//! limit), the detail page with the findings the test produced, and the report download,
//! which is always an attachment so a report is never rendered inside the portal.

use askama::Template;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::model::{MAX_REPORT_BYTES, quarter_label};
use super::{NewEngagement, ReportVault, store};
use crate::app::AppState;
use crate::audit::{self, AuditEvent};
use crate::clock::format_ms;
use crate::error::{AppError, AppResult};
use crate::findings::pages::clock_text;
use crate::findings::store::{self as finding_store, FindingFilter};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};

/// The upload route reads the report plus the few text fields around it.
const UPLOAD_BODY_LIMIT: usize = MAX_REPORT_BYTES + 64 * 1024;

pub fn routes() -> Vec<PortalRoute> {
    let read = Access::Rbac("findings", "read");
    let write = Access::Rbac("findings", "write");
    vec![
        PortalRoute::get("/findings/engagements", read, engagement_list_get),
        PortalRoute::post("/findings/engagements", write, engagement_create_post)
            .with_body_limit(UPLOAD_BODY_LIMIT),
        PortalRoute::get("/findings/engagements/{id}", read, engagement_detail_get),
        PortalRoute::get(
            "/findings/engagements/{id}/report",
            read,
            engagement_report_get,
        ),
    ]
}

fn vault(state: &AppState) -> ReportVault<'_> {
    ReportVault {
        blobs: &state.blobs,
        keyring: &state.keyring,
    }
}

/// Bytes in whole KiB or MiB with one decimal, for report sizes.
fn size_label(bytes: Option<i64>) -> String {
    match bytes {
        None => String::new(),
        Some(b) if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        Some(b) => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

struct RowView {
    id: String,
    firm: String,
    scope: String,
    started_on: String,
    ended_on: String,
    quarter: String,
    report_name: String,
    report_size: String,
    report_sha256: String,
    findings: i64,
    due: String,
    clock: String,
    class: &'static str,
}

#[derive(Template)]
#[template(path = "findings/engagements.html")]
struct ListPage {
    shell: Shell,
    rows: Vec<RowView>,
    max_report_mib: usize,
    can_write: bool,
}

async fn engagement_list_get(
    State(state): State<AppState>,
    visitor: Visitor,
) -> AppResult<Html<String>> {
    let session = visitor.session()?;
    let now = state.now();
    let mut conn = state.db.pool.acquire().await?;
    let rows = store::list(&mut conn)
        .await?
        .into_iter()
        .map(|r| {
            let (clock, class) =
                clock_text(r.next_pentest_due_at, r.next_pentest_state.as_deref(), now);
            let e = r.engagement;
            RowView {
                quarter: quarter_label(e.ended_on),
                started_on: e.started_on.to_string(),
                ended_on: e.ended_on.to_string(),
                report_name: e.report_name.unwrap_or_default(),
                report_size: size_label(e.report_bytes),
                report_sha256: e.report_sha256.unwrap_or_default(),
                id: e.id,
                firm: e.firm,
                scope: e.scope,
                findings: r.findings,
                due: r.next_pentest_due_at.map(format_ms).unwrap_or_default(),
                clock,
                class,
            }
        })
        .collect();
    html(&ListPage {
        shell: Shell::new(&state, &visitor, "/findings")?,
        rows,
        max_report_mib: MAX_REPORT_BYTES / (1024 * 1024),
        can_write: state.authz.allows(&session.roles, "findings", "write"),
    })
}

fn unreadable(err: axum::extract::multipart::MultipartError) -> AppError {
    AppError::BadRequest(format!(
        "The form could not be read ({}). Nothing was changed.",
        err.body_text()
    ))
}

/// Reads the recording form: text fields and at most one report file. A file input left
/// empty arrives as a part without a file name and is no report; a chosen file with no
/// bytes is refused later as an empty report.
async fn read_form(multipart: &mut Multipart) -> AppResult<NewEngagement> {
    let mut new = NewEngagement::default();
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "report" {
            let file_name = field.file_name().unwrap_or_default().to_owned();
            let bytes = field.bytes().await.map_err(unreadable)?;
            if !file_name.is_empty() || !bytes.is_empty() {
                new.report = Some((file_name, bytes.to_vec()));
            }
            continue;
        }
        let text = field.text().await.map_err(unreadable)?;
        match name.as_str() {
            "firm" => new.firm = text,
            "scope" => new.scope = text,
            "started_on" => new.started_on = text,
            "ended_on" => new.ended_on = text,
            _ => {}
        }
    }
    Ok(new)
}

async fn engagement_create_post(
    State(state): State<AppState>,
    visitor: Visitor,
    mut multipart: Multipart,
) -> AppResult<Response> {
    let new = read_form(&mut multipart).await?;
    let mut tx = state.db.begin().await?;
    let engagement = super::record(
        &mut tx,
        &state.sla_calendar,
        vault(&state),
        &new,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/findings/engagements/{}", engagement.id)).into_response())
}

struct FindingView {
    id: String,
    number: i64,
    title: String,
    severity: &'static str,
    status: &'static str,
    due: String,
}

#[derive(Template)]
#[template(path = "findings/engagement.html")]
struct DetailPage {
    shell: Shell,
    id: String,
    firm: String,
    scope: String,
    started_on: String,
    ended_on: String,
    quarter: String,
    recorded: String,
    recorded_by: String,
    report_name: String,
    report_size: String,
    report_sha256: String,
    target: String,
    due: String,
    clock: String,
    class: &'static str,
    findings: Vec<FindingView>,
}

async fn engagement_detail_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> AppResult<Html<String>> {
    let now = state.now();
    let mut conn = state.db.pool.acquire().await?;
    let e = store::find(&mut conn, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let clock = crate::sla::for_subject(&mut conn, &super::subject(&id))
        .await?
        .into_iter()
        .find(|c| c.name == super::NEXT_PENTEST_CLOCK);
    let state_now = clock.as_ref().map(|c| c.state_at(now).as_str().to_owned());
    let (clock_now, class) =
        clock_text(clock.as_ref().map(|c| c.due_at), state_now.as_deref(), now);
    let (findings, _) = finding_store::list(
        &mut conn,
        &FindingFilter {
            engagement_id: Some(id.clone()),
            limit: 1000,
            ..Default::default()
        },
    )
    .await?;
    html(&DetailPage {
        shell: Shell::new(&state, &visitor, "/findings")?,
        quarter: quarter_label(e.ended_on),
        started_on: e.started_on.to_string(),
        ended_on: e.ended_on.to_string(),
        recorded: format_ms(e.created_at),
        recorded_by: e.created_by,
        report_name: e.report_name.unwrap_or_default(),
        report_size: size_label(e.report_bytes),
        report_sha256: e.report_sha256.unwrap_or_default(),
        id: e.id,
        firm: e.firm,
        scope: e.scope,
        target: clock.as_ref().map(|c| c.target.clone()).unwrap_or_default(),
        due: clock
            .as_ref()
            .map(|c| format_ms(c.due_at))
            .unwrap_or_default(),
        clock: clock_now,
        class,
        findings: findings
            .into_iter()
            .map(|r| FindingView {
                id: r.finding.id,
                number: r.finding.number,
                title: r.finding.title,
                severity: r.finding.severity.as_str(),
                status: r.finding.status.as_str(),
                due: r.remediation_due_at.map(format_ms).unwrap_or_default(),
            })
            .collect(),
    })
}

/// `attachment` with an ASCII fallback name and the exact name in RFC 5987 form.
fn attachment(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .filter(|c| !matches!(c, '"' | '\\'))
        .collect();
    let exact = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{exact}")
}

/// The report as a download. Whatever the file is, it is sent as opaque bytes with
/// `Content-Disposition: attachment`, never rendered inline. Each download is audited.
async fn engagement_report_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    let (engagement, bytes) = super::report(&mut conn, vault(&state), &id).await?;
    drop(conn);
    audit::append_alone(
        &state.db,
        state.now(),
        &visitor.ctx.meta(),
        AuditEvent::new(
            visitor.actor(),
            "pentest.report_download",
            format!("pentest:{id}"),
        )
        .detail(
            "report_sha256",
            engagement.report_sha256.clone().unwrap_or_default(),
        ),
    )
    .await?;
    let name = engagement
        .report_name
        .unwrap_or_else(|| "report".to_owned());
    let disposition = HeaderValue::from_str(&attachment(&name))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment; filename=\"report\""));
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::attachment;

    #[test]
    fn download_names_are_quoted_safely() {
        assert_eq!(
            attachment("acme report.pdf"),
            "attachment; filename=\"acme report.pdf\"; filename*=UTF-8''acme%20report%2Epdf"
        );
        assert!(attachment("prüfung.pdf").starts_with("attachment; filename=\"pr_fung.pdf\""));
    }
}
