//! The portal's route registry. Every route is declared here with the access it needs, and
//! the router is built only from this list, so a route cannot exist without a rule. The
//! route × role test walks the same list.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;

use crate::app::AppState;
use crate::audit::{self, AuditEvent, Outcome};
use crate::authn::session::{self, ActiveSession, Stage};
use crate::crypto::{constant_time_eq, random_token};
use crate::error::AppError;
use crate::web::{RequestCtx, read_cookie};

/// Cookie that carries the session token.
pub const SESSION_COOKIE: &str = "tp_session";
/// Cookie that binds CSRF tokens for visitors without a session (login, setup).
pub const PRE_COOKIE: &str = "tp_pre";

/// What a request must bring to reach a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; no session is looked up and nothing may change state (health, static files).
    Public,
    /// Anyone, on a page with forms (login, setup): CSRF is bound to a pre-session cookie.
    PublicForm,
    /// Any session, whatever its stage (logout).
    AnySession,
    /// A session part-way through login, at exactly this stage.
    Pending(Stage),
    /// A fully authenticated session whose roles allow (resource, action).
    Rbac(&'static str, &'static str),
}

/// One portal route.
pub struct PortalRoute {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    /// Largest request body this route reads; `None` is `portal_body_limit_bytes`.
    pub body_limit: Option<usize>,
    handler: MethodRouter<AppState>,
}

impl PortalRoute {
    pub fn get<H, T>(path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        Self {
            method: Method::GET,
            path,
            access,
            body_limit: None,
            handler: axum::routing::get(handler),
        }
    }

    pub fn post<H, T>(path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        Self {
            method: Method::POST,
            path,
            access,
            body_limit: None,
            handler: axum::routing::post(handler),
        }
    }

    /// Lets this one route read bodies up to `bytes` (a file upload) while every other
    /// route keeps the small portal limit.
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }
}

/// Every route of the process, gathered from the capabilities.
pub fn all() -> Vec<PortalRoute> {
    let mut routes = Vec::new();
    routes.extend(super::operations::routes());
    routes.extend(super::dashboard::routes());
    routes.extend(crate::authn::pages::routes());
    routes.extend(crate::authn::sso::pages::routes());
    routes.extend(crate::authn::account::routes());
    routes.extend(crate::staff::pages::routes());
    routes.extend(crate::audit::pages::routes());
    routes.extend(crate::customers::pages::routes());
    routes.extend(crate::keys::pages::routes());
    routes.extend(crate::jobs::pages::routes());
    routes.extend(crate::notify::pages::routes());
    routes.extend(crate::oncall::pages::routes());
    routes.extend(crate::sla::pages::routes());
    routes.extend(crate::incidents::pages::routes());
    routes.extend(crate::alerts::pages::routes());
    routes.extend(crate::findings::pages::routes());
    routes.extend(crate::findings::engagements::pages::routes());
    routes.extend(crate::reviews::pages::routes());
    routes.extend(crate::disclosures::pages::routes());
    routes.extend(crate::disclosures::public::routes());
    routes.extend(crate::disclosures::policy::routes());
    routes.extend(crate::vendors::pages::routes());
    routes.extend(crate::vendors::public::routes());
    routes.extend(crate::controls::pages::routes());
    routes.extend(crate::controls::answers_pages::routes());
    routes.extend(crate::controls::public::routes());
    routes.extend(crate::evidence::pages::routes());
    routes
}

/// (method, path, access) of every route, for tests and documentation.
pub fn table() -> Vec<(Method, &'static str, Access)> {
    all()
        .into_iter()
        .map(|r| (r.method, r.path, r.access))
        .collect()
}

/// The router built from [`all`], each route behind its guard.
pub fn build(state: AppState) -> Router<AppState> {
    let mut by_path: BTreeMap<&'static str, MethodRouter<AppState>> = BTreeMap::new();
    for route in all() {
        let access = route.access;
        let limit = route
            .body_limit
            .unwrap_or(state.config.portal_body_limit_bytes);
        // The inner limit is what extractors such as `Multipart` allow; the guard enforces
        // the same limit while it buffers the body for the CSRF check.
        let guarded = route
            .handler
            .layer(DefaultBodyLimit::max(limit))
            .layer(from_fn_with_state(
                state.clone(),
                move |state: State<AppState>, req: Request, next: Next| {
                    guard(access, limit, state, req, next)
                },
            ));
        let merged = match by_path.remove(route.path) {
            Some(existing) => existing.merge(guarded),
            None => guarded,
        };
        by_path.insert(route.path, merged);
    }
    let mut router = Router::new();
    for (path, method_router) in by_path {
        router = router.route(path, method_router);
    }
    router.fallback(|| async { AppError::NotFound })
}

/// Who is asking, as far as the guard has established. Handlers extract this.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub ctx: RequestCtx,
    pub session: Option<ActiveSession>,
    /// The CSRF token forms on this page must carry.
    pub csrf: String,
}

impl Visitor {
    /// The session, which the guard has already required for non-public routes.
    pub fn session(&self) -> Result<&ActiveSession, AppError> {
        self.session.as_ref().ok_or(AppError::LoginRequired)
    }

    /// The audit actor for this visitor.
    pub fn actor(&self) -> String {
        match &self.session {
            Some(s) => format!("staff:{}", s.email),
            None => "anonymous".to_owned(),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Visitor {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Visitor>()
            .cloned()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("route has no guard")))
    }
}

/// Authenticates, authorises and checks CSRF before any handler runs.
async fn guard(
    access: Access,
    body_limit: usize,
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    match guard_inner(access, body_limit, &state, req, next).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn guard_inner(
    access: Access,
    body_limit: usize,
    state: &AppState,
    mut req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let ctx = req
        .extensions()
        .get::<RequestCtx>()
        .cloned()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("request context missing")))?;
    let now = state.now();
    if access == Access::Public {
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return Err(AppError::Csrf);
        }
        req.extensions_mut().insert(Visitor {
            ctx,
            session: None,
            csrf: String::new(),
        });
        return Ok(next.run(req).await);
    }

    let token = read_cookie(req.headers(), &ctx.cookie_name(SESSION_COOKIE));
    let session = match &token {
        Some(token) => {
            let idle = state.config.session_idle_minutes * crate::clock::MINUTE;
            session::lookup(&state.db, token, now, idle).await?
        }
        None => None,
    };
    let stale_cookie = token.is_some() && session.is_none();

    match access {
        Access::Public | Access::PublicForm => {}
        Access::AnySession => {
            if session.is_none() {
                return Err(AppError::LoginRequired);
            }
        }
        Access::Pending(stage) => match &session {
            Some(s) if s.stage == stage => {}
            Some(s) => return Ok(redirect_to_stage(s.stage)),
            None => return Err(AppError::LoginRequired),
        },
        Access::Rbac(resource, action) => match &session {
            Some(s) if s.stage == Stage::Full => {
                if !state.authz.allows(&s.roles, resource, action) {
                    let event = AuditEvent::new(
                        format!("staff:{}", s.email),
                        "authz.denied",
                        format!("route:{}", req.uri().path()),
                    )
                    .outcome(Outcome::Denied)
                    .detail("method", req.method().as_str())
                    .detail("resource", resource)
                    .detail("action", action);
                    audit::append_alone(&state.db, now, &ctx.meta(), event).await?;
                    return Err(AppError::Forbidden);
                }
            }
            Some(s) => return Ok(redirect_to_stage(s.stage)),
            None => return Err(AppError::LoginRequired),
        },
    }

    // CSRF: bound to the session, or to a pre-session cookie for anonymous forms.
    let pre_cookie = read_cookie(req.headers(), &ctx.cookie_name(PRE_COOKIE));
    let mut new_pre_cookie = None;
    let csrf = match (&session, &pre_cookie) {
        (Some(s), _) => state.keyring.session_mac("csrf", s.id.as_bytes()),
        (None, Some(pre)) => state.keyring.session_mac("csrf-pre", pre.as_bytes()),
        (None, None) => {
            let pre = random_token(16);
            let token = state.keyring.session_mac("csrf-pre", pre.as_bytes());
            new_pre_cookie = Some(pre);
            token
        }
    };
    let safe_method = matches!(*req.method(), Method::GET | Method::HEAD);
    if !safe_method {
        let fresh_binding = new_pre_cookie.is_some();
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, body_limit)
            .await
            .map_err(|_| AppError::TooLarge)?;
        let header_token = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let submitted = match header_token {
            Some(token) => Some(token),
            None => match multipart_boundary(&parts.headers) {
                Some(boundary) => multipart_csrf(bytes.clone(), boundary).await,
                None => url::form_urlencoded::parse(&bytes)
                    .find(|(k, _)| k == "csrf")
                    .map(|(_, v)| v.into_owned()),
            },
        };
        let valid = !fresh_binding && submitted.is_some_and(|t| constant_time_eq(&t, &csrf));
        if !valid {
            tracing::warn!(request_id = %ctx.request_id, "csrf token missing or wrong");
            return Err(AppError::Csrf);
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }

    req.extensions_mut().insert(Visitor {
        ctx: ctx.clone(),
        session,
        csrf,
    });
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    if stale_cookie
        && !headers.contains_key(header::SET_COOKIE)
        && let Ok(value) = HeaderValue::from_str(&ctx.clear_cookie(SESSION_COOKIE))
    {
        headers.append(header::SET_COOKIE, value);
    }
    if let Some(pre) = new_pre_cookie {
        let cookie = ctx.set_cookie(PRE_COOKIE, &pre, "Lax", None);
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// The boundary of a `multipart/form-data` body (upload forms), if it is one.
fn multipart_boundary(headers: &axum::http::HeaderMap) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    multer::parse_boundary(content_type).ok()
}

/// The `csrf` field of a buffered multipart body. Upload forms put it first, so the file
/// parts after it are skipped unread; a body that does not parse has no token.
async fn multipart_csrf(body: axum::body::Bytes, boundary: String) -> Option<String> {
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    while let Ok(Some(field)) = multipart.next_field().await {
        if field.name() == Some("csrf") {
            return field.text().await.ok();
        }
    }
    None
}

fn redirect_to_stage(stage: Stage) -> Response {
    let to = match stage {
        Stage::Enrol => "/mfa/enrol",
        Stage::Mfa => "/login/totp",
        Stage::Full => "/",
    };
    axum::response::Redirect::to(to).into_response()
}
