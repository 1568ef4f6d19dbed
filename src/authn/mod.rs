//! Staff authentication: passwords, TOTP, recovery codes, one-time links, sessions, login
//! throttling, and the pages that walk a person through login, setup and enrolment.

pub mod account;
pub mod links;
pub mod pages;
pub mod password;
pub mod recovery;
pub mod session;
pub mod sso;
pub mod throttle;
pub mod totp;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use crate::app::AppState;
use crate::error::AppError;

/// Bounds password hashing. Each Argon2id run holds 64 MiB for about 125 ms, so without a
/// bound a burst of logins (even for unknown emails) asks for gigabytes at once and the
/// process — with the API it hosts — is killed. At most `concurrency` hashes run at once, at
/// most `queue` more wait; beyond that the caller answers 503 with `Retry-After`.
#[derive(Debug)]
pub struct PasswordGate {
    permits: Arc<Semaphore>,
    concurrency: usize,
    /// Holders and waiters together; compared with `concurrency + queue`.
    admitted: AtomicUsize,
    capacity: usize,
    running: AtomicUsize,
    peak_running: AtomicUsize,
    refused: AtomicU64,
}

/// A place in the gate; hashing happens through it and the place is freed on drop.
#[derive(Debug)]
pub struct PasswordSlot<'a> {
    gate: &'a PasswordGate,
}

/// Seconds a refused caller is told to wait: about one round of hashing for the queue.
pub const PASSWORD_RETRY_AFTER_SECONDS: u64 = 2;

impl PasswordGate {
    /// `concurrency` 0 means one per CPU core.
    pub fn new(concurrency: usize, queue: usize) -> Self {
        let concurrency = if concurrency == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            concurrency
        };
        Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            admitted: AtomicUsize::new(0),
            capacity: concurrency + queue,
            running: AtomicUsize::new(0),
            peak_running: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Takes a place, or refuses at once when the queue is full.
    pub fn enter(&self) -> Result<PasswordSlot<'_>, AppError> {
        let before = self.admitted.fetch_add(1, Ordering::SeqCst);
        if before >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(AppError::Busy {
                retry_after_seconds: PASSWORD_RETRY_AFTER_SECONDS,
            });
        }
        Ok(PasswordSlot { gate: self })
    }

    /// The most hashes that ever ran at once (for tests and benchmarks).
    pub fn peak_running(&self) -> usize {
        self.peak_running.load(Ordering::SeqCst)
    }

    /// Hashes allowed to run at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Callers refused because the queue was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl PasswordSlot<'_> {
    /// Runs `work` on the blocking pool once a permit is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let _permit = Arc::clone(&self.gate.permits)
            .acquire_owned()
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
        let now_running = self.gate.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.gate
            .peak_running
            .fetch_max(now_running, Ordering::SeqCst);
        let result = tokio::task::spawn_blocking(work).await;
        self.gate.running.fetch_sub(1, Ordering::SeqCst);
        result.map_err(|e| AppError::Internal(e.into()))
    }

    /// Verifies a password; with no stored hash, spends the same time on a dummy so unknown
    /// accounts cannot be told apart by timing.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, AppError> {
        self.run(move || match stored {
            Some(stored) => password::verify(&password, &stored),
            None => {
                password::verify_dummy(&password);
                false
            }
        })
        .await
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: String) -> Result<String, AppError> {
        self.run(move || password::hash(&password))
            .await?
            .map_err(AppError::Internal)
    }
}

impl Drop for PasswordSlot<'_> {
    fn drop(&mut self) {
        self.gate.admitted.fetch_sub(1, Ordering::SeqCst);
    }
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
