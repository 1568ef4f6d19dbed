//! Set-up shared by the benchmarks: a real app state on a fresh SQLite file or a fresh
//! PostgreSQL database (created for the run and dropped after it), and a staff account with a
//! fully authenticated session, and the `wrk` driver of the HTTP load benchmarks ([`wrk`]).
// Each benchmark binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod wrk;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::Connection;
use trustplane::app::AppState;
use trustplane::authn::session::{self, Origin, Stage};
use trustplane::clock::{HOUR, ManualClock};
use trustplane::config::Config;
use trustplane::crypto::Keyring;
use trustplane::staff::model::{DisplayName, Email, Role};
use trustplane::staff::store;

/// 2027-01-15 08:00 UTC; the manual clock stays there unless a benchmark moves it, so
/// sessions never go idle.
pub const T0: i64 = 1_800_000_000_000;

/// The password of every benchmark account.
pub const PASSWORD: &str = "a perfectly long benchmark passphrase";

/// Which database a benchmark runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where the benchmark databases are created (same variable as the integration tests).
pub fn postgres_admin_url() -> String {
    std::env::var("TRUSTPLANE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// SQLite always; PostgreSQL when the server answers. A missing server is reported, not fatal.
pub async fn backends() -> Vec<Backend> {
    sqlx::any::install_default_drivers();
    let admin = postgres_admin_url();
    let reachable = matches!(
        tokio::time::timeout(Duration::from_secs(3), sqlx::AnyConnection::connect(&admin)).await,
        Ok(Ok(_))
    );
    if reachable {
        vec![Backend::Sqlite, Backend::Postgres]
    } else {
        eprintln!("PostgreSQL is not reachable at {admin}: running on SQLite only");
        vec![Backend::Sqlite]
    }
}

/// An app state on its own database.
pub struct BenchDb {
    pub state: AppState,
    /// The state's clock, for benchmarks that move time (it starts at [`T0`]).
    pub clock: Arc<ManualClock>,
    pub backend: Backend,
    pg_database: Option<String>,
    _dir: tempfile::TempDir,
}

impl BenchDb {
    /// Creates the database, runs the migrations and assembles the state.
    pub async fn open(backend: Backend) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir()?;
        let (database_url, pg_database) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}?mode=rwc", dir.path().join("tp.db").display()),
                None,
            ),
            Backend::Postgres => {
                let name = format!("tp_bench_{}", uuid::Uuid::new_v4().simple());
                let admin = postgres_admin_url();
                let mut conn = sqlx::AnyConnection::connect(&admin)
                    .await
                    .with_context(|| format!("PostgreSQL must be reachable at {admin}"))?;
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut conn)
                    .await?;
                conn.close().await?;
                let mut url = url::Url::parse(&admin)?;
                url.set_path(&format!("/{name}"));
                (url.to_string(), Some(name))
            }
        };
        let config = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().to_path_buf(),
            database_url,
            // No worker processes: this program is not the `trustplane` binary.
            detect_isolation: "thread".into(),
            scheduler_enabled: false,
            ..Config::default()
        };
        let clock = ManualClock::new(T0);
        let state =
            trustplane::server::build_state(config, clock.clone(), Keyring::generate()).await?;
        Ok(Self {
            state,
            clock,
            backend,
            pg_database,
            _dir: dir,
        })
    }

    /// Closes the pool and drops the PostgreSQL database.
    pub async fn close(self) -> anyhow::Result<()> {
        self.state.db.pool.close().await;
        if let Some(name) = &self.pg_database {
            let mut conn = sqlx::AnyConnection::connect(&postgres_admin_url()).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
        }
        Ok(())
    }
}

/// Creates an account holding `roles` and a `full` session for it; returns the cookie token.
pub async fn staff_with_session(
    state: &AppState,
    email: &str,
    roles: &[Role],
) -> anyhow::Result<String> {
    let now = state.now();
    let hash = trustplane::authn::password::hash(PASSWORD)?;
    let mut tx = state.db.begin().await?;
    let id = store::insert(
        &mut tx,
        &Email::parse(email).map_err(anyhow::Error::msg)?,
        &DisplayName::parse("Bench Person").map_err(anyhow::Error::msg)?,
        Some(&hash),
        now,
    )
    .await?;
    for role in roles {
        store::grant_role(&mut tx, &id, *role, "bench", now).await?;
    }
    let issued = session::create(
        &mut tx,
        &id,
        Stage::Full,
        now,
        now + 12 * HOUR,
        &Origin::default(),
    )
    .await?;
    tx.commit().await?;
    Ok(issued.token)
}
