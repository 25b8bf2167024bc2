//! [`MembershipEvent`], the closed set of changes a node reports, and [`EventStream`], the stream
//! [`Node::events`](crate::Node::events) returns.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tracing::warn;

use crate::{LeaveReason, Member};

/// A change in the cluster's membership, as one node saw it.
///
/// For each incarnation of a member (an id and a generation), a node reports exactly one
/// `Joined`, then any number of `Updated`, then at most one `Left`. Events about one member are
/// in the order they happened; a restart with the same id is `Left(old, Restarted)` followed by
/// `Joined(new)`. A node never reports events about itself.
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

/// A stream of the [`MembershipEvent`]s a node reports from the moment it was subscribed.
///
/// Events are buffered per stream (4,096 of them); a subscriber that falls further behind loses
/// the oldest ones, and a warning says how many. The stream ends when the node stops.
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
    type Item = MembershipEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => return Poll::Ready(Some(event)),
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(missed)))) => {
                    warn!(
                        missed,
                        "membership event subscriber fell behind; events were lost"
                    );
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
