//! Staff passwords: Argon2id hashes and the acceptance rules (ASVS V2.1: at least 12
//! characters, long passphrases allowed, common passwords refused).

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;

pub const MIN_CHARS: usize = 12;
pub const MAX_CHARS: usize = 128;

/// Argon2id with 64 MiB, 3 passes, 1 lane: one verification costs about 125 ms on one core
/// here (see BENCHMARKS.md), slow for guessing, fast enough for people.
fn hasher() -> Argon2<'static> {
    let params = Params::new(64 * 1024, 3, 1, Some(32)).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

const COMMON: &str = include_str!("common_passwords.txt");

/// Why a new password was refused, in words for the person choosing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejected {
    #[error("Use at least {MIN_CHARS} characters.")]
    TooShort,
    #[error("Use at most {MAX_CHARS} characters.")]
    TooLong,
    #[error("This password is too common. Choose a longer passphrase.")]
    Common,
    #[error("The two passwords do not match.")]
    Mismatch,
}

/// Checks a new password against the rules.
pub fn check_new(password: &str, confirmation: &str, email: &str) -> Result<(), PasswordRejected> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(PasswordRejected::TooShort);
    }
    if chars > MAX_CHARS {
        return Err(PasswordRejected::TooLong);
    }
    let lower = password.to_lowercase();
    let local_part = email.split('@').next().unwrap_or_default().to_lowercase();
    let one_repeated_char = password.chars().all(|c| password.starts_with(c));
    if one_repeated_char
        || lower == email.to_lowercase()
        || (local_part.len() >= 4 && lower.contains(&local_part) && chars < 20)
        || COMMON
            .lines()
            .map(str::trim)
            .any(|common| !common.is_empty() && common == lower)
    {
        return Err(PasswordRejected::Common);
    }
    if password != confirmation {
        return Err(PasswordRejected::Mismatch);
    }
    Ok(())
}

/// Hashes a password (slow on purpose; call from `spawn_blocking`).
pub fn hash(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
}

/// Verifies a password against a stored PHC string (slow on purpose).
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the same time as a real verification, for unknown accounts, so response time does
/// not reveal whether an email exists.
pub fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let stored = DUMMY.get_or_init(|| hash("not-a-real-password-0000").unwrap_or_default());
    let _ = verify(password, stored);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_follow_asvs_lengths_and_refuse_common_passwords() {
        let email = "ana@example.com";
        assert_eq!(
            check_new("short", "short", email),
            Err(PasswordRejected::TooShort)
        );
        let long = "a-long passphrase ".repeat(8);
        assert_eq!(
            check_new(&long, &long, email),
            Err(PasswordRejected::TooLong)
        );
        assert_eq!(
            check_new("password1234", "password1234", email),
            Err(PasswordRejected::Common)
        );
        assert_eq!(
            check_new("aaaaaaaaaaaaaa", "aaaaaaaaaaaaaa", email),
            Err(PasswordRejected::Common)
        );
        assert_eq!(
            check_new("correct horse battery", "correct horse batterx", email),
            Err(PasswordRejected::Mismatch)
        );
        let sixty_four = "correct horse battery staple and a lot more words to reach 64 ch";
        assert_eq!(sixty_four.chars().count(), 64);
        assert_eq!(check_new(sixty_four, sixty_four, email), Ok(()));
    }

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let stored = hash("correct horse battery").unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=65536,t=3,p=1$"));
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterY", &stored));
        assert!(!verify("anything", "not a hash"));
    }
}
