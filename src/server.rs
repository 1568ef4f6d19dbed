//! Start-up and the listener: builds the app from config (database, migrations, keyring,
//! policies), refuses plain HTTP on a public address, terminates TLS with rustls (TLS 1.2
//! and 1.3 only) when given a certificate, prints the first-run setup link, and shuts down
//! gracefully on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;

use crate::app::{App, AppState};
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::authn::links;
use crate::authz::Authz;
use crate::clock::{Clock, HOUR};
use crate::config::Config;
use crate::crypto::Keyring;
use crate::db::Db;
use crate::metrics::Metrics;

/// Connects the database, runs migrations, and assembles the shared state.
pub async fn build_state(
    config: Config,
    clock: Arc<dyn Clock>,
    keyring: Keyring,
) -> anyhow::Result<AppState> {
    let url = config.effective_database_url();
    let db = Db::connect(&url)
        .await
        .with_context(|| format!("cannot open database {}", crate::config::redact_url(&url)))?;
    db.migrate().await.context("database migration failed")?;
    let authz = Authz::load(&config.policy_dir).await?;
    let tls = config.tls_enabled();
    // RES-1: a blob store outside the EU does not start without the explicit override.
    crate::controls::residency::check(&config)?;
    let blobs = crate::blobs::BlobStore::open(&config.blob_store_url, &config.data_dir)?;
    let analyzer = analyzer_from(&config)?;
    // Several nodes can only share a PostgreSQL database; there the limit must be shared too.
    let demo_limiter = if db.backend == crate::db::Backend::Postgres {
        crate::api::demo::DemoLimiter::shared_per_minute(config.demo_requests_per_minute)
    } else {
        crate::api::demo::DemoLimiter::per_minute(config.demo_requests_per_minute)
    };
    let sla_calendar = config.sla_calendar()?;
    let security_txt_signer = match config.security_txt_openpgp_key.trim() {
        "" => None,
        path => Some(crate::disclosures::signing::SecurityTxtSigner::load(
            std::path::Path::new(path),
            std::env::var(crate::disclosures::signing::PASSPHRASE_ENV).ok(),
        )?),
    };
    let sso = if config.sso.enabled() {
        Some(Arc::new(crate::authn::sso::provider::OidcProvider::new(
            config.sso.clone(),
        )?))
    } else {
        None
    };
    Ok(AppState::new(App {
        sso,
        sla_calendar,
        security_txt_signer,
        analyzer,
        demo_limiter,
        trust_limiter: crate::rate_limit::NodeLimiter::per_minute(config.trust_requests_per_minute),
        passwords: crate::authn::PasswordGate::new(
            config.password_hash_concurrency,
            config.password_hash_queue,
        ),
        login_in_flight: Default::default(),
        key_cache: crate::keys::verify::KeyCache::default(),
        key_usage: Default::default(),
        signals: Default::default(),
        blobs,
        config,
        db,
        clock,
        keyring,
        authz,
        metrics: Metrics::default(),
        tls,
    }))
}

/// The image analyser the config asks for.
pub fn analyzer_from(config: &Config) -> anyhow::Result<crate::biometric::Analyzer> {
    use crate::biometric::{Analyzer, DetectorSettings, Isolation, Limits};
    let workers = if config.detect_workers == 0 {
        std::thread::available_parallelism().map_or(2, usize::from)
    } else {
        config.detect_workers
    };
    let isolation = if config.detect_isolation == "thread" {
        Isolation::Thread
    } else {
        let exe = if config.worker_exe.is_empty() {
            std::env::current_exe().context("cannot find this program to start image workers")?
        } else {
            std::path::PathBuf::from(&config.worker_exe)
        };
        Isolation::Process {
            exe,
            args: vec!["worker".to_owned()],
        }
    };
    let limits = Limits {
        max_bytes: config.api_max_image_bytes,
        max_width: config.api_max_dimension,
        max_height: config.api_max_dimension,
        max_pixels: config.api_max_pixels,
        ..Limits::default()
    };
    Analyzer::new(
        isolation,
        workers,
        config.detect_queue,
        limits,
        DetectorSettings::default(),
        std::time::Duration::from_secs(config.detect_timeout_seconds),
    )
}

/// Refuses to serve plain HTTP where it could cross a network without a TLS proxy.
pub fn check_transport(config: &Config) -> anyhow::Result<()> {
    let addr = config.listen_addr()?;
    if !config.tls_enabled() && !config.behind_proxy && !addr.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve plain HTTP on {addr}: set tls_cert and tls_key, or set \
             behind_proxy = true when a TLS-terminating proxy is in front, or listen on loopback"
        );
    }
    Ok(())
}

/// A rustls server config that offers TLS 1.2 and 1.3 only.
pub fn tls_config(config: &Config) -> anyhow::Result<rustls::ServerConfig> {
    let cert_pem = std::fs::read(&config.tls_cert)
        .with_context(|| format!("cannot read tls_cert {}", config.tls_cert))?;
    let key_pem = std::fs::read(&config.tls_key)
        .with_context(|| format!("cannot read tls_key {}", config.tls_key))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .context("tls_cert is not a PEM certificate chain")?;
    if certs.is_empty() {
        anyhow::bail!("tls_cert {} contains no certificate", config.tls_cert);
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .context("tls_key is not a PEM private key")?
        .ok_or_else(|| anyhow::anyhow!("tls_key {} contains no private key", config.tls_key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls_cert and tls_key do not form a usable pair")?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}

/// When no staff account exists, issues a one-time link for creating the first admin.
pub async fn first_run_link(state: &AppState, base_url: &str) -> anyhow::Result<Option<String>> {
    if crate::staff::store::any_exists(&state.db).await? {
        return Ok(None);
    }
    let now = state.now();
    let mut tx = state.db.begin().await?;
    // Only the newest first-run link is valid.
    sqlx::query("DELETE FROM one_time_tokens WHERE purpose = 'first_admin' AND used_at IS NULL")
        .execute(&mut *tx)
        .await?;
    let hours = state.config.setup_link_hours;
    let token = links::create(
        &mut tx,
        links::Purpose::FirstAdmin,
        None,
        "system",
        now,
        now + hours * HOUR,
    )
    .await?;
    audit::append(
        &mut tx,
        now,
        &RequestMeta::default(),
        AuditEvent::new("system", "setup.link.issued", "first_admin").detail("valid_hours", hours),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(format!("{base_url}/setup?token={token}")))
}

/// A running server (used by `serve` and by tests).
pub struct Running {
    pub addr: SocketAddr,
    pub handle: axum_server::Handle,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Writes API usage tallies in the background.
    pub usage_flusher: tokio::task::JoinHandle<()>,
    /// Writes monitoring counters in the background.
    pub signal_flusher: tokio::task::JoinHandle<()>,
}

/// Binds `listen` and serves `state` in the background.
pub async fn start(state: AppState, listen: SocketAddr) -> anyhow::Result<Running> {
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let app: Router = crate::app::router(state.clone());
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let task = if state.config.tls_enabled() {
        let rustls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls_config(
            &state.config,
        )?));
        let server = axum_server::from_tcp_rustls(listener, rustls).handle(handle.clone());
        tokio::spawn(server.serve(service))
    } else {
        let server = axum_server::from_tcp(listener).handle(handle.clone());
        tokio::spawn(server.serve(service))
    };
    let usage_flusher = state.key_usage.clone().spawn_flusher(state.db.clone());
    let signal_flusher = state.signals.clone().spawn_flusher(state.db.clone());
    Ok(Running {
        addr,
        handle,
        task,
        usage_flusher,
        signal_flusher,
    })
}

/// `trustplane serve`.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    check_transport(&config)?;
    crate::data_dir::prepare(
        &config.data_dir,
        &crate::data_dir::sqlite_files(&config.effective_database_url()),
    )
    .with_context(|| format!("cannot prepare data dir {}", config.data_dir.display()))?;
    let keyring = Keyring::load_or_create(&config.effective_keyring_path())?;
    let listen = config.listen_addr()?;
    let state = build_state(config, Arc::new(crate::clock::SystemClock), keyring).await?;
    let running = start(state.clone(), listen).await?;
    let base = state.config.base_url(running.addr);
    if state.config.tls_enabled() {
        tracing::info!(%base, tls = "TLS 1.2, TLS 1.3 (rustls)", "listening");
    } else {
        tracing::info!(%base, tls = "off (loopback or behind a TLS proxy)", "listening");
    }
    let scheduler = if state.config.scheduler_enabled {
        Some(crate::jobs::Scheduler::new(state.clone())?.spawn())
    } else {
        None
    };
    if let Some(link) = first_run_link(&state, &base).await? {
        // Printed to the console only, never logged: the link is a one-time credential.
        println!(
            "\nNo staff account exists yet. Open this one-time link within {} hours to create \
             the first administrator:\n\n    {link}\n",
            state.config.setup_link_hours
        );
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    if let Some(scheduler) = scheduler {
        scheduler.abort();
    }
    running
        .handle
        .graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    running.task.await??;
    running.usage_flusher.abort();
    running.signal_flusher.abort();
    if let Err(err) = state.signals.flush(&state.db).await {
        tracing::error!(error = %err, "monitoring counters of the last second could not be written");
    }
    if let Err(err) = state.key_usage.flush(&state.db).await {
        tracing::error!(error = %err, "API usage counts of the last second could not be written");
    }
    state.db.pool.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
