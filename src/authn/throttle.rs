//! Login throttling per account and per client network. Every attempt to check a secret
//! (password, TOTP code, recovery code, re-authentication) is **counted before the secret is
//! checked**: one atomic `INSERT … ON CONFLICT … RETURNING` charges the attempt, and an attempt
//! beyond the limit is refused without any verification. However many requests arrive at once,
//! at most `threshold` verifications run per subject and window, on every node. A success
//! refunds its charge (the account's counter is cleared, the network's decremented).
//!
//! On top of that, each node lets only one verification per account be in flight at a time
//! ([`InFlight`]), so a burst is answered "busy" at once instead of queueing.
//!
//! Unknown accounts are throttled exactly like known ones, so the answer never reveals which
//! emails exist. While a subject is locked, only the first refused attempt is written to the
//! audit log; the rest are counted, and the count is written as one summary row when the lock
//! is next touched after it ended, or by the retention purge's sweep.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use sqlx::{AnyConnection, Row};

use crate::audit::{self, AuditEvent, Outcome, RequestMeta};
use crate::clock::Millis;
use crate::crypto::sha256_hex;

/// The throttle key of an account, by email (hashed, so the table holds no addresses).
pub fn account_subject(email: &str) -> String {
    format!(
        "acct:{}",
        &sha256_hex(email.trim().to_lowercase().as_bytes())[..32]
    )
}

/// The throttle key of a client: its network (IPv4 /32, IPv6 /64), so rotating addresses
/// inside one IPv6 allocation does not escape the limit.
pub fn ip_subject(ip: &str) -> String {
    format!("ip:{}", crate::web::client_network_key(ip))
}

/// One subject an attempt is charged to, with its limit per window.
#[derive(Debug, Clone)]
pub struct Subject {
    pub key: String,
    pub threshold: i64,
}

impl Subject {
    pub fn new(key: String, threshold: i64) -> Self {
        Self { key, threshold }
    }
}

/// What [`begin_attempt`] decided.
#[derive(Debug)]
pub enum Gate {
    /// The attempt is charged; verify the secret, then call [`Attempt::succeeded`] or
    /// [`Attempt::failed`].
    Proceed(Attempt),
    /// A subject is locked (or has used its attempts); nothing may be verified.
    Locked { until: Millis },
}

/// A charged attempt: the count each subject reached when it was charged.
#[derive(Debug)]
pub struct Attempt {
    charged: Vec<(Subject, i64)>,
}

/// Charges one attempt to every subject (in `conn`'s transaction, which the caller commits
/// **before** verifying anything). If any subject is locked or over its limit the attempt is
/// refused, the other subjects' charges are refunded, and the first refusal of a lock is
/// audited (later ones only counted).
pub async fn begin_attempt(
    conn: &mut AnyConnection,
    subjects: &[Subject],
    now: Millis,
    window: Millis,
    meta: &RequestMeta,
    refused_event: AuditEvent,
) -> Result<Gate, sqlx::Error> {
    let mut charged = Vec::with_capacity(subjects.len());
    let mut refused_until: Option<Millis> = None;
    let mut first_refusal = false;
    for subject in subjects {
        let claim = claim(conn, subject, now, window).await?;
        if claim.refused_in_ended_lock > 1 {
            summarise_refusals(conn, now, meta, &subject.key, claim.refused_in_ended_lock).await?;
        }
        if claim.refused > 0 {
            let until = claim.locked_until.unwrap_or(now + window);
            refused_until = Some(refused_until.map_or(until, |u| u.max(until)));
            first_refusal |= claim.refused == 1;
        } else {
            charged.push((subject.clone(), claim.failures));
        }
    }
    let Some(until) = refused_until else {
        return Ok(Gate::Proceed(Attempt { charged }));
    };
    for (subject, _) in &charged {
        refund(conn, &subject.key).await?;
    }
    if first_refusal {
        let event = refused_event
            .outcome(Outcome::Denied)
            .detail("reason", "locked")
            .detail("further_refusals", "counted, summarised when the lock ends");
        audit::append(conn, now, meta, event).await?;
    }
    Ok(Gate::Locked { until })
}

impl Attempt {
    /// The secret was right: clear the account's counter (`clear`) and refund the others.
    pub async fn succeeded(self, conn: &mut AnyConnection, clear: &str) -> Result<(), sqlx::Error> {
        for (subject, _) in &self.charged {
            if subject.key == clear {
                reset(conn, &subject.key).await?;
            } else {
                refund(conn, &subject.key).await?;
            }
        }
        Ok(())
    }

    /// The first factor was right: refund every subject but `keep`, whose charge stays until
    /// the second factor succeeds (and then [`reset`]s it).
    pub async fn first_factor_passed(
        self,
        conn: &mut AnyConnection,
        keep: &str,
    ) -> Result<(), sqlx::Error> {
        for (subject, _) in &self.charged {
            if subject.key != keep {
                refund(conn, &subject.key).await?;
            }
        }
        Ok(())
    }

    /// Nothing was verified (e.g. no hashing capacity): every charge is given back.
    pub async fn cancel(self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        for (subject, _) in &self.charged {
            refund(conn, &subject.key).await?;
        }
        Ok(())
    }

    /// The secret was wrong (the attempt stays counted). Returns the lock end when this
    /// failure used up a subject's attempts, together with which subjects locked.
    pub async fn failed(
        self,
        conn: &mut AnyConnection,
        now: Millis,
        window: Millis,
    ) -> Result<Vec<(String, Millis)>, sqlx::Error> {
        let mut locked = Vec::new();
        for (subject, count) in &self.charged {
            if *count < subject.threshold {
                continue;
            }
            let until = now + window;
            let updated = sqlx::query(
                "UPDATE login_throttle SET locked_until = $1 \
                 WHERE subject = $2 AND locked_until IS NULL",
            )
            .bind(until)
            .bind(&subject.key)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if updated > 0 {
                locked.push((subject.key.clone(), until));
            }
        }
        Ok(locked)
    }
}

struct Claim {
    failures: i64,
    locked_until: Option<Millis>,
    /// Refusals counted during the current lock, including this one (0 = not refused).
    refused: i64,
    /// Refusals counted during a lock that had ended before this claim.
    refused_in_ended_lock: i64,
}

/// The one statement that charges an attempt. In one row update (atomic on both backends):
/// an ended lock or a failure older than the window starts a new count at 1; an active lock,
/// or a count already at the threshold, refuses and counts the refusal instead.
async fn claim(
    conn: &mut AnyConnection,
    subject: &Subject,
    now: Millis,
    window: Millis,
) -> Result<Claim, sqlx::Error> {
    const LOCKED: &str =
        "(login_throttle.locked_until IS NOT NULL AND login_throttle.locked_until > $2)";
    const FRESH: &str = "((login_throttle.locked_until IS NOT NULL \
                            AND login_throttle.locked_until <= $2) \
                          OR (login_throttle.locked_until IS NULL \
                              AND login_throttle.last_failure_at < $3))";
    const FULL: &str = "(login_throttle.locked_until IS NULL \
                         AND login_throttle.last_failure_at >= $3 \
                         AND login_throttle.failures >= $4)";
    // SET expressions read the row as it was, so every CASE below decides on the old values;
    // `last_claim_refused` carries that decision out through RETURNING (which sees new values).
    let sql = format!(
        "INSERT INTO login_throttle (subject, failures, last_failure_at, locked_until, \
           refused, refused_in_ended_lock, last_claim_refused) \
         VALUES ($1, 1, $2, NULL, 0, 0, 0) \
         ON CONFLICT (subject) DO UPDATE SET \
           failures = CASE WHEN {LOCKED} OR {FULL} THEN login_throttle.failures \
                           WHEN {FRESH} THEN 1 ELSE login_throttle.failures + 1 END, \
           refused = CASE WHEN {LOCKED} OR {FULL} THEN login_throttle.refused + 1 \
                          WHEN {FRESH} THEN 0 ELSE login_throttle.refused END, \
           refused_in_ended_lock = CASE WHEN {FRESH} THEN login_throttle.refused ELSE 0 END, \
           last_claim_refused = CASE WHEN {LOCKED} OR {FULL} THEN 1 ELSE 0 END, \
           locked_until = CASE WHEN {FRESH} THEN NULL ELSE login_throttle.locked_until END, \
           last_failure_at = CASE WHEN {LOCKED} OR {FULL} THEN login_throttle.last_failure_at \
                                  ELSE $2 END \
         RETURNING failures, locked_until, refused, refused_in_ended_lock, last_claim_refused"
    );
    let row = sqlx::query(&sql)
        .bind(&subject.key)
        .bind(now)
        .bind(now - window)
        .bind(subject.threshold)
        .fetch_one(&mut *conn)
        .await?;
    let failures: i64 = row.try_get("failures")?;
    let locked_until: Option<Millis> = row.try_get("locked_until")?;
    let refused: i64 = row.try_get("refused")?;
    let refused_in_ended_lock: i64 = row.try_get("refused_in_ended_lock")?;
    let was_refused: i64 = row.try_get("last_claim_refused")?;
    Ok(Claim {
        failures,
        locked_until,
        refused: if was_refused == 1 { refused } else { 0 },
        refused_in_ended_lock,
    })
}

/// Gives one charged attempt back (a success, or a refusal caused by another subject).
async fn refund(conn: &mut AnyConnection, subject: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE login_throttle SET failures = failures - 1 WHERE subject = $1 AND failures > 0",
    )
    .bind(subject)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Forgets the failures of a subject after a successful login.
pub async fn reset(conn: &mut AnyConnection, subject: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_throttle WHERE subject = $1")
        .bind(subject)
        .execute(conn)
        .await
        .map(|_| ())
}

/// One audit row for the refusals of a lock beyond the first (which has its own row).
async fn summarise_refusals(
    conn: &mut AnyConnection,
    now: Millis,
    meta: &RequestMeta,
    subject: &str,
    refused: i64,
) -> Result<(), sqlx::Error> {
    let event = AuditEvent::new("system", "auth.lockout.refusals", subject_label(subject))
        .outcome(Outcome::Denied)
        .detail("refused_while_locked", refused);
    audit::append(conn, now, meta, event).await.map(|_| ())
}

/// Audit target of a throttle subject; the account key is already a hash, never an email.
fn subject_label(subject: &str) -> String {
    format!("throttle:{subject}")
}

/// Housekeeping for the retention purge: writes the refusal summary of every ended lock that
/// nobody touched since, then deletes rows whose last failure is older than `stale_before`.
pub async fn sweep(
    conn: &mut AnyConnection,
    now: Millis,
    stale_before: Millis,
) -> Result<u64, sqlx::Error> {
    let ended = sqlx::query(
        "SELECT subject, refused FROM login_throttle \
         WHERE locked_until IS NOT NULL AND locked_until <= $1 AND refused > 1",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let meta = RequestMeta::default();
    for row in ended {
        let subject: String = row.try_get("subject")?;
        let refused: i64 = row.try_get("refused")?;
        summarise_refusals(conn, now, &meta, &subject, refused).await?;
        sqlx::query("UPDATE login_throttle SET refused = 0 WHERE subject = $1")
            .bind(&subject)
            .execute(&mut *conn)
            .await?;
    }
    let deleted = sqlx::query(
        "DELETE FROM login_throttle WHERE last_failure_at <= $1 \
         AND (locked_until IS NULL OR locked_until <= $2)",
    )
    .bind(stale_before)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(deleted)
}

/// Accounts with a secret being verified on this node right now. A second attempt for the
/// same account while one is in flight is answered "busy" without touching the secret, so a
/// burst of guesses cannot queue up behind the first.
#[derive(Debug, Default, Clone)]
pub struct InFlight {
    keys: Arc<Mutex<HashSet<String>>>,
}

/// Held while a verification runs; dropping it lets the next attempt for the key in.
#[derive(Debug)]
pub struct InFlightGuard {
    keys: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl InFlight {
    /// `None` when an attempt for `key` is already being verified on this node.
    pub fn enter(&self, key: &str) -> Option<InFlightGuard> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.insert(key.to_owned()).then(|| InFlightGuard {
            keys: Arc::clone(&self.keys),
            key: key.to_owned(),
        })
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.remove(&self.key);
    }
}
