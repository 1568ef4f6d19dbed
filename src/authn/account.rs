//! "My account": profile, password change and MFA reset (both re-authenticate with the
//! current password and a TOTP code), and the list of one's own sessions.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{self, SessionSummary};
use super::{recovery, throttle, totp};
use crate::app::AppState;
use crate::audit::{self, AuditEvent, Outcome};
use crate::clock::format_ms;
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, SESSION_COOKIE, Visitor};
use crate::portal::shell::{Shell, html};
use crate::staff::store;
use crate::web::Form;

pub fn routes() -> Vec<PortalRoute> {
    vec![
        PortalRoute::get("/account", Access::Rbac("account", "read"), account_get),
        PortalRoute::post(
            "/account/password",
            Access::Rbac("account", "write"),
            password_post,
        ),
        PortalRoute::post(
            "/account/mfa-reset",
            Access::Rbac("account", "write"),
            mfa_reset_post,
        ),
        PortalRoute::get(
            "/account/sessions",
            Access::Rbac("account", "read"),
            sessions_get,
        ),
        PortalRoute::post(
            "/account/sessions/{id}/end",
            Access::Rbac("account", "write"),
            session_end_post,
        ),
        PortalRoute::post(
            "/account/sessions/end-others",
            Access::Rbac("account", "write"),
            sessions_end_others_post,
        ),
    ]
}

#[derive(Template)]
#[template(path = "account/account.html")]
struct AccountPage {
    shell: Shell,
    display_name: String,
    email: String,
    roles: String,
    recovery_codes_left: i64,
    notice: Option<String>,
    password_error: Option<String>,
    mfa_error: Option<String>,
}

#[derive(Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn account_page(
    state: &AppState,
    visitor: &Visitor,
    notice: Option<String>,
    password_error: Option<String>,
    mfa_error: Option<String>,
) -> AppResult<AccountPage> {
    let session = visitor.session()?;
    Ok(AccountPage {
        shell: Shell::new(state, visitor, "/account")?,
        display_name: session.display_name.clone(),
        email: session.email.clone(),
        roles: session.roles.join(", "),
        recovery_codes_left: recovery::remaining(&state.db, &session.staff_id).await?,
        notice,
        password_error,
        mfa_error,
    })
}

async fn account_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<NoticeQuery>,
) -> AppResult<Response> {
    let notice = match query.notice.as_deref() {
        Some("password_changed") => {
            Some("Password changed. Your other sessions have been ended.".to_owned())
        }
        _ => None,
    };
    Ok(html(&account_page(&state, &visitor, notice, None, None).await?)?.into_response())
}

/// Checks the current password and, when `code` is given, a fresh TOTP code. Throttled like
/// a login: the attempt is counted against the account before anything is verified, one check
/// per account runs at a time, and password hashing goes through the bounded gate.
pub(crate) async fn reauthenticate(
    state: &AppState,
    visitor: &Visitor,
    password: String,
    code: Option<&str>,
    purpose: &'static str,
) -> AppResult<Result<(), String>> {
    let now = state.now();
    let session = visitor.session()?;
    let account_key = throttle::account_subject(&session.email);
    let window = super::pages::lockout_window(state);
    let Some(_in_flight) = state.login_in_flight.enter(&account_key) else {
        return Ok(Err(
            "Another check of your password is running. Wait a moment and try again.".into(),
        ));
    };
    let subjects = [throttle::Subject::new(
        account_key.clone(),
        state.config.lockout_account_failures,
    )];
    let target = format!("staff:{}", session.staff_id);
    let mut tx = state.db.begin().await?;
    let gate = throttle::begin_attempt(
        &mut tx,
        &subjects,
        now,
        window,
        &visitor.ctx.meta(),
        AuditEvent::new(visitor.actor(), "auth.reauthenticate", target.clone())
            .detail("for", purpose),
    )
    .await?;
    tx.commit().await?;
    let attempt = match gate {
        throttle::Gate::Proceed(attempt) => attempt,
        throttle::Gate::Locked { until } => {
            state.metrics.login_failures.inc();
            return Ok(Err(super::pages::locked_message(until, now)));
        }
    };
    let account = store::find(&state.db.pool, &session.staff_id)
        .await?
        .ok_or(AppError::LoginRequired)?;
    let password_ok = if password.len() <= 1024 {
        match state.passwords.enter() {
            Ok(slot) => slot.verify(password, account.password_hash.clone()).await?,
            Err(busy) => {
                let mut tx = state.db.begin().await?;
                attempt.cancel(&mut tx).await?;
                tx.commit().await?;
                return Err(busy);
            }
        }
    } else {
        false
    };
    let mut tx = state.db.begin().await?;
    let code_ok = match (code, &account.totp_secret_enc, password_ok) {
        (None, _, ok) => ok,
        (Some(code), Some(sealed), true) => {
            let secret = super::open_totp_secret(state, sealed, &account.id)?;
            match totp::matching_step(&secret, code, now) {
                Some(step) => store::consume_totp_step(&mut tx, &account.id, step).await?,
                None => false,
            }
        }
        _ => false,
    };
    if password_ok && code_ok {
        attempt.succeeded(&mut tx, &account_key).await?;
        tx.commit().await?;
        return Ok(Ok(()));
    }
    attempt.failed(&mut tx, now, window).await?;
    audit::append(
        &mut tx,
        now,
        &visitor.ctx.meta(),
        AuditEvent::new(visitor.actor(), "auth.reauthenticate", target)
            .outcome(Outcome::Failure)
            .detail("for", purpose),
    )
    .await?;
    tx.commit().await?;
    state.metrics.login_failures.inc();
    Ok(Err(if code.is_some() {
        "The current password or the code is not right.".into()
    } else {
        "Your password was not right.".into()
    }))
}

#[derive(Deserialize)]
struct PasswordForm {
    current_password: String,
    new_password: String,
    confirm: String,
    code: String,
}

async fn password_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<PasswordForm>,
) -> AppResult<Response> {
    let session = visitor.session()?.clone();
    let failed = |error: String| async {
        let page = account_page(&state, &visitor, None, Some(error), None).await?;
        Ok::<Response, AppError>((StatusCode::UNPROCESSABLE_ENTITY, html(&page)?).into_response())
    };
    if let Err(rejected) =
        super::password::check_new(&form.new_password, &form.confirm, &session.email)
    {
        return failed(rejected.to_string()).await;
    }
    if let Err(msg) = reauthenticate(
        &state,
        &visitor,
        form.current_password,
        Some(&form.code),
        "password_change",
    )
    .await?
    {
        return failed(msg).await;
    }
    let hash = state.passwords.enter()?.hash(form.new_password).await?;
    let now = state.now();
    let mut tx = state.db.begin().await?;
    store::set_password(&mut tx, &session.staff_id, &hash, now).await?;
    let ended = session::end_others(&mut tx, &session.staff_id, &session.id).await?;
    audit::append(
        &mut tx,
        now,
        &visitor.ctx.meta(),
        AuditEvent::new(
            visitor.actor(),
            "account.password.change",
            format!("staff:{}", session.staff_id),
        )
        .detail("other_sessions_ended", ended),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/account?notice=password_changed").into_response())
}

#[derive(Deserialize)]
struct MfaResetForm {
    current_password: String,
    code: String,
    #[serde(default)]
    confirm: String,
}

async fn mfa_reset_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<MfaResetForm>,
) -> AppResult<Response> {
    let session = visitor.session()?.clone();
    let failed = |error: String| async {
        let page = account_page(&state, &visitor, None, None, Some(error)).await?;
        Ok::<Response, AppError>((StatusCode::UNPROCESSABLE_ENTITY, html(&page)?).into_response())
    };
    if form.confirm != "yes" {
        return failed("Tick the box to confirm you want to remove your second factor.".into())
            .await;
    }
    if let Err(msg) = reauthenticate(
        &state,
        &visitor,
        form.current_password,
        Some(&form.code),
        "mfa_reset",
    )
    .await?
    {
        return failed(msg).await;
    }
    let now = state.now();
    let mut tx = state.db.begin().await?;
    store::clear_totp(&mut tx, &session.staff_id, now).await?;
    let ended = session::end_all(&mut tx, &session.staff_id).await?;
    audit::append(
        &mut tx,
        now,
        &visitor.ctx.meta(),
        AuditEvent::new(
            visitor.actor(),
            "account.mfa.reset",
            format!("staff:{}", session.staff_id),
        )
        .detail("sessions_ended", ended),
    )
    .await?;
    tx.commit().await?;
    let mut response = Redirect::to("/login?notice=mfa_reset").into_response();
    if let Ok(v) = HeaderValue::from_str(&visitor.ctx.clear_cookie(SESSION_COOKIE)) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

struct SessionView {
    id: String,
    current: bool,
    created_at: String,
    last_seen_at: String,
    expires_at: String,
    client_ip: String,
    user_agent: String,
    stage: String,
}

#[derive(Template)]
#[template(path = "account/sessions.html")]
struct SessionsPage {
    shell: Shell,
    sessions: Vec<SessionView>,
}

async fn sessions_get(State(state): State<AppState>, visitor: Visitor) -> AppResult<Response> {
    let session = visitor.session()?;
    let sessions = session::list_for(&state.db, &session.staff_id, state.now())
        .await?
        .into_iter()
        .map(|s: SessionSummary| SessionView {
            current: s.id == session.id,
            id: s.id,
            created_at: format_ms(s.created_at),
            last_seen_at: format_ms(s.last_seen_at),
            expires_at: format_ms(s.expires_at),
            client_ip: s.client_ip.unwrap_or_default(),
            user_agent: s.user_agent.unwrap_or_default(),
            stage: s.stage,
        })
        .collect();
    Ok(html(&SessionsPage {
        shell: Shell::new(&state, &visitor, "/account")?,
        sessions,
    })?
    .into_response())
}

async fn session_end_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let session = visitor.session()?;
    let now = state.now();
    let mut tx = state.db.begin().await?;
    if !session::end(&mut tx, &session.staff_id, &id).await? {
        return Err(AppError::NotFound);
    }
    audit::append(
        &mut tx,
        now,
        &visitor.ctx.meta(),
        AuditEvent::new(visitor.actor(), "session.end", format!("session:{id}")),
    )
    .await?;
    tx.commit().await?;
    if id == session.id {
        let mut response = Redirect::to("/login?notice=logged_out").into_response();
        if let Ok(v) = HeaderValue::from_str(&visitor.ctx.clear_cookie(SESSION_COOKIE)) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
        return Ok(response);
    }
    Ok(Redirect::to("/account/sessions").into_response())
}

async fn sessions_end_others_post(
    State(state): State<AppState>,
    visitor: Visitor,
) -> AppResult<Response> {
    let session = visitor.session()?;
    let now = state.now();
    let mut tx = state.db.begin().await?;
    let ended = session::end_others(&mut tx, &session.staff_id, &session.id).await?;
    audit::append(
        &mut tx,
        now,
        &visitor.ctx.meta(),
        AuditEvent::new(
            visitor.actor(),
            "session.end_others",
            format!("staff:{}", session.staff_id),
        )
        .detail("ended", ended),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/account/sessions").into_response())
}
