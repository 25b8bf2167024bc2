//! `herd status`: one screen: the agent, the members, the workers, the config version.

use serde_json::{json, Value};

use crate::client::{field, print_json, print_table, ApiArgs, Client};
use crate::members::tags;
use crate::workers::print_workers;

pub fn run(api: &ApiArgs) -> anyhow::Result<()> {
    let client = Client::new(api);
    let health = client.get("/v1/health")?;
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
    println!(
        "node {} | {} members | config version {} | {running}/{} workers running",
        field(&health, "node"),
        list(&members).len(),
        field(&health, "config_version"),
        workers_list.len(),
    );
    println!();
    let rows: Vec<Vec<String>> = list(&members)
        .iter()
        .map(|m| {
            vec![
                field(m, "id"),
                field(m, "addr"),
                field(m, "status"),
                tags(m),
            ]
        })
        .collect();
    print_table(&["MEMBER", "ADDRESS", "STATUS", "TAGS"], &rows);
    println!();
    print_workers(&workers);
    Ok(())
}
