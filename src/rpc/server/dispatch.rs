//! Acting on one opened frame, and sending the replies. A `Call` or `Cast` becomes an
//! [`Incoming`] on the dispatcher's queue (a call carries the [`Responder`] that answers it); a
//! `System` frame runs herd's own [`SystemHandler`] on a task of its own, at most
//! [`MAX_SYSTEM_REQUESTS`] at once; a frame that does not decode is counted, logged and, when it
//! is a call, refused to its id. A reply over the frame limit goes as an error reply instead.
//!
//! [`handle`] runs on the connection's reader task and does not wait for the queue or a slot: a
//! full queue or no free slot is answered at once with a refusal. A herd request's task stops on
//! the node's cancellation token.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::{ServerCounters, Shared, MAX_SYSTEM_REQUESTS};
use crate::rpc::deadline::{self, PeerClock};
use crate::rpc::frame::{self, Kind, Outcome, Refusal};
use crate::rpc::writer::{self, FrameWriter};

/// A request from a peer for the member's callbacks.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// Answer through `reply`.
    Call {
        from: String,
        payload: Vec<u8>,
        reply: Responder,
        /// The caller's deadline on this node's clock (`deadline.rs`): past it, the member must
        /// not start the call.
        deadline: tokio::time::Instant,
    },
    /// No answer.
    Cast { from: String, payload: Vec<u8> },
}

/// Answers one call: writes the reply frame straight to the caller's connection. A call dropped
/// unanswered (the member is stopping) is answered with a refusal.
pub(crate) struct Responder {
    id: u64,
    /// Weak: a call waiting in the member's queue does not keep its connection's socket open.
    replies: Option<Weak<FrameWriter>>,
    in_flight: Arc<AtomicUsize>,
    max_frame: usize,
    counters: Arc<ServerCounters>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").field("id", &self.id).finish()
    }
}

impl Responder {
    /// Drops a call whose deadline passed before the member started it: counted, and answered
    /// with a refusal that nobody waits for any more.
    pub(crate) fn expired(self) {
        self.counters.expired.fetch_add(1, Ordering::Relaxed);
        self.send(Outcome::Err(Refusal::Unavailable(
            "the call's deadline passed before the member started it".into(),
        )));
    }

    /// Sends the answer.
    pub(crate) fn send(mut self, outcome: Outcome) {
        if let Some(replies) = self.replies.take() {
            // The only call in flight on its connection: write the reply at once.
            let alone = self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1;
            if let Some(replies) = replies.upgrade() {
                send_reply(
                    &replies,
                    self.id,
                    outcome,
                    alone,
                    self.max_frame,
                    &self.counters,
                );
            }
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(replies) = self.replies.take() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            if let Some(replies) = replies.upgrade() {
                let refusal = Refusal::Unavailable("the member stopped before answering".into());
                let outcome = Outcome::Err(refusal);
                send_reply(
                    &replies,
                    self.id,
                    outcome,
                    false,
                    self.max_frame,
                    &self.counters,
                );
            }
        }
    }
}

/// herd's own request handler on a node (the agent registers one).
#[async_trait]
pub(crate) trait SystemHandler: Send + Sync + 'static {
    /// Answers one request from node `from`.
    async fn handle(&self, from: String, payload: Vec<u8>) -> Outcome;
}

/// One connection, as the frame handler sees it.
pub(super) struct ConnRef<'a> {
    pub(super) peer: SocketAddr,
    pub(super) from: &'a Arc<str>,
    pub(super) replies: &'a Arc<FrameWriter>,
    pub(super) in_flight: &'a Arc<AtomicUsize>,
}

/// Acts on one opened frame (without its length prefix) from `conn`; see the module doc.
pub(super) fn handle(
    bytes: &[u8],
    conn: &ConnRef<'_>,
    clock: &mut PeerClock,
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) {
    let (peer, replies) = (conn.peer, conn.replies);
    let refuse = |id: u64, kind: Option<Kind>, why: String| {
        shared.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
        warn!(node = %shared.node_id, %peer, id, reason = %why, "rpc frame dropped");
        if matches!(kind, Some(Kind::Call | Kind::System)) {
            reply(replies, id, Outcome::Err(Refusal::Malformed(why)), shared);
        }
    };
    let Some((kind_byte, id, body)) = frame::split(bytes) else {
        return refuse(
            0,
            None,
            format!(
                "a frame of {} bytes is shorter than its header",
                bytes.len()
            ),
        );
    };
    let kind = Kind::from_u8(kind_byte);
    if !matches!(kind, Some(Kind::Call | Kind::Cast | Kind::System)) {
        return refuse(id, kind, format!("unexpected frame kind {kind_byte}"));
    }
    let (deadline, body) = match kind {
        Some(Kind::Call | Kind::System) => {
            let Some((timing, payload)) = deadline::split(body) else {
                return refuse(id, kind, "a request shorter than its timing prefix".into());
            };
            let now = tokio::time::Instant::now();
            let deadline = clock.deadline(timing, now);
            if deadline <= now {
                shared.counters.expired.fetch_add(1, Ordering::Relaxed);
                debug!(node = %shared.node_id, %peer, id, "request dropped: its deadline passed before it arrived");
                return;
            }
            (deadline, payload)
        }
        _ => (tokio::time::Instant::now(), body),
    };
    let payload = body.to_vec();
    match kind {
        Some(Kind::Call) => {
            conn.in_flight.fetch_add(1, Ordering::AcqRel);
            let responder = Responder {
                id,
                replies: Some(Arc::downgrade(replies)),
                in_flight: conn.in_flight.clone(),
                max_frame: shared.limits.max_frame,
                counters: shared.counters.clone(),
            };
            let incoming = Incoming::Call {
                from: conn.from.to_string(),
                payload,
                reply: responder,
                deadline,
            };
            if let Err(err) = shared.incoming.try_send(incoming) {
                let (why, incoming) = match err {
                    mpsc::error::TrySendError::Full(i) => ("the member's message queue is full", i),
                    mpsc::error::TrySendError::Closed(i) => ("the member is stopping", i),
                };
                if let Incoming::Call {
                    reply: responder, ..
                } = incoming
                {
                    responder.send(Outcome::Err(Refusal::Unavailable(why.into())));
                }
            }
        }
        Some(Kind::Cast) => {
            let incoming = Incoming::Cast {
                from: conn.from.to_string(),
                payload,
            };
            if shared.incoming.try_send(incoming).is_err() {
                warn!(node = %shared.node_id, %peer, "cast dropped: the member's message queue is full or closed");
            }
        }
        _ => {
            let Ok(slot) = shared.system_slots.clone().try_acquire_owned() else {
                shared.counters.system_busy.fetch_add(1, Ordering::Relaxed);
                let why = format!("{MAX_SYSTEM_REQUESTS} herd requests are running; try again");
                return reply(replies, id, Outcome::Err(Refusal::Unavailable(why)), shared);
            };
            let handler = shared.system.read().expect("system handler lock").clone();
            let weak = Arc::downgrade(replies);
            let from = conn.from.to_string();
            let (shared, cancel) = (shared.clone(), cancel.clone());
            tracker.spawn(async move {
                let outcome = match handler {
                    Some(handler) => tokio::select! {
                        _ = cancel.cancelled() => return,
                        outcome = handler.handle(from, payload) => outcome,
                    },
                    None => Outcome::Err(Refusal::Unavailable(
                        "this node takes no herd requests".into(),
                    )),
                };
                drop(slot);
                if let Some(replies) = weak.upgrade() {
                    reply(&replies, id, outcome, &shared);
                }
            });
        }
    }
}

/// Sends a reply with the server's frame limit and counters, queued for the flush task.
pub(super) fn reply(replies: &FrameWriter, id: u64, outcome: Outcome, shared: &Shared) {
    send_reply(
        replies,
        id,
        outcome,
        false,
        shared.limits.max_frame,
        &shared.counters,
    );
}

/// Sends a reply; one over `max_frame` goes as a `TooLarge` refusal instead, and one the queue
/// has no room for is dropped (the peer is not reading), both counted.
fn send_reply(
    replies: &FrameWriter,
    id: u64,
    outcome: Outcome,
    direct: bool,
    max_frame: usize,
    counters: &ServerCounters,
) {
    let bytes = match frame::encode(Kind::Reply, id, &outcome, max_frame) {
        Ok(bytes) => bytes,
        Err(frame::EncodeError::TooLarge { size, limit }) => {
            counters.oversized_replies.fetch_add(1, Ordering::Relaxed);
            warn!(
                id,
                size, limit, "rpc reply over the frame limit: answered with an error"
            );
            let refusal = Refusal::Unavailable(format!(
                "the reply of {size} bytes exceeds the frame limit of {limit}"
            ));
            match frame::encode(Kind::Reply, id, &Outcome::Err(refusal), max_frame) {
                Ok(bytes) => bytes,
                Err(_) => return,
            }
        }
        Err(frame::EncodeError::Codec(err)) => {
            return warn!(id, error = %err, "rpc reply could not be encoded")
        }
    };
    if let Err(writer::SendError::Full { .. }) = replies.send(bytes, direct) {
        counters.overloaded.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, RwLock};
    use std::time::Duration;

    use tokio::net::TcpListener;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::log_limit::LogLimit;
    use crate::rpc::client::{Client, Failure};
    use crate::rpc::server::{serve, Limits};

    /// Never answers, until cancelled.
    struct Hang;

    #[async_trait]
    impl SystemHandler for Hang {
        async fn handle(&self, _from: String, _payload: Vec<u8>) -> Outcome {
            std::future::pending().await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn herd_requests_beyond_the_bound_are_refused_at_once_and_cancelled_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (incoming, _queue) = mpsc::channel(16);
        let limits = Limits::new(frame::DEFAULT_MAX_FRAME);
        let handler: Arc<dyn SystemHandler> = Arc::new(Hang);
        let shared = Arc::new(Shared {
            node_id: "server".into(),
            incoming,
            system: RwLock::new(Some(handler)),
            limits,
            counters: Arc::default(),
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            system_slots: Arc::new(Semaphore::new(MAX_SYSTEM_REQUESTS)),
            keyring: None,
            logged: Mutex::new(LogLimit::new(Duration::from_secs(60))),
        });
        let (tracker, cancel) = (TaskTracker::new(), CancellationToken::new());
        tracker.spawn(serve(
            listener,
            shared.clone(),
            tracker.clone(),
            cancel.clone(),
        ));
        let client = Arc::new(Client::new(
            "caller".into(),
            limits,
            Arc::default(),
            None,
            tracker.clone(),
            cancel.clone(),
        ));
        let wait = Duration::from_secs(20);
        let calls: Vec<_> = (0..=MAX_SYSTEM_REQUESTS)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    client
                        .request("server", addr, Kind::System, vec![1], wait)
                        .await
                })
            })
            .collect();
        // Exactly one finds every slot taken, and is answered at once.
        let busy = tokio::time::timeout(wait, async {
            while shared.counters.system_busy.load(Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(busy.is_ok(), "no herd request was refused");
        let refused = calls.iter().filter(|call| call.is_finished()).count();
        assert!(refused <= 1, "{refused} calls ended");

        // Shutdown cancels the running requests: every task ends, every caller is answered.
        cancel.cancel();
        tracker.close();
        tokio::time::timeout(wait, tracker.wait())
            .await
            .expect("every task ended on shutdown");
        let mut unavailable = 0;
        for call in calls {
            match call.await.unwrap() {
                Ok(Outcome::Err(Refusal::Unavailable(why))) => {
                    assert!(why.contains("herd requests are running"), "{why}");
                    unavailable += 1;
                }
                Err(Failure::Unreachable(_)) => {}
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!(unavailable, 1);
        assert_eq!(shared.counters.system_busy.load(Ordering::Relaxed), 1);
    }
}
