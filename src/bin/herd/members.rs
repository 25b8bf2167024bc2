//! `herd members [--all]`: the live members, as the agent at `--api` sees them, each with the
//! config version it holds; with `--all`, also the members it saw fail or leave, with when.

use serde_json::Value;

use crate::client::{age, field, print_json, print_table, ApiArgs, Client};

/// Options of `herd members`.
#[derive(clap::Args)]
pub struct Args {
    /// Also list the members that failed or left (forgotten an hour after they went), with
    /// when and why.
    #[arg(long)]
    all: bool,
}

pub fn run(args: Args, api: &ApiArgs) -> anyhow::Result<()> {
    let path = match args.all {
        true => "/v1/members?all=true",
        false => "/v1/members",
    };
    let members = Client::new(api)?.get(path)?;
    if api.json {
        print_json(&members);
        return Ok(());
    }
    print_members(&members, "ID");
    Ok(())
}

/// Prints members as a table whose first column is headed `first`: a live member's config
/// version, marked `(behind)` when another live member holds a newer one, else followed by its
/// workers' state with it (`running`, `starting`, `failed`); a departed member's status says how
/// long ago it went.
pub fn print_members(members: &Value, first: &str) {
    let list = members.as_array().map(Vec::as_slice).unwrap_or_default();
    let newest = list
        .iter()
        .filter_map(|m| m.get("config_version").and_then(Value::as_u64))
        .max();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|m| {
            let status = match m.get("since_ms").and_then(Value::as_u64) {
                Some(since) => format!("{} {} ago", field(m, "status"), age(since)),
                None => field(m, "status"),
            };
            let workers = m.get("config_workers").and_then(Value::as_str);
            let config = match m.get("config_version").and_then(Value::as_u64) {
                Some(v) if Some(v) < newest => format!("{v} (behind)"),
                Some(v) => match workers {
                    Some(workers) => format!("{v} {workers}"),
                    None => v.to_string(),
                },
                None if m.get("since_ms").is_some() => String::new(),
                None => "none".to_string(),
            };
            vec![field(m, "id"), field(m, "addr"), status, config, tags(m)]
        })
        .collect();
    print_table(&[first, "ADDRESS", "STATUS", "CONFIG", "TAGS"], &rows);
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
