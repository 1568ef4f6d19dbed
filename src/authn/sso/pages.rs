//! The SSO routes: start (form post from the login page), the provider's callback, and the
//! same-site finishing step that turns an accepted sign-in into a session.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Refusal;
use super::config::CALLBACK_PATH;
use super::provider::ProviderError;
use super::store::{self, NewFlow};
use crate::app::AppState;
use crate::audit::{self, AuditEvent, Outcome};
use crate::authn::pages::with_session_cookie;
use crate::authn::session::{self, Stage};
use crate::clock::{HOUR, MINUTE, Millis};
use crate::crypto::sha256_hex;
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PRE_COOKIE, PortalRoute, Visitor};
use crate::portal::shell::html;
use crate::web::{RequestCtx, read_cookie};

/// How long a started sign-in may take at the provider.
pub const FLOW_LIFETIME: Millis = 10 * MINUTE;

pub fn routes() -> Vec<PortalRoute> {
    vec![
        PortalRoute::post("/login/sso", Access::PublicForm, sso_start_post),
        PortalRoute::get(CALLBACK_PATH, Access::PublicForm, sso_callback_get),
        PortalRoute::get("/login/sso/finish", Access::PublicForm, sso_finish_get),
    ]
}

#[derive(Template)]
#[template(path = "authn/sso_continue.html")]
struct ContinuePage;

/// A same-site page that moves the browser on to the provider. A plain redirect answering
/// a form post would be blocked by the portal's CSP (`form-action 'self'` also covers the
/// redirects that follow a submission); a meta refresh is an ordinary navigation.
#[derive(Template)]
#[template(path = "authn/sso_redirect.html")]
pub(crate) struct ProviderRedirectPage {
    pub title: &'static str,
    pub message: &'static str,
    pub target: String,
    pub link_text: &'static str,
}

#[derive(Template)]
#[template(path = "authn/sso_refused.html")]
struct RefusedPage {
    reason: &'static str,
    message: &'static str,
}

fn provider(state: &AppState) -> Result<&super::provider::OidcProvider, AppError> {
    state.sso.as_deref().ok_or(AppError::NotFound)
}

/// The callback URL: `redirect_url`, else `public_url`, else the host the browser used.
fn redirect_uri(state: &AppState, ctx: &RequestCtx, headers: &HeaderMap) -> AppResult<String> {
    let sso = &state.config.sso;
    if !sso.redirect_url.is_empty() {
        return Ok(sso.redirect_url.clone());
    }
    let public = state.config.public_url.trim_end_matches('/');
    if !public.is_empty() {
        return Ok(format!("{public}{CALLBACK_PATH}"));
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .ok_or_else(|| AppError::BadRequest("The request has no usable Host header.".into()))?;
    let scheme = if ctx.secure { "https" } else { "http" };
    Ok(format!("{scheme}://{host}{CALLBACK_PATH}"))
}

fn binding_of(ctx: &RequestCtx, headers: &HeaderMap) -> Option<String> {
    read_cookie(headers, &ctx.cookie_name(PRE_COOKIE))
        .filter(|c| !c.is_empty() && c.len() <= 128)
        .map(|c| sha256_hex(format!("sso-binding:{c}").as_bytes()))
}

async fn sso_start_post(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
) -> AppResult<Response> {
    let provider = provider(&state)?;
    let ctx = &visitor.ctx;
    let now = state.now();
    // The guard has checked CSRF against the pre-session cookie, so it is present.
    let Some(binding_hash) = binding_of(ctx, &headers) else {
        return Err(AppError::Csrf);
    };
    let redirect = redirect_uri(&state, ctx, &headers)?;
    let started = match provider.start(&redirect).await {
        Ok(started) => started,
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on cannot start");
            return refuse(&state, ctx, Refusal::ProviderUnreachable, "anonymous", None).await;
        }
    };
    let id = uuid::Uuid::new_v4().to_string();
    let nonce_enc = state.keyring.seal(started.nonce.as_bytes(), id.as_bytes());
    let verifier_enc = state
        .keyring
        .seal(started.pkce_verifier.as_bytes(), id.as_bytes());
    let mut tx = state.db.begin().await?;
    store::insert_flow(
        &mut tx,
        &id,
        &NewFlow {
            binding_hash: &binding_hash,
            state_hash: &sha256_hex(started.state.as_bytes()),
            nonce_enc: &nonce_enc,
            verifier_enc: &verifier_enc,
            redirect_uri: &redirect,
        },
        now,
        now + FLOW_LIFETIME,
    )
    .await?;
    tx.commit().await?;
    Ok(html(&ProviderRedirectPage {
        title: "Continuing to your identity provider",
        message: "You are being sent to your identity provider to sign in.",
        target: started.authorize_url,
        link_text: "Continue to the identity provider",
    })?
    .into_response())
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    /// RFC 9207: the provider names itself, so a response from another one is refused.
    iss: Option<String>,
}

/// Audits a refusal and shows the page that explains it.
async fn refuse(
    state: &AppState,
    ctx: &RequestCtx,
    refusal: Refusal,
    target: &str,
    check: Option<&str>,
) -> AppResult<Response> {
    let mut event = AuditEvent::new("anonymous", "sso.login", target)
        .outcome(Outcome::Denied)
        .detail("reason", refusal.code());
    if let Some(check) = check {
        event = event.detail("check", check);
    }
    audit::append_alone(&state.db, state.now(), &ctx.meta(), event).await?;
    state.metrics.login_failures.inc();
    let status = match refusal {
        Refusal::ProviderUnreachable => StatusCode::BAD_GATEWAY,
        Refusal::BadState | Refusal::ProviderError => StatusCode::BAD_REQUEST,
        _ => StatusCode::FORBIDDEN,
    };
    let page = RefusedPage {
        reason: refusal.code(),
        message: refusal.message(),
    };
    Ok((status, html(&page)?).into_response())
}

async fn sso_callback_get(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> AppResult<Response> {
    let provider = provider(&state)?;
    let ctx = &visitor.ctx;
    let now = state.now();
    let bad_state = || refuse(&state, ctx, Refusal::BadState, "anonymous", None);

    // The flow is found by its state and must belong to this browser's pre-session cookie.
    let Some(state_param) = query.state.filter(|s| s.len() <= 256) else {
        return bad_state().await;
    };
    let Some(binding_hash) = binding_of(ctx, &headers) else {
        return bad_state().await;
    };
    let mut conn = state.db.pool.acquire().await?;
    let flow = store::find_by_state(&mut conn, &sha256_hex(state_param.as_bytes())).await?;
    let Some(flow) = flow.filter(|f| {
        crate::crypto::constant_time_eq(&f.binding_hash, &binding_hash)
            && f.expires_at > now
            && f.verified_at.is_none()
    }) else {
        return bad_state().await;
    };
    // One callback per flow: a replayed state (and the code with it) stops here.
    if !store::claim_flow(&mut conn, &flow.id, now).await? {
        return bad_state().await;
    }
    drop(conn);

    let issuer = provider.config().issuer_url.trim();
    if query
        .iss
        .as_deref()
        .is_some_and(|iss| iss.trim_end_matches('/') != issuer.trim_end_matches('/'))
    {
        return bad_state().await;
    }
    if query.error.is_some() {
        let mut conn = state.db.pool.acquire().await?;
        store::delete_flow(&mut conn, &flow.id).await?;
        return refuse(&state, ctx, Refusal::ProviderError, "anonymous", None).await;
    }
    let Some(code) = query.code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return refuse(&state, ctx, Refusal::ProviderError, "anonymous", None).await;
    };
    let open = |sealed: &str| -> AppResult<String> {
        let bytes = state
            .keyring
            .open(sealed, flow.id.as_bytes())
            .map_err(|e| AppError::Internal(anyhow::anyhow!("cannot open SSO flow: {e}")))?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| AppError::Internal(anyhow::anyhow!("SSO flow secret is not text")))
    };
    let nonce = open(&flow.nonce_enc)?;
    let verifier = open(&flow.verifier_enc)?;

    let identity = match provider
        .finish(&flow.redirect_uri, &code, &verifier, &nonce, now)
        .await
    {
        Ok(identity) => identity,
        Err(error) => {
            tracing::warn!(error = %error, "single sign-on callback refused");
            let (refusal, check) = match &error {
                ProviderError::Unreachable(_) => (Refusal::ProviderUnreachable, None),
                ProviderError::CodeRejected(_) => (Refusal::CodeRejected, None),
                ProviderError::TokenInvalid { check, .. } => {
                    (Refusal::TokenInvalid(check), Some(*check))
                }
            };
            return refuse(&state, ctx, refusal, "anonymous", check).await;
        }
    };

    let config = &state.config.sso;
    let target = match &identity.email {
        Some(email) => format!("email:{}", crate::web::clip(email, 254)),
        None => format!("sso:{}", crate::web::clip(&identity.subject, 255)),
    };
    let mut tx = state.db.begin().await?;
    let resolved =
        match super::resolve_account(&mut tx, config, &identity, &ctx.meta(), now).await? {
            Ok(resolved) => resolved,
            Err(refusal) => {
                drop(tx);
                return refuse(&state, ctx, refusal, &target, None).await;
            }
        };
    super::apply_role_mapping(&mut tx, config, &identity, &resolved, &ctx.meta(), now).await?;
    let idp_mfa = !config.require_local_totp
        && config.idp_asserted_mfa(&identity.amr, identity.acr.as_deref());
    store::accept_flow(
        &mut tx,
        &flow.id,
        &resolved.staff_id,
        idp_mfa,
        &identity.amr.join(" "),
    )
    .await?;
    tx.commit().await?;
    // A same-site page: the browser's next request carries Strict cookies again.
    Ok(html(&ContinuePage)?.into_response())
}

async fn sso_finish_get(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
) -> AppResult<Response> {
    provider(&state)?;
    let ctx = &visitor.ctx;
    let now = state.now();
    let Some(binding_hash) = binding_of(ctx, &headers) else {
        return refuse(&state, ctx, Refusal::BadState, "anonymous", None).await;
    };
    let mut tx = state.db.begin().await?;
    let Some(verified) = store::take_verified(&mut tx, &binding_hash, now).await? else {
        drop(tx);
        return refuse(&state, ctx, Refusal::BadState, "anonymous", None).await;
    };
    let Some(account) = crate::staff::store::find(&mut *tx, &verified.staff_id)
        .await?
        .filter(|a| !a.disabled)
    else {
        tx.commit().await?;
        let target = format!("staff:{}", verified.staff_id);
        return refuse(&state, ctx, Refusal::DisabledAccount, &target, None).await;
    };
    if let Some(old) = &visitor.session {
        session::end(&mut tx, &old.staff_id, &old.id).await?;
    }
    let (stage, expires_at) = if verified.idp_mfa {
        (
            Stage::Full,
            now + state.config.session_absolute_hours * HOUR,
        )
    } else if account.totp_enabled {
        (Stage::Mfa, now + session::PENDING_LIFETIME)
    } else {
        (Stage::Enrol, now + session::PENDING_LIFETIME)
    };
    let issued =
        session::create(&mut tx, &account.id, stage, now, expires_at, &ctx.origin()).await?;
    session::set_auth_method(&mut tx, &issued.id, "sso").await?;
    if stage == Stage::Full {
        session::record_mfa(&mut tx, &issued.id, &account.id, "idp_amr").await?;
        crate::staff::store::record_login(&mut tx, &account.id, now).await?;
    }
    audit::append(
        &mut tx,
        now,
        &ctx.meta(),
        AuditEvent::new(
            format!("staff:{}", account.email),
            "sso.login",
            format!("staff:{}", account.id),
        )
        .detail("amr", verified.amr.as_str())
        .detail(
            "mfa",
            if verified.idp_mfa {
                "idp_amr"
            } else {
                "step_up"
            },
        )
        .detail("next", stage.as_str())
        .detail("flow", verified.id.as_str()),
    )
    .await?;
    tx.commit().await?;
    let to = match stage {
        Stage::Full => "/",
        Stage::Mfa => "/login/totp",
        Stage::Enrol => "/mfa/enrol",
    };
    Ok(with_session_cookie(ctx, &issued.token, to))
}

/// Where logout sends a person whose session came from SSO: the provider's end-session
/// endpoint when it advertises one.
pub async fn end_session_url(
    state: &AppState,
    ctx: &RequestCtx,
    headers: &HeaderMap,
) -> Option<String> {
    let provider = state.sso.as_deref()?;
    let endpoint = provider.end_session_endpoint().await?;
    let callback = redirect_uri(state, ctx, headers).ok()?;
    let after = callback.replace(CALLBACK_PATH, "/login?notice=logged_out");
    let mut url = url::Url::parse(&endpoint).ok()?;
    url.query_pairs_mut()
        .append_pair("client_id", &provider.config().client_id)
        .append_pair("post_logout_redirect_uri", &after);
    Some(url.to_string())
}
