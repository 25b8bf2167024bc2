//! `herd force-leave NODE`: every live member marks failed member NODE as left at once (it is no
//! longer gossiped to, and is listed as left with the reason `forced`), instead of after the
//! dead-node grace period. Refused while NODE is a live member.

use serde_json::Value;

use crate::client::{field, print_json, ApiArgs, Client};

/// Options of `herd force-leave`.
#[derive(clap::Args)]
pub struct Args {
    /// The failed member's node id.
    node: String,
}

pub fn run(args: Args, api: &ApiArgs) -> anyhow::Result<()> {
    let client = Client::new(api)?;
    let path = format!("/v1/members/{}/force-leave", args.node);
    let answer = client.post(&path)?;
    report(&answer, &format!("{} left", args.node), api)
}

/// Prints a fan-out's answer (`results`, `done`, `total`): what each node did, then
/// `"{what} on DONE/TOTAL nodes"`; fails naming the nodes that failed (exit 3 when some did it).
pub fn report(answer: &Value, what: &str, api: &ApiArgs) -> anyhow::Result<()> {
    if api.json {
        print_json(answer);
    }
    let results = answer["results"].as_array().cloned().unwrap_or_default();
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.get("error").is_some())
        .map(|r: &Value| format!("{} ({})", field(r, "node"), field(r, "error")))
        .collect();
    if !api.json {
        for r in results.iter().filter(|r| r.get("done").is_some()) {
            outln!("{}", field(r, "done"));
        }
    }
    let line = format!(
        "{what} on {}/{} nodes",
        field(answer, "done"),
        field(answer, "total")
    );
    let done = answer.get("done").and_then(Value::as_u64).unwrap_or(0);
    crate::output::fan_out_result(line, &failed, done, api.json)
}
