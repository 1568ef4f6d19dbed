//! The `X-API-Key` extractor, and per-key request counting.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::problem::ApiError;
use crate::alerts::signals::{ApiCaller, CallerSlot};
use crate::app::AppState;
use crate::keys::model::Scope;
use crate::keys::verify::{VerifiedKey, verify};
use crate::web::RequestCtx;

/// A request authenticated by an API key.
#[derive(Debug, Clone)]
pub struct ApiKey(pub VerifiedKey);

impl ApiKey {
    /// Fails with 403 unless the key has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.0.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::MissingScope(scope.as_str()))
        }
    }
}

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = ApiError;

    #[tracing::instrument(skip_all)]
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let meta = parts
            .extensions
            .get::<RequestCtx>()
            .map(RequestCtx::meta)
            .unwrap_or_default();
        let presented = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok());
        let slot = parts.extensions.get::<CallerSlot>().cloned();
        match verify(state, presented, &meta).await? {
            Ok(key) => {
                if let Some(slot) = slot {
                    slot.set(ApiCaller::Key(key.id.clone()));
                }
                Ok(ApiKey(key))
            }
            Err(reason) => {
                if let Some(slot) = slot {
                    // Only the display prefix of a well-formed key is kept, never the key.
                    let prefix = presented
                        .filter(|p| crate::keys::format::parse(p).is_ok())
                        .map(crate::keys::format::display_prefix);
                    slot.set(ApiCaller::Refused(prefix));
                }
                state.metrics.api_key_failures.inc();
                tracing::info!(?reason, "api key refused");
                Err(ApiError::Unauthorized)
            }
        }
    }
}

/// Counts a request against its key (in memory; written in batches), and against `scope`
/// when the key holds it, then passes the result through.
pub fn counted<T>(
    state: &AppState,
    key: &ApiKey,
    scope: Scope,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    state.key_usage.record_scoped(
        &key.0.id,
        state.now(),
        result.is_err(),
        key.0.allows(scope).then_some(scope),
    );
    result
}
