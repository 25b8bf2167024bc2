//! The agent's HTTP API (JSON, under `/v1`), served by axum on the agent's API address.
//!
//! | method and path | what it does |
//! |---|---|
//! | `GET /` | the live dashboard page (see `dashboard`) |
//! | `GET /v1/health` | `{"status":"ok", node, members, config_version}` |
//! | `GET /v1/members` | live members: id, addr, generation, tags |
//! | `GET /v1/workers[?node=ID]` | every node's workers, from gossip state |
//! | `POST /v1/workers/{name}/start\|stop\|restart` | acts on this node's worker |
//! | `DELETE /v1/workers/{name}` | stops and forgets this node's worker until the config changes it |
//! | `GET /v1/config` | the cluster config this node holds (version 0: none yet) |
//! | `PUT /v1/config` | `{"toml": "...", "base_version": N?}`: validate, version, spread |
//!
//! Errors are `{"error": "..."}`: 400 for bad input (naming it), 404 for an unknown worker or
//! node, 409 for a stale config version or a worker in the wrong state. [`router`] builds the
//! whole app, so tests can drive it without a socket. The server stops on the agent's API token.

mod dashboard;
mod error;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub use error::ApiError;

use crate::agent::{Agent, WorkerInfo};

/// The API's routes over `agent`.
pub fn router(agent: Agent) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/v1/health", get(health))
        .route("/v1/members", get(members))
        .route("/v1/workers", get(workers))
        .route("/v1/workers/{name}", delete(delete_worker))
        .route("/v1/workers/{name}/{action}", post(worker_action))
        .route("/v1/config", get(get_config).put(put_config))
        .fallback(|| async {
            ApiError::not_found(
                "no such endpoint; see /v1/health, /v1/members, /v1/workers, /v1/config",
            )
        })
        .with_state(agent)
}

async fn health(State(agent): State<Agent>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "node": agent.node().id(),
        "members": agent.node().members().len(),
        "config_version": agent.config().map(|c| c.version).unwrap_or(0),
    }))
}

async fn members(State(agent): State<Agent>) -> Json<Value> {
    let members: Vec<Value> = agent
        .node()
        .members()
        .iter()
        .map(|m| {
            json!({
                "id": m.id(),
                "addr": m.addr().to_string(),
                "generation": m.generation(),
                "tags": m.tags(),
                "status": "alive",
            })
        })
        .collect();
    Json(Value::Array(members))
}

/// Query parameters, checked by hand so an unknown one is a 400 naming it.
fn query(params: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::bad_request(format!(
            "unknown query parameter {unknown:?}; known: {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

async fn workers(
    State(agent): State<Agent>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Vec<WorkerInfo>>, ApiError> {
    query(&params, &["node"])?;
    let mut workers = agent.cluster_workers().await;
    if let Some(node) = params.get("node") {
        if !agent.node().members().iter().any(|m| m.id() == node) {
            return Err(ApiError::not_found(format!("unknown node {node:?}")));
        }
        workers.retain(|w| &w.node == node);
    }
    Ok(Json(workers))
}

async fn worker_action(
    State(agent): State<Agent>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let sup = agent.supervisor();
    match action.as_str() {
        "start" => agent.start_worker(&name).await?,
        "stop" => sup.stop_worker(&name).await?,
        "restart" => {
            sup.restart_worker(&name).await?;
        }
        other => {
            return Err(ApiError::not_found(format!(
                "unknown worker action {other:?}; use start, stop or restart"
            )))
        }
    }
    let status = sup
        .worker_status(&name)
        .await
        .ok()
        .map(|s| WorkerInfo::from_status(&s));
    Ok(Json(
        json!({ "node": agent.node().id(), "worker": name, "action": action, "status": status }),
    ))
}

async fn delete_worker(
    State(agent): State<Agent>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    agent.delete_worker(&name).await?;
    Ok(Json(
        json!({ "node": agent.node().id(), "worker": name, "action": "delete" }),
    ))
}

async fn get_config(State(agent): State<Agent>) -> Json<Value> {
    match agent.config() {
        Some(config) => Json(json!({
            "version": config.version,
            "pushed_by": config.pushed_by,
            "pushed_at_ms": config.pushed_at_ms,
            "checksum": config.checksum,
            "toml": config.text,
            "workers": config.config().workers,
        })),
        None => Json(json!({ "version": 0, "toml": "", "workers": [] })),
    }
}

/// The body of `PUT /v1/config`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    toml: String,
    #[serde(default)]
    base_version: Option<u64>,
}

async fn put_config(State(agent): State<Agent>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let body: PushBody = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("invalid request body: {err}")))?;
    let config = agent.push_config(body.toml, body.base_version).await?;
    Ok(Json(json!({
        "version": config.version,
        "workers": config.config().workers.len(),
        "pushed_by": config.pushed_by,
    })))
}
