//! Login (password, then TOTP or a recovery code), first-run setup and invitations, TOTP
//! enrolment, and logout.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::links::{self, Purpose};
use super::session::{self, Stage};
use super::{recovery, throttle, totp};
use crate::app::AppState;
use crate::audit::{self, AuditEvent, Outcome};
use crate::clock::{HOUR, MINUTE};
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, SESSION_COOKIE, Visitor};
use crate::portal::shell::html;
use crate::staff::model::{DisplayName, Email, Role};
use crate::staff::store;
use crate::web::{Form, RequestCtx, read_cookie};

/// Cookie that holds a setup-link token after the link has been opened (so the token leaves
/// the address bar and history at once).
pub const SETUP_COOKIE: &str = "tp_setup";

pub fn routes() -> Vec<PortalRoute> {
    vec![
        PortalRoute::get("/login", Access::PublicForm, login_get),
        PortalRoute::post("/login", Access::PublicForm, login_post),
        PortalRoute::get("/login/totp", Access::Pending(Stage::Mfa), totp_get),
        PortalRoute::post("/login/totp", Access::Pending(Stage::Mfa), totp_post),
        PortalRoute::get("/setup", Access::PublicForm, setup_get),
        PortalRoute::post("/setup", Access::PublicForm, setup_post),
        PortalRoute::get("/mfa/enrol", Access::Pending(Stage::Enrol), enrol_get),
        PortalRoute::post("/mfa/enrol", Access::Pending(Stage::Enrol), enrol_post),
        PortalRoute::post("/logout", Access::AnySession, logout_post),
    ]
}

/// Responds with a redirect and a new session cookie.
pub(crate) fn with_session_cookie(ctx: &RequestCtx, token: &str, to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    set_cookie(
        &mut response,
        &ctx.set_cookie(SESSION_COOKIE, token, "Strict", None),
    );
    response
}

pub(crate) fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

const GENERIC_LOGIN_FAILURE: &str = "Email or password is incorrect.";

const ATTEMPT_IN_FLIGHT: &str =
    "Another sign-in attempt for this account is being checked. Wait a moment and try again.";

/// The window failures are counted in, and the length of a lock.
pub(crate) fn lockout_window(state: &AppState) -> crate::clock::Millis {
    state.config.lockout_minutes * MINUTE
}

/// A login-type attempt is charged to the account and to the client's network.
pub(crate) fn login_subjects(
    state: &AppState,
    account_key: &str,
    ctx: &RequestCtx,
) -> Vec<throttle::Subject> {
    let ip = ctx.client_ip.as_deref().unwrap_or("unknown");
    vec![
        throttle::Subject::new(
            account_key.to_owned(),
            state.config.lockout_account_failures,
        ),
        throttle::Subject::new(throttle::ip_subject(ip), state.config.lockout_ip_failures),
    ]
}

pub(crate) fn locked_message(until: crate::clock::Millis, now: crate::clock::Millis) -> String {
    let minutes = ((until - now).max(0) + MINUTE - 1) / MINUTE;
    format!(
        "Too many failed attempts. Try again in {} minute(s).",
        minutes.max(1)
    )
}

/// Audits the locks a failure caused (one row naming which subjects locked).
async fn audit_lockout(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    ctx: &RequestCtx,
    target: &str,
    account_key: &str,
    locked: &[(String, crate::clock::Millis)],
) -> Result<(), sqlx::Error> {
    if locked.is_empty() {
        return Ok(());
    }
    let by_account = locked.iter().any(|(k, _)| k == account_key);
    let event = AuditEvent::new("system", "auth.lockout", target)
        .outcome(Outcome::Denied)
        .detail("by_account", by_account)
        .detail("by_ip", locked.len() > usize::from(by_account))
        .detail("minutes", state.config.lockout_minutes);
    audit::append(conn, state.now(), &ctx.meta(), event)
        .await
        .map(|_| ())
}

#[derive(Template)]
#[template(path = "authn/login.html")]
struct LoginPage {
    csrf: String,
    email: String,
    error: Option<String>,
    notice: Option<String>,
    /// The SSO button's text when single sign-on is on.
    sso_button: Option<String>,
}

fn sso_button(state: &AppState) -> Option<String> {
    state
        .sso
        .as_ref()
        .map(|_| state.config.sso.display_name.clone())
}

#[derive(Deserialize)]
struct LoginQuery {
    notice: Option<String>,
}

async fn login_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<LoginQuery>,
) -> AppResult<Response> {
    if visitor
        .session
        .as_ref()
        .is_some_and(|s| s.stage == Stage::Full)
    {
        return Ok(Redirect::to("/").into_response());
    }
    let notice = match query.notice.as_deref() {
        Some("logged_out") => Some("You have logged out.".to_owned()),
        Some("mfa_reset") => {
            Some("Your second factor was removed. Log in to enrol a new one.".to_owned())
        }
        Some("session_ended") => Some("That session has ended. Log in again.".to_owned()),
        _ => None,
    };
    Ok(html(&LoginPage {
        csrf: visitor.csrf,
        email: String::new(),
        error: None,
        notice,
        sso_button: sso_button(&state),
    })?
    .into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
}

async fn login_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<LoginForm>,
) -> AppResult<Response> {
    let now = state.now();
    let ctx = &visitor.ctx;
    let email = form.email.trim().to_lowercase();
    let render = |status: StatusCode, error: String| -> AppResult<Response> {
        let page = LoginPage {
            csrf: visitor.csrf.clone(),
            email: crate::web::clip(&email, 254),
            error: Some(error),
            notice: None,
            sso_button: sso_button(&state),
        };
        Ok((status, html(&page)?).into_response())
    };

    let account_key = throttle::account_subject(&email);
    let target = format!("email:{}", crate::web::clip(&email, 254));
    // With single sign-on, passwords may be kept for break-glass accounts only.
    if !state.config.sso.password_login_allowed(&email) {
        audit::append_alone(
            &state.db,
            now,
            &ctx.meta(),
            AuditEvent::new("anonymous", "auth.login", target.clone())
                .outcome(Outcome::Denied)
                .detail("reason", "password_login_disabled"),
        )
        .await?;
        return render(
            StatusCode::FORBIDDEN,
            "Password login is turned off. Use single sign-on.".to_owned(),
        );
    }
    let Some(_in_flight) = state.login_in_flight.enter(&account_key) else {
        return render(StatusCode::TOO_MANY_REQUESTS, ATTEMPT_IN_FLIGHT.to_owned());
    };
    // The attempt is counted (and refused when locked) before any password is checked.
    let mut tx = state.db.begin().await?;
    let gate = throttle::begin_attempt(
        &mut tx,
        &login_subjects(&state, &account_key, ctx),
        now,
        lockout_window(&state),
        &ctx.meta(),
        AuditEvent::new("anonymous", "auth.login", target.clone()),
    )
    .await?;
    tx.commit().await?;
    let attempt = match gate {
        throttle::Gate::Locked { until } => {
            state.metrics.login_failures.inc();
            return render(StatusCode::TOO_MANY_REQUESTS, locked_message(until, now));
        }
        throttle::Gate::Proceed(attempt) => attempt,
    };

    // Oversized input is refused without spending a hash on it.
    let plausible = email.len() <= 254 && form.password.len() <= 1024;
    let account = if plausible {
        store::find_by_email(&state.db.pool, &email).await?
    } else {
        None
    };
    let usable = account.filter(|a| !a.disabled && a.password_hash.is_some());
    let stored = usable.as_ref().and_then(|a| a.password_hash.clone());
    let password_ok = if plausible {
        match state.passwords.enter() {
            Ok(slot) => slot.verify(form.password, stored).await?,
            Err(busy) => {
                // Nothing was checked, so the attempt is given back.
                let mut tx = state.db.begin().await?;
                attempt.cancel(&mut tx).await?;
                tx.commit().await?;
                return Err(busy);
            }
        }
    } else {
        false
    };

    // The monitoring subject: the staff account when the name is one, else the hashed name.
    let failure_subject = usable
        .as_ref()
        .map(|a| format!("staff:{}", a.id))
        .unwrap_or_else(|| account_key.clone());
    let Some(account) = usable.filter(|_| password_ok) else {
        let mut tx = state.db.begin().await?;
        let locked = attempt.failed(&mut tx, now, lockout_window(&state)).await?;
        audit::append(
            &mut tx,
            now,
            &ctx.meta(),
            AuditEvent::new("anonymous", "auth.login", target.clone())
                .outcome(Outcome::Failure)
                .detail("reason", "bad_credentials"),
        )
        .await?;
        audit_lockout(&mut tx, &state, ctx, &target, &account_key, &locked).await?;
        tx.commit().await?;
        state.metrics.login_failures.inc();
        state
            .signals
            .record_login_failure(now, &failure_subject, ctx.client_ip.as_deref());
        return render(StatusCode::UNAUTHORIZED, GENERIC_LOGIN_FAILURE.to_owned());
    };

    let mut tx = state.db.begin().await?;
    if let Some(old) = &visitor.session {
        session::end(&mut tx, &old.staff_id, &old.id).await?;
    }
    let stage = if account.totp_enabled {
        Stage::Mfa
    } else {
        Stage::Enrol
    };
    // The account's charge stays until the second factor succeeds, so a known password
    // does not buy fresh TOTP guesses.
    attempt.first_factor_passed(&mut tx, &account_key).await?;
    let issued = session::create(
        &mut tx,
        &account.id,
        stage,
        now,
        now + session::PENDING_LIFETIME,
        &ctx.origin(),
    )
    .await?;
    session::set_auth_method(&mut tx, &issued.id, "password").await?;
    audit::append(
        &mut tx,
        now,
        &ctx.meta(),
        AuditEvent::new(
            format!("staff:{}", account.email),
            "auth.password",
            format!("staff:{}", account.id),
        )
        .detail("next", stage.as_str()),
    )
    .await?;
    tx.commit().await?;
    let to = if stage == Stage::Mfa {
        "/login/totp"
    } else {
        "/mfa/enrol"
    };
    Ok(with_session_cookie(ctx, &issued.token, to))
}

#[derive(Template)]
#[template(path = "authn/totp.html")]
struct TotpPage {
    csrf: String,
    email: String,
    error: Option<String>,
}

async fn totp_get(visitor: Visitor) -> AppResult<Html<String>> {
    let session = visitor.session()?;
    html(&TotpPage {
        csrf: visitor.csrf.clone(),
        email: session.email.clone(),
        error: None,
    })
}

#[derive(Deserialize)]
struct CodeForm {
    code: String,
}

async fn totp_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<CodeForm>,
) -> AppResult<Response> {
    let now = state.now();
    let ctx = &visitor.ctx;
    let session = visitor.session()?.clone();
    let account_key = throttle::account_subject(&session.email);
    let actor = format!("staff:{}", session.email);
    let target = format!("staff:{}", session.staff_id);
    let render_error = |message: &str, status: StatusCode| -> AppResult<Response> {
        let page = TotpPage {
            csrf: visitor.csrf.clone(),
            email: session.email.clone(),
            error: Some(message.to_owned()),
        };
        Ok((status, html(&page)?).into_response())
    };

    // One code per account is checked at a time, and only after it has been counted.
    let Some(_in_flight) = state.login_in_flight.enter(&account_key) else {
        return render_error(ATTEMPT_IN_FLIGHT, StatusCode::TOO_MANY_REQUESTS);
    };
    let mut tx = state.db.begin().await?;
    let gate = throttle::begin_attempt(
        &mut tx,
        &login_subjects(&state, &account_key, ctx),
        now,
        lockout_window(&state),
        &ctx.meta(),
        AuditEvent::new(actor.clone(), "auth.mfa", target.clone()),
    )
    .await?;
    let attempt = match gate {
        throttle::Gate::Proceed(attempt) => {
            tx.commit().await?;
            attempt
        }
        throttle::Gate::Locked { .. } => {
            session::end(&mut tx, &session.staff_id, &session.id).await?;
            tx.commit().await?;
            state.metrics.login_failures.inc();
            let mut response = Redirect::to("/login?notice=session_ended").into_response();
            set_cookie(&mut response, &ctx.clear_cookie(SESSION_COOKIE));
            return Ok(response);
        }
    };

    let account = store::find(&state.db.pool, &session.staff_id)
        .await?
        .ok_or(AppError::LoginRequired)?;
    let sealed = account
        .totp_secret_enc
        .clone()
        .ok_or(AppError::LoginRequired)?;
    let secret = super::open_totp_secret(&state, &sealed, &account.id)?;

    let code = form.code.trim();
    let mut tx = state.db.begin().await?;
    let (accepted, method, reason) = if code.len() > 32 {
        (false, "totp", "malformed")
    } else if recovery::looks_like_recovery_code(code) {
        let ok = recovery::consume(&mut tx, &state.keyring, &account.id, code, now).await?;
        (ok, "recovery_code", "unknown_or_used_recovery_code")
    } else {
        match totp::matching_step(&secret, code, now) {
            Some(step) => {
                let fresh = store::consume_totp_step(&mut tx, &account.id, step).await?;
                (fresh, "totp", "replayed_code")
            }
            None => (false, "totp", "wrong_code"),
        }
    };

    if !accepted {
        let locked = attempt.failed(&mut tx, now, lockout_window(&state)).await?;
        audit::append(
            &mut tx,
            now,
            &ctx.meta(),
            AuditEvent::new(actor.clone(), "auth.mfa", target.clone())
                .outcome(Outcome::Failure)
                .detail("method", method)
                .detail("reason", reason),
        )
        .await?;
        let account_locked = locked.iter().any(|(k, _)| *k == account_key);
        if account_locked {
            session::end(&mut tx, &session.staff_id, &session.id).await?;
        }
        audit_lockout(&mut tx, &state, ctx, &target, &account_key, &locked).await?;
        tx.commit().await?;
        state.metrics.login_failures.inc();
        state.signals.record_login_failure(
            now,
            &format!("staff:{}", session.staff_id),
            ctx.client_ip.as_deref(),
        );
        if account_locked {
            let mut response = Redirect::to("/login?notice=session_ended").into_response();
            set_cookie(&mut response, &ctx.clear_cookie(SESSION_COOKIE));
            return Ok(response);
        }
        return render_error(
            "That code is not valid. Each code works once; if you just used one, wait for the \
             next.",
            StatusCode::UNAUTHORIZED,
        );
    }

    let lifetime = state.config.session_absolute_hours * HOUR;
    let token = session::advance(&mut tx, &session.id, Stage::Full, now, now + lifetime).await?;
    let mfa_method = if method == "totp" {
        "local_totp"
    } else {
        method
    };
    session::record_mfa(&mut tx, &session.id, &account.id, mfa_method).await?;
    attempt.succeeded(&mut tx, &account_key).await?;
    store::record_login(&mut tx, &account.id, now).await?;
    audit::append(
        &mut tx,
        now,
        &ctx.meta(),
        AuditEvent::new(actor, "auth.mfa", target).detail("method", method),
    )
    .await?;
    tx.commit().await?;
    Ok(with_session_cookie(ctx, &token, "/"))
}

#[derive(Template)]
#[template(path = "authn/setup.html")]
struct SetupPage {
    csrf: String,
    first_admin: bool,
    email: String,
    display_name: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "authn/link_invalid.html")]
struct LinkInvalidPage;

#[derive(Deserialize)]
struct SetupQuery {
    token: Option<String>,
}

async fn setup_get(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: axum::http::HeaderMap,
    Query(query): Query<SetupQuery>,
) -> AppResult<Response> {
    let ctx = &visitor.ctx;
    if let Some(token) = query.token {
        // Only a token of the exact shape links are made with reaches the cookie: anything
        // else (header injection, oversized values, attributes) is an invalid link.
        if !links::is_token_shaped(&token) {
            return link_invalid();
        }
        // Move the token out of the address bar and history into a short-lived cookie.
        let mut response = Redirect::to("/setup").into_response();
        set_cookie(
            &mut response,
            &ctx.set_cookie(SETUP_COOKIE, &token, "Lax", Some(3600)),
        );
        return Ok(response);
    }
    let Some(token) =
        read_cookie(&headers, &ctx.cookie_name(SETUP_COOKIE)).filter(|t| links::is_token_shaped(t))
    else {
        return link_invalid();
    };
    let mut conn = state.db.pool.acquire().await?;
    let Some(link) = links::peek(&mut conn, &token, state.now()).await? else {
        return link_invalid();
    };
    drop(conn);
    let (first_admin, email) = match (link.purpose, &link.staff_id) {
        (Purpose::FirstAdmin, _) if !store::any_exists(&state.db).await? => (true, String::new()),
        (Purpose::Invite, Some(staff_id)) => match store::find(&state.db.pool, staff_id).await? {
            Some(account) if !account.disabled && account.password_hash.is_none() => {
                (false, account.email)
            }
            _ => return link_invalid(),
        },
        _ => return link_invalid(),
    };
    Ok(html(&SetupPage {
        csrf: visitor.csrf.clone(),
        first_admin,
        email,
        display_name: String::new(),
        error: None,
    })?
    .into_response())
}

fn link_invalid() -> AppResult<Response> {
    Ok((StatusCode::GONE, html(&LinkInvalidPage)?).into_response())
}

#[derive(Deserialize)]
struct SetupForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    display_name: String,
    password: String,
    confirm: String,
}

async fn setup_post(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: axum::http::HeaderMap,
    Form(form): Form<SetupForm>,
) -> AppResult<Response> {
    let now = state.now();
    let ctx = &visitor.ctx;
    let Some(token) =
        read_cookie(&headers, &ctx.cookie_name(SETUP_COOKIE)).filter(|t| links::is_token_shaped(t))
    else {
        return link_invalid();
    };
    let mut conn = state.db.pool.acquire().await?;
    let Some(link) = links::peek(&mut conn, &token, now).await? else {
        return link_invalid();
    };
    drop(conn);

    // Work out who the account is and check the input before any hashing or writing.
    let invited = match (&link.purpose, &link.staff_id) {
        (Purpose::Invite, Some(id)) => match store::find(&state.db.pool, id).await? {
            Some(account) if !account.disabled && account.password_hash.is_none() => Some(account),
            _ => return link_invalid(),
        },
        (Purpose::FirstAdmin, _) => None,
        _ => return link_invalid(),
    };
    let first_admin = invited.is_none();
    let rerender = |error: String| -> AppResult<Response> {
        let page = SetupPage {
            csrf: visitor.csrf.clone(),
            first_admin,
            email: invited
                .as_ref()
                .map(|a| a.email.clone())
                .unwrap_or_else(|| crate::web::clip(form.email.trim(), 254)),
            display_name: crate::web::clip(form.display_name.trim(), 100),
            error: Some(error),
        };
        Ok((StatusCode::UNPROCESSABLE_ENTITY, html(&page)?).into_response())
    };
    let (email, display_name) = match &invited {
        Some(account) => (
            Email::parse(&account.email).map_err(AppError::BadRequest)?,
            DisplayName::parse(&account.display_name).map_err(AppError::BadRequest)?,
        ),
        None => {
            let email = match Email::parse(&form.email) {
                Ok(e) => e,
                Err(msg) => return rerender(msg),
            };
            let name = match DisplayName::parse(&form.display_name) {
                Ok(n) => n,
                Err(msg) => return rerender(msg),
            };
            (email, name)
        }
    };
    if let Err(rejected) = super::password::check_new(&form.password, &form.confirm, email.as_str())
    {
        return rerender(rejected.to_string());
    }
    let password_hash = state.passwords.enter()?.hash(form.password).await?;

    let mut tx = state.db.begin().await?;
    if !links::consume(&mut tx, &token, now).await? {
        return link_invalid();
    }
    let staff_id = match &invited {
        Some(account) => {
            store::set_password(&mut tx, &account.id, &password_hash, now).await?;
            account.id.clone()
        }
        None => {
            // The first-admin link only works while there is no account at all.
            use sqlx::Row;
            let existing: i64 = sqlx::query("SELECT COUNT(*) AS n FROM staff")
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            if existing > 0 {
                return link_invalid();
            }
            let id =
                store::insert(&mut tx, &email, &display_name, Some(&password_hash), now).await?;
            store::grant_role(&mut tx, &id, Role::Admin, "setup", now).await?;
            id
        }
    };
    let actor = format!("staff:{email}");
    let action = if first_admin {
        "setup.first_admin"
    } else {
        "setup.invite_accepted"
    };
    audit::append(
        &mut tx,
        now,
        &ctx.meta(),
        AuditEvent::new(actor, action, format!("staff:{staff_id}"))
            .detail("email", email.as_str())
            .detail("roles", if first_admin { "admin" } else { "" }),
    )
    .await?;
    let issued = session::create(
        &mut tx,
        &staff_id,
        Stage::Enrol,
        now,
        now + session::PENDING_LIFETIME,
        &ctx.origin(),
    )
    .await?;
    tx.commit().await?;
    let mut response = with_session_cookie(ctx, &issued.token, "/mfa/enrol");
    set_cookie(&mut response, &ctx.clear_cookie(SETUP_COOKIE));
    Ok(response)
}

#[derive(Template)]
#[template(path = "authn/enrol.html")]
struct EnrolPage {
    csrf: String,
    email: String,
    qr_svg: String,
    secret_grouped: String,
    otpauth_uri: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "authn/recovery_codes.html")]
struct RecoveryCodesPage {
    codes: Vec<String>,
}

/// The secret being enrolled: created on first view, kept sealed on the session.
async fn pending_secret(state: &AppState, visitor: &Visitor) -> AppResult<String> {
    let session = visitor.session()?;
    if let Some(sealed) = &session.pending_totp_enc {
        return super::open_totp_secret(state, sealed, &session.id);
    }
    let secret = totp::generate_secret();
    let sealed = state.keyring.seal(secret.as_bytes(), session.id.as_bytes());
    let mut conn = state.db.pool.acquire().await?;
    session::set_pending_totp(&mut conn, &session.id, &sealed).await?;
    Ok(secret)
}

fn enrol_page(visitor: &Visitor, secret: &str, error: Option<String>) -> AppResult<EnrolPage> {
    let session = visitor.session()?;
    let uri = totp::otpauth_uri(secret, &session.email)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("cannot build otpauth URI")))?;
    let qr_svg = totp::qr_svg(&uri)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("cannot render QR code")))?;
    Ok(EnrolPage {
        csrf: visitor.csrf.clone(),
        email: session.email.clone(),
        qr_svg,
        secret_grouped: totp::grouped(secret),
        otpauth_uri: uri,
        error,
    })
}

async fn enrol_get(State(state): State<AppState>, visitor: Visitor) -> AppResult<Response> {
    let secret = pending_secret(&state, &visitor).await?;
    Ok(html(&enrol_page(&visitor, &secret, None)?)?.into_response())
}

async fn enrol_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<CodeForm>,
) -> AppResult<Response> {
    let now = state.now();
    let ctx = &visitor.ctx;
    let session = visitor.session()?.clone();
    let secret = pending_secret(&state, &visitor).await?;
    let actor = format!("staff:{}", session.email);
    let target = format!("staff:{}", session.staff_id);
    // Counted before the code is checked, like every other code.
    let account_key = throttle::account_subject(&session.email);
    let subjects = [throttle::Subject::new(
        account_key.clone(),
        state.config.lockout_account_failures,
    )];
    let mut tx = state.db.begin().await?;
    let gate = throttle::begin_attempt(
        &mut tx,
        &subjects,
        now,
        lockout_window(&state),
        &ctx.meta(),
        AuditEvent::new(actor.clone(), "mfa.enrol", target.clone()),
    )
    .await?;
    tx.commit().await?;
    let attempt = match gate {
        throttle::Gate::Proceed(attempt) => attempt,
        throttle::Gate::Locked { until } => {
            let page = enrol_page(&visitor, &secret, Some(locked_message(until, now)))?;
            return Ok((StatusCode::TOO_MANY_REQUESTS, html(&page)?).into_response());
        }
    };
    let Some(step) = totp::matching_step(&secret, &form.code, now) else {
        let mut tx = state.db.begin().await?;
        attempt.failed(&mut tx, now, lockout_window(&state)).await?;
        audit::append(
            &mut tx,
            now,
            &ctx.meta(),
            AuditEvent::new(actor, "mfa.enrol", target)
                .outcome(Outcome::Failure)
                .detail("reason", "wrong_code"),
        )
        .await?;
        tx.commit().await?;
        let page = enrol_page(
            &visitor,
            &secret,
            Some(
                "That code does not match. Check the time on your device and try the next code."
                    .into(),
            ),
        )?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, html(&page)?).into_response());
    };

    let codes = recovery::generate();
    let sealed = state
        .keyring
        .seal(secret.as_bytes(), session.staff_id.as_bytes());
    let lifetime = state.config.session_absolute_hours * HOUR;
    let mut tx = state.db.begin().await?;
    store::enable_totp(&mut tx, &session.staff_id, &sealed, step, now).await?;
    attempt.succeeded(&mut tx, &account_key).await?;
    recovery::store(&mut tx, &state.keyring, &session.staff_id, &codes).await?;
    let token = session::advance(&mut tx, &session.id, Stage::Full, now, now + lifetime).await?;
    session::record_mfa(&mut tx, &session.id, &session.staff_id, "local_totp").await?;
    store::record_login(&mut tx, &session.staff_id, now).await?;
    audit::append(
        &mut tx,
        now,
        &ctx.meta(),
        AuditEvent::new(actor, "mfa.enrol", target).detail("recovery_codes_issued", codes.len()),
    )
    .await?;
    tx.commit().await?;
    let mut response = html(&RecoveryCodesPage { codes })?.into_response();
    set_cookie(
        &mut response,
        &ctx.set_cookie(SESSION_COOKIE, &token, "Strict", None),
    );
    Ok(response)
}

async fn logout_post(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: axum::http::HeaderMap,
) -> AppResult<Response> {
    let now = state.now();
    let session = visitor.session()?;
    let mut tx = state.db.begin().await?;
    session::end(&mut tx, &session.staff_id, &session.id).await?;
    audit::append(
        &mut tx,
        now,
        &visitor.ctx.meta(),
        AuditEvent::new(
            visitor.actor(),
            "auth.logout",
            format!("staff:{}", session.staff_id),
        ),
    )
    .await?;
    tx.commit().await?;
    // A session that came from the identity provider also ends there, when it offers that.
    let end_session = if session.auth_method.as_deref() == Some("sso") {
        super::sso::pages::end_session_url(&state, &visitor.ctx, &headers).await
    } else {
        None
    };
    let mut response = match end_session {
        Some(target) => html(&super::sso::pages::ProviderRedirectPage {
            title: "You have logged out",
            message: "You have logged out of trustplane. Now ending your session at your \
                      identity provider.",
            target,
            link_text: "Log out at the identity provider",
        })?
        .into_response(),
        None => Redirect::to("/login?notice=logged_out").into_response(),
    };
    set_cookie(&mut response, &visitor.ctx.clear_cookie(SESSION_COOKIE));
    Ok(response)
}
