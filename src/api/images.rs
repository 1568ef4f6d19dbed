//! `GET /v1/images/{id}` (metadata and results, never the pixels) and
//! `DELETE /v1/images/{id}` (erasure on the customer's instruction). A key sees only its own
//! customer's images; any other id is 404, never 403, so ids cannot be probed.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{ApiKey, counted};
use super::faces::{DetectionResult, FaceBox, QualityMeasures, rfc3339};
use super::problem::ApiError;
use crate::app::AppState;
use crate::audit::{self, AuditEvent};
use crate::images;
use crate::keys::model::Scope;
use crate::web::RequestCtx;

/// A processed image's metadata and detection result.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageResponse {
    pub image_id: String,
    /// `production` or `demo`.
    pub kind: String,
    pub format: String,
    pub width: i64,
    pub height: i64,
    pub faces: Vec<FaceBox>,
    pub quality: QualityMeasures,
    pub processing_ms: f64,
    /// RFC 3339.
    pub created_at: String,
    /// Whether the (encrypted, metadata-free) pixels are stored.
    pub stored: bool,
    /// When the stored copy will be deleted, or null when it was never kept.
    pub retained_until: Option<String>,
}

fn valid_id(id: &str) -> bool {
    id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

#[utoipa::path(
    get,
    path = "/v1/images/{id}",
    tag = "images",
    params(("id" = String, Path, description = "The image id returned by detection")),
    responses(
        (status = 200, description = "Metadata and results", body = ImageResponse),
        (status = 401, description = "Missing, unknown, revoked or expired key", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Key lacks images:read", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such image for this key's customer", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn image_get(
    State(state): State<AppState>,
    key: ApiKey,
    Path(id): Path<String>,
) -> Result<Json<ImageResponse>, ApiError> {
    let result = async {
        key.require(Scope::ImagesRead)?;
        if !valid_id(&id) {
            return Err(ApiError::NotFound);
        }
        let image = images::find_for_customer(&state.db, &id, &key.0.customer_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        let result: DetectionResult =
            serde_json::from_str(&image.result).map_err(|e| ApiError::Internal(e.into()))?;
        Ok(ImageResponse {
            image_id: image.id,
            kind: image.kind,
            format: image.format,
            width: image.width,
            height: image.height,
            faces: result.faces,
            quality: result.quality,
            processing_ms: result.processing_ms,
            created_at: rfc3339(image.created_at),
            stored: image.blob_key.is_some(),
            retained_until: image.retained_until.map(rfc3339),
        })
    }
    .await;
    counted(&state, &key, Scope::ImagesRead, result).map(Json)
}

#[utoipa::path(
    delete,
    path = "/v1/images/{id}",
    tag = "images",
    params(("id" = String, Path, description = "The image id returned by detection")),
    responses(
        (status = 204, description = "The stored copy and its record are gone"),
        (status = 401, description = "Missing, unknown, revoked or expired key", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Key lacks images:delete", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such image for this key's customer", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn image_delete(
    State(state): State<AppState>,
    ctx: RequestCtx,
    key: ApiKey,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let result = async {
        key.require(Scope::ImagesDelete)?;
        if !valid_id(&id) {
            return Err(ApiError::NotFound);
        }
        let image = images::find_for_customer(&state.db, &id, &key.0.customer_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        // Blob first: if the record went first and the blob delete failed, pixels would
        // remain with nothing pointing at them.
        if let Some(blob) = &image.blob_key {
            state.blobs.delete(blob).await?;
        }
        let now = state.now();
        let mut tx = state.db.begin().await?;
        images::delete(&mut tx, &image.id).await?;
        audit::append(
            &mut tx,
            now,
            &ctx.meta(),
            AuditEvent::new(
                format!("key:{}", key.0.prefix),
                "image.delete",
                format!("image:{}", image.id),
            )
            .detail("customer", key.0.customer_id.as_str())
            .detail("stored", image.blob_key.is_some()),
        )
        .await?;
        tx.commit().await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    counted(&state, &key, Scope::ImagesDelete, result)
}
