//! The staff actions on a report (reply, internal note, state change, severity and
//! assignee, open an incident): each a form post that runs one operation in one
//! transaction and returns to the report.

use axum::extract::{Multipart, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::Change;
use super::model::State as ReportState;
use super::pages::settings;
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::findings::model::Severity;
use crate::portal::routes::Visitor;
use crate::web::Form;

/// Files a staff member adds to a report (a patch, a log, a reproduction): checked by content
/// and sealed like the researcher's, listed on the report as uploaded by that person, and
/// never shown on the researcher's status page.
pub(super) async fn attach_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    mut multipart: Multipart,
) -> AppResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    super::store::find(&mut conn, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    drop(conn);
    let (_, files) = super::public::read_multipart(&mut multipart).await?;
    if files.is_empty() {
        return Err(AppError::BadRequest(
            "Choose at least one file to attach. Nothing was added.".into(),
        ));
    }
    let checked = super::attachments::check(files)?;
    let now = state.now();
    let actor = visitor.actor();
    let mut tx = state.db.begin().await?;
    let stored = super::attachments::store(
        &mut tx,
        &state.blobs,
        &state.keyring,
        &id,
        checked,
        &actor,
        now,
    )
    .await?;
    for file in &stored {
        crate::audit::append(
            &mut tx,
            now,
            &visitor.ctx.meta(),
            crate::audit::AuditEvent::new(
                actor.as_str(),
                "disclosure.attachment_add",
                format!("disclosure:{id}"),
            )
            .detail("attachment", file.id.as_str())
            .detail("file_name", file.file_name.as_str())
            .detail("bytes", file.bytes)
            .detail("sha256", file.sha256.as_str()),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(back(&id))
}

fn back(id: &str) -> Response {
    Redirect::to(&format!("/disclosures/{id}")).into_response()
}

#[derive(Deserialize)]
pub(super) struct MessageForm {
    #[serde(default)]
    body: String,
}

pub(super) async fn reply_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<MessageForm>,
) -> AppResult<Response> {
    let settings = settings(&state);
    let mut tx = state.db.begin().await?;
    super::reply(
        &mut tx,
        &settings,
        &id,
        &form.body,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(back(&id))
}

pub(super) async fn note_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<MessageForm>,
) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    super::note(
        &mut tx,
        &id,
        &form.body,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(back(&id))
}

#[derive(Deserialize)]
pub(super) struct StateForm {
    version: i64,
    state: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    duplicate_of: String,
}

pub(super) async fn state_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<StateForm>,
) -> AppResult<Response> {
    let to = ReportState::parse(&form.state).map_err(AppError::BadRequest)?;
    let settings = settings(&state);
    let mut tx = state.db.begin().await?;
    super::transition(
        &mut tx,
        &settings,
        &id,
        form.version,
        to,
        &Change {
            message: form.message,
            duplicate_of: form.duplicate_of,
        },
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(back(&id))
}

#[derive(Deserialize)]
pub(super) struct UpdateForm {
    version: i64,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    assignee: String,
}

pub(super) async fn update_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<UpdateForm>,
) -> AppResult<Response> {
    let severity = match form.severity.trim() {
        "" | "unrated" => None,
        raw => Some(Severity::parse(raw).map_err(AppError::BadRequest)?),
    };
    let mut tx = state.db.begin().await?;
    let assignee_id = match form.assignee.trim() {
        "" => None,
        email => Some(
            crate::staff::store::find_by_email(&mut *tx, &email.to_lowercase())
                .await?
                .map(|s| s.id)
                .ok_or_else(|| {
                    AppError::BadRequest(format!(
                        "Nobody on the staff has the address “{}”. Nothing was changed.",
                        crate::web::clip(email, 254)
                    ))
                })?,
        ),
    };
    super::update(
        &mut tx,
        &id,
        form.version,
        severity,
        assignee_id,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(back(&id))
}

#[derive(Deserialize)]
pub(super) struct VersionForm {
    version: i64,
}

pub(super) async fn incident_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<VersionForm>,
) -> AppResult<Response> {
    let settings = settings(&state);
    let mut tx = state.db.begin().await?;
    let d = super::open_incident(
        &mut tx,
        &settings,
        &id,
        form.version,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    match d.incident_id {
        Some(incident) => Ok(Redirect::to(&format!("/incidents/{incident}")).into_response()),
        None => Ok(back(&id)),
    }
}
