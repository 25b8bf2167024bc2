//! The `herd` command line. One file per verb; `main` parses, runs, prints any error once with
//! its causes, and turns it into the exit code.

mod demo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// herd: gossip membership and OTP-style supervision of external workers.
#[derive(Parser)]
#[command(name = "herd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a small cluster inside this process and show members joining, leaving and failing.
    Demo(demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HERD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("herd: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("herd: {err:#}");
            ExitCode::FAILURE
        }
    }
}
