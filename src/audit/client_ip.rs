//! Client IPs in the audit log, stored so they can be minimised later without breaking the
//! hash chain.
//!
//! A row's hash covers the client's network (IPv4 /24, IPv6 /48) and a salted SHA-256
//! commitment to the full address, not the address itself. The full address and its salt
//! sit in two columns outside the hash; after `audit_ip_retention_days` the retention purge
//! erases both (the only change the database's append-only trigger allows). While they are
//! present, `audit verify` checks them against the commitment and the network, so an
//! address cannot be swapped for another; once erased, the network stays, still covered by
//! the hash, and the full address cannot be recovered from the commitment without its salt.

use std::net::IpAddr;

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The columns written for one client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIp {
    /// The full address (erased after the retention window).
    pub client_ip: String,
    /// Random salt of the commitment (erased with the address).
    pub salt: String,
    /// SHA-256(salt ‖ address), hex; covered by the row hash.
    pub commitment: String,
    /// The address's network, or `None` when the text is not an IP address.
    pub network: Option<String>,
}

impl StoredIp {
    pub fn new(client_ip: &str) -> Self {
        let mut salt = [0_u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        let salt = hex::encode(salt);
        Self {
            commitment: commitment(&salt, client_ip),
            network: network_of(client_ip),
            client_ip: client_ip.to_owned(),
            salt,
        }
    }
}

/// SHA-256(salt ‖ address) as hex.
pub fn commitment(salt: &str, client_ip: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(b"|");
    hasher.update(client_ip.as_bytes());
    hex::encode(hasher.finalize())
}

/// The network kept after minimisation: IPv4 /24, IPv6 /48 (an IPv4-mapped IPv6 address is
/// treated as IPv4).
pub fn network_of(client_ip: &str) -> Option<String> {
    let address: IpAddr = client_ip.trim().parse().ok()?;
    Some(match address.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
            format!("{net}/48")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_keep_the_first_24_or_48_bits() {
        assert_eq!(
            network_of("203.0.113.77").as_deref(),
            Some("203.0.113.0/24")
        );
        assert_eq!(
            network_of("2001:db8:abcd:12:3456::1").as_deref(),
            Some("2001:db8:abcd::/48")
        );
        assert_eq!(
            network_of("::ffff:198.51.100.9").as_deref(),
            Some("198.51.100.0/24")
        );
        assert_eq!(network_of("unknown"), None);
    }

    #[test]
    fn the_commitment_binds_the_address_and_needs_the_salt() {
        let stored = StoredIp::new("203.0.113.77");
        assert_eq!(stored.commitment, commitment(&stored.salt, "203.0.113.77"));
        assert_ne!(stored.commitment, commitment(&stored.salt, "203.0.113.78"));
        let again = StoredIp::new("203.0.113.77");
        assert_ne!(stored.salt, again.salt);
        assert_ne!(
            stored.commitment, again.commitment,
            "same address, unlinkable rows"
        );
    }
}
