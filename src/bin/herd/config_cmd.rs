//! `herd config push FILE` and `herd config show`.

use std::path::PathBuf;

use anyhow::Context as _;
use herd::config::ClusterConfig;
use serde_json::json;

use crate::client::{field, print_json, ApiArgs, Client};

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
    },
    /// Print the cluster config the agent holds.
    Show,
}

pub fn run(command: Command, api: &ApiArgs) -> anyhow::Result<()> {
    let client = Client::new(api)?;
    match command {
        Command::Push { file, base_version } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            // Check here first, so errors name the file; the agent checks again.
            let config = ClusterConfig::parse(&text, &file.display().to_string())?;
            let mut body = json!({ "toml": text });
            if let Some(base) = base_version {
                body["base_version"] = json!(base);
            }
            let answer = client.put("/v1/config", &body)?;
            if api.json {
                print_json(&answer);
            } else {
                println!(
                    "pushed {} ({} workers) as version {} through {}",
                    file.display(),
                    config.workers.len(),
                    field(&answer, "version"),
                    field(&answer, "pushed_by"),
                );
            }
        }
        Command::Show => {
            let config = client.get("/v1/config")?;
            if api.json {
                print_json(&config);
            } else if config.get("version").and_then(|v| v.as_u64()) == Some(0) {
                println!("# no cluster config yet: push one with `herd config push FILE`");
            } else {
                println!(
                    "# version {}, pushed through {}",
                    field(&config, "version"),
                    field(&config, "pushed_by")
                );
                print!(
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
