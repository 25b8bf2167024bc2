//! `herd status`: one screen: the agent, the members, the workers, the config version.

use serde_json::{json, Value};

use crate::client::{field, print_json, ApiArgs, Client};
use crate::members::print_members;
use crate::workers::print_workers;

pub fn run(api: &ApiArgs) -> anyhow::Result<()> {
    let client = Client::new(api)?;
    let (_, health) = client.get_any("/v1/health")?;
    let members = client.get("/v1/members")?;
    let workers = client.get("/v1/workers")?;
    if api.json {
        print_json(&json!({ "health": health, "members": members, "workers": workers }));
        return Ok(());
    }
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let workers_list = list(&workers);
    let running = workers_list
        .iter()
        .filter(|w| field(w, "state") == "running")
        .count();
    outln!(
        "node {} | {} members | config version {} | {running}/{} workers running",
        field(&health, "node"),
        list(&members).len(),
        field(&health, "config_version"),
        workers_list.len(),
    );
    if let Some(problems) = health["problems"].as_array() {
        for problem in problems {
            outln!(
                "UNHEALTHY {}: {}",
                field(problem, "status"),
                field(problem, "reason")
            );
        }
    }
    outln!();
    print_members(&members, "MEMBER");
    outln!();
    print_workers(&workers);
    Ok(())
}
