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
//!
//! Calls and casts are delivered only from members in this node's view: a sender this member
//! was told of (in `on_join` or `on_node_joined`) and not told has left since, or this node
//! itself. A message from any other node waits (at most [`PARK_TIME`], at most [`PARK_LIMIT`]
//! messages) for the sender's join to be delivered, and is delivered right after it; a message
//! still waiting then is refused (a call is answered with an error) and counted. So a member
//! never handles a message from a node it considers gone, and always hears of a member's join
//! before its messages.
//!
//! A call whose deadline (`rpc/deadline.rs`) has passed is never started: it is dropped, and
//! counted, when it reaches the front of the queue (or the end of its wait for a join).

use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

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

/// The longest a message from a node outside this node's view waits for that node's join.
pub(crate) const PARK_TIME: Duration = Duration::from_secs(5);
/// The most messages that wait for their senders' joins; beyond, new ones are refused at once.
pub(crate) const PARK_LIMIT: usize = 1024;

/// What the dispatcher counted; read by [`Node::rpc_stats`](crate::Node::rpc_stats).
#[derive(Debug, Default)]
pub(crate) struct DispatchCounters {
    /// Calls and casts refused because their sender was not a member in this node's view.
    pub(crate) not_member: AtomicU64,
}

/// A message waiting for its sender's join.
struct Parked {
    until: Instant,
    message: Incoming,
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
    pub(crate) counters: std::sync::Arc<DispatchCounters>,
}

/// The members this member has been told of and not told have left, itself included; and the
/// messages waiting for a sender to join.
struct View {
    members: HashSet<String>,
    parked: VecDeque<Parked>,
    /// Refusals are logged once per sender per minute.
    logged: crate::log_limit::LogLimit<String>,
}

impl<M: ClusterMember> Dispatcher<M> {
    /// Runs the member's callbacks for each delivery until `cancel` fires.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let leave = self.cx.leave_requested().clone();
        let mut view = View {
            members: HashSet::from([self.cx.node_id().to_string()]),
            parked: VecDeque::new(),
            logged: crate::log_limit::LogLimit::new(Duration::from_secs(60)),
        };
        loop {
            let expiry = view.parked.iter().map(|p| p.until).min();
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = sleep_until(expiry) => {
                    self.expire(&mut view);
                    continue;
                }
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
            match next {
                Next::Membership(delivery) => {
                    let joined: Vec<String> = match &delivery {
                        Delivery::Welcome(members) => {
                            members.iter().map(|m| m.id().to_string()).collect()
                        }
                        Delivery::Event(MembershipEvent::Joined(m)) => vec![m.id().to_string()],
                        Delivery::Event(MembershipEvent::Left(m, _)) => {
                            view.members.remove(m.id());
                            Vec::new()
                        }
                        Delivery::Event(MembershipEvent::Updated(_)) | Delivery::Name(..) => {
                            Vec::new()
                        }
                    };
                    self.deliver(Next::Membership(delivery)).await;
                    if !joined.is_empty() {
                        view.members.extend(joined);
                        self.release(&mut view).await;
                    }
                }
                Next::Message(message) if !view.members.contains(sender(&message)) => {
                    self.park(&mut view, message);
                }
                next => self.deliver(next).await,
            }
        }
        debug!(node = %self.cx.node_id(), "dispatcher stopped");
    }

    /// Keeps a message from a node outside the view until its join, or refuses it when too many
    /// wait.
    fn park(&self, view: &mut View, message: Incoming) {
        if view.parked.len() >= PARK_LIMIT {
            self.refuse(
                view,
                message,
                "too many messages wait for their senders to join",
            );
            return;
        }
        debug!(node = %self.cx.node_id(), from = sender(&message), "a message from a node outside the view waits for its join");
        let mut until = Instant::now() + PARK_TIME;
        if let Incoming::Call { deadline, .. } = &message {
            until = until.min(*deadline);
        }
        view.parked.push_back(Parked { until, message });
    }

    /// Delivers, in arrival order, the waiting messages whose senders are now in the view.
    async fn release(&mut self, view: &mut View) {
        let (ready, waiting): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut view.parked)
            .into_iter()
            .partition(|p| view.members.contains(sender(&p.message)));
        view.parked = waiting;
        for parked in ready {
            self.deliver(Next::Message(parked.message)).await;
        }
    }

    /// Refuses the waiting messages whose time is up.
    fn expire(&self, view: &mut View) {
        let now = Instant::now();
        let (expired, waiting): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut view.parked)
            .into_iter()
            .partition(|p| p.until <= now);
        view.parked = waiting;
        for parked in expired {
            self.refuse(
                view,
                parked.message,
                "it is not a member in this node's view",
            );
        }
    }

    fn refuse(&self, view: &mut View, message: Incoming, why: &str) {
        self.counters.not_member.fetch_add(1, Ordering::Relaxed);
        let from = sender(&message).to_string();
        if view.logged.due(from.clone()) {
            warn!(node = %self.cx.node_id(), %from, why, "message from a node outside this member's view refused");
        }
        if let Incoming::Call { reply, .. } = message {
            reply.send(
                Reply::error(format!(
                    "{} refused the call from {from}: {why}",
                    self.cx.node_id()
                ))
                .0,
            );
        }
    }

    /// The member asked to leave: the node leaves from a task of its own (a stop waits for this
    /// dispatcher to end, which it does now). That task is outside the node's tracker, which it
    /// waits for, and ends when `leave` does: within the leave's bound.
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
                deadline,
            }) => {
                if Instant::now() >= deadline {
                    debug!(node = %cx.node_id(), %from, "call dropped: its deadline passed before handle_call");
                    reply.expired();
                    return;
                }
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
                    Delivery::Name(..) => "on_name_owner_changed",
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
                    Delivery::Name(name, owner) => {
                        AssertUnwindSafe(member.on_name_owner_changed(cx, name, owner.as_ref()))
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

fn sender(message: &Incoming) -> &str {
    match message {
        Incoming::Call { from, .. } | Incoming::Cast { from, .. } => from,
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use tokio::sync::{mpsc, watch};
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::node::mailbox::Mailbox;
    use crate::{LeaveReason, Member};

    struct Log(mpsc::UnboundedSender<String>);

    #[async_trait]
    impl ClusterMember for Log {
        async fn on_join(&mut self, _cx: &Context, members: &[Member]) {
            let ids: Vec<_> = members.iter().map(|m| m.id().to_string()).collect();
            let _ = self.0.send(format!("join {ids:?}"));
        }
        async fn on_node_joined(&mut self, _cx: &Context, m: &Member) {
            let _ = self.0.send(format!("joined {}", m.id()));
        }
        async fn on_node_left(&mut self, _cx: &Context, m: &Member, _r: LeaveReason) {
            let _ = self.0.send(format!("left {}", m.id()));
        }
        async fn handle_cast(&mut self, _cx: &Context, request: Request) {
            let text: String = request.decode().unwrap();
            let _ = self.0.send(format!("cast {text} from {}", request.from()));
        }
    }

    fn member(id: &str) -> Member {
        Member {
            id: id.into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            generation: 1,
            tags: Default::default(),
            rpc: None,
        }
    }

    fn cast(from: &str, text: &str) -> Incoming {
        Incoming::Cast {
            from: from.into(),
            payload: bincode::serialize(text).unwrap(),
        }
    }

    struct Harness {
        deliveries: mpsc::Sender<Delivery>,
        messages: mpsc::Sender<Incoming>,
        log: mpsc::UnboundedReceiver<String>,
        counters: Arc<DispatchCounters>,
        cancel: CancellationToken,
    }

    impl Harness {
        async fn next(&mut self) -> String {
            tokio::time::timeout(Duration::from_secs(60), self.log.recv())
                .await
                .expect("a callback")
                .expect("the dispatcher runs")
        }
    }

    fn start() -> Harness {
        let (log_tx, log) = mpsc::unbounded_channel();
        let (deliveries, deliveries_rx) = mpsc::channel(16);
        let (messages, messages_rx) = mpsc::channel(16);
        let (mailbox, mailbox_rx) = Mailbox::new("a".into(), 4);
        let (_members_tx, members_rx) = watch::channel(Arc::from(vec![member("a")]));
        let cancel = CancellationToken::new();
        let cx = Context::new(
            "a".into(),
            members_rx,
            Default::default(),
            mailbox,
            cancel.clone(),
            TaskTracker::new(),
        );
        let counters = Arc::new(DispatchCounters::default());
        let dispatcher = Dispatcher {
            member: Log(log_tx),
            cx,
            deliveries: deliveries_rx,
            mailbox: mailbox_rx,
            messages: messages_rx,
            current: Arc::default(),
            counters: counters.clone(),
        };
        tokio::spawn(dispatcher.run(cancel.clone()));
        Harness {
            deliveries,
            messages,
            log,
            counters,
            cancel,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_waits_for_its_senders_join_and_follows_it() {
        let mut h = start();
        h.messages.send(cast("b", "early")).await.unwrap();
        h.messages.send(cast("a", "to myself")).await.unwrap();
        assert_eq!(h.next().await, "cast to myself from a");
        h.deliveries
            .send(Delivery::Welcome(vec![member("a"), member("c")]))
            .await
            .unwrap();
        assert_eq!(h.next().await, r#"join ["a", "c"]"#);
        h.deliveries
            .send(Delivery::Event(MembershipEvent::Joined(member("b"))))
            .await
            .unwrap();
        assert_eq!(h.next().await, "joined b");
        assert_eq!(h.next().await, "cast early from b");
        assert_eq!(h.counters.not_member.load(Ordering::Relaxed), 0);
        h.cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_from_a_member_that_left_is_refused_unless_it_returns_in_time() {
        let mut h = start();
        h.deliveries
            .send(Delivery::Welcome(vec![member("a"), member("b")]))
            .await
            .unwrap();
        assert_eq!(h.next().await, r#"join ["a", "b"]"#);
        h.deliveries
            .send(Delivery::Event(MembershipEvent::Left(
                member("b"),
                LeaveReason::Failed,
            )))
            .await
            .unwrap();
        assert_eq!(h.next().await, "left b");
        h.messages.send(cast("b", "from the gone")).await.unwrap();
        tokio::time::sleep(PARK_TIME + Duration::from_millis(10)).await;
        h.messages.send(cast("a", "marker")).await.unwrap();
        assert_eq!(h.next().await, "cast marker from a");
        assert_eq!(h.counters.not_member.load(Ordering::Relaxed), 1);
        // b comes back: what it sends now is delivered after its join.
        h.messages.send(cast("b", "back")).await.unwrap();
        h.deliveries
            .send(Delivery::Event(MembershipEvent::Joined(member("b"))))
            .await
            .unwrap();
        assert_eq!(h.next().await, "joined b");
        assert_eq!(h.next().await, "cast back from b");
        h.cancel.cancel();
    }
}
