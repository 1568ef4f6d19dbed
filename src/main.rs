//! `trustplane` binary: parse the command line, load config, run.

use std::process::ExitCode;

use clap::Parser;
use trustplane::cli::{Cli, Command, init_tracing, run};
use trustplane::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Worker(args) = &cli.command {
        // An image worker process: no config, logging or runtime (so a single thread when it
        // confines itself); stdout carries the protocol.
        return args.run();
    }
    // Everything this process writes (database, keyring, images, backups, exports) is for
    // this user alone, whatever the shell's umask.
    trustplane::data_dir::restrict_umask();
    serve_command(cli)
}

#[tokio::main]
async fn serve_command(cli: Cli) -> ExitCode {
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
