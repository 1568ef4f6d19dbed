//! Customer API keys: format, issue, rotate, revoke, and verification by HMAC with a
//! short-lived cache. A key exists in clear only in the one response that shows it; the
//! database, logs, audit details and errors see at most its display prefix.

pub mod format;
pub mod model;
pub mod pages;
pub mod store;
pub mod usage;
pub mod verify;

use sqlx::AnyConnection;

use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::Millis;
use crate::crypto::Keyring;
use crate::customers::store::Customer;
use format::display_prefix;
use model::Scope;

/// A key just issued: its id and the secret to show once.
pub struct IssuedKey {
    pub id: String,
    pub secret: String,
    pub prefix: String,
}

/// Creates a key for `customer` and audits it (without the secret).
#[allow(clippy::too_many_arguments)]
pub async fn issue(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    customer: &Customer,
    name: &str,
    scopes: &[Scope],
    expires_at: Option<Millis>,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<IssuedKey, sqlx::Error> {
    let secret = format::generate(customer.env());
    let prefix = display_prefix(&secret);
    let scopes_text = Scope::join(scopes);
    let id = store::insert(
        conn,
        &store::NewKey {
            customer_id: &customer.id,
            name,
            prefix: &prefix,
            key_hash: &keyring.pepper_hmac_hex(secret.as_bytes()),
            pepper_id: &keyring.hmac_pepper.id,
            scopes: &scopes_text,
            created_by: actor,
            expires_at,
        },
        now,
    )
    .await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "key.create", format!("key:{id}"))
            .detail("prefix", prefix.as_str())
            .detail("customer", customer.name.as_str())
            .detail("name", name)
            .detail("scopes", scopes_text.as_str())
            .detail("expires_at", expires_at),
    )
    .await?;
    Ok(IssuedKey { id, secret, prefix })
}

/// Issues a successor with the same name and scopes and lets the old key live for `grace`
/// (revoked at once when `grace` is 0).
#[allow(clippy::too_many_arguments)]
pub async fn rotate(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    customer: &Customer,
    old: &store::KeyRecord,
    grace: Millis,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<IssuedKey, sqlx::Error> {
    let scopes = Scope::parse_list(&old.scopes).unwrap_or_default();
    let issued = issue(
        conn,
        keyring,
        customer,
        &old.name,
        &scopes,
        old.expires_at.filter(|e| *e > now),
        actor,
        meta,
        now,
    )
    .await?;
    if grace == 0 {
        store::revoke(conn, &old.id, actor, now).await?;
    }
    store::retire(conn, &old.id, now + grace, &issued.id).await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "key.rotate", format!("key:{}", old.id))
            .detail("prefix", old.prefix.as_str())
            .detail("successor", issued.prefix.as_str())
            .detail("grace_ms", grace),
    )
    .await?;
    Ok(issued)
}

/// Revokes a key at once; false if it was already revoked.
pub async fn revoke(
    conn: &mut AnyConnection,
    key: &store::KeyRecord,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    if !store::revoke(conn, &key.id, actor, now).await? {
        return Ok(false);
    }
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "key.revoke", format!("key:{}", key.id))
            .detail("prefix", key.prefix.as_str())
            .detail("customer", key.customer_name.as_str()),
    )
    .await?;
    Ok(true)
}

/// Narrows an active key to `keep` (a non-empty subset of its scopes); audited as
/// `key.scopes.narrow`. False (nothing changed) when the key is revoked, or `keep` is not a
/// subset of what it holds. The caller forgets the key in the verification cache after commit.
pub async fn narrow_scopes(
    conn: &mut AnyConnection,
    key: &store::KeyRecord,
    keep: &[Scope],
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let held = Scope::parse_list(&key.scopes).unwrap_or_default();
    if keep.is_empty() || keep.iter().any(|s| !held.contains(s)) {
        return Ok(false);
    }
    let mut keep = keep.to_vec();
    keep.sort();
    keep.dedup();
    let keep_text = Scope::join(&keep);
    if !store::set_scopes(conn, &key.id, &key.scopes, &keep_text).await? {
        return Ok(false);
    }
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "key.scopes.narrow", format!("key:{}", key.id))
            .detail("prefix", key.prefix.as_str())
            .detail("customer", key.customer_name.as_str())
            .detail("from", key.scopes.as_str())
            .detail("to", keep_text.as_str()),
    )
    .await?;
    Ok(true)
}
