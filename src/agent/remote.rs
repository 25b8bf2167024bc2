//! Acting on workers anywhere in the cluster: the actions and calls an agent performs on its own
//! workers ([`Local`]), and the same carried to another node over the RPC layer as herd's own
//! requests (JSON in system frames), answered there by [`RemoteHandler`], concurrently with
//! everything else. A `Logs` request reads a worker's logs there (`logs.rs`); the supervisor
//! refuses a tail over its line limit, and a batch's size keeps the answer under the frame limit.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::core::Command;
use super::keys::{KeyOp, KeyState, KeyStore};
use super::status::WorkerInfo;
use super::AgentError;
use crate::rpc::frame::{Outcome, Refusal};
use crate::rpc::server::SystemHandler;
use crate::supervisor::{self, LogBatch, LogQuery, Supervisor};

/// An operator's action on a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerAction {
    /// Start a stopped, failed or deleted worker.
    Start,
    /// Stop it; it stays stopped until started.
    Stop,
    /// Stop it and start it again.
    Restart,
    /// Stop and forget it until the config changes it.
    Delete,
}

impl WorkerAction {
    /// Parses `start`, `stop`, `restart` or `delete`.
    pub fn parse(text: &str) -> Option<WorkerAction> {
        match text {
            "start" => Some(WorkerAction::Start),
            "stop" => Some(WorkerAction::Stop),
            "restart" => Some(WorkerAction::Restart),
            "delete" => Some(WorkerAction::Delete),
            _ => None,
        }
    }
}

/// herd's own request to another node's agent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RemoteRequest {
    Action {
        worker: String,
        action: WorkerAction,
    },
    Call {
        worker: String,
        method: String,
        params: Value,
        timeout_ms: u64,
    },
    Keys(KeyOp),
    Logs {
        worker: String,
        query: LogQuery,
    },
    /// Mark failed member `node` as left and forget its gossip state now (`herd force-leave`).
    ForceLeave {
        node: String,
    },
    /// Record a user event (`herd event NAME [PAYLOAD]`), sent through node `from`.
    UserEvent {
        name: String,
        payload: String,
        from: String,
    },
}

/// The answer: the worker's status after an action, or a call's result; or an error with the
/// HTTP status it maps to.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RemoteAnswer {
    Done(Option<WorkerInfo>),
    Called(Value),
    Keys(KeyState),
    Logs(LogBatch),
    /// What a force-leave or a user event did on the node, for a person.
    Did(String),
    Failed {
        status: u16,
        message: String,
    },
}

/// What an agent does to its own workers.
#[derive(Clone)]
pub(crate) struct Local {
    pub(crate) sup: Supervisor,
    pub(crate) commands: mpsc::Sender<Command>,
    /// This node's keyring and its file, if it has one.
    pub(crate) keys: Option<KeyStore>,
    /// The node (weakly: the node holds this handler), its departed members and its events.
    pub(crate) node: crate::node::WeakNode,
    pub(crate) departed: Arc<super::departed::DepartedLog>,
    pub(crate) events: Arc<super::events::EventLog>,
}

impl Local {
    pub(crate) async fn act(
        &self,
        worker: &str,
        action: WorkerAction,
    ) -> Result<Option<WorkerInfo>, AgentError> {
        match action {
            WorkerAction::Start => {
                let name = worker.to_string();
                self.ask(|reply| Command::Start { name, reply }).await??;
            }
            WorkerAction::Stop => {
                let name = worker.to_string();
                self.ask(|reply| Command::Stop { name, reply }).await??;
            }
            WorkerAction::Restart => {
                let name = worker.to_string();
                self.ask(|reply| Command::Restart { name, reply }).await??;
            }
            WorkerAction::Delete => {
                let name = worker.to_string();
                self.ask(|reply| Command::Delete { name, reply }).await??;
                return Ok(None);
            }
        }
        Ok(self
            .sup
            .worker_status(worker)
            .await
            .ok()
            .map(|s| WorkerInfo::from_status(&s)))
    }

    pub(crate) async fn call(
        &self,
        worker: &str,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, AgentError> {
        Ok(self.sup.call(worker, method, params, timeout).await?)
    }

    /// Applies a key change (or a look) to this node's keyring.
    pub(crate) fn keys(&self, op: &KeyOp) -> Result<KeyState, AgentError> {
        self.keys.as_ref().ok_or(AgentError::NoKeyring)?.apply(op)
    }

    /// Makes failed member `id` left here: refused while it is a live member; otherwise its
    /// gossip state is forgotten now, its departed record says `forced`, and the event log
    /// records a `member-leave` with the reason `forced`. Says what it did.
    pub(crate) async fn force_leave(&self, id: &str) -> Result<String, (u16, String)> {
        let node = self
            .node
            .upgrade()
            .ok_or((503, "the agent is stopping".to_string()))?;
        if node.members().iter().any(|m| m.id() == id) {
            return Err((
                409,
                format!("{id:?} is a live member of {}'s view; only a failed member can be forced to leave", node.id()),
            ));
        }
        let forgotten = node.forget_dead(id).await;
        let recorded = self.departed.forced(id);
        if forgotten == 0 && !recorded {
            return Ok(format!("{} does not know {id:?}", node.id()));
        }
        self.events.push(
            "member-leave",
            serde_json::json!({ "member": id, "reason": "forced" }),
        );
        Ok(format!(
            "{} marked {id:?} as left (forgot the gossip state of {forgotten} incarnation{})",
            node.id(),
            if forgotten == 1 { "" } else { "s" }
        ))
    }

    /// Records user event `name` with `payload`, sent through node `from`, after checking both
    /// (a valid name; a payload of at most [`MAX_USER_PAYLOAD`](super::events::MAX_USER_PAYLOAD)
    /// bytes). Says what it did.
    pub(crate) fn user_event(
        &self,
        name: &str,
        payload: &str,
        from: &str,
    ) -> Result<String, (u16, String)> {
        check_user_event(name, payload)?;
        self.events.push(
            "user",
            serde_json::json!({ "name": name, "payload": payload, "from": from }),
        );
        let node = self.node.upgrade().map(|n| n.id().to_string());
        Ok(format!("{} recorded it", node.unwrap_or_default()))
    }

    pub(crate) async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, AgentError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| AgentError::ShuttingDown)?;
        answer.await.map_err(|_| AgentError::ShuttingDown)
    }
}

/// Refuses a user event whose name is not a valid name (letters, digits, `. _ -`, at most 64)
/// or whose payload is over [`MAX_USER_PAYLOAD`](super::events::MAX_USER_PAYLOAD) bytes.
pub(crate) fn check_user_event(name: &str, payload: &str) -> Result<(), (u16, String)> {
    if !crate::config::is_valid_name(name) {
        return Err((
            400,
            format!("user event name {name:?} is not 1 to 64 of letters, digits, '.', '_', '-'"),
        ));
    }
    let max = super::events::MAX_USER_PAYLOAD;
    if payload.len() > max {
        return Err((
            400,
            format!(
                "the payload is {} bytes; at most {max} are allowed",
                payload.len()
            ),
        ));
    }
    Ok(())
}

/// The HTTP status an agent error maps to; shared by the API and remote answers.
pub(crate) fn status_of(err: &AgentError) -> u16 {
    match err {
        AgentError::Config(_) => 400,
        AgentError::StaleVersion { .. } => 409,
        AgentError::Worker(supervisor::Error::UnknownWorker { .. }) => 404,
        AgentError::Worker(supervisor::Error::InvalidLogQuery { .. }) => 400,
        AgentError::Worker(supervisor::Error::LogRead { .. }) => 500,
        AgentError::Worker(
            supervisor::Error::DuplicateWorker { .. }
            | supervisor::Error::NotJsonl { .. }
            | supervisor::Error::NotRunning { .. },
        ) => 409,
        AgentError::Worker(supervisor::Error::CallTimeout { .. }) => 504,
        AgentError::Worker(
            supervisor::Error::WorkerDied { .. } | supervisor::Error::Remote { .. },
        ) => 502,
        AgentError::Worker(supervisor::Error::Spawn { .. }) | AgentError::StartFailed { .. } => 422,
        AgentError::Worker(_) => 409,
        AgentError::ShuttingDown => 503,
        AgentError::NoKeyring | AgentError::Key(_) => 409,
        _ => 500,
    }
}

/// Answers other nodes' requests with this node's [`Local`].
pub(crate) struct RemoteHandler {
    pub(crate) local: Local,
}

#[async_trait]
impl SystemHandler for RemoteHandler {
    async fn handle(&self, from: String, payload: Vec<u8>) -> Outcome {
        let request: RemoteRequest = match serde_json::from_slice(&payload) {
            Ok(request) => request,
            Err(err) => {
                return Outcome::Err(Refusal::Decode(format!("agent request from {from}: {err}")))
            }
        };
        let answer = match request {
            RemoteRequest::Action { worker, action } => match self.local.act(&worker, action).await
            {
                Ok(status) => RemoteAnswer::Done(status),
                Err(err) => RemoteAnswer::Failed {
                    status: status_of(&err),
                    message: err.to_string(),
                },
            },
            RemoteRequest::Call {
                worker,
                method,
                params,
                timeout_ms,
            } => {
                let timeout = Duration::from_millis(timeout_ms);
                match self.local.call(&worker, &method, params, timeout).await {
                    Ok(value) => RemoteAnswer::Called(value),
                    Err(err) => RemoteAnswer::Failed {
                        status: status_of(&err),
                        message: err.to_string(),
                    },
                }
            }
            RemoteRequest::Logs { worker, query } => {
                match super::logs::local(&self.local.sup, &worker, query).await {
                    Ok(batch) => RemoteAnswer::Logs(batch),
                    Err(err) => RemoteAnswer::Failed {
                        status: status_of(&err),
                        message: err.to_string(),
                    },
                }
            }
            RemoteRequest::UserEvent {
                name,
                payload,
                from,
            } => match self.local.user_event(&name, &payload, &from) {
                Ok(what) => RemoteAnswer::Did(what),
                Err((status, message)) => RemoteAnswer::Failed { status, message },
            },
            RemoteRequest::ForceLeave { node } => match self.local.force_leave(&node).await {
                Ok(what) => RemoteAnswer::Did(what),
                Err((status, message)) => RemoteAnswer::Failed { status, message },
            },
            RemoteRequest::Keys(op) => match self.local.keys(&op) {
                Ok(state) => RemoteAnswer::Keys(state),
                Err(err) => RemoteAnswer::Failed {
                    status: status_of(&err),
                    message: err.to_string(),
                },
            },
        };
        match serde_json::to_vec(&answer) {
            Ok(bytes) => Outcome::Ok(bytes),
            Err(err) => Outcome::Err(Refusal::Handler(format!(
                "answer could not be encoded: {err}"
            ))),
        }
    }
}

/// Sends `request` to node `to` and returns its answer.
pub(crate) async fn ask_node(
    node: &crate::Node,
    to: &str,
    request: &RemoteRequest,
    timeout: Duration,
) -> Result<RemoteAnswer, crate::Error> {
    let payload = serde_json::to_vec(request).map_err(|err| crate::Error::Codec {
        what: "an agent request".into(),
        reason: err.to_string(),
    })?;
    let bytes = node.system_call(to, payload, timeout).await?;
    serde_json::from_slice(&bytes).map_err(|err| crate::Error::Codec {
        what: format!("the answer of {to}"),
        reason: err.to_string(),
    })
}

/// Keeps the handler type-erased for the node.
pub(crate) fn handler(local: Local) -> Arc<dyn SystemHandler> {
    Arc::new(RemoteHandler { local })
}
