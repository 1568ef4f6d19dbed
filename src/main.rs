//! `trustplane` binary: parse the command line, load config, run.

use std::process::ExitCode;

use clap::Parser;
use trustplane::cli::{Cli, init_tracing, run};
use trustplane::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    run(cli, config).await
}
