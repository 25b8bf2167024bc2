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

use chitchat::{Chitchat, ChitchatId, NodeState};
use tokio::sync::{broadcast, mpsc, watch, Mutex, Notify};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::diff::diff;
use super::incarnations::Incarnations;
use super::snapshot::Snapshot;
use crate::{Member, MembershipEvent};

/// What the watcher hands the dispatcher, in order.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// This node joined the cluster; the members, itself included.
    Welcome(Vec<Member>),
    /// A change after the welcome.
    Event(MembershipEvent),
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
}

impl Watcher {
    /// Runs until `cancel` fires or chitchat stops.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let mut state = State {
            joined: false,
            prev: Snapshot::default(),
            incarnations: Incarnations::default(),
        };
        if self.founder {
            state.joined = true;
            let me = self.members.borrow().to_vec();
            self.deliver(Delivery::Welcome(me)).await;
        }
        loop {
            self.refresh(&mut state).await;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                changed = self.live.changed() => if changed.is_err() { break },
                _ = self.nudge.notified() => {}
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
        if !state.joined {
            if next.has_peer(&self.self_id) {
                state.joined = true;
                self.deliver(Delivery::Welcome(next.member_list())).await;
                state.prev = next;
            }
            return;
        }
        for event in diff(&self.self_id, &state.prev, &next) {
            debug!(node = %self.self_id, ?event, "membership event");
            let _ = self.events.send(event.clone());
            self.deliver(Delivery::Event(event)).await;
        }
        state.prev = next;
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

struct State {
    joined: bool,
    prev: Snapshot,
    /// Which incarnation of each id is the member; see [`Incarnations`].
    incarnations: Incarnations,
}
