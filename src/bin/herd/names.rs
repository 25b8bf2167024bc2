//! `herd names`: the global names and their owners, as the agent at `--api` sees them.

use crate::client::{field, print_json, print_table, ApiArgs, Client};

pub fn run(api: &ApiArgs) -> anyhow::Result<()> {
    let names = Client::new(api)?.get("/v1/names")?;
    if api.json {
        print_json(&names);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = names
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|n| {
            let owner = match n.get("owner").filter(|o| !o.is_null()) {
                Some(owner) => field(owner, "id"),
                None => format!("none (next: {})", field(n, "waiting")),
            };
            let quorum = if n.get("quorum").and_then(|q| q.as_bool()) == Some(true) {
                "quorum"
            } else {
                "-"
            };
            vec![field(n, "name"), owner, quorum.to_string()]
        })
        .collect();
    print_table(&["NAME", "OWNER", "QUORUM"], &rows);
    Ok(())
}
