//! Portal pages of the questionnaire answer library: the list (search, pages, stale marks),
//! add, edit, delete, and the CSV export.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::answers::{self, Answer, AnswerInput, ValidAnswer};
use super::catalogue::CATALOGUE;
use super::model::ControlState;
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};
use crate::web::Form;

pub fn routes() -> Vec<PortalRoute> {
    vec![
        PortalRoute::get("/answers", Access::Rbac("answers", "read"), answer_list_get),
        PortalRoute::get(
            "/answers.csv",
            Access::Rbac("answers", "read"),
            answer_export_get,
        ),
        PortalRoute::get(
            "/answers/new",
            Access::Rbac("answers", "write"),
            answer_new_get,
        ),
        PortalRoute::post(
            "/answers",
            Access::Rbac("answers", "write"),
            answer_create_post,
        ),
        PortalRoute::get(
            "/answers/{id}/edit",
            Access::Rbac("answers", "write"),
            answer_edit_get,
        ),
        PortalRoute::post(
            "/answers/{id}",
            Access::Rbac("answers", "write"),
            answer_update_post,
        ),
        PortalRoute::post(
            "/answers/{id}/delete",
            Access::Rbac("answers", "write"),
            answer_delete_post,
        ),
    ]
}

const PAGE_SIZE: i64 = 25;

/// One answer in the list.
struct AnswerRow {
    answer: Answer,
    /// (control id, state label, state key) of each cited control.
    controls: Vec<(String, &'static str, &'static str)>,
    /// Cited controls failing now; not empty means stale.
    failing: Vec<String>,
}

fn row(answer: Answer, states: &BTreeMap<String, ControlState>) -> AnswerRow {
    let controls = answer
        .control_ids
        .iter()
        .map(|id| {
            let state = states.get(id).copied();
            (
                id.clone(),
                state.map_or("not evaluated", ControlState::label),
                state.map_or("no_data", ControlState::as_str),
            )
        })
        .collect();
    AnswerRow {
        failing: answer.failing_controls(states),
        controls,
        answer,
    }
}

#[derive(Template)]
#[template(path = "controls/answers.html")]
struct AnswerListPage {
    shell: Shell,
    rows: Vec<AnswerRow>,
    search: String,
    total: i64,
    stale: usize,
    page: i64,
    pages: i64,
    prev_link: Option<String>,
    next_link: Option<String>,
    can_write: bool,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    q: String,
    page: Option<i64>,
}

async fn answer_list_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<ListQuery>,
) -> AppResult<Html<String>> {
    if query.q.chars().count() > 200 {
        return Err(AppError::BadRequest("The search is too long.".into()));
    }
    let page = query.page.unwrap_or(1).max(1);
    let states = answers::control_states(&state.db).await?;
    let mut conn = state.db.pool.acquire().await?;
    let (list, total) =
        answers::list(&mut conn, query.q.trim(), (page - 1) * PAGE_SIZE, PAGE_SIZE).await?;
    drop(conn);
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let link = |p: i64| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair("q", query.q.trim())
            .append_pair("page", &p.to_string());
        format!("/answers?{}", s.finish())
    };
    let rows: Vec<AnswerRow> = list.into_iter().map(|a| row(a, &states)).collect();
    let session = visitor.session()?;
    html(&AnswerListPage {
        can_write: state.authz.allows(&session.roles, "answers", "write"),
        shell: Shell::new(&state, &visitor, "/answers")?,
        stale: rows.iter().filter(|r| !r.failing.is_empty()).count(),
        rows,
        search: query.q.trim().to_owned(),
        total,
        page,
        pages,
        prev_link: (page > 1).then(|| link(page - 1)),
        next_link: (page < pages).then(|| link(page + 1)),
    })
}

/// The whole library as CSV, with each answer's cited control states and its stale mark.
async fn answer_export_get(State(state): State<AppState>, visitor: Visitor) -> AppResult<Response> {
    let states = answers::control_states(&state.db).await?;
    let mut conn = state.db.pool.acquire().await?;
    let (list, total) = answers::list(&mut conn, "", 0, 0).await?;
    drop(conn);
    let body = answers::csv(&list, &states);
    crate::audit::append_alone(
        &state.db,
        state.now(),
        &visitor.ctx.meta(),
        crate::audit::AuditEvent::new(visitor.actor(), "answers.export", "answers")
            .detail("answers", total),
    )
    .await?;
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"security-questionnaire-answers.csv\""),
    );
    Ok(response)
}

#[derive(Template)]
#[template(path = "controls/answer_form.html")]
struct AnswerFormPage {
    shell: Shell,
    /// `None` for a new answer.
    id: Option<String>,
    number: i64,
    version: i64,
    input: AnswerInput,
    error: Option<String>,
    controls: Vec<(&'static str, &'static str)>,
}

fn form_page(
    state: &AppState,
    visitor: &Visitor,
    existing: Option<&Answer>,
    input: AnswerInput,
    error: Option<String>,
) -> AppResult<AnswerFormPage> {
    Ok(AnswerFormPage {
        shell: Shell::new(state, visitor, "/answers")?,
        id: existing.map(|a| a.id.clone()),
        number: existing.map_or(0, |a| a.number),
        version: existing.map_or(0, |a| a.version),
        input,
        error,
        controls: CATALOGUE.iter().map(|c| (c.id, c.title)).collect(),
    })
}

fn rejected(page: AnswerFormPage) -> AppResult<Response> {
    Ok((StatusCode::BAD_REQUEST, Html(page.render()?)).into_response())
}

async fn answer_new_get(
    State(state): State<AppState>,
    visitor: Visitor,
) -> AppResult<Html<String>> {
    html(&form_page(
        &state,
        &visitor,
        None,
        AnswerInput::default(),
        None,
    )?)
}

async fn answer_create_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(input): Form<AnswerInput>,
) -> AppResult<Response> {
    let valid = match ValidAnswer::parse(&input) {
        Ok(valid) => valid,
        Err(problem) => return rejected(form_page(&state, &visitor, None, input, Some(problem))?),
    };
    let mut tx = state.db.begin().await?;
    answers::create(
        &mut tx,
        &valid,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/answers").into_response())
}

async fn answer_edit_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> AppResult<Html<String>> {
    let mut conn = state.db.pool.acquire().await?;
    let answer = answers::find(&mut conn, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    drop(conn);
    let input = AnswerInput {
        question: answer.question.clone(),
        answer: answer.answer.clone(),
        controls: answer.control_ids.join(", "),
        evidence: answer.evidence.clone(),
    };
    html(&form_page(&state, &visitor, Some(&answer), input, None)?)
}

#[derive(Deserialize)]
struct UpdateForm {
    version: i64,
    #[serde(default)]
    question: String,
    #[serde(default)]
    answer: String,
    #[serde(default)]
    controls: String,
    #[serde(default)]
    evidence: String,
}

async fn answer_update_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<UpdateForm>,
) -> AppResult<Response> {
    let input = AnswerInput {
        question: form.question,
        answer: form.answer,
        controls: form.controls,
        evidence: form.evidence,
    };
    let mut tx = state.db.begin().await?;
    let existing = answers::find(&mut tx, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let valid = match ValidAnswer::parse(&input) {
        Ok(valid) => valid,
        Err(problem) => {
            drop(tx);
            return rejected(form_page(
                &state,
                &visitor,
                Some(&existing),
                input,
                Some(problem),
            )?);
        }
    };
    answers::update(
        &mut tx,
        &id,
        form.version,
        &valid,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/answers").into_response())
}

#[derive(Deserialize)]
struct DeleteForm {
    version: i64,
}

async fn answer_delete_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<DeleteForm>,
) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    answers::delete(
        &mut tx,
        &id,
        form.version,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/answers").into_response())
}
