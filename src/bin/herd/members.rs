//! `herd members`: the live members, as the agent at `--api` sees them.

use serde_json::Value;

use crate::client::{field, print_json, print_table, ApiArgs, Client};

pub fn run(api: &ApiArgs) -> anyhow::Result<()> {
    let members = Client::new(api)?.get("/v1/members")?;
    if api.json {
        print_json(&members);
        return Ok(());
    }
    print_members(&members, "ID");
    Ok(())
}

/// Prints members as a table whose first column is headed `first`.
pub fn print_members(members: &Value, first: &str) {
    let rows: Vec<Vec<String>> = members
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
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
    print_table(&[first, "ADDRESS", "STATUS", "TAGS"], &rows);
}

fn tags(member: &Value) -> String {
    member
        .get("tags")
        .and_then(Value::as_object)
        .map(|tags| {
            tags.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}
