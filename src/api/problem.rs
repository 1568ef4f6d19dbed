//! RFC 9457 problem details for the customer API. Every 4xx/5xx answer is
//! `application/problem+json` with a stable `type` that clients can branch on.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// A problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem, e.g. `urn:trustplane:problem:unauthorized`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary, the same for every occurrence of this type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What happened this time and what to do.
    pub detail: String,
}

/// Everything the API can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Malformed(String),
    /// Missing, unknown, revoked or expired key: one answer for all, so nothing is revealed.
    #[error("unauthorized")]
    Unauthorized,
    #[error("missing scope {0}")]
    MissingScope(&'static str),
    #[error("not found")]
    NotFound,
    #[error("too large")]
    TooLarge { max_bytes: usize },
    /// The upload did not arrive within `api_upload_timeout_seconds`.
    #[error("upload too slow")]
    UploadTimeout { seconds: u64 },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    /// All detection workers and queue places are taken.
    #[error("saturated")]
    Saturated,
    /// The demo's stored images have reached `demo_storage_quota_bytes`.
    #[error("demo storage full")]
    DemoStorageFull { retention_days: i64 },
    #[error("unavailable")]
    Unavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&err) {
            ApiError::Unavailable
        } else {
            ApiError::Internal(err.into())
        }
    }
}

/// Every problem the API can answer, as (status, type slug, title); the OpenAPI document
/// lists them per status. A test keeps this table and [`ApiError::kind`] in step.
pub const PROBLEM_TYPES: [(u16, &str, &str); 13] = [
    (400, "malformed-request", "Malformed request"),
    (401, "unauthorized", "Missing or invalid API key"),
    (403, "missing-scope", "API key lacks the required scope"),
    (404, "not-found", "Not found"),
    (408, "upload-timeout", "Upload too slow"),
    (413, "payload-too-large", "Image too large"),
    (415, "unsupported-media-type", "Unsupported media type"),
    (422, "unprocessable-image", "The image cannot be processed"),
    (429, "rate-limited", "Too many requests"),
    (503, "saturated", "Processing capacity exhausted"),
    (503, "unavailable", "Temporarily unavailable"),
    (507, "demo-storage-full", "Demo storage is full"),
    (500, "internal", "Internal error"),
];

/// The problem types (slug, title) an answer with this status can carry.
pub fn types_for_status(status: u16) -> Vec<(&'static str, &'static str)> {
    PROBLEM_TYPES
        .iter()
        .filter(|(s, _, _)| *s == status)
        .map(|(_, slug, title)| (*slug, *title))
        .collect()
}

impl ApiError {
    /// (status, type slug, title) — the stable part.
    pub fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Malformed(_) => (
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "Malformed request",
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Missing or invalid API key",
            ),
            ApiError::MissingScope(_) => (
                StatusCode::FORBIDDEN,
                "missing-scope",
                "API key lacks the required scope",
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::UploadTimeout { .. } => (
                StatusCode::REQUEST_TIMEOUT,
                "upload-timeout",
                "Upload too slow",
            ),
            ApiError::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Image too large",
            ),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            ApiError::Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable-image",
                "The image cannot be processed",
            ),
            ApiError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
            ApiError::Saturated => (
                StatusCode::SERVICE_UNAVAILABLE,
                "saturated",
                "Processing capacity exhausted",
            ),
            ApiError::DemoStorageFull { .. } => (
                StatusCode::INSUFFICIENT_STORAGE,
                "demo-storage-full",
                "Demo storage is full",
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Malformed(msg)
            | ApiError::UnsupportedMediaType(msg)
            | ApiError::Unprocessable(msg) => msg.clone(),
            ApiError::Unauthorized => {
                "Send a valid, active API key in the X-API-Key header.".into()
            }
            ApiError::MissingScope(scope) => format!("This key does not have the {scope} scope."),
            ApiError::NotFound => "No such resource for this API key.".into(),
            ApiError::TooLarge { max_bytes } => format!("Images may be at most {max_bytes} bytes."),
            ApiError::UploadTimeout { seconds } => format!(
                "The image did not arrive within {seconds} s; send it again over a faster connection."
            ),
            ApiError::RateLimited { retry_after_secs } => {
                format!(
                    "Demo requests are rate-limited per client network; retry in {retry_after_secs} s."
                )
            }
            ApiError::Saturated => "All processing capacity is in use; retry shortly.".into(),
            ApiError::DemoStorageFull { retention_days } => format!(
                "The public demo has used all of its image storage. Space is freed as demo \
                 images are deleted, at most {retention_days} days after upload; try again \
                 later, or use /v1/faces/detect with an API key."
            ),
            ApiError::Unavailable => "A backing service is unavailable; retry shortly.".into(),
            ApiError::Internal(_) => "An unexpected error occurred and was logged.".into(),
        }
    }
}

/// The `type` URI of a slug.
pub fn problem_type(slug: &str) -> String {
    format!("urn:trustplane:problem:{slug}")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(err) = &self {
            tracing::error!(error = format!("{err:#}"), "api request failed");
        }
        let (status, slug, title) = self.kind();
        let problem = Problem {
            problem_type: problem_type(slug),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
        };
        let body = serde_json::to_string(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        let retry_after = match &self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            ApiError::Saturated | ApiError::Unavailable => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            headers.insert(header::RETRY_AFTER, value);
        }
        if matches!(self, ApiError::Unauthorized) {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("ApiKey header=\"X-API-Key\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_the_api_can_give_is_in_the_documented_table() {
        let all = [
            ApiError::Malformed(String::new()),
            ApiError::Unauthorized,
            ApiError::MissingScope("faces:detect"),
            ApiError::NotFound,
            ApiError::TooLarge { max_bytes: 1 },
            ApiError::UploadTimeout { seconds: 30 },
            ApiError::UnsupportedMediaType(String::new()),
            ApiError::Unprocessable(String::new()),
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
            ApiError::Saturated,
            ApiError::DemoStorageFull { retention_days: 7 },
            ApiError::Unavailable,
            ApiError::Internal(anyhow::anyhow!("x")),
        ];
        assert_eq!(all.len(), PROBLEM_TYPES.len());
        for error in all {
            let (status, slug, title) = error.kind();
            assert!(
                PROBLEM_TYPES.contains(&(status.as_u16(), slug, title)),
                "{slug} is documented"
            );
        }
        assert_eq!(types_for_status(503).len(), 2);
    }
}
