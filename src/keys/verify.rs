//! Verifying a presented key: shape and checksum first (no database work for junk), then the
//! HMAC lookup. Lookups are cached for at most [`CACHE_TTL`], so a key revoked on any node
//! stops working everywhere within that time; a revocation on this node clears the cache
//! entry at once.

use std::sync::Mutex;

use hashlink::LruCache;

use super::model::Scope;
use super::store::{self, KeyGrant};
use crate::app::App;
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::Millis;

/// How long a lookup result may be reused. Revocation takes effect within this time.
pub const CACHE_TTL: Millis = 500;
/// Known keys kept, and separately unknown keys kept.
const CACHE_MAX_ENTRIES: usize = 10_000;

/// A key that may be used now.
#[derive(Debug, Clone)]
pub struct VerifiedKey {
    pub id: String,
    pub customer_id: String,
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub retention_days: i64,
}

impl VerifiedKey {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Why a key was refused. Callers answer every variant with the same message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRejection {
    Missing,
    Malformed,
    Unknown,
    Revoked,
    Expired,
    CustomerSuspended,
}

/// The verification cache, keyed by the key's HMAC. Known and unknown keys live in separate
/// least-recently-used maps, so a flood of forged (well-formed, unknown) keys only evicts other
/// unknown keys and never pushes real customers' keys back to the database.
#[derive(Debug)]
pub struct KeyCache {
    entries: Mutex<CacheEntries>,
}

#[derive(Debug)]
struct CacheEntries {
    known: LruCache<String, (KeyGrant, Millis)>,
    unknown: LruCache<String, Millis>,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::with_capacity(CACHE_MAX_ENTRIES)
    }
}

impl KeyCache {
    /// A cache holding at most `capacity` known and `capacity` unknown keys.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(CacheEntries {
                known: LruCache::new(capacity),
                unknown: LruCache::new(capacity),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheEntries> {
        // Entries are replaced whole, so a poisoned lock still holds consistent ones.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Some(Some(grant))` for a fresh known key, `Some(None)` for a fresh unknown one,
    /// `None` when the database must be asked.
    fn get(&self, hash: &str, now: Millis) -> Option<Option<KeyGrant>> {
        let fresh = |at: Millis| now >= at && now - at < CACHE_TTL;
        let mut entries = self.lock();
        if let Some((grant, at)) = entries.known.get(hash) {
            return fresh(*at).then(|| Some(grant.clone()));
        }
        entries
            .unknown
            .get(hash)
            .filter(|at| fresh(**at))
            .map(|_| None)
    }

    fn put(&self, hash: String, grant: Option<KeyGrant>, now: Millis) {
        let mut entries = self.lock();
        match grant {
            Some(grant) => {
                entries.unknown.remove(&hash);
                entries.known.insert(hash, (grant, now));
            }
            None => {
                entries.known.remove(&hash);
                entries.unknown.insert(hash, now);
            }
        }
    }

    /// Forgets a key after this node changed it.
    pub fn forget(&self, key_id: &str) {
        let mut entries = self.lock();
        let stale: Vec<String> = entries
            .known
            .iter()
            .filter(|(_, (grant, _))| grant.id == key_id)
            .map(|(hash, _)| hash.clone())
            .collect();
        for hash in stale {
            entries.known.remove(&hash);
        }
    }

    /// How many known and unknown keys are cached.
    pub fn sizes(&self) -> (usize, usize) {
        let entries = self.lock();
        (entries.known.len(), entries.unknown.len())
    }
}

/// Checks a presented key.
pub async fn verify(
    app: &App,
    presented: Option<&str>,
    meta: &RequestMeta,
) -> Result<Result<VerifiedKey, KeyRejection>, sqlx::Error> {
    let Some(presented) = presented.map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok(Err(KeyRejection::Missing));
    };
    if super::format::parse(presented).is_err() {
        return Ok(Err(KeyRejection::Malformed));
    }
    let now = app.now();
    let hash = app.keyring.pepper_hmac_hex(presented.as_bytes());
    let grant = match app.key_cache.get(&hash, now) {
        Some(cached) => cached,
        None => {
            let fresh = store::grant_by_hash(&app.db, &hash).await?;
            app.key_cache.put(hash, fresh.clone(), now);
            fresh
        }
    };
    let Some(grant) = grant else {
        return Ok(Err(KeyRejection::Unknown));
    };
    if grant.revoked {
        return Ok(Err(KeyRejection::Revoked));
    }
    if grant.expires_at.is_some_and(|e| e <= now) {
        if !grant.expiry_audited {
            let mut tx = app.db.begin().await?;
            if store::mark_expiry_audited(&mut tx, &grant.id).await? {
                audit::append(
                    &mut tx,
                    now,
                    meta,
                    AuditEvent::new("system", "key.expired", format!("key:{}", grant.id))
                        .detail("prefix", grant.prefix.as_str()),
                )
                .await?;
            }
            tx.commit().await?;
            app.key_cache.forget(&grant.id);
        }
        return Ok(Err(KeyRejection::Expired));
    }
    if !grant.customer_active {
        return Ok(Err(KeyRejection::CustomerSuspended));
    }
    Ok(Ok(VerifiedKey {
        scopes: Scope::parse_list(&grant.scopes).unwrap_or_default(),
        id: grant.id,
        customer_id: grant.customer_id,
        prefix: grant.prefix,
        retention_days: grant.retention_days,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: &str) -> KeyGrant {
        KeyGrant {
            id: id.into(),
            customer_id: "c".into(),
            prefix: "tp_live_abcdefgh".into(),
            scopes: "faces:detect".into(),
            expires_at: None,
            revoked: false,
            customer_active: true,
            retention_days: 30,
            expiry_audited: false,
        }
    }

    #[test]
    fn a_flood_of_unknown_keys_never_evicts_a_known_one() {
        let cache = KeyCache::with_capacity(4);
        cache.put("real".into(), Some(grant("k1")), 0);
        for i in 0..1_000 {
            cache.put(format!("forged-{i}"), None, 1);
        }
        assert_eq!(cache.sizes(), (1, 4));
        assert_eq!(
            cache.get("real", 2).flatten().map(|g| g.id),
            Some("k1".into())
        );
        assert!(
            matches!(cache.get("forged-999", 2), Some(None)),
            "cached as unknown"
        );
        assert!(
            cache.get("forged-0", 2).is_none(),
            "evicted, asks the database"
        );
    }

    #[test]
    fn entries_expire_after_the_ttl_and_forget_drops_a_changed_key() {
        let cache = KeyCache::with_capacity(4);
        cache.put("a".into(), Some(grant("k1")), 1_000);
        cache.put("b".into(), Some(grant("k2")), 1_000);
        assert!(cache.get("a", 1_000 + CACHE_TTL - 1).is_some());
        assert!(cache.get("a", 1_000 + CACHE_TTL).is_none());
        assert!(
            cache.get("a", 999).is_none(),
            "a clock moved back is not trusted"
        );
        cache.forget("k2");
        assert!(cache.get("b", 1_001).is_none());
        assert_eq!(cache.sizes(), (1, 0));
    }

    #[test]
    fn the_least_recently_used_known_key_goes_first() {
        let cache = KeyCache::with_capacity(2);
        cache.put("a".into(), Some(grant("k1")), 0);
        cache.put("b".into(), Some(grant("k2")), 0);
        assert!(cache.get("a", 1).is_some());
        cache.put("c".into(), Some(grant("k3")), 1);
        assert!(cache.get("b", 2).is_none(), "b was least recently used");
        assert!(cache.get("a", 2).is_some());
        assert!(cache.get("c", 2).is_some());
    }
}
