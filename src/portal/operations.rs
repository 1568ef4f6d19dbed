//! Operational endpoints: `/healthz` (the process is up), `/readyz` (the database answers),
//! `/metrics` (Prometheus; loopback or bearer token only) and embedded static files.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::crypto::constant_time_eq;
use crate::images::ImageKind;
use crate::portal::routes::{Access, PortalRoute};
use crate::web::RequestCtx;

/// CSS, JavaScript and icons, compiled into the binary.
#[derive(rust_embed::RustEmbed)]
#[folder = "static/"]
struct Assets;

pub fn routes() -> Vec<PortalRoute> {
    vec![
        PortalRoute::get("/healthz", Access::Public, healthz_get),
        PortalRoute::get("/readyz", Access::Public, readyz_get),
        PortalRoute::get("/metrics", Access::Public, metrics_get),
        PortalRoute::get("/static/{*path}", Access::Public, static_get),
    ]
}

async fn healthz_get() -> &'static str {
    "ok"
}

async fn readyz_get(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

async fn metrics_get(
    State(state): State<AppState>,
    ctx: RequestCtx,
    headers: HeaderMap,
) -> Response {
    let loopback = ctx
        .client_ip
        .as_deref()
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    let token = &state.config.metrics_token;
    let bearer_ok = !token.is_empty()
        && headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.trim(), token));
    if !(loopback || bearer_ok) {
        return (
            StatusCode::FORBIDDEN,
            "metrics are available from loopback or with the metrics token",
        )
            .into_response();
    }
    if let Ok(control) = crate::retention::control(&state).await {
        use crate::metrics::KindLabels;
        for (kind, age, ok) in [
            (
                "production",
                control.oldest_production_age_ms,
                control.production_ok,
            ),
            ("demo", control.oldest_demo_age_ms, control.demo_ok),
        ] {
            let labels = KindLabels {
                kind: kind.to_owned(),
            };
            state
                .metrics
                .oldest_image_age
                .get_or_create(&labels)
                .set(age.unwrap_or(0) / 1000);
            state
                .metrics
                .retention_ok
                .get_or_create(&labels)
                .set(i64::from(ok));
        }
    }
    for kind in [ImageKind::Production, ImageKind::Demo] {
        if let Ok(usage) = crate::images::stored_usage(&state.db, kind).await {
            state
                .metrics
                .stored_image_bytes
                .get_or_create(&crate::metrics::KindLabels {
                    kind: kind.as_str().to_owned(),
                })
                .set(usage.bytes);
        }
    }
    state
        .metrics
        .demo_storage_quota
        .set(i64::try_from(state.config.demo_storage_quota_bytes).unwrap_or(i64::MAX));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn static_get(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(file) = Assets::get(&path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let cache = "public, max-age=86400";
    if matches {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (header::CACHE_CONTROL, cache.to_owned()),
            ],
        )
            .into_response();
    }
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    (
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache.to_owned()),
        ],
        file.data.into_owned(),
    )
        .into_response()
}
