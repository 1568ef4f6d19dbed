//! Staff authentication: passwords, TOTP, recovery codes, one-time links, sessions, login
//! throttling, and the pages that walk a person through login, setup and enrolment.

pub mod account;
pub mod links;
pub mod pages;
pub mod password;
pub mod recovery;
pub mod session;
pub mod throttle;
pub mod totp;

use crate::app::AppState;
use crate::error::AppError;

/// Runs argon2 off the async runtime.
pub async fn verify_password_blocking(
    password: String,
    stored: Option<String>,
) -> Result<bool, AppError> {
    tokio::task::spawn_blocking(move || match stored {
        Some(stored) => password::verify(&password, &stored),
        None => {
            password::verify_dummy(&password);
            false
        }
    })
    .await
    .map_err(|e| AppError::Internal(e.into()))
}

/// Hashes a new password off the async runtime.
pub async fn hash_password_blocking(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| AppError::Internal(e.into()))?
        .map_err(AppError::Internal)
}

/// Opens an account's sealed TOTP secret.
pub fn open_totp_secret(
    state: &AppState,
    sealed: &str,
    bound_to: &str,
) -> Result<String, AppError> {
    let bytes = state
        .keyring
        .open(sealed, bound_to.as_bytes())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("cannot open TOTP secret: {e}")))?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| AppError::Internal(anyhow::anyhow!("TOTP secret is not text")))
}
