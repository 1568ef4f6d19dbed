//! The command line: `serve`, `migrate`, `admin create`, `audit verify`, `evidence …`.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::audit::{self, AuditEvent, RequestMeta};
use crate::authn::password;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, LogFormat};
use crate::crypto::{Keyring, random_token};
use crate::db::{Db, is_unique_violation};
use crate::staff::model::{DisplayName, Email, Role};
use crate::staff::store;

#[derive(Parser, Debug)]
#[command(
    name = "trustplane",
    version,
    about = "Security-operations and compliance control plane"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the portal (creates ./data with a SQLite database and keyring on first run).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Staff account administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Customers of the processing API.
    Customers {
        #[command(subcommand)]
        command: CustomersCommand,
    },
    /// Scheduled jobs.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Findings: import a pentest CSV, list the register.
    Findings {
        #[command(subcommand)]
        command: crate::findings::cli::FindingsCommand,
    },
    /// Disclosures: the vulnerability-report inbox, with its clocks.
    Disclosures {
        #[command(subcommand)]
        command: crate::disclosures::cli::DisclosuresCommand,
    },
    /// Sub-processors: import a register CSV, list, show, activate through the gate.
    Vendors {
        #[command(subcommand)]
        command: crate::vendors::cli::VendorsCommand,
    },
    /// Monitoring alerts raised by the detectors and Alertmanager.
    Alerts {
        #[command(subcommand)]
        command: crate::alerts::cli::AlertsCommand,
    },
    /// Incidents: open, list, show.
    Incidents {
        #[command(subcommand)]
        command: crate::incidents::cli::IncidentsCommand,
    },
    /// The on-call rotation, overrides and who is on call now.
    Oncall {
        #[command(subcommand)]
        command: crate::oncall::cli::OnCallCommand,
    },
    /// Quarterly access reviews: open, list, show, export.
    Reviews {
        #[command(subcommand)]
        command: crate::reviews::cli::ReviewsCommand,
    },
    /// The control catalogue: list with live states, evaluate now.
    Controls {
        #[command(subcommand)]
        command: crate::controls::cli::ControlsCommand,
    },
    /// Retention purge.
    Purge {
        #[command(subcommand)]
        command: PurgeCommand,
    },
    /// Encrypted backups.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Internal: an image worker process (started by `serve`, speaks on stdin/stdout).
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// Customer API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Signed evidence packs for auditors: export, verify (offline), public key, rotation.
    Evidence {
        #[command(subcommand)]
        command: crate::evidence::cli::EvidenceCommand,
    },
    /// SLA clocks of every kind.
    Sla {
        #[command(subcommand)]
        command: SlaCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum SlaCommand {
    /// Every clock, open ones first, with its state as of now.
    List {
        /// Print one JSON array on stdout instead of a table.
        #[arg(long)]
        json: bool,
        /// running, paused, met or breached.
        #[arg(long, value_parser = crate::sla::ClockState::parse)]
        state: Option<crate::sla::ClockState>,
        /// incident, finding, disclosure, access_review, vendor or pentest.
        #[arg(long, value_parser = crate::sla::SubjectKind::parse)]
        kind: Option<crate::sla::SubjectKind>,
    },
}

/// Arguments of the internal `worker` command.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// Confine this process exactly as a worker does, then try to read PATH, open a socket,
    /// start a program and start a thread; print the outcomes as JSON and exit.
    #[arg(long, value_name = "PATH")]
    pub self_test_confinement: Option<std::path::PathBuf>,
}

impl WorkerArgs {
    /// Runs the worker, or its confinement self-test.
    pub fn run(&self) -> ExitCode {
        match &self.self_test_confinement {
            None => crate::biometric::worker_main(),
            Some(path) => crate::biometric::confinement_self_test(path),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum CustomersCommand {
    /// Create a customer.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        /// live or test (decides the key prefix).
        #[arg(long, default_value = "live")]
        env: String,
        /// Days images are kept, 0–30 (0: never stored).
        #[arg(long, default_value_t = 30)]
        retention_days: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Issue a key and print it once.
    Create {
        /// The customer's name.
        #[arg(long)]
        customer: String,
        /// Comma-separated: faces:detect, images:read, images:delete.
        #[arg(long)]
        scopes: String,
        /// Must match the customer's environment (live or test) when given.
        #[arg(long)]
        env: Option<String>,
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List every key (prefix, customer, scopes, state, use).
    List {
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Revoke the key with this display prefix (e.g. tp_live_AbCd1234).
    Revoke { prefix: String },
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create a staff account. The password is read from stdin (one line) with
    /// --password-stdin, otherwise a random one is generated and printed once.
    /// The person must enrol TOTP at first login.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Each job, its schedule, next run and last run.
    List {
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Run a job now (recorded like a scheduled run).
    Run { name: String },
}

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Snapshot the database (SQLite: VACUUM INTO; PostgreSQL: pg_dump) into an encrypted file.
    Create {
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Encrypt standard input into a backup file (e.g. `pg_dump -Fc … | trustplane backup encrypt --out F`).
    Encrypt {
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long, default_value = "postgres")]
        source: String,
    },
    /// Check every byte of a backup without writing anything.
    Verify { file: std::path::PathBuf },
    /// Decrypt a verified backup to a file, or to standard output with `--out -`.
    Decrypt {
        file: std::path::PathBuf,
        #[arg(long)]
        out: String,
    },
    /// Restore a SQLite backup over the configured database (stop the server first).
    Restore { file: std::path::PathBuf },
}

#[derive(Subcommand, Debug)]
pub enum PurgeCommand {
    /// Run the retention purge now.
    Run,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Walk the hash chain; exit 1 naming the first bad event.
    Verify,
}

/// Sets up logging on stderr, as text or JSON.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRUSTPLANE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs a parsed command; the exit code is the process's.
pub async fn run(cli: Cli, config: Config) -> ExitCode {
    match dispatch(cli, config).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli, config: Config) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve => {
            crate::server::serve(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let db = open_db(&config).await?;
            db.migrate().await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin {
            command:
                AdminCommand::Create {
                    email,
                    role,
                    name,
                    password_stdin,
                },
        } => admin_create(&config, &email, &role, name, password_stdin).await,
        Command::Customers {
            command:
                CustomersCommand::Create {
                    name,
                    email,
                    env,
                    retention_days,
                },
        } => customers_create(&config, &name, &email, &env, retention_days).await,
        Command::Keys { command } => keys_command(&config, command).await,
        Command::Sla {
            command: SlaCommand::List { json, state, kind },
        } => sla_list(&config, json, state, kind).await,
        Command::Worker(args) => Ok(args.run()),
        Command::Evidence { command } => crate::evidence::cli::run(&config, command).await,
        Command::Backup { command } => backup_command(config, command).await,
        Command::Jobs { command } => jobs_command(config, command).await,
        Command::Findings { command } => {
            let db = open_db(&config).await?;
            let result = crate::findings::cli::run(&config, &db, command).await;
            db.pool.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Disclosures { command } => {
            let db = open_db(&config).await?;
            let result = crate::disclosures::cli::run(&db, command).await;
            db.pool.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Vendors { command } => {
            let db = open_db(&config).await?;
            let result = crate::vendors::cli::run(&config, &db, command).await;
            db.pool.close().await;
            result
        }
        Command::Alerts { command } => {
            let db = open_db(&config).await?;
            let result = crate::alerts::cli::run(&db, command).await;
            db.pool.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Incidents { command } => {
            let db = open_db(&config).await?;
            let result = crate::incidents::cli::run(&config, &db, command).await;
            db.pool.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Reviews { command } => {
            let db = open_db(&config).await?;
            let result = crate::reviews::cli::run(&config, &db, command).await;
            db.pool.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Oncall { command } => {
            let db = open_db(&config).await?;
            let result = crate::oncall::cli::run(&db, command).await;
            db.pool.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Controls { command } => crate::controls::cli::run(config, command).await,
        Command::Purge {
            command: PurgeCommand::Run,
        } => {
            jobs_command(
                config,
                JobsCommand::Run {
                    name: "retention_purge".into(),
                },
            )
            .await
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let db = open_db(&config).await?;
            let result = audit::verify(&db).await?;
            match result.first_bad {
                None => {
                    println!(
                        "audit chain OK: {} events, head {}",
                        result.checked, result.head_hash
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Some((seq, reason)) => {
                    eprintln!("audit chain BROKEN at event #{seq}: {reason}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

pub(crate) async fn open_db(config: &Config) -> anyhow::Result<Db> {
    crate::data_dir::prepare(
        &config.data_dir,
        &crate::data_dir::sqlite_files(&config.effective_database_url()),
    )
    .with_context(|| format!("cannot prepare data dir {}", config.data_dir.display()))?;
    let db = Db::connect(&config.effective_database_url()).await?;
    db.migrate().await?;
    Ok(db)
}

async fn admin_create(
    config: &Config,
    email: &str,
    role: &str,
    name: Option<String>,
    password_stdin: bool,
) -> anyhow::Result<ExitCode> {
    let email = Email::parse(email).map_err(anyhow::Error::msg)?;
    let role = Role::parse(role).map_err(anyhow::Error::msg)?;
    let name = DisplayName::parse(&name.unwrap_or_else(|| {
        email
            .as_str()
            .split('@')
            .next()
            .unwrap_or("staff")
            .to_owned()
    }))
    .map_err(anyhow::Error::msg)?;
    let (password, generated) = if password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        (line.trim_end_matches(['\r', '\n']).to_owned(), false)
    } else {
        (random_token(18), true)
    };
    password::check_new(&password, &password, email.as_str()).map_err(anyhow::Error::msg)?;
    // The keyring must exist before accounts do, so later MFA secrets can be sealed.
    Keyring::load_or_create(&config.effective_keyring_path())?;
    let db = open_db(config).await?;
    let hash = {
        let password = password.clone();
        tokio::task::spawn_blocking(move || password::hash(&password)).await??
    };
    let now = SystemClock.now_ms();
    let mut tx = db.begin().await?;
    let id = match store::insert(&mut tx, &email, &name, Some(&hash), now).await {
        Ok(id) => id,
        Err(err) if is_unique_violation(&err) => {
            anyhow::bail!("an account for {email} already exists")
        }
        Err(err) => return Err(err.into()),
    };
    store::grant_role(&mut tx, &id, role, &cli_actor(), now).await?;
    audit::append(
        &mut tx,
        now,
        &RequestMeta::default(),
        AuditEvent::new(cli_actor(), "staff.create", format!("staff:{id}"))
            .detail("email", email.as_str())
            .detail("role", role.as_str()),
    )
    .await?;
    tx.commit().await?;
    db.pool.close().await;
    println!(
        "created {email} with role {role} (id {id}); TOTP enrolment is required at first login"
    );
    if generated {
        println!("password (shown once): {password}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn customers_create(
    config: &Config,
    name: &str,
    email: &str,
    env: &str,
    retention_days: i64,
) -> anyhow::Result<ExitCode> {
    let name = crate::customers::CustomerName::parse(name).map_err(anyhow::Error::msg)?;
    let email = Email::parse(email).map_err(anyhow::Error::msg)?;
    let env = crate::keys::format::KeyEnv::parse(env).map_err(anyhow::Error::msg)?;
    let retention =
        crate::customers::RetentionDays::new(retention_days).map_err(anyhow::Error::msg)?;
    let db = open_db(config).await?;
    let now = SystemClock.now_ms();
    let mut tx = db.begin().await?;
    let id = match crate::customers::store::insert(
        &mut tx,
        &name,
        &email,
        env,
        retention,
        &cli_actor(),
        now,
    )
    .await
    {
        Ok(id) => id,
        Err(err) if is_unique_violation(&err) => {
            anyhow::bail!("a customer named {} already exists", name.as_str())
        }
        Err(err) => return Err(err.into()),
    };
    audit::append(
        &mut tx,
        now,
        &RequestMeta::default(),
        AuditEvent::new(cli_actor(), "customer.create", format!("customer:{id}"))
            .detail("name", name.as_str())
            .detail("environment", env.as_str())
            .detail("retention_days", retention.days()),
    )
    .await?;
    tx.commit().await?;
    println!("created customer {} (id {id})", name.as_str());
    Ok(ExitCode::SUCCESS)
}

async fn keys_command(config: &Config, command: KeysCommand) -> anyhow::Result<ExitCode> {
    use crate::keys::model::{KeyState, Scope};
    let keyring = Keyring::load_or_create(&config.effective_keyring_path())?;
    let db = open_db(config).await?;
    let now = SystemClock.now_ms();
    match command {
        KeysCommand::Create {
            customer,
            scopes,
            env,
            name,
        } => {
            let scopes = Scope::parse_list(&scopes).map_err(anyhow::Error::msg)?;
            let customer = crate::customers::store::find_by_name(&db.pool, &customer)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no customer named {customer:?}; create it with `trustplane customers create`"))?;
            if let Some(env) = env {
                let env = crate::keys::format::KeyEnv::parse(&env).map_err(anyhow::Error::msg)?;
                if env != customer.env() {
                    anyhow::bail!(
                        "customer {} is a {} customer; its keys are {} keys",
                        customer.name,
                        customer.environment,
                        customer.environment
                    );
                }
            }
            if !customer.is_active() {
                anyhow::bail!("customer {} is suspended", customer.name);
            }
            let mut tx = db.begin().await?;
            let issued = crate::keys::issue(
                &mut tx,
                &keyring,
                &customer,
                &name,
                &scopes,
                None,
                &cli_actor(),
                &RequestMeta::default(),
                now,
            )
            .await?;
            tx.commit().await?;
            eprintln!(
                "key {} for {} (shown once; only its HMAC is stored):",
                issued.prefix, customer.name
            );
            println!("{}", issued.secret);
        }
        KeysCommand::List { json } => {
            let (keys, _) = crate::keys::store::list(
                &db,
                &crate::keys::store::KeyFilter {
                    limit: i64::MAX,
                    ..Default::default()
                },
                now,
            )
            .await?;
            if json {
                let rows: Vec<serde_json::Value> = keys
                    .iter()
                    .map(|key| {
                        serde_json::json!({
                            "prefix": key.prefix,
                            "state": KeyState::of(key.revoked_at, key.expires_at, now).as_str(),
                            "customer": key.customer_name,
                            "name": key.name,
                            "scopes": key.scopes,
                            "requests": key.request_count,
                            "created_at": key.created_at,
                            "expires_at": key.expires_at,
                            "last_used_at": key.last_used_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
                db.pool.close().await;
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<17} {:<8} {:<24} {:<40} {:>9}  last used",
                "prefix", "state", "customer", "scopes", "requests"
            );
            for key in keys {
                println!(
                    "{:<17} {:<8} {:<24} {:<40} {:>9}  {}",
                    key.prefix,
                    KeyState::of(key.revoked_at, key.expires_at, now).as_str(),
                    key.customer_name,
                    key.scopes,
                    key.request_count,
                    key.last_used_at
                        .map(crate::clock::format_ms)
                        .unwrap_or_else(|| "never".into())
                );
            }
        }
        KeysCommand::Revoke { prefix } => {
            let matches = crate::keys::store::find_by_prefix(&db, prefix.trim()).await?;
            let key = match matches.as_slice() {
                [] => anyhow::bail!("no key with prefix {prefix}"),
                [one] => one.clone(),
                _ => anyhow::bail!(
                    "{} keys share prefix {prefix}; revoke in the portal",
                    matches.len()
                ),
            };
            let mut tx = db.begin().await?;
            if !crate::keys::revoke(&mut tx, &key, &cli_actor(), &RequestMeta::default(), now)
                .await?
            {
                anyhow::bail!("key {} is already revoked", key.prefix);
            }
            tx.commit().await?;
            println!("revoked {} ({})", key.prefix, key.customer_name);
        }
    }
    db.pool.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn sla_list(
    config: &Config,
    json: bool,
    state: Option<crate::sla::ClockState>,
    kind: Option<crate::sla::SubjectKind>,
) -> anyhow::Result<ExitCode> {
    let db = open_db(config).await?;
    let now = SystemClock.now_ms();
    let filter = crate::sla::ClockFilter { state, kind };
    let (clocks, _) = crate::sla::list(
        &mut *db.pool.acquire().await?,
        now,
        &filter,
        crate::sla::Page::all(),
    )
    .await?;
    db.pool.close().await;
    if json {
        let all: Vec<serde_json::Value> = clocks.iter().map(|c| c.summary(now)).collect();
        println!("{}", serde_json::Value::Array(all));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<9} {:<22} {:<48} {:<18} target",
        "state", "due", "subject", "clock"
    );
    for clock in clocks {
        println!(
            "{:<9} {:<22} {:<48} {:<18} {}",
            clock.state_at(now).as_str(),
            crate::clock::format_ms(clock.due_at),
            clock.subject.label(),
            clock.name,
            clock.target
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A full app state for commands that run jobs (image analysis in-process: no requests).
async fn job_state(mut config: Config) -> anyhow::Result<crate::app::AppState> {
    config.detect_isolation = "thread".into();
    crate::data_dir::prepare(
        &config.data_dir,
        &crate::data_dir::sqlite_files(&config.effective_database_url()),
    )?;
    let keyring = Keyring::load_or_create(&config.effective_keyring_path())?;
    crate::server::build_state(config, std::sync::Arc::new(SystemClock), keyring).await
}

async fn jobs_command(config: Config, command: JobsCommand) -> anyhow::Result<ExitCode> {
    let state = job_state(config).await?;
    let scheduler = crate::jobs::Scheduler::new(state.clone())?;
    let code = match command {
        JobsCommand::List { json } => {
            let now = state.now();
            if json {
                let mut rows = Vec::new();
                for (spec, schedule) in scheduler.schedules() {
                    let last = crate::jobs::store::recent_runs(&state.db, spec.name, 1).await?;
                    rows.push(serde_json::json!({
                        "job": spec.name,
                        "schedule": state
                            .config
                            .job_schedules
                            .get(spec.name)
                            .map_or(spec.schedule, String::as_str),
                        "next_run_at": crate::jobs::next_after(schedule, now),
                        "last_run_at": last.first().map(|r| r.started_at),
                        "last_outcome": last.first().map(|r| r.outcome.clone()),
                    }));
                }
                println!("{}", serde_json::Value::Array(rows));
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<18} {:<18} {:<22} last run",
                "job", "schedule", "next run"
            );
            for (spec, schedule) in scheduler.schedules() {
                let last = crate::jobs::store::recent_runs(&state.db, spec.name, 1).await?;
                let last = last.first().map_or_else(
                    || "never".to_owned(),
                    |r| format!("{} {}", crate::clock::format_ms(r.started_at), r.outcome),
                );
                println!(
                    "{:<18} {:<18} {:<22} {last}",
                    spec.name,
                    state
                        .config
                        .job_schedules
                        .get(spec.name)
                        .map_or(spec.schedule, String::as_str),
                    crate::jobs::next_after(schedule, now)
                        .map(crate::clock::format_ms)
                        .unwrap_or_default(),
                );
            }
            ExitCode::SUCCESS
        }
        JobsCommand::Run { name } => {
            let summary = scheduler.run_now(&name).await?;
            audit::append_alone(
                &state.db,
                state.now(),
                &RequestMeta::default(),
                AuditEvent::new(cli_actor(), "job.run_now", format!("job:{name}"))
                    .outcome(if summary.ok {
                        audit::Outcome::Success
                    } else {
                        audit::Outcome::Failure
                    })
                    .detail("counts", summary.counts.clone()),
            )
            .await?;
            if summary.ok {
                println!("{name}: ok {}", summary.counts);
                ExitCode::SUCCESS
            } else {
                eprintln!("{name}: failed: {}", summary.error.unwrap_or_default());
                ExitCode::FAILURE
            }
        }
    };
    state.db.pool.close().await;
    Ok(code)
}

async fn backup_command(config: Config, command: BackupCommand) -> anyhow::Result<ExitCode> {
    let keyring = Keyring::load_or_create(&config.effective_keyring_path())?;
    let now = SystemClock.now_ms();
    match command {
        BackupCommand::Create { out } => {
            let state = job_state(config).await?;
            let record = crate::backup::create(&state, &out, "manual").await?;
            state.db.pool.close().await;
            println!(
                "backup written: {} ({} bytes, sha256 {}, key {})",
                record.file, record.byte_size, record.sha256, record.key_id
            );
        }
        BackupCommand::Encrypt { out, source } => {
            let stdin = std::io::stdin();
            let info = crate::backup::encrypt_to_file(stdin.lock(), &out, &keyring, &source, now)?;
            println!(
                "backup written: {} ({} bytes, sha256 {})",
                out.display(),
                info.ciphertext_size,
                info.sha256_hex
            );
        }
        BackupCommand::Verify { file } => {
            let info = crate::backup::verify_file(&file, &keyring)?;
            println!(
                "backup OK: {} source, made {}, key {}, {} bytes of data, sha256 {}",
                info.header.source,
                crate::clock::format_ms(info.header.created_at_ms),
                info.header.key_id,
                info.plaintext_size,
                info.sha256_hex
            );
        }
        BackupCommand::Decrypt { file, out } => {
            // Verify first so nothing partial is ever written.
            crate::backup::verify_file(&file, &keyring)?;
            if out == "-" {
                let stdout = std::io::stdout();
                crate::backup::decrypt_file(&file, &mut stdout.lock(), &keyring)?;
            } else {
                let mut target = std::io::BufWriter::new(crate::crypto::create_private_file(
                    std::path::Path::new(&out),
                )?);
                crate::backup::decrypt_file(&file, &mut target, &keyring)?;
            }
        }
        BackupCommand::Restore { file } => {
            let url = config.effective_database_url();
            let Some(path) = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .and_then(|rest| rest.split('?').next())
                .filter(|p| !p.is_empty())
            else {
                anyhow::bail!(
                    "restore writes a SQLite database; for PostgreSQL use \
                     `trustplane backup decrypt FILE --out - | pg_restore --clean -d URL`"
                );
            };
            let info = crate::backup::restore_sqlite(&file, std::path::Path::new(path), &keyring)?;
            println!(
                "restored {} ({} bytes) from the backup made {}",
                path,
                info.plaintext_size,
                crate::clock::format_ms(info.header.created_at_ms)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The audit actor of a command-line action: the operating-system user and host, e.g.
/// `cli:alice@host`, so a change made on a server's shell is traceable to a person.
pub fn cli_actor() -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.trim().is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|status| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|v| v.split_whitespace().next().map(|uid| format!("uid{uid}")))
                })
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let clean = |raw: &str| -> String {
        raw.chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(64)
            .collect()
    };
    format!("cli:{}@{}", clean(&user), clean(&host))
}

/// A command-line time in RFC 3339 (`2027-01-15T09:30:00+01:00`), naming the flag on error.
pub fn rfc3339_arg(raw: &str, flag: &str) -> anyhow::Result<crate::clock::Millis> {
    chrono::DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.timestamp_millis())
        .with_context(|| format!("--{flag}: `{raw}` is not an RFC 3339 time"))
}
