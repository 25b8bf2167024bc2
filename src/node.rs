//! A running member of the cluster: [`Node`], the handle that owns it, and [`NodeBuilder`].
//!
//! Starting a node spawns, besides chitchat's gossip server, two tasks of herd's own:
//! the membership watcher (gossip snapshots -> events) and the dispatcher (events -> the
//! [`ClusterMember`](crate::ClusterMember)'s callbacks). Both are tracked and stop on the node's
//! cancellation token.
//!
//! Stopping follows one order. [`Node::leave`]: announce the leave, push it to every live peer
//! and repeat it for the leave-propagation time, then stop the tasks, then stop gossip.
//! [`Node::shutdown`]: stop the tasks and gossip without a word, so peers see a failure. Both are
//! idempotent; whichever runs first decides. Both are bounded: a member callback that has not
//! returned by the shutdown timeout is abandoned (its task aborted) and reported.

mod builder;
mod contact;
mod dispatch;
pub(crate) mod mailbox;
mod messaging;
pub(crate) mod published;
mod seeds;

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chitchat::{Chitchat, ChitchatHandle, ListenerHandle};
use tokio::sync::{broadcast, watch, Mutex};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info};

pub use builder::{
    NodeBuilder, DEFAULT_CLUSTER_ID, DEFAULT_DEAD_NODE_GRACE_PERIOD, DEFAULT_DELIVERY_QUEUE,
    DEFAULT_EVENT_BUFFER, DEFAULT_GOSSIP_INTERVAL, DEFAULT_LISTEN, DEFAULT_MAILBOX,
    DEFAULT_PHI_THRESHOLD, DEFAULT_SHUTDOWN_TIMEOUT, MAX_TAG_KEY, MAX_TAG_VALUE,
    QUORUM_LEASE_MARGIN,
};

use crate::membership::keys;
use crate::membership::transport::Counters;
use crate::{Error, EventStream, GossipStats, Member, MembershipEvent};

/// A running cluster member. Cheap to clone: every clone is a handle to the same node.
///
/// Dropping the last handle stops the node abruptly, as [`shutdown`](Node::shutdown) does but
/// without waiting: peers see a failure. Call [`leave`](Node::leave) to say goodbye first.
/// The member's [`Context`](crate::Context) holds the node weakly, so it does not count.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    id: Arc<str>,
    addr: SocketAddr,
    generation: u64,
    gossip_interval: Duration,
    leave_propagation: Duration,
    chitchat: Arc<Mutex<Chitchat>>,
    handle: std::sync::Mutex<Option<ChitchatHandle>>,
    listeners: std::sync::Mutex<Vec<ListenerHandle>>,
    members: watch::Receiver<Arc<[Member]>>,
    /// Taken when the node stops, so that every [`EventStream`] ends.
    events: std::sync::Mutex<Option<broadcast::Sender<MembershipEvent>>>,
    counters: Arc<Counters>,
    health: Arc<Health>,
    keyring: Option<crate::trust::Keyring>,
    rpc: Arc<crate::rpc::server::Shared>,
    client: Arc<crate::rpc::client::Client>,
    rpc_observer: std::sync::RwLock<Option<RpcObserver>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    shutdown_timeout: Duration,
    /// The callback the dispatcher runs now, if any.
    callback: Arc<dispatch::Current>,
    dispatch_counters: Arc<dispatch::DispatchCounters>,
    /// Aborts the dispatcher task: for a callback that outlived the shutdown timeout.
    dispatcher: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    /// Set when the leave was announced (if graceful) and the tasks were told to stop.
    stopping: tokio::sync::OnceCell<()>,
    /// Set when the tasks and gossip have stopped.
    stopped: tokio::sync::OnceCell<()>,
    /// This node's claims on global names, and the table they are judged by.
    names: Arc<crate::names::Registry>,
}

/// A handle to a node that does not keep it running: what a [`Context`](crate::Context) holds.
#[derive(Clone, Debug, Default)]
pub(crate) struct WeakNode(Weak<Inner>);

impl WeakNode {
    /// The node, while some [`Node`] handle keeps it running.
    pub(crate) fn upgrade(&self) -> Option<Node> {
        self.0
            .upgrade()
            .filter(|inner| !inner.cancel.is_cancelled())
            .map(|inner| Node { inner })
    }
}

tokio::task_local! {
    /// Set in a node's dispatcher task to that node's address: a stop called from one of its
    /// callbacks must not wait for the callback to return.
    static DISPATCHING: usize;
}

/// How long a stop waits for tasks that were aborted after the shutdown timeout.
const ABANDON_WAIT: Duration = Duration::from_secs(1);

/// Whether a node's gossip and membership tasks are keeping up; see [`Node::membership_health`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MembershipHealth {
    /// Why gossip stopped, when chitchat's gossip loop ended or failed while the node was
    /// running. From then on the node hears nothing from its peers and its member list no
    /// longer changes; peers see it as failed. `None`: gossip runs (or the node was stopped).
    pub gossip_failure: Option<String>,
    /// Times the membership watcher found the member's event queue full and waited for the
    /// member's callbacks to catch up ([`NodeBuilder::delivery_queue`]).
    pub delivery_stalls: u64,
}

/// Shared between the node, its watcher and its gossip monitor.
#[derive(Debug, Default)]
pub(crate) struct Health {
    gossip_failure: std::sync::OnceLock<String>,
    delivery_stalls: std::sync::atomic::AtomicU64,
}

impl Health {
    pub(crate) fn delivery_stalled(&self) {
        self.delivery_stalls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Waits for chitchat's gossip loop to end; when it ends before the node stops, records why
/// and logs it.
pub(crate) async fn watch_gossip(
    node: Arc<str>,
    ended: impl std::future::Future<Output = anyhow::Result<()>>,
    health: Arc<Health>,
    cancel: CancellationToken,
) {
    let why = tokio::select! {
        biased;
        _ = cancel.cancelled() => return,
        result = ended => match result {
            Ok(()) => "the gossip loop ended".to_string(),
            Err(err) => format!("the gossip loop failed: {err:#}"),
        },
    };
    error!(node = %node, reason = %why, "gossip stopped while the node runs: it hears nothing from its peers, its member list is frozen and peers will report it as failed; restart the node");
    let _ = health.gossip_failure.set(why);
}

/// What a node's messaging layer refused since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RpcStats {
    /// Frames dropped as malformed (too short, an unknown kind).
    pub bad_frames: u64,
    /// Frames over the size limit.
    pub oversized_frames: u64,
    /// Connections refused, by reason (`no_common_key`, `bad_proof`, `plaintext`, `malformed`,
    /// `timeout`, `closed`, `forged_frame`), every reason listed.
    pub refused: Vec<(&'static str, u64)>,
    /// Connections accepted under the cap ([`NodeBuilder::max_connections`]).
    pub connections_accepted: u64,
    /// Connections accepted and closed at once because the cap was reached.
    pub connections_over_cap: u64,
    /// Accepted connections closed after the idle timeout.
    pub idle_closed: u64,
    /// Connections closed because a started frame stopped arriving (the read timeout).
    pub read_timeouts: u64,
    /// Herd requests answered with a refusal because the most allowed were running.
    pub system_busy: u64,
    /// Replies over the frame limit, answered with an error instead.
    pub oversized_replies: u64,
    /// Calls, casts and replies not sent because their connection's queue was full.
    pub overloaded: u64,
    /// Calls and casts refused because their sender was not a member in this node's view (it
    /// had left, or its join did not arrive in time).
    pub not_member: u64,
    /// Calls dropped unanswered because their deadline had passed when they arrived or before
    /// the member would have started them: the caller had already got
    /// [`Error::CallTimeout`].
    pub expired: u64,
}

/// Told of every call and cast this node makes: kind (`call`, `cast`), outcome (`ok`, `error`,
/// `timeout`), and how long it took.
pub(crate) type RpcObserver = Arc<dyn Fn(&str, &str, Duration) + Send + Sync>;

impl Drop for Inner {
    fn drop(&mut self) {
        // The tasks stop on the token; chitchat's server stops when its handle is dropped.
        self.cancel.cancel();
    }
}

impl Node {
    /// Starts building a node whose id is `id` (unique in the cluster).
    pub fn builder(id: impl Into<String>) -> NodeBuilder {
        NodeBuilder::new(id)
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The address this node gossips on, as peers reach it (the advertise address).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// This incarnation's generation.
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// The live members, this node included, sorted by id.
    pub fn members(&self) -> Vec<Member> {
        self.inner.members.borrow().to_vec()
    }

    /// A watch that changes whenever the member list does; useful to wait for a condition.
    pub fn members_watch(&self) -> watch::Receiver<Arc<[Member]>> {
        self.inner.members.clone()
    }

    /// The membership events this node reports from now on. See [`MembershipEvent`] for the
    /// ordering promises. After the node stopped, the stream is empty.
    pub fn events(&self) -> EventStream {
        let sender = self.inner.events.lock().expect("events lock");
        match sender.as_ref() {
            Some(sender) => EventStream::new(sender.subscribe()),
            None => {
                let (closed, receiver) = broadcast::channel(1);
                drop(closed);
                EventStream::new(receiver)
            }
        }
    }

    /// The node's cluster keys, when it has any ([`NodeBuilder::keyring`]). Changes to it take
    /// effect at once.
    pub fn keyring(&self) -> Option<&crate::trust::Keyring> {
        self.inner.keyring.as_ref()
    }

    /// What the messaging layer refused since the node started.
    pub fn rpc_stats(&self) -> RpcStats {
        let c = &self.inner.rpc.counters;
        let n = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::Relaxed)
        };
        RpcStats {
            connections_accepted: n(&c.accepted),
            connections_over_cap: n(&c.over_cap),
            idle_closed: n(&c.idle_closed),
            read_timeouts: n(&c.read_timeouts),
            system_busy: n(&c.system_busy),
            oversized_replies: n(&c.oversized_replies),
            overloaded: n(&c.overloaded),
            not_member: n(&self.inner.dispatch_counters.not_member),
            expired: n(&c.expired),
            bad_frames: c.bad_frames.load(std::sync::atomic::Ordering::Relaxed),
            oversized_frames: c
                .oversized_frames
                .load(std::sync::atomic::Ordering::Relaxed),
            refused: crate::rpc::server::REFUSED_REASONS
                .iter()
                .zip(&c.refused)
                .map(|(reason, n)| (*reason, n.load(std::sync::atomic::Ordering::Relaxed)))
                .collect(),
        }
    }

    /// Gossip traffic counters since the node started.
    pub fn gossip_stats(&self) -> GossipStats {
        self.inner.counters.stats()
    }

    /// Whether gossip runs and the member keeps up with membership events.
    pub fn membership_health(&self) -> MembershipHealth {
        MembershipHealth {
            gossip_failure: self.inner.health.gossip_failure.get().cloned(),
            delivery_stalls: self
                .inner
                .health
                .delivery_stalls
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// True while the node runs and its gossip loop has not ended: false after
    /// [`leave`](Node::leave) or [`shutdown`](Node::shutdown), and when gossip failed
    /// ([`MembershipHealth::gossip_failure`] says why).
    pub fn gossip_alive(&self) -> bool {
        self.running().is_ok() && self.inner.health.gossip_failure.get().is_none()
    }

    /// Breaks the gossip socket as a failing network interface would: its next receive fails
    /// and chitchat's gossip loop ends. For tests of liveness reporting only.
    #[doc(hidden)]
    pub fn break_gossip_socket(&self) {
        self.inner.counters.break_socket();
    }

    /// Sets (or changes) one of this node's tags. The change is pushed to every live peer at
    /// once, and peers report it as `Updated`, usually within a round trip.
    ///
    /// # Errors
    /// An empty key, a key over [`MAX_TAG_KEY`] or a value over [`MAX_TAG_VALUE`] bytes
    /// ([`Error::InvalidTag`]; the tag is left as it was), or a node that has stopped.
    pub async fn set_tag(&self, key: &str, value: &str) -> Result<(), Error> {
        builder::check_tag(key, value)?;
        self.running()?;
        {
            let mut chitchat = self.inner.chitchat.lock().await;
            chitchat.self_node_state().set(keys::tag_key(key), value);
        }
        self.inner.push_to_peers().await;
        Ok(())
    }

    /// Forgets every incarnation of node `id` that the failure detector holds dead, now rather
    /// than after the dead-node grace period: its state goes (with a tombstone of its last
    /// heartbeat, so older gossip does not bring it back) and it is no longer gossiped to.
    /// Returns how many incarnations were forgotten; a live node is never forgotten.
    pub(crate) async fn forget_dead(&self, id: &str) -> usize {
        let mut chitchat = self.inner.chitchat.lock().await;
        let dead: Vec<_> = chitchat
            .dead_nodes()
            .filter(|c| &*c.node_id == id)
            .cloned()
            .collect();
        dead.iter().filter(|c| chitchat.forget_dead_node(c)).count()
    }

    /// Removes one of this node's tags, if it has it.
    ///
    /// # Errors
    /// A node that has stopped.
    pub async fn remove_tag(&self, key: &str) -> Result<(), Error> {
        self.running()?;
        {
            let mut chitchat = self.inner.chitchat.lock().await;
            let state = chitchat.self_node_state();
            let key = keys::tag_key(key);
            if state.get(&key).is_some() {
                state.delete(&key);
            }
        }
        self.inner.push_to_peers().await;
        Ok(())
    }

    /// Leaves the cluster gracefully: announces the leave, pushes it to every live peer at once,
    /// repeats it for the leave-propagation time, then stops. Every peer reports this node as
    /// `Left(Graceful)`, usually within one round trip. Calling it again, or after
    /// [`shutdown`](Node::shutdown), does nothing more; a second call made while the first runs
    /// waits for it.
    ///
    /// It returns within the leave-propagation time or the shutdown timeout
    /// ([`NodeBuilder::shutdown_timeout`], counted from the call), whichever is longer, plus a
    /// second: a member callback still running then is abandoned. Called from one of the
    /// member's own callbacks (through [`Context::node`](crate::Context::node)), it returns after
    /// the announcement, and the node finishes stopping when that callback returns;
    /// [`Context::leave`](crate::Context::leave) is the form that does not wait at all.
    ///
    /// # Errors
    /// [`Error::CallbackAbandoned`]: a callback had not returned by the shutdown timeout; the
    /// node stopped all the same.
    pub async fn leave(&self) -> Result<(), Error> {
        self.stop(true).await
    }

    /// Stops the node without announcing it: peers detect a failure. Waits until the tasks and
    /// the gossip server have stopped, within the shutdown timeout as [`leave`](Node::leave)
    /// does. Idempotent.
    ///
    /// # Errors
    /// [`Error::CallbackAbandoned`], as for [`leave`](Node::leave).
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.stop(false).await
    }

    /// This node's names registry.
    pub(crate) fn names_registry(&self) -> &Arc<crate::names::Registry> {
        &self.inner.names
    }

    /// A watch that changes after each change of the names table, once this node's claims were
    /// judged by it.
    pub(crate) fn names_watch(&self) -> watch::Receiver<u64> {
        self.inner.names.watch()
    }

    /// A weak handle to this node.
    pub(crate) fn downgrade(&self) -> WeakNode {
        WeakNode(Arc::downgrade(&self.inner))
    }

    async fn stop(&self, graceful: bool) -> Result<(), Error> {
        let inner = &self.inner;
        let deadline = Instant::now() + inner.shutdown_timeout;
        inner
            .stopping
            .get_or_init(|| async {
                // Names are given up before peers can hand them on.
                inner.names.stop();
                if graceful {
                    inner.announce_leave().await;
                }
                inner.cancel.cancel();
            })
            .await;
        let me = Arc::as_ptr(inner) as usize;
        if DISPATCHING.try_with(|id| *id == me).unwrap_or(false) {
            // The dispatcher ends when the callback running this returns: finish from outside.
            // Not in the node's tracker, which this task waits for; it ends within the shutdown
            // timeout plus a second, like any stop, and owns the handle that keeps the node
            // alive until then.
            let node = self.clone();
            tokio::spawn(async move {
                let _ = node
                    .finish(Instant::now() + node.inner.shutdown_timeout)
                    .await;
            });
            return Ok(());
        }
        self.finish(deadline).await
    }

    /// Waits for the tasks (until `deadline`, then aborts the dispatcher) and stops gossip. Once.
    async fn finish(&self, deadline: Instant) -> Result<(), Error> {
        let inner = &self.inner;
        let mut abandoned = None;
        let report = &mut abandoned;
        inner
            .stopped
            .get_or_init(|| async move {
                if tokio::time::timeout_at(deadline, inner.tracker.wait())
                    .await
                    .is_err()
                {
                    let callback = inner.callback.get();
                    if let Some(dispatcher) = inner.dispatcher.lock().expect("dispatcher lock").take() {
                        dispatcher.abort();
                    }
                    let waited = inner.shutdown_timeout;
                    error!(node = %inner.id, callback = callback.unwrap_or("none"), ?waited, "the node's tasks did not stop in time; the member's callback is abandoned");
                    let _ = tokio::time::timeout(ABANDON_WAIT, inner.tracker.wait()).await;
                    *report = callback.map(|callback| Error::CallbackAbandoned {
                        node: inner.id.to_string(),
                        callback,
                        waited,
                    });
                }
                inner.listeners.lock().expect("listeners lock").clear();
                inner.events.lock().expect("events lock").take();
                let handle = inner.handle.lock().expect("handle lock").take();
                if let Some(handle) = handle {
                    if let Err(err) = handle.shutdown().await {
                        debug!(node = %inner.id, error = %err, "gossip server stopped with an error");
                    }
                }
                info!(node = %inner.id, "node stopped");
            })
            .await;
        abandoned.map_or(Ok(()), Err)
    }

    pub(crate) fn running(&self) -> Result<(), Error> {
        if self.inner.stopping.initialized() || self.inner.cancel.is_cancelled() {
            return Err(Error::Stopped {
                node: self.inner.id.to_string(),
            });
        }
        Ok(())
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .field("addr", &self.inner.addr)
            .field("generation", &self.inner.generation)
            .finish()
    }
}

impl Inner {
    /// Sets the leaving flag and pushes it to every live peer, repeatedly, for the
    /// leave-propagation time.
    async fn announce_leave(&self) {
        {
            let mut chitchat = self.chitchat.lock().await;
            chitchat.self_node_state().set(keys::LEAVING, "1");
        }
        info!(node = %self.id, "leaving the cluster");
        let deadline = Instant::now() + self.leave_propagation;
        let pause = (self.gossip_interval / 2).max(Duration::from_millis(10));
        loop {
            self.push_to_peers().await;
            if Instant::now() + pause > deadline {
                break;
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Starts a gossip exchange with each of `addrs` that is not the gossip address of a live
    /// node; returns how many it started.
    pub(crate) async fn gossip_with_unreached(&self, addrs: &[SocketAddr]) -> usize {
        let unreached: Vec<SocketAddr> = {
            let chitchat = self.chitchat.lock().await;
            let live: std::collections::HashSet<SocketAddr> = chitchat
                .live_nodes()
                .map(|id| id.gossip_advertise_addr)
                .collect();
            addrs
                .iter()
                .filter(|addr| !live.contains(addr))
                .copied()
                .collect()
        };
        self.gossip_with(&unreached);
        unreached.len()
    }

    /// Starts a gossip exchange with each of `addrs` now.
    fn gossip_with(&self, addrs: &[SocketAddr]) {
        if let Some(handle) = self.handle.lock().expect("handle lock").as_ref() {
            for addr in addrs {
                let _ = handle.gossip(*addr);
            }
        }
    }

    /// Starts a gossip exchange with every live peer now, instead of waiting for the next rounds:
    /// each peer answers with its digest and gets this node's news in return, within a round
    /// trip. Used for changes peers should hear at once (leave, tags).
    async fn push_to_peers(&self) {
        let peers: Vec<SocketAddr> = {
            let chitchat = self.chitchat.lock().await;
            let me = chitchat.self_chitchat_id().clone();
            chitchat
                .live_nodes()
                .filter(|id| **id != me)
                .map(|id| id.gossip_advertise_addr)
                .collect()
        };
        self.gossip_with(&peers);
    }
}
