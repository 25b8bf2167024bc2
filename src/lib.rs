//! # herd
//!
//! Clusters of peers that find each other by gossip, and keep external worker programs alive.
//!
//! A program implements [`ClusterMember`], starts a [`Node`] with the address of any seed, and is
//! told, in order and exactly once, when it has joined, when another member joins, and when one
//! leaves: gracefully (it said goodbye, and everyone hears at once) or by failure (the failure
//! detector). Membership spreads by gossip on the `chitchat` crate (scuttlebutt anti-entropy,
//! phi-accrual failure detection, UDP).
//!
//! ```no_run
//! use std::time::Duration;
//! use herd::{async_trait, ClusterMember, Context, LeaveReason, Member, Node};
//!
//! struct Printer;
//!
//! #[async_trait]
//! impl ClusterMember for Printer {
//!     async fn on_join(&mut self, cx: &Context, members: &[Member]) {
//!         println!("{} joined; members: {}", cx.node_id(), members.len());
//!     }
//!     async fn on_node_left(&mut self, _cx: &Context, member: &Member, reason: LeaveReason) {
//!         println!("{} left ({reason})", member.id());
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let node = Node::builder("a")
//!         .listen("127.0.0.1:0".parse()?)
//!         .seed("127.0.0.1:7000")
//!         .cluster_id("demo")
//!         .tag("group", "media")
//!         .gossip_interval(Duration::from_millis(100))
//!         .start(Printer)
//!         .await?;
//!     println!("listening on {}", node.addr());
//!     tokio::signal::ctrl_c().await?;
//!     node.leave().await?;
//!     Ok(())
//! }
//! ```
//!
//! The README's guide to the library, and `examples/` (`member`, `leader`, `ping`), show more: calls
//! between members, what a callback may do through its [`Context`], timers with
//! [`Context::send_after`].
//!
//! ## Layout
//! - [`member`]: the [`ClusterMember`] trait, [`Member`], [`LeaveReason`], [`Context`].
//! - [`node`]: [`Node`] (start, queries, leave, shutdown) and [`NodeBuilder`].
//! - [`membership`]: gossip snapshots turned into [`MembershipEvent`]s by a pure diff.
//! - [`names`]: global names with takeover ([`Node::register_name`], [`Node::claim_name`]).
//! - [`rpc`]: member-to-member calls and casts (serde + bincode over TCP).
//! - [`config`], [`agent`], [`api`]: the cluster config, the `herd agent` daemon, its HTTP API.
//! - [`supervisor`]: OTP-style supervision of external worker processes.
//! - [`trust`]: cluster keys ([`trust::Keyring`]): sealed gossip, authenticated messages.
//! - [`Error`]: what can go wrong, naming the value that was wrong.
#![warn(missing_docs)]

pub mod agent;
pub mod api;
pub mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod log_limit;
pub mod member;
pub mod membership;
pub mod names;
pub mod node;
pub mod placement;
pub mod rpc;
pub mod supervisor;
pub mod trust;

pub use async_trait::async_trait;
pub use error::Error;
pub use member::{
    CallId, CallReply, ClusterMember, Context, Info, LeaveReason, Member, Message, Timer,
};
pub use membership::{EventStream, GossipStats, Lagged, MembershipEvent, PeerContact};
pub use names::{NameClaim, NameGuard, NameLost, NameOptions};
pub use node::{MembershipHealth, Node, NodeBuilder, RpcStats};
pub use rpc::{Reply, Request};

/// The README's Rust snippets, compiled (and those not marked `no_run` run) by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
