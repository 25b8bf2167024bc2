//! `herd workers`: every node's workers (from the agent's gossip state), optionally one node's.

use serde_json::Value;

use crate::client::{age, field, print_json, print_table, ApiArgs, Client};

/// Options of `herd workers`.
#[derive(clap::Args)]
pub struct Args {
    /// Only this node's workers.
    #[arg(long)]
    node: Option<String>,
}

pub fn run(args: Args, api: &ApiArgs) -> anyhow::Result<()> {
    let path = match &args.node {
        Some(node) => format!("/v1/workers?node={node}"),
        None => "/v1/workers".to_string(),
    };
    let workers = Client::new(api)?.get(&path)?;
    if api.json {
        print_json(&workers);
    } else {
        print_workers(&workers);
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            eprintln!(
                "(the agent's own rows are current; other nodes' are as gossip last brought them, about a gossip round old)"
            );
        }
    }
    Ok(())
}

pub fn print_workers(workers: &Value) {
    let rows: Vec<Vec<String>> = workers
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|w| {
            vec![
                field(w, "node"),
                field(w, "name"),
                match w.get("intent").and_then(Value::as_str) {
                    Some("stopped") => format!("{} (by operator)", field(w, "state")),
                    _ => field(w, "state"),
                },
                field(w, "pid"),
                field(w, "restarts"),
                w.get("since_ms")
                    .and_then(Value::as_u64)
                    .map(age)
                    .unwrap_or_default(),
                detail(w),
            ]
        })
        .collect();
    print_table(
        &[
            "NODE", "WORKER", "STATE", "PID", "RESTARTS", "FOR", "DETAIL",
        ],
        &rows,
    );
}

/// The DETAIL column: where placement runs a placed worker and why (`placement one → c`), then
/// the worker's own detail.
fn detail(worker: &Value) -> String {
    let placement = worker
        .get("placement")
        .and_then(Value::as_str)
        .map(|p| format!("placement {p}"));
    let detail = worker
        .get("detail")
        .and_then(Value::as_str)
        .map(str::to_string);
    [placement, detail]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ")
}
