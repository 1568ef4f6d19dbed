//! `trustplane controls …`: the catalogue with each control's latest state, and an
//! evaluation of every control now (audited with the operating-system user as actor).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;

use super::catalogue::CATALOGUE;
use super::model::ControlState;
use super::store;
use crate::audit::{AuditEvent, RequestMeta};
use crate::clock::{Clock, SECOND, SystemClock, format_ms};
use crate::config::Config;
use crate::crypto::Keyring;

#[derive(Subcommand, Debug)]
pub enum ControlsCommand {
    /// Every control with its latest state, mappings and owner.
    List {
        /// Print one JSON array on stdout instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Evaluates every control now and records the results; exits non-zero when any fails.
    Evaluate,
}

pub async fn run(config: Config, command: ControlsCommand) -> anyhow::Result<ExitCode> {
    crate::data_dir::prepare(
        &config.data_dir,
        &crate::data_dir::sqlite_files(&config.effective_database_url()),
    )?;
    let keyring = Keyring::load_or_create(&config.effective_keyring_path())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = crate::server::build_state(config, clock, keyring).await?;
    let code = match command {
        ControlsCommand::List { json } => list(&state, json).await?,
        ControlsCommand::Evaluate => {
            // Image workers report their confinement once started; give them a moment so
            // ISO-1 judges what this machine really enforces.
            let deadline = state.now() + 5 * SECOND;
            while state.analyzer.isolation_report() == crate::biometric::IsolationReport::Pending
                && state.now() < deadline
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let actor = crate::cli::cli_actor();
            let report = super::evaluate_all(&state, &actor, &RequestMeta::default()).await?;
            crate::audit::append_alone(
                &state.db,
                state.now(),
                &RequestMeta::default(),
                AuditEvent::new(&actor, "controls.evaluate", "controls")
                    .detail("failing", report.failing),
            )
            .await?;
            list(&state, false).await?;
            println!(
                "evaluated {}: {} passing, {} failing, {} not applicable, {} no data; {} changed",
                report.evaluated,
                report.passing,
                report.failing,
                report.not_applicable,
                report.no_data,
                report.changed
            );
            if report.failing > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    };
    state.db.pool.close().await;
    Ok(code)
}

async fn list(state: &crate::app::AppState, json: bool) -> anyhow::Result<ExitCode> {
    let latest = store::latest_all(&state.db).await?;
    let find = |id: &str| latest.iter().find(|e| e.control_id == id);
    if json {
        let rows: Vec<serde_json::Value> = CATALOGUE
            .iter()
            .map(|c| {
                let e = find(c.id);
                serde_json::json!({
                    "id": c.id,
                    "title": c.title,
                    "claim": c.claim,
                    "state": e.map_or(ControlState::NoData, |e| e.state).as_str(),
                    "state_since": e.map(|e| e.state_since),
                    "evaluated_at": e.map(|e| e.evaluated_at),
                    "summary": e.map(|e| e.summary.clone()),
                    "owner": super::owner_label(&state.config, c),
                    "soc2": c.soc2,
                    "iso27001": c.iso27001,
                    "gdpr": c.gdpr,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<7} {:<15} {:<17} summary", "id", "state", "since");
    for c in &CATALOGUE {
        match find(c.id) {
            Some(e) => println!(
                "{:<7} {:<15} {:<17} {}",
                c.id,
                e.state.label(),
                format_ms(e.state_since),
                e.summary
            ),
            None => println!(
                "{:<7} {:<15} {:<17} not evaluated yet",
                c.id, "no data", "-"
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}
