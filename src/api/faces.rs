//! `POST /v1/faces/detect`: read the image (raw body or multipart `image` part), analyse it
//! off the async runtime under hard limits, keep the sanitised copy encrypted for the
//! customer's retention (or not at all), answer with faces and quality measures.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{ApiKey, counted};
use super::problem::ApiError;
use crate::app::AppState;
use crate::biometric::{Analysis, AnalyzeError, ImageFormat, Rejection, StoragePolicy};
use crate::clock::{DAY, Millis};
use crate::customers::{MAX_DEMO_RETENTION_DAYS, MAX_PRODUCTION_RETENTION_DAYS};
use crate::images::{self, ImageKind, ImageRecord};
use crate::keys::model::Scope;

/// One detected face, in pixels of the uploaded image.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FaceBox {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
    /// Detector confidence; higher is more certain.
    pub score: f64,
}

/// Simple image-quality measures.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QualityMeasures {
    /// Mean luminance, 0 (black) to 1 (white).
    pub brightness: f64,
    /// Variance of the Laplacian of the luminance; higher is sharper.
    pub sharpness: f64,
    /// Area of the largest face relative to the image, 0 to 1.
    pub largest_face_ratio: f64,
}

/// What is kept as the result of a detection.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DetectionResult {
    pub faces: Vec<FaceBox>,
    pub quality: QualityMeasures,
    /// Decode + detection time inside the worker, in milliseconds.
    pub processing_ms: f64,
}

/// The answer to a detection request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DetectResponse {
    pub image_id: String,
    /// `jpeg`, `png` or `webp`.
    pub format: String,
    pub width: u32,
    pub height: u32,
    pub faces: Vec<FaceBox>,
    pub quality: QualityMeasures,
    /// Decode + detection time, in milliseconds (the same figure `GET /v1/images/{id}`
    /// returns later).
    pub processing_ms: f64,
    /// When the stored copy will be deleted (RFC 3339), or null when the image was not kept.
    pub retained_until: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/faces/detect",
    tag = "faces",
    request_body(
        description = "The image as the raw body (image/jpeg, image/png, image/webp) or multipart/form-data with an `image` part.",
        content(
            (Vec<u8> = "image/jpeg"),
            (Vec<u8> = "image/png"),
            (Vec<u8> = "image/webp"),
            (Vec<u8> = "multipart/form-data")
        )
    ),
    responses(
        (status = 200, description = "Faces detected (possibly none)", body = DetectResponse),
        (status = 400, description = "Malformed request", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, unknown, revoked or expired key", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Key lacks faces:detect", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The upload did not arrive within `api_upload_timeout_seconds`", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Image too large", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not a JPEG, PNG or WebP", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Undecodable image or over the pixel limit", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Processing capacity exhausted; see Retry-After", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn detect_post(
    State(state): State<AppState>,
    key: ApiKey,
    req: Request,
) -> Result<Json<DetectResponse>, ApiError> {
    let result = async {
        key.require(Scope::FacesDetect)?;
        let owner = Owner {
            kind: ImageKind::Production,
            customer_id: Some(key.0.customer_id.clone()),
            key_id: Some(key.0.id.clone()),
            retention_days: key.0.retention_days.min(MAX_PRODUCTION_RETENTION_DAYS),
            storage: StoragePolicy::full(state.config.stored_image_max_bytes),
            storage_quota_bytes: None,
        };
        detect_and_store(&state, owner, req).await
    }
    .await;
    counted(&state, &key, Scope::FacesDetect, result).map(Json)
}

/// Whose image it is, how long it may be kept and how much room it may take.
pub struct Owner {
    pub kind: ImageKind,
    pub customer_id: Option<String>,
    pub key_id: Option<String>,
    pub retention_days: i64,
    /// Shape and size bound of the stored copy.
    pub storage: StoragePolicy,
    /// Bytes all stored images of this kind may hold together (the demo's quota); `None`
    /// for no cap. Exceeding it is [`ApiError::DemoStorageFull`].
    pub storage_quota_bytes: Option<u64>,
}

impl Owner {
    /// The folder of the owner's blobs and the associated data bound into each seal.
    pub fn scope(&self) -> String {
        self.customer_id
            .clone()
            .unwrap_or_else(|| "demo".to_owned())
    }
}

/// The record's own lifetime when the pixels are not kept: results only, at most the cap.
fn record_lifetime(kind: ImageKind) -> Millis {
    match kind {
        ImageKind::Production => MAX_PRODUCTION_RETENTION_DAYS * DAY,
        ImageKind::Demo => MAX_DEMO_RETENTION_DAYS * DAY,
    }
}

/// The shared pipeline of `/v1` and `/demo`.
pub async fn detect_and_store(
    state: &AppState,
    owner: Owner,
    req: Request,
) -> Result<DetectResponse, ApiError> {
    // A place in the queue first, then the upload: a client refused for capacity sends nothing
    // for nothing, and at most `workers + queue` uploads are held in memory at once.
    let admission = state.analyzer.admit().map_err(analyze_error)?;
    let seconds = state.config.api_upload_timeout_seconds;
    let (bytes, declared) = tokio::time::timeout(
        std::time::Duration::from_secs(seconds),
        read_image(state, req),
    )
    .await
    .map_err(|_| ApiError::UploadTimeout { seconds })??;
    let retention = owner.retention_days * DAY;
    // Pixels that will not be kept are not re-encoded either.
    let storage = if retention > 0 {
        owner.storage
    } else {
        StoragePolicy::discard()
    };
    let analysis = admission
        .analyze_for_storage(bytes, declared, storage)
        .await
        .map_err(analyze_error)?;
    let now = state.now();
    let image_id = uuid::Uuid::new_v4().to_string();
    let (blob_key, retained_until, expires_at) = if retention > 0 {
        if let Some(quota) = owner.storage_quota_bytes {
            // Checked again with the real size: the room may have gone while this image was
            // analysed. Concurrent uploads can still overshoot by what is in flight.
            let size = u64::try_from(analysis.sanitized.len()).unwrap_or(u64::MAX);
            if size > storage_room(state, owner.kind, quota).await? {
                return Err(ApiError::DemoStorageFull {
                    retention_days: owner.retention_days,
                });
            }
        }
        let scope = owner.scope();
        let blob_key = format!("{scope}/{image_id}");
        state
            .blobs
            .put_sealed(
                &blob_key,
                &analysis.sanitized,
                &state.keyring,
                blob_key.as_bytes(),
            )
            .await?;
        (Some(blob_key), Some(now + retention), now + retention)
    } else {
        (None, None, now + record_lifetime(owner.kind))
    };
    let response = to_response(&image_id, &analysis, retained_until);
    let result = DetectionResult {
        faces: response.faces.clone(),
        quality: response.quality.clone(),
        processing_ms: response.processing_ms,
    };
    let record = ImageRecord {
        id: image_id,
        customer_id: owner.customer_id.clone(),
        key_id: owner.key_id.clone(),
        kind: owner.kind.as_str().to_owned(),
        format: format_name(analysis.format).to_owned(),
        width: i64::from(analysis.width),
        height: i64::from(analysis.height),
        byte_size: i64::try_from(analysis.sanitized.len()).unwrap_or(i64::MAX),
        blob_key: blob_key.clone(),
        result: serde_json::to_string(&result).map_err(|e| ApiError::Internal(e.into()))?,
        created_at: now,
        expires_at,
        retained_until,
    };
    let stored = async {
        let mut conn = state.db.pool.acquire().await?;
        images::insert(&mut conn, &record).await
    }
    .await;
    if let Err(err) = stored {
        // Never leave pixels that no record owns.
        if let Some(key) = &blob_key
            && let Err(cleanup) = state.blobs.delete(key).await
        {
            tracing::error!(error = %cleanup, "could not remove blob after a failed insert");
        }
        return Err(err.into());
    }
    Ok(response)
}

/// Bytes still free under `quota` for stored images of `kind`.
pub async fn storage_room(state: &AppState, kind: ImageKind, quota: u64) -> Result<u64, ApiError> {
    let used = images::stored_usage(&state.db, kind).await?.bytes;
    Ok(quota.saturating_sub(u64::try_from(used).unwrap_or(0)))
}

pub fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Png => "png",
        ImageFormat::Webp => "webp",
    }
}

pub fn rfc3339(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn to_response(
    image_id: &str,
    analysis: &Analysis,
    retained_until: Option<Millis>,
) -> DetectResponse {
    DetectResponse {
        image_id: image_id.to_owned(),
        format: format_name(analysis.format).to_owned(),
        width: analysis.width,
        height: analysis.height,
        faces: analysis
            .faces
            .iter()
            .map(|f| FaceBox {
                x: f.x,
                y: f.y,
                width: f.width,
                height: f.height,
                score: f.score,
            })
            .collect(),
        quality: QualityMeasures {
            brightness: analysis.quality.brightness,
            sharpness: analysis.quality.sharpness,
            largest_face_ratio: analysis.quality.largest_face_ratio,
        },
        processing_ms: analysis.decode_ms + analysis.detect_ms,
        retained_until: retained_until.map(rfc3339),
    }
}

fn analyze_error(err: AnalyzeError) -> ApiError {
    match err {
        AnalyzeError::Rejected(Rejection::TooLarge { max_bytes }) => {
            ApiError::TooLarge { max_bytes }
        }
        AnalyzeError::Rejected(Rejection::UnsupportedType) => ApiError::UnsupportedMediaType(
            "The content is not a JPEG, PNG or WebP image, or does not match its declared type."
                .into(),
        ),
        AnalyzeError::Rejected(rejection) => ApiError::Unprocessable(rejection.to_string()),
        AnalyzeError::Busy => ApiError::Saturated,
        AnalyzeError::Timeout => ApiError::Saturated,
        AnalyzeError::WorkerFailed(reason) => {
            tracing::warn!(%reason, "image worker failed");
            ApiError::Unprocessable("The image could not be processed.".into())
        }
    }
}

/// Reads the image bytes and the declared format from a raw or multipart body.
async fn read_image(
    state: &AppState,
    req: Request,
) -> Result<(Vec<u8>, Option<ImageFormat>), ApiError> {
    let max_bytes = state.config.api_max_image_bytes;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "multipart/form-data" {
        let mut multipart = Multipart::from_request(req, state).await.map_err(|e| {
            ApiError::Malformed(format!(
                "The multipart body cannot be read: {}",
                e.body_text()
            ))
        })?;
        let field = multipart.next_field().await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge { max_bytes }
            } else {
                ApiError::Malformed(format!(
                    "The multipart body cannot be read: {}",
                    e.body_text()
                ))
            }
        })?;
        let Some(mut field) = field else {
            return Err(ApiError::Malformed(
                "The multipart body has no `image` part.".into(),
            ));
        };
        // Only the documented part is accepted (the contract says so), so a client's
        // misspelt field is an error it can see rather than a silently ignored upload.
        if field.name() != Some("image") {
            return Err(ApiError::Malformed(format!(
                "Unexpected part `{}`: send the image as the only part, named `image`.",
                crate::web::clip(field.name().unwrap_or_default(), 40)
            )));
        }
        let declared = match field.content_type() {
            None | Some("application/octet-stream") => None,
            Some(mime) => Some(ImageFormat::from_mime(mime).ok_or_else(|| {
                ApiError::UnsupportedMediaType(format!(
                    "Unsupported image type {mime}; send JPEG, PNG or WebP."
                ))
            })?),
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge { max_bytes }
            } else {
                ApiError::Malformed("The image part is truncated.".into())
            }
        })? {
            if bytes.len() + chunk.len() > max_bytes {
                return Err(ApiError::TooLarge { max_bytes });
            }
            bytes.extend_from_slice(&chunk);
        }
        return Ok((bytes, declared));
    }
    let declared = ImageFormat::from_mime(&essence).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "Unsupported content type “{}”; send image/jpeg, image/png, image/webp or multipart/form-data.",
            crate::web::clip(&essence, 60)
        ))
    })?;
    let bytes = axum::body::to_bytes(req.into_body(), max_bytes)
        .await
        .map_err(|_| ApiError::TooLarge { max_bytes })?;
    if bytes.is_empty() {
        return Err(ApiError::Malformed("The request body is empty.".into()));
    }
    // Takes over the body's buffer when it is the only owner instead of copying it.
    Ok((Vec::from(bytes), Some(declared)))
}
