//! The customer-facing processing API: `/v1` with `X-API-Key`, the public `/demo` endpoint
//! rate-limited per client network and capped by a storage quota, and the OpenAPI document
//! generated from this code.

pub mod auth;
pub mod demo;
pub mod faces;
pub mod images;
pub mod openapi;
pub mod problem;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::app::AppState;

/// Every API route as (method, path); the OpenAPI test checks the document against it.
pub const ROUTES: [(&str, &str); 4] = [
    ("post", "/v1/faces/detect"),
    ("get", "/v1/images/{id}"),
    ("delete", "/v1/images/{id}"),
    ("post", "/demo/v1/faces/detect"),
];

/// The API router. Uploads may be larger than portal forms, so it has its own body limit.
pub fn router(state: &AppState) -> Router<AppState> {
    let body_limit = state.config.api_max_image_bytes + 64 * 1024;
    Router::new()
        .route("/v1/faces/detect", post(faces::detect_post))
        .route(
            "/v1/images/{id}",
            get(images::image_get).delete(images::image_delete),
        )
        .route("/demo/v1/faces/detect", post(demo::demo_detect_post))
        .layer(DefaultBodyLimit::max(body_limit))
        .route("/openapi.json", get(openapi::openapi_get))
}
