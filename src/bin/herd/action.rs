//! `herd start|stop|restart|delete NAME [--node ID]`: act on a worker on one node, or on every
//! node that has it, through the agent at `--api`.

use serde_json::Value;

use crate::client::{field, print_json, ApiArgs, Client};

/// Options of the worker actions.
#[derive(clap::Args)]
pub struct Args {
    /// The worker's name.
    name: String,
    /// Only on this node (default: every node that has the worker).
    #[arg(long)]
    node: Option<String>,
}

pub fn run(action: &str, args: Args, api: &ApiArgs) -> anyhow::Result<()> {
    let client = Client::new(api)?;
    let query = args
        .node
        .as_ref()
        .map(|n| format!("?node={n}"))
        .unwrap_or_default();
    let answer = match action {
        "delete" => client.delete(&format!("/v1/workers/{}{query}", args.name))?,
        _ => client.post(&format!("/v1/workers/{}/{action}{query}", args.name))?,
    };
    if api.json {
        print_json(&answer);
        return Ok(());
    }
    let done = match action {
        "start" => "started",
        "stop" => "stopped",
        "restart" => "restarted",
        _ => "deleted",
    };
    let mut failed = 0;
    for result in answer
        .get("results")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let node = field(result, "node");
        match result.get("error").and_then(Value::as_str) {
            Some(error) => {
                failed += 1;
                eprintln!("herd: {error}");
            }
            None => {
                let status = result.get("status").cloned().unwrap_or_default();
                let pid = field(&status, "pid");
                let pid = if pid == "-" {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                };
                println!("{done} {} on {node}{pid}", args.name);
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} node(s) failed to {action} {}", args.name);
    }
    Ok(())
}
