//! The evidence page (export a pack, see who exported which period) and the public key at
//! `/trust/evidence-key` that auditors verify packs with.

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::app::AppState;
use crate::audit::{AuditFilter, list};
use crate::clock::{DAY, format_ms};
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};
use crate::web::{Form, RequestCtx};

pub fn routes() -> Vec<PortalRoute> {
    vec![
        PortalRoute::get(
            "/evidence",
            Access::Rbac("evidence", "read"),
            evidence_list_get,
        ),
        PortalRoute::post(
            "/evidence/export",
            Access::Rbac("evidence", "write"),
            evidence_export_post,
        ),
        PortalRoute::get("/trust/evidence-key", Access::Public, evidence_key_get),
        PortalRoute::get(
            "/trust/evidence-key.json",
            Access::Public,
            evidence_key_json_get,
        ),
    ]
}

const PAGE_SIZE: i64 = 25;

struct ExportView {
    seq: i64,
    at: String,
    actor: String,
    period: String,
    pack_sha256: String,
    size: String,
    key_id: String,
}

#[derive(Template)]
#[template(path = "evidence/index.html")]
struct EvidencePage {
    shell: Shell,
    can_export: bool,
    default_from: String,
    default_to: String,
    key_id: String,
    exports: Vec<ExportView>,
    older_link: Option<String>,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    before: Option<i64>,
}

fn day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

async fn evidence_list_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<ListQuery>,
) -> AppResult<Html<String>> {
    let session = visitor.session()?;
    let rows = list(
        &state.db,
        &AuditFilter {
            action: "evidence.export".into(),
            before_seq: query.before.filter(|b| *b > 0),
            limit: PAGE_SIZE,
            ..Default::default()
        },
    )
    .await?;
    let older_link = (rows.len() as i64 == PAGE_SIZE)
        .then(|| rows.last().map(|r| format!("/evidence?before={}", r.seq)))
        .flatten();
    let exports = rows
        .into_iter()
        .filter(|r| r.action == "evidence.export")
        .map(|r| {
            let details: serde_json::Value = serde_json::from_str(&r.details).unwrap_or_default();
            let text = |k: &str| {
                details
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let bytes = details
                .get("pack_bytes")
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            ExportView {
                seq: r.seq,
                at: format_ms(r.at),
                actor: r.actor,
                period: format!("{} → {}", text("period_from"), text("period_to")),
                pack_sha256: text("pack_sha256"),
                size: format!("{:.1} MB", bytes as f64 / 1_000_000.0),
                key_id: text("signed_with"),
            }
        })
        .collect();
    let now = state.now();
    html(&EvidencePage {
        shell: Shell::new(&state, &visitor, "/evidence")?,
        can_export: state.authz.allows(&session.roles, "evidence", "write"),
        default_from: day(now - 90 * DAY),
        default_to: day(now + DAY),
        key_id: state.keyring.evidence.current.id.clone(),
        exports,
        older_link,
    })
}

#[derive(Deserialize)]
struct ExportForm {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// Builds the pack into an anonymous temporary file and streams it as a download.
async fn evidence_export_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<ExportForm>,
) -> AppResult<Response> {
    let from = super::parse_day_or_time(&form.from)
        .map_err(|e| AppError::BadRequest(format!("Start of the period: {e}.")))?;
    let to = super::parse_day_or_time(&form.to)
        .map_err(|e| AppError::BadRequest(format!("End of the period: {e}.")))?;
    super::check_period(from, to)
        .map_err(|e| AppError::BadRequest(format!("Period: {e}. Nothing was exported.")))?;
    let file = tempfile::tempfile().map_err(anyhow::Error::from)?;
    let request = super::ExportRequest {
        db: &state.db,
        config: &state.config,
        keyring: &state.keyring,
        from,
        to,
        now: state.now(),
        actor: visitor.actor(),
    };
    let (outcome, file) =
        super::export_to_file(&request, file, &visitor.ctx.meta(), &mut |line: &str| {
            tracing::debug!(progress = line, "evidence export");
        })
        .await?;
    let name = format!("evidence-{}-{}.zip", day(from), day(to - 1));
    let stream =
        futures_util::stream::unfold(tokio::fs::File::from_std(file), |mut file| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0_u8; 64 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(Bytes::from(buf)), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&outcome.pack_bytes.to_string()) {
        headers.insert(header::CONTENT_LENGTH, v);
    }
    if let Ok(v) = HeaderValue::from_str(&outcome.pack_sha256) {
        headers.insert("x-evidence-pack-sha256", v);
    }
    Ok(response)
}

fn limited(state: &AppState, ctx: &RequestCtx) -> Option<Response> {
    state
        .trust_limiter
        .check_ip(ctx.client_ip.as_deref())
        .err()
        .map(|wait| {
            let mut response = (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                format!("Too many requests; try again in {wait} seconds.\n"),
            )
                .into_response();
            if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        })
}

fn cacheable(mut response: Response, content_type: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// The public keys as text: one `id status base64` line each, current first.
pub fn key_text(state: &AppState) -> String {
    let mut text = String::from(
        "# Ed25519 public keys that sign trustplane evidence packs (base64 of 32 bytes).\n\
         # The current key signs new packs; retired keys verify packs made before a rotation.\n\
         # Save this file and run: trustplane evidence verify PACK.zip --public-key FILE\n",
    );
    for key in state.keyring.evidence.published() {
        let status = match key.retired_at {
            Some(at) if at > 0 => format!("retired-{}", day(at)),
            Some(_) => "retired".to_owned(),
            None => key.status.to_owned(),
        };
        text.push_str(&format!("{} {} {}\n", key.id, status, key.public_key));
    }
    text
}

async fn evidence_key_get(State(state): State<AppState>, ctx: RequestCtx) -> Response {
    if let Some(response) = limited(&state, &ctx) {
        return response;
    }
    cacheable(
        key_text(&state).into_response(),
        "text/plain; charset=utf-8",
    )
}

async fn evidence_key_json_get(State(state): State<AppState>, ctx: RequestCtx) -> Response {
    if let Some(response) = limited(&state, &ctx) {
        return response;
    }
    let body = serde_json::json!({ "keys": state.keyring.evidence.published() }).to_string();
    cacheable(body.into_response(), "application/json")
}
