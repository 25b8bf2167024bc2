//! What a member can do from its callbacks, between in-process nodes on 127.0.0.1: act through
//! its `Context` (call, cast, tag, leave), send itself messages now and later, call without
//! waiting (`call_later`) while membership events keep arriving, and stop within a bound even
//! when a callback hangs. Every wait is bounded.

#[path = "support/membership.rs"]
mod support;

use std::time::{Duration, Instant};

use herd::{async_trait, ClusterMember, Context, Error, Info, LeaveReason, Member, Reply, Request};
use serde::{Deserialize, Serialize};
use support::{node, recorder, wait_members, WAIT};
use tokio::sync::mpsc;

/// What the members of these tests report, in the order their callbacks ran.
#[derive(Clone, Debug, PartialEq)]
enum Saw {
    Joined(String),
    Left(String, LeaveReason),
    Reply(String, Result<u32, String>),
    Info(String),
    Cast(String),
    Call(String),
}

type Log = mpsc::UnboundedSender<Saw>;

async fn next(rx: &mut mpsc::UnboundedReceiver<Saw>, what: &str) -> Saw {
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Some(saw)) => saw,
        Ok(None) => panic!("member stopped before {what}"),
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

async fn wait_for(
    rx: &mut mpsc::UnboundedReceiver<Saw>,
    seen: &mut Vec<Saw>,
    what: &str,
    pred: impl Fn(&Saw) -> bool,
) {
    while !seen.iter().any(&pred) {
        seen.push(next(rx, what).await);
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum Ask {
    Double(u32),
    Hang,
}

/// Answers `Double(n)` with `2n`; `Hang` never returns. Reports casts.
struct Doubler {
    log: Log,
}

#[async_trait]
impl ClusterMember for Doubler {
    async fn handle_call(&mut self, _cx: &Context, request: Request) -> Reply {
        let _ = self.log.send(Saw::Call(request.from().to_string()));
        match request.decode::<Ask>() {
            Ok(Ask::Double(n)) => Reply::ok(&(2 * n)),
            Ok(Ask::Hang) => std::future::pending().await,
            Err(err) => Reply::error(err),
        }
    }
    async fn handle_cast(&mut self, _cx: &Context, request: Request) {
        let text: String = request.decode().unwrap_or_default();
        if let Some(ms) = text.strip_prefix("busy ") {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
        }
        let _ = self.log.send(Saw::Cast(text));
    }
}

/// When `peer` joins: calls it, casts to it, tags itself, then leaves, all through its context.
struct Actor {
    peer: String,
    log: Log,
}

#[async_trait]
impl ClusterMember for Actor {
    async fn on_join(&mut self, cx: &Context, members: &[Member]) {
        if let Some(peer) = members.iter().find(|m| m.id() == self.peer) {
            self.on_node_joined(cx, peer).await;
        }
    }
    async fn on_node_joined(&mut self, cx: &Context, member: &Member) {
        if member.id() != self.peer {
            return;
        }
        let reply: Result<u32, Error> = cx
            .call(member.id(), &Ask::Double(21), Duration::from_secs(10))
            .await;
        let _ = self.log.send(Saw::Reply(
            member.id().into(),
            reply.map_err(|e| e.to_string()),
        ));
        cx.cast(member.id(), &"hello from a callback".to_string())
            .await
            .expect("cast");
        cx.set_tag("saw", member.id()).await.expect("set_tag");
        let _ = self.log.send(Saw::Info("acted".into()));
    }
    async fn handle_cast(&mut self, cx: &Context, request: Request) {
        if request.decode::<String>().ok().as_deref() == Some("leave") {
            cx.leave();
            let _ = self.log.send(Saw::Info("leave asked".into()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_calls_casts_tags_and_leaves_through_its_context() {
    let (tx_b, mut rx_b) = mpsc::unbounded_channel();
    let b = node("b", "cx-acts")
        .start(Doubler { log: tx_b })
        .await
        .unwrap();
    let (recorder, mut probe) = recorder();
    let c = node("c", "cx-acts")
        .seed(b.addr().to_string())
        .start(recorder)
        .await
        .unwrap();
    let (tx_a, mut rx_a) = mpsc::unbounded_channel();
    let a = node("a", "cx-acts")
        .seed(b.addr().to_string())
        .start(Actor {
            peer: "b".into(),
            log: tx_a,
        })
        .await
        .unwrap();

    assert_eq!(
        next(&mut rx_a, "the call's reply").await,
        Saw::Reply("b".into(), Ok(42))
    );
    assert_eq!(
        next(&mut rx_a, "the callback's end").await,
        Saw::Info("acted".into())
    );
    let mut seen_b = Vec::new();
    wait_for(&mut rx_b, &mut seen_b, "the cast", |s| {
        *s == Saw::Cast("hello from a callback".into())
    })
    .await;
    assert_eq!(
        seen_b[0],
        Saw::Call("a".into()),
        "the call came from a: {seen_b:?}"
    );
    // The tag set from the callback reached c; then a leaves gracefully, asked from a callback.
    let mut members = c.members_watch();
    tokio::time::timeout(
        WAIT,
        members.wait_for(|ms| {
            ms.iter()
                .any(|m| m.id() == "a" && m.tag("saw") == Some("b"))
        }),
    )
    .await
    .expect("c sees the tag a set from its callback")
    .unwrap();
    drop(members);
    c.cast("a", &"leave".to_string()).await.unwrap();
    assert_eq!(
        next(&mut rx_a, "the leave request").await,
        Saw::Info("leave asked".into())
    );
    assert_eq!(probe.left("a").await, LeaveReason::Graceful);
    tokio::time::timeout(WAIT, async {
        while a.gossip_alive() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a stopped after its member asked to leave");
    assert!(matches!(
        a.set_tag("x", "y").await,
        Err(Error::Stopped { .. })
    ));
    c.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// Sends itself messages in `on_join`, and sets a long timer when `b` joins.
struct Timers {
    log: Log,
}

#[async_trait]
impl ClusterMember for Timers {
    async fn on_join(&mut self, cx: &Context, _members: &[Member]) {
        cx.send_after(Duration::from_millis(150), "second").unwrap();
        let cancelled = cx.send_after(Duration::from_millis(50), "never").unwrap();
        cx.send_after(Duration::from_millis(20), "first").unwrap();
        cx.send("now").unwrap();
        assert!(cancelled.cancel(), "a pending timer is cancelled");
    }
    async fn on_node_joined(&mut self, cx: &Context, member: &Member) {
        let _ = self.log.send(Saw::Joined(member.id().into()));
        cx.send_after(
            Duration::from_secs(3),
            format!("timer set at {}'s join", member.id()),
        )
        .unwrap();
    }
    async fn on_node_left(&mut self, _cx: &Context, member: &Member, reason: LeaveReason) {
        let _ = self.log.send(Saw::Left(member.id().into(), reason));
    }
    async fn handle_info(&mut self, _cx: &Context, info: Info) {
        if let Info::Message(message) = info {
            let text = message
                .downcast::<&str>()
                .map(str::to_string)
                .or_else(|m| m.downcast::<String>())
                .expect("a text");
            let _ = self.log.send(Saw::Info(text));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_to_self_arrive_in_order_with_membership_events() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let a = node("a", "cx-timers")
        .start(Timers { log: tx })
        .await
        .unwrap();
    for want in ["now", "first", "second"] {
        assert_eq!(next(&mut rx, want).await, Saw::Info(want.into()));
    }
    let started = Instant::now();
    let (recorder, _probe) = recorder();
    let b = node("b", "cx-timers")
        .seed(a.addr().to_string())
        .start(recorder)
        .await
        .unwrap();
    assert_eq!(next(&mut rx, "b's join").await, Saw::Joined("b".into()));
    b.leave().await.unwrap();
    // b's leave happened before the timer set at its join fired: delivered in that order.
    assert_eq!(
        next(&mut rx, "b's leave").await,
        Saw::Left("b".into(), LeaveReason::Graceful)
    );
    assert_eq!(
        next(&mut rx, "the timer").await,
        Saw::Info("timer set at b's join".into())
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    a.shutdown().await.unwrap();
}

/// Calls `frozen` with `call_later` as soon as it joins, and records everything.
struct Caller {
    frozen: String,
    timeout: Duration,
    log: Log,
}

#[async_trait]
impl ClusterMember for Caller {
    async fn on_join(&mut self, cx: &Context, members: &[Member]) {
        for member in members.iter().filter(|m| m.id() != cx.node_id()) {
            self.on_node_joined(cx, member).await;
        }
    }
    async fn on_node_joined(&mut self, cx: &Context, member: &Member) {
        let _ = self.log.send(Saw::Joined(member.id().into()));
        if member.id() == self.frozen {
            cx.call_later(member.id(), &Ask::Hang, self.timeout)
                .expect("call_later");
        }
    }
    async fn on_node_left(&mut self, _cx: &Context, member: &Member, reason: LeaveReason) {
        let _ = self.log.send(Saw::Left(member.id().into(), reason));
    }
    async fn handle_info(&mut self, _cx: &Context, info: Info) {
        if let Info::Reply(reply) = info {
            let member = reply.member().to_string();
            let result = reply.decode::<u32>().map_err(|err| match err {
                Error::CallTimeout { .. } => "timeout".to_string(),
                other => other.to_string(),
            });
            let _ = self.log.send(Saw::Reply(member, result));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_later_to_a_frozen_member_leaves_the_caller_responsive() {
    // b's handle_call never returns: to a caller it is frozen. a calls it without waiting, and
    // meanwhile sees c join and leave; the call's timeout comes last, once.
    let (tx_b, _rx_b) = mpsc::unbounded_channel();
    let b = node("b", "cx-later")
        .shutdown_timeout(Duration::from_millis(500))
        .start(Doubler { log: tx_b })
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let a = node("a", "cx-later")
        .seed(b.addr().to_string())
        .start(Caller {
            frozen: "b".into(),
            timeout: Duration::from_secs(8),
            log: tx,
        })
        .await
        .unwrap();
    assert_eq!(next(&mut rx, "b's join").await, Saw::Joined("b".into()));
    let (recorder, _probe) = recorder();
    let c = node("c", "cx-later")
        .seed(b.addr().to_string())
        .start(recorder)
        .await
        .unwrap();
    wait_members(&a, &["a", "b", "c"]).await;
    c.leave().await.unwrap();
    let mut seen = Vec::new();
    wait_for(
        &mut rx,
        &mut seen,
        "c's leave",
        |s| matches!(s, Saw::Left(id, _) if id == "c"),
    )
    .await;
    assert!(
        !seen.iter().any(|s| matches!(s, Saw::Reply(..))),
        "c's join and leave came before the call's timeout: {seen:?}"
    );
    wait_for(
        &mut rx,
        &mut seen,
        "the timeout",
        |s| matches!(s, Saw::Reply(_, Err(e)) if e == "timeout"),
    )
    .await;
    // Exactly one outcome: nothing more within another second.
    let more = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
    assert!(more.is_err(), "a second outcome: {more:?}");
    a.shutdown().await.unwrap();
    assert!(matches!(
        b.shutdown().await,
        Err(Error::CallbackAbandoned {
            callback: "handle_call",
            ..
        })
    ));
}

/// Hangs in `on_node_joined` for `hang_on`; keeps a clone of its context.
struct Hanger {
    hang_on: String,
    kept: Option<Context>,
    log: Log,
}

#[async_trait]
impl ClusterMember for Hanger {
    async fn on_join(&mut self, cx: &Context, _members: &[Member]) {
        self.kept = Some(cx.clone());
    }
    async fn on_node_joined(&mut self, _cx: &Context, member: &Member) {
        let _ = self.log.send(Saw::Joined(member.id().into()));
        if member.id() == self.hang_on {
            std::future::pending::<()>().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_returns_within_its_bound_when_a_callback_hangs() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let timeout = Duration::from_secs(1);
    let a = node("a", "cx-hang")
        .shutdown_timeout(timeout)
        .start(Hanger {
            hang_on: "b".into(),
            kept: None,
            log: tx,
        })
        .await
        .unwrap();
    let (recorder, mut probe) = recorder();
    let b = node("b", "cx-hang")
        .seed(a.addr().to_string())
        .start(recorder)
        .await
        .unwrap();
    assert_eq!(next(&mut rx, "b's join").await, Saw::Joined("b".into()));
    probe.joined_cluster().await;
    // a's dispatcher now hangs in on_node_joined(b). Two stops at once both end in time.
    let started = Instant::now();
    let (left, shut) = tokio::join!(a.leave(), a.shutdown());
    let took = started.elapsed();
    match left {
        Err(Error::CallbackAbandoned { callback, .. }) => assert_eq!(callback, "on_node_joined"),
        other => panic!("leave should report the abandoned callback, got {other:?}"),
    }
    assert!(shut.is_ok(), "the second stop does nothing more: {shut:?}");
    // Bound: leave propagation (3 gossip intervals) or the shutdown timeout, plus a second.
    assert!(
        took < timeout + Duration::from_secs(3),
        "leave took {took:?}"
    );
    assert_eq!(probe.left("a").await, LeaveReason::Graceful);
    assert!(a.leave().await.is_ok(), "a third stop returns at once");
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_node_stops_it_while_the_member_keeps_a_context() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let a = node("a", "cx-drop")
        .start(Hanger {
            hang_on: String::new(),
            kept: None,
            log: tx,
        })
        .await
        .unwrap();
    let (recorder, mut probe) = recorder();
    let b = node("b", "cx-drop")
        .seed(a.addr().to_string())
        .start(recorder)
        .await
        .unwrap();
    wait_members(&b, &["a", "b"]).await;
    drop(a);
    assert_eq!(probe.left("a").await, LeaveReason::Failed);
    b.shutdown().await.unwrap();
}

/// Leaves through `cx.node()` when a member casts to it, waiting in the callback.
struct Leaver {
    log: Log,
}

#[async_trait]
impl ClusterMember for Leaver {
    async fn handle_cast(&mut self, cx: &Context, request: Request) {
        let node = cx.node().expect("the node runs");
        let result = node.leave().await;
        let _ = self.log.send(Saw::Info(format!(
            "left from handle_cast({}): {result:?}",
            request.from()
        )));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_leave_called_from_a_callback_does_not_wait_for_itself() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let a = node("a", "cx-self-leave")
        .start(Leaver { log: tx })
        .await
        .unwrap();
    let (recorder, mut probe) = recorder();
    let b = node("b", "cx-self-leave")
        .seed(a.addr().to_string())
        .start(recorder)
        .await
        .unwrap();
    probe.joined_cluster().await;
    wait_members(&a, &["a", "b"]).await;
    b.cast("a", &"leave".to_string()).await.unwrap();
    assert_eq!(
        next(&mut rx, "the leave's return").await,
        Saw::Info("left from handle_cast(b): Ok(())".into())
    );
    assert_eq!(probe.left("a").await, LeaveReason::Graceful);
    // An outside stop now waits for the rest of the stop and returns.
    tokio::time::timeout(WAIT, a.shutdown())
        .await
        .expect("shutdown after a leave from a callback returns")
        .unwrap();
    assert!(!a.gossip_alive());
    b.shutdown().await.unwrap();
}

/// Fills its two-slot mailbox in `on_join` and reports what each send returned.
struct Filler {
    log: Log,
}

#[async_trait]
impl ClusterMember for Filler {
    async fn on_join(&mut self, cx: &Context, _members: &[Member]) {
        let hour = Duration::from_secs(3600);
        let first = cx.send_after(hour, 1u8).expect("a slot");
        cx.send_after(hour, 2u8).expect("a slot");
        let full = cx.send(3u8).unwrap_err().to_string();
        let _ = self.log.send(Saw::Info(full));
        first.cancel();
        // A cancelled timer's slot comes back once its task has seen the cancellation.
        let deadline = Instant::now() + WAIT;
        while cx.send(4u8).is_err() {
            assert!(
                Instant::now() < deadline,
                "the cancelled timer's slot never came back"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = self.log.send(Saw::Info("sent after cancel".into()));
    }
    async fn handle_info(&mut self, _cx: &Context, info: Info) {
        if let Info::Message(m) = info {
            let _ = self
                .log
                .send(Saw::Info(format!("got {:?}", m.downcast::<u8>().ok())));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_refuses_at_once_and_frees_slots() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let a = node("a", "cx-mailbox")
        .mailbox(2)
        .start(Filler { log: tx })
        .await
        .unwrap();
    assert_eq!(
        next(&mut rx, "the refusal").await,
        Saw::Info(
            "the mailbox of a is full (2 messages, timers and later-calls wait for handle_info)"
                .into()
        )
    );
    assert_eq!(
        next(&mut rx, "the retry").await,
        Saw::Info("sent after cancel".into())
    );
    assert_eq!(
        next(&mut rx, "the message").await,
        Saw::Info("got Some(4)".into())
    );
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_never_reaches_handle_call() {
    let (tx_b, mut rx_b) = mpsc::unbounded_channel();
    let b = node("b", "cx-deadline")
        .start(Doubler { log: tx_b })
        .await
        .unwrap();
    let (recorder, _probe) = recorder();
    let a = node("a", "cx-deadline")
        .seed(b.addr().to_string())
        .start(recorder)
        .await
        .unwrap();
    wait_members(&a, &["a", "b"]).await;
    wait_members(&b, &["a", "b"]).await;
    // b is busy for 2 s; a's call waits behind that and times out after 300 ms.
    a.cast("b", &"busy 2000".to_string()).await.unwrap();
    let err = a
        .call::<_, u32>("b", &Ask::Double(1), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CallTimeout { .. }), "{err}");
    assert_eq!(
        next(&mut rx_b, "the busy cast").await,
        Saw::Cast("busy 2000".into())
    );
    // The next call is served; the expired one was dropped before handle_call.
    let four: u32 = a.call("b", &Ask::Double(2), WAIT).await.unwrap();
    assert_eq!(four, 4);
    assert_eq!(
        next(&mut rx_b, "the second call").await,
        Saw::Call("a".into())
    );
    assert_eq!(b.rpc_stats().expired, 1);
    let more = tokio::time::timeout(Duration::from_millis(200), rx_b.recv()).await;
    assert!(more.is_err(), "nothing else reached b: {more:?}");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
