//! Application state and router assembly. Capability modules declare their portal routes;
//! this module only merges them and wraps the whole in the shared middleware.

use std::ops::Deref;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;

use crate::authz::Authz;
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::Keyring;
use crate::db::Db;
use crate::metrics::Metrics;

/// Everything a request handler may need. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// The shared parts of a running trustplane.
pub struct App {
    /// Validated configuration.
    pub config: Config,
    /// Database pool (SQLite or PostgreSQL).
    pub db: Db,
    /// The time source; manual in tests.
    pub clock: Arc<dyn Clock>,
    /// Server secrets.
    pub keyring: Keyring,
    /// RBAC decisions.
    pub authz: Authz,
    /// Prometheus counters and histograms.
    pub metrics: Metrics,
    /// This listener terminates TLS itself.
    pub tls: bool,
    /// Short-lived cache of API key lookups.
    pub key_cache: crate::keys::verify::KeyCache,
    /// API requests counted per key, written in batches.
    pub key_usage: Arc<crate::keys::usage::UsageTally>,
    /// Monitoring counters (per key, network and account per minute), written in batches.
    pub signals: Arc<crate::alerts::signals::SignalTally>,
    /// Encrypted image storage.
    pub blobs: crate::blobs::BlobStore,
    /// Bounded image analysis (worker processes or threads).
    pub analyzer: crate::biometric::Analyzer,
    /// Per-network limiter of the demo endpoint (IPv4 address, IPv6 /64).
    pub demo_limiter: crate::api::demo::DemoLimiter,
    /// Per-network limiter of the public sub-processor list, feed and subscribe form.
    pub trust_limiter: crate::rate_limit::NodeLimiter,
    /// Signs `security.txt` when the operator configured an OpenPGP key.
    pub security_txt_signer: Option<crate::disclosures::signing::SecurityTxtSigner>,
    /// Bounds concurrent password hashing (memory) with a short queue.
    pub passwords: crate::authn::PasswordGate,
    /// Accounts with a login secret being verified on this node right now.
    pub login_in_flight: crate::authn::throttle::InFlight,
    /// Business days, time zone and holidays every SLA deadline is computed with.
    pub sla_calendar: crate::sla::BusinessCalendar,
    /// The OpenID provider of `[sso]`, with its discovery and keys cached; `None` when off.
    pub sso: Option<Arc<crate::authn::sso::provider::OidcProvider>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config)
            .field("db", &self.db.backend)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl App {
    pub fn now(&self) -> crate::clock::Millis {
        self.clock.now_ms()
    }
}

impl AppState {
    pub fn new(app: App) -> Self {
        Self(Arc::new(app))
    }
}

/// The full router: every portal route from the registry, then the shared layers.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.portal_body_limit_bytes;
    crate::portal::routes::build(state.clone())
        .layer(DefaultBodyLimit::max(body_limit))
        .merge(crate::api::router(&state))
        .merge(crate::alerts::hook::router())
        .layer(from_fn_with_state(state.clone(), crate::web::context_layer))
        .with_state(state)
}
