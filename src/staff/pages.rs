//! Staff administration: list with search and filters, invite, detail, grant and revoke
//! roles, disable and enable, reset a person's MFA. Every change is audited in its own
//! transaction, guarded by an optimistic version so concurrent edits cannot overwrite each
//! other, and the last enabled admin can never be removed.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::model::{DisplayName, Email, Role};
use super::store::{self, Staff, StaffFilter};
use crate::app::AppState;
use crate::audit::{self, AuditEvent};
use crate::authn::{links, session};
use crate::clock::{HOUR, format_ms};
use crate::db::{Tx, is_unique_violation};
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};
use crate::web::Form;

pub fn routes() -> Vec<PortalRoute> {
    let read = Access::Rbac("staff", "read");
    let write = Access::Rbac("staff", "write");
    vec![
        PortalRoute::get("/staff", read, staff_list_get),
        PortalRoute::get("/staff/new", write, staff_new_get),
        PortalRoute::post("/staff", write, staff_create_post),
        PortalRoute::get("/staff/{id}", read, staff_detail_get),
        PortalRoute::post("/staff/{id}/roles", write, staff_role_grant_post),
        PortalRoute::post("/staff/{id}/roles/revoke", write, staff_role_revoke_post),
        PortalRoute::post("/staff/{id}/disable", write, staff_disable_post),
        PortalRoute::post("/staff/{id}/enable", write, staff_enable_post),
        PortalRoute::post("/staff/{id}/mfa-reset", write, staff_mfa_reset_post),
        PortalRoute::post("/staff/{id}/invite", write, staff_invite_post),
    ]
}

const PAGE_SIZE: i64 = 25;

struct StaffRowView {
    id: String,
    email: String,
    display_name: String,
    roles: String,
    mfa: bool,
    /// How the last login's second factor was satisfied, in words.
    mfa_via: &'static str,
    state: &'static str,
    last_login: String,
}

/// The staff list's words for `last_mfa_method`.
fn mfa_via(method: Option<&str>) -> &'static str {
    match method {
        Some("idp_amr") => "via identity provider",
        Some("local_totp") => "local TOTP",
        Some("recovery_code") => "recovery code",
        _ => "",
    }
}

fn state_of(staff: &Staff) -> &'static str {
    if staff.disabled {
        "disabled"
    } else if staff.password_hash.is_none() {
        "invited"
    } else {
        "active"
    }
}

#[derive(Template)]
#[template(path = "staff/list.html")]
struct StaffListPage {
    shell: Shell,
    rows: Vec<StaffRowView>,
    q: String,
    state: String,
    roles: Vec<(&'static str, bool)>,
    total: i64,
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
    #[serde(default)]
    role: String,
    #[serde(default)]
    state: String,
    page: Option<i64>,
}

async fn staff_list_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<ListQuery>,
) -> AppResult<Html<String>> {
    if !query.role.is_empty() {
        Role::parse(&query.role).map_err(AppError::BadRequest)?;
    }
    if !["", "active", "disabled", "invited"].contains(&query.state.as_str()) {
        return Err(AppError::BadRequest(
            "Unknown state: use active, invited or disabled.".into(),
        ));
    }
    if query.q.len() > 254 {
        return Err(AppError::BadRequest("The search text is too long.".into()));
    }
    let page = query.page.unwrap_or(1).max(1);
    let filter = StaffFilter {
        query: query.q.trim().to_owned(),
        role: query.role.clone(),
        state: query.state.clone(),
        offset: (page - 1) * PAGE_SIZE,
        limit: PAGE_SIZE,
    };
    let (rows, total) = store::list(&state.db, &filter).await?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let link = |p: i64| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair("q", &filter.query)
            .append_pair("role", &filter.role)
            .append_pair("state", &filter.state)
            .append_pair("page", &p.to_string());
        format!("/staff?{}", s.finish())
    };
    let session = visitor.session()?;
    html(&StaffListPage {
        shell: Shell::new(&state, &visitor, "/staff")?,
        rows: rows
            .into_iter()
            .map(|r| StaffRowView {
                state: state_of(&r.staff),
                id: r.staff.id,
                email: r.staff.email,
                display_name: r.staff.display_name,
                roles: r.roles.join(", "),
                mfa: r.staff.totp_enabled || r.staff.last_mfa_method.as_deref() == Some("idp_amr"),
                mfa_via: mfa_via(r.staff.last_mfa_method.as_deref()),
                last_login: r
                    .staff
                    .last_login_at
                    .map(format_ms)
                    .unwrap_or_else(|| "never".into()),
            })
            .collect(),
        q: filter.query.clone(),
        state: filter.state.clone(),
        roles: Role::ALL
            .iter()
            .map(|r| (r.as_str(), r.as_str() == query.role))
            .collect(),
        total,
        page,
        pages,
        prev_link: (page > 1).then(|| link(page - 1)),
        next_link: (page < pages).then(|| link(page + 1)),
        can_write: state.authz.allows(&session.roles, "staff", "write"),
    })
}

#[derive(Template)]
#[template(path = "staff/new.html")]
struct StaffNewPage {
    shell: Shell,
    email: String,
    display_name: String,
    role: String,
    roles: Vec<(&'static str, &'static str)>,
    error: Option<String>,
}

fn role_choices() -> Vec<(&'static str, &'static str)> {
    Role::ALL
        .iter()
        .map(|r| (r.as_str(), r.description()))
        .collect()
}

async fn staff_new_get(State(state): State<AppState>, visitor: Visitor) -> AppResult<Html<String>> {
    html(&StaffNewPage {
        shell: Shell::new(&state, &visitor, "/staff")?,
        email: String::new(),
        display_name: String::new(),
        role: "security".into(),
        roles: role_choices(),
        error: None,
    })
}

#[derive(Template)]
#[template(path = "staff/invited.html")]
struct StaffInvitedPage {
    shell: Shell,
    staff_id: String,
    email: String,
    link: String,
    valid_hours: i64,
}

#[derive(Deserialize)]
struct CreateForm {
    email: String,
    display_name: String,
    role: String,
}

/// The link to give an invited person. Uses `public_url` when set, otherwise the listen
/// address (fine on loopback; set `public_url` behind a proxy).
fn invite_url(state: &AppState, token: &str) -> String {
    let base = match state.config.listen_addr() {
        Ok(addr) => state.config.base_url(addr),
        Err(_) => String::new(),
    };
    format!("{base}/setup?token={token}")
}

async fn staff_create_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<CreateForm>,
) -> AppResult<Response> {
    let rerender = |error: String| -> AppResult<Response> {
        let page = StaffNewPage {
            shell: Shell::new(&state, &visitor, "/staff")?,
            email: crate::web::clip(form.email.trim(), 254),
            display_name: crate::web::clip(form.display_name.trim(), 100),
            role: crate::web::clip(&form.role, 20),
            roles: role_choices(),
            error: Some(error),
        };
        Ok((StatusCode::UNPROCESSABLE_ENTITY, html(&page)?).into_response())
    };
    let email = match Email::parse(&form.email) {
        Ok(e) => e,
        Err(msg) => return rerender(msg),
    };
    let name = match DisplayName::parse(&form.display_name) {
        Ok(n) => n,
        Err(msg) => return rerender(msg),
    };
    let role = match Role::parse(&form.role) {
        Ok(r) => r,
        Err(msg) => return rerender(msg),
    };
    let now = state.now();
    let actor = visitor.actor();
    let mut tx = state.db.begin().await?;
    let id = match store::insert(&mut tx, &email, &name, None, now).await {
        Ok(id) => id,
        Err(err) if is_unique_violation(&err) => {
            return rerender(format!("An account for {email} already exists."));
        }
        Err(err) => return Err(err.into()),
    };
    store::grant_role(&mut tx, &id, role, &actor, now).await?;
    let hours = state.config.setup_link_hours;
    let token = links::create(
        &mut tx,
        links::Purpose::Invite,
        Some(&id),
        &actor,
        now,
        now + hours * HOUR,
    )
    .await?;
    audit::append(
        &mut tx,
        now,
        &visitor.ctx.meta(),
        AuditEvent::new(actor, "staff.create", format!("staff:{id}"))
            .detail("email", email.as_str())
            .detail("role", role.as_str()),
    )
    .await?;
    tx.commit().await?;
    html(&StaffInvitedPage {
        shell: Shell::new(&state, &visitor, "/staff")?,
        staff_id: id,
        email: email.to_string(),
        link: invite_url(&state, &token),
        valid_hours: hours,
    })
    .map(IntoResponse::into_response)
}

struct RoleView {
    name: String,
    granted: bool,
    description: &'static str,
}

#[derive(Template)]
#[template(path = "staff/detail.html")]
struct StaffDetailPage {
    shell: Shell,
    staff: StaffView,
    roles: Vec<RoleView>,
    sessions: usize,
    can_write: bool,
    is_self: bool,
    notice: Option<String>,
}

struct StaffView {
    id: String,
    email: String,
    display_name: String,
    state: &'static str,
    mfa: bool,
    version: i64,
    created_at: String,
    last_login: String,
}

#[derive(Deserialize)]
struct DetailQuery {
    notice: Option<String>,
}

async fn staff_detail_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> AppResult<Html<String>> {
    let staff = store::find(&state.db.pool, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let granted = store::roles_of(&state.db.pool, &id).await?;
    let sessions = session::list_for(&state.db, &id, state.now()).await?.len();
    let me = visitor.session()?;
    let notice = query.notice.as_deref().and_then(|n| match n {
        "granted" => Some("Role granted."),
        "revoked" => Some("Role revoked; the person's sessions were ended."),
        "disabled" => Some("Account disabled; its sessions were ended."),
        "enabled" => Some("Account enabled."),
        "mfa_reset" => Some("Second factor removed; the person enrols again at next login."),
        _ => None,
    });
    html(&StaffDetailPage {
        shell: Shell::new(&state, &visitor, "/staff")?,
        roles: Role::ALL
            .iter()
            .map(|r| RoleView {
                name: r.as_str().to_owned(),
                granted: granted.iter().any(|g| g == r.as_str()),
                description: r.description(),
            })
            .collect(),
        staff: StaffView {
            state: state_of(&staff),
            id: staff.id.clone(),
            email: staff.email.clone(),
            display_name: staff.display_name.clone(),
            mfa: staff.totp_enabled,
            version: staff.version,
            created_at: format_ms(staff.created_at),
            last_login: staff
                .last_login_at
                .map(format_ms)
                .unwrap_or_else(|| "never".into()),
        },
        sessions,
        can_write: state.authz.allows(&me.roles, "staff", "write"),
        is_self: me.staff_id == staff.id,
        notice: notice.map(str::to_owned),
    })
}

/// Starts a change to an account: loads it and claims its version, or explains why not.
async fn begin_change(state: &AppState, id: &str, version: i64) -> AppResult<(Tx, Staff)> {
    let mut tx = state.db.begin().await?;
    let staff = store::find(&mut *tx, id).await?.ok_or(AppError::NotFound)?;
    if !store::claim_version(&mut tx, id, version, state.now()).await? {
        return Err(AppError::Conflict(format!(
            "{} was changed by someone else while you were looking. Nothing was changed; \
             reload the page and try again.",
            staff.email
        )));
    }
    Ok((tx, staff))
}

/// Fails the change if it would leave no enabled admin.
async fn ensure_an_admin_remains(tx: &mut Tx) -> AppResult<()> {
    if store::count_active_admins(tx).await? == 0 {
        return Err(AppError::Conflict(
            "This would leave no enabled administrator. Grant the admin role to someone else \
             first. Nothing was changed."
                .into(),
        ));
    }
    Ok(())
}

fn back_to(id: &str, notice: &str) -> Response {
    Redirect::to(&format!("/staff/{id}?notice={notice}")).into_response()
}

#[derive(Deserialize)]
struct RoleForm {
    role: String,
    version: i64,
}

async fn staff_role_grant_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<RoleForm>,
) -> AppResult<Response> {
    let role = Role::parse(&form.role).map_err(AppError::BadRequest)?;
    let (mut tx, staff) = begin_change(&state, &id, form.version).await?;
    let now = state.now();
    if !store::grant_role(&mut tx, &id, role, &visitor.actor(), now).await? {
        return Err(AppError::Conflict(format!(
            "{} already has the {role} role.",
            staff.email
        )));
    }
    audit::append(
        &mut tx,
        now,
        &visitor.ctx.meta(),
        AuditEvent::new(visitor.actor(), "staff.role.grant", format!("staff:{id}"))
            .detail("email", staff.email.as_str())
            .detail("role", role.as_str()),
    )
    .await?;
    tx.commit().await?;
    Ok(back_to(&id, "granted"))
}

async fn staff_role_revoke_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<RoleForm>,
) -> AppResult<Response> {
    let role = Role::parse(&form.role).map_err(AppError::BadRequest)?;
    let (mut tx, staff) = begin_change(&state, &id, form.version).await?;
    let now = state.now();
    super::revoke_role(
        &mut tx,
        &staff,
        role,
        &visitor.actor(),
        &visitor.ctx.meta(),
        now,
    )
    .await?;
    tx.commit().await?;
    if visitor.session()?.staff_id == id {
        return Ok(Redirect::to("/login?notice=session_ended").into_response());
    }
    Ok(back_to(&id, "revoked"))
}

#[derive(Deserialize)]
struct ConfirmForm {
    version: i64,
    #[serde(default)]
    confirm: String,
}

fn require_confirmation(confirm: &str, what: &str) -> AppResult<()> {
    if confirm == "yes" {
        Ok(())
    } else {
        Err(AppError::BadRequest(format!(
            "Tick the confirmation box to {what}. Nothing was changed."
        )))
    }
}

async fn staff_disable_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> AppResult<Response> {
    require_confirmation(&form.confirm, "disable this account")?;
    if visitor.session()?.staff_id == id {
        return Err(AppError::Conflict(
            "You cannot disable your own account; ask another administrator.".into(),
        ));
    }
    let (mut tx, staff) = begin_change(&state, &id, form.version).await?;
    let now = state.now();
    store::set_disabled(&mut tx, &id, true).await?;
    ensure_an_admin_remains(&mut tx).await?;
    let ended = session::end_all(&mut tx, &id).await?;
    links::revoke_for(&mut tx, &id).await?;
    audit::append(
        &mut tx,
        now,
        &visitor.ctx.meta(),
        AuditEvent::new(visitor.actor(), "staff.disable", format!("staff:{id}"))
            .detail("email", staff.email.as_str())
            .detail("sessions_ended", ended),
    )
    .await?;
    tx.commit().await?;
    Ok(back_to(&id, "disabled"))
}

async fn staff_enable_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> AppResult<Response> {
    let (mut tx, staff) = begin_change(&state, &id, form.version).await?;
    let now = state.now();
    store::set_disabled(&mut tx, &id, false).await?;
    audit::append(
        &mut tx,
        now,
        &visitor.ctx.meta(),
        AuditEvent::new(visitor.actor(), "staff.enable", format!("staff:{id}"))
            .detail("email", staff.email.as_str()),
    )
    .await?;
    tx.commit().await?;
    Ok(back_to(&id, "enabled"))
}

#[derive(Deserialize)]
struct MfaResetForm {
    version: i64,
    #[serde(default)]
    confirm: String,
    admin_password: String,
}

async fn staff_mfa_reset_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<MfaResetForm>,
) -> AppResult<Response> {
    require_confirmation(&form.confirm, "remove this person's second factor")?;
    let me = visitor.session()?.clone();
    let now = state.now();
    // Re-authentication: the admin confirms with their own password, throttled like a login.
    if let Err(message) = crate::authn::account::reauthenticate(
        &state,
        &visitor,
        form.admin_password,
        None,
        "staff_mfa_reset",
    )
    .await?
    {
        return Err(AppError::BadRequest(format!(
            "{message} The second factor was not reset."
        )));
    }
    let (mut tx, staff) = begin_change(&state, &id, form.version).await?;
    store::clear_totp(&mut tx, &id, now).await?;
    let ended = session::end_all(&mut tx, &id).await?;
    audit::append(
        &mut tx,
        now,
        &visitor.ctx.meta(),
        AuditEvent::new(visitor.actor(), "staff.mfa.reset", format!("staff:{id}"))
            .detail("email", staff.email.as_str())
            .detail("sessions_ended", ended),
    )
    .await?;
    tx.commit().await?;
    if me.staff_id == id {
        return Ok(Redirect::to("/login?notice=mfa_reset").into_response());
    }
    Ok(back_to(&id, "mfa_reset"))
}

async fn staff_invite_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> AppResult<Response> {
    let (mut tx, staff) = begin_change(&state, &id, form.version).await?;
    if staff.password_hash.is_some() || staff.disabled {
        return Err(AppError::Conflict(
            "Only an enabled account that has not accepted its invitation can get a new link."
                .into(),
        ));
    }
    let now = state.now();
    let hours = state.config.setup_link_hours;
    links::revoke_for(&mut tx, &id).await?;
    let token = links::create(
        &mut tx,
        links::Purpose::Invite,
        Some(&id),
        &visitor.actor(),
        now,
        now + hours * HOUR,
    )
    .await?;
    audit::append(
        &mut tx,
        now,
        &visitor.ctx.meta(),
        AuditEvent::new(
            visitor.actor(),
            "staff.invite.reissue",
            format!("staff:{id}"),
        )
        .detail("email", staff.email.as_str()),
    )
    .await?;
    tx.commit().await?;
    html(&StaffInvitedPage {
        shell: Shell::new(&state, &visitor, "/staff")?,
        staff_id: id,
        email: staff.email,
        link: invite_url(&state, &token),
        valid_hours: hours,
    })
    .map(IntoResponse::into_response)
}
