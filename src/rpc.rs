//! Member-to-member messages: serde types encoded with bincode, in length-prefixed frames over TCP
//! to each member's advertised RPC address (published in its gossip state).
//!
//! - `frame.rs`: the wire format and the refusals a receiver can answer with;
//! - `server.rs`: accepting peers and each connection's loop; `server/read.rs` reads frames within
//!   their timeouts (for the client too), `server/dispatch.rs` hands requests to the dispatcher
//!   (the member's `handle_call` / `handle_cast`) or to herd's own handler and sends the replies,
//!   `server/counters.rs` counts what was refused;
//! - `client.rs`: one reused connection per peer, requests multiplexed by id, timeouts;
//! - `writer.rs`: the sending side of a connection, shared by everyone who sends on it.
//!
//! Users never touch bytes: [`Node::call`](crate::Node::call), [`Node::cast`](crate::Node::cast)
//! and [`Node::multi_call`](crate::Node::multi_call) take and return their own serde types, and a
//! member answers with [`Request::decode`] and [`Reply::ok`].

pub(crate) mod client;
pub(crate) mod deadline;
pub(crate) mod frame;
pub(crate) mod server;
pub(crate) mod writer;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use frame::DEFAULT_MAX_FRAME;

/// The default bound on the bytes queued for one connection
/// ([`NodeBuilder::rpc_queue_limit`](crate::NodeBuilder::rpc_queue_limit)): 64 MiB.
pub const DEFAULT_QUEUE_LIMIT: usize = writer::MAX_QUEUED_BYTES;
pub use server::{DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT};

/// A message another member sent, as `handle_call` or `handle_cast` receives it.
#[derive(Debug)]
pub struct Request {
    from: String,
    payload: Vec<u8>,
}

impl Request {
    pub(crate) fn new(from: String, payload: Vec<u8>) -> Request {
        Request { from, payload }
    }

    /// The id of the member that sent it.
    pub fn from(&self) -> &str {
        &self.from
    }

    /// Decodes the message as `T`: the type the sender passed to `call` or `cast`.
    ///
    /// # Errors
    /// The message is not a `T` ([`crate::Error::Codec`]).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, crate::Error> {
        bincode::deserialize(&self.payload).map_err(|err| crate::Error::Codec {
            what: format!("a request from {}", self.from),
            reason: err.to_string(),
        })
    }
}

/// The answer to a call: a value of the type the caller expects, or an error message.
#[derive(Debug)]
pub struct Reply(pub(crate) frame::Outcome);

impl Reply {
    /// Answers with `value`; the caller decodes it as the type it asked for.
    pub fn ok<T: Serialize>(value: &T) -> Reply {
        match bincode::serialize(value) {
            Ok(bytes) => Reply(frame::Outcome::Ok(bytes)),
            Err(err) => Reply::error(format!("the reply could not be encoded: {err}")),
        }
    }

    /// Answers with an error; the caller gets [`crate::Error::Remote`] with this message.
    pub fn error(message: impl std::fmt::Display) -> Reply {
        Reply(frame::Outcome::Err(frame::Refusal::Handler(
            message.to_string(),
        )))
    }
}
