//! What is recorded on the vendor page: assessments (questionnaire form), conditions, DPA uploads (multipart, own body limit) and downloads (always an attachment),
//! customer objections; plus the questionnaire editor and the subscriber list.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::assess::{AnswerInput, AssessmentInput};
use super::dpa::{DpaInput, DpaVault};
use super::model::{MAX_DPA_BYTES, Outcome};
use super::pages::{can_write, settings};
use super::{notice, questions, store};
use crate::app::AppState;
use crate::audit::{self, AuditEvent};
use crate::clock::format_ms;
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};
use crate::web::Form;

const UPLOAD_BODY_LIMIT: usize = MAX_DPA_BYTES + 64 * 1024;

pub fn routes() -> Vec<PortalRoute> {
    let read = Access::Rbac("vendors", "read");
    let write = Access::Rbac("vendors", "write");
    vec![
        PortalRoute::get("/vendors/questions", read, question_list_get),
        PortalRoute::post("/vendors/questions", write, question_add_post),
        PortalRoute::post("/vendors/questions/{qid}", write, question_edit_post),
        PortalRoute::get("/vendors/subscribers", read, subscriber_list_get),
        PortalRoute::post("/vendors/subscribers", write, subscriber_add_post),
        PortalRoute::get("/vendors/{id}/assess", write, assess_get),
        PortalRoute::post("/vendors/{id}/assessments", write, assess_post),
        PortalRoute::post(
            "/vendors/{id}/conditions/{cid}/done",
            write,
            condition_done_post,
        ),
        PortalRoute::post("/vendors/{id}/dpas", write, dpa_upload_post)
            .with_body_limit(UPLOAD_BODY_LIMIT),
        PortalRoute::get("/vendors/{id}/dpas/{dpa_id}", read, dpa_download_get),
        PortalRoute::post("/vendors/{id}/objections", write, objection_post),
    ]
}

#[derive(Template)]
#[template(path = "vendors/assess.html")]
struct AssessPage {
    shell: Shell,
    id: String,
    number: i64,
    name: String,
    tier: &'static str,
    months: i64,
    questions: Vec<questions::Question>,
    results: Vec<(&'static str, &'static str)>,
}

async fn assess_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> AppResult<Html<String>> {
    let mut conn = state.db.pool.acquire().await?;
    let v = store::find(&mut conn, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let questions = questions::list(&mut conn, true).await?;
    html(&AssessPage {
        shell: Shell::new(&state, &visitor, "/vendors")?,
        id: v.id.clone(),
        number: v.number,
        name: v.name.clone(),
        tier: v.risk_tier().as_str(),
        months: state.config.vendor_reassessment_months[v.risk_tier().index()],
        questions,
        results: Outcome::ALL
            .iter()
            .map(|o| (o.as_str(), o.label()))
            .collect(),
    })
}

async fn assess_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> AppResult<Response> {
    let now = state.now();
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let mut answers = Vec::new();
    for (key, value) in &form {
        if let Some(qid) = key.strip_prefix("answer_") {
            answers.push(AnswerInput {
                question_id: qid.to_owned(),
                answer: value.clone(),
                evidence: field(&format!("evidence_{qid}")),
            });
        }
    }
    let input = AssessmentInput {
        answers,
        result: field("result"),
        assessed_at: crate::web::datetime_local_utc(&field("assessed_at"), now, "assessment date")?,
        notes: field("notes"),
        conditions: field("conditions"),
    };
    let mut tx = state.db.begin().await?;
    super::assess::record(
        &mut tx,
        &settings(&state),
        &id,
        &input,
        &visitor.actor(),
        &visitor.ctx.meta(),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/vendors/{id}")).into_response())
}

async fn condition_done_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((id, cid)): Path<(String, String)>,
) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    super::assess::close_condition(
        &mut tx,
        &id,
        &cid,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/vendors/{id}")).into_response())
}

fn unreadable(err: axum::extract::multipart::MultipartError) -> AppError {
    AppError::BadRequest(format!(
        "The form could not be read ({}). Nothing was changed.",
        err.body_text()
    ))
}

/// A `YYYY-MM-DD` date as midnight UTC.
fn date_ms(raw: &str, what: &str) -> AppResult<crate::clock::Millis> {
    chrono::NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| {
            AppError::BadRequest(format!(
                "The {what} “{}” is not a date like 2027-01-31. Nothing was changed.",
                raw.trim()
            ))
        })
}

async fn dpa_upload_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    mut multipart: Multipart,
) -> AppResult<Response> {
    let mut input = DpaInput::default();
    let (mut signed, mut expires) = (String::new(), String::new());
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "document" {
            let file_name = field.file_name().unwrap_or_default().to_owned();
            let bytes = field.bytes().await.map_err(unreadable)?;
            if !file_name.is_empty() || !bytes.is_empty() {
                input.file = Some((file_name, bytes.to_vec()));
            }
            continue;
        }
        let text = field.text().await.map_err(unreadable)?;
        match name.as_str() {
            "version" => input.version = text,
            "signed_on" => signed = text,
            "expires_on" => expires = text,
            _ => {}
        }
    }
    input.signed_at = date_ms(&signed, "signing date")?;
    input.expires_at = date_ms(&expires, "expiry or review date")?;
    let mut tx = state.db.begin().await?;
    super::dpa::upload(
        &mut tx,
        &settings(&state),
        DpaVault {
            blobs: &state.blobs,
            keyring: &state.keyring,
        },
        &id,
        &input,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/vendors/{id}")).into_response())
}

async fn dpa_download_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((id, dpa_id)): Path<(String, String)>,
) -> AppResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    let (dpa, bytes) = super::dpa::document(
        &mut conn,
        DpaVault {
            blobs: &state.blobs,
            keyring: &state.keyring,
        },
        &dpa_id,
    )
    .await?;
    if dpa.vendor_id != id {
        return Err(AppError::NotFound);
    }
    audit::append(
        &mut conn,
        state.now(),
        &visitor.ctx.meta(),
        AuditEvent::new(
            visitor.actor(),
            "vendor.dpa_download",
            format!("vendor:{id}"),
        )
        .detail("dpa", dpa.id.as_str()),
    )
    .await?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        dpa.file_name.replace(['"', '\\'], "")
    );
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

#[derive(Deserialize)]
struct ObjectionForm {
    change_id: String,
    #[serde(default)]
    customer_id: String,
    contact: String,
    reason: String,
}

async fn objection_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<ObjectionForm>,
) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    notice::object(
        &mut tx,
        &id,
        &form.change_id,
        Some(form.customer_id.trim()).filter(|c| !c.is_empty()),
        &form.contact,
        &form.reason,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/vendors/{id}")).into_response())
}

#[derive(Template)]
#[template(path = "vendors/questions.html")]
struct QuestionsPage {
    shell: Shell,
    questions: Vec<questions::Question>,
    can_write: bool,
}

async fn question_list_get(
    State(state): State<AppState>,
    visitor: Visitor,
) -> AppResult<Html<String>> {
    let mut conn = state.db.pool.acquire().await?;
    html(&QuestionsPage {
        shell: Shell::new(&state, &visitor, "/vendors")?,
        questions: questions::list(&mut conn, false).await?,
        can_write: can_write(&state, &visitor)?,
    })
}

#[derive(Deserialize)]
struct QuestionForm {
    text: String,
    weight: i64,
    #[serde(default)]
    active: String,
}

async fn question_add_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<QuestionForm>,
) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    questions::add(
        &mut tx,
        &form.text,
        form.weight,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/vendors/questions").into_response())
}

async fn question_edit_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(qid): Path<String>,
    Form(form): Form<QuestionForm>,
) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    questions::edit(
        &mut tx,
        &qid,
        &form.text,
        form.weight,
        form.active == "yes",
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/vendors/questions").into_response())
}

#[derive(Template)]
#[template(path = "vendors/subscribers.html")]
struct SubscribersPage {
    shell: Shell,
    rows: Vec<(String, String, String)>,
    customers: Vec<(String, String)>,
    can_write: bool,
}

async fn subscriber_list_get(
    State(state): State<AppState>,
    visitor: Visitor,
) -> AppResult<Html<String>> {
    let mut conn = state.db.pool.acquire().await?;
    let rows = notice::subscribers(&mut conn)
        .await?
        .into_iter()
        .map(|s| {
            let status = match (s.confirmed_at, s.unsubscribed_at) {
                (_, Some(at)) => format!("unsubscribed {}", format_ms(at)),
                (Some(at), None) => format!("confirmed {}", format_ms(at)),
                (None, None) => "awaiting confirmation".to_owned(),
            };
            let source = if s.customer_id.is_some() {
                "customer record"
            } else {
                "public form"
            };
            (s.email, source.to_owned(), status)
        })
        .collect();
    drop(conn);
    let (customers, _) = crate::customers::store::list(&state.db, "", 0, 1000, state.now())
        .await
        .unwrap_or_default();
    html(&SubscribersPage {
        shell: Shell::new(&state, &visitor, "/vendors")?,
        rows,
        customers: customers
            .into_iter()
            .map(|c| (c.customer.id.clone(), c.customer.name.clone()))
            .collect(),
        can_write: can_write(&state, &visitor)?,
    })
}

#[derive(Deserialize)]
struct SubscriberForm {
    customer_id: String,
}

async fn subscriber_add_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<SubscriberForm>,
) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    notice::subscribe_customer(
        &mut tx,
        form.customer_id.trim(),
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/vendors/subscribers").into_response())
}
