//! `POST /hooks/alertmanager`: Prometheus Alertmanager's webhook (payload version 4).
//! Authenticated with `Authorization: Bearer <alertmanager_token>` (constant-time compare);
//! every refusal is `application/problem+json`. A firing alert opens or joins an incident
//! (deduplicated by Alertmanager's fingerprint); a resolved one resolves its alert and adds a
//! timeline entry to the incident.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use super::model::{AlertState, Detector, Evidence};
use super::{Candidate, Raised};
use crate::api::problem::Problem;
use crate::app::AppState;
use crate::crypto::constant_time_eq;
use crate::incidents::model::Severity;
use crate::web::RequestCtx;

/// Largest payload accepted; Alertmanager groups are small (it truncates with `max_alerts`).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Alerts handled from one payload at most.
const MAX_ALERTS: usize = 200;
/// The audit actor of intake.
pub const ACTOR: &str = "system:alertmanager";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hooks/alertmanager", post(alertmanager_post))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES + 1))
}

/// The part of the version 4 payload trustplane reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub version: String,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub external_url: String,
    pub alerts: Vec<AmAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmAlert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: String,
    #[serde(default)]
    pub generator_url: String,
    pub fingerprint: String,
}

fn problem(status: StatusCode, slug: &str, title: &str, detail: String) -> Response {
    let body = serde_json::to_string(&Problem {
        problem_type: format!("urn:trustplane:problem:{slug}"),
        title: title.to_owned(),
        status: status.as_u16(),
        detail,
    })
    .unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    // An empty configured token turns the hook off: nothing matches it.
    !token.is_empty() && constant_time_eq(presented, token)
}

/// What one call did, returned as JSON.
#[derive(Debug, Default, serde::Serialize)]
pub struct IntakeReport {
    pub opened: i64,
    pub repeated: i64,
    pub resolved: i64,
    pub unknown_resolved: i64,
}

#[tracing::instrument(skip_all)]
async fn alertmanager_post(
    State(state): State<AppState>,
    ctx: RequestCtx,
    req: Request,
) -> Response {
    if !authorized(req.headers(), &state.config.alertmanager_token) {
        tracing::info!("alertmanager hook refused: wrong or missing bearer token");
        return problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or invalid bearer token",
            "Send Authorization: Bearer with the configured alertmanager_token.".into(),
        );
    }
    // The body is read only after the token is checked, and never beyond the limit.
    let body: Bytes = match axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Payload too large",
                format!("Webhook bodies may be at most {MAX_BODY_BYTES} bytes."),
            );
        }
    };
    let payload: Payload = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(err) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "malformed",
                "Malformed request",
                format!(
                    "The body is not an Alertmanager webhook payload: {}",
                    crate::web::clip(&err.to_string(), 200)
                ),
            );
        }
    };
    if payload.version != "4" {
        return problem(
            StatusCode::BAD_REQUEST,
            "malformed",
            "Malformed request",
            format!(
                "Payload version {} is not supported; Alertmanager sends version 4.",
                crate::web::clip(&payload.version, 10)
            ),
        );
    }
    if payload.alerts.len() > MAX_ALERTS
        || payload
            .alerts
            .iter()
            .any(|a| a.fingerprint.trim().is_empty() || a.fingerprint.len() > 64)
    {
        return problem(
            StatusCode::BAD_REQUEST,
            "malformed",
            "Malformed request",
            format!(
                "Each alert needs a fingerprint (at most 64 characters); at most {MAX_ALERTS} alerts per call."
            ),
        );
    }
    match intake(&state, &ctx, &payload).await {
        Ok(report) => (StatusCode::OK, axum::Json(report)).into_response(),
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "alertmanager intake failed");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
                "The alerts could not be recorded; Alertmanager will retry.".into(),
            )
        }
    }
}

fn severity_of(labels: &BTreeMap<String, String>) -> Severity {
    match labels
        .get("severity")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        Some("critical") | Some("page") => Severity::Sev2,
        Some("warning") => Severity::Sev3,
        _ => Severity::Sev4,
    }
}

fn parse_time(raw: &str) -> Option<crate::clock::Millis> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.timestamp_millis())
        .filter(|t| *t > 0)
}

/// Records every alert of the payload in one transaction.
pub async fn intake(
    state: &AppState,
    ctx: &RequestCtx,
    payload: &Payload,
) -> anyhow::Result<IntakeReport> {
    let now = state.now();
    let meta = ctx.meta();
    let settings = crate::incidents::pages::settings(state);
    let mut report = IntakeReport::default();
    let mut tx = state.db.begin().await?;
    for alert in &payload.alerts {
        let name = alert
            .labels
            .get("alertname")
            .cloned()
            .unwrap_or_else(|| "unnamed alert".into());
        let fingerprint = alert.fingerprint.trim().to_owned();
        if alert.status == "resolved" {
            crate::db::lock_until_commit(&mut tx, "alerts.raise").await?;
            match super::store::active_by_fingerprint(&mut tx, &fingerprint).await? {
                Some(open) => {
                    super::change_state(
                        &mut tx,
                        &open.id,
                        AlertState::Resolved,
                        "",
                        ACTOR,
                        &meta,
                        now,
                    )
                    .await?;
                    if let Some(incident) = &open.incident_id {
                        let ended = parse_time(&alert.ends_at)
                            .map(crate::clock::format_ms)
                            .unwrap_or_else(|| "now".into());
                        crate::incidents::add_note(
                            &mut tx,
                            incident,
                            &format!("Alertmanager: {name} resolved (ended {ended})."),
                            ACTOR,
                            &meta,
                            now,
                        )
                        .await?;
                    }
                    report.resolved += 1;
                }
                None => report.unknown_resolved += 1,
            }
            continue;
        }
        let summary = alert
            .annotations
            .get("summary")
            .or_else(|| alert.annotations.get("description"))
            .map(|s| format!("{name}: {s}"))
            .unwrap_or_else(|| format!("{name} is firing"));
        let mut facts: Vec<(String, String)> = alert
            .labels
            .iter()
            .map(|(k, v)| (format!("label {k}"), crate::web::clip(v, 200)))
            .collect();
        facts.extend(
            alert
                .annotations
                .iter()
                .map(|(k, v)| (format!("annotation {k}"), crate::web::clip(v, 500))),
        );
        facts.push(("fingerprint".into(), fingerprint.clone()));
        if !alert.generator_url.is_empty() {
            facts.push(("source".into(), crate::web::clip(&alert.generator_url, 300)));
        }
        if !payload.external_url.is_empty() {
            facts.push((
                "alertmanager".into(),
                crate::web::clip(&payload.external_url, 300),
            ));
        }
        if !payload.receiver.is_empty() {
            facts.push(("receiver".into(), crate::web::clip(&payload.receiver, 100)));
        }
        let started = parse_time(&alert.starts_at).unwrap_or(now).min(now);
        let candidate = Candidate {
            detector: Detector::Alertmanager,
            subject: format!("alertmanager:{fingerprint}"),
            subject_label: crate::web::clip(&name, 200),
            summary: crate::web::clip(&summary, 500),
            evidence: Evidence {
                metric: "Prometheus alert".into(),
                series: Vec::new(),
                at: started,
                value: 1.0,
                baseline_mean: None,
                baseline_sd: None,
                z_score: None,
                rule: format!("Prometheus rule {name} is firing"),
                facts,
            },
            fingerprint: Some(fingerprint),
            severity: severity_of(&alert.labels),
            detected_at: started,
        };
        match super::raise(
            &mut tx,
            &settings,
            &candidate,
            super::dedupe_window(&state.config.alert_thresholds),
            ACTOR,
            &meta,
            now,
        )
        .await?
        {
            Raised::New { .. } => report.opened += 1,
            Raised::Repeated { .. } => report.repeated += 1,
        }
    }
    tx.commit().await?;
    Ok(report)
}
