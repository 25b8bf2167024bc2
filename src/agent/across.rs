//! Acting across the cluster from this agent: an action, a call, a key change or a
//! force-leave on one node or every live member, this node's own answered here and the others'
//! asked over herd's own RPC requests ([`remote`](super::remote)), each with a bounded timeout.
//! Errors carry the HTTP status they map to and a message naming the node.

use std::time::Duration;

use super::keys::{KeyOp, KeyState};
use super::remote::{self, RemoteAnswer, RemoteRequest};
use super::{status::WorkerInfo, Agent, WorkerAction, REMOTE_TIMEOUT};

/// What each node answered to a request sent to every live member, in member order: what it
/// did, or the HTTP status and message of its failure.
pub type PerNode = Vec<(String, Result<String, (u16, String)>)>;

impl Agent {
    /// Acts on worker `worker` of node `node` (this one, or another over RPC); returns its status
    /// afterwards. Errors carry the HTTP status they map to and a message naming what failed.
    pub async fn act_on(
        &self,
        node: &str,
        worker: &str,
        action: WorkerAction,
    ) -> Result<Option<WorkerInfo>, (u16, String)> {
        if node == self.node().id() {
            return self
                .inner
                .local
                .act(worker, action)
                .await
                .map_err(|err| (remote::status_of(&err), err.to_string()));
        }
        let request = RemoteRequest::Action {
            worker: worker.to_string(),
            action,
        };
        match self.ask_node(node, &request, REMOTE_TIMEOUT).await? {
            RemoteAnswer::Done(status) => Ok(status),
            RemoteAnswer::Called(_)
            | RemoteAnswer::Keys(_)
            | RemoteAnswer::Logs(_)
            | RemoteAnswer::Did(_) => Err((
                500,
                format!("node {node:?} answered an action with another request's result"),
            )),
            RemoteAnswer::Failed { status, message } => {
                Err((status, format!("on node {node}: {message}")))
            }
        }
    }

    /// Calls jsonl worker `worker` on node `node` with `method` and `params`; returns its result.
    /// Errors carry the HTTP status they map to and a message.
    pub async fn call_on(
        &self,
        node: &str,
        worker: &str,
        method: &str,
        params: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, (u16, String)> {
        if node == self.node().id() {
            return self
                .inner
                .local
                .call(worker, method, params, timeout)
                .await
                .map_err(|err| (remote::status_of(&err), err.to_string()));
        }
        let request = RemoteRequest::Call {
            worker: worker.to_string(),
            method: method.to_string(),
            params,
            timeout_ms: timeout.as_millis() as u64,
        };
        // The worker's own timeout runs there; allow for the trip on top.
        match self
            .ask_node(node, &request, timeout + REMOTE_TIMEOUT)
            .await?
        {
            RemoteAnswer::Called(value) => Ok(value),
            RemoteAnswer::Done(_)
            | RemoteAnswer::Keys(_)
            | RemoteAnswer::Logs(_)
            | RemoteAnswer::Did(_) => Err((
                500,
                format!("node {node:?} answered a call with another request's result"),
            )),
            RemoteAnswer::Failed { status, message } => {
                Err((status, format!("on node {node}: {message}")))
            }
        }
    }

    /// Applies a key change (or a look) on node `node` (this one, or another over RPC).
    pub(crate) async fn keys_on(&self, node: &str, op: &KeyOp) -> Result<KeyState, (u16, String)> {
        if node == self.node().id() {
            return self
                .inner
                .local
                .keys(op)
                .map_err(|err| (remote::status_of(&err), err.to_string()));
        }
        let request = RemoteRequest::Keys(op.clone());
        match self.ask_node(node, &request, REMOTE_TIMEOUT).await? {
            RemoteAnswer::Keys(state) => Ok(state),
            RemoteAnswer::Done(_)
            | RemoteAnswer::Called(_)
            | RemoteAnswer::Logs(_)
            | RemoteAnswer::Did(_) => Err((
                500,
                format!("node {node:?} answered a key request with another request's result"),
            )),
            RemoteAnswer::Failed { status, message } => Err((status, message)),
        }
    }

    /// Applies `op` on every live member, this node included, at once; answers per node, in
    /// member order.
    pub(crate) async fn keys_everywhere(
        &self,
        op: &KeyOp,
    ) -> Vec<(String, Result<KeyState, (u16, String)>)> {
        let nodes: Vec<String> = self
            .node()
            .members()
            .iter()
            .map(|m| m.id().to_string())
            .collect();
        let answers =
            futures::future::join_all(nodes.iter().map(|node| self.keys_on(node, op))).await;
        nodes.into_iter().zip(answers).collect()
    }

    /// Marks failed member `id` as left on every live member, this node included (`herd
    /// force-leave`): each forgets its gossip state now instead of after the dead-node grace
    /// period, so it is no longer gossiped to, and lists it as left with the reason `forced`.
    /// Answers per node, in member order.
    ///
    /// # Errors
    /// `id` is a live member of this node's view (409), or is this node (409): nothing changed.
    pub async fn force_leave(&self, id: &str) -> Result<PerNode, (u16, String)> {
        let members = self.node().members();
        if members.iter().any(|m| m.id() == id) {
            return Err((
                409,
                format!("{id:?} is a live member; only a failed member can be forced to leave (stop its agent to make it leave)"),
            ));
        }
        let request = RemoteRequest::ForceLeave {
            node: id.to_string(),
        };
        let here = self.inner.local.force_leave(id);
        Ok(self.on_every_member(&request, "a force-leave", here).await)
    }

    /// Whether this node has a keyring.
    pub(crate) fn has_keyring(&self) -> bool {
        self.inner.local.keys.is_some()
    }

    pub(super) async fn ask_node(
        &self,
        node: &str,
        request: &RemoteRequest,
        timeout: Duration,
    ) -> Result<RemoteAnswer, (u16, String)> {
        remote::ask_node(self.node(), node, request, timeout)
            .await
            .map_err(|err| match err {
                crate::Error::UnknownMember { .. } => (404, format!("unknown node {node:?}")),
                crate::Error::Unreachable { .. }
                | crate::Error::CallTimeout { .. }
                | crate::Error::Stopped { .. } => {
                    (503, format!("node {node:?} is unreachable: {err}"))
                }
                other => (502, format!("node {node:?}: {other}")),
            })
    }

    /// Sends user event `name` with `payload` to every live member, this node included: each
    /// records it in its event log (`user`, with `from` this node), where handlers and
    /// `events = true` workers see it. Once each, to the members live now. Answers per node.
    ///
    /// # Errors
    /// An invalid name or a payload over
    /// [`MAX_USER_PAYLOAD`](super::events::MAX_USER_PAYLOAD) bytes (both 400): sent to no one.
    pub async fn user_event(&self, name: &str, payload: &str) -> Result<PerNode, (u16, String)> {
        remote::check_user_event(name, payload)?;
        let from = self.node().id().to_string();
        let request = RemoteRequest::UserEvent {
            name: name.to_string(),
            payload: payload.to_string(),
            from: from.clone(),
        };
        let here = async { self.inner.local.user_event(name, payload, &from) };
        Ok(self.on_every_member(&request, "a user event", here).await)
    }

    /// Sends `request` to every live member but this one, and runs `here` for this one, all at
    /// once; each answers what it did. Answers per node, in member order.
    async fn on_every_member(
        &self,
        request: &RemoteRequest,
        what: &str,
        here: impl std::future::Future<Output = Result<String, (u16, String)>>,
    ) -> PerNode {
        let me = self.node().id().to_string();
        let nodes: Vec<String> = self
            .node()
            .members()
            .iter()
            .map(|m| m.id().to_string())
            .collect();
        let others = nodes.iter().filter(|n| **n != me).map(|node| async move {
            match self.ask_node(node, request, REMOTE_TIMEOUT).await? {
                RemoteAnswer::Did(done) => Ok(done),
                RemoteAnswer::Failed { status, message } => Err((status, message)),
                _ => Err((
                    500,
                    format!("node {node:?} answered {what} with another request's result"),
                )),
            }
        });
        let (mine, theirs) = futures::join!(here, futures::future::join_all(others));
        let mut theirs = theirs.into_iter();
        nodes
            .into_iter()
            .map(|node| {
                let answer = match node == me {
                    true => mine.clone(),
                    false => theirs
                        .next()
                        .unwrap_or_else(|| Err((500, "no answer".into()))),
                };
                (node, answer)
            })
            .collect()
    }
}
