//! Acting across the cluster from this agent: an action, a call, a key change or a
//! force-leave on one node or every live member, this node's own answered here and the others'
//! asked over herd's own RPC requests ([`remote`](super::remote)), each with a bounded timeout.
//! Errors carry the HTTP status they map to and a message naming the node.

use std::time::Duration;

use super::keys::{KeyOp, KeyState};
use super::remote::{self, RemoteAnswer, RemoteRequest};
use super::{status::WorkerInfo, Agent, WorkerAction, REMOTE_TIMEOUT};

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
            | RemoteAnswer::Forced(_) => Err((
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
            | RemoteAnswer::Forced(_) => Err((
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
            | RemoteAnswer::Forced(_) => Err((
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
    pub async fn force_leave(
        &self,
        id: &str,
    ) -> Result<Vec<(String, Result<String, (u16, String)>)>, (u16, String)> {
        let members = self.node().members();
        if members.iter().any(|m| m.id() == id) {
            return Err((
                409,
                format!("{id:?} is a live member; only a failed member can be forced to leave (stop its agent to make it leave)"),
            ));
        }
        let nodes: Vec<String> = members.iter().map(|m| m.id().to_string()).collect();
        let request = RemoteRequest::ForceLeave {
            node: id.to_string(),
        };
        let ask = |node: String| {
            let request = &request;
            async move {
                if node == self.node().id() {
                    return self.inner.local.force_leave(id).await;
                }
                match self.ask_node(&node, request, REMOTE_TIMEOUT).await? {
                    RemoteAnswer::Forced(what) => Ok(what),
                    RemoteAnswer::Failed { status, message } => Err((status, message)),
                    _ => Err((
                        500,
                        format!(
                            "node {node:?} answered a force-leave with another request's result"
                        ),
                    )),
                }
            }
        };
        let answers = futures::future::join_all(nodes.iter().cloned().map(ask)).await;
        Ok(nodes.into_iter().zip(answers).collect())
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
}
