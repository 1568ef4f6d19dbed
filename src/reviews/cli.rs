//! `trustplane reviews …`: open a campaign, list campaigns, show one with its items, export
//! it as CSV. Opening is audited with the operating-system user as actor.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use super::model::Quarter;
use super::{items, store};
use crate::audit::RequestMeta;
use crate::clock::{Clock, SystemClock, format_ms};
use crate::config::Config;
use crate::db::Db;

#[derive(Subcommand, Debug)]
pub enum ReviewsCommand {
    /// Open the campaign of a quarter (default: the current one); prints its id.
    Open {
        /// e.g. 2026Q4.
        #[arg(long)]
        quarter: Option<String>,
    },
    /// Every campaign, newest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One campaign (by id or quarter) with its items, decisions and execution state.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Writes every item of a campaign (by id or quarter) as CSV.
    Export {
        id: String,
        #[arg(long)]
        csv: PathBuf,
    },
}

async fn resolve(conn: &mut sqlx::AnyConnection, raw: &str) -> anyhow::Result<store::Campaign> {
    let raw = raw.trim();
    let found = match Quarter::parse(raw) {
        Ok(quarter) => store::find_campaign_by_quarter(conn, &quarter.to_string()).await?,
        Err(_) => store::find_campaign(conn, raw).await?,
    };
    found.with_context(|| format!("no access review {raw}"))
}

pub async fn run(config: &Config, db: &Db, command: ReviewsCommand) -> anyhow::Result<()> {
    let now = SystemClock.now_ms();
    let settings = super::Settings::from_config(config);
    match command {
        ReviewsCommand::Open { quarter } => {
            let quarter = match quarter {
                Some(raw) => Quarter::parse(&raw).map_err(anyhow::Error::msg)?,
                None => Quarter::containing(now, settings.zone)
                    .context("the system clock is out of range")?,
            };
            let calendar = config.sla_calendar()?;
            let mut tx = db.begin().await?;
            let campaign = super::open(
                &mut tx,
                &settings,
                &calendar,
                quarter,
                &crate::cli::cli_actor(),
                &RequestMeta::default(),
                now,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            tx.commit().await?;
            println!("{}", campaign.id);
        }
        ReviewsCommand::List { json } => {
            let mut conn = db.pool.acquire().await?;
            let (campaigns, _) = store::list_campaigns(&mut conn, 500, 0).await?;
            let mut rows = Vec::new();
            for c in campaigns {
                let summary = store::summary(&mut conn, &c.id).await?;
                rows.push((c, summary));
            }
            if json {
                let value: Vec<_> = rows
                    .iter()
                    .map(|(c, s)| {
                        serde_json::json!({
                            "campaign": c,
                            "summary": s,
                            "completion_percent": s.completion_percent(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string(&value)?);
            } else {
                println!(
                    "{:<8} {:<11} {:>6} {:>9} {:<20} id",
                    "quarter", "state", "items", "complete", "opened"
                );
                for (c, s) in rows {
                    println!(
                        "{:<8} {:<11} {:>6} {:>8}% {:<20} {}",
                        c.quarter,
                        c.state,
                        c.item_count,
                        s.completion_percent(),
                        format_ms(c.opened_at),
                        c.id
                    );
                }
            }
        }
        ReviewsCommand::Show { id, json } => {
            let mut conn = db.pool.acquire().await?;
            let campaign = resolve(&mut conn, &id).await?;
            let summary = store::summary(&mut conn, &campaign.id).await?;
            let items = items::all_items(&mut conn, &campaign.id).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&serde_json::json!({
                        "campaign": campaign,
                        "summary": summary,
                        "items": items,
                    }))?
                );
            } else {
                println!(
                    "{} {} · {} items · {}% complete · keep {} revoke {} modify {} · verified {} failed {}",
                    campaign.quarter,
                    campaign.state,
                    summary.items,
                    summary.completion_percent(),
                    summary.keep,
                    summary.revoke,
                    summary.modify,
                    summary.verified,
                    summary.failed
                );
                for i in items {
                    println!(
                        "{:>5} {:<10} {:<32} {:<24} {:<8} {:<9} {}",
                        i.number,
                        i.kind,
                        i.subject_label,
                        i.role.clone().or(i.scopes.clone()).unwrap_or_default(),
                        i.decision.clone().unwrap_or_else(|| "-".into()),
                        i.execution,
                        i.reviewer_email
                            .clone()
                            .unwrap_or_else(|| "unassigned".into())
                    );
                }
            }
        }
        ReviewsCommand::Export { id, csv } => {
            let mut conn = db.pool.acquire().await?;
            let campaign = resolve(&mut conn, &id).await?;
            let items = items::all_items(&mut conn, &campaign.id).await?;
            std::fs::write(&csv, super::csv(&items))
                .with_context(|| format!("could not write {}", csv.display()))?;
            println!("{} items written to {}", items.len(), csv.display());
        }
    }
    Ok(())
}
