//! `herd keys list|install KEY|use KEY|remove KEY`: the cluster's gossip keys, changed on every
//! live node through the agent at `--api`. Rotation: install the new key, use it, remove the
//! old one. Output names keys by id only.

use serde_json::Value;

use crate::client::{field, print_json, print_table, ApiArgs, Client};

/// The key verbs.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Each key id, how many nodes hold it and on how many it is primary.
    List,
    /// Install KEY (base64, from `herd keygen`) on every node: they open what it seals.
    Install {
        /// The key, base64.
        key: String,
    },
    /// Make KEY (the key or its id) the primary on every node: they seal with it.
    Use {
        /// The key, base64, or its 8-hex-digit id.
        key: String,
    },
    /// Remove KEY (the key or its id) from every node; refused while it is some node's primary.
    Remove {
        /// The key, base64, or its 8-hex-digit id.
        key: String,
    },
}

fn items<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub fn run(command: Command, api: &ApiArgs) -> anyhow::Result<()> {
    let client = Client::new(api)?;
    let (op, key) = match command {
        Command::List => return list(&client, api),
        Command::Install { key } => ("install", key),
        Command::Use { key } => ("use", key),
        Command::Remove { key } => ("remove", key),
    };
    let answer = client.post_json(
        &format!("/v1/keys/{op}"),
        &serde_json::json!({ "key": key }),
    )?;
    if api.json {
        print_json(&answer);
    }
    let failed: Vec<String> = items(&answer, "results")
        .iter()
        .filter_map(|r| {
            r.get("error")
                .and_then(Value::as_str)
                .map(|e| format!("{} ({e})", field(r, "node")))
        })
        .collect();
    let done = match op {
        "install" => "installed",
        "use" => "used",
        _ => "removed",
    };
    let line = format!(
        "{done} on {}/{} nodes",
        field(&answer, "done"),
        field(&answer, "total")
    );
    let done = answer.get("done").and_then(Value::as_u64).unwrap_or(0);
    crate::output::fan_out_result(line, &failed, done, api.json)
}

fn list(client: &Client, api: &ApiArgs) -> anyhow::Result<()> {
    let answer = client.get("/v1/keys")?;
    if api.json {
        print_json(&answer);
        return Ok(());
    }
    let total = field(&answer, "total");
    let rows: Vec<Vec<String>> = items(&answer, "keys")
        .iter()
        .map(|k| {
            vec![
                field(k, "id"),
                format!("{}/{total} nodes", field(k, "nodes")),
                format!("{}/{total} nodes", field(k, "primary")),
            ]
        })
        .collect();
    print_table(&["KEY", "INSTALLED", "PRIMARY"], &rows);
    for node in items(&answer, "nodes") {
        if let Some(error) = node.get("error").and_then(Value::as_str) {
            eprintln!("herd: {} did not answer: {error}", field(node, "node"));
        }
    }
    Ok(())
}
