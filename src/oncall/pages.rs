//! The On-call page: who is on call now, the rotation, upcoming shifts and overrides; admins
//! change the rotation and add or remove overrides.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::model::{Override, on_call_at};
use super::{OnCallError, RotationInput, store};
use crate::app::AppState;
use crate::clock::{Millis, format_ms};
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};
use crate::web::Form;

pub fn routes() -> Vec<PortalRoute> {
    vec![
        PortalRoute::get("/oncall", Access::Rbac("oncall", "read"), oncall_get),
        PortalRoute::post(
            "/oncall/rotation",
            Access::Rbac("oncall", "write"),
            oncall_rotation_post,
        ),
        PortalRoute::post(
            "/oncall/overrides",
            Access::Rbac("oncall", "write"),
            oncall_override_post,
        ),
        PortalRoute::post(
            "/oncall/overrides/{id}/remove",
            Access::Rbac("oncall", "write"),
            oncall_override_remove_post,
        ),
    ]
}

impl From<OnCallError> for AppError {
    fn from(err: OnCallError) -> Self {
        match err {
            OnCallError::Invalid(message) => {
                AppError::BadRequest(format!("{message} Nothing was changed."))
            }
            OnCallError::Db(err) => err.into(),
        }
    }
}

struct ShiftView {
    person: String,
    from: String,
    until: String,
    via_override: bool,
}

struct OverrideView {
    id: String,
    person: String,
    from: String,
    until: String,
    reason: String,
    created_by: String,
}

#[derive(Template)]
#[template(path = "oncall/page.html")]
struct OnCallPage {
    shell: Shell,
    configured: bool,
    now_person: String,
    now_until: String,
    escalation: String,
    members: Vec<String>,
    members_text: String,
    handoff: String,
    timezone: String,
    escalation_email: String,
    shifts: Vec<ShiftView>,
    overrides: Vec<OverrideView>,
    can_write: bool,
    notice: Option<String>,
}

/// The next shifts from `now` (handoffs and override boundaries), at most `count`.
fn upcoming_shifts(
    rotation: &super::model::Rotation,
    overrides: &[Override],
    now: Millis,
    count: usize,
) -> Vec<(String, Millis, Millis, bool)> {
    let mut shifts = Vec::new();
    let mut at = now;
    while shifts.len() < count {
        let Some(shift) = on_call_at(rotation, overrides, at) else {
            break;
        };
        // An override may start before this shift's end: cut the shift there.
        let until = overrides
            .iter()
            .filter(|o| o.from_at > at && o.from_at < shift.until)
            .map(|o| o.from_at)
            .min()
            .unwrap_or(shift.until);
        shifts.push((shift.staff_id, at, until, shift.override_id.is_some()));
        if until <= at {
            break;
        }
        at = until;
    }
    shifts
}

async fn oncall_get(
    State(state): State<AppState>,
    visitor: Visitor,
    axum::extract::Query(query): axum::extract::Query<NoticeQuery>,
) -> AppResult<Html<String>> {
    let session = visitor.session()?;
    let now = state.now();
    let mut conn = state.db.pool.acquire().await?;
    let rotation = store::rotation(&mut conn).await?;
    let current = super::on_call(&mut conn, now).await?;
    let records = store::current_overrides(&mut conn, now).await?;
    let label = async |conn: &mut sqlx::AnyConnection, id: &str| -> AppResult<String> {
        Ok(super::person(conn, id)
            .await?
            .map(|p| format!("{} <{}>", p.name, p.email))
            .unwrap_or_else(|| "(account removed)".into()))
    };
    let mut overrides = Vec::new();
    for record in &records {
        overrides.push(OverrideView {
            id: record.over.id.clone(),
            person: label(&mut conn, &record.over.staff_id).await?,
            from: format_ms(record.over.from_at),
            until: format_ms(record.over.to_at),
            reason: record.reason.clone(),
            created_by: record.created_by.clone(),
        });
    }
    let mut shifts = Vec::new();
    let (mut members, mut members_text, mut handoff, mut timezone, mut escalation_email) = (
        Vec::new(),
        String::new(),
        "Mon 09:00".to_owned(),
        "UTC".to_owned(),
        String::new(),
    );
    if let Some(rotation) = &rotation {
        let plain: Vec<Override> = records.iter().map(|r| r.over.clone()).collect();
        for (id, from, until, via_override) in upcoming_shifts(rotation, &plain, now, 8) {
            shifts.push(ShiftView {
                person: label(&mut conn, &id).await?,
                from: format_ms(from),
                until: format_ms(until),
                via_override,
            });
        }
        let people = super::members(&mut conn, rotation).await?;
        members = people
            .iter()
            .map(|p| format!("{} <{}>", p.name, p.email))
            .collect();
        members_text = people
            .iter()
            .map(|p| p.email.clone())
            .collect::<Vec<_>>()
            .join(", ");
        handoff = rotation.handoff.label();
        timezone = rotation.zone.name().to_owned();
        if let Some(id) = &rotation.escalation {
            escalation_email = super::person(&mut conn, id)
                .await?
                .map(|p| p.email)
                .unwrap_or_default();
        }
    }
    let notice = match query.notice.as_deref() {
        Some("rotation") => Some("The rotation was saved.".to_owned()),
        Some("override_added") => Some("The override was added.".to_owned()),
        Some("override_removed") => Some("The override was removed.".to_owned()),
        _ => None,
    };
    html(&OnCallPage {
        shell: Shell::new(&state, &visitor, "/oncall")?,
        configured: rotation.is_some(),
        now_person: current
            .as_ref()
            .map(|c| format!("{} <{}>", c.person.name, c.person.email))
            .unwrap_or_else(|| "nobody: no rotation is set".into()),
        now_until: current
            .as_ref()
            .map(|c| format_ms(c.until))
            .unwrap_or_default(),
        escalation: current
            .as_ref()
            .and_then(|c| c.escalation.as_ref())
            .map(|p| format!("{} <{}>", p.name, p.email))
            .unwrap_or_else(|| "none".into()),
        members,
        members_text,
        handoff,
        timezone,
        escalation_email,
        shifts,
        overrides,
        can_write: state.authz.allows(&session.roles, "oncall", "write"),
        notice,
    })
}

#[derive(Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

#[derive(Deserialize)]
struct RotationForm {
    members: String,
    handoff: String,
    timezone: String,
    #[serde(default)]
    escalation: String,
}

async fn oncall_rotation_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<RotationForm>,
) -> AppResult<Response> {
    let emails: Vec<String> = form
        .members
        .split([',', '\n'])
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    let mut tx = state.db.begin().await?;
    super::set_rotation(
        &mut tx,
        &RotationInput {
            member_emails: &emails,
            handoff: &form.handoff,
            timezone: &form.timezone,
            escalation_email: Some(form.escalation.as_str()),
        },
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/oncall?notice=rotation").into_response())
}

#[derive(Deserialize)]
struct OverrideForm {
    email: String,
    from: String,
    until: String,
    #[serde(default)]
    reason: String,
}

/// A `datetime-local` value (`2026-12-24T09:00`) read in the rotation's zone.
fn parse_local(raw: &str, zone: Tz) -> Result<Millis, AppError> {
    let naive = NaiveDateTime::parse_from_str(raw.trim(), "%Y-%m-%dT%H:%M")
        .map_err(|_| AppError::BadRequest(format!("`{raw}` is not a date and time.")))?;
    zone.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
        .ok_or_else(|| AppError::BadRequest(format!("{raw} does not exist in {zone}.")))
}

async fn oncall_override_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<OverrideForm>,
) -> AppResult<Response> {
    let now = state.now();
    let mut tx = state.db.begin().await?;
    let zone = store::rotation(&mut tx)
        .await?
        .map(|r| r.zone)
        .ok_or_else(|| AppError::BadRequest("Set up the rotation first.".into()))?;
    let from = parse_local(&form.from, zone)?;
    let until = parse_local(&form.until, zone)?;
    super::add_override(
        &mut tx,
        &form.email,
        from,
        until,
        &form.reason,
        &visitor.actor(),
        &visitor.ctx.meta(),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/oncall?notice=override_added").into_response())
}

#[derive(Deserialize)]
struct ConfirmForm {
    #[serde(default)]
    confirm: String,
}

async fn oncall_override_remove_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> AppResult<Response> {
    if form.confirm != "yes" {
        return Err(AppError::BadRequest(
            "Tick the confirmation box to remove the override. Nothing was changed.".into(),
        ));
    }
    let mut tx = state.db.begin().await?;
    super::remove_override(
        &mut tx,
        &id,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/oncall?notice=override_removed").into_response())
}
