//! The vendor detail page: the record, the onboarding gate with what is missing, state
//! changes, clocks, assessments with their conditions, DPAs, notices and objections.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Html;

use super::model;
use super::pages::{can_write, planned_from, when};
use super::{notice, store};
use crate::app::AppState;
use crate::clock::format_ms;
use crate::error::{AppError, AppResult};
use crate::portal::routes::Visitor;
use crate::portal::shell::{Shell, html};

struct AssessmentView {
    assessed: String,
    reviewer: String,
    result: &'static str,
    result_code: &'static str,
    score: String,
    tier: &'static str,
    next_due: String,
    notes: String,
    answers: Vec<(String, String, String)>,
}

struct DpaView {
    id: String,
    version: String,
    signed: String,
    expires: String,
    sha256: String,
    file_name: String,
    size: String,
    expired: bool,
}

#[derive(Template)]
#[template(path = "vendors/detail.html")]
struct DetailPage {
    shell: Shell,
    id: String,
    number: i64,
    name: String,
    legal_entity: String,
    website: String,
    purpose: String,
    state: &'static str,
    version: i64,
    categories: Vec<String>,
    subjects: Vec<String>,
    locations: String,
    outside: String,
    transfer: String,
    access: String,
    parent: Option<(String, String)>,
    children: Vec<(String, String)>,
    tier: &'static str,
    derived_tier: &'static str,
    override_reason: String,
    owner: String,
    contract: String,
    notes: String,
    customer_data: bool,
    notice: String,
    planned_from: String,
    activated: String,
    missing: Vec<String>,
    next_states: Vec<(&'static str, bool)>,
    can_activate: bool,
    assessments: Vec<AssessmentView>,
    conditions: Vec<(String, String, String, String, bool)>,
    dpas: Vec<DpaView>,
    /// (clock name, countdown) of the clocks still running.
    clocks: Vec<(String, crate::sla::pages::Countdown)>,
    clock_rows: Vec<(String, String, String)>,
    changes: Vec<(String, String, String)>,
    objections: Vec<(String, String, String, String)>,
    customers: Vec<(String, String)>,
    can_write: bool,
}

pub(crate) async fn vendor_detail_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> AppResult<Html<String>> {
    let now = state.now();
    let mut conn = state.db.pool.acquire().await?;
    let v = store::find(&mut conn, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let missing = super::gate(&mut conn, &v, now).await?;
    let parent = match &v.parent_id {
        Some(pid) => store::find(&mut conn, pid)
            .await?
            .map(|p| (p.id.clone(), p.label())),
        None => None,
    };
    let (all, _) = store::list(
        &mut conn,
        &store::VendorFilter {
            limit: 5000,
            ..Default::default()
        },
    )
    .await?;
    let children = all
        .iter()
        .filter(|c| c.parent_id.as_deref() == Some(id.as_str()))
        .map(|c| (c.id.clone(), c.label()))
        .collect();
    let assessments = store::assessments(&mut conn, &id)
        .await?
        .into_iter()
        .map(|a| AssessmentView {
            assessed: format_ms(a.assessed_at),
            reviewer: a.reviewer.clone(),
            result: a.result.label(),
            result_code: a.result.as_str(),
            score: format!("{:.1}", a.score),
            tier: a.risk_tier.as_str(),
            next_due: when(a.next_due_at),
            notes: a.notes.clone(),
            answers: a
                .answers
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| {
                            let s = |k: &str| i[k].as_str().unwrap_or_default().to_owned();
                            (s("question"), s("answer"), s("evidence"))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    let conditions = store::conditions(&mut conn, &id)
        .await?
        .into_iter()
        .map(|c| {
            let overdue = c.done_at.is_none() && c.due_at <= now;
            (
                c.id,
                c.text,
                notice::day(c.due_at),
                c.done_at
                    .map(|d| format!("done {} by {}", format_ms(d), c.done_by.unwrap_or_default()))
                    .unwrap_or_else(|| {
                        if overdue {
                            "overdue".into()
                        } else {
                            "open".into()
                        }
                    }),
                c.done_at.is_none(),
            )
        })
        .collect();
    let dpas = store::dpas(&mut conn, &id)
        .await?
        .into_iter()
        .map(|d| DpaView {
            expired: d.expires_at <= now,
            id: d.id,
            version: d.version,
            signed: notice::day(d.signed_at),
            expires: format_ms(d.expires_at),
            sha256: d.sha256,
            file_name: d.file_name,
            size: format!("{:.1} KiB", d.size_bytes as f64 / 1024.0),
        })
        .collect();
    let clocks = crate::sla::for_subject(&mut conn, &super::subject(&id)).await?;
    let clock_rows = clocks
        .iter()
        .map(|c| {
            (
                c.target.clone(),
                format_ms(c.due_at),
                c.state_at(now).as_str().to_owned(),
            )
        })
        .collect();
    let countdowns = clocks
        .iter()
        .filter(|c| c.stopped_at.is_none())
        .map(|c| (c.name.clone(), crate::sla::pages::Countdown::of(c, now)))
        .collect();
    let changes = notice::changes_of(&mut conn, &id)
        .await?
        .into_iter()
        .map(|c| (c.id, format_ms(c.at), c.summary))
        .collect();
    let objections = notice::objections(&mut conn, &id)
        .await?
        .into_iter()
        .map(|o| (format_ms(o.created_at), o.contact, o.reason, o.recorded_by))
        .collect();
    drop(conn);
    let (customers, _) = crate::customers::store::list(&state.db, "", 0, 1000, state.now())
        .await
        .unwrap_or_default();
    let customers = customers
        .into_iter()
        .map(|c| (c.customer.id.clone(), c.customer.name.clone()))
        .collect();
    let outside = model::outside_eea(&v.locations).join(", ");
    html(&DetailPage {
        shell: Shell::new(&state, &visitor, "/vendors")?,
        id: v.id.clone(),
        number: v.number,
        name: v.name.clone(),
        legal_entity: v.legal_entity.clone(),
        website: v.website.clone(),
        purpose: v.purpose.clone(),
        state: v.state.as_str(),
        version: v.version,
        categories: v
            .data_categories
            .iter()
            .map(|c| model::category_label(c).to_owned())
            .collect(),
        subjects: v
            .data_subjects
            .iter()
            .map(|s| model::subject_label(s).to_owned())
            .collect(),
        locations: v.locations.join(", "),
        outside,
        transfer: v.transfer.label(),
        access: model::ACCESS_LEVELS
            .iter()
            .find(|a| a.0 == v.access_level)
            .map_or(v.access_level.clone(), |a| a.1.to_owned()),
        parent,
        children,
        tier: v.risk_tier().as_str(),
        derived_tier: v.derived_tier().as_str(),
        override_reason: v.risk_override_reason.clone().unwrap_or_default(),
        owner: v.owner_email.clone(),
        contract: match (&v.contract_start, &v.contract_end) {
            (None, None) => String::new(),
            (s, e) => format!(
                "{} – {}",
                s.clone().unwrap_or_default(),
                e.clone().unwrap_or_else(|| "open-ended".into())
            ),
        },
        notes: v.notes.clone(),
        customer_data: v.handles_customer_data(),
        notice: match (v.notice_started_at, v.notice_ends_at) {
            (Some(s), Some(e)) => format!("{} → {}", format_ms(s), format_ms(e)),
            _ => String::new(),
        },
        planned_from: planned_from(&v),
        activated: when(v.activated_at),
        can_activate: v.state == model::State::Approved,
        missing,
        next_states: v
            .state
            .next()
            .iter()
            .filter(|s| **s != model::State::Active)
            .map(|s| (s.as_str(), s.is_destructive()))
            .collect(),
        assessments,
        conditions,
        dpas,
        clocks: countdowns,
        clock_rows,
        changes,
        objections,
        customers,
        can_write: can_write(&state, &visitor)?,
    })
}
