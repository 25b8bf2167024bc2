//! `herd config diff FILE`: what pushing FILE would start, stop or replace on which nodes, from
//! the config the agent holds, the live members' tags and where `placement = "one"` workers run
//! now (see [`herd::config::diff`]). Nothing is pushed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use herd::config::{diff, Change, ChangeKind, ClusterConfig};
use serde_json::Value;

use crate::client::{print_json, ApiArgs, Client};

pub fn run(client: &Client, file: &Path, api: &ApiArgs) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let new = ClusterConfig::parse(&text, &file.display().to_string())?;
    let held = client.get("/v1/config")?;
    let old = match held.get("toml").and_then(Value::as_str) {
        Some(toml) if held["version"].as_u64() != Some(0) => {
            ClusterConfig::parse(toml, "the agent's config")?
        }
        _ => ClusterConfig::default(),
    };
    let members = client.get("/v1/members")?;
    let nodes: Vec<(String, BTreeMap<String, String>)> = members
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            let id = m.get("id")?.as_str()?.to_string();
            let tags = serde_json::from_value(m.get("tags")?.clone()).unwrap_or_default();
            Some((id, tags))
        })
        .collect();
    let mut placed_now: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for w in client
        .get("/v1/workers")?
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if let (Some(name), Some(node)) = (w["name"].as_str(), w["node"].as_str()) {
            placed_now.entry(name.into()).or_default().push(node.into());
        }
    }
    let changes = diff(&old, &new, &nodes, &placed_now);
    if api.json {
        print_json(&serde_json::to_value(&changes)?);
        return Ok(());
    }
    if changes.is_empty() {
        outln!(
            "no change: {} workers, the same on all {} live nodes",
            new.workers.len(),
            nodes.len()
        );
        return Ok(());
    }
    // One line per worker and kind of change, naming its nodes.
    let mut lines: BTreeMap<(&str, ChangeKind), Vec<&Change>> = BTreeMap::new();
    for change in &changes {
        lines
            .entry((&change.worker, change.change))
            .or_default()
            .push(change);
    }
    for ((worker, kind), changes) in lines {
        let nodes: Vec<&str> = changes.iter().map(|c| c.node.as_str()).collect();
        let (mark, verb) = match kind {
            ChangeKind::Start => ("+", "start"),
            ChangeKind::Replace => ("~", "replace"),
            ChangeKind::Stop => ("-", "stop"),
        };
        let why = match changes[0].fields.as_slice() {
            [] => String::new(),
            fields => format!(" ({} changed)", fields.join(", ")),
        };
        outln!("{mark} {verb} {worker} on {}{why}", nodes.join(", "));
    }
    Ok(())
}
