//! `GET /v1/keys` and `POST /v1/keys/{install|use|remove}`: the cluster's keys, changed on
//! every live member through this agent. Answers name keys by id only, never the key itself.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ApiError;
use crate::agent::keys::{key_id, KeyOp};
use crate::agent::{Agent, AgentError};

/// The body of `POST /v1/keys/{op}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    key: String,
}

fn keyring_here(agent: &Agent) -> Result<(), ApiError> {
    if agent.has_keyring() {
        return Ok(());
    }
    Err(ApiError::with_status(
        409,
        AgentError::NoKeyring.to_string(),
    ))
}

/// Every live node's keys, and per key how many nodes hold it and on how many it is primary.
pub(super) async fn list(State(agent): State<Agent>) -> Result<Json<Value>, ApiError> {
    keyring_here(&agent)?;
    let answers = agent.keys_everywhere(&KeyOp::List).await;
    let total = answers.len();
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut nodes = Vec::new();
    for (node, answer) in answers {
        match answer {
            Ok(state) => {
                for id in &state.keys {
                    let count = counts.entry(id.clone()).or_default();
                    count.0 += 1;
                    if *id == state.primary {
                        count.1 += 1;
                    }
                }
                nodes.push(json!({ "node": node, "primary": state.primary, "keys": state.keys }));
            }
            Err((_, message)) => nodes.push(json!({ "node": node, "error": message })),
        }
    }
    let keys: Vec<Value> = counts
        .into_iter()
        .map(|(id, (held, primary))| json!({ "id": id, "nodes": held, "primary": primary }))
        .collect();
    let answered = nodes.iter().filter(|n| n.get("error").is_none()).count();
    Ok(Json(
        json!({ "keys": keys, "nodes": nodes, "answered": answered, "total": total }),
    ))
}

/// Installs, uses or removes a key on every live node; a remove of a key that is some live
/// node's primary is refused (409) before anything changes.
pub(super) async fn change(
    State(agent): State<Agent>,
    Path(op): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: KeyBody = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("invalid request body: {err}")))?;
    let op = KeyOp::parse(&op, body.key).ok_or_else(|| {
        ApiError::not_found(format!(
            "no key operation {op:?}; expected install, use or remove"
        ))
    })?;
    keyring_here(&agent)?;
    let id = key_id(&op).map_err(|err| ApiError::bad_request(err.to_string()))?;
    if let KeyOp::Remove(_) = op {
        let primary_on: Vec<String> = agent
            .keys_everywhere(&KeyOp::List)
            .await
            .into_iter()
            .filter(|(_, answer)| {
                answer
                    .as_ref()
                    .is_ok_and(|state| state.primary == id.to_string())
            })
            .map(|(node, _)| node)
            .collect();
        if !primary_on.is_empty() {
            return Err(ApiError::with_status(
                409,
                format!(
                    "key {id} is still the primary key of {}: use another key there first; nothing changed",
                    primary_on.join(", ")
                ),
            ));
        }
    }
    let answers = agent.keys_everywhere(&op).await;
    let total = answers.len();
    let results: Vec<Value> = answers
        .into_iter()
        .map(|(node, answer)| match answer {
            Ok(state) => json!({ "node": node, "primary": state.primary, "keys": state.keys }),
            Err((_, message)) => json!({ "node": node, "error": message }),
        })
        .collect();
    let done = results.iter().filter(|r| r.get("error").is_none()).count();
    let name = match op {
        KeyOp::Install(_) => "install",
        KeyOp::Use(_) => "use",
        _ => "remove",
    };
    Ok(Json(json!({
        "op": name,
        "key": id.to_string(),
        "results": results,
        "done": done,
        "total": total,
    })))
}
