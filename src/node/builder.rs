//! [`NodeBuilder`]: the settings of a node, their defaults in one place, and the start sequence.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::Transport;
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatId, FailureDetectorConfig, ProtocolVersion,
};
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use super::{dispatch, seeds, Health, Inner, Node};
use crate::membership::keys;
use crate::membership::transport::{Counters, GossipTransport, Protection};
use crate::membership::watcher::Watcher;
use crate::trust::Keyring;
use crate::{rpc, ClusterMember, Context, Error, Member};

mod generation;

/// Default gossip listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7946";
/// Default cluster id: nodes of different clusters never merge.
pub const DEFAULT_CLUSTER_ID: &str = "herd";
/// Default time between gossip rounds. Each round a node sends its digest to three peers, so news
/// reaches every node of a 50-node cluster in a few rounds (about 1 s). A graceful leave does not
/// wait for rounds: it is pushed to every peer at once.
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_millis(200);
/// Default phi threshold of the failure detector. chitchat's phi is the time since a peer's last
/// heartbeat divided by the mean interval between its heartbeats, so a peer is declared dead
/// after about `phi_threshold` mean intervals of silence: about 1.5–2.5 s at the default gossip
/// interval. 8 gave hundreds of false failures in a minute on a loaded 2-core machine; 12 gave
/// none (see the README and BENCHMARKS.md for the measurements).
pub const DEFAULT_PHI_THRESHOLD: f64 = 12.0;
/// Default time a dead member's state is kept before it is forgotten.
pub const DEFAULT_DEAD_NODE_GRACE_PERIOD: Duration = Duration::from_secs(60 * 60);
/// The longest node id, in bytes (it travels in every connection's handshake).
pub const MAX_NODE_ID: usize = 255;
/// The longest tag key, in bytes.
pub const MAX_TAG_KEY: usize = 128;
/// The longest tag value, in bytes: well under what one gossip update carries, so a tag never
/// stalls the keys published after it.
pub const MAX_TAG_VALUE: usize = 4096;
/// Calls and casts waiting for the member; beyond this, callers get "queue full" at once.
const MESSAGE_QUEUE: usize = 4096;
/// Default capacity of each [`EventStream`](crate::EventStream)'s buffer.
pub const DEFAULT_EVENT_BUFFER: usize = 4096;
/// Default capacity of the queue of membership events waiting for the member's callbacks.
pub const DEFAULT_DELIVERY_QUEUE: usize = 1024;
/// Default bound of a member's mailbox: messages it sent itself and has not handled yet, timers
/// not fired yet and later-calls not answered yet, together.
pub const DEFAULT_MAILBOX: usize = 4096;
/// Default time [`Node::leave`] and [`Node::shutdown`] wait for a member callback to return.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat intervals observed for each peer, for the failure detector's mean.
const SAMPLING_WINDOW: usize = 200;
/// A silence longer than this many gossip intervals (2 s at the default) is about the time that
/// gets a peer declared failed: it is a gap (a partition, a pause), not a sample of the peer's
/// heartbeat rhythm, and is left out of the mean. Counted in, each partition would raise the mean
/// and slow the next detection (measured: 1.5 s to the first, 3 s after a few partitions).
const MAX_HEARTBEAT_GAP_ROUNDS: u32 = 10;

/// How many gossip intervals the name claims of a peer this node holds state for but does not
/// yet see live keep their rank (see [`crate::names`]): a node that just started sees each peer
/// live only at its second heartbeat, and must not take a name that peer holds meanwhile.
const NAME_SETTLE_ROUNDS: u32 = 10;

/// Settings for a [`Node`], built with [`Node::builder`] and consumed by [`NodeBuilder::start`].
#[derive(Clone, Debug)]
pub struct NodeBuilder {
    id: String,
    listen: SocketAddr,
    advertise: Option<SocketAddr>,
    seeds: Vec<String>,
    cluster_id: String,
    tags: BTreeMap<String, String>,
    gossip_interval: Duration,
    phi_threshold: f64,
    leave_propagation: Option<Duration>,
    dead_node_grace_period: Duration,
    compress_digests: bool,
    rpc_listen: Option<SocketAddr>,
    rpc_limits: rpc::server::Limits,
    keyring: Option<Keyring>,
    verify_incoming: bool,
    event_buffer: usize,
    delivery_queue: usize,
    mailbox: usize,
    shutdown_timeout: Duration,
    generation_file: Option<PathBuf>,
    generation: Option<u64>,
    expected_members: Option<usize>,
    quorum_hold: Option<Duration>,
    agent: bool,
}

/// The lease's margin over the hold window: what the owner of a quorum name may take, past the
/// hold window, to notice it lost its majority (the watcher re-evaluates every 50 ms).
pub const QUORUM_LEASE_MARGIN: Duration = Duration::from_millis(500);

impl NodeBuilder {
    pub(super) fn new(id: impl Into<String>) -> Self {
        NodeBuilder {
            id: id.into(),
            listen: DEFAULT_LISTEN
                .parse()
                .expect("the default listen address parses"),
            advertise: None,
            seeds: Vec::new(),
            cluster_id: DEFAULT_CLUSTER_ID.into(),
            tags: BTreeMap::new(),
            gossip_interval: DEFAULT_GOSSIP_INTERVAL,
            phi_threshold: DEFAULT_PHI_THRESHOLD,
            leave_propagation: None,
            dead_node_grace_period: DEFAULT_DEAD_NODE_GRACE_PERIOD,
            compress_digests: false,
            rpc_listen: None,
            rpc_limits: rpc::server::Limits::new(crate::rpc::DEFAULT_MAX_FRAME),
            keyring: None,
            verify_incoming: true,
            event_buffer: DEFAULT_EVENT_BUFFER,
            delivery_queue: DEFAULT_DELIVERY_QUEUE,
            mailbox: DEFAULT_MAILBOX,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            generation_file: None,
            generation: None,
            expected_members: None,
            quorum_hold: None,
            agent: false,
        }
    }

    /// The UDP address to gossip on (default [`DEFAULT_LISTEN`]). Port 0 picks a free port;
    /// [`Node::addr`] tells which.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The address peers should gossip to, when it differs from the listen address (behind NAT,
    /// or listening on `0.0.0.0`). Default: the bound listen address.
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// Adds a seed: `ip:port` or `host:port` of any member. Host names are resolved at start
    /// (an unresolvable one is an error) and again every minute. A node whose seeds are all
    /// unreachable keeps trying them and joins when one answers. For its first 30 seconds the
    /// node starts an exchange with every seed that is not yet a live member, each gossip
    /// round, so that seeds in separate clusters bring them together.
    pub fn seed(mut self, seed: impl Into<String>) -> Self {
        self.seeds.push(seed.into());
        self
    }

    /// Adds several seeds; see [`seed`](Self::seed).
    pub fn seeds<I, S>(mut self, seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.seeds.extend(seeds.into_iter().map(Into::into));
        self
    }

    /// The cluster's name (default [`DEFAULT_CLUSTER_ID`]). Nodes with different cluster ids
    /// reject each other's gossip and never merge.
    pub fn cluster_id(mut self, cluster_id: impl Into<String>) -> Self {
        self.cluster_id = cluster_id.into();
        self
    }

    /// Sets a tag peers see on this member. Change tags later with [`Node::set_tag`]. A key over
    /// [`MAX_TAG_KEY`] or a value over [`MAX_TAG_VALUE`] bytes makes [`start`](Self::start) fail
    /// with [`Error::InvalidTag`].
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// The cluster's expected size, for quorum names ([`crate::names`]): a quorum name is held
    /// only by a node that sees more than half of `members` (itself included). Without it,
    /// quorum names are refused with [`Error::NoQuorum`].
    pub fn expected_members(mut self, members: usize) -> Self {
        self.expected_members = Some(members.max(1));
        self
    }

    /// The hold window of quorum names: a peer counts toward this node's majority while it
    /// completed a gossip exchange with this node, both ways, within it. Default: the gossip
    /// interval times the expected size, at least 5 intervals (1 s for 5 members at the default
    /// interval), which leaves every peer several rounds to be heard from. The lease a vanished
    /// owner keeps on the other side is this window plus [`QUORUM_LEASE_MARGIN`].
    pub fn quorum_hold(mut self, hold: Duration) -> Self {
        self.quorum_hold = Some(hold);
        self
    }

    /// Time between gossip rounds (default [`DEFAULT_GOSSIP_INTERVAL`]). Shorter spreads news
    /// and detects failures sooner, for more bandwidth and CPU.
    pub fn gossip_interval(mut self, interval: Duration) -> Self {
        self.gossip_interval = interval;
        self
    }

    /// The failure detector's threshold (default [`DEFAULT_PHI_THRESHOLD`]): a peer silent for
    /// about this many of its mean heartbeat intervals is declared failed. Higher tolerates
    /// longer pauses (a loaded machine, a long GC) and detects real crashes later.
    pub fn phi_threshold(mut self, phi: f64) -> Self {
        self.phi_threshold = phi;
        self
    }

    /// How long [`Node::leave`] keeps repeating its goodbye to peers before it stops gossip
    /// (default: three gossip intervals). Peers usually hear it within a round trip.
    pub fn leave_propagation(mut self, duration: Duration) -> Self {
        self.leave_propagation = Some(duration);
        self
    }

    /// How long the state of a dead member is kept before it is forgotten (default
    /// [`DEFAULT_DEAD_NODE_GRACE_PERIOD`]).
    pub fn dead_node_grace_period(mut self, period: Duration) -> Self {
        self.dead_node_grace_period = period;
        self
    }

    /// Whether gossip digests are compressed (default: no). Compression cuts idle gossip
    /// bandwidth about threefold (4.7 instead of about 14 KB/s per node at 10 nodes) for about
    /// twice the CPU per message; uncompressed keeps an idle agent under 0.3% of a core. Every
    /// node reads both forms, so a cluster may mix them.
    pub fn compress_digests(mut self, compress: bool) -> Self {
        self.compress_digests = compress;
        self
    }

    /// The TCP address member-to-member messages arrive on. Default: the gossip address's IP and
    /// port (TCP and UDP ports are separate), or a free port when that is taken and the gossip
    /// port was chosen freely. Peers learn the address from gossip.
    pub fn rpc_listen(mut self, addr: SocketAddr) -> Self {
        self.rpc_listen = Some(addr);
        self
    }

    /// The largest message frame this node sends or accepts, in bytes (default
    /// [`DEFAULT_MAX_FRAME`](crate::rpc::DEFAULT_MAX_FRAME), 16 MiB).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.rpc_limits.max_frame = bytes;
        self
    }

    /// The most member-to-member connections this node accepts at once (default
    /// [`DEFAULT_MAX_CONNECTIONS`](crate::rpc::DEFAULT_MAX_CONNECTIONS), 1,024). A connection
    /// beyond it is accepted and closed at once, and counted
    /// ([`RpcStats::connections_over_cap`](crate::RpcStats)).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.rpc_limits.max_connections = connections;
        self
    }

    /// How long an accepted member-to-member connection may go without a frame, while none of its
    /// calls is in flight, before it is closed (default
    /// [`DEFAULT_IDLE_TIMEOUT`](crate::rpc::DEFAULT_IDLE_TIMEOUT), 5 minutes). The caller
    /// connects again at its next call. Mostly for tests; the default suits real networks.
    pub fn rpc_idle_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_limits.idle = timeout;
        self
    }

    /// How long the bytes of a started frame may stop arriving before the connection is closed
    /// (default [`DEFAULT_READ_TIMEOUT`](crate::rpc::DEFAULT_READ_TIMEOUT), 30 s). Mostly for
    /// tests; the default suits real networks.
    pub fn rpc_read_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_limits.read = timeout;
        self
    }

    /// The most bytes of frames one connection queues for a peer that does not read fast enough
    /// (default 64 MiB); a call or cast beyond it fails at once with
    /// [`Error::Overloaded`](crate::Error::Overloaded).
    pub fn rpc_queue_limit(mut self, bytes: usize) -> Self {
        self.rpc_limits.max_queued = bytes;
        self
    }

    /// The cluster keys (default: none, plain gossip and messages, for loopback clusters). With a
    /// keyring, every gossip datagram is sealed with its primary key and every datagram received
    /// must open with one of its keys; every member-to-member connection starts with a handshake
    /// in which both ends prove they hold a common key, and its frames are sealed. Nodes without
    /// a key of the ring cannot gossip with this node, join through it or call it. The keyring is
    /// shared: keys installed, used or removed later (see [`Keyring`]) take effect at once.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// With a keyring: whether plain gossip datagrams are refused (default true). Set false only
    /// while a running plaintext cluster turns encryption on: such a node accepts plain and sealed
    /// datagrams, seals what it sends, and answers a peer whose last datagram was plain in plain.
    /// Messages between members always need a common key when this node has a keyring.
    pub fn verify_incoming(mut self, verify: bool) -> Self {
        self.verify_incoming = verify;
        self
    }

    /// How many membership events each [`EventStream`](crate::EventStream) buffers for a
    /// reader that is behind (default [`DEFAULT_EVENT_BUFFER`], at least 1). A reader further
    /// behind is told how many it missed: the stream yields `Err(Lagged(n))`, then goes on.
    pub fn event_buffer(mut self, events: usize) -> Self {
        self.event_buffer = events.max(1);
        self
    }

    /// How many membership events wait for the member's callbacks (default
    /// [`DEFAULT_DELIVERY_QUEUE`], at least 1). When the member is this far behind, the
    /// membership watcher waits for it (gossip goes on): no event is lost or reordered, and
    /// [`Node::members`] catches up once the member does. Each wait is counted
    /// ([`MembershipHealth::delivery_stalls`](crate::MembershipHealth::delivery_stalls)).
    pub fn delivery_queue(mut self, events: usize) -> Self {
        self.delivery_queue = events.max(1);
        self
    }

    /// How many items may wait for the member's
    /// [`handle_info`](crate::ClusterMember::handle_info) at once (default [`DEFAULT_MAILBOX`],
    /// at least 1): messages sent with [`Context::send`](crate::Context::send) and not handled
    /// yet, timers of [`Context::send_after`](crate::Context::send_after) not fired yet, and calls
    /// of [`Context::call_later`](crate::Context::call_later) not answered yet. Beyond it those
    /// return [`Error::MailboxFull`] at once.
    pub fn mailbox(mut self, items: usize) -> Self {
        self.mailbox = items.max(1);
        self
    }

    /// How long [`Node::leave`] and [`Node::shutdown`] wait for a member callback that is
    /// running to return before abandoning it (default [`DEFAULT_SHUTDOWN_TIMEOUT`]), counted
    /// from the call.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The file where the node keeps its last generation (default: none), so that a restart's
    /// generation is always higher than the last one, even when the host's clock went back. The
    /// generation is the wall clock in microseconds, raised to the file's number plus one when
    /// that is higher; it is written to the file before gossip starts, atomically (a temp file of
    /// mode 0600 in the same dir, fsynced, renamed over it). A missing file is fine; its dir must
    /// exist. A file that cannot be read or does not hold a generation makes
    /// [`start`](Self::start) fail with [`Error::GenerationFile`] naming it, leaving it as it was.
    pub fn generation_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.generation_file = Some(path.into());
        self
    }

    /// Marks the node as a `herd agent` in its initial keys, so that placement counts it among
    /// the nodes that can run workers.
    pub(crate) fn agent_marker(mut self) -> Self {
        self.agent = true;
        self
    }

    /// Starts with exactly this generation, ignoring the clock and the generation file (which is
    /// neither read nor written). For tests that restart a node with a generation from the past.
    #[doc(hidden)]
    pub fn generation(mut self, generation: u64) -> Self {
        self.generation = Some(generation);
        self
    }

    /// Starts the node: binds the gossip socket, starts gossiping with the seeds, and spawns the
    /// tasks that watch membership and call `member`.
    ///
    /// # Errors
    /// An empty node id, a tag key that is empty or over [`MAX_TAG_KEY`] bytes, a tag value over
    /// [`MAX_TAG_VALUE`] bytes, a seed that does not parse or resolve, a listen
    /// address that cannot be bound (or is unspecified without an advertise address), a
    /// [generation file](Self::generation_file) that cannot be read, written or parsed.
    pub async fn start<M: ClusterMember>(self, member: M) -> Result<Node, Error> {
        let id = self.id.trim();
        if id.is_empty() {
            return Err(Error::EmptyNodeId);
        }
        if id.len() > MAX_NODE_ID {
            return Err(Error::NodeIdTooLong {
                id: id.chars().take(40).collect(),
                len: id.len(),
                limit: MAX_NODE_ID,
            });
        }
        let id: Arc<str> = id.into();
        for (key, value) in &self.tags {
            check_tag(key, value)?;
        }
        let seeds = seeds::resolve(&self.seeds).await?;
        let bound = probe_bind(self.listen)?;
        let advertise = match self.advertise {
            Some(addr) => addr,
            None if bound.ip().is_unspecified() => {
                return Err(Error::NoAdvertiseAddr { listen: bound })
            }
            None => bound,
        };
        let rpc_listener = bind_rpc(self.rpc_listen, self.listen, bound).await?;
        let rpc_addr = SocketAddr::new(
            advertise.ip(),
            rpc_listener
                .local_addr()
                .map_err(|source| Error::RpcBind {
                    addr: bound,
                    source,
                })?
                .port(),
        );
        let founder = seeds
            .iter()
            .flat_map(|seed| seed.addrs.iter())
            .all(|addr| *addr == advertise || *addr == bound);
        let generation = generation::pick(self.generation_file.as_deref(), self.generation)?;
        let leave_propagation = self.leave_propagation.unwrap_or(self.gossip_interval * 3);

        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(id.clone(), generation, advertise),
            cluster_id: self.cluster_id.clone(),
            gossip_interval: self.gossip_interval,
            listen_addr: bound,
            seed_nodes: seeds.iter().map(|seed| seed.given.clone()).collect(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: self.phi_threshold,
                sampling_window_size: SAMPLING_WINDOW,
                max_interval: self.gossip_interval * MAX_HEARTBEAT_GAP_ROUNDS,
                initial_interval: self.gossip_interval,
                dead_node_grace_period: self.dead_node_grace_period,
            },
            marked_for_deletion_grace_period: self.dead_node_grace_period,
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: if self.compress_digests {
                ProtocolVersion::V1
            } else {
                ProtocolVersion::V0
            },
        };
        let mut initial: Vec<(String, String)> = self
            .tags
            .iter()
            .map(|(key, value)| (keys::tag_key(key), value.clone()))
            .collect();
        initial.push((keys::RPC.to_string(), rpc_addr.to_string()));
        if self.agent {
            initial.push((keys::AGENT.to_string(), "1".to_string()));
        }
        initial.push((keys::READY.to_string(), "1".to_string()));

        let counters = Arc::new(Counters::default());
        counters
            .compress
            .store(self.compress_digests, Ordering::Relaxed);
        counters.contact.set_seeded(!founder);
        let transport = GossipTransport {
            node: id.clone(),
            counters: counters.clone(),
            protection: Protection {
                keyring: self.keyring.clone(),
                verify_incoming: self.verify_incoming,
            },
        };
        let handle = spawn_chitchat(config, initial, &transport as &dyn Transport)
            .await
            .map_err(|err| gossip_start_error(bound, err))?;
        let chitchat = handle.chitchat();
        let nudge = Arc::new(Notify::new());
        // News that peers push (a leave, a tag) wakes the watcher at once, without waiting for
        // the next gossip round's liveness check.
        let (live, listeners) = {
            let chitchat = chitchat.lock().await;
            let listeners: Vec<_> = [keys::LEAVING, keys::TAG_PREFIX, keys::NAME_PREFIX]
                .into_iter()
                .map(|prefix| {
                    let nudge = nudge.clone();
                    chitchat.subscribe_event(prefix, move |_| nudge.notify_one())
                })
                .collect();
            (chitchat.live_nodes_watcher(), listeners)
        };

        let me = Member {
            id: id.to_string(),
            addr: advertise,
            generation,
            tags: self.tags.clone(),
            rpc: Some(rpc_addr),
        };
        let (members_tx, members_rx) = watch::channel(Arc::from(vec![me]));
        let (events_tx, _) = broadcast::channel(self.event_buffer);
        let (deliveries_tx, deliveries_rx) = mpsc::channel(self.delivery_queue);
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let health = Arc::new(Health::default());
        tracker.spawn(super::watch_gossip(
            id.clone(),
            handle.termination_watcher(),
            health.clone(),
            cancel.child_token(),
        ));
        let quorum = self.expected_members.map(|expected| {
            let hold = self
                .quorum_hold
                .unwrap_or(self.gossip_interval * expected.max(5) as u32);
            crate::membership::watcher::QuorumRule {
                expected,
                hold,
                lease: hold + QUORUM_LEASE_MARGIN,
            }
        });
        let (names_tx, names_rx) = watch::channel(Arc::new(crate::names::table::Table::default()));
        let names = Arc::new(crate::names::Registry::new(
            id.clone(),
            names_rx,
            nudge.clone(),
            quorum.is_some(),
        ));
        tracker.spawn(
            Watcher {
                self_id: id.clone(),
                chitchat: chitchat.clone(),
                live,
                nudge,
                names: names_tx,
                quorum,
                settle: self.gossip_interval * NAME_SETTLE_ROUNDS,
                counters: counters.clone(),
                founder,
                members: members_tx,
                events: events_tx.clone(),
                deliveries: deliveries_tx,
                stalls: health.clone(),
            }
            .run(cancel.child_token()),
        );
        let (messages_tx, messages_rx) = mpsc::channel(MESSAGE_QUEUE);
        let limits = self.rpc_limits;
        let counters_rpc = Arc::new(rpc::server::ServerCounters::default());
        let rpc = Arc::new(rpc::server::Shared {
            node_id: id.clone(),
            incoming: messages_tx,
            system: std::sync::RwLock::new(None),
            limits,
            counters: counters_rpc.clone(),
            connections: Arc::new(tokio::sync::Semaphore::new(limits.max_connections)),
            system_slots: Arc::new(tokio::sync::Semaphore::new(
                rpc::server::MAX_SYSTEM_REQUESTS,
            )),
            keyring: self.keyring.clone(),
            logged: std::sync::Mutex::new(crate::log_limit::LogLimit::new(
                std::time::Duration::from_secs(60),
            )),
        });
        tracker.spawn(rpc::server::serve(
            rpc_listener,
            rpc.clone(),
            tracker.clone(),
            cancel.child_token(),
        ));
        let client = Arc::new(rpc::client::Client::new(
            id.clone(),
            limits,
            counters_rpc,
            self.keyring.clone(),
            tracker.clone(),
            cancel.child_token(),
        ));
        tracker.spawn(super::messaging::forget_departed(
            client.clone(),
            members_rx.clone(),
            cancel.child_token(),
        ));
        let (mailbox, mailbox_rx) = super::mailbox::Mailbox::new(id.clone(), self.mailbox);
        let current = Arc::new(dispatch::Current::default());
        let dispatch_counters = Arc::new(dispatch::DispatchCounters::default());
        info!(node = %id, %advertise, %rpc_addr, generation, founder, "node started");

        let node = Node {
            inner: Arc::new(Inner {
                id: id.clone(),
                addr: advertise,
                generation,
                gossip_interval: self.gossip_interval,
                leave_propagation,
                chitchat,
                handle: std::sync::Mutex::new(Some(handle)),
                listeners: std::sync::Mutex::new(listeners),
                members: members_rx.clone(),
                events: std::sync::Mutex::new(Some(events_tx)),
                counters,
                health,
                keyring: self.keyring,
                rpc,
                client,
                rpc_observer: std::sync::RwLock::new(None),
                cancel: cancel.clone(),
                tracker: tracker.clone(),
                shutdown_timeout: self.shutdown_timeout,
                callback: current.clone(),
                dispatch_counters: dispatch_counters.clone(),
                dispatcher: std::sync::Mutex::new(None),
                stopping: tokio::sync::OnceCell::new(),
                stopped: tokio::sync::OnceCell::new(),
                names: names.clone(),
            }),
        };
        names.set_node(node.downgrade());
        tracker.spawn(names.run(cancel.child_token()));
        let seed_addrs: Vec<SocketAddr> = seeds
            .iter()
            .flat_map(|seed| seed.addrs.iter().copied())
            .filter(|addr| *addr != advertise && *addr != bound)
            .collect();
        if !seed_addrs.is_empty() {
            tracker.spawn(seeds::contact_every_seed(
                node.downgrade(),
                seed_addrs,
                self.gossip_interval,
                cancel.child_token(),
            ));
        }
        let cx = Context::new(
            id,
            members_rx,
            node.downgrade(),
            mailbox,
            cancel.child_token(),
            tracker.clone(),
        );
        let dispatcher = dispatch::Dispatcher {
            member,
            cx,
            deliveries: deliveries_rx,
            mailbox: mailbox_rx,
            messages: messages_rx,
            current,
            counters: dispatch_counters.clone(),
        };
        let me = Arc::as_ptr(&node.inner) as usize;
        let task =
            tracker.spawn(super::DISPATCHING.scope(me, dispatcher.run(cancel.child_token())));
        *node.inner.dispatcher.lock().expect("dispatcher lock") = Some(task.abort_handle());
        tracker.close();
        Ok(node)
    }
}

/// Rejects tags peers could not read back: an empty key, a key over [`MAX_TAG_KEY`] bytes, a
/// value over [`MAX_TAG_VALUE`] bytes.
pub(crate) fn check_tag(key: &str, value: &str) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidTag {
        key: key.chars().take(40).collect(),
        reason,
    };
    if key.trim().is_empty() {
        return Err(invalid("the key is empty".into()));
    }
    if key.len() > MAX_TAG_KEY {
        return Err(invalid(format!(
            "the key is {} bytes; the limit is {MAX_TAG_KEY}",
            key.len()
        )));
    }
    if value.len() > MAX_TAG_VALUE {
        return Err(invalid(format!(
            "the value is {} bytes; the limit is {MAX_TAG_VALUE}",
            value.len()
        )));
    }
    Ok(())
}

/// Binds the RPC listener: `asked`, or the gossip address's IP and port, or (when that port is
/// taken and the gossip port was chosen freely) a free port.
async fn bind_rpc(
    asked: Option<SocketAddr>,
    listen: SocketAddr,
    bound: SocketAddr,
) -> Result<tokio::net::TcpListener, Error> {
    let addr = asked.unwrap_or(bound);
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => Ok(listener),
        Err(_) if asked.is_none() && listen.port() == 0 => {
            let any = SocketAddr::new(bound.ip(), 0);
            tokio::net::TcpListener::bind(any)
                .await
                .map_err(|source| Error::RpcBind { addr: any, source })
        }
        Err(source) => Err(Error::RpcBind { addr, source }),
    }
}

/// Binds the listen address once to report "in use" clearly and to learn the port that port 0
/// picks; the gossip server then binds the same address.
fn probe_bind(listen: SocketAddr) -> Result<SocketAddr, Error> {
    let socket = std::net::UdpSocket::bind(listen).map_err(|source| Error::Bind {
        addr: listen,
        source,
    })?;
    socket.local_addr().map_err(|source| Error::Bind {
        addr: listen,
        source,
    })
}

fn gossip_start_error(addr: SocketAddr, err: anyhow::Error) -> Error {
    match err
        .chain()
        .find_map(|cause| cause.downcast_ref::<std::io::Error>())
    {
        Some(io) => Error::Bind {
            addr,
            source: std::io::Error::new(io.kind(), io.to_string()),
        },
        None => Error::Gossip {
            addr,
            reason: format!("{err:#}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_tag_keys_are_rejected() {
        assert!(check_tag(" ", "").is_err());
        assert!(check_tag("group", "").is_ok());
    }

    #[test]
    fn tag_sizes_are_limited() {
        let long_key = "k".repeat(MAX_TAG_KEY + 1);
        let err = check_tag(&long_key, "v").unwrap_err().to_string();
        assert!(err.contains("the limit is 128"), "{err}");
        assert!(check_tag(&"k".repeat(MAX_TAG_KEY), "v").is_ok());
        let big = "v".repeat(MAX_TAG_VALUE + 1);
        let err = check_tag("group", &big).unwrap_err().to_string();
        assert!(err.contains("4097 bytes; the limit is 4096"), "{err}");
        assert!(check_tag("group", &"v".repeat(MAX_TAG_VALUE)).is_ok());
    }
}
