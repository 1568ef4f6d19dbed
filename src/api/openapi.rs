//! The OpenAPI 3.1 document, generated from the handlers' annotations and then finished
//! where the annotations cannot say enough: image bodies are binary (not arrays of numbers),
//! the detect answer links to the image routes, every error names its problem `type`, and a
//! real example image is referenced so contract testers can send one.

use axum::Json;
use axum::http::HeaderMap;
use serde_json::{Value, json};
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
pub async fn openapi_get(
    axum::extract::State(state): axum::extract::State<crate::app::AppState>,
    headers: HeaderMap,
) -> Json<Value> {
    Json(document(&example_base(&state.config.public_url, &headers)))
}

/// Where the example image is fetched from: `public_url` when set, otherwise the address the
/// client used (a document link only; a forged Host misleads nobody but its sender).
fn example_base(public_url: &str, headers: &HeaderMap) -> String {
    if !public_url.is_empty() {
        return public_url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The finished document; `base` is the absolute origin of the example image.
pub fn document(base: &str) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    let paths = &mut doc["paths"];
    for detect in ["/v1/faces/detect", "/demo/v1/faces/detect"] {
        paths[detect]["post"]["requestBody"]["content"] = image_body(base);
    }
    paths["/v1/faces/detect"]["post"]["responses"]["200"]["links"] = json!({
        "GetImage": {
            "operationId": "image_get",
            "parameters": { "id": "$response.body#/image_id" },
            "description": "The stored record of the detected image."
        },
        "DeleteImage": {
            "operationId": "image_delete",
            "parameters": { "id": "$response.body#/image_id" },
            "description": "Delete the stored copy and its record before its retention ends."
        }
    });
    if let Some(paths) = paths.as_object_mut() {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for operation in item.values_mut() {
                name_problem_types(operation);
            }
        }
    }
    doc
}

/// Image bodies as binary (OpenAPI 3.1: a string with `contentMediaType`), and the multipart
/// form as an object with a binary `image` part.
fn image_body(base: &str) -> Value {
    let binary =
        |media: &str| json!({ "type": "string", "contentMediaType": media, "minLength": 1 });
    json!({
        "image/jpeg": {
            "schema": binary("image/jpeg"),
            "examples": {
                "face": {
                    "summary": "A 256×256 portrait with one frontal face (public domain, NASA)",
                    "externalValue": format!("{base}/static/examples/face.jpg")
                }
            }
        },
        "image/png": { "schema": binary("image/png") },
        "image/webp": { "schema": binary("image/webp") },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "additionalProperties": false,
                "properties": { "image": binary("application/octet-stream") }
            },
            "encoding": { "image": { "contentType": "image/jpeg, image/png, image/webp" } }
        }
    })
}

/// Each error answer lists the problem `type`s it can carry, as examples and in its text.
fn name_problem_types(operation: &mut Value) {
    let Some(responses) = operation["responses"].as_object_mut() else {
        return;
    };
    for (status, response) in responses.iter_mut() {
        let types = super::problem::types_for_status(status.parse().unwrap_or(0));
        if types.is_empty() || !response["content"]["application/problem+json"].is_object() {
            continue;
        }
        let mut examples = serde_json::Map::new();
        for (slug, title) in &types {
            examples.insert(
                (*slug).to_owned(),
                json!({ "value": {
                    "type": format!("urn:trustplane:problem:{slug}"),
                    "title": title,
                    "status": status.parse::<u16>().unwrap_or(0),
                    "detail": "What happened this time and what to do."
                }}),
            );
        }
        let listed = types
            .iter()
            .map(|(slug, _)| format!("`urn:trustplane:problem:{slug}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let description = response["description"].as_str().unwrap_or("").to_owned();
        response["description"] = Value::String(format!("{description} ({listed})"));
        response["content"]["application/problem+json"]["examples"] = Value::Object(examples);
    }
}
