//! The membership watcher task: one per node. It takes a [`Snapshot`] whenever chitchat reports a
//! change in the live nodes (checked once per gossip round) or a peer's leave announcement arrives
//! (at once), diffs it against the previous one, and hands the events on: to the dispatcher that
//! calls the [`ClusterMember`](crate::ClusterMember), and to every [`EventStream`](super::EventStream).
//!
//! The dispatcher's queue is bounded: when it is full, the watcher waits for the member (and counts
//! the wait), so no event is lost or reordered; gossip runs on chitchat's own task meanwhile.
//!
//! It stops when the node's cancellation token fires or chitchat stops.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chitchat::{Chitchat, ChitchatId, NodeState};
use tokio::sync::{broadcast, mpsc, watch, Mutex, Notify};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::diff::diff;
use super::incarnations::Incarnations;
use super::snapshot::Snapshot;
use super::transport::Counters;
use crate::names::table::{Input, Resolver, Table};
use crate::{Member, MembershipEvent};

/// What the watcher hands the dispatcher, in order.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// This node joined the cluster; the members, itself included.
    Welcome(Vec<Member>),
    /// A change after the welcome.
    Event(MembershipEvent),
    /// A global name's owner changed (after the welcome): the new owner, or none.
    Name(String, Option<Member>),
}

/// When a node holds quorum names: see [`crate::names`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct QuorumRule {
    /// The cluster's expected size; a majority is more than half of it.
    pub(crate) expected: usize,
    /// A peer counts toward the majority when it completed a gossip exchange with this node both
    /// ways within this window.
    pub(crate) hold: Duration,
    /// How long a quorum claimant that vanished without a leave keeps its rank.
    pub(crate) lease: Duration,
}

impl QuorumRule {
    /// How often a node re-evaluates its majority and the ghosts' leases.
    pub(crate) const TICK: Duration = Duration::from_millis(50);

    /// The smallest majority of the expected members.
    pub(crate) fn majority(&self) -> usize {
        self.expected / 2 + 1
    }
}

/// The watcher's inputs and outputs.
pub(crate) struct Watcher {
    pub(crate) self_id: Arc<str>,
    pub(crate) chitchat: Arc<Mutex<Chitchat>>,
    /// chitchat's live-node map; it changes when liveness or a node's max version changes.
    pub(crate) live: watch::Receiver<BTreeMap<ChitchatId, NodeState>>,
    /// Fired by a chitchat key listener when a leave announcement arrives.
    pub(crate) nudge: Arc<Notify>,
    /// Whether this node founds the cluster (it has no seeds but itself).
    pub(crate) founder: bool,
    pub(crate) members: watch::Sender<Arc<[Member]>>,
    pub(crate) events: broadcast::Sender<MembershipEvent>,
    /// Bounded: when the dispatcher is this far behind, the watcher waits for it.
    pub(crate) deliveries: mpsc::Sender<Delivery>,
    /// Counts the times the watcher had to wait for the dispatcher.
    pub(crate) stalls: Arc<crate::node::Health>,
    /// The global names as this node resolves them.
    pub(crate) names: watch::Sender<Arc<Table>>,
    /// Set when the node was given an expected cluster size.
    pub(crate) quorum: Option<QuorumRule>,
    /// How long the claims of a peer not yet seen live keep their rank ([`crate::names`]).
    pub(crate) settle: Duration,
    /// Where the transport records two-way contact with peers.
    pub(crate) counters: Arc<Counters>,
}

impl Watcher {
    /// Runs until `cancel` fires or chitchat stops.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let mut state = State {
            joined: false,
            prev: Snapshot::default(),
            incarnations: Incarnations::default(),
            resolver: Resolver::default(),
            majority_since: None,
            told: Table::default(),
        };
        if self.founder {
            state.joined = true;
            let me = self.members.borrow().to_vec();
            self.deliver(Delivery::Welcome(me)).await;
        }
        loop {
            self.refresh(&mut state).await;
            // With quorum names, the majority and the leases change with time alone; a claimant
            // not yet judged stops keeping its rank with time alone too.
            let expiry = state.resolver.next_expiry();
            let tick = match self.quorum {
                Some(_) => {
                    let tick = tokio::time::Instant::now() + QuorumRule::TICK;
                    Some(expiry.map_or(tick, |at| at.min(tick)))
                }
                None => expiry,
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                changed = self.live.changed() => if changed.is_err() { break },
                _ = self.nudge.notified() => {}
                _ = sleep_until(tick) => {}
            }
        }
        debug!(node = %self.self_id, "membership watcher stopped");
    }

    async fn refresh(&mut self, state: &mut State) {
        let next = {
            let chitchat = self.chitchat.lock().await;
            Snapshot::read(&chitchat, &mut state.incarnations)
        };
        if next.members.contains_key(&*self.self_id) {
            let list: Arc<[Member]> = next.member_list().into();
            self.members.send_if_modified(|current| {
                let changed = **current != *list;
                if changed {
                    *current = list;
                }
                changed
            });
        }
        let table = Arc::new(state.resolver.resolve(Input {
            self_id: &self.self_id,
            members: &next.members,
            claims: &next.claims,
            departed: &next.departed,
            quorum: self.has_quorum(&next, &mut state.majority_since),
            lease: self.quorum.map_or(Duration::ZERO, |rule| rule.lease),
            unjudged: &next.unjudged,
            settle: self.settle,
            now: tokio::time::Instant::now(),
        }));
        self.names.send_if_modified(|current| {
            let changed = **current != *table;
            if changed {
                *current = table.clone();
            }
            changed
        });
        if !state.joined {
            if next.has_peer(&self.self_id) {
                state.joined = true;
                self.deliver(Delivery::Welcome(next.member_list())).await;
                state.prev = next;
                self.tell_names(state, &table).await;
            }
            return;
        }
        for event in diff(&self.self_id, &state.prev, &next) {
            debug!(node = %self.self_id, ?event, "membership event");
            let _ = self.events.send(event.clone());
            self.deliver(Delivery::Event(event)).await;
        }
        state.prev = next;
        self.tell_names(state, &table).await;
    }

    /// Whether this node holds quorum names: it has seen a majority of the expected members
    /// (itself and the members that completed a gossip exchange with it both ways within the hold
    /// window) for the whole of the last hold window. A majority counts at once when it is lost,
    /// and only after a hold window when it is (re)gained: time for a node that rejoins, or
    /// starts, to hear the claims the majority made without it (peers it does not yet see as
    /// live count toward nothing) before it judges any. True without a rule.
    fn has_quorum(
        &self,
        snapshot: &Snapshot,
        majority_since: &mut Option<tokio::time::Instant>,
    ) -> bool {
        let Some(rule) = self.quorum else {
            return true;
        };
        let now = tokio::time::Instant::now();
        if !self.sees_majority(snapshot, rule) {
            *majority_since = None;
            return false;
        }
        now.duration_since(*majority_since.get_or_insert(now)) >= rule.hold
    }

    /// Whether a majority of the expected members are heard both ways within the hold window.
    fn sees_majority(&self, snapshot: &Snapshot, rule: QuorumRule) -> bool {
        let since = tokio::time::Instant::now()
            .checked_sub(rule.hold)
            .unwrap_or_else(tokio::time::Instant::now);
        let peers = snapshot
            .members
            .values()
            .filter(|member| *member.id != *self.self_id)
            .map(|member| &member.addr);
        let heard = self.counters.contact.heard_both_ways_since(peers, since);
        1 + heard >= rule.majority()
    }

    /// Delivers a [`Delivery::Name`] for each name whose owner differs from what the member was
    /// told last, in name order.
    async fn tell_names(&self, state: &mut State, table: &Table) {
        let names: std::collections::BTreeSet<&String> =
            state.told.names.keys().chain(table.names.keys()).collect();
        for name in names {
            let before = state.told.owner(name).map(|m| (&m.id, m.generation));
            let now = table.owner(name);
            if before != now.map(|m| (&m.id, m.generation)) {
                debug!(node = %self.self_id, name = %name, owner = ?now.map(|m| &m.id), "name owner changed");
                self.deliver(Delivery::Name(name.clone(), now.cloned()))
                    .await;
            }
        }
        state.told = table.clone();
    }

    /// Hands one delivery to the dispatcher, waiting (and counting the wait) when its queue is
    /// full. Gossip does not wait: chitchat runs on its own task.
    async fn deliver(&self, delivery: Delivery) {
        match self.deliveries.try_send(delivery) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(delivery)) => {
                self.stalls.delivery_stalled();
                debug!(node = %self.self_id, "the member is behind on membership events; waiting for it");
                let _ = self.deliveries.send(delivery).await;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct State {
    joined: bool,
    prev: Snapshot,
    /// Ghosts of quorum claimants, kept between refreshes.
    resolver: Resolver,
    /// Since when this node has seen a majority without a break (quorum rule only).
    majority_since: Option<tokio::time::Instant>,
    /// The names as the member was last told of them.
    told: Table,
    /// Which incarnation of each id is the member; see [`Incarnations`].
    incarnations: Incarnations,
}
