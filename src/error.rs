//! The library's error type: everything that can go wrong starting a node, changing its state, or
//! talking to it after it stopped. Each variant carries the value that was wrong, so the message
//! alone tells a user what to fix.

use std::net::SocketAddr;

/// An error from herd's membership layer.
///
/// Errors are returned before anything changed: a node that fails to start has bound nothing and
/// spawned nothing; a rejected tag leaves the node's tags as they were.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node id given to [`Node::builder`](crate::Node::builder) is empty or blank.
    #[error("node id must not be empty")]
    EmptyNodeId,

    /// The node id is longer than `limit` (255) bytes.
    #[error("node id {id:?}... is {len} bytes long; the limit is {limit}")]
    NodeIdTooLong {
        /// The id's first characters.
        id: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },

    /// A seed is neither `ip:port` nor `host:port`, or its host name did not resolve.
    #[error("invalid seed {seed:?}: {reason}")]
    InvalidSeed {
        /// The seed exactly as it was given.
        seed: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The gossip socket could not be bound (most often: the address is already in use).
    #[error("cannot bind the gossip socket to {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The listen address is unspecified (`0.0.0.0` or `::`) and no advertise address was given,
    /// so peers would not know where to reach this node.
    #[error("listen address {listen} is unspecified: set an advertise address peers can reach")]
    NoAdvertiseAddr {
        /// The unspecified listen address.
        listen: SocketAddr,
    },

    /// A tag key is empty, or a tag is otherwise unusable.
    #[error("invalid tag {key:?}: {reason}")]
    InvalidTag {
        /// The tag key as it was given.
        key: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The node has left the cluster or was shut down; the operation needs a running node.
    #[error("node {node:?} has stopped")]
    Stopped {
        /// The id of the stopped node.
        node: String,
    },

    /// The RPC listener could not be bound.
    #[error("cannot bind the RPC listener to {addr}: {source}")]
    RpcBind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The member's node refused the connection, or this node refused it: they hold no cluster
    /// key in common, one of them holds none, a proof did not verify, or another node answered
    /// at the member's address.
    #[error("member {member:?} at {addr} refused the connection: {reason}")]
    Refused {
        /// The member called.
        member: String,
        /// Its RPC address.
        addr: SocketAddr,
        /// What the handshake found.
        reason: String,
    },

    /// No live member has this id.
    #[error("no live member {member:?}")]
    UnknownMember {
        /// The id asked for.
        member: String,
    },

    /// The member could not be reached, or the connection broke before its reply.
    #[error("member {member:?} at {addr} is unreachable: {reason}")]
    Unreachable {
        /// The member's id.
        member: String,
        /// Its RPC address.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },

    /// The member did not reply in time.
    #[error("member {member:?} did not reply within {timeout:?}")]
    CallTimeout {
        /// The member's id.
        member: String,
        /// The timeout that passed.
        timeout: std::time::Duration,
    },

    /// The connection to the member already queues as many bytes as it may (the member is not
    /// reading fast enough, or not at all): the message was not sent.
    #[error(
        "member {member:?} is overloaded: {queued} bytes wait to be sent, the limit is {limit}"
    )]
    Overloaded {
        /// The member's id.
        member: String,
        /// Bytes queued on the connection.
        queued: usize,
        /// The queue's bound.
        limit: usize,
    },

    /// The member answered with an error (its handler's, or a refusal of the request).
    #[error("member {member:?} answered with an error: {message}")]
    Remote {
        /// The member's id.
        member: String,
        /// The error it sent.
        message: String,
    },

    /// A message is larger than the frame limit.
    #[error("a message of {size} bytes exceeds the frame limit of {limit} bytes")]
    FrameTooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// A message could not be encoded or decoded as the expected type.
    #[error("cannot encode or decode {what}: {reason}")]
    Codec {
        /// Which message.
        what: String,
        /// The codec's error.
        reason: String,
    },

    /// The gossip server failed to start for another reason.
    #[error("gossip on {addr} failed to start: {reason}")]
    Gossip {
        /// The gossip listen address.
        addr: SocketAddr,
        /// What went wrong, as the gossip layer reported it.
        reason: String,
    },

    /// The member's mailbox holds as many messages, timers and unanswered later-calls as it may
    /// ([`NodeBuilder::mailbox`](crate::NodeBuilder::mailbox)): nothing was sent.
    #[error("the mailbox of {node} is full ({limit} messages, timers and later-calls wait for handle_info)")]
    MailboxFull {
        /// The node whose member's mailbox is full.
        node: String,
        /// The mailbox's bound.
        limit: usize,
    },

    /// [`Node::leave`](crate::Node::leave) or [`Node::shutdown`](crate::Node::shutdown) waited
    /// as long as it may ([`NodeBuilder::shutdown_timeout`](crate::NodeBuilder::shutdown_timeout))
    /// for a member callback to return, and stopped the node without it: the callback was
    /// abandoned at its next await point.
    #[error("node {node:?} stopped without waiting for its member's {callback} callback, which had not returned after {waited:?}")]
    CallbackAbandoned {
        /// The node that stopped.
        node: String,
        /// The callback that was running (`on_node_left`, `handle_call`, ...).
        callback: &'static str,
        /// How long the stop waited for it.
        waited: std::time::Duration,
    },

    /// The generation file ([`NodeBuilder::generation_file`](crate::NodeBuilder::generation_file))
    /// cannot be read, holds no generation, or cannot be replaced. The node did not start, and
    /// the file is as it was.
    #[error("generation file {}: {reason}", path.display())]
    GenerationFile {
        /// The file.
        path: std::path::PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// A global name is empty, longer than 255 bytes, or holds a control character.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name's first characters.
        name: String,
        /// Why it was rejected.
        reason: String,
    },

    /// [`Node::register_name`](crate::Node::register_name) found a claim on the name: a member
    /// (this node, or another) holds it or waits for it. `owner` is the claimant ranked first.
    #[error("name {name:?} is taken by {owner}")]
    NameTaken {
        /// The name.
        name: String,
        /// The member that holds it, or ranks first for it.
        owner: Box<crate::Member>,
    },

    /// A quorum name was registered on a node that does not see a majority of the expected
    /// members ([`NodeBuilder::expected_members`](crate::NodeBuilder::expected_members)), or on a
    /// node that was given no expected size.
    #[error("name {name:?} needs a quorum: {reason}")]
    NoQuorum {
        /// The name.
        name: String,
        /// What is missing.
        reason: String,
    },
}
