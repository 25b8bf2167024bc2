//! The dispatcher task: the only caller of a node's [`ClusterMember`] callbacks.
//!
//! It takes [`Delivery`]s from the membership watcher in order, the member's own mailbox
//! ([`handle_info`](ClusterMember::handle_info)), and calls and casts from the RPC server, and
//! makes one callback at a time, so ordering and exactly-once live here and nowhere else. When
//! several are waiting, membership events go first, then the mailbox, then calls and casts. A
//! panicking callback is caught and logged, and the next delivery goes on. It stops when the
//! node's cancellation token fires (a callback in progress is finished first, or abandoned by
//! the shutdown timeout), when the member asked to leave ([`Context::leave`]), or when the
//! watcher is gone.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use super::mailbox::Letter;
use crate::membership::watcher::Delivery;
use crate::rpc::server::Incoming;
use crate::rpc::{Reply, Request};
use crate::{ClusterMember, Context, MembershipEvent};

/// The callback running now, for the report of a stop that had to abandon it.
#[derive(Debug, Default)]
pub(crate) struct Current(std::sync::Mutex<Option<&'static str>>);

impl Current {
    pub(crate) fn get(&self) -> Option<&'static str> {
        *self.0.lock().expect("current callback lock")
    }

    fn set(&self, callback: Option<&'static str>) {
        *self.0.lock().expect("current callback lock") = callback;
    }
}

/// What the dispatcher takes next.
enum Next {
    Membership(Delivery),
    Info(Letter),
    Message(Incoming),
}

/// A dispatcher's inputs.
pub(crate) struct Dispatcher<M> {
    pub(crate) member: M,
    pub(crate) cx: Context,
    pub(crate) deliveries: mpsc::Receiver<Delivery>,
    pub(crate) mailbox: mpsc::UnboundedReceiver<Letter>,
    pub(crate) messages: mpsc::Receiver<Incoming>,
    pub(crate) current: std::sync::Arc<Current>,
}

impl<M: ClusterMember> Dispatcher<M> {
    /// Runs the member's callbacks for each delivery until `cancel` fires.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let leave = self.cx.leave_requested().clone();
        loop {
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = leave.cancelled() => {
                    self.start_leave();
                    break;
                }
                delivery = self.deliveries.recv() => match delivery {
                    Some(delivery) => Next::Membership(delivery),
                    None => break,
                },
                Some(letter) = self.mailbox.recv() => Next::Info(letter),
                message = self.messages.recv() => match message {
                    Some(message) => Next::Message(message),
                    None => break,
                },
            };
            self.deliver(next).await;
        }
        debug!(node = %self.cx.node_id(), "dispatcher stopped");
    }

    /// The member asked to leave: the node leaves from a task of its own (a stop waits for this
    /// dispatcher to end, which it does now).
    fn start_leave(&self) {
        if let Some(node) = self.cx.node() {
            tokio::spawn(async move {
                if let Err(err) = node.leave().await {
                    error!(node = %node.id(), error = %err, "leave asked by the member");
                }
            });
        }
    }

    async fn deliver(&mut self, next: Next) {
        let member = &mut self.member;
        let cx = &self.cx;
        let (callback, outcome) = match next {
            Next::Message(Incoming::Call {
                from,
                payload,
                reply,
            }) => {
                self.current.set(Some("handle_call"));
                let request = Request::new(from, payload);
                let outcome = AssertUnwindSafe(member.handle_call(cx, request))
                    .catch_unwind()
                    .await;
                let answer = match outcome {
                    Ok(answer) => answer,
                    Err(panic) => {
                        log_panic(cx, "handle_call", panic);
                        Reply::error("the member's handle_call panicked")
                    }
                };
                reply.send(answer.0);
                self.current.set(None);
                return;
            }
            Next::Message(Incoming::Cast { from, payload }) => {
                self.current.set(Some("handle_cast"));
                let request = Request::new(from, payload);
                (
                    "handle_cast",
                    AssertUnwindSafe(member.handle_cast(cx, request))
                        .catch_unwind()
                        .await,
                )
            }
            Next::Info(letter) => {
                self.current.set(Some("handle_info"));
                (
                    "handle_info",
                    AssertUnwindSafe(member.handle_info(cx, letter.info))
                        .catch_unwind()
                        .await,
                )
            }
            Next::Membership(delivery) => {
                let callback = match &delivery {
                    Delivery::Welcome(_) => "on_join",
                    Delivery::Event(MembershipEvent::Joined(_)) => "on_node_joined",
                    Delivery::Event(MembershipEvent::Left(..)) => "on_node_left",
                    Delivery::Event(MembershipEvent::Updated(_)) => "on_member_updated",
                };
                self.current.set(Some(callback));
                let outcome = match &delivery {
                    Delivery::Welcome(members) => {
                        AssertUnwindSafe(member.on_join(cx, members))
                            .catch_unwind()
                            .await
                    }
                    Delivery::Event(MembershipEvent::Joined(m)) => {
                        AssertUnwindSafe(member.on_node_joined(cx, m))
                            .catch_unwind()
                            .await
                    }
                    Delivery::Event(MembershipEvent::Left(m, reason)) => {
                        AssertUnwindSafe(member.on_node_left(cx, m, *reason))
                            .catch_unwind()
                            .await
                    }
                    Delivery::Event(MembershipEvent::Updated(m)) => {
                        AssertUnwindSafe(member.on_member_updated(cx, m))
                            .catch_unwind()
                            .await
                    }
                };
                (callback, outcome)
            }
        };
        self.current.set(None);
        if let Err(panic) = outcome {
            log_panic(cx, callback, panic);
        }
    }
}

fn log_panic(cx: &Context, callback: &str, panic: Box<dyn std::any::Any + Send>) {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".into());
    error!(node = %cx.node_id(), callback, panic = %message, "member callback panicked; delivery goes on");
}
