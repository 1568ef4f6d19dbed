//! `trustplane alerts list [--state S] [--json]`.

use clap::Subcommand;
use serde_json::json;

use super::model::AlertState;
use super::store::{self, ListFilter};
use crate::clock::format_ms;
use crate::db::Db;

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// List alerts, newest first.
    List {
        /// Only alerts in this state: open, acknowledged, resolved, false_positive.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(db: &Db, command: AlertsCommand) -> anyhow::Result<()> {
    match command {
        AlertsCommand::List { state, limit, json } => list(db, state.as_deref(), limit, json).await,
    }
}

/// Prints alerts newest first (at most `limit`), as a table or as JSON.
pub async fn list(db: &Db, state: Option<&str>, limit: i64, as_json: bool) -> anyhow::Result<()> {
    let state = state
        .map(AlertState::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut conn = db.pool.acquire().await?;
    let (alerts, total) = store::list(
        &mut conn,
        &ListFilter {
            state,
            limit: limit.clamp(1, 10_000),
            ..ListFilter::default()
        },
    )
    .await?;
    if as_json {
        let rows: Vec<_> = alerts
            .iter()
            .map(|a| {
                json!({
                    "id": a.id,
                    "detector": a.detector.as_str(),
                    "subject": a.subject_label,
                    "summary": a.summary,
                    "state": a.state.as_str(),
                    "opened_at": format_ms(a.opened_at),
                    "last_seen_at": format_ms(a.last_seen_at),
                    "occurrences": a.occurrences,
                    "incident_id": a.incident_id,
                    "false_positive_reason": a.false_positive_reason,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "total": total, "alerts": rows }))?
        );
    } else if alerts.is_empty() {
        println!("No alerts.");
    } else {
        for a in &alerts {
            println!(
                "{}  {}  {:<14} {:<18} {}",
                &a.id[..8.min(a.id.len())],
                format_ms(a.opened_at),
                a.state.as_str(),
                a.detector.as_str(),
                a.summary
            );
        }
        println!("{} of {total} alerts", alerts.len());
    }
    Ok(())
}
