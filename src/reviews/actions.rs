//! The portal's changes to a campaign: a decision on one item, bulk decisions after a
//! confirmation page, assignment, sign-off, and the CSV export.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::items::{self, Item};
use super::model::{Decision, Execution};
use super::pages::{DetailQuery, ctx, me, parse_filter, refusal};
use super::store;
use super::{DecisionInput, ReviewError, Settings};
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::portal::routes::Visitor;
use crate::portal::shell::{Shell, html};
use crate::web::Form;

#[derive(Deserialize)]
pub(super) struct DecisionForm {
    decision: String,
    #[serde(default)]
    justification: String,
    /// Comma-separated scopes to drop (modify); checkboxes `drop.<scope>` add to it.
    #[serde(default)]
    drop: String,
    #[serde(flatten)]
    rest: HashMap<String, String>,
}

impl DecisionForm {
    fn input(&self) -> AppResult<DecisionInput> {
        let decision = Decision::parse(&self.decision).map_err(AppError::BadRequest)?;
        let mut drop: Vec<String> = self
            .drop
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        drop.extend(
            self.rest
                .keys()
                .filter_map(|k| k.strip_prefix("drop."))
                .map(str::to_owned),
        );
        Ok(DecisionInput {
            decision,
            justification: self.justification.clone(),
            drop,
        })
    }
}

pub(super) async fn review_decision_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((id, item)): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> AppResult<Response> {
    let input = form.input()?;
    let settings = Settings::from_config(&state.config);
    let me = me(&visitor)?;
    let back = format!("/reviews/{id}");
    match super::decide(&ctx(&state, &settings, &visitor), &id, &item, &me, &input).await {
        Ok(decided) if decided.execution() == Execution::Failed => {
            Ok(Redirect::to(&format!("/reviews/{id}?notice=failed&status=failed")).into_response())
        }
        Ok(_) => Ok(Redirect::to(&format!("/reviews/{id}?notice=decided")).into_response()),
        Err(err) => refusal(&state, &visitor, &back, err),
    }
}

#[derive(Deserialize)]
pub(super) struct BulkForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    flag: String,
    #[serde(default)]
    q: String,
    decision: String,
    #[serde(default)]
    justification: String,
    #[serde(default)]
    confirm: String,
}

#[derive(Template)]
#[template(path = "reviews/bulk_confirm.html")]
struct BulkConfirmPage {
    shell: Shell,
    campaign_id: String,
    quarter: String,
    kind: String,
    flag: String,
    q: String,
    decision: String,
    justification: String,
    count: i64,
    sample: Vec<(i64, String, String)>,
}

/// Upper bound of items one bulk decision covers.
const BULK_MAX: i64 = 1000;

pub(super) async fn review_bulk_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<BulkForm>,
) -> AppResult<Response> {
    let decision = Decision::parse(&form.decision).map_err(AppError::BadRequest)?;
    if decision == Decision::Modify {
        return Err(AppError::BadRequest(
            "Bulk decisions keep or revoke; modify each key on its own.".into(),
        ));
    }
    let me = me(&visitor)?;
    let filter = parse_filter(
        &DetailQuery {
            kind: form.kind.clone(),
            status: "open".into(),
            flag: form.flag.clone(),
            mine: "1".into(),
            q: form.q.clone(),
            page: None,
            notice: None,
        },
        &me,
    )?;
    let back = format!("/reviews/{id}");
    let mut conn = state.db.pool.acquire().await?;
    let campaign = store::find_campaign(&mut conn, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let (items, _) = items::page(&mut conn, &id, &filter, BULK_MAX, 0).await?;
    drop(conn);
    let items: Vec<Item> = items
        .into_iter()
        .filter(|i| super::check_may_decide(&campaign, i, &me).is_ok())
        .collect();
    if form.confirm != "yes" {
        if !campaign.is_open() {
            return refusal(
                &state,
                &visitor,
                &back,
                ReviewError::Conflict(format!(
                    "The {} access review is signed off and read-only.",
                    campaign.quarter
                )),
            );
        }
        return Ok(html(&BulkConfirmPage {
            shell: Shell::new(&state, &visitor, "/reviews")?,
            campaign_id: id,
            quarter: campaign.quarter,
            kind: form.kind,
            flag: form.flag,
            q: form.q,
            decision: decision.as_str().to_owned(),
            justification: form.justification,
            count: items.len() as i64,
            sample: items
                .iter()
                .take(20)
                .map(|i| (i.number, i.subject_label.clone(), i.flags.clone()))
                .collect(),
        })?
        .into_response());
    }
    let settings = Settings::from_config(&state.config);
    let ctx = ctx(&state, &settings, &visitor);
    let input = DecisionInput {
        decision,
        justification: form.justification.clone(),
        drop: Vec::new(),
    };
    for item in &items {
        if let Err(err) = super::decide(&ctx, &id, &item.id, &me, &input).await {
            return refusal(&state, &visitor, &back, err);
        }
    }
    Ok(Redirect::to(&format!("/reviews/{id}?notice=bulk&mine=1")).into_response())
}

#[derive(Deserialize)]
pub(super) struct AssignForm {
    reviewer: String,
}

pub(super) async fn review_assign_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((id, item)): Path<(String, String)>,
    Form(form): Form<AssignForm>,
) -> AppResult<Response> {
    let settings = Settings::from_config(&state.config);
    let back = format!("/reviews/{id}");
    match super::assign(
        &ctx(&state, &settings, &visitor),
        &id,
        &item,
        &form.reviewer,
        &visitor.actor(),
    )
    .await
    {
        Ok(()) => Ok(Redirect::to(&format!("/reviews/{id}?notice=assigned")).into_response()),
        Err(err) => refusal(&state, &visitor, &back, err),
    }
}

#[derive(Deserialize)]
pub(super) struct SignOffForm {
    #[serde(default)]
    confirm: String,
}

pub(super) async fn review_sign_off_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<SignOffForm>,
) -> AppResult<Response> {
    if form.confirm != "yes" {
        return Err(AppError::BadRequest(
            "Tick the confirmation box to sign the campaign off. Nothing was changed.".into(),
        ));
    }
    let settings = Settings::from_config(&state.config);
    let email = visitor.session()?.email.clone();
    let back = format!("/reviews/{id}");
    match super::sign_off(&ctx(&state, &settings, &visitor), &id, &email).await {
        Ok(_) => Ok(Redirect::to(&format!("/reviews/{id}?notice=signed_off")).into_response()),
        Err(err) => refusal(&state, &visitor, &back, err),
    }
}

pub(super) async fn review_export_get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    let campaign = store::find_campaign(&mut conn, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let items = items::all_items(&mut conn, &id).await?;
    drop(conn);
    let body = super::csv(&items);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"access-review-{}.csv\"",
                    campaign.quarter
                ),
            ),
        ],
        body,
    )
        .into_response())
}
