//! `POST /demo/v1/faces/detect`: the detection pipeline without a key, rate-limited per
//! client network (governor in memory on one node; a shared GCRA row per network in
//! PostgreSQL when several nodes share it), with demo retention (at most 7 days), a
//! small JPEG preview as the stored copy, and a global cap on the bytes demo images hold.

use axum::Json;
use axum::extract::{Request, State};

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
///
/// Both kinds are the same GCRA: `requests` per minute with a burst of `requests`.
pub enum DemoLimiter {
    /// One node (the embedded SQLite default): governor, in memory, no I/O per request.
    Node(crate::rate_limit::NodeLimiter),
    /// Several nodes on one PostgreSQL: one row per network in `demo_rate_limits`, updated
    /// atomically, so N nodes together still allow the promised rate, not N times it.
    Shared {
        /// Milliseconds between requests at the sustained rate.
        interval_ms: i64,
        /// How far ahead of now a network's theoretical arrival time may run (the burst).
        tolerance_ms: i64,
    },
}

impl std::fmt::Debug for DemoLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DemoLimiter::Node(_) => f.write_str("DemoLimiter::Node"),
            DemoLimiter::Shared { .. } => f.write_str("DemoLimiter::Shared"),
        }
    }
}

impl DemoLimiter {
    /// In memory, for one node.
    pub fn per_minute(requests: u32) -> Self {
        DemoLimiter::Node(crate::rate_limit::NodeLimiter::per_minute(requests))
    }

    /// In the shared database, for several nodes.
    pub fn shared_per_minute(requests: u32) -> Self {
        let interval_ms = (60_000 / i64::from(requests.max(1))).max(1);
        DemoLimiter::Shared {
            interval_ms,
            tolerance_ms: interval_ms * i64::from(requests.max(1)),
        }
    }

    /// `Ok` or `RateLimited` with the seconds to wait.
    pub async fn check(
        &self,
        state: &AppState,
        client: Option<ClientNetwork>,
    ) -> Result<(), ApiError> {
        match self {
            DemoLimiter::Node(limiter) => limiter
                .check(client)
                .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs }),
            DemoLimiter::Shared {
                interval_ms,
                tolerance_ms,
            } => {
                let network = client.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
                // No address at rest, not even a network: the row is keyed by an HMAC.
                let network_hash = state
                    .keyring
                    .pepper_hmac_hex(format!("demo-limit:{network}").as_bytes());
                let now = state.now();
                let mut conn = state.db.pool.acquire().await?;
                let wait_ms =
                    claim(&mut conn, &network_hash, now, *interval_ms, *tolerance_ms).await?;
                match wait_ms {
                    None => Ok(()),
                    Some(ms) => Err(ApiError::RateLimited {
                        retry_after_secs: u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1),
                    }),
                }
            }
        }
    }
}

/// One GCRA step in the database: the request is allowed when the network's theoretical
/// arrival time, advanced by one interval, stays within the tolerance of now. The update and
/// the test are one statement, so concurrent requests from any node see each other.
/// `None` when allowed, otherwise the milliseconds until a request would be.
async fn claim(
    conn: &mut sqlx::AnyConnection,
    network_hash: &str,
    now: crate::clock::Millis,
    interval_ms: i64,
    tolerance_ms: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let allowed = sqlx::query_scalar::<_, i64>(
        "INSERT INTO demo_rate_limits (network_hash, tat) VALUES ($1, $2 + $3) \
         ON CONFLICT (network_hash) DO UPDATE \
           SET tat = (CASE WHEN demo_rate_limits.tat > $2 THEN demo_rate_limits.tat ELSE $2 END) + $3 \
           WHERE (CASE WHEN demo_rate_limits.tat > $2 THEN demo_rate_limits.tat ELSE $2 END) + $3 - $2 <= $4 \
         RETURNING tat",
    )
    .bind(network_hash)
    .bind(now)
    .bind(interval_ms)
    .bind(tolerance_ms)
    .fetch_optional(&mut *conn)
    .await?;
    if allowed.is_some() {
        return Ok(None);
    }
    let tat: Option<i64> =
        sqlx::query_scalar("SELECT tat FROM demo_rate_limits WHERE network_hash = $1")
            .bind(network_hash)
            .fetch_optional(&mut *conn)
            .await?;
    let tat = tat.unwrap_or(now).max(now);
    Ok(Some((tat + interval_ms - now - tolerance_ms).max(1)))
}

/// Housekeeping for the retention purge: a row whose arrival time has passed says nothing
/// more than a missing row.
pub async fn sweep(
    conn: &mut sqlx::AnyConnection,
    now: crate::clock::Millis,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM demo_rate_limits WHERE tat < $1")
        .bind(now)
        .execute(conn)
        .await?
        .rows_affected())
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
        (status = 408, description = "The upload did not arrive within `api_upload_timeout_seconds`", body = super::problem::Problem, content_type = "application/problem+json"),
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
    state.demo_limiter.check(&state, network).await?;
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
