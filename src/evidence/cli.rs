//! `trustplane evidence …`: export, verify (offline), public-key, rotate-key.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto::Keyring;

#[derive(Subcommand, Debug)]
pub enum EvidenceCommand {
    /// Export a signed evidence pack of a period (progress on stderr).
    Export {
        /// Start of the period: YYYY-MM-DD (00:00 UTC) or an RFC 3339 time; inclusive.
        #[arg(long)]
        from: String,
        /// End of the period, exclusive: YYYY-MM-DD or an RFC 3339 time.
        #[arg(long)]
        to: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a pack offline: signature, every file's hash, no file missing or added, and
    /// the audit extract's hash chain. Exits 1 naming the first problem.
    Verify {
        file: PathBuf,
        /// A trusted public key: base64, `id=base64`, or a file with keys (one per line, or
        /// the JSON of /trust/evidence-key). Repeatable. Without it, the keys of the local
        /// keyring are used.
        #[arg(long = "public-key")]
        public_key: Vec<String>,
    },
    /// Print the public keys packs are signed with (current first, then retired ones).
    PublicKey {
        /// One JSON document instead of `id base64 status` lines.
        #[arg(long)]
        json: bool,
    },
    /// Replace the signing key; the old public key is kept so older packs still verify.
    RotateKey,
}

pub async fn run(config: &Config, command: EvidenceCommand) -> anyhow::Result<ExitCode> {
    match command {
        EvidenceCommand::Export { from, to, out } => export(config, &from, &to, &out).await,
        EvidenceCommand::Verify { file, public_key } => verify(config, &file, &public_key),
        EvidenceCommand::PublicKey { json } => {
            let keyring = Keyring::load_or_create(&config.effective_keyring_path())?;
            print_keys(&keyring, json)?;
            Ok(ExitCode::SUCCESS)
        }
        EvidenceCommand::RotateKey => rotate(config).await,
    }
}

async fn export(
    config: &Config,
    from: &str,
    to: &str,
    out: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let from = super::parse_day_or_time(from).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let to = super::parse_day_or_time(to).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    super::check_period(from, to).map_err(anyhow::Error::msg)?;
    let keyring = Keyring::load_or_create(&config.effective_keyring_path())?;
    let db = crate::cli::open_db(config).await?;
    let request = super::ExportRequest {
        db: &db,
        config,
        keyring: &keyring,
        from,
        to,
        now: SystemClock.now_ms(),
        actor: crate::cli::cli_actor(),
    };
    let started = std::time::Instant::now();
    let mut progress = |line: &str| {
        eprintln!("[{:>7.1}s] {line}", started.elapsed().as_secs_f64());
    };
    let outcome =
        super::export_to_path(&request, out, &RequestMeta::default(), &mut progress).await;
    db.pool.close().await;
    let outcome = outcome?;
    println!(
        "evidence pack {}: {} files, {} audit events, signed with {}, sha256 {}",
        out.display(),
        outcome.manifest.files.len(),
        outcome.manifest.audit.rows,
        outcome.manifest.key_id,
        outcome.pack_sha256
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(config: &Config, file: &std::path::Path, given: &[String]) -> anyhow::Result<ExitCode> {
    let keys = if given.is_empty() {
        let path = config.effective_keyring_path();
        if !Keyring::env_configured() && !path.exists() {
            eprintln!(
                "evidence pack NOT verified: no public key; pass --public-key (published at /trust/evidence-key)"
            );
            return Ok(ExitCode::FAILURE);
        }
        let keyring = Keyring::load_or_create(&path)?;
        keyring
            .evidence
            .published()
            .iter()
            .map(|k| super::verify::PublicKey::from_base64(&k.public_key))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?
    } else {
        match super::verify::parse_public_keys(given) {
            Ok(keys) => keys,
            Err(problem) => {
                eprintln!("evidence pack NOT verified: --public-key: {problem}");
                return Ok(ExitCode::FAILURE);
            }
        }
    };
    match super::verify::verify_pack(file, &keys) {
        Ok(verified) => {
            println!(
                "evidence pack OK: {} files, period {} to {}, {} audit events linked from the hash before the period (event #{}), signed with {}",
                verified.manifest.files.len(),
                verified.manifest.period.from_utc,
                verified.manifest.period.to_utc,
                verified.audit_rows,
                verified.manifest.audit.first_seq.map_or(0, |s| s - 1),
                verified.key_id
            );
            if verified.withheld > 0 {
                println!(
                    "note: {} early (version 1) audit events had their client address withheld; their links were checked, not their own hashes",
                    verified.withheld
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            eprintln!("evidence pack NOT verified: {problem}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_keys(keyring: &Keyring, json: bool) -> anyhow::Result<()> {
    let keys = keyring.evidence.published();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "keys": keys }))?
        );
    } else {
        for key in keys {
            println!("{} {} {}", key.id, key.public_key, key.status);
        }
    }
    Ok(())
}

async fn rotate(config: &Config) -> anyhow::Result<ExitCode> {
    if Keyring::env_configured() {
        anyhow::bail!(
            "the keyring comes from the environment: set TRUSTPLANE_EVIDENCE_SIGNING_KEY to a new base64 seed and add the old key to TRUSTPLANE_EVIDENCE_RETIRED_KEYS as id=base64 (see `trustplane evidence public-key`)"
        );
    }
    let path = config.effective_keyring_path();
    // Make sure the file exists and has a key to retire.
    Keyring::load_or_create(&path)?;
    let db = crate::cli::open_db(config).await?;
    let now = SystemClock.now_ms();
    let (old, new) = Keyring::rotate_evidence_key(&path, now)?;
    audit::append_alone(
        &db,
        now,
        &RequestMeta::default(),
        AuditEvent::new(
            crate::cli::cli_actor(),
            "evidence.key.rotate",
            format!("evidence-key:{new}"),
        )
        .detail("retired", old.clone())
        .detail("current", new.clone()),
    )
    .await?;
    db.pool.close().await;
    println!(
        "evidence signing key rotated: {old} retired (still published), {new} signs from now on; restart running servers to pick it up"
    );
    Ok(ExitCode::SUCCESS)
}
