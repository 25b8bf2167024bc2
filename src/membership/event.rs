//! [`MembershipEvent`], the closed set of changes a node reports, and [`EventStream`], the stream
//! [`Node::events`](crate::Node::events) returns.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use crate::{LeaveReason, Member};

/// A change in the cluster's membership, as one node saw it.
///
/// For each incarnation of a member (an id and a generation), a node reports joins and leaves
/// alternately, starting with `Joined`: `Joined`, any number of `Updated`, then `Left` or
/// nothing. After `Left(_, Graceful)` or `Left(_, Restarted)` the incarnation is never reported
/// again. After `Left(_, Failed)` it may be `Joined` again: an incarnation declared failed that is
/// live again with the same generation (a partition healed, a process resumed) is a new join,
/// exactly once per return. Events about one member are in the order they happened. A restart
/// with the same id, whatever the new generation (a host's clock may have gone back), is
/// `Left(old, Restarted)` followed by `Joined(new)`, and the old incarnation is never reported
/// again. A node never reports events about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MembershipEvent {
    /// A member appeared: it is live and has published its tags.
    Joined(Member),
    /// A member left, gracefully or not.
    Left(Member, LeaveReason),
    /// A member's tags changed; the value carries the new tags.
    Updated(Member),
}

impl MembershipEvent {
    /// The member the event is about.
    pub fn member(&self) -> &Member {
        match self {
            MembershipEvent::Joined(member)
            | MembershipEvent::Left(member, _)
            | MembershipEvent::Updated(member) => member,
        }
    }
}

/// What an [`EventStream`] yields instead of events it had to drop: the reader fell more than
/// the stream's buffer ([`NodeBuilder::event_buffer`](crate::NodeBuilder::event_buffer)) behind,
/// and this many of the oldest events were lost. The stream goes on with the events after them;
/// a reader that needs the whole picture reads [`Node::members`](crate::Node::members) again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the event stream fell behind and {0} membership events were lost")]
pub struct Lagged(pub u64);

/// A stream of the [`MembershipEvent`]s a node reports from the moment it was subscribed.
///
/// Each item is `Ok(event)`, or `Err(Lagged(n))` when the reader fell further behind than the
/// stream's buffer (4,096 events by default) and the `n` oldest events were dropped; the stream
/// goes on after it. The stream ends when the node stops.
pub struct EventStream {
    inner: BroadcastStream<MembershipEvent>,
}

impl EventStream {
    pub(crate) fn new(receiver: broadcast::Receiver<MembershipEvent>) -> Self {
        EventStream {
            inner: BroadcastStream::new(receiver),
        }
    }
}

impl Stream for EventStream {
    type Item = Result<MembershipEvent, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx).map(|item| {
            item.map(|item| item.map_err(|BroadcastStreamRecvError::Lagged(missed)| Lagged(missed)))
        })
    }
}
