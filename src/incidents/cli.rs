//! `trustplane incidents …`: open, list and show incidents, audited with the operating-system
//! user as actor.

use anyhow::Context;
use clap::Subcommand;

use super::model::{Severity, Source};
use super::store::{self, IncidentFilter};
use crate::audit::RequestMeta;
use crate::clock::{Clock, MINUTE, SystemClock, format_ms};
use crate::config::Config;
use crate::db::Db;

#[derive(Subcommand, Debug)]
pub enum IncidentsCommand {
    /// Open an incident; prints its id.
    Open {
        #[arg(long)]
        title: String,
        /// SEV1, SEV2, SEV3 or SEV4.
        #[arg(long)]
        severity: String,
        #[arg(long, default_value = "")]
        description: String,
        /// When it was detected (RFC 3339); default now.
        #[arg(long)]
        detected_at: Option<String>,
        /// A personal-data breach: starts the 72-hour GDPR clock from --aware-at.
        #[arg(long, requires = "aware_at")]
        personal_data: bool,
        #[arg(long)]
        aware_at: Option<String>,
    },
    /// Every incident by urgency.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One incident (by id or INC-number) with its clocks and timeline.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

async fn resolve(conn: &mut sqlx::AnyConnection, raw: &str) -> anyhow::Result<String> {
    let number = raw
        .trim()
        .strip_prefix("INC-")
        .or_else(|| raw.trim().strip_prefix("inc-"))
        .and_then(|n| n.parse::<i64>().ok());
    let found = match number {
        Some(n) => store::find_by_number(conn, n).await?,
        None => store::find(conn, raw.trim()).await?,
    };
    found
        .map(|i| i.id)
        .with_context(|| format!("no incident {raw}"))
}

pub async fn run(config: &Config, db: &Db, command: IncidentsCommand) -> anyhow::Result<()> {
    let now = SystemClock.now_ms();
    match command {
        IncidentsCommand::Open {
            title,
            severity,
            description,
            detected_at,
            personal_data,
            aware_at,
        } => {
            let calendar = config.sla_calendar()?;
            let settings = super::IncidentSettings {
                calendar: &calendar,
                triage_minutes: config.incident_triage_minutes,
                escalation_interval: config.incident_escalation_minutes * MINUTE,
                controller_notice_hours: config.controller_notice_hours,
            };
            let detected_at = match detected_at {
                Some(raw) => crate::cli::rfc3339_arg(&raw, "detected-at")?,
                None => now,
            };
            let aware = match (personal_data, aware_at) {
                (true, Some(raw)) => Some(crate::cli::rfc3339_arg(&raw, "aware-at")?),
                _ => None,
            };
            let new = super::NewIncident {
                title,
                description,
                severity: Severity::parse(&severity).map_err(anyhow::Error::msg)?,
                source: Source::Api,
                detected_at,
                affected_customers: String::new(),
                affected_systems: String::new(),
                tags: String::new(),
                personal_data_aware_at: aware,
            };
            let mut tx = db.begin().await?;
            let incident = super::open(
                &mut tx,
                &settings,
                &new,
                &crate::cli::cli_actor(),
                &RequestMeta::default(),
                now,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            tx.commit().await?;
            println!("{}", incident.id);
        }
        IncidentsCommand::List { json } => {
            let mut conn = db.pool.acquire().await?;
            let (rows, _) = store::list(
                &mut conn,
                &IncidentFilter {
                    limit: 500,
                    now,
                    ..Default::default()
                },
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                println!(
                    "{:<8} {:<5} {:<10} {:<20} {:<10} title",
                    "number", "sev", "status", "detected", "triage"
                );
                for r in rows {
                    println!(
                        "INC-{:<4} {:<5} {:<10} {:<20} {:<10} {}",
                        r.incident.number,
                        r.incident.severity.as_str(),
                        r.incident.status.as_str(),
                        format_ms(r.incident.detected_at),
                        r.triage_state.as_deref().unwrap_or("-"),
                        r.incident.title
                    );
                }
            }
        }
        IncidentsCommand::Show { id, json } => {
            let mut conn = db.pool.acquire().await?;
            let id = resolve(&mut conn, &id).await?;
            let detail = super::detail(&mut conn, &id, now)
                .await?
                .with_context(|| format!("no incident {id}"))?;
            if json {
                println!("{}", serde_json::to_string(&detail)?);
            } else {
                let i = &detail.incident;
                println!(
                    "INC-{} {} [{}] {}",
                    i.number,
                    i.title,
                    i.severity.as_str(),
                    i.status.as_str()
                );
                println!("detected {}", format_ms(i.detected_at));
                for clock in &detail.clocks {
                    println!(
                        "clock {}: {} (due {})",
                        clock["name"].as_str().unwrap_or("?"),
                        clock["state"].as_str().unwrap_or("?"),
                        clock["due_at"]
                    );
                }
                for entry in &detail.timeline {
                    println!("{}  {}  {}", format_ms(entry.at), entry.kind, entry.body);
                }
            }
        }
    }
    Ok(())
}
