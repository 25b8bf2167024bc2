//! `herd health`: the agent's own verdict on whether it can do its job, for a readiness probe
//! (exit 0 healthy, 1 not, each reason printed) or a person.

use serde_json::Value;

use crate::client::{field, print_json, ApiArgs, Client};

pub fn run(api: &ApiArgs) -> anyhow::Result<()> {
    let client = Client::new(api)?;
    let (status, health) = client.get_any("/v1/health")?;
    if api.json {
        print_json(&health);
    } else if status == 200 {
        outln!(
            "ok: node {}, {} members, config version {}",
            field(&health, "node"),
            field(&health, "members"),
            field(&health, "config_version")
        );
    }
    if status == 200 {
        return Ok(());
    }
    let problems = health["problems"].as_array().cloned().unwrap_or_default();
    let lines: Vec<String> = match problems.is_empty() {
        true => vec![format!(
            "{}: {}",
            field(&health, "status"),
            field(&health, "reason")
        )],
        false => problems
            .iter()
            .map(|p: &Value| format!("{}: {}", field(p, "status"), field(p, "reason")))
            .collect(),
    };
    anyhow::bail!(
        "node {} is unhealthy (HTTP {status}):\n  {}",
        field(&health, "node"),
        lines.join("\n  ")
    )
}
