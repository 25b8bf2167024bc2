//! Placed workers: which of this node's workers with `placement = "one"` or
//! `placement = { instances = k }` run here.
//!
//! The candidates for a worker are the live agents whose tags select its group. Rendezvous
//! hashing of (worker, node id) ranks them ([`crate::placement`]), alike on every node:
//!
//! - `instances = k`: the `k` highest run it;
//! - `one`: the highest claims the global name `herd.placed/<worker>`
//!   ([`crate::names`], a quorum name with `quorum = true`) and runs the worker while it holds
//!   it. A node that no longer ranks highest stops the worker first and withdraws its claim
//!   after, so the next one starts only once it has stopped; a node that lost the name (a
//!   conflict after a heal, or its majority) stops it at once.
//!
//! Every decision is logged once per change, and published with the worker's status
//! ("one → c", "instances=2 → a,c").

use std::collections::{BTreeMap, BTreeSet};

use tracing::{info, warn};

use crate::config::{ClusterConfig, Placement, WorkerConfig};
use crate::names::{NameClaim, NameOptions};
use crate::{Member, Node};

/// The prefix of the global name a `placement = "one"` worker runs under.
pub(crate) const NAME_PREFIX: &str = "herd.placed/";

/// The global name of singleton `worker`.
pub(crate) fn name_of(worker: &str) -> String {
    format!("{NAME_PREFIX}{worker}")
}

/// This node's placement state, kept by the agent's core.
#[derive(Default)]
pub(crate) struct Placed {
    /// Claims on the names of the singletons for which this node ranks highest.
    claims: BTreeMap<String, NameClaim>,
    /// Claims this node gives up, kept until the worker has stopped here.
    releasing: BTreeMap<String, NameClaim>,
    /// Workers of `releasing` whose stop is under way.
    stopping: BTreeSet<String>,
    /// The placed workers that run here, by the last decision.
    here: BTreeSet<String>,
    /// The last decision of each placed worker this node may run: logged when it changes.
    decisions: BTreeMap<String, String>,
    /// Why a singleton's name could not be claimed here, logged once per reason.
    refused: BTreeMap<String, String>,
}

impl Placed {
    /// Whether `worker` runs here: always for `placement = "each"`, otherwise by the last
    /// decision.
    pub(crate) fn runs_here(&self, worker: &WorkerConfig) -> bool {
        worker.placement == Placement::Each || self.here.contains(&worker.name)
    }

    /// The decision shown for `worker`, if it is placed.
    pub(crate) fn decision(&self, worker: &str) -> Option<&str> {
        self.decisions.get(worker).map(String::as_str)
    }

    /// Whether `config` places any worker (and so needs a decision at each membership change).
    pub(crate) fn any(config: &ClusterConfig) -> bool {
        config
            .workers
            .iter()
            .any(|worker| worker.placement != Placement::Each)
    }

    /// A stop of `worker` was queued: a claim being released waits for it.
    pub(crate) fn stop_queued(&mut self, worker: &str) {
        if self.releasing.contains_key(worker) {
            self.stopping.insert(worker.to_string());
        }
    }

    /// `worker` stopped here: a claim waiting for it is withdrawn.
    pub(crate) fn stopped(&mut self, worker: &str) {
        self.stopping.remove(worker);
        if self.releasing.remove(worker).is_some() {
            info!(worker, "placed worker stopped here; its name is released");
        }
    }

    /// Decides where each placed worker of `config` that this node's tags select runs, given the
    /// live `members` and which of them are `agents`; claims and releases singleton names.
    /// `running` is whether a worker runs here now.
    pub(crate) async fn decide(
        &mut self,
        node: &Node,
        config: Option<&ClusterConfig>,
        tags: &BTreeMap<String, String>,
        members: &[Member],
        agents: &BTreeSet<String>,
        running: impl Fn(&str) -> bool,
    ) {
        let me = node.id();
        let mut here = BTreeSet::new();
        let mut placed = BTreeSet::new();
        let workers = config
            .into_iter()
            .flat_map(|config| config.workers_for(tags))
            .filter(|worker| worker.placement != Placement::Each);
        for worker in workers {
            placed.insert(worker.name.clone());
            let mut candidates: Vec<&str> = members
                .iter()
                .filter(|m| agents.contains(m.id()) && worker.runs_on(m.tags()))
                .map(Member::id)
                .collect();
            if !candidates.contains(&me) {
                candidates.push(me);
            }
            let decision = match worker.placement {
                Placement::Each => continue,
                Placement::Instances(k) => {
                    let chosen = crate::placement::place(&worker.name, candidates, k as usize);
                    if chosen.contains(&me) {
                        here.insert(worker.name.clone());
                    }
                    format!("instances={k} → {}", chosen.join(","))
                }
                Placement::One => {
                    let top = crate::placement::place(&worker.name, candidates, 1);
                    if top.first() == Some(&me) {
                        self.claim(node, worker).await;
                    } else if let Some(claim) = self.claims.remove(&worker.name) {
                        self.releasing.insert(worker.name.clone(), claim);
                    }
                    if self
                        .claims
                        .get(&worker.name)
                        .is_some_and(NameClaim::is_owner)
                    {
                        here.insert(worker.name.clone());
                    }
                    let owner = node.whereis(&name_of(&worker.name));
                    let quorum = if worker.quorum { " (quorum)" } else { "" };
                    match owner {
                        Some(owner) => format!("one{quorum} → {}", owner.id()),
                        None => format!(
                            "one{quorum} → none yet (next: {})",
                            top.first().copied().unwrap_or("-")
                        ),
                    }
                }
            };
            if self.decisions.get(&worker.name) != Some(&decision) {
                info!(node = %me, worker = %worker.name, placement = %decision, runs_here = here.contains(&worker.name), "placement decided");
                self.decisions.insert(worker.name.clone(), decision);
            }
        }
        // Singletons no longer placed here at all (removed, another group, another placement).
        let gone: Vec<String> = self
            .claims
            .keys()
            .filter(|name| !placed.contains(*name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(claim) = self.claims.remove(&name) {
                self.releasing.insert(name, claim);
            }
        }
        self.decisions.retain(|name, _| placed.contains(name));
        self.refused.retain(|name, _| placed.contains(name));
        // A claim given up is withdrawn at once unless this node holds the name and its worker
        // still runs (or is stopping) here: then after the stop.
        let stopping = &self.stopping;
        self.releasing
            .retain(|name, claim| claim.is_owner() && (running(name) || stopping.contains(name)));
        self.here = here;
    }

    /// Claims singleton `worker`'s name, if this node does not already.
    async fn claim(&mut self, node: &Node, worker: &WorkerConfig) {
        if self.claims.contains_key(&worker.name) {
            return;
        }
        if let Some(claim) = self.releasing.remove(&worker.name) {
            // Ranked highest again before the stop finished: keep the place in the queue.
            self.stopping.remove(&worker.name);
            self.claims.insert(worker.name.clone(), claim);
            return;
        }
        let options = NameOptions::default().quorum(worker.quorum);
        match node.claim_name_with(&name_of(&worker.name), options).await {
            Ok(claim) => {
                self.refused.remove(&worker.name);
                self.claims.insert(worker.name.clone(), claim);
            }
            Err(err) => {
                let err = err.to_string();
                if self.refused.get(&worker.name) != Some(&err) {
                    warn!(node = %node.id(), worker = %worker.name, error = %err, "cannot claim the placed worker's name; it does not run here");
                    self.refused.insert(worker.name.clone(), err);
                }
            }
        }
    }
}
