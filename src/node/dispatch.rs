//! The dispatcher task: the only caller of a node's [`ClusterMember`] callbacks.
//!
//! It takes [`Delivery`]s from the membership watcher in order, and calls and casts from the RPC
//! server, and makes one callback at a time, so ordering and exactly-once live here and nowhere
//! else. Membership events go first when both are waiting. A panicking callback is caught and
//! logged, and the next delivery goes on. It stops when the node's cancellation token fires
//! (a callback in progress is finished first) or the watcher is gone.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::membership::watcher::Delivery;
use crate::rpc::server::Incoming;
use crate::rpc::{Reply, Request};
use crate::{ClusterMember, Context, MembershipEvent};

/// What the dispatcher takes next.
enum Next {
    Membership(Delivery),
    Message(Incoming),
}

/// Runs `member`'s callbacks for each delivery until `cancel` fires.
pub(crate) async fn run<M: ClusterMember>(
    mut member: M,
    cx: Context,
    mut deliveries: mpsc::Receiver<Delivery>,
    mut messages: mpsc::Receiver<Incoming>,
    cancel: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            delivery = deliveries.recv() => match delivery {
                Some(delivery) => Next::Membership(delivery),
                None => break,
            },
            message = messages.recv() => match message {
                Some(message) => Next::Message(message),
                None => break,
            },
        };
        let delivery = match next {
            Next::Membership(delivery) => delivery,
            Next::Message(Incoming::Call {
                from,
                payload,
                reply,
            }) => {
                let request = Request::new(from, payload);
                let outcome = AssertUnwindSafe(member.handle_call(&cx, request))
                    .catch_unwind()
                    .await;
                let answer = match outcome {
                    Ok(answer) => answer,
                    Err(panic) => {
                        log_panic(&cx, "handle_call", panic);
                        Reply::error("the member's handle_call panicked")
                    }
                };
                reply.send(answer.0);
                continue;
            }
            Next::Message(Incoming::Cast { from, payload }) => {
                let request = Request::new(from, payload);
                let outcome = AssertUnwindSafe(member.handle_cast(&cx, request))
                    .catch_unwind()
                    .await;
                if let Err(panic) = outcome {
                    log_panic(&cx, "handle_cast", panic);
                }
                continue;
            }
        };
        let (callback, outcome) = match &delivery {
            Delivery::Welcome(members) => (
                "on_join",
                AssertUnwindSafe(member.on_join(&cx, members))
                    .catch_unwind()
                    .await,
            ),
            Delivery::Event(MembershipEvent::Joined(m)) => (
                "on_node_joined",
                AssertUnwindSafe(member.on_node_joined(&cx, m))
                    .catch_unwind()
                    .await,
            ),
            Delivery::Event(MembershipEvent::Left(m, reason)) => (
                "on_node_left",
                AssertUnwindSafe(member.on_node_left(&cx, m, *reason))
                    .catch_unwind()
                    .await,
            ),
            Delivery::Event(MembershipEvent::Updated(m)) => (
                "on_member_updated",
                AssertUnwindSafe(member.on_member_updated(&cx, m))
                    .catch_unwind()
                    .await,
            ),
        };
        if let Err(panic) = outcome {
            log_panic(&cx, callback, panic);
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
