//! `herd config push FILE [--sign KEYFILE] [--wait [--timeout 30s]]`, `herd config show` and
//! `herd config diff FILE`. `--wait` is in `config_wait.rs`, `diff` in `config_diff.rs`.
//!
//! A signed push chooses its version: it reads the version the agent holds (or takes
//! `--base-version`), signs the next one for `--cluster-id`, and pushes with that base version,
//! so the agent accepts it only at exactly the version signed.

use std::path::PathBuf;

use std::io::Read as _;

use anyhow::Context as _;
use herd::config::signature::sign;
use herd::config::{ClusterConfig, SecretKey};
use serde_json::json;

use crate::client::{field, print_json, ApiArgs, Client};

#[path = "config_wait.rs"]
mod config_wait;

#[path = "config_diff.rs"]
mod config_diff;

/// `herd config` verbs.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate a cluster config file and push it to the cluster through the agent.
    Push {
        /// The cluster config (TOML).
        file: PathBuf,
        /// Refuse unless the cluster is still at this version (optimistic locking).
        #[arg(long)]
        base_version: Option<u64>,
        /// Sign the push with this secret key file (from `herd keygen --signing --out`).
        #[arg(long, value_name = "KEYFILE")]
        sign: Option<PathBuf>,
        /// The cluster id the signature is for (the agents' --cluster-id).
        #[arg(long, default_value = herd::node::DEFAULT_CLUSTER_ID, env = "HERD_CLUSTER_ID", requires = "sign")]
        cluster_id: String,
        /// After the push is accepted, wait until every live node holds this one; fail naming the winner if a concurrent push superseded it, or naming the
        /// nodes still behind when --timeout passes.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits (e.g. 30s, 2m).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, requires = "wait")]
        timeout: std::time::Duration,
    },
    /// Print the cluster config the agent holds.
    Show,
    /// Show what pushing FILE would start (+), replace (~) or stop (-) on which nodes, without
    /// pushing it.
    Diff {
        /// The cluster config (TOML).
        file: PathBuf,
    },
}

/// Reads a secret key file (at most 4 KB); errors name the file.
fn read_key(path: &std::path::Path) -> anyhow::Result<SecretKey> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(4096).read_to_string(&mut text))
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    SecretKey::from_file_text(&text).with_context(|| format!("key file {}", path.display()))
}

pub fn run(command: Command, api: &ApiArgs) -> anyhow::Result<()> {
    let client = Client::new(api)?;
    match command {
        Command::Push {
            file,
            base_version,
            sign: key_file,
            cluster_id,
            wait,
            timeout,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            // Check here first, so errors name the file; the agent checks again.
            let config = ClusterConfig::parse(&text, &file.display().to_string())?;
            let mut body = json!({ "toml": text });
            if let Some(base) = base_version {
                body["base_version"] = json!(base);
            }
            if let Some(key_file) = key_file {
                let key = read_key(&key_file)?;
                let base = match base_version {
                    Some(base) => base,
                    None => client.get("/v1/config")?["version"]
                        .as_u64()
                        .context("GET /v1/config answered without a version")?,
                };
                let version = base + 1;
                body["base_version"] = json!(base);
                body["version"] = json!(version);
                body["signature"] = json!(sign(&key, &cluster_id, version, &text));
            }
            let mut answer = client.put("/v1/config", &body)?;
            if !api.json {
                let signed = match body.get("signature") {
                    Some(signature) => format!(", signed by {}", field(signature, "key")),
                    None => String::new(),
                };
                outln!(
                    "pushed {} ({} workers) as version {} through {}{signed}",
                    file.display(),
                    config.workers.len(),
                    field(&answer, "version"),
                    field(&answer, "pushed_by"),
                );
            }
            if wait {
                let pushed = herd::config::ConfigId {
                    version: answer["version"]
                        .as_u64()
                        .context("the push was answered without a version")?,
                    checksum: answer["checksum"]
                        .as_u64()
                        .and_then(|c| u32::try_from(c).ok())
                        .context(
                            "the push was answered without a checksum (an agent older than --wait)",
                        )?,
                };
                let done = config_wait::wait(&client, pushed, timeout)?;
                if api.json {
                    answer["wait"] = json!(done);
                } else {
                    outln!("{done}");
                }
            }
            if api.json {
                print_json(&answer);
            }
        }
        Command::Diff { file } => config_diff::run(&client, &file, api)?,
        Command::Show => {
            let config = client.get("/v1/config")?;
            if api.json {
                print_json(&config);
            } else if config.get("version").and_then(|v| v.as_u64()) == Some(0) {
                outln!("# no cluster config yet: push one with `herd config push FILE`");
            } else {
                outln!(
                    "# version {}, pushed through {}",
                    field(&config, "version"),
                    field(&config, "pushed_by")
                );
                out!(
                    "{}",
                    config
                        .get("toml")
                        .and_then(|t| t.as_str())
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
