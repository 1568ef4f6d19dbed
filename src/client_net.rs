//! The network a client address belongs to, as the key of per-client limits.
//!
//! Keying a limit on the exact address lets an IPv6 client escape it: an ordinary
//! subscriber is given a whole /64 (often a /56 or /48) and can pick a fresh address for
//! every request. The smallest block a single end site is expected to hold is the /64, so
//! IPv6 addresses are keyed on their first 64 bits; IPv4 addresses, which are scarce, stay
//! one key each (/32). An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack
//! socket reports for IPv4 clients) is keyed as the IPv4 address it carries; otherwise
//! every IPv4 client would fall into the single /64 `::ffff:0:0/96` lives in.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A client's network: IPv4 /32 or IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientNetwork {
    /// The whole IPv4 address.
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address; the interface identifier is zeroed.
    V6(Ipv6Addr),
}

impl ClientNetwork {
    /// The network `address` belongs to.
    pub fn of(address: IpAddr) -> Self {
        match address.to_canonical() {
            IpAddr::V4(v4) => ClientNetwork::V4(v4),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                ClientNetwork::V6(Ipv6Addr::from(prefix))
            }
        }
    }

    /// The network of a textual address (as [`crate::web::RequestCtx::client_ip`] holds it);
    /// `None` when the text is not an IP address.
    pub fn parse(client_ip: &str) -> Option<Self> {
        client_ip.trim().parse().ok().map(Self::of)
    }
}

impl fmt::Display for ClientNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientNetwork::V4(v4) => write!(f, "{v4}/32"),
            ClientNetwork::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> ClientNetwork {
        ClientNetwork::parse(text).unwrap()
    }

    #[test]
    fn ipv4_addresses_are_their_own_network() {
        assert_eq!(net("203.0.113.7").to_string(), "203.0.113.7/32");
        assert_ne!(net("203.0.113.7"), net("203.0.113.8"));
    }

    #[test]
    fn ipv6_addresses_in_one_64_share_a_network() {
        assert_eq!(
            net("2001:db8:1:2:aaaa:bbbb:cccc:dddd").to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            net("2001:db8:1:2::1"),
            net("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(net("2001:db8:1:2::1"), net("2001:db8:1:3::1"));
        assert_ne!(net("2001:db8:1:2::1"), net("2001:db9:1:2::1"));
    }

    #[test]
    fn ipv4_mapped_addresses_are_keyed_as_ipv4() {
        assert_eq!(net("::ffff:198.51.100.9"), net("198.51.100.9"));
        assert_ne!(net("::ffff:198.51.100.9"), net("::ffff:198.51.100.10"));
    }

    #[test]
    fn text_that_is_not_an_address_has_no_network() {
        assert_eq!(ClientNetwork::parse("unknown"), None);
        assert_eq!(ClientNetwork::parse(""), None);
        assert_eq!(ClientNetwork::parse("2001:db8::/64"), None);
        assert_eq!(ClientNetwork::parse(" 192.0.2.1 "), Some(net("192.0.2.1")));
    }
}
