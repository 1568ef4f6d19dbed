//! `POST /demo/v1/faces/detect`: the detection pipeline without a key, rate-limited per
//! client network (governor, in memory per node), with demo retention (at most 7 days), a
//! small JPEG preview as the stored copy, and a global cap on the bytes demo images hold.

use std::num::NonZeroU32;

use axum::Json;
use axum::extract::{Request, State};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::faces::{DetectResponse, Owner, detect_and_store, storage_room};
use super::problem::ApiError;
use crate::app::AppState;
use crate::biometric::StoragePolicy;
use crate::client_net::ClientNetwork;
use crate::images::ImageKind;
use crate::web::RequestCtx;

/// Per-network limiter for the demo endpoint. The key is the client's network (IPv4 /32,
/// IPv6 /64), so a client rotating through the addresses of its /64 stays in one bucket;
/// `None` is every client whose address is unknown, sharing one bucket.
pub struct DemoLimiter {
    limiter: DefaultKeyedRateLimiter<Option<ClientNetwork>>,
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
    pub fn check(&self, client: Option<ClientNetwork>) -> Result<(), u64> {
        if self.limiter.len() > 100_000 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&client).map_err(|not_until| {
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
        (status = 200, description = "Faces detected (possibly none); a JPEG preview of demo images is kept at most 7 days", body = DetectResponse),
        (status = 400, description = "Malformed request", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Image too large", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not a JPEG, PNG or WebP", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Undecodable image or over the pixel limit", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limit for this client network (IPv4 address, IPv6 /64); see Retry-After", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Processing capacity exhausted; see Retry-After", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 507, description = "Demo storage is full (`urn:trustplane:problem:demo-storage-full`): stored demo images have reached the demo's storage quota; space returns as they are deleted at the end of their retention", body = super::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn demo_detect_post(
    State(state): State<AppState>,
    ctx: RequestCtx,
    req: Request,
) -> Result<Json<DetectResponse>, ApiError> {
    let network = ctx.client_ip.as_deref().and_then(ClientNetwork::parse);
    state
        .demo_limiter
        .check(network)
        .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
    let config = &state.config;
    let owner = Owner {
        kind: ImageKind::Demo,
        customer_id: None,
        key_id: None,
        retention_days: config.demo_retention_days,
        storage: StoragePolicy::preview(
            config.stored_image_max_bytes,
            config.demo_stored_max_dimension,
        ),
        storage_quota_bytes: Some(config.demo_storage_quota_bytes),
    };
    // A full quota is refused before the upload is read or analysed, so it costs no worker
    // time; `detect_and_store` checks again with the real size of the copy.
    if owner.retention_days > 0
        && storage_room(&state, ImageKind::Demo, config.demo_storage_quota_bytes).await? == 0
    {
        return Err(ApiError::DemoStorageFull {
            retention_days: owner.retention_days,
        });
    }
    detect_and_store(&state, owner, req).await.map(Json)
}
