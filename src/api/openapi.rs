//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "A customer API key (tp_live_… or tp_test_…).",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "trustplane processing API",
        description = "Face detection on uploaded images. Errors are RFC 9457 application/problem+json with a stable `type`."
    ),
    paths(
        super::faces::detect_post,
        super::images::image_get,
        super::images::image_delete,
        super::demo::demo_detect_post
    ),
    components(schemas(
        super::faces::DetectResponse,
        super::faces::FaceBox,
        super::faces::QualityMeasures,
        super::images::ImageResponse,
        super::problem::Problem
    )),
    modifiers(&ApiKeyScheme)
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn openapi_get() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
