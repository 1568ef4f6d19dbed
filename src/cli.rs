//! The command line: `serve`, `migrate`, `admin create`, `audit verify`.

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

async fn open_db(config: &Config) -> anyhow::Result<Db> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
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
    store::grant_role(&mut tx, &id, role, "cli", now).await?;
    audit::append(
        &mut tx,
        now,
        &RequestMeta::default(),
        AuditEvent::new("cli", "staff.create", format!("staff:{id}"))
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
