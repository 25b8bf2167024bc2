//! `herd agent`: run the daemon. Settings come from the agent file (`--config`), overridden by
//! flags; with neither, a one-node cluster on loopback that works. SIGTERM or SIGINT leaves the
//! cluster gracefully and stops the workers; a second signal stops at once. SIGHUP reads the
//! agent file again and applies its tags, `log_level` and `[[handler]]`s without leaving the
//! cluster (other
//! changed keys are logged as needing a restart; a file that does not parse changes nothing).
//! With `on_give_up = "exit"`, a supervisor that gave up makes the agent leave gracefully and
//! exit with status 75 (`EXIT_GAVE_UP`).

use std::net::SocketAddr;
use std::path::PathBuf;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use herd::agent::{Agent, AgentSettings};
use herd::config::{AgentFile, OnGiveUp, PublicKey, Signers};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

/// Sets the agent's log filter (`EnvFilter` directives, like `HERD_LOG`).
pub type SetLogFilter = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The agent stopped because its supervisor gave up (`on_give_up = "exit"`); `main` exits with
/// [`herd::config::EXIT_GAVE_UP`].
#[derive(Debug)]
pub struct GaveUp(pub String);

impl std::fmt::Display for GaveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the supervisor gave up ({}); left the cluster, exiting with status {}",
            self.0,
            herd::config::EXIT_GAVE_UP
        )
    }
}

impl std::error::Error for GaveUp {}

/// Options of `herd agent`.
#[derive(clap::Args)]
pub struct Args {
    /// Agent file (TOML); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Node id, unique in the cluster (default: the host name).
    #[arg(long)]
    node_id: Option<String>,
    /// Gossip address (UDP) [default: 127.0.0.1:7946].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address peers gossip to, if not the listen address: ip:port, or host:port resolved
    /// once at start (a container's own host name, say).
    #[arg(long)]
    advertise: Option<String>,
    /// A seed (ip:port or host:port); repeat for more.
    #[arg(long)]
    seed: Vec<String>,
    /// Cluster id [default: herd].
    #[arg(long)]
    cluster_id: Option<String>,
    /// A tag KEY=VALUE; `group=NAME[,NAME]` selects workers. Repeat for more.
    #[arg(long, value_parser = parse_tag)]
    tag: Vec<(String, String)>,
    /// Data directory (the persisted cluster config) [default: ./herd-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Public keys (base64, from `herd keygen --signing`) whose signed configs this agent
    /// adopts; comma-separated or repeated. Without it, any config is adopted.
    #[arg(long, value_name = "PUBKEY[,PUBKEY]", value_delimiter = ',')]
    config_signers: Vec<String>,
    /// Another name the API answers to in Host headers (NAME, any port, or NAME:PORT), besides
    /// its own address and localhost; repeat for more.
    #[arg(long = "api-host", value_name = "NAME")]
    api_host: Vec<String>,
    /// A cluster key file (one base64 line, from `herd keygen`): gossip and messages are
    /// encrypted with it. At the first start it becomes the data dir's keyring
    /// (<data-dir>/keyring), which wins after that (it keeps rotations made with `herd keys`).
    #[arg(long, value_name = "PATH")]
    encrypt_key_file: Option<PathBuf>,
    /// Refuse gossip and messages not sealed with a key of the keyring [default: true]; false
    /// while a plain cluster migrates to encryption.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    encrypt_verify_incoming: Option<bool>,
    /// Allow plain gossip on an address other than loopback (otherwise refused without a key).
    #[arg(long)]
    allow_plaintext: bool,
    /// Directory for workers' output: <DIR>/<worker>.log, rotated per the worker's `log`
    /// setting (created if missing) [default: the agent's own log].
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// Restarts of all this node's workers together allowed within --restart-period before the
    /// supervisor gives up on every worker [default: 100].
    #[arg(long, value_name = "N")]
    max_restarts: Option<u32>,
    /// The period --max-restarts counts over [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    restart_period: Option<Duration>,
    /// When the supervisor gives up: stay (workers failed, visible) or exit (leave gracefully,
    /// exit status 75, for systemd Restart=on-failure or Kubernetes) [default: stay].
    #[arg(long, value_name = "stay|exit")]
    on_give_up: Option<OnGiveUp>,
    /// The cluster's expected size: a worker with quorum = true runs only on a node that sees
    /// a majority of it [default: none; such workers do not run].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    expected_nodes: Option<u32>,
    /// How long a live member may hold a newer cluster config than this node's (one this node
    /// refused, or cannot read) before GET /v1/health answers 503 [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    health_config_lag: Option<Duration>,
}

fn parse_tag(tag: &str) -> Result<(String, String), String> {
    match tag.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().into(), value.into())),
        _ => Err(format!("expected KEY=VALUE, got {tag:?}")),
    }
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "herd".to_string())
}

/// Resolves `host:port` (or takes `ip:port`) to one address, preferring IPv4.
fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .with_context(|| {
            format!("--advertise {addr:?} is not an ip:port or a resolvable host:port")
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .with_context(|| format!("--advertise {addr:?} resolves to no address"))
}

/// Merges defaults, the agent file and the flags, in that order.
fn settings(
    args: Args,
    api: Option<&str>,
    api_token_file: Option<PathBuf>,
) -> anyhow::Result<AgentSettings> {
    let file = match &args.config {
        Some(path) => AgentFile::load(path)?,
        None => AgentFile::default(),
    };
    let node_id = args.node_id.or(file.node_id).unwrap_or_else(host_name);
    let mut settings = AgentSettings::new(node_id);
    if let Some(listen) = args.listen.or(file.listen) {
        settings.listen = listen;
    }
    settings.advertise = match args.advertise {
        Some(advertise) => Some(resolve(&advertise)?),
        None => file.advertise,
    };
    settings.seeds = if args.seed.is_empty() {
        file.seeds
    } else {
        args.seed
    };
    if let Some(cluster_id) = args.cluster_id.or(file.cluster_id) {
        settings.cluster_id = cluster_id;
    }
    settings.tags = file.tags;
    settings.tags.extend(args.tag);
    if let Some(data_dir) = args.data_dir.or(file.data_dir) {
        settings.data_dir = data_dir;
    }
    let api = match api {
        Some(api) => Some(
            api.parse::<SocketAddr>()
                .with_context(|| format!("--api {api:?} is not an ip:port address"))?,
        ),
        None => file.api,
    };
    if let Some(api) = api {
        settings.api = api;
    }
    settings.config_signers = if args.config_signers.is_empty() {
        Signers::new(file.config_signers)
    } else {
        let keys = args
            .config_signers
            .iter()
            .map(|key| PublicKey::parse(key).with_context(|| format!("--config-signers {key:?}")));
        Signers::new(keys.collect::<anyhow::Result<Vec<_>>>()?)
    };
    settings.api_token_file = api_token_file.or(file.api_token_file);
    settings.api_hosts = if args.api_host.is_empty() {
        file.api_hosts
    } else {
        args.api_host
    };
    settings.encrypt_key_file = args.encrypt_key_file.or(file.encrypt_key_file);
    settings.encrypt_verify_incoming = args
        .encrypt_verify_incoming
        .or(file.encrypt_verify_incoming)
        .unwrap_or(true);
    settings.allow_plaintext = args.allow_plaintext || file.allow_plaintext.unwrap_or(false);
    settings.log_dir = args.log_dir.or(file.log_dir);
    if let Some(max) = args.max_restarts.or(file.max_restarts) {
        settings.max_restarts = max;
    }
    if let Some(period) = args.restart_period.or(file.period) {
        anyhow::ensure!(
            !period.is_zero(),
            "--restart-period must be longer than zero"
        );
        settings.period = period;
    }
    settings.on_give_up = args.on_give_up.or(file.on_give_up).unwrap_or_default();
    settings.expected_nodes = args
        .expected_nodes
        .or(file.expected_nodes)
        .map(|n| n as usize);
    if let Some(lag) = args.health_config_lag.or(file.health_config_lag) {
        anyhow::ensure!(
            !lag.is_zero(),
            "--health-config-lag must be longer than zero"
        );
        settings.health_config_lag = lag;
    }
    settings.handlers = file.handlers;
    Ok(settings)
}

/// What SIGHUP needs: where the file is and what the flags fixed.
struct Reload {
    path: Option<PathBuf>,
    flag_tags: Vec<(String, String)>,
    /// The file as last applied.
    file: AgentFile,
    set_log_filter: SetLogFilter,
}

impl Reload {
    /// Reads the agent file again; applies its tags and log level; names what needs a restart.
    async fn apply(&mut self, agent: &Agent) {
        let Some(path) = &self.path else {
            info!("SIGHUP: no agent file (--config) to read again");
            return;
        };
        let file = match AgentFile::load(path) {
            Ok(file) => file,
            Err(err) => {
                error!(error = %err, "SIGHUP: the agent file does not load; nothing changed");
                return;
            }
        };
        let mut tags = file.tags.clone();
        tags.extend(self.flag_tags.iter().cloned());
        let mut old = self.file.tags.clone();
        old.extend(self.flag_tags.iter().cloned());
        apply_tags(agent, &old, &tags).await;
        if let Some(level) = &file.log_level {
            if self.file.log_level.as_ref() != Some(level) {
                match (self.set_log_filter)(level) {
                    Ok(()) => info!(log_level = %level, "SIGHUP: log level set"),
                    Err(err) => error!(error = %err, "SIGHUP: cannot set the log level"),
                }
            }
        }
        if agent.set_handlers(file.handlers.clone()) {
            info!(
                handlers = file.handlers.len(),
                "SIGHUP: event handlers replaced; they run for events from now on"
            );
        }
        let restart = keys_needing_restart(&self.file, &file);
        if !restart.is_empty() {
            warn!(keys = ?restart, "SIGHUP: these agent file keys changed and need a restart of the agent to apply");
        }
        self.file = file;
    }
}

/// Sets and removes this node's tags so they go from `old` to `new`.
async fn apply_tags(agent: &Agent, old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) {
    for (key, value) in new {
        if old.get(key) != Some(value) {
            match agent.node().set_tag(key, value).await {
                Ok(()) => info!(%key, %value, "SIGHUP: tag set"),
                Err(err) => error!(%key, error = %err, "SIGHUP: cannot set the tag"),
            }
        }
    }
    for key in old.keys().filter(|k| !new.contains_key(*k)) {
        match agent.node().remove_tag(key).await {
            Ok(()) => info!(%key, "SIGHUP: tag removed"),
            Err(err) => error!(%key, error = %err, "SIGHUP: cannot remove the tag"),
        }
    }
}

/// The keys of the agent file that differ and that SIGHUP does not apply.
fn keys_needing_restart(old: &AgentFile, new: &AgentFile) -> Vec<String> {
    let as_map = |file: &AgentFile| match serde_json::to_value(file) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (old, new) = (as_map(old), as_map(new));
    new.iter()
        .filter(|(key, value)| old.get(*key) != Some(*value))
        .map(|(key, _)| key.clone())
        .filter(|key| !["tags", "log_level", "handlers"].contains(&key.as_str()))
        .collect()
}

pub async fn run(
    args: Args,
    api: Option<String>,
    api_token_file: Option<PathBuf>,
    log: herd::agent::LogWriter,
    set_log_filter: SetLogFilter,
) -> anyhow::Result<()> {
    let path = args.config.clone();
    let flag_tags = args.tag.clone();
    let file = match &path {
        Some(path) => AgentFile::load(path)?,
        None => AgentFile::default(),
    };
    if let (Some(level), Err(_)) = (&file.log_level, std::env::var("HERD_LOG")) {
        set_log_filter(level).map_err(|err| anyhow::anyhow!("log_level {level:?}: {err}"))?;
    }
    let mut reload = Reload {
        path,
        flag_tags,
        file,
        set_log_filter,
    };
    let mut settings = settings(args, api.as_deref(), api_token_file)?;
    settings.log_writer = Some(log.clone());
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let agent = Agent::start(settings.clone()).await?;
    // Through the log's queue: after the start's log lines, and never blocking on stderr.
    log.print(format!(
        "herd agent {} running: gossip {}, messages {}, API http://{}, data {}",
        agent.node().id(),
        agent.node().addr(),
        agent
            .node()
            .members()
            .iter()
            .find(|m| m.id() == agent.node().id())
            .and_then(|m| m.rpc_addr())
            .map_or_else(|| "none".to_string(), |addr| addr.to_string()),
        agent.api_addr(),
        settings.data_dir.display()
    ));
    let exit_on_give_up = settings.on_give_up == OnGiveUp::Exit;
    let gave_up = loop {
        tokio::select! {
            _ = term.recv() => break None,
            _ = int.recv() => break None,
            reason = agent.gave_up(), if exit_on_give_up => break Some(reason),
            _ = hup.recv() => reload.apply(&agent).await,
        }
    };
    log.print(format!(
        "herd agent {}: leaving the cluster (signal again to stop at once)",
        agent.node().id()
    ));
    tokio::select! {
        _ = agent.leave() => match gave_up {
            Some(reason) => Err(GaveUp(reason).into()),
            None => Ok(()),
        },
        _ = term.recv() => std::process::exit(130),
        _ = int.recv() => std::process::exit(130),
    }
}
