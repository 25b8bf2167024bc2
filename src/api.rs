//! The agent's HTTP API (JSON, under `/v1`), served by axum on the agent's API address.
//!
//! | method and path | what it does |
//! |---|---|
//! | `GET /` | the live dashboard page (see `dashboard`) |
//! | `POST /v1/events` | `{"name": "...", "payload": "..."?}`: a user event (name 1 to 64 of letters, digits, `. _ -`; payload at most 512 bytes, else 400), recorded as `user` by every live member: `{name, results: [{node, done}|{node, error}], done, total}` |
//! | `POST /v1/members/{id}/force-leave` | marks failed member `id` as left on every live member (each forgets its gossip state now and lists it as left, reason `forced`): `{member, results: [{node, done}|{node, error}], done, total}`; 409 while `id` is a live member |
//! | `GET /v1/health` | `{"status":"ok", node, members, config_version}`; 503 with `status` `gossip_down`, `supervisor_gave_up` or `config_behind`, its `reason`, and every one in `problems` ([`crate::agent::health`]) |
//! | `GET /v1/members` | live members: id, addr, generation, tags, and the config each holds (`config_version`, `config_checksum`, from its gossiped head; absent while it holds none) |
//! | `GET /v1/events?since=SEQ&follow=1` | this agent's events (member joined, left, failed; worker started, exited, restarting, failed; config adopted; name owners: [`crate::agent::events`]) after number SEQ as `{events, next, missed}`; `follow=1` streams them as newline-delimited JSON (`events`) |
//! | `GET /v1/names` | every global name this node knows a claim on, sorted: `name`, `owner` (`{id, addr}`, or null while nobody holds it), `quorum`, and `waiting` (the claimant ranked first, when nobody holds it: a quorum name in its lease or without a majority here) |
//! | `GET /v1/workers[?node=ID]` | every node's workers, from gossip state |
//! | `POST /v1/workers/{name}/start\|stop\|restart[?node=ID\|?all=true]` | acts on the worker on this node, on node ID, or with `all=true` on every node that has it, reporting per node |
//! | `DELETE /v1/workers/{name}[?node=ID\|?all=true]` | stops and forgets the worker (on this node, node ID, or every node) until the config changes it |
//! | `GET /v1/workers/{name}/logs?node=ID&tail=N&since=SEQ&follow=1` | the worker's output lines on node ID (default: here, else where gossip lists it running): the last N (default 100, at most 10,000; more is a 400), or from line SEQ on; `follow=1` streams new lines as newline-delimited JSON (`logs`) |
//! | `POST /v1/workers/{name}/call` | `{"method", "params"?, "node"?, "timeout_ms"?}`: calls a jsonl worker wherever it runs |
//! | `GET /v1/config` | the cluster config this node holds (version 0: none yet): version, pushed_by, pushed_at_ms, checksum, signature, parent (`{version, checksum}` of the config the accepting node held; absent when unknown), toml, workers |
//! | `PUT /v1/config` | `{"toml": "...", "base_version": N?, "version": N?, "signature": {"key", "sig"}?}`: validate, version, spread (a signed push carries the version it is signed for: [`crate::config::signature`]); answers `{version, checksum, workers, pushed_by}` once this node holds it; 503 while the node has not caught up with the peers that answer it ([`crate::agent::view`]) |
//! | `GET /v1/keys` | every live node's key ids (primary first), and per key id how many nodes hold it and on how many it is primary |
//! | `POST /v1/keys/install\|use\|remove` | `{"key": "..."}` (a base64 key; for use and remove also its id): applies it on every live node, reporting per node; a remove of a key still some live node's primary is refused (409) before anything changes |
//! | `GET /metrics` | Prometheus metrics, OpenMetrics text ([`crate::agent::metrics`]) |
//!
//! Errors are `{"error": "..."}`: 400 for bad input (naming it; also a push refused for its
//! signature: unsigned, not verifying, or by a key that is not a signer), 404 for an unknown worker or
//! node, 409 for a stale config version (or one that would overflow) or a worker in the wrong
//! state, 502 when a worker's call failed, 503 when a node is unreachable (naming it) or a push
//! came before this node synced with the cluster, 504 when a worker's call timed out. [`router`] builds the
//! whole app, so tests can drive it without a socket. The server stops on the agent's API
//! cancellation token.
//!
//! ## Who may call it
//!
//! Every request passes the checks of `guard.rs` first, in this order (see [`Access`]):
//!
//! 1. its `Host` must name this API ([`HostRules`]: the bound `ip:port`, `localhost`, loopback
//!    addresses when bound to loopback, names given with `--api-host`), else 403: a page whose
//!    DNS name was rebound to this address cannot read or act;
//! 2. a POST, PUT or DELETE must carry `Content-Type: application/json` and, if it has an
//!    `Origin`, this API's own (`http://<an allowed host>`), else 403: another site's page
//!    cannot act through a visitor's browser;
//! 3. a body over [`MAX_BODY`] (4 MiB) is refused with 413 before it is read;
//! 4. with a token (`--api-token-file`, [`ApiToken`]), every request but `GET /` and
//!    `GET /v1/health` needs `Authorization: Bearer <token>`, else 401 with
//!    `WWW-Authenticate: Bearer`.
//!
//! Refusals answer `{"error": ...}`, are counted in `herd_api_rejected_total{reason}`
//! ([`Refusal::reason`]) and logged at most once a minute per reason. The agent refuses to
//! serve a non-loopback address without a token.

mod dashboard;
mod error;
mod events;
mod guard;
mod host;
mod keys;
mod logs;
mod token;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub use error::ApiError;
pub use guard::{Access, Refusal, MAX_BODY};
pub use host::HostRules;
pub use token::{ApiToken, LoadedToken, TokenError, MAX_TOKEN_FILE};

use crate::agent::{Agent, WorkerAction, WorkerInfo};
use crate::config::signature::SignatureText;
use crate::config::ConfigSignature;

/// The API's routes over `agent`, behind the checks of `access` (every route, and the
/// fallback, passes them), with bodies limited to [`MAX_BODY`].
pub fn router(agent: Agent, access: Access) -> Router {
    let guard = guard::Guard::new(access, agent.clone());
    Router::new()
        .route("/", get(dashboard::page))
        .route("/v1/health", get(health))
        .route("/v1/members", get(members))
        .route("/v1/events", get(events::events).post(user_event))
        .route("/v1/names", get(names))
        .route("/v1/workers", get(workers))
        .route("/v1/workers/{name}", delete(delete_worker))
        .route("/v1/workers/{name}/call", post(call_worker))
        .route("/v1/workers/{name}/logs", get(logs::logs))
        .route("/v1/workers/{name}/{action}", post(worker_action))
        .route("/v1/config", get(get_config).put(put_config))
        .route("/v1/members/{id}/force-leave", post(force_leave))
        .route("/v1/keys", get(keys::list))
        .route("/v1/keys/{op}", post(keys::change))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::not_found(
                "no such endpoint; see /v1/health, /v1/members, /v1/events, /v1/workers, /v1/config, /v1/keys",
            )
        })
        .with_state(agent)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(guard, guard::check))
}

async fn health(State(agent): State<Agent>) -> (axum::http::StatusCode, Json<Value>) {
    let node = agent.node();
    let problems = agent.health_problems();
    let mut body = json!({
        "status": problems.first().map_or("ok", |p| p.status),
        "node": node.id(),
        "members": node.members().len(),
        "config_version": agent.config().map(|c| c.version).unwrap_or(0),
    });
    let Some(first) = problems.first() else {
        return (axum::http::StatusCode::OK, Json(body));
    };
    body["reason"] = Value::String(first.reason.clone());
    body["problems"] = json!(problems);
    (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(body))
}

async fn members(
    State(agent): State<Agent>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    query(&params, &["all"])?;
    let all = logs::flag(&params, "all")?;
    let heads = agent.config_heads().await;
    let applied = agent.config_applied().await;
    let members: Vec<Value> = agent
        .node()
        .members()
        .iter()
        .map(|m| {
            let mut member = json!({
                "id": m.id(),
                "addr": m.addr().to_string(),
                "generation": m.generation(),
                "tags": m.tags(),
                "status": "alive",
            });
            if let Some(head) = heads.get(m.id()) {
                member["config_version"] = json!(head.version);
                member["config_checksum"] = json!(head.checksum);
                // Its workers' state for another config: it has not reconciled to this one yet.
                if let Some((id, state)) = applied.get(m.id()) {
                    let state = if id == head {
                        state.as_str()
                    } else {
                        "starting"
                    };
                    member["config_workers"] = json!(state);
                }
            }
            member
        })
        .collect();
    let mut members = members;
    if all {
        for gone in agent.departed() {
            if !members.iter().any(|m| m["id"] == gone.id.as_str()) {
                members.push(json!(gone));
            }
        }
    }
    Ok(Json(Value::Array(members)))
}

/// The body of `POST /v1/events`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEventBody {
    name: String,
    #[serde(default)]
    payload: String,
}

/// `POST /v1/events`: a user event, recorded by every live member.
async fn user_event(
    State(agent): State<Agent>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: UserEventBody = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("invalid request body: {err}")))?;
    let answers = agent
        .user_event(&body.name, &body.payload)
        .await
        .map_err(|(status, message)| ApiError::with_status(status, message))?;
    Ok(Json(per_node(json!({ "name": body.name }), answers)))
}

/// A fan-out's answer: `fields` plus `results` (`{node, done}` or `{node, error}`), `done` and
/// `total`.
fn per_node(mut fields: Value, answers: crate::agent::PerNode) -> Value {
    let total = answers.len();
    let results: Vec<Value> = answers
        .into_iter()
        .map(|(node, answer)| match answer {
            Ok(done) => json!({ "node": node, "done": done }),
            Err((_, message)) => json!({ "node": node, "error": message }),
        })
        .collect();
    let done = results.iter().filter(|r| r.get("error").is_none()).count();
    fields["results"] = json!(results);
    fields["done"] = json!(done);
    fields["total"] = json!(total);
    fields
}

/// `POST /v1/members/{id}/force-leave`: every live member marks failed member `id` as left.
async fn force_leave(
    State(agent): State<Agent>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let answers = agent
        .force_leave(&id)
        .await
        .map_err(|(status, message)| ApiError::with_status(status, message))?;
    Ok(Json(per_node(json!({ "member": id }), answers)))
}

async fn names(State(agent): State<Agent>) -> Json<Value> {
    let table = agent.node().names_registry().table();
    let names: Vec<Value> = table
        .names
        .iter()
        .map(|(name, entry)| {
            let owner = entry
                .owner
                .as_ref()
                .map(|(m, _)| json!({"id": m.id(), "addr": m.addr().to_string()}));
            let mut value = json!({"name": name, "owner": owner, "quorum": entry.quorum});
            if entry.owner.is_none() {
                value["waiting"] = json!(entry.first.id());
            }
            value
        })
        .collect();
    Json(Value::Array(names))
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
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    query(&params, &["node", "all"])?;
    let action = match WorkerAction::parse(&action) {
        Some(action) if action != WorkerAction::Delete => action,
        _ => {
            return Err(ApiError::not_found(format!(
                "unknown worker action {action:?}; use start, stop or restart (DELETE to delete)"
            )))
        }
    };
    act(&agent, &name, action, Targets::of(&params)?).await
}

async fn delete_worker(
    State(agent): State<Agent>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    query(&params, &["node", "all"])?;
    act(&agent, &name, WorkerAction::Delete, Targets::of(&params)?).await
}

/// Where a worker action acts: `?node=ID`, `?all=true`, or (neither) this node.
enum Targets {
    Here,
    Node(String),
    All,
}

impl Targets {
    fn of(params: &HashMap<String, String>) -> Result<Targets, ApiError> {
        let all = match params.get("all").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "query parameter all={other:?}: use true or false"
                )))
            }
        };
        match (params.get("node"), all) {
            (Some(_), true) => Err(ApiError::bad_request(
                "give node=ID (one node) or all=true (every node), not both",
            )),
            (Some(node), false) => Ok(Targets::Node(node.clone())),
            (None, true) => Ok(Targets::All),
            (None, false) => Ok(Targets::Here),
        }
    }
}

/// Acts on `name` on the targeted nodes (with `all`, every node that has it); reports per node.
/// Fails (with the first failure's status) only when every node failed.
async fn act(
    agent: &Agent,
    name: &str,
    action: WorkerAction,
    targets: Targets,
) -> Result<Json<Value>, ApiError> {
    let targets = match targets {
        Targets::Here => vec![agent.node().id().to_string()],
        Targets::Node(node) => vec![node],
        Targets::All => {
            let mut nodes: Vec<String> = agent
                .cluster_workers()
                .await
                .into_iter()
                .filter(|w| w.name == name)
                .map(|w| w.node)
                .collect();
            nodes.dedup();
            if nodes.is_empty() {
                // A worker deleted here is listed nowhere but can still be started here.
                nodes.push(agent.node().id().to_string());
            }
            nodes
        }
    };
    let outcomes =
        futures::future::join_all(targets.iter().map(|node| agent.act_on(node, name, action)))
            .await;
    let mut results = Vec::new();
    let mut first_error = None;
    for (node, outcome) in targets.iter().zip(outcomes) {
        match outcome {
            Ok(status) => results.push(json!({ "node": node, "status": status })),
            Err((code, message)) => {
                results.push(json!({ "node": node, "error": message }));
                first_error.get_or_insert((code, message));
            }
        }
    }
    if let (Some((code, message)), false) = (
        first_error,
        results.iter().any(|r| r.get("status").is_some()),
    ) {
        return Err(ApiError::with_status(code, message));
    }
    Ok(Json(
        json!({ "worker": name, "action": action, "results": results }),
    ))
}

/// The body of `POST /v1/workers/{name}/call`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallBody {
    method: String,
    #[serde(default)]
    params: Value,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

async fn call_worker(
    State(agent): State<Agent>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: CallBody = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("invalid request body: {err}")))?;
    let node = match body.node {
        Some(node) => node,
        None => {
            // Here if it runs here, else the first node where it runs.
            let workers = agent.cluster_workers().await;
            let running: Vec<&WorkerInfo> = workers
                .iter()
                .filter(|w| w.name == name && w.state == "running")
                .collect();
            running
                .iter()
                .find(|w| w.node == agent.node().id())
                .or(running.first())
                .map(|w| w.node.clone())
                .ok_or_else(|| ApiError::not_found(format!("no node runs worker {name:?}")))?
        }
    };
    let timeout = std::time::Duration::from_millis(body.timeout_ms.unwrap_or(5_000));
    let result = agent
        .call_on(&node, &name, &body.method, body.params, timeout)
        .await
        .map_err(|(code, message)| ApiError::with_status(code, message))?;
    Ok(Json(
        json!({ "node": node, "worker": name, "method": body.method, "result": result }),
    ))
}

async fn get_config(State(agent): State<Agent>) -> Json<Value> {
    match agent.config() {
        Some(config) => Json(json!({
            "version": config.version,
            "pushed_by": config.pushed_by,
            "pushed_at_ms": config.pushed_at_ms,
            "checksum": config.checksum,
            "signature": config.signature,
            "parent": config.parent,
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
    /// The version a signed push is signed for (only with `signature`).
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    signature: Option<SignatureText>,
}

async fn put_config(State(agent): State<Agent>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let body: PushBody = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("invalid request body: {err}")))?;
    let config = match (body.signature, body.version) {
        (None, None) => agent.push_config(body.toml, body.base_version).await?,
        (Some(signature), Some(version)) => {
            let signature = ConfigSignature::parse(&signature)
                .map_err(|err| ApiError::bad_request(format!("\"signature\": {err}")))?;
            agent
                .push_signed_config(body.toml, body.base_version, version, signature)
                .await?
        }
        (Some(_), None) => {
            return Err(ApiError::bad_request(
                "a signed push names the version it is signed for in \"version\"",
            ))
        }
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "\"version\" is taken only with a \"signature\"; an unsigned push is versioned by the agent",
            ))
        }
    };
    Ok(Json(json!({
        "version": config.version,
        "checksum": config.checksum,
        "workers": config.config().workers.len(),
        "pushed_by": config.pushed_by,
    })))
}

async fn metrics(State(agent): State<Agent>) -> impl axum::response::IntoResponse {
    let content_type = [(
        axum::http::header::CONTENT_TYPE,
        crate::agent::metrics::CONTENT_TYPE,
    )];
    (content_type, agent.metrics().render().await)
}
