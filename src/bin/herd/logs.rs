//! `herd logs NAME [--node ID] [-n N] [-f]`: a worker's output lines, from any node, printed as
//! plain text (`--json`: the API's JSON, one object per line with `-f`). Without `--node` the
//! agent picks the node: its own if it has the worker, else the first that gossip lists running
//! it. A closed stdout ends the command quietly with status 0.

use std::io::Write;

use serde_json::Value;

use crate::client::{ApiArgs, Client};

/// Options of `herd logs`.
#[derive(clap::Args)]
pub struct Args {
    /// The worker.
    name: String,
    /// The node whose worker is read [default: the agent's own, else one that runs it].
    #[arg(long)]
    node: Option<String>,
    /// How many of the last lines to print (at most 10000).
    #[arg(short = 'n', long = "lines", default_value_t = 100)]
    lines: usize,
    /// Keep printing new lines as the worker writes them, until interrupted.
    #[arg(short = 'f', long)]
    follow: bool,
}

pub fn run(args: Args, api: &ApiArgs) -> anyhow::Result<()> {
    let mut path = format!("/v1/workers/{}/logs?tail={}", args.name, args.lines);
    if let Some(node) = &args.node {
        path.push_str(&format!("&node={node}"));
    }
    let client = Client::new(api)?;
    let mut out = std::io::stdout().lock();
    if !args.follow {
        let answer = client.get(&path)?;
        let lines = answer["lines"].as_array().cloned().unwrap_or_default();
        for line in &lines {
            if print(&mut out, line, api.json).is_err() {
                return Ok(());
            }
        }
        return Ok(());
    }
    path.push_str("&follow=1");
    for value in client.follow(&path)? {
        let value = value?;
        if let Some(message) = value.get("error").and_then(Value::as_str) {
            return Err(anyhow::anyhow!("{message}"));
        }
        if let Some(missed) = value.get("missed").and_then(Value::as_u64) {
            if !api.json {
                eprintln!("herd: {missed} lines went by before they could be read");
                continue;
            }
        }
        if print(&mut out, &value, api.json).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Prints one line (its text, or its JSON); an error means stdout is closed.
fn print(out: &mut impl Write, line: &Value, json: bool) -> std::io::Result<()> {
    if json {
        writeln!(out, "{line}")?;
    } else {
        writeln!(out, "{}", line["text"].as_str().unwrap_or_default())?;
    }
    out.flush()
}
