//! Verifying a presented key: shape and checksum first (no database work for junk), then the
//! HMAC lookup. Lookups are cached for at most [`CACHE_TTL`], so a key revoked on any node
//! stops working everywhere within that time; a revocation on this node clears the cache
//! entry at once.

use std::collections::HashMap;
use std::sync::Mutex;

use super::model::Scope;
use super::store::{self, KeyGrant};
use crate::app::App;
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::Millis;

/// How long a lookup result may be reused. Revocation takes effect within this time.
pub const CACHE_TTL: Millis = 500;
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

/// The verification cache, keyed by the key's HMAC.
#[derive(Debug, Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, (Option<KeyGrant>, Millis)>>,
}

impl KeyCache {
    fn get(&self, hash: &str, now: Millis) -> Option<Option<KeyGrant>> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(hash)
            .filter(|(_, at)| now - *at < CACHE_TTL && now >= *at)
            .map(|(grant, _)| grant.clone())
    }

    fn put(&self, hash: String, grant: Option<KeyGrant>, now: Millis) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CACHE_MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(hash, (grant, now));
        }
    }

    /// Forgets a key after this node changed it.
    pub fn forget(&self, key_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (grant, _)| grant.as_ref().is_none_or(|g| g.id != key_id));
        }
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
