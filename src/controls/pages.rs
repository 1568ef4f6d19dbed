//! The portal's control pages: the catalogue with each control's state, mappings, owner and a
//! history sparkline (`/controls`), one control with the facts and records behind its latest
//! result and its history (`/controls/{id}`), and "evaluate now".

use std::collections::BTreeMap;
use std::fmt::Write;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, Redirect};

use super::catalogue::{self, CATALOGUE};
use super::model::{Control, ControlState, Fact};
use super::store::{self, Evaluation};
use crate::app::AppState;
use crate::chart::escape;
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};

pub fn routes() -> Vec<PortalRoute> {
    vec![
        PortalRoute::get(
            "/controls",
            Access::Rbac("controls", "read"),
            control_list_get,
        ),
        PortalRoute::post(
            "/controls/evaluate",
            Access::Rbac("controls", "write"),
            control_evaluate_post,
        ),
        PortalRoute::get(
            "/controls/{id}",
            Access::Rbac("controls", "read"),
            control_detail_get,
        ),
    ]
}

/// Evaluations drawn in a sparkline.
const SPARK_POINTS: i64 = 48;
/// Evaluations listed on a control's page.
const HISTORY_ROWS: i64 = 100;

/// A control row of the catalogue.
struct ControlRow {
    control: &'static Control,
    state: ControlState,
    since: String,
    evaluated: String,
    summary: String,
    owner: String,
    sparkline: String,
}

#[derive(Template)]
#[template(path = "controls/list.html")]
struct ControlListPage {
    shell: Shell,
    rows: Vec<ControlRow>,
    counts: Vec<(&'static str, &'static str, usize)>,
    can_evaluate: bool,
    never_evaluated: bool,
}

/// A small inline SVG of a control's recent states, oldest left; every text escaped.
pub fn sparkline(control_id: &str, history_newest_first: &[Evaluation]) -> String {
    const W: f64 = 120.0;
    const H: f64 = 24.0;
    let points: Vec<&Evaluation> = history_newest_first.iter().rev().collect();
    let title = format!(
        "{control_id}: last {} evaluations, {} failing",
        points.len(),
        points
            .iter()
            .filter(|e| e.state == ControlState::Failing)
            .count()
    );
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"sparkline\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" \
         aria-label=\"{t}\" xmlns=\"http://www.w3.org/2000/svg\"><title>{t}</title>",
        t = escape(&title)
    );
    if points.is_empty() {
        s.push_str("</svg>");
        return s;
    }
    let step = if points.len() > 1 {
        (W - 4.0) / (points.len() - 1) as f64
    } else {
        0.0
    };
    let y = |state: ControlState| 2.0 + (H - 4.0) * (1.0 - state.level() / 3.0);
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{:.1},{:.1}", 2.0 + step * i as f64, y(e.state)))
        .collect();
    let _ = write!(
        s,
        "<polyline fill=\"none\" stroke=\"#64748b\" stroke-width=\"1.5\" points=\"{}\"/>",
        path.join(" ")
    );
    for (i, e) in points.iter().enumerate() {
        let color = match e.state {
            ControlState::Passing => "#15803d",
            ControlState::Failing => "#b91c1c",
            ControlState::NotApplicable => "#64748b",
            ControlState::NoData => "#b45309",
        };
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"{color}\"/>",
            2.0 + step * i as f64,
            y(e.state)
        );
    }
    s.push_str("</svg>");
    s
}

async fn control_list_get(
    State(state): State<AppState>,
    visitor: Visitor,
) -> AppResult<Html<String>> {
    let latest: BTreeMap<String, Evaluation> = store::latest_all(&state.db)
        .await?
        .into_iter()
        .map(|e| (e.control_id.clone(), e))
        .collect();
    let mut conn = state.db.pool.acquire().await?;
    let mut rows = Vec::new();
    for control in &CATALOGUE {
        let history = store::history(&mut conn, control.id, SPARK_POINTS).await?;
        let e = latest.get(control.id);
        rows.push(ControlRow {
            control,
            state: e.map_or(ControlState::NoData, |e| e.state),
            since: e
                .map(|e| crate::clock::format_ms(e.state_since))
                .unwrap_or_default(),
            evaluated: e
                .map(|e| crate::clock::format_ms(e.evaluated_at))
                .unwrap_or_else(|| "never".into()),
            summary: e
                .map(|e| e.summary.clone())
                .unwrap_or_else(|| "Not evaluated yet.".into()),
            owner: super::owner_label(&state.config, control),
            sparkline: sparkline(control.id, &history),
        });
    }
    drop(conn);
    let counts = [
        ControlState::Passing,
        ControlState::Failing,
        ControlState::NotApplicable,
        ControlState::NoData,
    ]
    .map(|s| {
        (
            s.as_str(),
            s.label(),
            rows.iter().filter(|r| r.state == s).count(),
        )
    })
    .to_vec();
    let session = visitor.session()?;
    html(&ControlListPage {
        can_evaluate: state.authz.allows(&session.roles, "controls", "write"),
        shell: Shell::new(&state, &visitor, "/controls")?,
        never_evaluated: latest.is_empty(),
        rows,
        counts,
    })
}

/// An offending record, linked to its page when it has one.
struct RecordLink {
    label: String,
    href: Option<String>,
}

fn record_link(raw: &str) -> RecordLink {
    let (kind, rest) = raw.split_once(':').unwrap_or(("", raw));
    let href = match kind {
        "key" => Some(format!("/keys/{rest}")),
        "staff" => Some(format!("/staff/{rest}")),
        "vendor" if !rest.starts_with("VND-") => Some(format!("/vendors/{rest}")),
        "finding" => Some(format!("/findings/{rest}")),
        "engagement" => Some(format!("/findings/engagements/{rest}")),
        "review" => Some(format!("/reviews/{rest}")),
        "job_run" | "backup" | "image" => Some("/jobs".to_owned()),
        "audit" => Some("/audit".to_owned()),
        // SLA clocks carry their subject's page.
        _ if rest.starts_with('/') => Some(rest.to_owned()),
        _ => None,
    };
    // Only relative portal paths of safe characters become links.
    let href = href.filter(|h| {
        h.starts_with('/')
            && !h.starts_with("//")
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c))
    });
    let label = match kind {
        "key" => format!("API key {rest}"),
        "staff" => format!("Staff account {rest}"),
        "vendor" => format!("Vendor {rest}"),
        "finding" => format!("Finding {rest}"),
        "engagement" => format!("Pentest engagement {rest}"),
        "review" => format!("Access-review campaign {rest}"),
        "image" => format!("Image record {rest}"),
        "backup" => format!("Backup {rest}"),
        "job_run" => format!("Job run {rest}"),
        "audit" => format!("Audit row {rest}"),
        "route" => format!("Route {rest}"),
        "policy" => format!("Policy: {rest}"),
        _ if rest.starts_with('/') => format!("{} clock of {rest}", kind.replace('_', " ")),
        _ => raw.to_owned(),
    };
    RecordLink { label, href }
}

/// One history row.
struct HistoryRow {
    state: ControlState,
    at: String,
    by: String,
    summary: String,
}

/// The history chart: the state of each evaluation, oldest left, with its data table.
struct HistoryChart {
    chart: crate::chart::Chart,
    svg: String,
}

#[derive(Template)]
#[template(path = "controls/detail.html")]
struct ControlDetailPage {
    shell: Shell,
    control: &'static Control,
    owner: String,
    latest: Option<Evaluation>,
    latest_at: String,
    latest_since: String,
    facts: Vec<Fact>,
    records: Vec<RecordLink>,
    public_note: Option<String>,
    history: Vec<HistoryRow>,
    chart: Option<HistoryChart>,
    can_evaluate: bool,
    failing_wording: String,
}

async fn control_detail_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> AppResult<Html<String>> {
    let control = catalogue::find(&id).ok_or(AppError::NotFound)?;
    let mut conn = state.db.pool.acquire().await?;
    let history = store::history(&mut conn, control.id, HISTORY_ROWS).await?;
    drop(conn);
    let latest = history.first().cloned();
    let stored = latest
        .as_ref()
        .map(Evaluation::stored_facts)
        .unwrap_or_default();
    let chart = (history.len() > 1).then(|| {
        let oldest_first: Vec<&Evaluation> =
            history.iter().take(SPARK_POINTS as usize).rev().collect();
        let chart = crate::chart::Chart {
            id: format!("history-{}", control.id),
            title: format!(
                "{}: state of the last {} evaluations",
                control.id,
                oldest_first.len()
            ),
            description: "3 is passing, 2 not applicable, 1 no data, 0 failing.".into(),
            x_label: "Evaluated at".into(),
            y_label: "State".into(),
            x_labels: oldest_first
                .iter()
                .map(|e| crate::clock::format_ms(e.evaluated_at))
                .collect(),
            series: vec![crate::chart::Series {
                name: "state".into(),
                color: "#1d4ed8",
                values: oldest_first.iter().map(|e| e.state.level()).collect(),
            }],
            reference: None,
        };
        HistoryChart {
            svg: chart.svg(),
            chart,
        }
    });
    let session = visitor.session()?;
    html(&ControlDetailPage {
        can_evaluate: state.authz.allows(&session.roles, "controls", "write"),
        shell: Shell::new(&state, &visitor, "/controls")?,
        control,
        owner: super::owner_label(&state.config, control),
        facts: stored.facts,
        records: stored.offending.iter().map(|r| record_link(r)).collect(),
        public_note: stored.public_note,
        history: history
            .iter()
            .map(|e| HistoryRow {
                state: e.state,
                at: crate::clock::format_ms(e.evaluated_at),
                by: e.evaluated_by.clone(),
                summary: e.summary.clone(),
            })
            .collect(),
        latest_at: latest
            .as_ref()
            .map(|e| crate::clock::format_ms(e.evaluated_at))
            .unwrap_or_default(),
        latest_since: latest
            .as_ref()
            .map(|e| crate::clock::format_ms(e.state_since))
            .unwrap_or_default(),
        latest,
        chart,
        failing_wording: state.config.trust_failing_wording.trim().to_owned(),
    })
}

/// "Evaluate now": every control, at once, audited as the person who asked.
async fn control_evaluate_post(
    State(state): State<AppState>,
    visitor: Visitor,
) -> AppResult<Redirect> {
    let actor = visitor.actor();
    let meta = visitor.ctx.meta();
    super::evaluate_all(&state, &actor, &meta)
        .await
        .map_err(AppError::Internal)?;
    crate::audit::append_alone(
        &state.db,
        state.now(),
        &meta,
        crate::audit::AuditEvent::new(actor, "controls.evaluate", "controls"),
    )
    .await?;
    Ok(Redirect::to("/controls"))
}
