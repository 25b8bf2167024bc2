//! What [`handle_info`](crate::ClusterMember::handle_info) receives: messages a member sent
//! itself ([`Context::send`](crate::Context::send), [`Context::send_after`](crate::Context::send_after))
//! and the outcomes of calls it started without waiting
//! ([`Context::call_later`](crate::Context::call_later)).

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// One item for [`handle_info`](crate::ClusterMember::handle_info), delivered in order with the
/// member's other callbacks.
#[derive(Debug)]
#[non_exhaustive]
pub enum Info {
    /// A value the member sent itself, now or after a delay.
    Message(Message),
    /// The outcome of a call started with [`Context::call_later`](crate::Context::call_later):
    /// the reply, the callee's error, or the timeout. Exactly one per call.
    Reply(CallReply),
}

/// A value of any `Send + 'static` type that a member sent itself. Take it out with
/// [`downcast`](Message::downcast) (or look with [`downcast_ref`](Message::downcast_ref)).
pub struct Message(Box<dyn Any + Send>);

impl Message {
    pub(crate) fn new<T: Send + 'static>(value: T) -> Message {
        Message(Box::new(value))
    }

    /// Whether the value is a `T`.
    pub fn is<T: 'static>(&self) -> bool {
        self.0.is::<T>()
    }

    /// The value, if it is a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }

    /// The value, if it is a `T`; the message back otherwise.
    pub fn downcast<T: 'static>(self) -> Result<T, Message> {
        self.0.downcast().map(|value| *value).map_err(Message)
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Message(..)")
    }
}

/// Names one call started with [`Context::call_later`](crate::Context::call_later); its
/// [`CallReply`] carries the same id. Unique within a node's run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub(crate) u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call#{}", self.0)
    }
}

/// How a call started with [`Context::call_later`](crate::Context::call_later) ended.
#[derive(Debug)]
pub struct CallReply {
    pub(crate) id: CallId,
    pub(crate) member: String,
    pub(crate) result: Result<Vec<u8>, Error>,
}

impl CallReply {
    /// The id [`call_later`](crate::Context::call_later) returned for this call.
    pub fn id(&self) -> CallId {
        self.id
    }

    /// The member that was called.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// The reply decoded as `Resp`, or why there is none: the errors of
    /// [`Node::call`](crate::Node::call) ([`Error::CallTimeout`] when no reply came in time).
    pub fn decode<Resp: DeserializeOwned>(self) -> Result<Resp, Error> {
        super::decode_reply(&self.member, &self.result?)
    }
}

/// A message [`Context::send_after`](crate::Context::send_after) will deliver; cancel it with
/// [`cancel`](Timer::cancel). Dropping a `Timer` does not cancel it.
#[derive(Debug, Clone)]
pub struct Timer {
    pub(crate) state: Arc<TimerState>,
}

#[derive(Debug, Default)]
pub(crate) struct TimerState {
    /// Set once: by the timer when it delivers, or by `cancel`; whoever sets it decides.
    pub(crate) decided: AtomicBool,
    pub(crate) cancel: CancellationToken,
}

impl Timer {
    /// Cancels the timer. Returns true when the message had not been delivered yet (it never
    /// will be), false when it already was (or the timer was cancelled before).
    pub fn cancel(&self) -> bool {
        let prevented = !self.state.decided.swap(true, Ordering::AcqRel);
        self.state.cancel.cancel();
        prevented
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_gives_back_its_value_only_as_its_own_type() {
        let message = Message::new(42u32);
        assert!(message.is::<u32>());
        assert_eq!(message.downcast_ref::<u32>(), Some(&42));
        let message = message.downcast::<String>().unwrap_err();
        assert_eq!(message.downcast::<u32>().unwrap(), 42);
    }

    #[test]
    fn a_timer_is_cancelled_once() {
        let timer = Timer {
            state: Arc::default(),
        };
        assert!(timer.cancel());
        assert!(!timer.cancel());
        assert!(timer.state.cancel.is_cancelled());
    }

    #[test]
    fn a_reply_decodes_or_gives_its_error() {
        let ok = CallReply {
            id: CallId(1),
            member: "b".into(),
            result: Ok(bincode::serialize(&7u64).unwrap()),
        };
        assert_eq!(ok.decode::<u64>().unwrap(), 7);
        let timeout = CallReply {
            id: CallId(2),
            member: "b".into(),
            result: Err(Error::CallTimeout {
                member: "b".into(),
                timeout: std::time::Duration::from_millis(5),
            }),
        };
        assert!(matches!(
            timeout.decode::<u64>(),
            Err(Error::CallTimeout { .. })
        ));
    }
}
