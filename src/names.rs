//! Global names: one member of the cluster holds a name at a time, every member can look up who,
//! and a waiting member takes a name over when its owner leaves, fails or releases it.
//!
//! - [`Node::register_name`] takes a free name now or fails with [`Error::NameTaken`];
//! - [`Node::claim_name`] queues for a name and holds it whenever it ranks first;
//! - [`Node::whereis`] and [`Node::names`] read this node's view, at once, without a round trip;
//! - [`ClusterMember::on_name_owner_changed`](crate::ClusterMember::on_name_owner_changed) is
//!   told each change of owner, in order with the membership callbacks.
//!
//! ## How the owner is chosen
//! A claim is a key in the claimant's gossip state with a *ticket*: the wall clock in
//! milliseconds when it was made, raised above every ticket this node has seen on the name. The
//! owner of a name is its live claimant (live, ready, not leaving) with the lowest ticket, then
//! the lowest node id. Every node that holds the same claims computes the same owner; there is no
//! election and no lock, so names stay available on both sides of a partition (as Erlang's
//! `global` does), and after the heal every node agrees on the winner as soon as it has both
//! claims: **the older claim wins**, then the lower node id. The loser is told
//! ([`NameLost::Conflict`]): a [`NameGuard`] withdraws its claim, a [`NameClaim`] queues again
//! behind the winner. A claim made after seeing the owner always ranks below it, so a node that
//! rejoins never takes a name back from a later claimant that ranks below its own ticket.
//!
//! A graceful leave takes the leaver's claims with it at once (its peers hear within a round
//! trip); a crash takes them when the failure detector declares the claimant dead.
//!
//! A node sees a peer live only at the peer's second heartbeat, but may hold the peer's claims
//! from its first exchange (a node that just started, or a peer that just appeared). Such a claim,
//! by an incarnation this node has never seen as a member, keeps its rank for a *settling time*
//! of 10 gossip intervals (2 s at the defaults) from when this node first saw it: while it ranks
//! first, the name has no owner here, so a node that starts or restarts never takes a name that
//! a peer it does not see live yet holds. Once the claimant is judged (a member, or one that failed
//! after being one) the rule above applies; a claimant never seen live (a dead node's state, still
//! gossiped) stops counting when the settling time ends. An owner that loses a name so is told
//! [`NameLost::Conflict`] with that claimant as the winner.
//!
//! ## Quorum names
//! With [`NameOptions::quorum`] and [`NodeBuilder::expected_members`](crate::NodeBuilder::expected_members)
//! `n`, a name is held only by a node that sees a majority of `n` (itself included): peers that
//! completed a gossip exchange with it both ways within the *hold window*. A node cut off into a
//! minority resolves no quorum name, so its owner gives the name up within the hold window
//! ([`NameLost::QuorumLost`]). On the majority side, a quorum claimant that vanished without a
//! graceful leave keeps its rank for the *lease* (hold window plus a margin) after the failure
//! detector dropped it, so the next claimant takes over only after the old owner must have given
//! the name up. The holder of a quorum name marks its claim held, and keeps the name while it
//! keeps its majority, even from a claim that ranks above it (a claim made across a partition
//! and seen after the heal waits until the holder gives the name up, instead of the older claim
//! winning as it does for a plain name). A node without a majority withdraws its queued quorum
//! claims and makes them again, with a fresh ticket, once it has one; and a node that gains or
//! regains a majority resolves no quorum name for one hold window, the time to hear the claims
//! the majority made without it. On one host's clock, that makes at most one owner at
//! every instant; across hosts it holds while clocks run at the same rate (the lease is
//! measured, never compared).
//! A quorum name's takeover after a crash takes the failure-detection time plus the lease; after
//! a graceful leave it is as fast as a plain name's.

pub(crate) mod table;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::membership::keys;
use crate::node::WeakNode;
use crate::{Error, Member, Node};
use table::{Claim, Table, WITHDRAWN};

/// How a name is held; see [`Node::register_name_with`] and [`Node::claim_name_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameOptions {
    quorum: bool,
}

impl NameOptions {
    /// Held only while its owner sees a majority of the expected members (see the [module
    /// docs](self)). Needs [`NodeBuilder::expected_members`](crate::NodeBuilder::expected_members).
    pub fn quorum(mut self, quorum: bool) -> Self {
        self.quorum = quorum;
        self
    }
}

/// Why this node no longer holds a name.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameLost {
    /// The guard or claim was released (or dropped).
    Released,
    /// Another member's claim ranks first (an older claim, seen after a partition healed or a
    /// concurrent registration): it owns the name now.
    Conflict {
        /// The member that owns the name.
        winner: Member,
    },
    /// A quorum name, and this node no longer sees a majority of the expected members.
    QuorumLost,
    /// The node is leaving or shutting down.
    Stopped,
}

impl std::fmt::Display for NameLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameLost::Released => f.write_str("released"),
            NameLost::Conflict { winner } => write!(f, "conflict: {} owns it", winner.id()),
            NameLost::QuorumLost => f.write_str("quorum lost"),
            NameLost::Stopped => f.write_str("the node stopped"),
        }
    }
}

/// What a registration or a claim is doing now, as the names task last decided.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Published; not yet read back from gossip.
    Pending,
    /// Queued behind a claim that ranks first.
    Waiting,
    /// This node holds the name.
    Owner,
    /// The registration was refused; the claim is withdrawn.
    Refused(Refusal),
    /// Released, lost for good (a registration) or the node stopped.
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Refusal {
    Taken(Member),
    NoQuorum,
    Stopped,
}

#[derive(Clone, Debug)]
struct Status {
    phase: Phase,
    /// How many times this claim became the owner.
    acquisitions: u64,
    /// How many times it stopped being the owner, and why the last time.
    losses: u64,
    last_loss: Option<NameLost>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// [`Node::register_name`]: refused if taken, withdrawn when lost.
    Register,
    /// [`Node::claim_name`]: queues, and queues again when lost.
    Claim,
}

struct Local {
    /// Tells this claim from a later one on the same name.
    id: u64,
    claim: Claim,
    kind: Kind,
    status: watch::Sender<Status>,
    /// A quorum claim withdrawn when it lost its majority, published again (with a fresh ticket)
    /// once this node sees a majority.
    parked: bool,
}

/// A node's own claims and the table they are judged by. One per node.
pub(crate) struct Registry {
    self_id: Arc<str>,
    claims: std::sync::Mutex<HashMap<String, Local>>,
    table: watch::Receiver<Arc<Table>>,
    /// Wakes the membership watcher after this node changed its claims.
    nudge: Arc<Notify>,
    /// Whether the node was given an expected cluster size.
    quorum: bool,
    node: OnceLock<WeakNode>,
    next_id: AtomicU64,
    stopped: std::sync::atomic::AtomicBool,
    /// Bumped each time the names task has judged this node's claims by a new table: a reader
    /// that waits on it sees the table and every claim's status agree.
    settled: watch::Sender<u64>,
}

/// What the names task must publish after a table change.
enum Action {
    Withdraw(String),
    Publish(String, Claim),
}

/// The longest a registration waits for the watcher to read its claim back from gossip.
const SETTLE: Duration = Duration::from_secs(10);

impl Registry {
    pub(crate) fn new(
        self_id: Arc<str>,
        table: watch::Receiver<Arc<Table>>,
        nudge: Arc<Notify>,
        quorum: bool,
    ) -> Registry {
        Registry {
            self_id,
            claims: std::sync::Mutex::new(HashMap::new()),
            table,
            nudge,
            quorum,
            node: OnceLock::new(),
            next_id: AtomicU64::new(1),
            stopped: std::sync::atomic::AtomicBool::new(false),
            settled: watch::Sender::new(0),
        }
    }

    pub(crate) fn set_node(&self, node: WeakNode) {
        let _ = self.node.set(node);
    }

    /// The names table as this node resolves it now.
    pub(crate) fn table(&self) -> Arc<Table> {
        self.table.borrow().clone()
    }

    /// A watch that changes after each change of this node's names table, once this node's
    /// claims have been judged by it (so a claim's `is_owner` agrees with the table).
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.settled.subscribe()
    }

    /// Ends every claim: an owner loses its names with [`NameLost::Stopped`]. Called as the node
    /// starts to stop, before it announces a leave, so no guard believes it holds a name its
    /// peers have handed on.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let claims = std::mem::take(&mut *self.claims.lock().expect("names lock"));
        for (_, local) in claims {
            local.status.send_modify(|status| {
                match status.phase {
                    Phase::Owner => {
                        status.losses += 1;
                        status.last_loss = Some(NameLost::Stopped);
                    }
                    Phase::Pending => {
                        status.phase = Phase::Refused(Refusal::Stopped);
                        return;
                    }
                    _ => {}
                }
                status.phase = Phase::Done;
            });
        }
    }

    /// Adds a claim on `name` with a ticket above every one seen; refuses a registration when
    /// any claim on the name is known.
    fn begin(
        &self,
        name: &str,
        kind: Kind,
        quorum: bool,
    ) -> Result<(u64, Claim, watch::Receiver<Status>), Error> {
        let table = self.table();
        let mut claims = self.claims.lock().expect("names lock");
        if self.stopped.load(Ordering::SeqCst) {
            return Err(Error::Stopped {
                node: self.self_id.to_string(),
            });
        }
        let entry = table.names.get(name);
        if claims.contains_key(name) || (kind == Kind::Register && entry.is_some()) {
            let owner = entry
                .map(|entry| entry.first.clone())
                .or_else(|| self.me())
                .ok_or_else(|| Error::Stopped {
                    node: self.self_id.to_string(),
                })?;
            return Err(Error::NameTaken {
                name: name.to_string(),
                owner: Box::new(owner),
            });
        }
        let claim = Claim::new(ticket_above(entry.map_or(0, |entry| entry.highest)), quorum);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (status, receiver) = watch::channel(Status {
            phase: Phase::Pending,
            acquisitions: 0,
            losses: 0,
            last_loss: None,
        });
        claims.insert(
            name.to_string(),
            Local {
                id,
                claim,
                kind,
                status,
                parked: false,
            },
        );
        Ok((id, claim, receiver))
    }

    /// This node as a member, from its node handle.
    fn me(&self) -> Option<Member> {
        let node = self.node.get()?.upgrade()?;
        node.members().into_iter().find(|m| m.id() == node.id())
    }

    /// Ends claim `id` on `name`, if it is still the one held: an owner loses it as released.
    /// Returns whether it was.
    fn end(&self, name: &str, id: u64) -> bool {
        let mut claims = self.claims.lock().expect("names lock");
        if claims.get(name).is_none_or(|local| local.id != id) {
            return false;
        }
        let local = claims.remove(name).expect("checked above");
        local.status.send_modify(|status| {
            if status.phase == Phase::Owner {
                info!(node = %self.self_id, name = %name, "this node released the name");
                status.losses += 1;
                status.last_loss = Some(NameLost::Released);
            }
            status.phase = Phase::Done;
        });
        true
    }

    /// Judges this node's claims by a new table: who became the owner, who lost, which
    /// registrations are refused. Returns what must be published.
    fn apply(&self, table: &Table) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut claims = self.claims.lock().expect("names lock");
        let mut remove = Vec::new();
        for (name, local) in claims.iter_mut() {
            if local.parked {
                if table.quorum {
                    // Behind every claim made while this node was cut off: its ticket is taken
                    // now, above every ticket seen.
                    let highest = table.names.get(name).map_or(0, |entry| entry.highest);
                    local.claim = Claim::new(
                        ticket_above(highest.max(local.claim.ticket)),
                        local.claim.quorum,
                    );
                    local.parked = false;
                    actions.push(Action::Publish(name.clone(), local.claim));
                }
                continue;
            }
            if table.mine.get(name) != Some(&local.claim) {
                continue; // not read back from gossip yet
            }
            let entry = table.names.get(name);
            let owner = entry.and_then(|entry| entry.owner.as_ref());
            let mine = owner
                .is_some_and(|(m, c)| *m.id == *self.self_id && c.ticket == local.claim.ticket);
            let phase = local.status.borrow().phase.clone();
            match (phase, mine) {
                (Phase::Pending | Phase::Waiting, true) => {
                    info!(node = %self.self_id, name = %name, "this node holds the name");
                    local.status.send_modify(|status| {
                        status.phase = Phase::Owner;
                        status.acquisitions += 1;
                    });
                    if local.claim.quorum {
                        // Marked held: a claim ranked above it waits until this node gives it up.
                        local.claim.held = true;
                        actions.push(Action::Publish(name.clone(), local.claim));
                    }
                }
                (Phase::Pending, false) if local.kind == Kind::Register => {
                    let refusal = match entry {
                        Some(entry) if *entry.first.id != *self.self_id => {
                            Refusal::Taken(entry.first.clone())
                        }
                        _ => Refusal::NoQuorum,
                    };
                    local
                        .status
                        .send_modify(|status| status.phase = Phase::Refused(refusal));
                    remove.push(name.clone());
                }
                (Phase::Pending | Phase::Waiting, false) if local.claim.quorum && !table.quorum => {
                    // A queued quorum claim is withdrawn while this node has no majority, too.
                    local
                        .status
                        .send_modify(|status| status.phase = Phase::Waiting);
                    local.parked = true;
                    actions.push(Action::Withdraw(name.clone()));
                }
                (Phase::Pending, false) => {
                    local
                        .status
                        .send_modify(|status| status.phase = Phase::Waiting);
                }
                (Phase::Owner, false) => {
                    let why = match (owner, entry) {
                        (Some((winner, _)), _) => NameLost::Conflict {
                            winner: winner.clone(),
                        },
                        // A plain name without an owner: a claim ranked first by a peer this
                        // node does not see live yet.
                        (None, Some(entry)) if !entry.quorum => NameLost::Conflict {
                            winner: entry.first.clone(),
                        },
                        (None, _) => NameLost::QuorumLost,
                    };
                    info!(node = %self.self_id, name = %name, why = %why, "this node lost the name");
                    let kind = local.kind;
                    local.status.send_modify(|status| {
                        status.losses += 1;
                        status.last_loss = Some(why);
                        status.phase = match kind {
                            Kind::Register => Phase::Done,
                            Kind::Claim => Phase::Waiting,
                        };
                    });
                    match kind {
                        Kind::Register => remove.push(name.clone()),
                        Kind::Claim if owner.is_none() && !table.quorum => {
                            // Cut off into a minority: withdrawn until a majority is back, so a
                            // heal never ranks it above a claim the majority made meanwhile.
                            local.parked = true;
                            actions.push(Action::Withdraw(name.clone()));
                        }
                        Kind::Claim => {
                            // Queue again behind every claim seen, the winner's included, so a
                            // heal never hands the name back and forth.
                            let highest = entry.map_or(0, |entry| entry.highest);
                            local.claim.ticket = ticket_above(highest.max(local.claim.ticket));
                            local.claim.held = false;
                            actions.push(Action::Publish(name.clone(), local.claim));
                        }
                    }
                }
                _ => {}
            }
        }
        for name in remove {
            claims.remove(&name);
            actions.push(Action::Withdraw(name));
        }
        actions
    }

    /// Publishes a claim or its withdrawal, wakes the watcher and pushes the change to peers.
    async fn publish(&self, action: Action) {
        let Some(node) = self.node.get().and_then(WeakNode::upgrade) else {
            return;
        };
        let (set, what) = match action {
            Action::Withdraw(name) => ((keys::name_key(&name), WITHDRAWN.to_string()), "withdraw"),
            Action::Publish(name, claim) => ((keys::name_key(&name), claim.encode()), "claim"),
        };
        debug!(node = %self.self_id, key = %set.0, what, "publishing a name claim");
        if node.publish(vec![set], Vec::new()).await.is_ok() {
            self.nudge.notify_one();
            node.push().await;
        }
    }

    /// The names task: judges this node's claims by every new table until the node stops.
    pub(crate) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut table = self.table.clone();
        loop {
            let current = table.borrow_and_update().clone();
            for action in self.apply(&current) {
                self.publish(action).await;
            }
            self.settled.send_modify(|n| *n = n.wrapping_add(1));
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                changed = table.changed() => if changed.is_err() { break },
            }
        }
        self.stop();
    }
}

/// A ticket above `highest`: the wall clock in milliseconds, or `highest + 1` when the clock is
/// behind it.
fn ticket_above(highest: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    now.max(highest.saturating_add(1))
}

/// Checks a name as peers will read it back.
fn check_name(name: &str) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidName {
        name: name.chars().take(40).collect(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("the name is empty".into()));
    }
    if name.len() > keys::MAX_NAME {
        return Err(invalid(format!(
            "the name is {} bytes; the limit is {}",
            name.len(),
            keys::MAX_NAME
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("the name holds a control character".into()));
    }
    Ok(())
}

/// Waits until `status` satisfies `done`; `None` when the claim ended without it.
async fn wait_for(
    status: &mut watch::Receiver<Status>,
    done: impl Fn(&Status) -> bool,
) -> Option<Status> {
    loop {
        {
            let now = status.borrow_and_update();
            if done(&now) {
                return Some(now.clone());
            }
        }
        if status.changed().await.is_err() {
            let now = status.borrow().clone();
            return done(&now).then_some(now);
        }
    }
}

/// The reason of the `nth` loss (1-based) of a claim, once it happened.
async fn loss(mut status: watch::Receiver<Status>, nth: u64) -> NameLost {
    match wait_for(&mut status, |s| s.losses >= nth || s.phase == Phase::Done).await {
        Some(Status {
            last_loss: Some(why),
            losses,
            ..
        }) if losses >= nth => why,
        Some(_) => NameLost::Released,
        None => NameLost::Stopped,
    }
}

/// A name this node registered and holds ([`Node::register_name`]). Dropping it releases the
/// name, as [`release`](NameGuard::release) does.
#[must_use = "dropping the guard releases the name"]
pub struct NameGuard {
    name: String,
    id: u64,
    registry: Arc<Registry>,
    status: watch::Receiver<Status>,
}

impl NameGuard {
    /// The name held.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this node still holds the name.
    pub fn is_owner(&self) -> bool {
        self.status.borrow().phase == Phase::Owner
    }

    /// Resolves when this node no longer holds the name, with why; at once if that already
    /// happened. The future does not borrow the guard, so it can be awaited in another task
    /// while this one keeps the guard (and may release it: the future then says
    /// [`NameLost::Released`]).
    pub fn lost(&self) -> impl Future<Output = NameLost> + Send + 'static {
        loss(self.status.clone(), 1)
    }

    /// Gives the name up: the next claimant, if any, holds it within a round trip to its node.
    pub async fn release(self) {
        // Drop does the work; this form reads better at the call site.
        drop(self);
    }
}

impl Drop for NameGuard {
    fn drop(&mut self) {
        release(&self.registry, &self.name, self.id);
    }
}

impl std::fmt::Debug for NameGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameGuard")
            .field("name", &self.name)
            .field("owner", &self.is_owner())
            .finish()
    }
}

/// Ends claim `id` on `name` and withdraws it from gossip, from a task of the node's own.
fn release(registry: &Arc<Registry>, name: &str, id: u64) {
    if !registry.end(name, id) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let registry = registry.clone();
    let name = name.to_string();
    runtime.spawn(async move {
        registry.publish(Action::Withdraw(name)).await;
    });
}

/// A place in the queue for a name ([`Node::claim_name`]): this node holds the name whenever its
/// claim ranks first, and queues again when it loses it. Dropping it withdraws the claim.
#[must_use = "dropping the claim withdraws it"]
pub struct NameClaim {
    name: String,
    id: u64,
    registry: Arc<Registry>,
    status: watch::Receiver<Status>,
    /// Acquisitions seen by the last [`acquired`](NameClaim::acquired).
    seen: u64,
}

impl NameClaim {
    /// The name claimed.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this node holds the name now.
    pub fn is_owner(&self) -> bool {
        self.status.borrow().phase == Phase::Owner
    }

    /// Waits until this node holds the name (returns at once if it does).
    ///
    /// # Errors
    /// [`Error::Stopped`]: the node stopped.
    pub async fn acquired(&mut self) -> Result<(), Error> {
        match wait_for(&mut self.status, |s| {
            s.phase == Phase::Owner || s.phase == Phase::Done
        })
        .await
        {
            Some(status) if status.phase == Phase::Owner => {
                self.seen = status.acquisitions;
                Ok(())
            }
            _ => Err(Error::Stopped {
                node: self.registry.self_id.to_string(),
            }),
        }
    }

    /// Resolves when this node stops holding the name it held at the last
    /// [`acquired`](NameClaim::acquired) (or, before any, after its first hold), with why. The
    /// claim stays queued (unless the node stopped); call `acquired` to wait for the next hold.
    pub fn lost(&self) -> impl Future<Output = NameLost> + Send + 'static {
        loss(self.status.clone(), self.seen.max(1))
    }

    /// Withdraws the claim; if this node held the name, the next claimant holds it.
    pub async fn release(self) {
        drop(self);
    }
}

impl Drop for NameClaim {
    fn drop(&mut self) {
        release(&self.registry, &self.name, self.id);
    }
}

impl std::fmt::Debug for NameClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameClaim")
            .field("name", &self.name)
            .field("owner", &self.is_owner())
            .finish()
    }
}

impl Node {
    /// Registers the global name `name` for this node: returns a guard once this node holds it,
    /// within a round trip of its own gossip state (no peer is waited for). Peers learn of it
    /// with the push that follows, usually within a round trip.
    ///
    /// Two nodes that register the same free name at once may both get a guard; as soon as each
    /// sees the other's claim, the older claim wins and the other's guard reports
    /// [`NameLost::Conflict`] (see the [module docs](crate::names)).
    ///
    /// # Errors
    /// [`Error::NameTaken`] when a claim on the name is known (held, waiting, or this node's own);
    /// [`Error::InvalidName`]; [`Error::Stopped`].
    pub async fn register_name(&self, name: &str) -> Result<NameGuard, Error> {
        self.register_name_with(name, NameOptions::default()).await
    }

    /// [`register_name`](Node::register_name) with options, such as a quorum name.
    ///
    /// # Errors
    /// As `register_name`, and [`Error::NoQuorum`] for a quorum name when this node was given no
    /// expected size or does not see a majority of it.
    pub async fn register_name_with(
        &self,
        name: &str,
        options: NameOptions,
    ) -> Result<NameGuard, Error> {
        let (id, mut status) = self.start_claim(name, Kind::Register, options).await?;
        let registry = self.names_registry().clone();
        let settled =
            tokio::time::timeout(SETTLE, wait_for(&mut status, |s| s.phase != Phase::Pending))
                .await;
        let phase = match settled {
            Ok(Some(status)) => status.phase,
            _ => Phase::Refused(Refusal::Stopped),
        };
        match phase {
            Phase::Owner => Ok(NameGuard {
                name: name.to_string(),
                id,
                registry,
                status,
            }),
            refused => {
                release(&registry, name, id);
                let name = name.to_string();
                Err(match refused {
                    Phase::Refused(Refusal::Taken(owner)) => Error::NameTaken {
                        name,
                        owner: Box::new(owner),
                    },
                    Phase::Refused(Refusal::NoQuorum) => Error::NoQuorum {
                        name,
                        reason: "this node does not see a majority of the expected members".into(),
                    },
                    _ => Error::Stopped {
                        node: self.id().to_string(),
                    },
                })
            }
        }
    }

    /// Queues this node for the global name `name`: it holds the name whenever its claim ranks
    /// first, so it takes the name over when the owner leaves (within a round trip), fails (the
    /// failure-detection time) or releases it. Returns at once; wait with
    /// [`NameClaim::acquired`].
    ///
    /// # Errors
    /// [`Error::NameTaken`] when this node already registered or claims the name;
    /// [`Error::InvalidName`]; [`Error::Stopped`].
    pub async fn claim_name(&self, name: &str) -> Result<NameClaim, Error> {
        self.claim_name_with(name, NameOptions::default()).await
    }

    /// [`claim_name`](Node::claim_name) with options, such as a quorum name.
    ///
    /// # Errors
    /// As `claim_name`, and [`Error::NoQuorum`] for a quorum name when this node was given no
    /// expected size.
    pub async fn claim_name_with(
        &self,
        name: &str,
        options: NameOptions,
    ) -> Result<NameClaim, Error> {
        let (id, status) = self.start_claim(name, Kind::Claim, options).await?;
        Ok(NameClaim {
            name: name.to_string(),
            id,
            registry: self.names_registry().clone(),
            status,
            seen: 0,
        })
    }

    async fn start_claim(
        &self,
        name: &str,
        kind: Kind,
        options: NameOptions,
    ) -> Result<(u64, watch::Receiver<Status>), Error> {
        check_name(name)?;
        self.running()?;
        let registry = self.names_registry();
        if options.quorum && !registry.quorum {
            return Err(Error::NoQuorum {
                name: name.to_string(),
                reason:
                    "the node was given no expected cluster size (NodeBuilder::expected_members)"
                        .into(),
            });
        }
        let (id, claim, status) = registry.begin(name, kind, options.quorum)?;
        registry
            .publish(Action::Publish(name.to_string(), claim))
            .await;
        Ok((id, status))
    }

    /// The member that holds `name` in this node's view, if any. Local and non-blocking.
    pub fn whereis(&self, name: &str) -> Option<Member> {
        self.names_registry().table().owner(name).cloned()
    }

    /// Every name that has an owner in this node's view, sorted by name, with its owner.
    pub fn names(&self) -> Vec<(String, Member)> {
        self.names_registry()
            .table()
            .names
            .iter()
            .filter_map(|(name, entry)| {
                entry
                    .owner
                    .as_ref()
                    .map(|(member, _)| (name.clone(), member.clone()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_as_peers_read_them() {
        assert!(check_name("scheduler").is_ok());
        assert!(check_name("herd.placed/cron").is_ok());
        assert!(check_name(&"n".repeat(keys::MAX_NAME)).is_ok());
        let err = check_name(&"n".repeat(keys::MAX_NAME + 1)).unwrap_err();
        assert!(
            err.to_string().contains("256 bytes; the limit is 255"),
            "{err}"
        );
        assert!(check_name("").is_err());
        assert!(check_name("a\nb").is_err());
    }

    #[test]
    fn a_ticket_is_above_the_highest_seen_even_when_the_clock_is_behind() {
        let now = ticket_above(0);
        assert!(now > 1_600_000_000_000, "wall clock in ms");
        assert_eq!(ticket_above(u64::MAX - 1), u64::MAX);
        assert_eq!(ticket_above(now + 1_000_000), now + 1_000_001);
    }
}
