//! The counters the detectors read, tallied in memory per (kind, subject, minute) and written
//! in batches like [`crate::keys::usage`]: a background task flushes every second, the
//! detector job flushes before it reads, and shutdown flushes once more. Each flush adds to
//! the minute row and to the hour row of the same counts, so the hourly roll-up is always
//! current; the retention purge deletes minute rows after `signal_minute_hours` and hour rows
//! after [`HOUR_ROWS_KEPT`].
//!
//! Subjects never hold a full address or a full key: client addresses are cut to their
//! network (IPv4 /24, IPv6 /48) before they reach the tally, keys are counted by id, refused
//! keys by their display prefix, and staff accounts by the login throttle's hashed key.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::Row;

pub use super::signal_store::purge;
use crate::clock::{DAY, MINUTE, Millis};
use crate::db::Db;

/// Hourly rows are kept this long.
pub const HOUR_ROWS_KEPT: Millis = 90 * DAY;
/// A baseline not updated for this long has decayed to nothing and is deleted; the subject
/// starts afresh (keys with a new warm-up) when it is seen again.
pub const BASELINES_KEPT: Millis = 7 * DAY;

/// What a counter's subject is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An API key, by id.
    Key,
    /// A client network answered 401 on `/v1`.
    Net401,
    /// `<key prefix> <network>` of a refused well-formed key.
    Prefix401,
    /// A client network on the demo endpoint.
    Demo,
    /// Failed staff logins, by hashed account.
    LoginAccount,
    /// Failed staff logins, by client network.
    LoginNet,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Key => "key",
            Kind::Net401 => "net401",
            Kind::Prefix401 => "prefix401",
            Kind::Demo => "demo",
            Kind::LoginAccount => "login_account",
            Kind::LoginNet => "login_net",
        }
    }
}

/// Counts of one subject in one minute (or hour).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: i64,
    pub s2xx: i64,
    pub s401: i64,
    pub s403: i64,
    /// 413, 415 and 422: input the API refused.
    pub s4xx_input: i64,
    pub s429: i64,
    pub s4xx_other: i64,
    pub s5xx: i64,
    /// Response body bytes.
    pub bytes: i64,
}

impl Counts {
    /// One answer with `status` and `bytes` of body.
    pub fn of_status(status: u16, bytes: i64) -> Self {
        let mut c = Counts {
            requests: 1,
            bytes,
            ..Counts::default()
        };
        match status {
            200..=299 => c.s2xx = 1,
            401 => c.s401 = 1,
            403 => c.s403 = 1,
            413 | 415 | 422 => c.s4xx_input = 1,
            429 => c.s429 = 1,
            400..=499 => c.s4xx_other = 1,
            500..=599 => c.s5xx = 1,
            _ => {}
        }
        c
    }

    pub fn merge(&mut self, o: Counts) {
        self.requests += o.requests;
        self.s2xx += o.s2xx;
        self.s401 += o.s401;
        self.s403 += o.s403;
        self.s4xx_input += o.s4xx_input;
        self.s429 += o.s429;
        self.s4xx_other += o.s4xx_other;
        self.s5xx += o.s5xx;
        self.bytes += o.bytes;
    }

    /// Answers with a 4xx or 5xx status.
    pub fn errors(&self) -> i64 {
        self.s401 + self.s403 + self.s4xx_input + self.s429 + self.s4xx_other + self.s5xx
    }

    pub(super) fn values(&self) -> [i64; 9] {
        [
            self.requests,
            self.s2xx,
            self.s401,
            self.s403,
            self.s4xx_input,
            self.s429,
            self.s4xx_other,
            self.s5xx,
            self.bytes,
        ]
    }

    /// Reads the count columns of a `signal_minutes` / `signal_hours` row.
    pub fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Counts {
            requests: row.try_get("requests")?,
            s2xx: row.try_get("s2xx")?,
            s401: row.try_get("s401")?,
            s403: row.try_get("s403")?,
            s4xx_input: row.try_get("s4xx_input")?,
            s429: row.try_get("s429")?,
            s4xx_other: row.try_get("s4xx_other")?,
            s5xx: row.try_get("s5xx")?,
            bytes: row.try_get("bytes")?,
        })
    }
}

/// The count columns, in [`Counts::values`] order.
pub const COUNT_COLUMNS: &str =
    "requests, s2xx, s401, s403, s4xx_input, s429, s4xx_other, s5xx, bytes";

/// The monitoring network of a client address: IPv4 /24 or IPv6 /48 (an IPv4-mapped IPv6
/// address counts as IPv4). Coarser than the limiter's networks on purpose: the counters keep
/// no address that identifies one subscriber. `None` for text that is not an address.
pub fn network_of(client_ip: &str) -> Option<String> {
    let ip: IpAddr = client_ip.trim().parse().ok()?;
    Some(match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 80) - 1);
            format!("{}/48", std::net::Ipv6Addr::from(prefix))
        }
    })
}

/// What the API layer learned about a request's key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ApiCaller {
    /// Not known (the route has no key, or the request ended before the key was read).
    #[default]
    Unknown,
    /// A verified key.
    Key(String),
    /// A refused key, with its display prefix when it was well formed.
    Refused(Option<String>),
}

/// A slot the `X-API-Key` extractor fills in, read by the request layer once the answer is
/// known. Inserted into each `/v1` request's extensions.
#[derive(Debug, Clone, Default)]
pub struct CallerSlot(pub Arc<Mutex<ApiCaller>>);

impl CallerSlot {
    pub fn set(&self, caller: ApiCaller) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = caller;
    }

    pub fn get(&self) -> ApiCaller {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) counts: HashMap<(Kind, String, Millis), Counts>,
    /// (key id, network) → (first, last) use in this batch.
    pub(super) key_networks: HashMap<(String, String), (Millis, Millis)>,
}

/// Unwritten counters.
#[derive(Debug, Default)]
pub struct SignalTally {
    pending: Mutex<Pending>,
    flushing: tokio::sync::Mutex<()>,
    /// Set only by the API benchmark, to measure the same server without the counters.
    paused: AtomicBool,
}

fn minute_of(at: Millis) -> Millis {
    at - at.rem_euclid(MINUTE)
}

impl SignalTally {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Every update is a single merge, so a poisoned lock still holds valid counts.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add(&self, pending: &mut Pending, kind: Kind, subject: String, now: Millis, c: Counts) {
        pending
            .counts
            .entry((kind, subject, minute_of(now)))
            .or_default()
            .merge(c);
    }

    /// Whether API answers are counted (always, except while the API benchmark measures its
    /// baseline).
    pub fn counting(&self) -> bool {
        !self.paused.load(Ordering::Relaxed)
    }

    /// Stops or resumes counting API answers; for the benchmark's baseline only.
    #[doc(hidden)]
    pub fn set_counting(&self, on: bool) {
        self.paused.store(!on, Ordering::Relaxed);
    }

    /// Counts one answer of `/v1` (`demo` false) or the demo endpoint (`demo` true).
    pub fn record_api(
        &self,
        now: Millis,
        client_ip: Option<&str>,
        caller: ApiCaller,
        demo: bool,
        status: u16,
        bytes: i64,
    ) {
        let counts = Counts::of_status(status, bytes);
        let network = client_ip.and_then(network_of);
        let mut pending = self.lock();
        if demo {
            let subject = network.unwrap_or_else(|| "unknown".into());
            self.add(&mut pending, Kind::Demo, subject, now, counts);
            return;
        }
        match caller {
            ApiCaller::Key(key_id) => {
                if let Some(net) = network {
                    let seen = pending
                        .key_networks
                        .entry((key_id.clone(), net))
                        .or_insert((now, now));
                    seen.0 = seen.0.min(now);
                    seen.1 = seen.1.max(now);
                }
                self.add(&mut pending, Kind::Key, key_id, now, counts);
            }
            caller if status == 401 => {
                let net = network.unwrap_or_else(|| "unknown".into());
                if let ApiCaller::Refused(Some(prefix)) = caller {
                    let subject = format!("{prefix} {net}");
                    self.add(&mut pending, Kind::Prefix401, subject, now, counts);
                }
                self.add(&mut pending, Kind::Net401, net, now, counts);
            }
            _ => {}
        }
    }

    /// Counts one failed staff login (password or second factor).
    pub fn record_login_failure(&self, now: Millis, account_key: &str, client_ip: Option<&str>) {
        let one = Counts {
            requests: 1,
            s401: 1,
            ..Counts::default()
        };
        let network = client_ip
            .and_then(network_of)
            .unwrap_or_else(|| "unknown".into());
        let mut pending = self.lock();
        self.add(
            &mut pending,
            Kind::LoginAccount,
            account_key.to_owned(),
            now,
            one,
        );
        self.add(&mut pending, Kind::LoginNet, network, now, one);
    }

    /// Number of counters waiting to be written.
    pub fn pending(&self) -> usize {
        self.lock().counts.len()
    }

    /// Writes every pending counter in one transaction; on failure they are put back.
    pub async fn flush(&self, db: &Db) -> Result<usize, sqlx::Error> {
        let _one_at_a_time = self.flushing.lock().await;
        let taken = std::mem::take(&mut *self.lock());
        if taken.counts.is_empty() && taken.key_networks.is_empty() {
            return Ok(0);
        }
        let result = async {
            let mut tx = db.begin().await?;
            super::signal_store::write(&mut tx, &taken).await?;
            tx.commit().await
        }
        .await;
        match result {
            Ok(()) => Ok(taken.counts.len()),
            Err(err) => {
                let mut pending = self.lock();
                for (slot, counts) in taken.counts {
                    pending.counts.entry(slot).or_default().merge(counts);
                }
                for (slot, (first, last)) in taken.key_networks {
                    let seen = pending.key_networks.entry(slot).or_insert((first, last));
                    seen.0 = seen.0.min(first);
                    seen.1 = seen.1.max(last);
                }
                Err(err)
            }
        }
    }

    /// Flushes every second until the task is aborted.
    pub fn spawn_flusher(self: Arc<Self>, db: Db) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(crate::keys::usage::FLUSH_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(err) = self.flush(&db).await {
                    tracing::warn!(error = %err, pending = self.pending(), "could not write monitoring counters; will retry");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_keep_no_full_address() {
        assert_eq!(
            network_of("203.0.113.77").as_deref(),
            Some("203.0.113.0/24")
        );
        assert_eq!(
            network_of("::ffff:198.51.100.9").as_deref(),
            Some("198.51.100.0/24")
        );
        assert_eq!(
            network_of("2001:db8:abcd:12:1:2:3:4").as_deref(),
            Some("2001:db8:abcd::/48")
        );
        assert_eq!(network_of("nonsense"), None);
    }

    #[test]
    fn statuses_fall_into_their_class() {
        assert_eq!(Counts::of_status(200, 10).s2xx, 1);
        assert_eq!(Counts::of_status(401, 0).s401, 1);
        assert_eq!(Counts::of_status(415, 0).s4xx_input, 1);
        assert_eq!(Counts::of_status(429, 0).s429, 1);
        assert_eq!(Counts::of_status(404, 0).s4xx_other, 1);
        assert_eq!(Counts::of_status(503, 0).s5xx, 1);
        assert_eq!(Counts::of_status(503, 0).errors(), 1);
    }

    #[test]
    fn refused_keys_count_per_network_and_per_prefix_and_network() {
        let tally = SignalTally::default();
        let caller = ApiCaller::Refused(Some("tp_live_abcdefgh".into()));
        tally.record_api(5, Some("203.0.113.7"), caller.clone(), false, 401, 0);
        tally.record_api(6, Some("203.0.113.8"), caller, false, 401, 0);
        let pending = tally.lock();
        assert_eq!(
            pending.counts[&(Kind::Net401, "203.0.113.0/24".into(), 0)].s401,
            2
        );
        assert_eq!(
            pending.counts[&(Kind::Prefix401, "tp_live_abcdefgh 203.0.113.0/24".into(), 0)]
                .requests,
            2
        );
    }
}
