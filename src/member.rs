//! What a program sees of the cluster: the [`ClusterMember`] trait it implements, the [`Member`]
//! values that describe its peers, the [`LeaveReason`] of a departure, the [`Context`] every
//! callback receives, and the [`Info`] its [`handle_info`](ClusterMember::handle_info) gets.
//!
//! Callbacks are made by one dispatcher task per node (see [`crate::node`]), one at a time and in
//! the order the events happened, so an implementation can keep plain state in `&mut self`, as a
//! `gen_server` does.

mod context;
mod info;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use context::Context;
pub use info::{CallId, CallReply, Info, Message, Timer};

use crate::rpc::{Reply, Request};

/// One incarnation of a cluster member, as gossip last described it.
///
/// A member is identified by its id; each start of a node with that id is a new incarnation with
/// another [`generation`](Member::generation). Two `Member` values compare equal when every field,
/// tags included, is equal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub(crate) id: String,
    pub(crate) addr: SocketAddr,
    pub(crate) generation: u64,
    pub(crate) tags: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) rpc: Option<SocketAddr>,
}

impl Member {
    /// The member's node id, unique in the cluster.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The address the member gossips on (its advertise address).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The incarnation number: microseconds since the epoch when the node started, raised above
    /// the previous start's when the node keeps its last generation in a file
    /// ([`NodeBuilder::generation_file`](crate::NodeBuilder::generation_file)) or restarts in the
    /// same process. Without a file, a restart on a host whose clock went back gets a lower
    /// generation; peers still take the incarnation they saw start last as the member (see
    /// [`MembershipEvent`](crate::MembershipEvent)), so it tells incarnations apart, and orders
    /// them only for a node that saw them start together.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// All of the member's tags, sorted by key.
    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.tags
    }

    /// The address the member takes messages on (TCP), if it published one.
    pub fn rpc_addr(&self) -> Option<SocketAddr> {
        self.rpc
    }

    /// One tag's value, if the member has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.addr)
    }
}

/// Why a member left the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LeaveReason {
    /// It said goodbye ([`Node::leave`](crate::Node::leave)); peers hear within a few gossip
    /// intervals.
    Graceful,
    /// It stopped answering and the failure detector declared it dead.
    Failed,
    /// Another live incarnation with the same id took this one's place: one seen starting while
    /// this one was still counted live (its generation may be higher or lower), or, for a node
    /// that saw both at once and took the higher generation, the other one when this one was
    /// declared dead. The old incarnation is reported as left with this reason (or
    /// [`Graceful`](LeaveReason::Graceful), if it announced its leave), a `Joined` for the new one
    /// follows at once, and the old one is never reported again.
    Restarted,
}

impl fmt::Display for LeaveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeaveReason::Graceful => "graceful",
            LeaveReason::Failed => "failed",
            LeaveReason::Restarted => "restarted",
        })
    }
}

/// The behaviour a program implements to take part in a cluster.
///
/// Every method has a default that does nothing, so an implementation overrides only what it
/// needs. The node calls them from a single task, one at a time, in the order events happened:
///
/// - [`on_join`](ClusterMember::on_join) comes first and exactly once: when this node has exchanged
///   state with a peer, or at once when it was started with no seeds (it founds the cluster).
/// - After it, each change is delivered exactly once. Per incarnation, `on_node_joined` and
///   `on_node_left` alternate, starting with the join; after a `Graceful` or `Restarted` leave
///   the incarnation is never reported again, and after a `Failed` one it is joined again, once,
///   if it turns out to be alive (see [`MembershipEvent`](crate::MembershipEvent)).
/// - `on_member_updated` comes between a member's join and its leave, when its tags change.
/// - `handle_call` and `handle_cast` come only from members in this node's view (told joined,
///   not told left since) or from this node itself: a message that arrives before its sender's
///   join is delivered right after `on_node_joined`. A call whose deadline passed before its
///   turn is dropped without running.
/// - `handle_info` gets what the member sent itself and the outcomes of
///   [`Context::call_later`], in the order they arrive.
/// - When several are waiting, membership events go first, then `handle_info`, then calls and
///   casts.
///
/// A callback that panics is caught and logged; the node keeps running and delivers the next
/// event. A slow callback delays only later callbacks: gossip and failure detection go on. A
/// callback that awaits [`Context::call`] holds up the later callbacks until the reply or the
/// timeout; [`Context::call_later`] does not.
#[async_trait]
pub trait ClusterMember: Send + 'static {
    /// This node is now part of the cluster; `members` are the live members, itself included,
    /// sorted by id.
    async fn on_join(&mut self, cx: &Context, members: &[Member]) {
        let _ = (cx, members);
    }

    /// Another member appeared.
    async fn on_node_joined(&mut self, cx: &Context, member: &Member) {
        let _ = (cx, member);
    }

    /// A member left; `reason` says whether it said goodbye, failed, or restarted.
    async fn on_node_left(&mut self, cx: &Context, member: &Member, reason: LeaveReason) {
        let _ = (cx, member, reason);
    }

    /// A member's tags changed; `member` carries the new tags.
    async fn on_member_updated(&mut self, cx: &Context, member: &Member) {
        let _ = (cx, member);
    }

    /// The owner of a global name changed in this node's view ([`crate::names`]): `owner` holds
    /// it now, or nobody does (its owner released it, left or failed with no claimant queued,
    /// or a quorum name lost its majority). Comes after `on_join`, once per change, in order
    /// with the membership callbacks: the join of a new owner comes before the name's change.
    async fn on_name_owner_changed(&mut self, cx: &Context, name: &str, owner: Option<&Member>) {
        let _ = (cx, name, owner);
    }

    /// Another member called this one ([`Node::call`](crate::Node::call)); decode the request
    /// with [`Request::decode`] and answer with [`Reply::ok`] or [`Reply::error`]. Runs in order
    /// with the other callbacks. The default answers that this member takes no calls.
    async fn handle_call(&mut self, cx: &Context, request: Request) -> Reply {
        let _ = cx;
        Reply::error(format!("member takes no calls (from {})", request.from()))
    }

    /// Another member sent this one a message that needs no answer
    /// ([`Node::cast`](crate::Node::cast)). Runs in order with the other callbacks.
    async fn handle_cast(&mut self, cx: &Context, request: Request) {
        let _ = (cx, request);
    }

    /// A message this member sent itself ([`Context::send`], [`Context::send_after`]), or the
    /// outcome of a call it started with [`Context::call_later`]. Runs in order with the other
    /// callbacks. The default drops it.
    async fn handle_info(&mut self, cx: &Context, info: Info) {
        let _ = (cx, info);
    }
}

/// Decodes the reply of member `to` as `Resp`.
pub(crate) fn decode_reply<Resp: serde::de::DeserializeOwned>(
    to: &str,
    bytes: &[u8],
) -> Result<Resp, crate::Error> {
    bincode::deserialize(bytes).map_err(|err| crate::Error::Codec {
        what: format!("the reply of {to}"),
        reason: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_accessors_return_what_gossip_described() {
        let member = Member {
            id: "a".into(),
            addr: "127.0.0.1:7001".parse().unwrap(),
            generation: 7,
            tags: [("group".to_string(), "media".to_string())].into(),
            rpc: None,
        };
        assert_eq!(member.id(), "a");
        assert_eq!(member.generation(), 7);
        assert_eq!(member.tag("group"), Some("media"));
        assert_eq!(member.tag("missing"), None);
        assert_eq!(member.to_string(), "a@127.0.0.1:7001");
    }

    #[test]
    fn leave_reasons_print_in_lower_case() {
        assert_eq!(LeaveReason::Graceful.to_string(), "graceful");
        assert_eq!(LeaveReason::Failed.to_string(), "failed");
        assert_eq!(LeaveReason::Restarted.to_string(), "restarted");
    }
}
