//! Turning gossip into membership events.
//!
//! herd gossips with [`chitchat`] (scuttlebutt anti-entropy and a phi-accrual failure detector
//! over UDP). This module is the only reader of chitchat's view of the cluster:
//!
//! - `keys` names every node-state key herd publishes (tags, the leaving flag, ...);
//! - `snapshot` reads chitchat's live nodes into a plain `Snapshot`;
//! - `incarnations` picks, for each id, which of its live incarnations is the member: the one
//!   first seen live last (so a restart whose clock went back is not hidden by its predecessor),
//!   never one it already replaced;
//! - `diff` is a pure function from two snapshots to the [`MembershipEvent`]s between them;
//! - `watcher` is the task that takes a snapshot whenever chitchat reports a change (or a peer
//!   announces that it is leaving), diffs it against the previous one and hands the events on,
//!   in order, to the node's dispatcher and to every [`EventStream`];
//! - `transport` is chitchat's UDP transport with byte and message counters;
//! - `contact` records what the node heard from its peers ([`PeerContact`]): whether one
//!   answered, and whether one answered with nothing the node lacked.
//!
//! The watcher runs until the node's cancellation token fires; see [`crate::node`].

pub(crate) mod contact;
mod diff;
mod event;
mod incarnations;
pub(crate) mod keys;
pub(crate) mod snapshot;
pub(crate) mod transport;
pub(crate) mod watcher;

pub use contact::PeerContact;
pub use event::{EventStream, Lagged, MembershipEvent};
pub use transport::GossipStats;
