//! `trustplane disclosures …`: the inbox and one report with its clocks, for people and (with
//! `--json`) for scripts. Reading only; the reporter's contact address is never printed.

use clap::Subcommand;
use serde::Serialize;

use super::store::{self, InboxFilter};
use crate::clock::{Clock, SystemClock, format_ms};
use crate::db::Db;

#[derive(Subcommand, Debug)]
pub enum DisclosuresCommand {
    /// Every report, newest first, with its next deadline.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One report (`DSC-7`, `7` or its id): state, clocks with due times, thread size.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct ListRow<'a> {
    number: i64,
    id: &'a str,
    title: &'a str,
    state: &'static str,
    severity: &'static str,
    received_at: String,
    next_due_at: Option<String>,
    assignee: Option<&'a str>,
}

#[derive(Serialize)]
struct ClockRow {
    name: String,
    target: String,
    state: &'static str,
    started_at: String,
    due_at: String,
    stopped_at: Option<String>,
}

#[derive(Serialize)]
struct ShowReport<'a> {
    number: i64,
    id: &'a str,
    title: &'a str,
    state: &'static str,
    severity: &'static str,
    asset: &'a str,
    received_at: String,
    confirmed_at: Option<String>,
    duplicate_of: Option<&'a str>,
    finding_id: Option<&'a str>,
    incident_id: Option<&'a str>,
    messages: usize,
    internal_notes: usize,
    attachments: usize,
    clocks: Vec<ClockRow>,
}

pub async fn run(db: &Db, command: DisclosuresCommand) -> anyhow::Result<()> {
    let now = SystemClock.now_ms();
    let mut conn = db.pool.acquire().await?;
    match command {
        DisclosuresCommand::List { json } => {
            let (rows, _) = store::list(
                &mut conn,
                &InboxFilter {
                    limit: 1000,
                    ..Default::default()
                },
                now,
            )
            .await?;
            let out: Vec<ListRow> = rows
                .iter()
                .map(|r| ListRow {
                    number: r.disclosure.number,
                    id: &r.disclosure.id,
                    title: &r.disclosure.title,
                    state: r.disclosure.state.as_str(),
                    severity: r.disclosure.severity_str(),
                    received_at: format_ms(r.disclosure.received_at),
                    next_due_at: r.next_due_at.map(format_ms),
                    assignee: r.assignee_email.as_deref(),
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string(&out)?);
            } else if out.is_empty() {
                println!("no reports");
            } else {
                println!(
                    "{:<8} {:<14} {:<9} {:<20} {:<20} title",
                    "number", "state", "severity", "received", "next due"
                );
                for r in out {
                    println!(
                        "DSC-{:<4} {:<14} {:<9} {:<20} {:<20} {}",
                        r.number,
                        r.state,
                        r.severity,
                        r.received_at,
                        r.next_due_at.unwrap_or_else(|| "-".into()),
                        r.title
                    );
                }
            }
        }
        DisclosuresCommand::Show { id, json } => {
            let found = super::find(&mut conn, &id)
                .await
                .map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
            let detail = super::detail(&mut conn, &found.id, false)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let d = &detail.disclosure;
            let report = ShowReport {
                number: d.number,
                id: &d.id,
                title: &d.title,
                state: d.state.as_str(),
                severity: d.severity_str(),
                asset: &d.asset,
                received_at: format_ms(d.received_at),
                confirmed_at: d.confirmed_at.map(format_ms),
                duplicate_of: detail.duplicate_of.as_ref().map(|o| o.id.as_str()),
                finding_id: d.finding_id.as_deref(),
                incident_id: d.incident_id.as_deref(),
                messages: detail.messages.iter().filter(|m| m.visible).count(),
                internal_notes: detail.messages.iter().filter(|m| !m.visible).count(),
                attachments: detail.attachments.len(),
                clocks: detail
                    .clocks
                    .iter()
                    .map(|c| ClockRow {
                        name: c.name.clone(),
                        target: c.target.clone(),
                        state: c.state_at(now).as_str(),
                        started_at: format_ms(c.started_at),
                        due_at: format_ms(c.due_at),
                        stopped_at: c.stopped_at.map(format_ms),
                    })
                    .collect(),
            };
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("DSC-{}: {}", report.number, report.title);
                println!("state:     {}", report.state);
                println!("severity:  {}", report.severity);
                println!("asset:     {}", report.asset);
                println!("received:  {}", report.received_at);
                if let Some(c) = &report.confirmed_at {
                    println!("confirmed: {c}");
                }
                if let Some(f) = report.finding_id {
                    println!("finding:   {f}");
                }
                if let Some(i) = report.incident_id {
                    println!("incident:  {i}");
                }
                println!(
                    "thread:    {} message(s), {} internal note(s), {} attachment(s)",
                    report.messages, report.internal_notes, report.attachments
                );
                println!("clocks:");
                for c in &report.clocks {
                    println!(
                        "  {:<14} {:<9} due {}  ({})",
                        c.name, c.state, c.due_at, c.target
                    );
                }
            }
        }
    }
    Ok(())
}
