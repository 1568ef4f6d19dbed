//! Login throttling per account and per client IP. Failures are counted in the database (so
//! every node sees them); at the threshold the subject is locked for a while. Unknown accounts
//! are throttled exactly like known ones, so the answer never reveals which emails exist.

use sqlx::{AnyConnection, Row};

use crate::clock::Millis;
use crate::crypto::sha256_hex;
use crate::db::Db;

/// The throttle key of an account, by email (hashed, so the table holds no addresses).
pub fn account_subject(email: &str) -> String {
    format!(
        "acct:{}",
        &sha256_hex(email.trim().to_lowercase().as_bytes())[..32]
    )
}

/// The throttle key of a client IP.
pub fn ip_subject(ip: &str) -> String {
    format!("ip:{ip}")
}

/// If any of `subjects` is locked at `now`, the time the lock ends.
pub async fn locked_until(
    db: &Db,
    subjects: &[&str],
    now: Millis,
) -> Result<Option<Millis>, sqlx::Error> {
    let mut latest: Option<Millis> = None;
    for subject in subjects {
        let row = sqlx::query("SELECT locked_until FROM login_throttle WHERE subject = $1")
            .bind(*subject)
            .fetch_optional(&db.pool)
            .await?;
        if let Some(row) = row {
            let until: Option<Millis> = row.try_get("locked_until")?;
            if let Some(until) = until.filter(|u| *u > now) {
                latest = Some(latest.map_or(until, |l| l.max(until)));
            }
        }
    }
    Ok(latest)
}

/// Counts a failure; returns the lock end if this failure reached `threshold`.
/// Failures older than `window` are forgotten, so occasional typos never add up to a lock.
pub async fn record_failure(
    conn: &mut AnyConnection,
    subject: &str,
    now: Millis,
    threshold: i64,
    window: Millis,
) -> Result<Option<Millis>, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO login_throttle (subject, failures, last_failure_at, locked_until) \
         VALUES ($1, 1, $2, NULL) \
         ON CONFLICT (subject) DO UPDATE SET \
           failures = CASE WHEN login_throttle.last_failure_at < $3 \
                           OR (login_throttle.locked_until IS NOT NULL \
                               AND login_throttle.locked_until <= $2) \
                      THEN 1 ELSE login_throttle.failures + 1 END, \
           locked_until = CASE WHEN login_throttle.locked_until IS NOT NULL \
                               AND login_throttle.locked_until <= $2 \
                          THEN NULL ELSE login_throttle.locked_until END, \
           last_failure_at = $2 \
         RETURNING failures, locked_until",
    )
    .bind(subject)
    .bind(now)
    .bind(now - window)
    .fetch_one(&mut *conn)
    .await?;
    let failures: i64 = row.try_get("failures")?;
    let already: Option<Millis> = row.try_get("locked_until")?;
    if already.is_none() && failures >= threshold {
        let until = now + window;
        sqlx::query("UPDATE login_throttle SET locked_until = $1 WHERE subject = $2")
            .bind(until)
            .bind(subject)
            .execute(&mut *conn)
            .await?;
        return Ok(Some(until));
    }
    Ok(None)
}

/// Forgets the failures of a subject after a successful login.
pub async fn reset(conn: &mut AnyConnection, subject: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_throttle WHERE subject = $1")
        .bind(subject)
        .execute(conn)
        .await
        .map(|_| ())
}
