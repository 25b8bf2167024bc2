//! Reading a worker's logs on any node: from this node's supervisor
//! ([`Supervisor::logs`](crate::supervisor::Supervisor::logs), on the blocking pool since it may
//! read a log file), or from another node's with herd's own `Logs` request over the messaging
//! layer (`remote.rs`), answered there the same way. A batch holds at most
//! [`MAX_LOG_LINES`](crate::supervisor::MAX_LOG_LINES) lines and
//! [`MAX_LOG_BYTES`](crate::supervisor::MAX_LOG_BYTES) of text, so its JSON stays under the
//! frame limit (16 MiB) even when every byte needs escaping.
//!
//! Following is done by the caller (the API's `follow=1`) with repeated batches from a cursor
//! (`since`), at most [`MAX_FOLLOWERS`] at once per agent.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::remote::{self, RemoteAnswer, RemoteRequest};
use super::{Agent, AgentError, REMOTE_TIMEOUT};
use crate::supervisor::{LogBatch, LogQuery, Supervisor};

/// Logs followed at once through one agent's API; more are refused (503).
pub const MAX_FOLLOWERS: usize = 16;

/// The permits of the followers, one set per agent.
pub(crate) fn followers() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_FOLLOWERS))
}

/// Reads `worker`'s logs from this node's supervisor.
pub(crate) async fn local(
    sup: &Supervisor,
    worker: &str,
    query: LogQuery,
) -> Result<LogBatch, AgentError> {
    let sup = sup.clone();
    let worker = worker.to_string();
    tokio::task::spawn_blocking(move || sup.logs(&worker, &query))
        .await
        .map_err(|_| AgentError::ShuttingDown)?
        .map_err(AgentError::Worker)
}

impl Agent {
    /// Reads `worker`'s logs on node `node` (this one, or another over RPC). Errors carry the
    /// HTTP status they map to and a message naming what failed.
    pub async fn logs_on(
        &self,
        node: &str,
        worker: &str,
        query: LogQuery,
    ) -> Result<LogBatch, (u16, String)> {
        if node == self.node().id() {
            return local(&self.inner.sup, worker, query)
                .await
                .map_err(|err| (remote::status_of(&err), err.to_string()));
        }
        let request = RemoteRequest::Logs {
            worker: worker.to_string(),
            query,
        };
        match self.ask_node(node, &request, REMOTE_TIMEOUT).await? {
            RemoteAnswer::Logs(batch) => Ok(batch),
            RemoteAnswer::Failed { status, message } => {
                Err((status, format!("on node {node}: {message}")))
            }
            _ => Err((
                500,
                format!("node {node:?} answered a logs request with another request's result"),
            )),
        }
    }

    /// The node whose logs of `worker` are read when none is named: this one if its
    /// supervisor has the worker, else the first node (in gossip order) whose status lists it
    /// running, else the first that lists it at all.
    pub async fn logs_node(&self, worker: &str) -> Result<String, (u16, String)> {
        let here = self.node().id().to_string();
        let has_it = self
            .inner
            .sup
            .output_stats()
            .iter()
            .any(|s| s.worker == worker);
        if has_it {
            return Ok(here);
        }
        let listed: Vec<_> = self
            .cluster_workers()
            .await
            .into_iter()
            .filter(|w| w.name == worker)
            .collect();
        listed
            .iter()
            .find(|w| w.state == "running")
            .or(listed.first())
            .map(|w| w.node.clone())
            .ok_or_else(|| (404, format!("no node has worker {worker:?}")))
    }

    /// A permit to follow logs, if fewer than [`MAX_FOLLOWERS`] follow now.
    pub(crate) fn follow_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.inner.followers.clone().try_acquire_owned().ok()
    }

    /// Cancelled when the API stops (followers end then).
    pub(crate) fn api_stopping(&self) -> CancellationToken {
        self.inner.api_cancel.clone()
    }
}

/// How often a follower asks for new lines.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);
