//! What `GET /v1/health` reports: whether this node can do its job, and if not, why.
//!
//! A node is unhealthy (503) when, checked in this order:
//!
//! | `status` | when |
//! |---|---|
//! | `gossip_down` | its gossip loop has ended or failed: it neither hears nor is heard |
//! | `supervisor_gave_up` | its supervisor gave up (restarts of its workers over the node's limit): its workers are down until an operator starts them |
//! | `config_behind` | a live member has held a newer cluster config than this node's for longer than the agent's `health_config_lag` (default [`DEFAULT_HEALTH_CONFIG_LAG`]): a config it refused (unsigned, say) or cannot read |
//!
//! The answer names the first in `status` and `reason`, and every one in `problems`. The lag is
//! watched by a task of the agent once a second (`watch_lag`), so it counts from when this
//! node first saw a newer config on a member, not from the first health check.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::handlers::ConfigWatch;
use super::Agent;
use crate::config::ConfigId;
use crate::Node;

/// How long a node may hold an older config than a live member's before it is unhealthy.
pub const DEFAULT_HEALTH_CONFIG_LAG: Duration = Duration::from_secs(60);
/// How often the lag is checked.
const LAG_CHECK: Duration = Duration::from_secs(1);

/// One reason a node is unhealthy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `gossip_down`, `supervisor_gave_up` or `config_behind`.
    pub status: &'static str,
    /// What is wrong, for a person.
    pub reason: String,
}

/// A newer config than this node's, held by a live member, since when this node saw it.
#[derive(Clone, Debug)]
pub(crate) struct Lag {
    ours: Option<ConfigId>,
    newest: ConfigId,
    holder: String,
    since: Instant,
}

/// The lag as the watcher last saw it; `None`: not behind.
pub(crate) type LagCell = Arc<Mutex<Option<Lag>>>;

/// Every second until `cancel`: compares this node's config with the newest a live member
/// holds, and records since when this node has been behind.
pub(crate) async fn watch_lag(
    node: Node,
    current: ConfigWatch,
    cell: LagCell,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(LAG_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ours = current.borrow().as_ref().map(|c| c.id());
        let nodes = node
            .keys_with_prefix(crate::membership::keys::CONFIG_PREFIX, false)
            .await;
        let newest = nodes
            .iter()
            .filter(|n| n.id != node.id())
            .filter_map(|n| Some((super::sync::config_id_of(n)?, n.id.clone())))
            .max();
        let mut lag = cell.lock().expect("lag lock");
        match newest {
            Some((newest, holder)) if ours.is_none_or(|ours| newest > ours) => {
                let since = lag.as_ref().map_or_else(Instant::now, |l| l.since);
                *lag = Some(Lag {
                    ours,
                    newest,
                    holder,
                    since,
                });
            }
            _ => *lag = None,
        }
    }
}

impl Agent {
    /// Why this node is unhealthy, worst first; empty when it is healthy.
    pub fn health_problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let node = &self.inner.node;
        if !node.gossip_alive() {
            let reason = node
                .membership_health()
                .gossip_failure
                .unwrap_or_else(|| "the node has stopped".into());
            problems.push(Problem {
                status: "gossip_down",
                reason,
            });
        }
        if let Some(reason) = self.inner.gave_up.borrow().clone() {
            problems.push(Problem {
                status: "supervisor_gave_up",
                reason: format!(
                    "the supervisor gave up: {reason}; `herd start NAME` brings a worker back"
                ),
            });
        }
        let lag = self.inner.lag.lock().expect("lag lock").clone();
        if let Some(lag) = lag {
            let behind = lag.since.elapsed();
            if behind >= self.inner.health_config_lag {
                let ours = match lag.ours {
                    Some(ours) => format!("version {}", ours.version),
                    None => "no config".to_string(),
                };
                problems.push(Problem {
                    status: "config_behind",
                    reason: format!(
                        "this node holds {ours}; {} holds version {} (for {} s): see this node's log for why it was not adopted",
                        lag.holder,
                        lag.newest.version,
                        behind.as_secs()
                    ),
                });
            }
        }
        problems
    }
}
