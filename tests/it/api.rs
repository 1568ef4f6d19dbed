//! The processing API end to end: keys, detection on the fixtures, encrypted metadata-free
//! storage, retention, tenant isolation, scopes, the demo limiter, bad input, OpenAPI.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use trustplane::clock::DAY;

use crate::both_backends;
use crate::helpers::*;

pub const ASTRONAUT: &[u8] = include_bytes!("../fixtures/faces/astronaut.png");
pub const COFFEE: &[u8] = include_bytes!("../fixtures/faces/coffee.png");

async fn detect(
    app: &TestApp,
    key: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = app
        .client()
        .post(app.url("/v1/faces/detect"))
        .header("content-type", content_type)
        .body(body);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.send().await.unwrap()
}

pub async fn problem(response: reqwest::Response) -> (u16, String, serde_json::Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "status {status}");
    let body: serde_json::Value = response.json().await.unwrap();
    (status, body["type"].as_str().unwrap().to_owned(), body)
}

fn blob_files(app: &TestApp) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
    }
    let mut files = Vec::new();
    walk(&app.dir.path().join("blobs"), &mut files);
    files
}

async fn a_key_detects_the_face_in_a_fixture_and_none_in_coffee(backend: Backend) {
    let app = spawn_app(backend).await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (key_id, key) = app.issue_key(&customer, "faces:detect,images:read").await;

    let response = detect(&app, Some(&key), "image/png", ASTRONAUT.to_vec()).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let faces = body["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{body}");
    let (x, y) = (
        faces[0]["x"].as_i64().unwrap(),
        faces[0]["y"].as_i64().unwrap(),
    );
    assert!((x - 173).abs() <= 25 && (y - 68).abs() <= 25, "{body}");
    assert_eq!(body["width"], 512);
    assert_eq!(body["format"], "png");
    assert!(body["quality"]["largest_face_ratio"].as_f64().unwrap() > 0.01);
    let retained_until =
        chrono::DateTime::parse_from_rfc3339(body["retained_until"].as_str().unwrap()).unwrap();
    assert_eq!(
        retained_until.timestamp_millis(),
        (T0 + 30 * DAY) / 1000 * 1000
    );

    let id = body["image_id"].as_str().unwrap();
    let fetched: serde_json::Value = app
        .client()
        .get(app.url(&format!("/v1/images/{id}")))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["faces"], body["faces"]);
    assert_eq!(fetched["stored"], true);
    assert!(body["processing_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(
        fetched["processing_ms"], body["processing_ms"],
        "the answer and the stored result report the same time"
    );

    let coffee: serde_json::Value = detect(&app, Some(&key), "image/png", COFFEE.to_vec())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(coffee["faces"].as_array().unwrap().len(), 0, "{coffee}");

    // Multipart with an `image` part works the same.
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(ASTRONAUT.to_vec())
            .mime_str("image/png")
            .unwrap()
            .file_name("a.png"),
    );
    let multipart = app
        .client()
        .post(app.url("/v1/faces/detect"))
        .header("x-api-key", &key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(multipart.status(), 200);

    // Counts are tallied in memory and written in batches.
    app.state.key_usage.flush(&app.state.db).await.unwrap();
    let counted = app
        .count(&format!(
            "SELECT request_count FROM api_keys WHERE id = '{key_id}'"
        ))
        .await;
    assert_eq!(counted, 4, "every request is counted per key");
    let hourly = app
        .count(&format!(
            "SELECT CAST(SUM(requests) AS BIGINT) FROM api_usage WHERE key_id = '{key_id}'"
        ))
        .await;
    assert_eq!(hourly, 4);
}
both_backends!(a_key_detects_the_face_in_a_fixture_and_none_in_coffee);

/// Request counts are kept in memory and written in batches; a write that fails keeps them
/// for the next one, so an outage delays counts but loses none. (A tally of its own, so the
/// server's background flusher cannot race the test.)
async fn usage_counts_survive_a_failed_write(backend: Backend) {
    let app = spawn_app(backend).await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (key_id, _key) = app.issue_key(&customer, "faces:detect,images:read").await;
    let tally = trustplane::keys::usage::UsageTally::default();
    // Four requests within one hour: one (key, hour) tally.
    let clock_now = app.state.now();
    let now = clock_now - clock_now.rem_euclid(trustplane::clock::HOUR) + 10_000;
    tally.record(&key_id, now - 2_000, false);
    tally.record(&key_id, now, true);
    tally.record(&key_id, now - 1_000, true);

    let db = &app.state.db;
    sqlx::query("ALTER TABLE api_usage RENAME TO api_usage_away")
        .execute(&db.pool)
        .await
        .unwrap();
    assert!(tally.flush(db).await.is_err());
    assert_eq!(tally.pending(), 1, "the tally is kept");
    let written = app
        .count(&format!(
            "SELECT request_count FROM api_keys WHERE id = '{key_id}'"
        ))
        .await;
    assert_eq!(written, 0, "the failed write changed nothing");

    sqlx::query("ALTER TABLE api_usage_away RENAME TO api_usage")
        .execute(&db.pool)
        .await
        .unwrap();
    tally.record(&key_id, now - 3_000, false);
    assert_eq!(tally.flush(db).await.unwrap(), 4);
    assert_eq!(tally.pending(), 0);
    let counted = app
        .count(&format!(
            "SELECT request_count FROM api_keys WHERE id = '{key_id}'"
        ))
        .await;
    assert_eq!(counted, 4);
    let errors = app
        .count(&format!(
            "SELECT CAST(SUM(errors) AS BIGINT) FROM api_usage WHERE key_id = '{key_id}'"
        ))
        .await;
    assert_eq!(errors, 2);
    let last_used = app
        .count(&format!(
            "SELECT last_used_at FROM api_keys WHERE id = '{key_id}'"
        ))
        .await;
    assert_eq!(last_used, now, "the latest use wins, whatever the order");
}
both_backends!(usage_counts_survive_a_failed_write);

/// A JPEG of the astronaut with an EXIF segment carrying a GPS block spliced in after SOI.
pub fn jpeg_with_gps() -> Vec<u8> {
    let decoded = image::load_from_memory(ASTRONAUT).unwrap().to_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&decoded)
        .unwrap();
    let mut payload = b"Exif\0\0MM\0*\0\0\0\x08GPSLatitude=48.8584N;GPSLongitude=2.2945E".to_vec();
    payload.resize(64, 0);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

async fn stored_images_are_encrypted_and_metadata_free(backend: Backend) {
    let app = spawn_app(backend).await;
    let customer = app.create_customer("Acme", "live", 14).await;
    let (_, key) = app.issue_key(&customer, "faces:detect").await;
    let upload = jpeg_with_gps();
    assert!(upload.windows(3).any(|w| w == b"GPS"));
    let body: serde_json::Value = detect(&app, Some(&key), "image/jpeg", upload)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["faces"].as_array().unwrap().len(), 1, "{body}");
    let id = body["image_id"].as_str().unwrap();
    let record = trustplane::images::find(&app.state.db, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.expires_at, T0 + 14 * DAY);
    let blob_key = record.blob_key.unwrap();
    assert_eq!(blob_key, format!("{customer}/{id}"));

    let raw = app.state.blobs.get_raw(&blob_key).await.unwrap();
    assert!(raw.starts_with(b"TPB1"), "sealed format");
    assert!(!raw.windows(3).any(|w| w == b"GPS"));

    let opened = app
        .state
        .blobs
        .get_opened(&blob_key, &app.state.keyring, blob_key.as_bytes())
        .await
        .unwrap();
    assert!(!opened.windows(4).any(|w| w == b"Exif"), "EXIF stripped");
    assert!(!opened.windows(3).any(|w| w == b"GPS"), "GPS stripped");
    let decoded = image::load_from_memory(&opened).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (512, 512));
    // Bound to its owner: the same bytes do not open as another customer's image.
    assert!(
        app.state
            .blobs
            .get_opened(&blob_key, &app.state.keyring, b"other/id")
            .await
            .is_err()
    );
}
both_backends!(stored_images_are_encrypted_and_metadata_free);

async fn a_customer_with_retention_zero_never_has_images_written(backend: Backend) {
    let app = spawn_app(backend).await;
    let customer = app.create_customer("Minimal", "live", 0).await;
    let (_, key) = app.issue_key(&customer, "faces:detect,images:read").await;
    let body: serde_json::Value = detect(&app, Some(&key), "image/png", ASTRONAUT.to_vec())
        .await
        .json()
        .await
        .unwrap();
    assert!(body["retained_until"].is_null(), "{body}");
    assert!(blob_files(&app).is_empty(), "nothing written to storage");
    let record = trustplane::images::find(&app.state.db, body["image_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(record.blob_key.is_none());
    assert!(
        record.expires_at <= T0 + 30 * DAY,
        "results are bounded too"
    );
}
both_backends!(a_customer_with_retention_zero_never_has_images_written);

async fn tenants_cannot_reach_each_others_images(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.create_customer("A", "live", 30).await;
    let b = app.create_customer("B", "live", 30).await;
    let (_, key_a) = app
        .issue_key(&a, "faces:detect,images:read,images:delete")
        .await;
    let (_, key_b) = app
        .issue_key(&b, "faces:detect,images:read,images:delete")
        .await;
    let body: serde_json::Value = detect(&app, Some(&key_a), "image/png", COFFEE.to_vec())
        .await
        .json()
        .await
        .unwrap();
    let id = body["image_id"].as_str().unwrap().to_owned();
    let client = app.client();
    let url = app.url(&format!("/v1/images/{id}"));

    let (status, kind, _) = problem(
        client
            .get(&url)
            .header("x-api-key", &key_b)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (404, "urn:trustplane:problem:not-found")
    );
    let (status, _, _) = problem(
        client
            .delete(&url)
            .header("x-api-key", &key_b)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "never 403: no oracle");
    let random = uuid::Uuid::new_v4();
    let (status, _, _) = problem(
        client
            .get(app.url(&format!("/v1/images/{random}")))
            .header("x-api-key", &key_b)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(blob_files(&app).len(), 1, "A's image untouched");

    let deleted = client
        .delete(&url)
        .header("x-api-key", &key_a)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(blob_files(&app).is_empty(), "blob gone when DELETE returns");
    assert!(
        trustplane::images::find(&app.state.db, &id)
            .await
            .unwrap()
            .is_none(),
        "record gone"
    );
    assert_eq!(
        client
            .get(&url)
            .header("x-api-key", &key_a)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert!(
        app.audit_actions()
            .await
            .contains(&("image.delete".into(), "success".into()))
    );
}
both_backends!(tenants_cannot_reach_each_others_images);

async fn scopes_are_enforced(backend: Backend) {
    let app = spawn_app(backend).await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (_, detect_only) = app.issue_key(&customer, "faces:detect").await;
    let (_, read_only) = app.issue_key(&customer, "images:read").await;
    let body: serde_json::Value = detect(&app, Some(&detect_only), "image/png", COFFEE.to_vec())
        .await
        .json()
        .await
        .unwrap();
    let url = app.url(&format!(
        "/v1/images/{}",
        body["image_id"].as_str().unwrap()
    ));
    let client = app.client();
    let (status, kind, _) = problem(
        client
            .get(&url)
            .header("x-api-key", &detect_only)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (403, "urn:trustplane:problem:missing-scope")
    );
    let (status, _, _) = problem(
        client
            .delete(&url)
            .header("x-api-key", &read_only)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) =
        problem(detect(&app, Some(&read_only), "image/png", COFFEE.to_vec()).await).await;
    assert_eq!(status, 403);
    assert_eq!(
        client
            .get(&url)
            .header("x-api-key", &read_only)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
both_backends!(scopes_are_enforced);

async fn missing_unknown_revoked_and_malformed_keys_get_one_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (key_id, key) = app.issue_key(&customer, "faces:detect").await;
    let record = trustplane::keys::store::find(&app.state.db.pool, &key_id)
        .await
        .unwrap()
        .unwrap();
    let mut tx = app.state.db.begin().await.unwrap();
    trustplane::keys::revoke(
        &mut tx,
        &record,
        "test",
        &Default::default(),
        app.state.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    app.state.key_cache.forget(&key_id);
    let unknown = trustplane::keys::format::generate(trustplane::keys::format::KeyEnv::Live);
    let mut answers = BTreeSet::new();
    for presented in [
        None,
        Some("tp_live_short"),
        Some(unknown.as_str()),
        Some(key.as_str()),
    ] {
        let (status, kind, body) =
            problem(detect(&app, presented, "image/png", COFFEE.to_vec()).await).await;
        assert_eq!(status, 401);
        assert_eq!(kind, "urn:trustplane:problem:unauthorized");
        answers.insert(body.to_string());
        assert!(!body.to_string().contains(&key[8..]));
    }
    assert_eq!(answers.len(), 1, "the same body whatever the reason");
}
both_backends!(missing_unknown_revoked_and_malformed_keys_get_one_answer);

async fn the_demo_endpoint_needs_no_key_and_refuses_floods(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.demo_requests_per_minute = 2).await;
    let client = app.client();
    for _ in 0..2 {
        let response = client
            .post(app.url("/demo/v1/faces/detect"))
            .header("content-type", "image/png")
            .body(COFFEE.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        let until =
            chrono::DateTime::parse_from_rfc3339(body["retained_until"].as_str().unwrap()).unwrap();
        assert_eq!(
            until.timestamp_millis(),
            (T0 + 7 * DAY) / 1000 * 1000,
            "demo retention is 7 days"
        );
    }
    let flooded = client
        .post(app.url("/demo/v1/faces/detect"))
        .header("content-type", "image/png")
        .body(COFFEE.to_vec())
        .send()
        .await
        .unwrap();
    let retry_after: u64 = flooded
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    let (status, kind, _) = problem(flooded).await;
    assert_eq!(
        (status, kind.as_str()),
        (429, "urn:trustplane:problem:rate-limited")
    );
    let demo_images = app
        .count("SELECT COUNT(*) FROM images WHERE kind = 'demo' AND customer_id IS NULL")
        .await;
    assert_eq!(demo_images, 2);
}
both_backends!(the_demo_endpoint_needs_no_key_and_refuses_floods);

/// A PNG whose header claims 30000 × 30000 pixels (900 megapixels) in a few dozen bytes.
pub fn png_bomb() -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32fast::hash(&crc_input).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&30_000u32.to_be_bytes());
    ihdr.extend_from_slice(&30_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit greyscale, deflate, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9C, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

async fn bad_images_get_the_right_4xx_quickly(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.api_max_image_bytes = 512 * 1024).await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (_, key) = app.issue_key(&customer, "faces:detect").await;
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "oversize",
            "image/png",
            ASTRONAUT.to_vec(),
            413,
            "payload-too-large",
        ),
        (
            "wrong type",
            "text/plain",
            b"hello".to_vec(),
            415,
            "unsupported-media-type",
        ),
        (
            "declared png, is text",
            "image/png",
            b"definitely not an image at all".to_vec(),
            415,
            "unsupported-media-type",
        ),
        (
            "truncated",
            "image/png",
            COFFEE[..4000].to_vec(),
            422,
            "unprocessable-image",
        ),
        (
            "corrupt",
            "image/png",
            {
                let mut c = COFFEE[..60_000].to_vec();
                for b in c.iter_mut().skip(100) {
                    *b = 0x5A;
                }
                c
            },
            422,
            "unprocessable-image",
        ),
        (
            "decompression bomb",
            "image/png",
            png_bomb(),
            422,
            "unprocessable-image",
        ),
        ("empty", "image/png", Vec::new(), 400, "malformed-request"),
    ];
    for (name, content_type, body, expected_status, expected_type) in cases {
        let started = Instant::now();
        let (status, kind, _) = problem(detect(&app, Some(&key), content_type, body).await).await;
        let elapsed = started.elapsed();
        assert_eq!(status, expected_status, "{name}");
        assert_eq!(
            kind,
            format!("urn:trustplane:problem:{expected_type}"),
            "{name}"
        );
        assert!(elapsed < Duration::from_secs(2), "{name} took {elapsed:?}");
    }
    assert!(
        blob_files(&app).is_empty(),
        "nothing stored for refused input"
    );
    // The server is still up.
    assert_eq!(app.get(&app.client(), "/healthz").await.status(), 200);
}
both_backends!(bad_images_get_the_right_4xx_quickly);

async fn saturation_answers_503_with_retry_after(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.detect_workers = 1;
        c.detect_queue = 0;
    })
    .await;
    let customer = app.create_customer("Acme", "live", 0).await;
    let (_, key) = app.issue_key(&customer, "faces:detect").await;
    let mut handles = Vec::new();
    for _ in 0..6 {
        let (client, url, key) = (app.client(), app.url("/v1/faces/detect"), key.clone());
        handles.push(tokio::spawn(async move {
            client
                .post(url)
                .header("x-api-key", key)
                .header("content-type", "image/png")
                .body(ASTRONAUT.to_vec())
                .send()
                .await
                .unwrap()
        }));
    }
    let mut responses = Vec::new();
    for handle in handles {
        responses.push(handle.await.unwrap());
    }
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.contains(&200), "{statuses:?}");
    let busy = responses
        .iter()
        .find(|r| r.status() == 503)
        .unwrap_or_else(|| panic!("{statuses:?}"));
    assert_eq!(busy.headers().get("retry-after").unwrap(), "1");
}
both_backends!(saturation_answers_503_with_retry_after);

async fn the_openapi_document_matches_the_routes(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc: serde_json::Value = app
        .get(&app.client(), "/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.insert((method.clone(), path.clone()));
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('4')),
                "{method} {path} documents errors"
            );
            for (code, response) in responses {
                if code.starts_with('4') || code.starts_with('5') {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{method} {path} {code}"
                    );
                }
            }
        }
    }
    let routes: BTreeSet<(String, String)> = trustplane::api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, routes);
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    // And each documented route answers (not 404/405) on the running server.
    let client = app.client();
    for (method, path) in &routes {
        let url = app.url(&path.replace("{id}", &uuid::Uuid::new_v4().to_string()));
        let response = client
            .request(method.to_uppercase().parse().unwrap(), url)
            .send()
            .await
            .unwrap();
        let expected = if path.starts_with("/demo") { 415 } else { 401 };
        assert_eq!(response.status(), expected, "{method} {path} is served");
    }
}
both_backends!(the_openapi_document_matches_the_routes);

async fn the_openapi_contract_describes_binary_images_links_and_problem_types(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc: serde_json::Value = app
        .get(&app.client(), "/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let detect = &doc["paths"]["/v1/faces/detect"]["post"];
    let content = &detect["requestBody"]["content"];
    for media in ["image/jpeg", "image/png", "image/webp"] {
        assert_eq!(content[media]["schema"]["type"], "string", "{media}");
        assert_eq!(content[media]["schema"]["contentMediaType"], media);
    }
    assert_eq!(
        content["multipart/form-data"]["schema"]["properties"]["image"]["type"],
        "string"
    );
    assert_eq!(
        content["multipart/form-data"]["encoding"]["image"]["contentType"],
        "image/jpeg, image/png, image/webp"
    );
    assert!(
        !content.to_string().contains("array"),
        "no image is an array of numbers"
    );

    // The example image is real, served by the server, and has a face in it.
    let example = content["image/jpeg"]["examples"]["face"]["externalValue"]
        .as_str()
        .unwrap();
    let path = example.split_once("/static/").map(|(_, p)| p).unwrap();
    let bytes = app
        .get(&app.client(), &format!("/static/{path}"))
        .await
        .bytes()
        .await
        .unwrap();
    let customer = app.create_customer("Acme", "live", 30).await;
    let (_, key) = app.issue_key(&customer, "faces:detect,images:read").await;
    let answer: serde_json::Value = app
        .client()
        .post(app.url("/v1/faces/detect"))
        .header("X-API-Key", &key)
        .header("Content-Type", "image/jpeg")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["faces"].as_array().unwrap().len(), 1, "{answer}");

    let links = &detect["responses"]["200"]["links"];
    assert_eq!(links["GetImage"]["operationId"], "image_get");
    assert_eq!(
        links["GetImage"]["parameters"]["id"],
        "$response.body#/image_id"
    );
    assert_eq!(links["DeleteImage"]["operationId"], "image_delete");
    assert_eq!(
        doc["paths"]["/v1/images/{id}"]["get"]["operationId"],
        "image_get"
    );

    let unauthorized = &detect["responses"]["401"];
    assert!(
        unauthorized["description"]
            .as_str()
            .unwrap()
            .contains("urn:trustplane:problem:unauthorized")
    );
    assert_eq!(
        unauthorized["content"]["application/problem+json"]["examples"]["unauthorized"]["value"]["type"],
        "urn:trustplane:problem:unauthorized"
    );
}
both_backends!(the_openapi_contract_describes_binary_images_links_and_problem_types);

async fn a_multipart_upload_with_a_part_other_than_image_is_refused_by_name(backend: Backend) {
    let app = spawn_app(backend).await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (_, key) = app.issue_key(&customer, "faces:detect").await;
    // The refusal comes at the first part, before the rest is read, so the body is kept
    // small enough to be written whole before the answer.
    let form = reqwest::multipart::Form::new().text("note", "hello").part(
        "image",
        reqwest::multipart::Part::bytes(ASTRONAUT[..64].to_vec())
            .mime_str("image/png")
            .unwrap(),
    );
    let response = app
        .client()
        .post(app.url("/v1/faces/detect"))
        .header("x-api-key", &key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, problem_type, body) = problem(response).await;
    assert_eq!(status, 400);
    assert_eq!(problem_type, "urn:trustplane:problem:malformed-request");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Unexpected part `note`"),
        "{body}"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM images").await,
        0,
        "nothing stored"
    );
}
both_backends!(a_multipart_upload_with_a_part_other_than_image_is_refused_by_name);

/// Sends a detection request's head and only `sent` bytes of its `length`-byte body, keeping
/// the connection open; the caller reads the answer with [`read_answer`].
async fn start_upload(
    app: &TestApp,
    key: &str,
    length: usize,
    sent: &[u8],
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/faces/detect HTTP/1.1\r\nhost: {}\r\nx-api-key: {key}\r\n\
         content-type: image/png\r\ncontent-length: {length}\r\n\r\n",
        app.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    stream
}

/// The status line's code and the body of the first answer on `stream`.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap_or(0);
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if n == 0 || (text.contains("\r\n\r\n") && text.trim_end().ends_with('}')) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

async fn uploads_wait_for_a_queue_place_before_their_body_is_read(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.detect_workers = 1;
        c.detect_queue = 0;
        c.api_upload_timeout_seconds = 1;
    })
    .await;
    let customer = app.create_customer("Acme", "live", 0).await;
    let (_, key) = app.issue_key(&customer, "faces:detect").await;

    // A slow client holds the only place with half an image.
    let mut slow = start_upload(&app, &key, ASTRONAUT.len(), &ASTRONAUT[..1000]).await;
    // Its place is taken once its head is read.
    let started = Instant::now();
    while app.state.analyzer.in_flight() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the slow upload has a place"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Now a request is refused before anything of its (large, unsent) body is read.
    let mut next = start_upload(&app, &key, 10 * 1024 * 1024, b"").await;
    let (status, refused) = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut next))
        .await
        .expect("a request without a place is answered without its body");
    assert_eq!(status, 503, "{refused}");
    assert!(
        refused.contains("urn:trustplane:problem:saturated"),
        "{refused}"
    );

    // The slow upload is cut off at the timeout, and its place is free again.
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut slow))
        .await
        .expect("the slow upload is answered");
    assert_eq!(status, 408, "{body}");
    assert!(
        body.contains("urn:trustplane:problem:upload-timeout"),
        "{body}"
    );
    let response = detect(&app, Some(&key), "image/png", ASTRONAUT.to_vec()).await;
    assert_eq!(response.status(), 200);
    assert!(blob_files(&app).is_empty(), "retention 0 stores nothing");
}
both_backends!(uploads_wait_for_a_queue_place_before_their_body_is_read);
