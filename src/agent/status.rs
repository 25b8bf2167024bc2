//! The state of each node's workers as the cluster sees it: every agent publishes a compact
//! summary of its own workers in its gossip state (the `herd.workers` key), so any node can list the
//! whole cluster's workers from its local state, with no call to other nodes.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::membership::keys;
use crate::node::published::NodeKeys;
use crate::supervisor::{WorkerState, WorkerStatus};

/// One worker on one node, as `GET /v1/workers` and `herd workers` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The node running it.
    #[serde(default)]
    pub node: String,
    /// The worker's name.
    pub name: String,
    /// `starting`, `running`, `backoff`, `stopping`, `stopped`, `exited` or `failed`.
    pub state: String,
    /// Its process id, while a process exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Restarts by the supervisor since the worker was started.
    pub restarts: u32,
    /// When it entered its state, in milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// Why it failed, or how its last process ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What an operator asked that keeps it in its state: `stopped` (by `herd stop`; it stays
    /// stopped across pushes and agent restarts until started, or until a push changes its
    /// spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// For a placed worker, where placement runs it and why: `one → c`, `one (quorum) → c`,
    /// `instances=2 → a,c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
}

impl WorkerInfo {
    /// The summary of a supervisor's status line.
    pub(crate) fn from_status(status: &WorkerStatus) -> WorkerInfo {
        let (state, detail) = match &status.state {
            WorkerState::Starting { .. } => ("starting", None),
            WorkerState::Running { .. } => ("running", None),
            WorkerState::Backoff {
                remaining_ms,
                reason: None,
            } => ("backoff", Some(format!("restart in {remaining_ms} ms"))),
            WorkerState::Backoff {
                remaining_ms,
                reason: Some(reason),
            } => (
                "backoff",
                Some(format!("restart in {remaining_ms} ms; {reason}")),
            ),
            WorkerState::Stopping { .. } => ("stopping", None),
            WorkerState::Stopped => ("stopped", None),
            WorkerState::Exited { exit } => ("exited", Some(exit.to_string())),
            WorkerState::Failed { reason } => ("failed", Some(reason.clone())),
        };
        let detail = detail.or_else(|| status.last_exit.map(|e| format!("last exit: {e}")));
        WorkerInfo {
            node: String::new(),
            name: status.name.clone(),
            state: state.to_string(),
            pid: status.pid,
            restarts: status.restarts,
            since_ms: unix_ms(status.since),
            detail,
            intent: None,
            placement: None,
        }
    }

    /// A worker stopped by the operator before the agent started, not started since.
    pub(crate) fn held_stopped(name: &str) -> WorkerInfo {
        WorkerInfo {
            node: String::new(),
            name: name.to_string(),
            state: "stopped".to_string(),
            pid: None,
            restarts: 0,
            since_ms: unix_ms(SystemTime::now()),
            detail: None,
            intent: Some("stopped".to_string()),
            placement: None,
        }
    }

    /// A worker this node should run but could not start.
    pub(crate) fn not_started(name: &str, error: &str) -> WorkerInfo {
        WorkerInfo {
            node: String::new(),
            name: name.to_string(),
            state: "failed".to_string(),
            pid: None,
            restarts: 0,
            since_ms: unix_ms(SystemTime::now()),
            detail: Some(error.to_string()),
            intent: None,
            placement: None,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The value an agent publishes for its workers.
pub(crate) fn encode(workers: &[WorkerInfo]) -> String {
    serde_json::to_string(workers).unwrap_or_else(|_| "[]".into())
}

/// Every live node's workers, sorted by node then name. A summary that does not decode is
/// skipped (it is a peer's bug, not a reason to fail the listing).
pub(crate) fn cluster_workers(nodes: &[NodeKeys]) -> Vec<WorkerInfo> {
    let mut all = Vec::new();
    for node in nodes.iter().filter(|n| n.live) {
        let Some(summary) = node.keys.get(keys::WORKERS) else {
            continue;
        };
        let Ok(mut workers) = serde_json::from_str::<Vec<WorkerInfo>>(summary) else {
            tracing::warn!(node = %node.id, "worker summary does not decode; skipped");
            continue;
        };
        for worker in &mut workers {
            worker.node = node.id.clone();
        }
        all.extend(workers);
    }
    all.sort_by(|a, b| (&a.node, &a.name).cmp(&(&b.node, &b.name)));
    all
}

/// How far `workers` (this node's, as published) are with `desired` (what this node's config
/// asks of it): `running` when every desired worker is running, ended by its restart type
/// (`exited`) or kept stopped by an operator, and no other worker is still about; `failed` when
/// a desired worker failed (or could not start); `starting` otherwise.
pub(crate) fn applied(
    desired: &std::collections::BTreeMap<String, crate::supervisor::WorkerSpec>,
    workers: &[WorkerInfo],
) -> &'static str {
    let mut state = "running";
    for name in desired.keys() {
        match workers.iter().find(|w| &w.name == name) {
            Some(w) if w.state == "failed" => return "failed",
            Some(w) if w.state == "running" || w.state == "exited" => {}
            Some(w) if w.intent.is_some() => {}
            _ => state = "starting",
        }
    }
    let extra = workers
        .iter()
        .any(|w| !desired.contains_key(&w.name) && w.state != "stopped");
    match extra {
        true => "starting",
        false => state,
    }
}

/// The `herd.applied` value: `version:checksum:state`.
pub(crate) fn encode_applied(id: crate::config::ConfigId, state: &str) -> String {
    format!("{}:{}:{state}", id.version, id.checksum)
}

/// Reads a `herd.applied` value ([`encode_applied`]).
pub(crate) fn parse_applied(text: &str) -> Option<(crate::config::ConfigId, String)> {
    let mut parts = text.splitn(3, ':');
    let id = crate::config::ConfigId {
        version: parts.next()?.parse().ok()?,
        checksum: parts.next()?.parse().ok()?,
    };
    Some((id, parts.next()?.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_round_trip_and_get_their_node() {
        let w = WorkerInfo::not_started("thumbnailer", "no such file");
        let node = NodeKeys {
            id: "b".into(),
            generation: 1,
            live: true,
            keys: [(keys::WORKERS.to_string(), encode(std::slice::from_ref(&w)))].into(),
        };
        let garbage = NodeKeys {
            id: "c".into(),
            generation: 1,
            live: true,
            keys: [(keys::WORKERS.to_string(), "{not json".to_string())].into(),
        };
        let all = cluster_workers(&[node, garbage]);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].node, "b");
        assert_eq!(all[0].state, "failed");
    }

    #[test]
    fn applied_is_running_only_when_every_wanted_worker_runs_or_rests() {
        use crate::supervisor::WorkerSpec;
        let desired: std::collections::BTreeMap<String, WorkerSpec> = ["a", "b"]
            .iter()
            .map(|n| (n.to_string(), WorkerSpec::new(*n, "sleep")))
            .collect();
        let info = |name: &str, state: &str| WorkerInfo {
            name: name.into(),
            state: state.into(),
            ..WorkerInfo::not_started(name, "x")
        };
        let running = [info("a", "running"), info("b", "exited")];
        assert_eq!(applied(&desired, &running), "running");
        assert_eq!(applied(&desired, &[info("a", "running")]), "starting");
        assert_eq!(
            applied(&desired, &[info("a", "running"), info("b", "starting")]),
            "starting"
        );
        assert_eq!(
            applied(&desired, &[info("a", "failed"), info("b", "running")]),
            "failed"
        );
        let mut stopped = info("b", "stopped");
        stopped.intent = Some("stopped".into());
        assert_eq!(
            applied(&desired, &[info("a", "running"), stopped]),
            "running"
        );
        let leftover = [
            info("a", "running"),
            info("b", "running"),
            info("old", "stopping"),
        ];
        assert_eq!(applied(&desired, &leftover), "starting");
    }
}
