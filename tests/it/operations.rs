//! HTTP hardening and operations: headers, health, metrics, limits, TLS, a database that
//! goes away.

use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;

async fn every_response_carries_security_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.client();
    for path in ["/login", "/healthz", "/static/app.css", "/nowhere"] {
        let response = app.get(&client, path).await;
        let h = response.headers();
        let csp = h.get("content-security-policy").unwrap().to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
            "{path}"
        );
        assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
        assert_eq!(h.get("referrer-policy").unwrap(), "no-referrer");
        assert!(h.get("x-request-id").is_some());
        assert!(
            h.get("strict-transport-security").is_none(),
            "no HSTS on plain HTTP"
        );
    }
    let not_found = app.get(&client, "/nowhere").await;
    assert_eq!(not_found.status(), 404);
    assert_eq!(
        error_code(&not_found.text().await.unwrap()).as_deref(),
        Some("not_found")
    );
    let css = app.get(&client, "/static/app.css").await;
    assert_eq!(
        css.headers().get("cache-control").unwrap(),
        "public, max-age=86400"
    );
    let etag = css
        .headers()
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let cached = client
        .get(app.url("/static/app.css"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
}
both_backends!(every_response_carries_security_headers);

async fn health_readiness_and_metrics(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.client();
    assert_eq!(
        app.get(&client, "/healthz").await.text().await.unwrap(),
        "ok"
    );
    assert_eq!(app.get(&client, "/readyz").await.status(), 200);
    app.login_password(&client, "nobody@example.com", "wrong password here")
        .await;
    let metrics = app.get(&client, "/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("trustplane_login_failures_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains(
        "trustplane_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
    ));
    assert!(metrics.contains("trustplane_http_request_duration_seconds_bucket"));
}
both_backends!(health_readiness_and_metrics);

async fn metrics_need_loopback_or_the_token(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.behind_proxy = true;
        c.metrics_token = "metrics-test-token".into();
    })
    .await;
    let client = app.client();
    let remote = client
        .get(app.url("/metrics"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(remote.status(), 403);
    let with_token = client
        .get(app.url("/metrics"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("authorization", "Bearer metrics-test-token")
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), 200);
}
both_backends!(metrics_need_loopback_or_the_token);

async fn behind_a_tls_proxy_cookies_are_host_prefixed_and_secure(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.behind_proxy = true).await;
    let client = app.client();
    let response = client
        .get(app.url("/login"))
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        cookie.starts_with("__Host-tp_pre=") && cookie.contains("; Secure"),
        "{cookie}"
    );
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_some()
    );
}
both_backends!(behind_a_tls_proxy_cookies_are_host_prefixed_and_secure);

async fn the_database_going_away_gives_a_503_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let (client, _) = app.logged_in_as(Role::Admin).await;
    assert_eq!(app.get(&client, "/").await.status(), 200);
    match backend {
        Backend::Postgres => {
            // Refuse new connections and cut the existing ones, as a failed-over server would.
            use sqlx::Connection;
            let db = app.database_url.rsplit('/').next().unwrap().to_owned();
            let mut admin = sqlx::AnyConnection::connect(&postgres_admin_url())
                .await
                .unwrap();
            sqlx::query(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false"))
                .execute(&mut admin)
                .await
                .unwrap();
            sqlx::query(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
            ))
            .execute(&mut admin)
            .await
            .unwrap();
            let mut down = app.get(&client, "/").await;
            // The first request may spend itself discovering the cut connection.
            if down.status() != 503 {
                down = app.get(&client, "/").await;
            }
            assert_eq!(down.status(), 503);
            assert_eq!(
                error_code(&down.text().await.unwrap()).as_deref(),
                Some("unavailable")
            );
            assert_eq!(app.get(&client, "/readyz").await.status(), 503);
            assert_eq!(app.get(&client, "/healthz").await.status(), 200);
            sqlx::query(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"))
                .execute(&mut admin)
                .await
                .unwrap();
            assert_eq!(
                app.get(&client, "/").await.status(),
                200,
                "recovers when the database returns"
            );
        }
        Backend::Sqlite => {
            app.state.db.pool.close().await;
            let down = app.get(&client, "/").await;
            assert_eq!(down.status(), 503);
            assert_eq!(
                error_code(&down.text().await.unwrap()).as_deref(),
                Some("unavailable")
            );
            assert_eq!(app.get(&client, "/readyz").await.status(), 503);
        }
    }
}
both_backends!(the_database_going_away_gives_a_503_page);

async fn malformed_and_oversized_forms_get_readable_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _) = app.logged_in_as(Role::Admin).await;
    let before = app.count("SELECT COUNT(*) FROM staff").await;
    let missing_field = app
        .submit(
            &admin,
            "/staff/new",
            "/staff",
            &[("email", "a@example.com")],
        )
        .await;
    assert_eq!(missing_field.status(), 400);
    assert_eq!(
        error_code(&missing_field.text().await.unwrap()).as_deref(),
        Some("bad_request")
    );

    let long_name = "n".repeat(500);
    let too_long = app
        .submit(
            &admin,
            "/staff/new",
            "/staff",
            &[
                ("email", "a@example.com"),
                ("display_name", &long_name),
                ("role", "auditor"),
            ],
        )
        .await;
    assert_eq!(too_long.status(), 422);
    assert!(
        too_long
            .text()
            .await
            .unwrap()
            .contains("at most 100 characters")
    );

    let huge = "x".repeat(200 * 1024);
    let oversized = app
        .submit(
            &admin,
            "/staff/new",
            "/staff",
            &[
                ("email", "a@example.com"),
                ("display_name", &huge),
                ("role", "auditor"),
            ],
        )
        .await;
    assert_eq!(oversized.status(), 413);
    assert_eq!(app.count("SELECT COUNT(*) FROM staff").await, before);

    let bad_version = app
        .submit(
            &admin,
            "/staff",
            &format!("/staff/{}/roles", "nope"),
            &[("role", "auditor"), ("version", "abc")],
        )
        .await;
    assert_eq!(bad_version.status(), 400);
}
both_backends!(malformed_and_oversized_forms_get_readable_errors);

fn self_signed(dir: &std::path::Path) -> (String, String) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

async fn tls_listener_offers_tls_12_and_13_only(backend: Backend) {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let app = spawn_app_with(backend, |c| {
        c.tls_cert = cert.clone();
        c.tls_key = key.clone();
    })
    .await;
    assert!(app.base.starts_with("https://"));
    let client = app.client();
    let response = app.get(&client, "/login").await;
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_some()
    );
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        cookie.starts_with("__Host-tp_pre=") && cookie.contains("; Secure"),
        "{cookie}"
    );

    let addr = app.addr.to_string();
    let handshake = move |flag: &str| {
        std::process::Command::new("openssl")
            .args(["s_client", "-connect", addr.as_str(), flag])
            .stdin(std::process::Stdio::null())
            .output()
            .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Cipher is"))
            .unwrap_or(false)
    };
    let (v12, v13, v11, v10) = tokio::task::spawn_blocking(move || {
        (
            handshake("-tls1_2"),
            handshake("-tls1_3"),
            handshake("-tls1_1"),
            handshake("-tls1"),
        )
    })
    .await
    .unwrap();
    assert!(v12 && v13, "TLS 1.2 and 1.3 offered");
    assert!(!v11 && !v10, "TLS 1.0 and 1.1 refused");
}
both_backends!(tls_listener_offers_tls_12_and_13_only);
