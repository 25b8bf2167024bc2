//! Membership over real UDP on 127.0.0.1: joining through a seed, the callbacks and their
//! exactly-once promise, graceful leave, failure, restart, cluster isolation, late seeds, and bad
//! input. Every wait is for an event, bounded by a generous timeout.

#[path = "support/membership.rs"]
mod support;

use std::time::Duration;

use futures::StreamExt;
use herd::{Error, LeaveReason, MembershipEvent, Node};
use support::*;

#[tokio::test]
async fn three_nodes_join_through_one_seed_and_each_sees_all_three() {
    let (ra, mut pa) = recorder();
    let a = node("a", "three").start(ra).await.unwrap();
    assert_eq!(
        pa.joined_cluster().await,
        vec!["a"],
        "a founds the cluster at once"
    );

    let seed = a.addr().to_string();
    let (rb, mut pb) = recorder();
    let b = node("b", "three").seed(&seed).start(rb).await.unwrap();
    let (rc, mut pc) = recorder();
    let c = node("c", "three").seed(&seed).start(rc).await.unwrap();

    for n in [&a, &b, &c] {
        wait_members(n, &["a", "b", "c"]).await;
    }
    pb.joined_cluster().await;
    pc.joined_cluster().await;
    pa.saw_join_of("b").await;
    pa.saw_join_of("c").await;
    for n in [&a, &b, &c] {
        assert!(n.members().iter().all(|m| m.generation() > 0));
    }
}

#[tokio::test]
async fn each_callback_fires_exactly_once_per_event() {
    let (ra, mut pa) = recorder();
    let a = node("a", "once").start(ra).await.unwrap();
    let seed = a.addr().to_string();
    let b = node("b", "once")
        .seed(&seed)
        .start(recorder().0)
        .await
        .unwrap();
    let c = node("c", "once")
        .seed(&seed)
        .start(recorder().0)
        .await
        .unwrap();
    wait_members(&a, &["a", "b", "c"]).await;

    b.set_tag("load", "0.3").await.unwrap();
    pa.wait_for(
        "b's update",
        |s| matches!(s, Seen::Updated(id, _) if id == "b"),
    )
    .await;
    b.leave().await.unwrap();
    assert_eq!(pa.left("b").await, LeaveReason::Graceful);

    // A last, distinct event works as a barrier: anything delivered twice before it would be in
    // the log by now, since callbacks run in order.
    c.set_tag("barrier", "1").await.unwrap();
    pa.wait_for(
        "the barrier",
        |s| matches!(s, Seen::Updated(id, t) if id == "c" && t.contains_key("barrier")),
    )
    .await;

    let joins = |id: &str| {
        pa.log
            .iter()
            .filter(|s| matches!(s, Seen::Joined(i, _) if i == id))
            .count()
    };
    let lefts = pa
        .log
        .iter()
        .filter(|s| matches!(s, Seen::Left(..)))
        .count();
    let welcomes = pa.log.iter().filter(|s| matches!(s, Seen::Join(_))).count();
    let b_updates = pa
        .log
        .iter()
        .filter(|s| matches!(s, Seen::Updated(i, _) if i == "b"))
        .count();
    assert_eq!(
        (welcomes, joins("b"), joins("c"), lefts, b_updates),
        (1, 1, 1, 1, 1),
        "{:?}",
        pa.log
    );
    assert_eq!(
        pa.log[0],
        Seen::Join(vec!["a".into()]),
        "on_join comes first"
    );
}

#[tokio::test]
async fn a_graceful_leave_is_reported_as_graceful_on_every_peer() {
    let a = node("a", "leave").start(recorder().0).await.unwrap();
    let seed = a.addr().to_string();
    let (rb, mut pb) = recorder();
    let b = node("b", "leave").seed(&seed).start(rb).await.unwrap();
    let (rc, mut pc) = recorder();
    let c = node("c", "leave").seed(&seed).start(rc).await.unwrap();
    for n in [&a, &b, &c] {
        wait_members(n, &["a", "b", "c"]).await;
    }
    let mut events = b.events();

    a.leave().await.unwrap();
    assert_eq!(pb.left("a").await, LeaveReason::Graceful);
    assert_eq!(pc.left("a").await, LeaveReason::Graceful);
    let event = tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(event, MembershipEvent::Left(m, LeaveReason::Graceful) if m.id() == "a"));

    a.leave().await.unwrap();
    a.shutdown().await.unwrap();
    assert!(matches!(
        a.set_tag("x", "1").await,
        Err(Error::Stopped { .. })
    ));
}

#[tokio::test]
async fn shutdown_without_leave_is_reported_as_a_failure() {
    let a = node("a", "crash").start(recorder().0).await.unwrap();
    let seed = a.addr().to_string();
    let (rb, mut pb) = recorder();
    let b = node("b", "crash").seed(&seed).start(rb).await.unwrap();
    let c = node("c", "crash")
        .seed(&seed)
        .start(recorder().0)
        .await
        .unwrap();
    for n in [&a, &b, &c] {
        wait_members(n, &["a", "b", "c"]).await;
    }
    c.shutdown().await.unwrap();
    assert_eq!(pb.left("c").await, LeaveReason::Failed);
    wait_members(&a, &["a", "b"]).await;
}

#[tokio::test]
async fn a_restart_with_the_same_id_is_left_restarted_then_joined() {
    // A high threshold keeps the failure detector out of the race: the new incarnation must be
    // what retires the old one.
    let start = |id: &'static str, seed: Option<String>| {
        let mut builder = node(id, "restart").phi_threshold(1_000.0);
        if let Some(seed) = seed {
            builder = builder.seed(seed);
        }
        builder
    };
    let (ra, mut pa) = recorder();
    let a = start("a", None).start(ra).await.unwrap();
    let seed = a.addr().to_string();
    let b1 = start("b", Some(seed.clone()))
        .start(recorder().0)
        .await
        .unwrap();
    wait_members(&a, &["a", "b"]).await;
    let old = b1.generation();
    b1.shutdown().await.unwrap();

    let b2 = start("b", Some(seed)).start(recorder().0).await.unwrap();
    assert!(b2.generation() > old);
    let left = pa
        .wait_for(
            "b's old incarnation to leave",
            |s| matches!(s, Seen::Left(id, _, _) if id == "b"),
        )
        .await;
    assert_eq!(left, Seen::Left("b".into(), old, LeaveReason::Restarted));
    let joined = pa
        .wait_for(
            "b's new incarnation",
            |s| matches!(s, Seen::Joined(id, g) if id == "b" && *g != old),
        )
        .await;
    assert_eq!(joined, Seen::Joined("b".into(), b2.generation()));
    let left_at = pa.log.iter().position(|s| *s == left).unwrap();
    let joined_at = pa.log.iter().position(|s| *s == joined).unwrap();
    assert!(left_at < joined_at, "{:?}", pa.log);
}

#[tokio::test]
async fn nodes_of_different_clusters_never_merge() {
    let x = node("x", "one").start(recorder().0).await.unwrap();
    let y = node("y", "two")
        .seed(x.addr().to_string())
        .start(recorder().0)
        .await
        .unwrap();
    // y keeps knocking on its seed; wait until x has rejected it many times.
    let deadline = tokio::time::Instant::now() + WAIT;
    while y.gossip_stats().messages_received < 10 {
        assert!(tokio::time::Instant::now() < deadline, "x never answered y");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(x.members().len(), 1);
    assert_eq!(y.members().len(), 1);
}

#[tokio::test]
async fn a_seed_that_starts_late_is_still_joined() {
    let port = free_port();
    let seed_addr = format!("127.0.0.1:{port}");
    let (rb, mut pb) = recorder();
    let b = node("b", "late").seed(&seed_addr).start(rb).await.unwrap();
    let a = Node::builder("a")
        .listen(seed_addr.parse().unwrap())
        .cluster_id("late")
        .start(recorder().0)
        .await
        .unwrap();
    assert_eq!(pb.joined_cluster().await, vec!["a", "b"]);
    wait_members(&a, &["a", "b"]).await;
    let _ = b;
}

#[tokio::test]
async fn a_node_given_the_seeds_of_two_clusters_joins_both_and_they_merge() {
    let a = node("a", "merge").start(recorder().0).await.unwrap();
    // With as many live peers as seeds, chitchat alone stops reaching for seeds.
    let d = node("d", "merge")
        .seed(a.addr().to_string())
        .start(recorder().0)
        .await
        .unwrap();
    wait_members(&a, &["a", "d"]).await;
    let port = free_port();
    let late = format!("127.0.0.1:{port}");
    // c reaches a at once; its second seed starts only once c is a member of a's cluster, so
    // only c's own reaching for every seed can bring the two together.
    let c = node("c", "merge")
        .seed(a.addr().to_string())
        .seed(&late)
        .start(recorder().0)
        .await
        .unwrap();
    wait_members(&c, &["a", "c", "d"]).await;
    let b = Node::builder("b")
        .listen(late.parse().unwrap())
        .cluster_id("merge")
        .start(recorder().0)
        .await
        .unwrap();
    for n in [&a, &b, &c, &d] {
        wait_members(n, &["a", "b", "c", "d"]).await;
    }
}

// Two worker threads: the default panic hook's backtrace (RUST_BACKTRACE=1 in CI, slow to
// symbolize in a debug build) blocks the thread that runs the callback; on a one-thread runtime
// it would stall every node's gossip in this process for as long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_callback_does_not_stop_delivery() {
    let (ra, mut pa) = recorder_panicking_on(&["b"]);
    let a = node("a", "panic").start(ra).await.unwrap();
    let seed = a.addr().to_string();
    let _b = node("b", "panic")
        .seed(&seed)
        .start(recorder().0)
        .await
        .unwrap();
    wait_members(&a, &["a", "b"]).await;
    let c = node("c", "panic")
        .seed(&seed)
        .start(recorder().0)
        .await
        .unwrap();
    pa.saw_join_of("c").await;
    c.leave().await.unwrap();
    assert_eq!(pa.left("c").await, LeaveReason::Graceful);
}

#[tokio::test]
async fn tag_changes_reach_peers_as_updates() {
    let (ra, mut pa) = recorder();
    let a = node("a", "tags").start(ra).await.unwrap();
    let b = node("b", "tags")
        .tag("group", "media")
        .seed(a.addr().to_string())
        .start(recorder().0)
        .await
        .unwrap();
    wait_members(&a, &["a", "b"]).await;
    let seen_b = a.members().into_iter().find(|m| m.id() == "b").unwrap();
    assert_eq!(
        seen_b.tag("group"),
        Some("media"),
        "tags arrive with the join"
    );

    b.set_tag("load", "0.3").await.unwrap();
    let update = pa
        .wait_for(
            "b's load tag",
            |s| matches!(s, Seen::Updated(id, t) if id == "b" && t.contains_key("load")),
        )
        .await;
    let Seen::Updated(_, tags) = update else {
        unreachable!()
    };
    assert_eq!(tags.get("group").map(String::as_str), Some("media"));
    assert_eq!(tags.get("load").map(String::as_str), Some("0.3"));

    b.remove_tag("load").await.unwrap();
    pa.wait_for(
        "b's load tag to go",
        |s| matches!(s, Seen::Updated(id, t) if id == "b" && !t.contains_key("load")),
    )
    .await;
    assert!(matches!(
        b.set_tag("", "x").await,
        Err(Error::InvalidTag { .. })
    ));
}

#[tokio::test]
async fn garbage_on_the_gossip_port_is_dropped_without_harm() {
    let a = node("a", "junk").start(recorder().0).await.unwrap();
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for payload in [&b""[..], b"junk", &[0xff; 1500], &[0u8; 3]] {
        junk.send_to(payload, a.addr()).unwrap();
    }
    let b = node("b", "junk")
        .seed(a.addr().to_string())
        .start(recorder().0)
        .await
        .unwrap();
    wait_members(&a, &["a", "b"]).await;
    wait_members(&b, &["a", "b"]).await;
}

#[tokio::test]
async fn bad_input_is_an_error_naming_the_value() {
    let empty = Node::builder("  ")
        .listen("127.0.0.1:0".parse().unwrap())
        .start(recorder().0)
        .await;
    assert!(matches!(empty, Err(Error::EmptyNodeId)));

    for seed in ["127.0.0.1", "nonsense", "no-such-host.invalid:7000"] {
        let err = node("a", "bad")
            .seed(seed)
            .start(recorder().0)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidSeed { .. }), "{err}");
        assert!(err.to_string().contains(seed), "{err}");
    }

    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Node::builder("a")
        .listen(addr)
        .start(recorder().0)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Bind { .. }), "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");

    let err = Node::builder("a")
        .listen("0.0.0.0:0".parse().unwrap())
        .start(recorder().0)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoAdvertiseAddr { .. }), "{err}");
}

#[tokio::test]
async fn members_are_sorted_and_include_self() {
    let a = node("b-node", "sorted").start(recorder().0).await.unwrap();
    let b = node("a-node", "sorted")
        .seed(a.addr().to_string())
        .start(recorder().0)
        .await
        .unwrap();
    wait_members(&a, &["a-node", "b-node"]).await;
    let ids: Vec<_> = b.members().iter().map(|m| m.id().to_string()).collect();
    assert!(ids == ["a-node", "b-node"] || ids == ["a-node"], "{ids:?}");
}

/// A generation far ahead of any clock, and one far behind: a host whose clock went back.
const FUTURE: u64 = 4_000_000_000_000_000;
const PAST: u64 = 5;

/// Waits until `node` lists member `id` with generation `generation`.
async fn wait_generation(node: &Node, id: &str, generation: u64) {
    let mut watch = node.members_watch();
    let listed = |members: &[herd::Member]| {
        members
            .iter()
            .any(|m| m.id() == id && m.generation() == generation)
    };
    let result = tokio::time::timeout(WAIT, watch.wait_for(|members| listed(members))).await;
    assert!(
        result.is_ok(),
        "{} never listed {id} with generation {generation}; it lists {:?}",
        node.id(),
        node.members()
    );
}

#[tokio::test]
async fn a_restart_with_a_generation_from_the_past_is_left_restarted_then_joined_on_every_peer() {
    // b's new incarnation has a lower generation than the old one, which peers still count live
    // (a high threshold keeps the failure detector out of it): the one seen starting last wins.
    let patient = |id: &str| node(id, "past").phi_threshold(1_000.0);
    let (ra, mut pa) = recorder();
    let a = patient("a").start(ra).await.unwrap();
    let seed = a.addr().to_string();
    let (rc, mut pc) = recorder();
    let c = patient("c").seed(&seed).start(rc).await.unwrap();
    let b1 = patient("b")
        .seed(&seed)
        .generation(FUTURE)
        .start(recorder().0)
        .await
        .unwrap();
    for n in [&a, &c] {
        wait_generation(n, "b", FUTURE).await;
    }
    b1.shutdown().await.unwrap();

    let b2 = patient("b")
        .seed(&seed)
        .generation(PAST)
        .start(recorder().0)
        .await
        .unwrap();
    for probe in [&mut pa, &mut pc] {
        let joined = probe
            .wait_for(
                "b's incarnation from the past",
                |s| matches!(s, Seen::Joined(id, g) if id == "b" && *g == PAST),
            )
            .await;
        let left = Seen::Left("b".into(), FUTURE, LeaveReason::Restarted);
        let left_at = probe.log.iter().position(|s| *s == left);
        let joined_at = probe.log.iter().position(|s| *s == joined);
        assert!(left_at.is_some() && left_at < joined_at, "{:?}", probe.log);
    }
    for n in [&a, &c] {
        wait_generation(n, "b", PAST).await;
    }
    // b2 is itself to itself, not the predecessor its peers still gossip about.
    wait_generation(&b2, "b", PAST).await;
}

#[tokio::test]
async fn a_dead_incarnation_does_not_hide_its_successor_with_a_lower_generation() {
    let (ra, mut pa) = recorder();
    let a = node("a", "dead-past").start(ra).await.unwrap();
    let seed = a.addr().to_string();
    let b1 = node("b", "dead-past")
        .seed(&seed)
        .generation(FUTURE)
        .start(recorder().0)
        .await
        .unwrap();
    wait_generation(&a, "b", FUTURE).await;
    b1.shutdown().await.unwrap();
    assert_eq!(pa.left("b").await, LeaveReason::Failed);

    let _b2 = node("b", "dead-past")
        .seed(&seed)
        .generation(PAST)
        .start(recorder().0)
        .await
        .unwrap();
    pa.wait_for(
        "b's incarnation from the past",
        |s| matches!(s, Seen::Joined(id, g) if id == "b" && *g == PAST),
    )
    .await;
    wait_generation(&a, "b", PAST).await;
    // A node that joins now hears of both incarnations and takes the live one.
    let d = node("d", "dead-past")
        .seed(&seed)
        .start(recorder().0)
        .await
        .unwrap();
    wait_generation(&d, "b", PAST).await;
}
