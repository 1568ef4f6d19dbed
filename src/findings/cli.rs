//! `trustplane findings …`: import a pentest report's CSV, list the register, and record
//! pentest engagements, audited with the operating-system user as actor.

use anyhow::Context;
use clap::Subcommand;

use super::store::{self, FindingFilter};
use crate::audit::RequestMeta;
use crate::clock::{Clock, MINUTE, SystemClock, format_ms};
use crate::config::Config;
use crate::db::Db;

#[derive(Subcommand, Debug)]
pub enum FindingsCommand {
    /// Import findings from CSV (header title,severity,asset,confirmed_at and optional
    /// description,cvss_vector,source; times RFC 3339). All rows or none.
    Import {
        #[arg(long)]
        csv: std::path::PathBuf,
        /// The pentest engagement the findings came from (its id).
        #[arg(long)]
        engagement: Option<String>,
    },
    /// The register by urgency.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Pentest engagements: `add`, `list`.
    Engagement {
        #[command(subcommand)]
        command: super::engagements::cli::EngagementCommand,
    },
}

pub async fn run(config: &Config, db: &Db, command: FindingsCommand) -> anyhow::Result<()> {
    let now = SystemClock.now_ms();
    match command {
        FindingsCommand::Import { csv, engagement } => {
            let text = std::fs::read_to_string(&csv)
                .with_context(|| format!("cannot read {}", csv.display()))?;
            let calendar = config.sla_calendar()?;
            let settings = super::FindingSettings {
                calendar: &calendar,
                remediation_hours: config.finding_remediation_hours,
                escalation_interval: config.incident_escalation_minutes * MINUTE,
            };
            let mut tx = db.begin().await?;
            match super::import_csv(
                &mut tx,
                &settings,
                &text,
                engagement.as_deref(),
                &crate::cli::cli_actor(),
                &RequestMeta::default(),
                now,
            )
            .await
            {
                Ok(saved) => {
                    tx.commit().await?;
                    println!("imported {} finding(s)", saved.len());
                }
                Err(super::FindingError::Rows(rows)) => {
                    for row in &rows {
                        eprintln!("{row}");
                    }
                    anyhow::bail!("{} row(s) have problems; nothing was imported", rows.len());
                }
                Err(other) => anyhow::bail!("{other}"),
            }
        }
        FindingsCommand::Engagement { command } => {
            super::engagements::cli::run(config, db, command).await?;
        }
        FindingsCommand::List { json } => {
            let mut conn = db.pool.acquire().await?;
            let (rows, _) = store::list(
                &mut conn,
                &FindingFilter {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                println!(
                    "{:<7} {:<8} {:<13} {:<20} {:<9} title",
                    "number", "severity", "status", "due", "clock"
                );
                for r in rows {
                    println!(
                        "F-{:<5} {:<8} {:<13} {:<20} {:<9} {}",
                        r.finding.number,
                        r.finding.severity.as_str(),
                        r.finding.status.as_str(),
                        r.remediation_due_at.map(format_ms).unwrap_or_default(),
                        r.remediation_state.as_deref().unwrap_or("-"),
                        r.finding.title
                    );
                }
            }
        }
    }
    Ok(())
}
