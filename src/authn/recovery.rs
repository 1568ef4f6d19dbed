//! Single-use recovery codes: ten per account, shown once at enrolment, stored as
//! HMAC-SHA256 under the server pepper so a database copy alone cannot use them.

use rand::Rng;
use sqlx::AnyConnection;

use crate::clock::Millis;
use crate::crypto::Keyring;

pub const COUNT: usize = 10;
/// Crockford-style alphabet without look-alikes (0/O, 1/I/L).
const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Ten new codes like `K7QM-3XTP-9ZRA` (about 70 bits each).
pub fn generate() -> Vec<String> {
    let mut rng = rand::rngs::OsRng;
    (0..COUNT)
        .map(|_| {
            let chars: Vec<char> = (0..12)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect();
            chars
                .chunks(4)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// True when the input looks like a recovery code rather than a TOTP code.
pub fn looks_like_recovery_code(input: &str) -> bool {
    normalise(input).len() == 12
}

/// Replaces an account's codes with `codes` (hashed).
pub async fn store(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    staff_id: &str,
    codes: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM recovery_codes WHERE staff_id = $1")
        .bind(staff_id)
        .execute(&mut *conn)
        .await?;
    for code in codes {
        sqlx::query("INSERT INTO recovery_codes (staff_id, code_hash) VALUES ($1, $2)")
            .bind(staff_id)
            .bind(keyring.pepper_hmac_hex(normalise(code).as_bytes()))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Uses a code once; false if unknown or already used.
pub async fn consume(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    staff_id: &str,
    code: &str,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE recovery_codes SET used_at = $1 \
         WHERE staff_id = $2 AND code_hash = $3 AND used_at IS NULL",
    )
    .bind(now)
    .bind(staff_id)
    .bind(keyring.pepper_hmac_hex(normalise(code).as_bytes()))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Unused codes left for an account.
pub async fn remaining(db: &crate::db::Db, staff_id: &str) -> Result<i64, sqlx::Error> {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM recovery_codes WHERE staff_id = $1 AND used_at IS NULL")
        .bind(staff_id)
        .fetch_one(&db.pool)
        .await?
        .try_get("n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_formatted() {
        let codes = generate();
        assert_eq!(codes.len(), COUNT);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), COUNT);
        for code in &codes {
            assert_eq!(code.len(), 14);
            assert!(looks_like_recovery_code(code));
            assert!(looks_like_recovery_code(
                &code.to_lowercase().replace('-', " ")
            ));
        }
        assert!(!looks_like_recovery_code("123456"));
    }
}
