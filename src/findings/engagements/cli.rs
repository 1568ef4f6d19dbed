//! `trustplane findings engagement …`: record a pentest engagement (with its report, sealed
//! into the blob store) and list them, audited with the operating-system user as actor.

use anyhow::Context;
use clap::Subcommand;

use super::model::MAX_REPORT_BYTES;
use super::{NewEngagement, ReportVault, store};
use crate::audit::RequestMeta;
use crate::blobs::BlobStore;
use crate::clock::{Clock, SystemClock, format_ms};
use crate::config::Config;
use crate::crypto::Keyring;
use crate::db::Db;

#[derive(Subcommand, Debug)]
pub enum EngagementCommand {
    /// Record a finished engagement; prints its id. Starts the 12-month next-test clock when
    /// it is the most recent test.
    Add {
        /// The independent firm that ran the test.
        #[arg(long)]
        firm: String,
        /// What was tested.
        #[arg(long)]
        scope: String,
        /// First day of testing, YYYY-MM-DD.
        #[arg(long = "from")]
        started_on: String,
        /// Last day of testing, YYYY-MM-DD.
        #[arg(long = "to")]
        ended_on: String,
        /// The report (PDF or any file, at most 20 MiB); stored encrypted.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
    /// Engagements, most recent first, with report hashes and the next-test clock.
    List {
        #[arg(long)]
        json: bool,
    },
}

fn read_report(path: &std::path::Path) -> anyhow::Result<(String, Vec<u8>)> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size > MAX_REPORT_BYTES as u64 {
        anyhow::bail!(
            "{} is {size} bytes; the limit is {} MiB. Nothing was recorded.",
            path.display(),
            MAX_REPORT_BYTES / (1024 * 1024)
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((name, bytes))
}

pub async fn run(config: &Config, db: &Db, command: EngagementCommand) -> anyhow::Result<()> {
    let now = SystemClock.now_ms();
    match command {
        EngagementCommand::Add {
            firm,
            scope,
            started_on,
            ended_on,
            report,
        } => {
            let report = report.as_deref().map(read_report).transpose()?;
            let calendar = config.sla_calendar()?;
            let keyring = Keyring::load_or_create(&config.effective_keyring_path())?;
            let blobs = BlobStore::open(&config.blob_store_url, &config.data_dir)?;
            let new = NewEngagement {
                firm,
                scope,
                started_on,
                ended_on,
                report,
            };
            let mut tx = db.begin().await?;
            let engagement = super::record(
                &mut tx,
                &calendar,
                ReportVault {
                    blobs: &blobs,
                    keyring: &keyring,
                },
                &new,
                &crate::cli::cli_actor(),
                &RequestMeta::default(),
                now,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e} Nothing was recorded."))?;
            tx.commit().await?;
            println!("{}", engagement.id);
        }
        EngagementCommand::List { json } => {
            let mut conn = db.pool.acquire().await?;
            let rows = store::list(&mut conn).await?;
            if json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                println!(
                    "{:<36} {:<10} {:<10} {:<20} {:<9} {:<12} firm",
                    "id", "from", "to", "next due", "clock", "report"
                );
                for r in rows {
                    let e = &r.engagement;
                    println!(
                        "{:<36} {:<10} {:<10} {:<20} {:<9} {:<12} {}",
                        e.id,
                        e.started_on,
                        e.ended_on,
                        r.next_pentest_due_at.map(format_ms).unwrap_or_default(),
                        r.next_pentest_state.as_deref().unwrap_or("-"),
                        e.report_sha256
                            .as_deref()
                            .map_or("-".to_owned(), |h| format!("{}…", &h[..h.len().min(10)])),
                        e.firm
                    );
                }
            }
        }
    }
    Ok(())
}
