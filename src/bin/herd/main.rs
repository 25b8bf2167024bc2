//! The `herd` command line. One file per verb; `main` parses, runs, prints any error once with
//! its causes, and turns it into the exit code ([`EXIT_CODES`]).

/// `println!` that ends the process quietly with status 0 when stdout is closed (a pipe to
/// `head`), and with status 1 naming the error for any other failure to write.
macro_rules! outln {
    () => {
        $crate::output::write_bytes(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}

/// `print!` with the manners of [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_bytes(format!($($arg)*).as_bytes())
    };
}

mod output;

mod action;
mod agent;
mod call;
mod client;
mod config_cmd;
mod demo;
mod events;
mod force_leave;
mod health;
mod keygen;
mod keys;
mod logs;
mod members;
mod names;
mod status;
mod user_event;
mod workers;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What `herd --help` says of exit status.
const EXIT_CODES: &str = "Exit status: 0 all done; 1 an error (the message names it); 2 a usage \
error; 3 partial: some nodes did it and others failed (each named). `herd agent`: 0 after a \
graceful leave, 1 when it cannot start, 75 after its supervisor gave up with on_give_up = \"exit\", \
130 after a second signal.";

/// herd: gossip membership and OTP-style supervision of external workers.
#[derive(Parser)]
#[command(name = "herd", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    api: client::ApiArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: join the cluster and run the workers this node's groups are assigned.
    Agent(Box<agent::Args>),
    /// Start a small cluster inside this process and show members joining, leaving and failing.
    Demo(demo::Args),
    /// List the live members and the config version each holds; --all adds those that failed
    /// or left, with when.
    Members(members::Args),
    /// Send a user event to every live member: its handlers and events = true workers see it
    /// (herd event NAME [PAYLOAD]).
    Event(user_event::Args),
    /// Mark a failed member as left on every node now (no longer gossiped to, listed as left,
    /// reason forced) instead of after the dead-node grace period of 1 h.
    ForceLeave(force_leave::Args),
    /// List the global names and who holds each.
    Names,
    /// List the workers of every node.
    Workers(workers::Args),
    /// Start a worker on the agent's node (--node ID: on that node; --all: on every node).
    Start(action::Args),
    /// Stop a worker on the agent's node, or --node ID, or --all (it stays stopped until started).
    Stop(action::Args),
    /// Restart a worker on the agent's node, or --node ID, or --all, or --rolling: node by node.
    Restart(action::RestartArgs),
    /// Stop and forget a worker on the agent's node (or --node, --all) until the config changes it.
    Delete(action::Args),
    /// Call a jsonl worker wherever it runs: herd call NAME METHOD 'JSON' [--node ID].
    Call(call::Args),
    /// Print a worker's output from any node: herd logs NAME [--node ID] [-n 100] [-f].
    Logs(logs::Args),
    /// Follow the agent's events live: members joining, leaving, failing; workers starting,
    /// exiting, restarting; configs adopted.
    Events(events::Args),
    /// Push or show the cluster config.
    #[command(subcommand)]
    Config(config_cmd::Command),
    /// One screen: members, workers, config version.
    Status,
    /// Whether the agent can do its job (exit 0) or not (exit 1, each reason printed): gossip
    /// down, its supervisor gave up, its config behind a member's. For readiness probes.
    Health,
    /// Print a new gossip encryption key, or make a config signing key pair (--signing).
    Keygen(keygen::Args),
    /// The cluster's gossip keys on every node: list, install, use, remove (rotation).
    #[command(subcommand)]
    Keys(keys::Command),
    /// Print a shell completion script: herd completions bash|zsh|fish > FILE.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Agent(_) => "info",
        _ => "warn",
    };
    // The agent's log never blocks it: a full stderr drops lines (herd_log_dropped_total).
    let log = herd::agent::LogWriter::stderr();
    let set_log_filter = init_logging(&log, default_log);
    let api = cli.api;
    let result = match cli.command {
        Command::Agent(args) => block_on(agent::run(
            *args,
            api.api.clone(),
            api.api_token_file.clone(),
            log.clone(),
            set_log_filter,
        )),
        Command::Demo(args) => block_on(demo::run(args)),
        Command::Members(args) => members::run(args, &api),
        Command::ForceLeave(args) => force_leave::run(args, &api),
        Command::Event(args) => user_event::run(args, &api),
        Command::Names => names::run(&api),
        Command::Workers(args) => workers::run(args, &api),
        Command::Start(args) => action::run("start", args, &api),
        Command::Stop(args) => action::run("stop", args, &api),
        Command::Restart(args) => action::restart(args, &api),
        Command::Delete(args) => action::run("delete", args, &api),
        Command::Call(args) => call::run(args, &api),
        Command::Logs(args) => logs::run(args, &api),
        Command::Events(args) => events::run(args, &api),
        Command::Config(command) => config_cmd::run(command, &api),
        Command::Status => status::run(&api),
        Command::Health => health::run(&api),
        Command::Keygen(args) => keygen::run(args),
        Command::Keys(command) => keys::run(command, &api),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "herd", &mut script);
            output::write_bytes(&script);
            Ok(())
        }
    };
    log.flush(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("herd: {err:#}");
            if err.downcast_ref::<agent::GaveUp>().is_some() {
                ExitCode::from(herd::config::EXIT_GAVE_UP)
            } else if err.downcast_ref::<output::Partial>().is_some() {
                ExitCode::from(output::EXIT_PARTIAL)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Logs to `log` (never blocking: a full stderr drops lines, `herd_log_dropped_total`), filtered
/// by `HERD_LOG` or `default`; returns what sets another filter (the agent's `log_level`, at
/// start and at SIGHUP).
fn init_logging(log: &herd::agent::LogWriter, default: &str) -> agent::SetLogFilter {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HERD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(log.clone()))
        .init();
    std::sync::Arc::new(move |directives: &str| {
        let filter = EnvFilter::try_new(directives).map_err(|err| err.to_string())?;
        handle.reload(filter).map_err(|err| err.to_string())
    })
}

/// Runs `job` on a single-threaded runtime: the agent's work is small and mostly waiting, and
/// one thread wakes less often than a pool (each supervisor has a thread of its own anyway).
fn block_on(job: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| anyhow::anyhow!("cannot start the async runtime: {err}"))?
        .block_on(job)
}
