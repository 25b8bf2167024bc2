//! `herd call NAME METHOD 'JSON' [--node ID]`: call a jsonl worker wherever it runs and print
//! its result.

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::client::{print_json, ApiArgs, Client};

/// Options of `herd call`.
#[derive(clap::Args)]
pub struct Args {
    /// The worker's name.
    name: String,
    /// The method to call.
    method: String,
    /// The parameters, as JSON.
    #[arg(default_value = "null")]
    params: String,
    /// The node whose worker to call (default: this agent's, or any node running it).
    #[arg(long)]
    node: Option<String>,
    /// How long the worker may take, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
}

pub fn run(args: Args, api: &ApiArgs) -> anyhow::Result<()> {
    let params: Value = serde_json::from_str(&args.params)
        .with_context(|| format!("the parameters {:?} are not JSON", args.params))?;
    let mut body =
        json!({ "method": args.method, "params": params, "timeout_ms": args.timeout_ms });
    if let Some(node) = &args.node {
        body["node"] = json!(node);
    }
    let answer = Client::new(api)?.post_json(&format!("/v1/workers/{}/call", args.name), &body)?;
    if api.json {
        print_json(&answer);
    } else {
        print_json(answer.get("result").unwrap_or(&Value::Null));
    }
    Ok(())
}
