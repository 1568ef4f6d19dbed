//! AES-256-GCM encrypted backups (BAK-1): a consistent snapshot of the database (SQLite
//! `VACUUM INTO`; PostgreSQL through `pg_dump`), sealed in the streaming format of
//! [`format`], written atomically, recorded in the ledger, tested by restoring into a
//! temporary place, and pruned to the newest [`crate::config::Config::backup_keep`] files.
//! Images are not in the database, so backups never extend image retention.

pub mod format;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use sqlx::Row;

use crate::app::AppState;
use crate::clock::Millis;
use crate::crypto::{Keyring, random_hex};
use crate::db::Backend;
use format::{BackupError, BackupInfo, BackupKey, DEFAULT_CHUNK};

/// Encrypts `input` into `output` atomically (temp file in the same folder, fsync, rename).
pub fn encrypt_to_file<R: std::io::Read>(
    input: R,
    output: &Path,
    keyring: &Keyring,
    source: &str,
    created_at: Millis,
) -> anyhow::Result<BackupInfo> {
    let (bytes, id) = keyring.backup_key();
    let key = BackupKey {
        id: &id,
        bytes: &bytes,
    };
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp-{}", file_name(output), random_hex(4)));
    let result = (|| -> anyhow::Result<BackupInfo> {
        let mut file = std::io::BufWriter::new(crate::crypto::create_private_file(&tmp)?);
        let info =
            format::encrypt_stream(input, &mut file, &key, source, created_at, DEFAULT_CHUNK)?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, output)?;
        Ok(info)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into())
}

/// Authenticates a whole backup without writing anything.
pub fn verify_file(path: &Path, keyring: &Keyring) -> Result<BackupInfo, BackupError> {
    let (bytes, id) = keyring.backup_key();
    let key = BackupKey {
        id: &id,
        bytes: &bytes,
    };
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    format::decrypt_stream(file, std::io::sink(), &key)
}

/// Decrypts a verified backup to `output` (a path, or `-` for stdout).
pub fn decrypt_file(
    path: &Path,
    output: &mut dyn std::io::Write,
    keyring: &Keyring,
) -> Result<BackupInfo, BackupError> {
    let (bytes, id) = keyring.backup_key();
    let key = BackupKey {
        id: &id,
        bytes: &bytes,
    };
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    format::decrypt_stream(file, output, &key)
}

/// Restores a SQLite backup over `target`: verifies every byte first, decrypts into a temp
/// file next to the target, checks it is a SQLite database, then renames it into place. On
/// any failure the target is untouched. The server must be stopped.
pub fn restore_sqlite(
    backup: &Path,
    target: &Path,
    keyring: &Keyring,
) -> anyhow::Result<BackupInfo> {
    let info = verify_file(backup, keyring)
        .with_context(|| format!("refusing to restore {}", backup.display()))?;
    if info.header.source != "sqlite" {
        anyhow::bail!(
            "{} is a {} backup; restore it with `trustplane backup decrypt FILE | pg_restore -d URL`",
            backup.display(),
            info.header.source
        );
    }
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.restore-{}", file_name(target), random_hex(4)));
    let result = (|| -> anyhow::Result<()> {
        let mut out = std::io::BufWriter::new(crate::crypto::create_private_file(&tmp)?);
        decrypt_file(backup, &mut out, keyring)?;
        let out = out.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()?;
        let mut magic = [0u8; 16];
        std::io::Read::read_exact(&mut std::fs::File::open(&tmp)?, &mut magic)?;
        if &magic != b"SQLite format 3\0" {
            anyhow::bail!("the decrypted backup is not a SQLite database");
        }
        for suffix in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{suffix}", target.display()));
            if side.exists() {
                std::fs::remove_file(side)?;
            }
        }
        std::fs::rename(&tmp, target)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| info)
}

/// A backup just written and recorded.
#[derive(Debug, Clone, Serialize)]
pub struct BackupRecord {
    pub id: String,
    pub file: String,
    pub byte_size: u64,
    pub sha256: String,
    pub key_id: String,
    pub source: String,
    pub pruned: usize,
}

/// Takes a consistent snapshot of the live database, encrypts it to `output`, records it.
pub async fn create(
    state: &AppState,
    output: &Path,
    trigger: &str,
) -> anyhow::Result<BackupRecord> {
    let now = state.now();
    let info = match state.db.backend {
        Backend::Sqlite => {
            let dir = output
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let snapshot = dir.join(format!(".snapshot-{}.db", random_hex(6)));
            // VACUUM INTO accepts an empty file: create it 0600 first so the plaintext
            // snapshot is never readable by others, whatever the umask.
            drop(crate::crypto::create_private_file(&snapshot)?);
            let snapshot_text = snapshot.to_string_lossy().replace('\'', "''");
            sqlx::query(&format!("VACUUM INTO '{snapshot_text}'"))
                .execute(&state.db.pool)
                .await
                .context("VACUUM INTO failed")?;
            let keyring_output = output.to_path_buf();
            let snapshot_for_task = snapshot.clone();
            let state_for_task = state.clone();
            let result = tokio::task::spawn_blocking(move || {
                let file = std::fs::File::open(&snapshot_for_task)?;
                encrypt_to_file(
                    std::io::BufReader::new(file),
                    &keyring_output,
                    &state_for_task.keyring,
                    "sqlite",
                    now,
                )
            })
            .await?;
            let _ = std::fs::remove_file(&snapshot);
            result?
        }
        Backend::Postgres => {
            // The password goes through the environment, never the command line (which
            // every local user can read in /proc).
            let (url, password) = split_password(&state.config.effective_database_url());
            let mut command = std::process::Command::new("pg_dump");
            if let Some(password) = password {
                command.env("PGPASSWORD", password);
            }
            let mut child = command
                .args(["--format=custom", "--no-owner", "--dbname", &url])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .context("cannot run pg_dump (install the PostgreSQL client tools)")?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| anyhow::anyhow!("pg_dump has no stdout"))?;
            let output_path = output.to_path_buf();
            let state_for_task = state.clone();
            let info = tokio::task::spawn_blocking(move || {
                encrypt_to_file(
                    stdout,
                    &output_path,
                    &state_for_task.keyring,
                    "postgres",
                    now,
                )
            })
            .await?;
            let status = child.wait_with_output()?;
            if !status.status.success() {
                let _ = std::fs::remove_file(output);
                anyhow::bail!(
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&status.stderr).trim()
                );
            }
            info?
        }
    };
    let id = uuid::Uuid::new_v4().to_string();
    let file = output.display().to_string();
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "INSERT INTO backups (id, at, file, byte_size, sha256, key_id, source, run_trigger) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(now)
    .bind(&file)
    .bind(i64::try_from(info.ciphertext_size).unwrap_or(i64::MAX))
    .bind(&info.sha256_hex)
    .bind(&info.header.key_id)
    .bind(&info.header.source)
    .bind(trigger)
    .execute(&mut *tx)
    .await?;
    crate::audit::append(
        &mut tx,
        now,
        &crate::audit::RequestMeta::default(),
        crate::audit::AuditEvent::new("system", "backup.create", format!("backup:{id}"))
            .detail("file", file.as_str())
            .detail("sha256", info.sha256_hex.as_str())
            .detail("bytes", info.ciphertext_size),
    )
    .await?;
    tx.commit().await?;
    Ok(BackupRecord {
        id,
        file,
        byte_size: info.ciphertext_size,
        sha256: info.sha256_hex,
        key_id: info.header.key_id,
        source: info.header.source,
        pruned: 0,
    })
}

/// The scheduled daily backup: a new file under `<data_dir>/backups`, then pruning.
pub async fn scheduled(state: &AppState) -> anyhow::Result<serde_json::Value> {
    let stamp = chrono::DateTime::from_timestamp_millis(state.now())
        .map(|t| t.format("%Y%m%dT%H%M%S%.3fZ").to_string())
        .unwrap_or_default();
    let dir = state.config.data_dir.join("backups");
    let mut record = create(
        state,
        &dir.join(format!("trustplane-{stamp}.tpbk")),
        "schedule",
    )
    .await?;
    record.pruned = prune(state).await?;
    Ok(serde_json::to_value(record)?)
}

/// Deletes all but the newest `backup_keep` scheduled backup files.
pub async fn prune(state: &AppState) -> anyhow::Result<usize> {
    let keep = i64::try_from(state.config.backup_keep).unwrap_or(i64::MAX);
    let old = sqlx::query(
        "SELECT id, file FROM backups WHERE pruned_at IS NULL AND run_trigger = 'schedule' \
         ORDER BY at DESC LIMIT 1000000 OFFSET $1",
    )
    .bind(keep)
    .fetch_all(&state.db.pool)
    .await?;
    for row in &old {
        let file: String = row.try_get("file")?;
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err).with_context(|| format!("cannot delete old backup {file}"));
            }
        }
        sqlx::query("UPDATE backups SET pruned_at = $1 WHERE id = $2")
            .bind(state.now())
            .bind(row.try_get::<String, _>("id")?)
            .execute(&state.db.pool)
            .await?;
    }
    Ok(old.len())
}

/// Restores the newest backup into a temporary folder and checks it; records the result.
pub async fn restore_test(state: &AppState) -> anyhow::Result<serde_json::Value> {
    let latest = sqlx::query(
        "SELECT id, file, source FROM backups WHERE pruned_at IS NULL ORDER BY at DESC LIMIT 1",
    )
    .fetch_optional(&state.db.pool)
    .await?;
    let Some(latest) = latest else {
        return Ok(serde_json::json!({ "tested": 0 }));
    };
    let id: String = latest.try_get("id")?;
    let file = PathBuf::from(latest.try_get::<String, _>("file")?);
    let source: String = latest.try_get("source")?;
    let outcome: anyhow::Result<String> = async {
        let scratch = tempfile::tempdir()?;
        if source == "sqlite" {
            let target = scratch.path().join("restore-test.db");
            let state_for_task = state.clone();
            let (from, to) = (file.clone(), target.clone());
            tokio::task::spawn_blocking(move || {
                restore_sqlite(&from, &to, &state_for_task.keyring)
            })
            .await??;
            let restored =
                crate::db::Db::connect(&format!("sqlite://{}?mode=rwc", target.display())).await?;
            let check: String = sqlx::query("PRAGMA integrity_check")
                .fetch_one(&restored.pool)
                .await?
                .try_get(0)?;
            let staff: i64 = sqlx::query("SELECT COUNT(*) FROM staff")
                .fetch_one(&restored.pool)
                .await?
                .try_get(0)?;
            let verified = crate::audit::verify(&restored).await?;
            restored.pool.close().await;
            if check != "ok" || !verified.ok() {
                anyhow::bail!("integrity check {check}, audit chain ok: {}", verified.ok());
            }
            Ok(format!(
                "restored; integrity ok; {staff} staff; audit chain verified ({} events)",
                verified.checked
            ))
        } else {
            let state_for_task = state.clone();
            let from = file.clone();
            let info = tokio::task::spawn_blocking(move || {
                let mut first = Vec::new();
                let info = decrypt_file(&from, &mut first, &state_for_task.keyring)?;
                Ok::<_, anyhow::Error>((info, first.starts_with(b"PGDMP")))
            })
            .await??;
            if !info.1 {
                anyhow::bail!("decrypted backup is not a pg_dump archive");
            }
            Ok(format!(
                "verified; pg_dump archive of {} bytes",
                info.0.plaintext_size
            ))
        }
    }
    .await;
    let (ok, detail) = match outcome {
        Ok(detail) => (true, detail),
        Err(err) => (false, format!("{err:#}")),
    };
    sqlx::query("UPDATE backups SET restore_tested_at = $1, restore_ok = $2, restore_detail = $3 WHERE id = $4")
        .bind(state.now())
        .bind(i32::from(ok))
        .bind(&detail)
        .bind(&id)
        .execute(&state.db.pool)
        .await?;
    if !ok {
        anyhow::bail!("restore test of {} failed: {detail}", file.display());
    }
    Ok(serde_json::json!({ "tested": 1, "detail": detail }))
}

/// What the dashboard shows for BAK-1.
#[derive(Debug, Clone)]
pub struct BackupStatus {
    pub last_backup_at: Option<Millis>,
    pub last_restore_test_at: Option<Millis>,
    pub last_restore_ok: Option<bool>,
}

pub async fn status(state: &AppState) -> Result<BackupStatus, sqlx::Error> {
    let row = sqlx::query(
        "SELECT (SELECT MAX(at) FROM backups) AS last_backup, \
         (SELECT MAX(restore_tested_at) FROM backups) AS last_test",
    )
    .fetch_one(&state.db.pool)
    .await?;
    let last_restore_test_at: Option<Millis> = row.try_get("last_test")?;
    let last_restore_ok = match last_restore_test_at {
        Some(at) => sqlx::query("SELECT restore_ok FROM backups WHERE restore_tested_at = $1")
            .bind(at)
            .fetch_optional(&state.db.pool)
            .await?
            .map(|r| r.try_get::<Option<i32>, _>("restore_ok"))
            .transpose()?
            .flatten()
            .map(|v| v != 0),
        None => None,
    };
    Ok(BackupStatus {
        last_backup_at: row.try_get("last_backup")?,
        last_restore_test_at,
        last_restore_ok,
    })
}

/// A connection URL without its password, and the password (percent-decoded) if it had one.
fn split_password(url: &str) -> (String, Option<String>) {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let password = parsed.password().map(|p| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8_lossy()
                    .into_owned()
            });
            if password.is_some() && parsed.set_password(None).is_err() {
                return (url.to_owned(), None);
            }
            (parsed.to_string(), password)
        }
        Err(_) => (url.to_owned(), None),
    }
}

#[cfg(test)]
mod password_tests {
    use super::split_password;

    #[test]
    fn the_password_leaves_the_url_for_the_environment() {
        let (url, password) = split_password("postgres://app:s%40c+ret@db.example:5432/tp");
        assert_eq!(url, "postgres://app@db.example:5432/tp");
        assert_eq!(password.as_deref(), Some("s@c+ret"));
        let (url, password) = split_password("postgres://postgres@127.0.0.1:5432/tp");
        assert_eq!(url, "postgres://postgres@127.0.0.1:5432/tp");
        assert_eq!(password, None);
    }
}
