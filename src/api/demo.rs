//! `POST /demo/v1/faces/detect`: the detection pipeline without a key, rate-limited per
//! client IP (governor, in memory per node), with demo retention (at most 7 days).

use std::num::NonZeroU32;

use axum::Json;
use axum::extract::{Request, State};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::faces::{DetectResponse, Owner, detect_and_store};
use super::problem::ApiError;
use crate::app::AppState;
use crate::images::ImageKind;
use crate::web::RequestCtx;

/// Per-IP limiter for the demo endpoint.
pub struct DemoLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for DemoLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DemoLimiter")
    }
}

impl DemoLimiter {
    pub fn per_minute(requests: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(requests.max(1)).unwrap_or(NonZeroU32::MIN));
        Self {
            limiter: RateLimiter::keyed(quota),
        }
    }

    /// `Ok` or the seconds to wait.
    pub fn check(&self, client: &str) -> Result<(), u64> {
        if self.limiter.len() > 100_000 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&client.to_owned())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            })
    }
}

#[utoipa::path(
    post,
    path = "/demo/v1/faces/detect",
    tag = "demo",
    request_body(
        description = "Same as /v1/faces/detect.",
        content(
            (Vec<u8> = "image/jpeg"),
            (Vec<u8> = "image/png"),
            (Vec<u8> = "image/webp"),
            (Vec<u8> = "multipart/form-data")
        )
    ),
    responses(
        (status = 200, description = "Faces detected (possibly none); demo images are kept at most 7 days", body = DetectResponse),
        (status = 400, description = "Malformed request", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Image too large", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not a JPEG, PNG or WebP", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Undecodable image or over the pixel limit", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limit for this client address; see Retry-After", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Processing capacity exhausted; see Retry-After", body = super::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn demo_detect_post(
    State(state): State<AppState>,
    ctx: RequestCtx,
    req: Request,
) -> Result<Json<DetectResponse>, ApiError> {
    let client = ctx
        .client_ip
        .clone()
        .unwrap_or_else(|| "unknown".to_owned());
    state
        .demo_limiter
        .check(&client)
        .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
    let owner = Owner {
        kind: ImageKind::Demo,
        customer_id: None,
        key_id: None,
        retention_days: state.config.demo_retention_days,
    };
    detect_and_store(&state, owner, req).await.map(Json)
}
