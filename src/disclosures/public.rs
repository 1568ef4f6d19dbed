//! The public report form and the researcher's status page behind the secret link, for
//! people without an account. Everything a researcher sends is escaped on every page; the
//! form works without JavaScript; floods meet a honeypot and a per-network limit that
//! answers with a readable 429 page.

use askama::Template;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::DisclosureError;
use super::attachments::{self, UPLOAD_BODY_LIMIT, Upload};
use super::model::NewReport;
use super::pages::settings;
use super::policy::base_url;
use crate::app::AppState;
use crate::clock::format_ms;
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};

pub fn routes() -> Vec<PortalRoute> {
    vec![
        PortalRoute::get("/security/report", Access::PublicForm, report_get),
        PortalRoute::post("/security/report", Access::PublicForm, report_post)
            .with_body_limit(UPLOAD_BODY_LIMIT),
        PortalRoute::get("/security/reports/{token}", Access::PublicForm, status_get),
        PortalRoute::post("/security/reports/{token}", Access::PublicForm, status_post)
            .with_body_limit(UPLOAD_BODY_LIMIT),
    ]
}

#[derive(Template, Default)]
#[template(path = "disclosures/report.html")]
struct ReportPage {
    csrf: String,
    error: Option<String>,
    title: String,
    description: String,
    asset: String,
    steps: String,
    impact: String,
    cvss_vector: String,
    reporter_name: String,
    reporter_email: String,
    credit_public: bool,
    max_files: usize,
    max_mib: usize,
}

async fn report_get(State(state): State<AppState>, visitor: Visitor) -> AppResult<Response> {
    if let Err(wait) = state
        .trust_limiter
        .check_ip(visitor.ctx.client_ip.as_deref())
    {
        return pages_limited(wait);
    }
    Ok(Html(
        ReportPage {
            csrf: visitor.csrf.clone(),
            max_files: attachments::MAX_FILES_PER_UPLOAD,
            max_mib: attachments::MAX_FILE_BYTES / (1024 * 1024),
            ..Default::default()
        }
        .render()?,
    )
    .into_response())
}

fn unreadable(err: axum::extract::multipart::MultipartError) -> AppError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return AppError::TooLarge;
    }
    AppError::BadRequest(format!(
        "The form could not be read ({}). Nothing was sent.",
        err.body_text()
    ))
}

/// Text fields by name, and the files, of a multipart form.
pub(super) async fn read_multipart(
    multipart: &mut Multipart,
) -> AppResult<(std::collections::HashMap<String, String>, Vec<Upload>)> {
    let mut fields = std::collections::HashMap::new();
    let mut files = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "files" {
            let file_name = field.file_name().unwrap_or_default().to_owned();
            let bytes = field.bytes().await.map_err(unreadable)?;
            // An empty file input arrives as a nameless, empty part: no file.
            if !file_name.is_empty() || !bytes.is_empty() {
                files.push(Upload {
                    name: file_name,
                    bytes: bytes.to_vec(),
                });
            }
            if files.len() > attachments::MAX_FILES_PER_UPLOAD {
                return Err(AppError::BadRequest(format!(
                    "Attach at most {} files at a time. Nothing was sent.",
                    attachments::MAX_FILES_PER_UPLOAD
                )));
            }
            continue;
        }
        let text = field.text().await.map_err(unreadable)?;
        fields.insert(name, text);
    }
    Ok((fields, files))
}

#[derive(Template)]
#[template(path = "disclosures/limited.html")]
struct LimitedPage {
    minutes: u64,
    /// Page views over the per-minute page limit, rather than reports over the hourly one.
    pages: bool,
}

/// The readable 429 page for reports and researcher messages.
fn limited(retry_after_seconds: u64) -> AppResult<Response> {
    limited_page(retry_after_seconds, false)
}

/// The readable 429 page for views of the public pages.
pub(crate) fn pages_limited(retry_after_seconds: u64) -> AppResult<Response> {
    limited_page(retry_after_seconds, true)
}

fn limited_page(retry_after_seconds: u64, pages: bool) -> AppResult<Response> {
    let page = LimitedPage {
        minutes: retry_after_seconds.div_ceil(60),
        pages,
    }
    .render()?;
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Html(page)).into_response();
    if let Ok(value) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Ok(response)
}

/// The keyed hash of the client's network: enough to count reports per network, without
/// keeping the address.
fn network_hash(state: &AppState, visitor: &Visitor) -> String {
    let network = visitor
        .ctx
        .client_ip
        .as_deref()
        .map(crate::web::client_network_key)
        .unwrap_or_else(|| "unknown".to_owned());
    state
        .keyring
        .pepper_hmac_hex(format!("disclosure-network:{network}").as_bytes())
}

#[derive(Template)]
#[template(path = "disclosures/received.html")]
struct ReceivedPage {
    label: String,
    status_link: String,
    emailed: bool,
    files: usize,
}

async fn report_post(
    State(state): State<AppState>,
    visitor: Visitor,
    mut multipart: Multipart,
) -> AppResult<Response> {
    let (fields, files) = read_multipart(&mut multipart).await?;
    let get = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let rerender = |error: String, status: StatusCode| -> AppResult<Response> {
        let page = ReportPage {
            csrf: visitor.csrf.clone(),
            error: Some(error),
            title: crate::web::clip(&get("title"), 200),
            description: crate::web::clip(&get("description"), 20_000),
            asset: crate::web::clip(&get("asset"), 500),
            steps: crate::web::clip(&get("steps"), 20_000),
            impact: crate::web::clip(&get("impact"), 5_000),
            cvss_vector: crate::web::clip(&get("cvss_vector"), 200),
            reporter_name: crate::web::clip(&get("reporter_name"), 100),
            reporter_email: crate::web::clip(&get("reporter_email"), 254),
            credit_public: !get("credit_public").is_empty(),
            max_files: attachments::MAX_FILES_PER_UPLOAD,
            max_mib: attachments::MAX_FILE_BYTES / (1024 * 1024),
        }
        .render()?;
        Ok((status, Html(page)).into_response())
    };
    // The honeypot: a field people never see (hidden by the stylesheet, labelled "leave
    // empty" for screen readers); form-filling bots fill it.
    if !get("website").trim().is_empty() {
        tracing::info!(request_id = %visitor.ctx.request_id, "disclosure honeypot filled");
        return rerender(
            "This report could not be accepted. If you are a person, clear the field marked \
             “leave this empty” and send it again."
                .into(),
            StatusCode::BAD_REQUEST,
        );
    }
    let checked = match attachments::check(files) {
        Ok(c) => c,
        Err(DisclosureError::Invalid(m)) => {
            return rerender(
                format!("{m} Nothing was sent; choose the files again."),
                StatusCode::BAD_REQUEST,
            );
        }
        Err(e) => return Err(e.into()),
    };
    let report = NewReport {
        title: get("title"),
        description: get("description"),
        asset: get("asset"),
        steps: get("steps"),
        impact: get("impact"),
        cvss_vector: get("cvss_vector"),
        reporter_name: get("reporter_name"),
        reporter_email: get("reporter_email"),
        credit_public: !get("credit_public").is_empty(),
    };
    let now = state.now();
    let settings = settings(&state);
    let mut tx = state.db.begin().await?;
    let received = match super::submit(
        &mut tx,
        &settings,
        report,
        &network_hash(&state, &visitor),
        state.config.disclosure_reports_per_hour,
        &visitor.ctx.meta(),
        now,
    )
    .await
    {
        Ok(r) => r,
        Err(DisclosureError::Invalid(m)) => {
            return rerender(format!("{m} Nothing was sent."), StatusCode::BAD_REQUEST);
        }
        Err(DisclosureError::Limited {
            retry_after_seconds,
        }) => return limited(retry_after_seconds),
        Err(e) => return Err(e.into()),
    };
    let stored = attachments::store(
        &mut tx,
        &state.blobs,
        &state.keyring,
        &received.disclosure.id,
        checked,
        "researcher",
        now,
    )
    .await?;
    tx.commit().await?;
    let page = ReceivedPage {
        label: received.disclosure.label(),
        status_link: format!(
            "{}{}",
            base_url(&state),
            super::status_path(&received.token)
        ),
        emailed: !received.disclosure.reporter_email.is_empty(),
        files: stored.len(),
    }
    .render()?;
    Ok((StatusCode::OK, Html(page)).into_response())
}

struct ClockView {
    target: String,
    due: String,
    state: &'static str,
}

struct MessageView {
    at: String,
    from: &'static str,
    kind: String,
    body: String,
}

#[derive(Template)]
#[template(path = "disclosures/status.html")]
struct StatusPage {
    csrf: String,
    token: String,
    label: String,
    title: String,
    state: &'static str,
    state_label: &'static str,
    received: String,
    closed: bool,
    clocks: Vec<ClockView>,
    messages: Vec<MessageView>,
    files: Vec<(String, String)>,
    notice: Option<String>,
    error: Option<String>,
}

async fn status_page(
    state: &AppState,
    visitor: &Visitor,
    token: &str,
    notice: Option<String>,
    error: Option<String>,
) -> AppResult<Response> {
    let now = state.now();
    let mut conn = state.db.pool.acquire().await?;
    let d = super::by_token(&mut conn, token)
        .await?
        .ok_or(AppError::NotFound)?;
    let detail = super::detail(&mut conn, &d.id, true).await?;
    drop(conn);
    let page = StatusPage {
        csrf: visitor.csrf.clone(),
        token: token.to_owned(),
        label: d.label(),
        title: d.title.clone(),
        state: d.state.as_str(),
        state_label: d.state.label(),
        received: format_ms(d.received_at),
        closed: d.state.is_closed(),
        clocks: detail
            .clocks
            .iter()
            .map(|c| ClockView {
                target: c.target.clone(),
                due: format_ms(c.due_at),
                state: c.state_at(now).as_str(),
            })
            .collect(),
        messages: detail
            .messages
            .iter()
            .map(|m| MessageView {
                at: format_ms(m.at),
                // Staff names stay internal: the researcher sees "security team".
                from: match m.kind.as_str() {
                    "researcher" => "you",
                    "event" => "status",
                    _ => "security team",
                },
                kind: m.kind.clone(),
                body: m.body.clone(),
            })
            .collect(),
        files: detail
            .attachments
            .iter()
            .filter(|a| a.uploaded_by == "researcher")
            .map(|a| (a.file_name.clone(), format_ms(a.created_at)))
            .collect(),
        notice,
        error: error.clone(),
    }
    .render()?;
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut response = (status, Html(page)).into_response();
    // The page is reached by a secret link: keep it out of caches and referrers.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn status_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(token): Path<String>,
) -> AppResult<Response> {
    if let Err(wait) = state
        .trust_limiter
        .check_ip(visitor.ctx.client_ip.as_deref())
    {
        return pages_limited(wait);
    }
    status_page(&state, &visitor, &token, None, None).await
}

async fn status_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(token): Path<String>,
    mut multipart: Multipart,
) -> AppResult<Response> {
    let now = state.now();
    let mut conn = state.db.pool.acquire().await?;
    let d = super::by_token(&mut conn, &token)
        .await?
        .ok_or(AppError::NotFound)?;
    drop(conn);
    let (fields, files) = read_multipart(&mut multipart).await?;
    let body = fields.get("message").cloned().unwrap_or_default();
    if body.trim().is_empty() && files.is_empty() {
        return status_page(
            &state,
            &visitor,
            &token,
            None,
            Some("Write a message or choose a file to send.".into()),
        )
        .await;
    }
    let checked = match attachments::check(files) {
        Ok(c) => c,
        Err(DisclosureError::Invalid(m)) => {
            return status_page(&state, &visitor, &token, None, Some(m)).await;
        }
        Err(e) => return Err(e.into()),
    };
    let mut tx = state.db.begin().await?;
    match super::researcher_message(&mut tx, &d, &body, &visitor.ctx.meta(), now).await {
        Ok(()) => {}
        Err(DisclosureError::Invalid(m)) => {
            return status_page(&state, &visitor, &token, None, Some(m)).await;
        }
        Err(DisclosureError::Limited {
            retry_after_seconds,
        }) => return limited(retry_after_seconds),
        Err(e) => return Err(e.into()),
    }
    let stored = attachments::store(
        &mut tx,
        &state.blobs,
        &state.keyring,
        &d.id,
        checked,
        "researcher",
        now,
    )
    .await;
    let stored = match stored {
        Ok(s) => s,
        Err(DisclosureError::Invalid(m)) => {
            return status_page(&state, &visitor, &token, None, Some(m)).await;
        }
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    let notice = if stored.is_empty() {
        "Your message was sent.".to_owned()
    } else {
        format!("Sent, with {} file(s).", stored.len())
    };
    status_page(&state, &visitor, &token, Some(notice), None).await
}
