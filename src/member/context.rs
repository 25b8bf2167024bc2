//! The [`Context`] handed to every [`ClusterMember`](crate::ClusterMember) callback: who this node
//! is, who is in the cluster, and what a callback can do from where it runs: call and cast to
//! other members, change tags, leave, and send itself messages now or later.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::info::{CallId, CallReply, Info, Message, Timer, TimerState};
use crate::node::mailbox::Mailbox;
use crate::node::WeakNode;
use crate::{Error, Member, Node};

/// What a callback can ask of its node. Cheap to clone; a clone may be moved into another task.
///
/// A `Context` does not keep its node running: it holds the node weakly, so dropping the last
/// [`Node`] handle stops the node even while the member (or a task it spawned) keeps a `Context`.
/// After the node stopped, the methods that act return [`Error::Stopped`].
#[derive(Clone, Debug)]
pub struct Context {
    node_id: Arc<str>,
    members: watch::Receiver<Arc<[Member]>>,
    node: WeakNode,
    mailbox: Mailbox,
    /// Fired by [`Context::leave`]; the dispatcher starts the leave when it sees it.
    leave: CancellationToken,
    /// The node's cancellation: timers and later-calls end with it.
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Context {
    pub(crate) fn new(
        node_id: Arc<str>,
        members: watch::Receiver<Arc<[Member]>>,
        node: WeakNode,
        mailbox: Mailbox,
        cancel: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        Context {
            node_id,
            members,
            node,
            mailbox,
            leave: CancellationToken::new(),
            cancel,
            tracker,
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The live members as this node knows them now (which may be ahead of the event being
    /// delivered), itself included, sorted by id.
    pub fn members(&self) -> Vec<Member> {
        self.members.borrow().to_vec()
    }

    /// A handle to the node, while it runs. Keeping the returned [`Node`] keeps the node
    /// running, as any handle does; drop it when done.
    pub fn node(&self) -> Option<Node> {
        self.node.upgrade()
    }

    fn running(&self) -> Result<Node, Error> {
        self.node().ok_or_else(|| Error::Stopped {
            node: self.node_id.to_string(),
        })
    }

    /// Calls member `to` and waits for its reply, as [`Node::call`] does.
    ///
    /// Awaiting this inside a callback holds up this member's other callbacks until the reply
    /// or the timeout: membership events, calls from others and [`handle_info`] wait meanwhile
    /// (gossip and failure detection do not). To stay responsive while a peer may be slow or
    /// frozen, use [`call_later`](Context::call_later).
    ///
    /// [`handle_info`]: crate::ClusterMember::handle_info
    ///
    /// # Errors
    /// Those of [`Node::call`], and [`Error::Stopped`] after the node stopped.
    pub async fn call<Req, Resp>(
        &self,
        to: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, Error>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let node = self.running()?;
        let call = node.start_call(to, request, timeout)?;
        drop(node);
        let bytes = call.await?;
        super::decode_reply(to, &bytes)
    }

    /// Calls member `to` without waiting: returns at once with the call's id, and the outcome
    /// (the reply, the callee's error, or [`Error::CallTimeout`] after `timeout`) arrives later,
    /// exactly once, as [`Info::Reply`] in [`handle_info`], in order with the other callbacks.
    /// gen_server users know this as `send_request`.
    ///
    /// [`handle_info`]: crate::ClusterMember::handle_info
    ///
    /// # Errors
    /// At once, and then no reply follows: [`Error::UnknownMember`] for an id that is not a live
    /// member, [`Error::Codec`], [`Error::MailboxFull`], [`Error::Stopped`].
    pub fn call_later<Req>(
        &self,
        to: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<CallId, Error>
    where
        Req: Serialize + ?Sized,
    {
        let node = self.running()?;
        let slot = self.mailbox.reserve()?;
        let call = node.start_call(to, request, timeout)?;
        drop(node);
        let id = self.mailbox.next_call_id();
        let mailbox = self.mailbox.clone();
        let cancel = self.cancel.clone();
        let member = to.to_string();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                result = call => mailbox.post(slot, Info::Reply(CallReply { id, member, result })),
            }
        });
        Ok(id)
    }

    /// Sends `message` to member `to` without waiting for an answer, as [`Node::cast`] does.
    ///
    /// # Errors
    /// Those of [`Node::cast`], and [`Error::Stopped`] after the node stopped.
    pub async fn cast<Msg: Serialize + ?Sized>(
        &self,
        to: &str,
        message: &Msg,
    ) -> Result<(), Error> {
        self.running()?.cast(to, message).await
    }

    /// Calls every live member, as [`Node::multi_call`] does. From inside a callback this
    /// member's own entry ends in [`Error::CallTimeout`]: it would have to answer itself.
    pub async fn multi_call<Req, Resp>(
        &self,
        request: &Req,
        timeout: Duration,
    ) -> Vec<(String, Result<Resp, Error>)>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        match self.running() {
            Ok(node) => node.multi_call(request, timeout).await,
            Err(_) => Vec::new(),
        }
    }

    /// Sets one of this node's tags, as [`Node::set_tag`] does.
    ///
    /// # Errors
    /// Those of [`Node::set_tag`].
    pub async fn set_tag(&self, key: &str, value: &str) -> Result<(), Error> {
        self.running()?.set_tag(key, value).await
    }

    /// Removes one of this node's tags, as [`Node::remove_tag`] does.
    ///
    /// # Errors
    /// Those of [`Node::remove_tag`].
    pub async fn remove_tag(&self, key: &str) -> Result<(), Error> {
        self.running()?.remove_tag(key).await
    }

    /// Asks the node to leave the cluster gracefully, and returns at once. When the callback
    /// running now returns (or at once, when called outside a callback) the member gets no more
    /// callbacks, and the node leaves as [`Node::leave`] does: peers report it
    /// `Left(Graceful)`. Asking again does nothing.
    pub fn leave(&self) {
        self.leave.cancel();
    }

    pub(crate) fn leave_requested(&self) -> &CancellationToken {
        &self.leave
    }

    /// Sends `message` to this member itself: [`handle_info`] gets it as [`Info::Message`], after
    /// the callbacks already waiting. Any `Send + 'static` value.
    ///
    /// [`handle_info`]: crate::ClusterMember::handle_info
    ///
    /// # Errors
    /// [`Error::MailboxFull`] (nothing was sent).
    pub fn send<T: Send + 'static>(&self, message: T) -> Result<(), Error> {
        let slot = self.mailbox.reserve()?;
        self.mailbox
            .post(slot, Info::Message(Message::new(message)));
        Ok(())
    }

    /// Sends `message` to this member itself after `delay` (`erlang:send_after`): [`handle_info`]
    /// gets it as [`Info::Message`] once the delay has passed, in order with the callbacks
    /// waiting then. Cancel it with [`Timer::cancel`]. A pending timer holds one mailbox slot.
    ///
    /// [`handle_info`]: crate::ClusterMember::handle_info
    ///
    /// # Errors
    /// [`Error::MailboxFull`] (no timer was set).
    pub fn send_after<T: Send + 'static>(
        &self,
        delay: Duration,
        message: T,
    ) -> Result<Timer, Error> {
        let slot = self.mailbox.reserve()?;
        let state = Arc::new(TimerState::default());
        let timer = Timer {
            state: state.clone(),
        };
        let mailbox = self.mailbox.clone();
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = state.cancel.cancelled() => {}
                _ = tokio::time::sleep(delay) => {
                    if !state.decided.swap(true, Ordering::AcqRel) {
                        mailbox.post(slot, Info::Message(Message::new(message)));
                    }
                }
            }
        });
        Ok(timer)
    }
}
