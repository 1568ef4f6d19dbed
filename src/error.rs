//! One error type for the portal. Each variant becomes a readable HTML page with a stable
//! `data-error` code; database and internal failures are logged with the request id and
//! shown without detail. (The customer API answers RFC 9457 problem+json instead.)

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

/// What went wrong, in terms a page can explain.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    /// The session is missing or has ended: go and log in.
    #[error("login required")]
    LoginRequired,
    /// Logged in, but no role allows this.
    #[error("forbidden")]
    Forbidden,
    /// The form's CSRF token was missing or wrong.
    #[error("csrf")]
    Csrf,
    /// The input cannot be used; the message says why.
    #[error("{0}")]
    BadRequest(String),
    /// The body was larger than allowed.
    #[error("payload too large")]
    TooLarge,
    /// Someone else changed the record first, or the change would break a rule.
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached right now.
    #[error("unavailable")]
    Unavailable,
    /// Too much work is queued (e.g. password hashing); try again after a short wait.
    #[error("busy")]
    Busy { retry_after_seconds: u64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&err) {
            tracing::warn!(error = %err, "database unavailable");
            AppError::Unavailable
        } else {
            AppError::Internal(err.into())
        }
    }
}

impl From<askama::Error> for AppError {
    fn from(err: askama::Error) -> Self {
        AppError::Internal(anyhow::anyhow!("template: {err}"))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    code: &'a str,
    title: &'a str,
    message: &'a str,
}

impl AppError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            AppError::NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            AppError::LoginRequired => {
                (StatusCode::UNAUTHORIZED, "login_required", "Please log in")
            }
            AppError::Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Not permitted"),
            AppError::Csrf => (StatusCode::FORBIDDEN, "csrf", "This form has expired"),
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", "Check your input"),
            AppError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", "Too much data"),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Not changed"),
            AppError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
            ),
            AppError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy", "Busy right now"),
            AppError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong",
            ),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if matches!(self, AppError::LoginRequired) {
            return Redirect::to("/login").into_response();
        }
        if let AppError::Internal(err) = &self {
            tracing::error!(error = format!("{err:#}"), "request failed");
        }
        let (status, code, title) = self.parts();
        let message = match &self {
            AppError::NotFound => "There is nothing at this address, or you cannot see it.".into(),
            AppError::Forbidden => {
                "Your roles do not allow this. Ask an administrator if you need access; \
                 this attempt has been recorded."
                    .into()
            }
            AppError::Csrf => {
                "The form's security token was missing or did not match. Nothing was changed. \
                 Go back, reload the page and try again."
                    .into()
            }
            AppError::BadRequest(msg) | AppError::Conflict(msg) => msg.clone(),
            AppError::TooLarge => {
                "The request was larger than this form accepts. Nothing was changed.".into()
            }
            AppError::Unavailable => {
                "The database cannot be reached right now. Nothing was changed. Try again in a \
                 minute; if this persists, tell the operators."
                    .into()
            }
            AppError::Busy {
                retry_after_seconds,
            } => format!(
                "Too many sign-in checks are running right now. Nothing was changed. Try \
                 again in {retry_after_seconds} seconds."
            ),
            AppError::Internal(_) => {
                "An unexpected error occurred and was logged. Nothing was changed.".into()
            }
            AppError::LoginRequired => String::new(),
        };
        let page = ErrorPage {
            status: status.as_u16(),
            code,
            title,
            message: &message,
        };
        let body = page
            .render()
            .unwrap_or_else(|_| format!("{} {title}: {message}", status.as_u16()));
        let mut response = (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response();
        if let AppError::Busy {
            retry_after_seconds,
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after_seconds.into());
        }
        response
    }
}

/// Result alias for portal handlers.
pub type AppResult<T> = Result<T, AppError>;
