//! One-time links: the first-run setup link and staff invitations. The token is random
//! (256 bits), shown once, and stored as SHA-256; using it marks it used in the same
//! transaction that creates the account or sets the password, so it works exactly once.

use sqlx::{AnyConnection, Row};

use crate::clock::Millis;
use crate::crypto::{random_token, sha256_hex};

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Creates the first admin account; only valid while no account exists.
    FirstAdmin,
    /// Lets an invited account choose its password.
    Invite,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::FirstAdmin => "first_admin",
            Purpose::Invite => "invite",
        }
    }
}

/// A link that may still be used.
#[derive(Debug, Clone)]
pub struct PendingLink {
    pub purpose: Purpose,
    pub staff_id: Option<String>,
    pub expires_at: Millis,
}

/// Random bytes in a link token: 256 bits, 43 base64url characters.
const TOKEN_BYTES: usize = 32;
const TOKEN_CHARS: usize = 43;

/// Whether `raw` has the exact shape of a link token (43 base64url characters). Anything else
/// is refused before it is stored in a cookie or looked up.
pub fn is_token_shaped(raw: &str) -> bool {
    raw.len() == TOKEN_CHARS
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Creates a link token and returns it (the only time it exists in clear).
pub async fn create(
    conn: &mut AnyConnection,
    purpose: Purpose,
    staff_id: Option<&str>,
    created_by: &str,
    now: Millis,
    expires_at: Millis,
) -> Result<String, sqlx::Error> {
    let token = random_token(TOKEN_BYTES);
    sqlx::query(
        "INSERT INTO one_time_tokens (token_hash, purpose, staff_id, created_by, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(sha256_hex(token.as_bytes()))
    .bind(purpose.as_str())
    .bind(staff_id)
    .bind(created_by)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(token)
}

/// Looks a token up without using it.
pub async fn peek(
    conn: &mut AnyConnection,
    token: &str,
    now: Millis,
) -> Result<Option<PendingLink>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT purpose, staff_id, expires_at FROM one_time_tokens \
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(sha256_hex(token.as_bytes()))
    .bind(now)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let purpose = match row.try_get::<String, _>("purpose")?.as_str() {
        "first_admin" => Purpose::FirstAdmin,
        "invite" => Purpose::Invite,
        _ => return Ok(None),
    };
    Ok(Some(PendingLink {
        purpose,
        staff_id: row.try_get("staff_id")?,
        expires_at: row.try_get("expires_at")?,
    }))
}

/// Marks a token used; false if it was already used or expired (a concurrent redemption).
pub async fn consume(
    conn: &mut AnyConnection,
    token: &str,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE one_time_tokens SET used_at = $1 \
         WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(sha256_hex(token.as_bytes()))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Withdraws every unused link of an account (re-invite, disable).
pub async fn revoke_for(conn: &mut AnyConnection, staff_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM one_time_tokens WHERE staff_id = $1 AND used_at IS NULL")
        .bind(staff_id)
        .execute(conn)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_shape_is_accepted() {
        assert!(is_token_shaped(&random_token(TOKEN_BYTES)));
        assert!(!is_token_shaped(""));
        assert!(!is_token_shaped(&"a".repeat(42)));
        assert!(!is_token_shaped(&"a".repeat(44)));
        assert!(!is_token_shaped(&format!("{};Domain=evil", "a".repeat(32))));
        assert!(!is_token_shaped(&format!("{}=", "a".repeat(42))));
    }
}
