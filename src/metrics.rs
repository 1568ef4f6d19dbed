//! Prometheus metrics: request counts and latencies per route, and login failures.
//! One registry per app instance (no globals), rendered in text format at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … about 8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// The metrics this process exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    /// Requests answered since start, all routes together (not exported: `requests` has
    /// them by route). The retention purge reads it to tell whether the server is busy.
    pub answered: Counter,
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub login_failures: Counter,
    pub api_key_failures: Counter,
    /// Age of the oldest kept image, by kind (`production`, `demo`), in seconds.
    pub oldest_image_age: Family<KindLabels, Gauge>,
    /// 1 when the retention control holds for that kind, 0 when it does not.
    pub retention_ok: Family<KindLabels, Gauge>,
    /// Bytes held by stored image copies, by kind, until the purge deletes them.
    pub stored_image_bytes: Family<KindLabels, Gauge>,
    /// `demo_storage_quota_bytes`, so alerts can compare the demo's use with its cap.
    pub demo_storage_quota: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("trustplane");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let login_failures = Counter::default();
        let api_key_failures = Counter::default();
        let oldest_image_age = Family::<KindLabels, Gauge>::default();
        let retention_ok = Family::<KindLabels, Gauge>::default();
        let stored_image_bytes = Family::<KindLabels, Gauge>::default();
        let demo_storage_quota = Gauge::default();
        registry.register(
            "stored_image_bytes",
            "Bytes held by stored image copies by kind (demo use counts against the demo quota)",
            stored_image_bytes.clone(),
        );
        registry.register(
            "demo_storage_quota_bytes",
            "Bytes all stored demo images may hold together; beyond it the demo answers 507",
            demo_storage_quota.clone(),
        );
        registry.register(
            "oldest_image_age_seconds",
            "Age of the oldest stored image by kind",
            oldest_image_age.clone(),
        );
        registry.register(
            "retention_control_ok",
            "1 when the oldest stored image is within the published retention (30 d production, 7 d demo)",
            retention_ok.clone(),
        );
        registry.register(
            "api_key_failures",
            "API requests refused for a missing, unknown, revoked or expired key",
            api_key_failures.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "login_failures",
            "Failed staff login attempts (password or second factor)",
            login_failures.clone(),
        );
        Self {
            registry,
            requests,
            answered: Counter::default(),
            latency,
            login_failures,
            api_key_failures,
            oldest_image_age,
            retention_ok,
            stored_image_bytes,
            demo_storage_quota,
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
