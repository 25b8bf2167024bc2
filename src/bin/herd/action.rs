//! `herd start|stop|restart|delete NAME`: act on a worker of the agent at `--api`.

use crate::client::{field, print_json, ApiArgs, Client};

/// Options of the worker actions.
#[derive(clap::Args)]
pub struct Args {
    /// The worker's name.
    name: String,
}

pub fn run(action: &str, args: Args, api: &ApiArgs) -> anyhow::Result<()> {
    let client = Client::new(api);
    let answer = match action {
        "delete" => client.delete(&format!("/v1/workers/{}", args.name))?,
        _ => client.post(&format!("/v1/workers/{}/{action}", args.name))?,
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
    let status = answer.get("status").cloned().unwrap_or_default();
    let pid = field(&status, "pid");
    let pid = if pid == "-" {
        String::new()
    } else {
        format!(" (pid {pid})")
    };
    println!("{done} {} on {}{pid}", args.name, field(&answer, "node"));
    Ok(())
}
