//! The public trust page (`/trust`, `/trust.json`): every promise of the Trust & Safety page
//! with the live state of its control — "passing since …", or the configured wording
//! ("under review") — and nothing internal: no summary, no fact, no record id. It also
//! publishes the audit chain's head at the end of each recent day, so anyone who saved an
//! earlier head can tell if history was rewritten. No session; cacheable for a minute;
//! rate-limited per client network like the other public pages.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use super::catalogue::CATALOGUE;
use super::model::ControlState;
use super::store;
use crate::app::AppState;
use crate::clock::{DAY, Millis};
use crate::error::AppResult;
use crate::portal::routes::{Access, PortalRoute};
use crate::web::RequestCtx;

pub fn routes() -> Vec<PortalRoute> {
    vec![
        PortalRoute::get("/trust", Access::Public, trust_get),
        PortalRoute::get("/trust.json", Access::Public, trust_json_get),
    ]
}

/// Days of daily audit-chain heads published.
pub const HEAD_DAYS: i64 = 30;

/// One promise as the public sees it.
#[derive(Debug, Clone, Serialize)]
pub struct PublicControl {
    pub id: &'static str,
    pub title: &'static str,
    pub claim: &'static str,
    /// `passing`, `not_passing` or `not_applicable`.
    pub status: &'static str,
    /// "passing since 2027-01-15", or the configured wording.
    pub label: String,
    /// `YYYY-MM-DD` the control has been passing since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// A published detail, e.g. "Most recent test: Q1 2026".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The chain head at the end of one UTC day.
#[derive(Debug, Clone, Serialize)]
pub struct DailyHead {
    pub date: String,
    pub hash: String,
}

/// Everything the page and the JSON show.
#[derive(Debug, Clone, Serialize)]
pub struct TrustView {
    pub generated_at: String,
    pub controls: Vec<PublicControl>,
    pub audit_chain_daily_heads: Vec<DailyHead>,
    pub links: BTreeMap<&'static str, &'static str>,
}

fn day(at: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The public view at `now`, from the newest stored evaluations.
pub async fn view(state: &AppState, now: Millis) -> Result<TrustView, sqlx::Error> {
    let latest: BTreeMap<String, store::Evaluation> = store::latest_all(&state.db)
        .await?
        .into_iter()
        .map(|e| (e.control_id.clone(), e))
        .collect();
    let wording = state.config.trust_failing_wording.trim().to_owned();
    let controls = CATALOGUE
        .iter()
        .map(|c| {
            let evaluation = latest.get(c.id);
            let (status, label, since) = match evaluation.map(|e| (e.state, e.state_since)) {
                Some((ControlState::Passing, since)) => (
                    "passing",
                    format!("passing since {}", day(since)),
                    Some(day(since)),
                ),
                Some((ControlState::NotApplicable, _)) => {
                    ("not_applicable", "not applicable".to_owned(), None)
                }
                _ => ("not_passing", wording.clone(), None),
            };
            let note = evaluation
                .filter(|e| e.state == ControlState::Passing)
                .and_then(|e| e.stored_facts().public_note);
            PublicControl {
                id: c.id,
                title: c.title,
                claim: c.claim,
                status,
                label,
                since,
                note,
            }
        })
        .collect();
    let today_start = now - now.rem_euclid(DAY);
    let audit_chain_daily_heads = store::daily_heads(&state.db, today_start, HEAD_DAYS)
        .await?
        .into_iter()
        .map(|(start, _, hash)| DailyHead {
            date: day(start),
            hash,
        })
        .collect();
    Ok(TrustView {
        generated_at: crate::clock::format_ms(now),
        controls,
        audit_chain_daily_heads,
        links: BTreeMap::from([
            ("subprocessors", "/trust/subprocessors"),
            ("security_txt", "/.well-known/security.txt"),
            ("disclosure_policy", "/security"),
            ("evidence_public_key", "/trust/evidence-key"),
        ]),
    })
}

#[derive(Template)]
#[template(path = "trust/index.html")]
struct TrustPage {
    view: TrustView,
}

fn cacheable(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response
}

async fn trust_get(State(state): State<AppState>, ctx: RequestCtx) -> AppResult<Response> {
    if let Err(wait) = state.trust_limiter.check_ip(ctx.client_ip.as_deref()) {
        return crate::disclosures::public::pages_limited(wait);
    }
    let page = TrustPage {
        view: view(&state, state.now()).await?,
    };
    Ok(cacheable(Html(page.render()?).into_response()))
}

async fn trust_json_get(State(state): State<AppState>, ctx: RequestCtx) -> AppResult<Response> {
    if let Err(wait) = state.trust_limiter.check_ip(ctx.client_ip.as_deref()) {
        return crate::disclosures::public::pages_limited(wait);
    }
    let view = view(&state, state.now()).await?;
    Ok(cacheable(axum::Json(view).into_response()))
}
