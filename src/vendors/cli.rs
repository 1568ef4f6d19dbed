//! `trustplane vendors …`: import a register kept in a spreadsheet (all rows or none), list
//! and show vendors, and activate one through the same onboarding gate as the portal,
//! audited with the operating-system user as actor.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::store::{self, VendorFilter};
use super::{Activation, VendorSettings};
use crate::audit::RequestMeta;
use crate::clock::{Clock, SystemClock, format_ms};
use crate::config::Config;
use crate::crypto::Keyring;
use crate::db::Db;

#[derive(Subcommand, Debug)]
pub enum VendorsCommand {
    /// Import vendors from CSV (header name,legal_entity,purpose,data_categories,locations,
    /// transfer_mechanism,risk_tier; optional data_subjects, owner_email, website, access).
    /// Lists inside a cell are separated by `;`. Vendors start as proposed. All rows or none.
    Import {
        #[arg(long)]
        csv: std::path::PathBuf,
        /// Owner of rows without an owner_email column.
        #[arg(long)]
        owner: Option<String>,
    },
    /// The register by number.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One vendor with its assessments, DPAs and what the onboarding gate still needs.
    Show {
        /// The vendor's id or VND-number.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Makes an approved vendor active, through the onboarding gate; exits non-zero and
    /// prints what is missing when the gate refuses.
    Activate {
        /// The vendor's id or VND-number.
        id: String,
    },
}

async fn resolve(conn: &mut sqlx::AnyConnection, raw: &str) -> anyhow::Result<store::Vendor> {
    let raw = raw.trim();
    let number = raw
        .trim_start_matches("VND-")
        .trim_start_matches("vnd-")
        .parse::<i64>()
        .ok();
    if let Some(number) = number
        && let Some(v) = store::find_by_number(conn, number).await?
    {
        return Ok(v);
    }
    store::find(conn, raw)
        .await?
        .with_context(|| format!("there is no vendor {raw}"))
}

pub async fn run(config: &Config, db: &Db, command: VendorsCommand) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now_ms();
    let actor = crate::cli::cli_actor();
    match command {
        VendorsCommand::Import { csv, owner } => {
            let text = std::fs::read_to_string(&csv)
                .with_context(|| format!("cannot read {}", csv.display()))?;
            let calendar = config.sla_calendar()?;
            let keyring = Keyring::load_or_create(&config.effective_keyring_path())?;
            let settings = VendorSettings::new(config, &calendar, &keyring);
            let mut tx = db.begin().await?;
            match super::import::import_csv(
                &mut tx,
                &settings,
                &text,
                owner.as_deref(),
                &actor,
                &RequestMeta::default(),
                now,
            )
            .await
            {
                Ok(saved) => {
                    tx.commit().await?;
                    println!("imported {} vendor(s)", saved.len());
                }
                Err(super::VendorError::Rows(rows)) => {
                    for row in &rows {
                        eprintln!("{row}");
                    }
                    anyhow::bail!("{} row(s) have problems; nothing was imported", rows.len());
                }
                Err(other) => anyhow::bail!("{other}"),
            }
        }
        VendorsCommand::List { json } => {
            let mut conn = db.pool.acquire().await?;
            let (rows, _) = store::list(
                &mut conn,
                &VendorFilter {
                    limit: 5000,
                    ..Default::default()
                },
            )
            .await?;
            if json {
                let out: Vec<serde_json::Value> = rows.iter().map(summary).collect();
                println!("{}", serde_json::to_string(&out)?);
            } else {
                println!(
                    "{:<8} {:<12} {:<7} {:<10} name",
                    "number", "state", "risk", "locations"
                );
                for v in rows {
                    println!(
                        "VND-{:<4} {:<12} {:<7} {:<10} {}",
                        v.number,
                        v.state.as_str(),
                        v.risk_tier().as_str(),
                        v.locations.join(","),
                        v.name
                    );
                }
            }
        }
        VendorsCommand::Show { id, json } => {
            let mut conn = db.pool.acquire().await?;
            let vendor = resolve(&mut conn, &id).await?;
            let assessments = store::assessments(&mut conn, &vendor.id).await?;
            let dpas = store::dpas(&mut conn, &vendor.id).await?;
            let missing = super::gate(&mut conn, &vendor, now).await?;
            let clocks = crate::sla::for_subject(&mut conn, &super::subject(&vendor.id)).await?;
            if json {
                let out = serde_json::json!({
                    "vendor": vendor,
                    "risk_tier": vendor.risk_tier().as_str(),
                    "assessments": assessments,
                    "dpas": dpas,
                    "clocks": clocks,
                    "gate_missing": missing,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "VND-{} {} ({})",
                    vendor.number, vendor.name, vendor.legal_entity
                );
                println!("state:      {}", vendor.state.as_str());
                println!("purpose:    {}", vendor.purpose);
                println!("risk tier:  {}", vendor.risk_tier().as_str());
                println!("locations:  {}", vendor.locations.join(", "));
                println!("transfer:   {}", vendor.transfer.label());
                println!("owner:      {}", vendor.owner_email);
                for a in &assessments {
                    println!(
                        "assessment: {} {} score {:.1} next due {}",
                        format_ms(a.assessed_at),
                        a.result.label(),
                        a.score,
                        a.next_due_at.map(format_ms).unwrap_or_default()
                    );
                }
                for d in &dpas {
                    println!(
                        "DPA:        version {} expires {} sha256 {}",
                        d.version,
                        format_ms(d.expires_at),
                        d.sha256
                    );
                }
                if missing.is_empty() {
                    println!("gate:       open");
                } else {
                    for m in missing {
                        println!("missing:    {m}");
                    }
                }
            }
        }
        VendorsCommand::Activate { id } => {
            let mut tx = db.begin().await?;
            let vendor = resolve(&mut tx, &id).await?;
            let outcome = super::activate(
                &mut tx,
                &vendor.id,
                None,
                &actor,
                &RequestMeta::default(),
                now,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            // A refusal is audited too, so the transaction commits either way.
            tx.commit().await?;
            match outcome {
                Activation::Activated(v) => println!("VND-{} {} is active", v.number, v.name),
                Activation::Refused(missing) => {
                    eprintln!(
                        "VND-{} {} cannot become active; missing:",
                        vendor.number, vendor.name
                    );
                    for m in missing {
                        eprintln!("  - {m}");
                    }
                    return Ok(ExitCode::from(2));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(v: &store::Vendor) -> serde_json::Value {
    serde_json::json!({
        "id": v.id,
        "number": v.number,
        "name": v.name,
        "legal_entity": v.legal_entity,
        "purpose": v.purpose,
        "state": v.state.as_str(),
        "risk_tier": v.risk_tier().as_str(),
        "data_categories": v.data_categories,
        "data_subjects": v.data_subjects,
        "locations": v.locations,
        "transfer": v.transfer.label(),
        "owner_email": v.owner_email,
        "planned_from": v.notice_ends_at.filter(|_| v.state != super::model::State::Active).map(format_ms),
    })
}
