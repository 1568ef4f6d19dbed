//! A per-client-network rate limit kept in this node's memory (governor's GCRA), for public
//! routes where a per-node limit is enough: the trust pages and, on one node, the demo.
//! The key is the client's network (IPv4 /32, IPv6 /64); `None` is every client whose
//! address is unknown, sharing one bucket.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::client_net::ClientNetwork;

/// `requests` per minute per network, with a burst of `requests`.
pub struct NodeLimiter {
    limiter: DefaultKeyedRateLimiter<Option<ClientNetwork>>,
}

impl std::fmt::Debug for NodeLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeLimiter")
    }
}

impl NodeLimiter {
    pub fn per_minute(requests: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(requests.max(1)).unwrap_or(NonZeroU32::MIN));
        Self {
            limiter: RateLimiter::keyed(quota),
        }
    }

    /// [`check`](Self::check) for a request's client address as the request context holds it.
    pub fn check_ip(&self, client_ip: Option<&str>) -> Result<(), u64> {
        self.check(client_ip.and_then(ClientNetwork::parse))
    }

    /// `Ok`, or the whole seconds to wait.
    pub fn check(&self, client: Option<ClientNetwork>) -> Result<(), u64> {
        if self.limiter.len() > 100_000 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}
