//! The database handle: one sqlx `AnyPool` over SQLite (embedded default) or PostgreSQL,
//! with the migrations of the matching folder. Queries are written once in portable SQL with
//! `$n` placeholders; timestamps are integer Unix milliseconds, ids are text, flags are 0/1.

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;

/// Which engine is behind the pool; only SQL that differs between them looks at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A transaction on the shared pool.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// The pool and what it talks to.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

impl Db {
    /// Connects to `url`, creating the SQLite file (and its folder) when needed.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if backend == Backend::Sqlite
            && let Some(path) = sqlite_path(url)
            && let Some(parent) = std::path::Path::new(&path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers proceed during a write; foreign keys are off by
                        // default in SQLite; writers wait instead of failing at once.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool, backend })
    }

    /// Applies the migrations of this backend's folder; running twice is a no-op.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.pool).await?,
            Backend::Postgres => {
                sqlx::migrate!("migrations/postgres")
                    .run(&self.pool)
                    .await?
            }
        }
        Ok(())
    }

    /// Begins a write transaction. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so a transaction that reads before it writes cannot fail half-way
    /// with a busy snapshot.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Cheap round trip used by `/readyz`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}

pub fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        None
    } else {
        Some(path.to_owned())
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub fn escape_like(raw: &str) -> String {
    raw.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A case-insensitive "contains" pattern for `LOWER(column) LIKE $n ESCAPE '\'`; empty input
/// gives an empty string, which the list queries read as "no filter".
pub fn like_contains(query: &str) -> String {
    if query.is_empty() {
        String::new()
    } else {
        format!("%{}%", escape_like(&query.to_lowercase()))
    }
}

/// `count` positional parameters starting at `$first`, comma-separated, for an `IN (…)` list.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Converts a stored 0/1 flag.
pub fn flag(value: i32) -> bool {
    value != 0
}

/// True when `err` is a unique-constraint violation (both backends).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db.code().as_deref() == Some("23505")
                || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

/// True when `err` means the database cannot be reached right now (answer 503, not 500).
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
    ) || matches!(err, sqlx::Error::Database(db) if db.code().as_deref().is_some_and(|c|
        // PostgreSQL: connection exceptions (08), insufficient resources (53), operator
        // intervention (57P), database not accepting connections (55000) or gone (3D000);
        // SQLite: busy (5, 517).
        c.starts_with("08") || c.starts_with("53") || c.starts_with("57P")
            || c == "55000" || c == "3D000" || c == "5" || c == "517"))
}

/// Serialises transactions that read-then-write a shared fact (the last admin, the next
/// incident number): on PostgreSQL a transaction-scoped advisory lock on `name`, held until
/// commit or rollback; on SQLite nothing, since `BEGIN IMMEDIATE` already serialises writers.
pub async fn lock_until_commit(
    conn: &mut sqlx::AnyConnection,
    name: &str,
) -> Result<(), sqlx::Error> {
    if conn.backend_name() != "PostgreSQL" {
        return Ok(());
    }
    // A stable 63-bit key from the name (FNV-1a), so each name locks independently.
    let key = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) >> 1;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(i64::try_from(key).unwrap_or(i64::MAX))
        .execute(conn)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_contains(""), "");
        assert_eq!(like_contains("Ana_50%"), "%ana\\_50\\%%");
        assert_eq!(escape_like("a\\b"), "a\\\\b");
    }

    #[test]
    fn placeholders_number_from_the_first() {
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
        assert_eq!(placeholders(1, 1), "$1");
    }

    #[test]
    fn sqlite_paths_are_found_in_urls() {
        assert_eq!(
            sqlite_path("sqlite://data/trustplane.db?mode=rwc").as_deref(),
            Some("data/trustplane.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }
}
