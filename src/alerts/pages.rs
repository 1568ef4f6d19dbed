//! Alert pages: the list with filters, the detail page with the evidence chart and the state
//! changes, and the detector settings (thresholds from config, false positives per detector).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::model::{AlertState, Detector, Thresholds};
use super::store::{self, Alert, ListFilter};
use crate::app::AppState;
use crate::chart::{Chart, Series, number};
use crate::clock::format_ms;
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};
use crate::web::Form;

pub fn routes() -> Vec<PortalRoute> {
    let read = Access::Rbac("alerts", "read");
    let write = Access::Rbac("alerts", "write");
    vec![
        PortalRoute::get("/alerts", read, alert_list_get),
        PortalRoute::get(
            "/alerts/settings",
            Access::Rbac("alert_settings", "read"),
            alert_settings_get,
        ),
        PortalRoute::get("/alerts/{id}", read, alert_detail_get),
        PortalRoute::post("/alerts/{id}/state", write, alert_state_post),
    ]
}

const PAGE_SIZE: i64 = 50;

struct RowView {
    id: String,
    short_id: String,
    opened: String,
    detector: &'static str,
    subject: String,
    summary: String,
    state: &'static str,
    occurrences: i64,
    incident_id: Option<String>,
}

#[derive(Template)]
#[template(path = "alerts/list.html")]
struct ListPage {
    shell: Shell,
    rows: Vec<RowView>,
    state: String,
    detector: String,
    q: String,
    states: Vec<(&'static str, &'static str)>,
    detectors: Vec<(&'static str, &'static str)>,
    total: i64,
    page: i64,
    pages: i64,
    prev_link: Option<String>,
    next_link: Option<String>,
    can_settings: bool,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    detector: String,
    #[serde(default)]
    q: String,
    page: Option<i64>,
}

fn row_view(a: &Alert) -> RowView {
    RowView {
        id: a.id.clone(),
        short_id: a.id.chars().take(8).collect(),
        opened: format_ms(a.opened_at),
        detector: a.detector.label(),
        subject: a.subject_label.clone(),
        summary: a.summary.clone(),
        state: a.state.label(),
        occurrences: a.occurrences,
        incident_id: a.incident_id.clone(),
    }
}

async fn alert_list_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<ListQuery>,
) -> AppResult<Html<String>> {
    let session = visitor.session()?;
    let page = query.page.unwrap_or(1).clamp(1, 100_000);
    let alert_state = if query.state.trim().is_empty() {
        None
    } else {
        Some(AlertState::parse(&query.state).map_err(AppError::BadRequest)?)
    };
    let detector = if query.detector.trim().is_empty() {
        None
    } else {
        Some(Detector::parse(&query.detector).ok_or_else(|| {
            AppError::BadRequest(format!(
                "“{}” is not a detector.",
                crate::web::clip(&query.detector, 40)
            ))
        })?)
    };
    let q = crate::web::clip(query.q.trim(), 100);
    let mut conn = state.db.pool.acquire().await?;
    let (alerts, total) = store::list(
        &mut conn,
        &ListFilter {
            state: alert_state,
            detector,
            search: q.clone(),
            limit: PAGE_SIZE,
            offset: (page - 1) * PAGE_SIZE,
        },
    )
    .await?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let link = |p: i64| {
        let mut url = url::form_urlencoded::Serializer::new(String::new());
        url.append_pair("state", &query.state)
            .append_pair("detector", &query.detector)
            .append_pair("q", &q)
            .append_pair("page", &p.to_string());
        format!("/alerts?{}", url.finish())
    };
    html(&ListPage {
        shell: Shell::new(&state, &visitor, "/alerts")?,
        rows: alerts.iter().map(row_view).collect(),
        state: query.state.clone(),
        detector: query.detector.clone(),
        q: q.clone(),
        states: AlertState::ALL
            .iter()
            .map(|s| (s.as_str(), s.label()))
            .collect(),
        detectors: Detector::ALL
            .iter()
            .map(|d| (d.as_str(), d.label()))
            .collect(),
        total,
        page,
        pages,
        prev_link: (page > 1).then(|| link(page - 1)),
        next_link: (page < pages).then(|| link(page + 1)),
        can_settings: state.authz.allows(&session.roles, "alert_settings", "read"),
    })
}

#[derive(Template)]
#[template(path = "alerts/detail.html")]
struct DetailPage {
    shell: Shell,
    alert: RowView,
    rule: String,
    metric: String,
    at: String,
    value: String,
    baseline: String,
    z_score: String,
    facts: Vec<(String, String)>,
    chart: Option<Chart>,
    chart_svg: String,
    state_changed: String,
    false_positive_reason: String,
    last_seen: String,
    can_write: bool,
    may_acknowledge: bool,
    may_close: bool,
}

/// The evidence series as a chart with the baseline drawn as a reference line.
pub fn evidence_chart(alert: &Alert) -> Option<Chart> {
    let e = &alert.evidence;
    if e.series.is_empty() {
        return None;
    }
    Some(Chart {
        id: "evidence".into(),
        title: format!("{} — {}", alert.detector.label(), e.metric),
        description: format!(
            "{} for {} over {} minutes up to {}; the firing minute's value was {}.",
            e.metric,
            alert.subject_label,
            e.series.len(),
            format_ms(e.at),
            number(e.value)
        ),
        x_label: "Minute (UTC)".into(),
        y_label: e.metric.clone(),
        x_labels: e
            .series
            .iter()
            .map(|(at, _)| {
                crate::clock::format_ms(*at)
                    .chars()
                    .skip(11)
                    .take(5)
                    .collect()
            })
            .collect(),
        series: vec![Series {
            name: e.metric.clone(),
            color: "#b91c1c",
            values: e.series.iter().map(|(_, v)| *v).collect(),
        }],
        reference: e.baseline_mean.map(|m| ("baseline mean".to_owned(), m)),
    })
}

async fn alert_detail_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> AppResult<Html<String>> {
    let session = visitor.session()?;
    let mut conn = state.db.pool.acquire().await?;
    let alert = store::find(&mut conn, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    drop(conn);
    let e = &alert.evidence;
    let chart = evidence_chart(&alert);
    html(&DetailPage {
        shell: Shell::new(&state, &visitor, "/alerts")?,
        rule: e.rule.clone(),
        metric: e.metric.clone(),
        at: format_ms(e.at),
        value: number(e.value),
        baseline: match (e.baseline_mean, e.baseline_sd) {
            (Some(m), Some(sd)) => {
                format!("mean {} (standard deviation {})", number(m), number(sd))
            }
            _ => "—".into(),
        },
        z_score: e.z_score.map(number).unwrap_or_else(|| "—".into()),
        facts: e.facts.clone(),
        chart_svg: chart.as_ref().map(Chart::svg).unwrap_or_default(),
        chart,
        state_changed: match (&alert.state_changed_at, &alert.state_changed_by) {
            (Some(at), Some(by)) => format!("{} by {by}", format_ms(*at)),
            _ => String::new(),
        },
        false_positive_reason: alert.false_positive_reason.clone().unwrap_or_default(),
        last_seen: format_ms(alert.last_seen_at),
        can_write: state.authz.allows(&session.roles, "alerts", "write"),
        may_acknowledge: alert.state.may_become(AlertState::Acknowledged),
        may_close: alert.state.may_become(AlertState::Resolved),
        alert: row_view(&alert),
    })
}

#[derive(Deserialize)]
struct StateForm {
    state: String,
    #[serde(default)]
    reason: String,
}

async fn alert_state_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<StateForm>,
) -> AppResult<Response> {
    let to = AlertState::parse(&form.state).map_err(AppError::BadRequest)?;
    let mut tx = state.db.begin().await?;
    super::change_state(
        &mut tx,
        &id,
        to,
        &form.reason,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/alerts/{id}")).into_response())
}

struct DetectorRow {
    id: &'static str,
    label: &'static str,
    total: i64,
    false_positives: i64,
}

#[derive(Template)]
#[template(path = "alerts/settings.html")]
struct SettingsPage {
    shell: Shell,
    thresholds: Vec<(&'static str, String, &'static str)>,
    detectors: Vec<DetectorRow>,
    hook_enabled: bool,
    minute_hours: i64,
}

async fn alert_settings_get(
    State(state): State<AppState>,
    visitor: Visitor,
) -> AppResult<Html<String>> {
    let mut conn = state.db.pool.acquire().await?;
    let counts = store::false_positives_by_detector(&mut conn).await?;
    let thresholds: &Thresholds = &state.config.alert_thresholds;
    html(&SettingsPage {
        shell: Shell::new(&state, &visitor, "/alerts")?,
        thresholds: thresholds.rows(),
        detectors: Detector::ALL
            .iter()
            .map(|d| {
                let (total, fp) = counts
                    .iter()
                    .find(|(name, _, _)| name == d.as_str())
                    .map(|(_, t, f)| (*t, *f))
                    .unwrap_or((0, 0));
                DetectorRow {
                    id: d.as_str(),
                    label: d.label(),
                    total,
                    false_positives: fp,
                }
            })
            .collect(),
        hook_enabled: !state.config.alertmanager_token.is_empty(),
        minute_hours: state.config.signal_minute_hours,
    })
}
