//! The append-only, hash-chained audit log. Every mutation and every authentication event is
//! written here in the same transaction as the change, so if the audit write fails the change
//! fails too. Each row carries SHA-256(previous hash ‖ canonical row); `audit verify` walks the
//! chain and names the first row that does not fit.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use crate::clock::Millis;
use crate::db::Db;

pub mod client_ip;
pub mod pages;

/// Columns read back for browsing and verification.
const ROW_COLUMNS: &str = "seq, at, actor, action, target, outcome, client_ip, client_net, \
     ip_salt, ip_commitment, request_id, details, chain_version, prev_hash, hash";

/// Rows written now hash the client's network and an IP commitment (see [`client_ip`]);
/// version 1 rows hashed the address itself and keep it.
const CHAIN_VERSION: i64 = 2;

/// The hash that precedes the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How an audited attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// Where a request came from, copied into every audit row it causes.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
}

/// One event to append.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// `staff:<email>`, `anonymous`, `system` or `cli`.
    pub actor: String,
    /// Dotted verb, e.g. `auth.login`, `staff.role.grant`.
    pub action: &'static str,
    /// What was acted on, e.g. `staff:<id>`.
    pub target: String,
    pub outcome: Outcome,
    /// Free-form context. Keys that look like secrets are removed before writing.
    pub details: Value,
}

impl AuditEvent {
    pub fn new(actor: impl Into<String>, action: &'static str, target: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            action,
            target: target.into(),
            outcome: Outcome::Success,
            details: Value::Object(Map::new()),
        }
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let Value::Object(map) = &mut self.details {
            map.insert(key.to_owned(), value.into());
        }
        self
    }
}

/// Field names that must never be written to the log, whatever a caller passes.
const SECRET_MARKERS: [&str; 6] = ["password", "secret", "token", "code", "key", "cookie"];

fn scrub(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    if SECRET_MARKERS.iter().any(|m| lower.contains(m)) {
                        (k, Value::String("[redacted]".into()))
                    } else {
                        (k, scrub(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(scrub).collect()),
        other => other,
    }
}

/// A stored row.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub seq: i64,
    pub at: Millis,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    /// The full client address until it is minimised (then `None`).
    pub client_ip: Option<String>,
    /// The client's network, kept for the life of the row (version 2).
    pub client_net: Option<String>,
    pub ip_salt: Option<String>,
    pub ip_commitment: Option<String>,
    pub request_id: Option<String>,
    pub details: String,
    pub chain_version: i64,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRow {
    /// The exact bytes that are hashed: a JSON array of every field but the hashes (and, from
    /// version 2, but the erasable address and salt).
    fn canonical(&self) -> String {
        if self.chain_version == 1 {
            return serde_json::json!([
                self.seq,
                self.at,
                self.actor,
                self.action,
                self.target,
                self.outcome,
                self.client_ip,
                self.request_id,
                self.details
            ])
            .to_string();
        }
        serde_json::json!([
            self.chain_version,
            self.seq,
            self.at,
            self.actor,
            self.action,
            self.target,
            self.outcome,
            self.client_net,
            self.ip_commitment,
            self.request_id,
            self.details
        ])
        .to_string()
    }

    /// For version 2 rows that still hold the address: does it match what the hash covers?
    fn address_problem(&self) -> Option<&'static str> {
        if self.chain_version == 1 {
            return None;
        }
        let ip = self.client_ip.as_deref()?;
        let (Some(salt), Some(commitment)) = (&self.ip_salt, &self.ip_commitment) else {
            return Some("client address present without its commitment");
        };
        if client_ip::commitment(salt, ip) != *commitment {
            return Some("client address does not match its commitment");
        }
        if client_ip::network_of(ip) != self.client_net {
            return Some("client address does not match its network");
        }
        None
    }

    /// The address to show: the full one while kept, else the network.
    pub fn shown_ip(&self) -> String {
        self.client_ip
            .clone()
            .or_else(|| self.client_net.clone())
            .unwrap_or_default()
    }

    /// SHA-256(previous hash ‖ canonical row): the one rule the database check and the
    /// evidence-pack check both apply.
    pub fn compute_hash(&self) -> String {
        chain_hash(&self.prev_hash, &self.canonical())
    }

    pub fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            seq: row.try_get("seq")?,
            at: row.try_get("at")?,
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            target: row.try_get("target")?,
            outcome: row.try_get("outcome")?,
            client_ip: row.try_get("client_ip")?,
            client_net: row.try_get("client_net")?,
            ip_salt: row.try_get("ip_salt")?,
            ip_commitment: row.try_get("ip_commitment")?,
            request_id: row.try_get("request_id")?,
            details: row.try_get("details")?,
            chain_version: row.try_get("chain_version")?,
            prev_hash: row.try_get("prev_hash")?,
            hash: row.try_get("hash")?,
        })
    }
}

fn chain_hash(prev_hash: &str, canonical: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

/// Appends `event` inside the caller's transaction and returns its sequence number.
///
/// The first statement updates the single chain-head row, which serialises concurrent appends
/// on both backends (row lock on PostgreSQL, write lock on SQLite).
pub async fn append(
    conn: &mut AnyConnection,
    at: Millis,
    meta: &RequestMeta,
    event: AuditEvent,
) -> Result<i64, sqlx::Error> {
    let head =
        sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, head_hash")
            .fetch_one(&mut *conn)
            .await?;
    let seq: i64 = head.try_get("seq")?;
    let prev_hash: String = head.try_get("head_hash")?;
    let stored_ip = meta.client_ip.as_deref().map(client_ip::StoredIp::new);
    let mut row = AuditRow {
        seq,
        at,
        actor: event.actor,
        action: event.action.to_owned(),
        target: event.target,
        outcome: event.outcome.as_str().to_owned(),
        client_ip: stored_ip.as_ref().map(|ip| ip.client_ip.clone()),
        client_net: stored_ip.as_ref().and_then(|ip| ip.network.clone()),
        ip_salt: stored_ip.as_ref().map(|ip| ip.salt.clone()),
        ip_commitment: stored_ip.as_ref().map(|ip| ip.commitment.clone()),
        request_id: meta.request_id.clone(),
        details: scrub(event.details).to_string(),
        chain_version: CHAIN_VERSION,
        prev_hash,
        hash: String::new(),
    };
    row.hash = row.compute_hash();
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, target, outcome, client_ip, client_net, \
         ip_salt, ip_commitment, request_id, details, chain_version, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(row.seq)
    .bind(row.at)
    .bind(&row.actor)
    .bind(&row.action)
    .bind(&row.target)
    .bind(&row.outcome)
    .bind(&row.client_ip)
    .bind(&row.client_net)
    .bind(&row.ip_salt)
    .bind(&row.ip_commitment)
    .bind(&row.request_id)
    .bind(&row.details)
    .bind(row.chain_version)
    .bind(&row.prev_hash)
    .bind(&row.hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE audit_head SET head_hash = $1 WHERE id = 1")
        .bind(&row.hash)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO audit_actors (actor) VALUES ($1) ON CONFLICT (actor) DO NOTHING")
        .bind(&row.actor)
        .execute(&mut *conn)
        .await?;
    Ok(seq)
}

/// Appends one event in its own transaction (for events that change nothing else, such as a
/// failed login or a denied request).
pub async fn append_alone(
    db: &Db,
    at: Millis,
    meta: &RequestMeta,
    event: AuditEvent,
) -> Result<i64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let seq = append(&mut tx, at, meta, event).await?;
    tx.commit().await?;
    Ok(seq)
}

/// Erases the full client address and its salt from version 2 rows written before `before`,
/// keeping the network and the commitment the hash covers. Works in batches; returns how
/// many rows it changed.
pub async fn minimise_client_ips(db: &Db, before: Millis) -> Result<i64, sqlx::Error> {
    const BATCH: i64 = 1_000;
    let mut erased = 0;
    loop {
        let done = sqlx::query(
            "UPDATE audit_log SET client_ip = NULL, ip_salt = NULL WHERE seq IN (\
             SELECT seq FROM audit_log WHERE client_ip IS NOT NULL AND chain_version = 2 \
             AND at < $1 LIMIT $2)",
        )
        .bind(before)
        .bind(BATCH)
        .execute(&db.pool)
        .await?
        .rows_affected();
        erased += i64::try_from(done).unwrap_or(i64::MAX);
        if done < BATCH.unsigned_abs() {
            return Ok(erased);
        }
        tokio::task::yield_now().await;
    }
}

/// Filters for browsing the log; empty strings mean "any".
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: String,
    pub action: String,
    pub outcome: String,
    /// Show rows with `seq` below this (keyset pagination); `None` starts at the newest.
    pub before_seq: Option<i64>,
    pub limit: i64,
}

/// Most actors an actor filter may match; a broader filter shows the first ones.
const MAX_MATCHED_ACTORS: i64 = 100;

/// Newest-first page of rows matching `filter`.
///
/// The actor filter ("contains", case-insensitive) is resolved against the small
/// `audit_actors` table first, so the page query walks the `(actor, seq)` index for those
/// actors instead of scanning the whole log. Only the conditions in use are in the SQL, so
/// PostgreSQL's plans fit the filter at hand.
pub async fn list(db: &Db, filter: &AuditFilter) -> Result<Vec<AuditRow>, sqlx::Error> {
    let actors = if filter.actor.is_empty() {
        None
    } else {
        let matched: Vec<String> = sqlx::query(
            "SELECT actor FROM audit_actors WHERE LOWER(actor) LIKE $1 ESCAPE '\\' \
             ORDER BY actor LIMIT $2",
        )
        .bind(crate::db::like_contains(&filter.actor))
        .bind(MAX_MATCHED_ACTORS)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|row| row.try_get("actor"))
        .collect::<Result<_, _>>()?;
        if matched.is_empty() {
            return Ok(Vec::new());
        }
        Some(matched)
    };
    let mut sql = format!("SELECT {ROW_COLUMNS} FROM audit_log WHERE seq < $1");
    let mut next = 2;
    if let Some(actors) = &actors {
        let list = crate::db::placeholders(next, actors.len());
        sql.push_str(&format!(" AND actor IN ({list})"));
        next += actors.len();
    }
    if !filter.action.is_empty() {
        sql.push_str(&format!(" AND action LIKE ${next} ESCAPE '\\'"));
        next += 1;
    }
    if !filter.outcome.is_empty() {
        sql.push_str(&format!(" AND outcome = ${next}"));
        next += 1;
    }
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${next}"));

    let mut query = sqlx::query(&sql).bind(filter.before_seq.unwrap_or(i64::MAX));
    for actor in actors.iter().flatten() {
        query = query.bind(actor.as_str());
    }
    if !filter.action.is_empty() {
        query = query.bind(format!("{}%", crate::db::escape_like(&filter.action)));
    }
    if !filter.outcome.is_empty() {
        query = query.bind(filter.outcome.as_str());
    }
    let rows = query.bind(filter.limit).fetch_all(&db.pool).await?;
    rows.iter().map(AuditRow::from_row).collect()
}

/// The current chain head: number of rows and the last hash.
pub async fn head(db: &Db) -> Result<(i64, String), sqlx::Error> {
    let row = sqlx::query("SELECT seq, head_hash FROM audit_head WHERE id = 1")
        .fetch_one(&db.pool)
        .await?;
    Ok((row.try_get("seq")?, row.try_get("head_hash")?))
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Rows checked before stopping.
    pub checked: i64,
    /// The first row that does not fit, and why.
    pub first_bad: Option<(i64, String)>,
    pub head_hash: String,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Walks consecutive rows of the chain from a known starting point: the database check and
/// the evidence-pack check share it, so the rule is written once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainWalk {
    /// The sequence number the next row must have.
    pub expected_seq: i64,
    /// The hash the next row must name as its predecessor.
    pub expected_prev: String,
}

impl ChainWalk {
    /// Checks one row and moves past it. With `content_known` false (an exported row whose
    /// address was withheld) only the links are checked, not the row's own hash.
    pub fn step(&mut self, row: &AuditRow, content_known: bool) -> Result<(), (i64, String)> {
        let problem = if row.seq != self.expected_seq {
            Some(format!("row {} is missing", self.expected_seq))
        } else if row.prev_hash != self.expected_prev {
            Some("previous-hash link does not match the row before".to_owned())
        } else if content_known && row.compute_hash() != row.hash {
            Some("content does not match its hash".to_owned())
        } else if content_known {
            row.address_problem().map(str::to_owned)
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err((self.expected_seq.min(row.seq), problem));
        }
        self.expected_prev = row.hash.clone();
        self.expected_seq += 1;
        Ok(())
    }
}

/// The first and last sequence numbers of events written in `[from, to)`, if any. The
/// range is contiguous, so an extract of it can be checked link by link.
pub async fn seq_range(
    db: &Db,
    from: Millis,
    to: Millis,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let row = sqlx::query("SELECT MIN(seq) AS first_seq, MAX(seq) AS last_seq FROM audit_log WHERE at >= $1 AND at < $2")
        .bind(from)
        .bind(to)
        .fetch_one(&db.pool)
        .await?;
    let first: Option<i64> = row.try_get("first_seq")?;
    let last: Option<i64> = row.try_get("last_seq")?;
    Ok(first.zip(last))
}

/// Up to `limit` rows with `seq` in `(after_seq, last_seq]`, oldest first.
pub async fn rows_after(
    db: &Db,
    after_seq: i64,
    last_seq: i64,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {ROW_COLUMNS} FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"
    ))
    .bind(after_seq)
    .bind(last_seq)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(AuditRow::from_row)
    .collect()
}

/// The hash of event `seq`, or the genesis hash for `seq` 0.
pub async fn hash_of(db: &Db, seq: i64) -> Result<Option<String>, sqlx::Error> {
    if seq == 0 {
        return Ok(Some(GENESIS_HASH.to_owned()));
    }
    sqlx::query("SELECT hash FROM audit_log WHERE seq = $1")
        .bind(seq)
        .fetch_optional(&db.pool)
        .await?
        .map(|row| row.try_get("hash"))
        .transpose()
}

/// Recomputes every hash from the first row and compares it with what is stored, including
/// the chain head (so deleted trailing rows are noticed as well).
pub async fn verify(db: &Db) -> Result<Verification, sqlx::Error> {
    const BATCH: i64 = 2_000;
    let (head_seq, head_hash) = head(db).await?;
    let mut expected_prev = GENESIS_HASH.to_owned();
    let mut expected_seq = 1_i64;
    let mut checked = 0_i64;
    loop {
        let rows = sqlx::query(&format!(
            "SELECT {ROW_COLUMNS} FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2"
        ))
        .bind(expected_seq)
        .bind(BATCH)
        .fetch_all(&db.pool)
        .await?;
        let done = (rows.len() as i64) < BATCH;
        for raw in &rows {
            let row = AuditRow::from_row(raw)?;
            let mut walk = ChainWalk {
                expected_seq,
                expected_prev,
            };
            if let Err(first_bad) = walk.step(&row, true) {
                return Ok(Verification {
                    checked,
                    first_bad: Some(first_bad),
                    head_hash,
                });
            }
            (expected_seq, expected_prev) = (walk.expected_seq, walk.expected_prev);
            checked += 1;
        }
        if done {
            break;
        }
    }
    let last_seq = expected_seq - 1;
    let first_bad = if last_seq != head_seq {
        Some((
            last_seq + 1,
            format!("chain head says {head_seq} rows, found {last_seq}"),
        ))
    } else if expected_prev != head_hash {
        Some((
            last_seq,
            "chain head hash does not match the last row".to_owned(),
        ))
    } else {
        None
    };
    Ok(Verification {
        checked,
        first_bad,
        head_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_scrubbed_from_details() {
        let details = scrub(serde_json::json!({
            "email": "a@example.com",
            "new_password": "hunter2hunter2",
            "nested": {"session_token": "abc"},
        }));
        let text = details.to_string();
        assert!(!text.contains("hunter2"));
        assert!(!text.contains("abc"));
        assert!(text.contains("a@example.com"));
    }

    #[test]
    fn hash_covers_every_field() {
        let row = AuditRow {
            seq: 1,
            at: 2,
            actor: "staff:a".into(),
            action: "x".into(),
            target: "t".into(),
            outcome: "success".into(),
            client_ip: None,
            client_net: Some("203.0.113.0/24".into()),
            ip_salt: None,
            ip_commitment: Some("c".repeat(64)),
            request_id: None,
            details: "{}".into(),
            chain_version: CHAIN_VERSION,
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        };
        let original = row.compute_hash();
        let mut changed = row.clone();
        changed.outcome = "failure".into();
        assert_ne!(original, changed.compute_hash());
        let mut moved = row.clone();
        moved.client_net = Some("198.51.100.0/24".into());
        assert_ne!(original, moved.compute_hash());
        let mut recommitted = row.clone();
        recommitted.ip_commitment = Some("d".repeat(64));
        assert_ne!(original, recommitted.compute_hash());
        let mut erasable = row.clone();
        erasable.client_ip = Some("203.0.113.9".into());
        erasable.ip_salt = Some("s".into());
        assert_eq!(
            original,
            erasable.compute_hash(),
            "the address and salt can be erased without breaking the chain"
        );
        let mut relinked = row;
        relinked.prev_hash = "1".repeat(64);
        assert_ne!(original, relinked.compute_hash());
    }
}
