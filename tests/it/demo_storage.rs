//! The demo endpoint cannot fill the disk: every stored copy is bounded (demo copies are
//! small JPEG previews), the demo limit is per client network, and stored demo images share
//! a quota that answers 507 when used up and comes back when the purge deletes them.

use std::sync::OnceLock;

use trustplane::clock::{DAY, MINUTE};
use trustplane::images::{self, ImageKind, ImageRecord};
use trustplane::staff::model::Role;

use crate::api::{ASTRONAUT, COFFEE, problem};
use crate::both_backends;
use crate::helpers::*;

const MIB: usize = 1024 * 1024;

/// `POST /demo/v1/faces/detect`, optionally from the address a proxy reports.
async fn demo(app: &TestApp, forwarded_for: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut request = app
        .client()
        .post(app.url("/demo/v1/faces/detect"))
        .header("content-type", "image/png")
        .body(body);
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    request.send().await.unwrap()
}

/// The sealed copy of an image, opened.
async fn stored_copy(app: &TestApp, record: &ImageRecord) -> Vec<u8> {
    let key = record.blob_key.as_deref().expect("the image was kept");
    app.state
        .blobs
        .get_opened(key, &app.state.keyring, key.as_bytes())
        .await
        .unwrap()
}

/// A 6000 x 4000 PNG of noise: a 97 x 89 tile of random pixels repeated, so deflate with a
/// match finder brings it to about 1.6 MB (under the 10 MiB upload limit), while a
/// fast-deflate PNG of the same pixels, the copy stored before, is about 72 MB. Built once
/// and shared, since it takes seconds.
fn big_noisy_png() -> &'static [u8] {
    static PNG: OnceLock<Vec<u8>> = OnceLock::new();
    PNG.get_or_init(|| {
        let (width, height) = (6000_usize, 4000_usize);
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let tile: Vec<u8> = (0..97 * 89 * 3)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let mut pixels = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            let row = &tile[(y % 89) * 97 * 3..][..97 * 3];
            for x in 0..width {
                let i = (x % 97) * 3;
                pixels.extend_from_slice(&row[i..i + 3]);
            }
        }
        let image = image::RgbImage::from_raw(6000, 4000, pixels).unwrap();
        let mut png = Vec::new();
        image
            .write_with_encoder(image::codecs::png::PngEncoder::new_with_quality(
                &mut png,
                image::codecs::png::CompressionType::Default,
                image::codecs::png::FilterType::NoFilter,
            ))
            .unwrap();
        assert!(png.len() < 10 * MIB, "under the upload limit");
        png
    })
}

async fn a_large_demo_image_is_stored_as_a_small_jpeg_preview(backend: Backend) {
    // 24 megapixels take seconds to analyse, longer on a loaded machine.
    let app = spawn_app_with(backend, |c| c.detect_timeout_seconds = 120).await;
    let upload = big_noisy_png().to_vec();

    let response = demo(&app, None, upload.clone()).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (body["width"].as_u64(), body["height"].as_u64()),
        (Some(6000), Some(4000))
    );

    let record = images::find(&app.state.db, body["image_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    let copy = stored_copy(&app, &record).await;
    eprintln!(
        "upload {} bytes, stored preview {} bytes, processing {} ms",
        upload.len(),
        copy.len(),
        body["processing_ms"]
    );
    assert!(copy.starts_with(&[0xFF, 0xD8, 0xFF]), "stored as JPEG");
    let decoded = image::load_from_memory(&copy).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (1024, 683));
    assert_eq!(record.byte_size, i64::try_from(copy.len()).unwrap());
    assert!(copy.len() <= 2 * upload.len(), "at most twice the upload");
    assert!(copy.len() <= app.state.config.stored_image_max_bytes);
}
both_backends!(a_large_demo_image_is_stored_as_a_small_jpeg_preview);

async fn a_production_copy_over_its_ceiling_is_stored_as_jpeg(backend: Backend) {
    let ceiling = 64 * 1024;
    let app = spawn_app_with(backend, |c| c.stored_image_max_bytes = ceiling).await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (_, key) = app.issue_key(&customer, "faces:detect").await;

    let response = app
        .client()
        .post(app.url("/v1/faces/detect"))
        .header("x-api-key", key)
        .header("content-type", "image/png")
        .body(ASTRONAUT.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["faces"].as_array().unwrap().len(), 1, "{body}");

    let record = images::find(&app.state.db, body["image_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    let copy = stored_copy(&app, &record).await;
    eprintln!(
        "upload {} bytes, stored copy {} bytes",
        ASTRONAUT.len(),
        copy.len()
    );
    assert!(copy.starts_with(&[0xFF, 0xD8, 0xFF]), "stored as JPEG");
    assert!(copy.len() <= ceiling, "{} bytes", copy.len());
    assert_eq!(record.byte_size, i64::try_from(copy.len()).unwrap());
}
both_backends!(a_production_copy_over_its_ceiling_is_stored_as_jpeg);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_limit_is_per_ipv4_address_and_per_ipv6_64() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.behind_proxy = true;
        c.demo_requests_per_minute = 1;
    })
    .await;
    let status = |address: &'static str| {
        let app = &app;
        async move { demo(app, Some(address), COFFEE.to_vec()).await.status() }
    };
    assert_eq!(status("2001:db8:1:2::1").await, 200);
    assert_eq!(
        status("2001:db8:1:2:ffff:ffff:ffff:7").await,
        429,
        "another address of the same /64 shares its limit"
    );
    assert_eq!(
        status("2001:db8:1:3::1").await,
        200,
        "the next /64 does not"
    );
    assert_eq!(status("203.0.113.1").await, 200);
    assert_eq!(status("203.0.113.2").await, 200, "IPv4 is per address");
    assert_eq!(status("203.0.113.1").await, 429);
}

/// Puts a stored demo image of `byte_size` bytes, created now, straight into the store.
async fn a_stored_demo_image(app: &TestApp, byte_size: i64) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let blob_key = format!("demo/{id}");
    let now = app.state.now();
    app.state
        .blobs
        .put_sealed(
            &blob_key,
            b"filler",
            &app.state.keyring,
            blob_key.as_bytes(),
        )
        .await
        .unwrap();
    let mut conn = app.state.db.pool.acquire().await.unwrap();
    images::insert(
        &mut conn,
        &ImageRecord {
            id: id.clone(),
            customer_id: None,
            key_id: None,
            kind: ImageKind::Demo.as_str().to_owned(),
            format: "png".into(),
            width: 600,
            height: 400,
            byte_size,
            blob_key: Some(blob_key),
            result: "{}".into(),
            created_at: now,
            expires_at: now + 7 * DAY,
            retained_until: Some(now + 7 * DAY),
        },
    )
    .await
    .unwrap();
    id
}

async fn a_full_demo_quota_answers_507_until_the_purge_frees_it(backend: Backend) {
    let quota = MIB as u64;
    let app = spawn_app_with(backend, |c| {
        c.demo_storage_quota_bytes = quota;
        c.demo_requests_per_minute = 100;
    })
    .await;
    let customer = app.create_customer("Acme", "live", 30).await;
    let (_, key) = app.issue_key(&customer, "faces:detect").await;
    let filler = a_stored_demo_image(&app, i64::try_from(quota).unwrap() - 1000).await;
    let demo_images = "SELECT COUNT(*) FROM images WHERE kind = 'demo'";

    // 1000 bytes left: room in principle, but not for this image's copy.
    let (status, kind, body) = problem(demo(&app, None, COFFEE.to_vec()).await).await;
    assert_eq!(
        (status, kind.as_str()),
        (507, "urn:trustplane:problem:demo-storage-full"),
        "{body}"
    );
    assert!(
        body["detail"].as_str().unwrap().contains("7 days"),
        "{body}"
    );
    assert_eq!(app.count(demo_images).await, 1, "nothing more was stored");

    // Used up: refused before any analysis.
    sqlx::query("UPDATE images SET byte_size = $1 WHERE id = $2")
        .bind(i64::try_from(quota).unwrap())
        .bind(&filler)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let (status, kind, _) = problem(demo(&app, None, COFFEE.to_vec()).await).await;
    assert_eq!(
        (status, kind.as_str()),
        (507, "urn:trustplane:problem:demo-storage-full")
    );

    // Keyed uploads do not count against the demo quota.
    let production = app
        .client()
        .post(app.url("/v1/faces/detect"))
        .header("x-api-key", &key)
        .header("content-type", "image/png")
        .body(COFFEE.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(production.status(), 200);

    // Expired but not yet purged: the bytes are still on disk, so still full.
    app.clock.advance(7 * DAY);
    assert_eq!(demo(&app, None, COFFEE.to_vec()).await.status(), 507);

    // The answer is documented.
    let doc: serde_json::Value = app
        .get(&app.client(), "/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        doc["paths"]["/demo/v1/faces/detect"]["post"]["responses"]["507"]["content"]
            ["application/problem+json"]
            .is_object()
    );

    let report = trustplane::retention::purge(&app.state, "test-purge")
        .await
        .unwrap();
    assert_eq!(report.demo_deleted, 1);
    assert_eq!(demo(&app, None, COFFEE.to_vec()).await.status(), 200);
}
both_backends!(a_full_demo_quota_answers_507_until_the_purge_frees_it);

async fn the_dashboard_and_metrics_show_demo_storage(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.demo_storage_quota_bytes = MIB as u64).await;
    let response = demo(&app, None, COFFEE.to_vec()).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let record = images::find(&app.state.db, body["image_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    let used = record.byte_size;
    assert!(used > 0);

    let (client, _) = app.logged_in_as(Role::Auditor).await;
    let page = app.get(&client, "/").await.text().await.unwrap();
    assert!(page.contains("Demo storage"), "{page}");
    assert!(
        page.contains(&format!("data-demo-bytes=\"{used}\"")),
        "{page}"
    );
    assert!(page.contains("data-demo-images=\"1\""), "{page}");
    assert!(page.contains(" / 1.0 MiB"), "{page}");

    let metrics = app.get(&client, "/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(&format!(
            "trustplane_stored_image_bytes{{kind=\"demo\"}} {used}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("trustplane_demo_storage_quota_bytes 1048576"),
        "{metrics}"
    );
}
both_backends!(the_dashboard_and_metrics_show_demo_storage);

/// What a node's demo limiter says for one network: `None` when allowed, else Retry-After.
async fn demo_limit(node: &trustplane::app::AppState, network: &str) -> Option<u64> {
    let network = trustplane::client_net::ClientNetwork::parse(network);
    match node.demo_limiter.check(node, network).await {
        Ok(()) => None,
        Err(trustplane::api::problem::ApiError::RateLimited { retry_after_secs }) => {
            Some(retry_after_secs)
        }
        Err(other) => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_postgresql_together_allow_the_promised_demo_rate_not_twice_it() {
    let app = spawn_app(Backend::Postgres).await;
    let other_node = app.second_node().await;
    let per_minute = app.state.config.demo_requests_per_minute;
    assert_eq!(per_minute, other_node.config.demo_requests_per_minute);

    // Alternating nodes, one network gets exactly the promised burst.
    for i in 0..per_minute {
        let node = if i % 2 == 0 { &app.state } else { &other_node };
        assert_eq!(demo_limit(node, "203.0.113.7").await, None, "request {i}");
    }
    let wait = demo_limit(&other_node, "203.0.113.7").await.unwrap();
    assert_eq!(demo_limit(&app.state, "203.0.113.7").await, Some(wait));
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(
        demo_limit(&app.state, "203.0.113.8").await,
        None,
        "another network has its own allowance"
    );

    // The sustained rate: one more request per interval, on whichever node.
    let interval = 60_000 / i64::from(per_minute);
    app.clock.advance(interval - 1);
    assert!(demo_limit(&other_node, "203.0.113.7").await.is_some());
    app.clock.advance(1);
    assert_eq!(demo_limit(&other_node, "203.0.113.7").await, None);
    assert!(demo_limit(&app.state, "203.0.113.7").await.is_some());

    // No address is kept: rows are keyed by an HMAC, and the purge sweeps stale ones.
    let stored: Vec<String> = sqlx::query_scalar("SELECT network_hash FROM demo_rate_limits")
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|h| !h.contains("203.0.113")));
    app.clock.advance(2 * MINUTE);
    trustplane::retention::purge(&app.state, "test-purge")
        .await
        .unwrap();
    assert_eq!(app.count("SELECT COUNT(*) FROM demo_rate_limits").await, 0);
}

#[tokio::test]
async fn one_node_on_sqlite_keeps_the_demo_limit_in_memory() {
    let app = spawn_app(Backend::Sqlite).await;
    for _ in 0..app.state.config.demo_requests_per_minute {
        assert_eq!(demo_limit(&app.state, "203.0.113.7").await, None);
    }
    assert!(demo_limit(&app.state, "203.0.113.7").await.is_some());
    assert_eq!(app.count("SELECT COUNT(*) FROM demo_rate_limits").await, 0);
}
