//! The dispatcher task: the only caller of a node's [`ClusterMember`] callbacks.
//!
//! It takes [`Delivery`]s from the membership watcher in order and makes one callback at a time,
//! so ordering and exactly-once live here and nowhere else. A panicking callback is caught and
//! logged, and the next delivery goes on. It stops when the node's cancellation token fires
//! (a callback in progress is finished first) or the watcher is gone.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::membership::watcher::Delivery;
use crate::{ClusterMember, Context, MembershipEvent};

/// Runs `member`'s callbacks for each delivery until `cancel` fires.
pub(crate) async fn run<M: ClusterMember>(
    mut member: M,
    cx: Context,
    mut deliveries: mpsc::UnboundedReceiver<Delivery>,
    cancel: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            delivery = deliveries.recv() => match delivery {
                Some(delivery) => delivery,
                None => break,
            },
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
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".into());
            error!(node = %cx.node_id(), callback, panic = %message, "member callback panicked; delivery goes on");
        }
    }
}
