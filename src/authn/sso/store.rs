//! SQL for sign-ins in progress (`oidc_flows`) and account links (`oidc_links`).

use sqlx::{AnyConnection, Row};

use crate::clock::Millis;
use crate::db::flag;

/// A sign-in row found by its `state`.
#[derive(Debug, Clone)]
pub struct Flow {
    pub id: String,
    pub binding_hash: String,
    pub nonce_enc: String,
    pub verifier_enc: String,
    pub redirect_uri: String,
    pub expires_at: Millis,
    pub verified_at: Option<Millis>,
}

/// A sign-in the callback has accepted, waiting for the same-site finishing step.
#[derive(Debug, Clone)]
pub struct Verified {
    pub id: String,
    pub staff_id: String,
    pub idp_mfa: bool,
    pub amr: String,
}

/// Data of a new flow.
pub struct NewFlow<'a> {
    pub binding_hash: &'a str,
    pub state_hash: &'a str,
    pub nonce_enc: &'a str,
    pub verifier_enc: &'a str,
    pub redirect_uri: &'a str,
}

/// Stores a new flow; the visitor's older unfinished flows and expired ones are removed.
pub async fn insert_flow(
    conn: &mut AnyConnection,
    id: &str,
    flow: &NewFlow<'_>,
    now: Millis,
    expires_at: Millis,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oidc_flows WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO oidc_flows (id, binding_hash, state_hash, nonce_enc, verifier_enc, \
         redirect_uri, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(flow.binding_hash)
    .bind(flow.state_hash)
    .bind(flow.nonce_enc)
    .bind(flow.verifier_enc)
    .bind(flow.redirect_uri)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn find_by_state(
    conn: &mut AnyConnection,
    state_hash: &str,
) -> Result<Option<Flow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, binding_hash, nonce_enc, verifier_enc, redirect_uri, expires_at, verified_at \
         FROM oidc_flows WHERE state_hash = $1",
    )
    .bind(state_hash)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(Flow {
            id: r.try_get("id")?,
            binding_hash: r.try_get("binding_hash")?,
            nonce_enc: r.try_get("nonce_enc")?,
            verifier_enc: r.try_get("verifier_enc")?,
            redirect_uri: r.try_get("redirect_uri")?,
            expires_at: r.try_get("expires_at")?,
            verified_at: r.try_get("verified_at")?,
        })
    })
    .transpose()
}

/// Marks a flow as used by a callback; false if another callback got there first, so a
/// state (and the code that came with it) is only ever processed once.
pub async fn claim_flow(
    conn: &mut AnyConnection,
    id: &str,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE oidc_flows SET verified_at = $1 WHERE id = $2 AND verified_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Records who the callback accepted.
pub async fn accept_flow(
    conn: &mut AnyConnection,
    id: &str,
    staff_id: &str,
    idp_mfa: bool,
    amr: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE oidc_flows SET staff_id = $1, idp_mfa = $2, amr = $3 WHERE id = $4")
        .bind(staff_id)
        .bind(i32::from(idp_mfa))
        .bind(amr)
        .bind(id)
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn delete_flow(conn: &mut AnyConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oidc_flows WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Takes (and deletes) the accepted flow bound to this visitor's pre-session cookie.
pub async fn take_verified(
    conn: &mut AnyConnection,
    binding_hash: &str,
    now: Millis,
) -> Result<Option<Verified>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, staff_id, idp_mfa, amr FROM oidc_flows WHERE binding_hash = $1 \
         AND staff_id IS NOT NULL AND expires_at > $2 ORDER BY verified_at DESC LIMIT 1",
    )
    .bind(binding_hash)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let id: String = row.try_get("id")?;
    let done = sqlx::query("DELETE FROM oidc_flows WHERE id = $1")
        .bind(&id)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() != 1 {
        return Ok(None);
    }
    Ok(Some(Verified {
        id,
        staff_id: row.try_get("staff_id")?,
        idp_mfa: flag(row.try_get("idp_mfa")?),
        amr: row.try_get::<Option<String>, _>("amr")?.unwrap_or_default(),
    }))
}

/// The account linked to (issuer, subject).
pub async fn linked_staff(
    conn: &mut AnyConnection,
    issuer: &str,
    subject: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT staff_id FROM oidc_links WHERE issuer = $1 AND subject = $2")
        .bind(issuer)
        .bind(subject)
        .fetch_optional(conn)
        .await
}

/// Links (issuer, subject) to an account.
pub async fn link(
    conn: &mut AnyConnection,
    issuer: &str,
    subject: &str,
    staff_id: &str,
    now: Millis,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO oidc_links (issuer, subject, staff_id, linked_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(issuer)
    .bind(subject)
    .bind(staff_id)
    .bind(now)
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn touch_link(
    conn: &mut AnyConnection,
    issuer: &str,
    subject: &str,
    now: Millis,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE oidc_links SET last_login_at = $1 WHERE issuer = $2 AND subject = $3")
        .bind(now)
        .bind(issuer)
        .bind(subject)
        .execute(conn)
        .await
        .map(|_| ())
}
