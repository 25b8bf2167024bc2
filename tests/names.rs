//! Global names across in-process nodes over real UDP on 127.0.0.1: register, taken, whereis on
//! every node, release, a claim that waits and takes over on a leave and on a crash, the guard
//! lost on a conflict after two clusters merge, and the quorum rule. Every wait is for a
//! condition, bounded by a generous timeout.

#[path = "support/membership.rs"]
mod support;

use std::time::Duration;

use herd::{Error, NameLost, NameOptions, Node};
use support::*;

/// Waits until `node` sees `owner` (an id, or none) as the owner of `name`.
async fn wait_owner(node: &Node, name: &str, owner: Option<&str>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = node.whereis(name).map(|m| m.id().to_string());
        if now.as_deref() == owner {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never saw {name:?} owned by {owner:?}; it sees {now:?}",
            node.id()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn cluster(name: &str, ids: &[&str]) -> (Vec<Node>, Vec<Probe>) {
    let mut nodes: Vec<Node> = Vec::new();
    let mut probes = Vec::new();
    for id in ids {
        let (recorder, probe) = recorder();
        let mut builder = node(id, name).gossip_interval(Duration::from_millis(100));
        if let Some(first) = nodes.first() {
            builder = builder.seed(first.addr().to_string());
        }
        nodes.push(builder.start(recorder).await.unwrap());
        probes.push(probe);
    }
    for n in &nodes {
        wait_members(n, ids).await;
    }
    (nodes, probes)
}

#[tokio::test]
async fn a_registered_name_is_seen_everywhere_taken_elsewhere_and_free_again_once_released() {
    let (nodes, mut probes) = cluster("names-basic", &["a", "b", "c"]).await;
    let guard = nodes[0].register_name("scheduler").await.unwrap();
    assert!(guard.is_owner());
    assert_eq!(guard.name(), "scheduler");
    assert_eq!(
        nodes[0].whereis("scheduler").unwrap().id(),
        "a",
        "local at once"
    );
    for n in &nodes {
        wait_owner(n, "scheduler", Some("a")).await;
    }
    let listed: Vec<(String, String)> = nodes[2]
        .names()
        .into_iter()
        .map(|(name, m)| (name, m.id().to_string()))
        .collect();
    assert_eq!(listed, vec![("scheduler".to_string(), "a".to_string())]);
    for probe in &mut probes[1..] {
        probe
            .wait_for("told a owns scheduler", |s| {
                *s == Seen::Name("scheduler".into(), Some("a".into()))
            })
            .await;
    }

    match nodes[1].register_name("scheduler").await {
        Err(Error::NameTaken { name, owner }) => {
            assert_eq!(name, "scheduler");
            assert_eq!(owner.id(), "a");
        }
        other => panic!("expected NameTaken, got {other:?}"),
    }
    match nodes[0].register_name("scheduler").await {
        Err(Error::NameTaken { owner, .. }) => assert_eq!(owner.id(), "a"),
        other => panic!("a registering its own name again: {other:?}"),
    }
    assert!(matches!(
        nodes[0].register_name("").await,
        Err(Error::InvalidName { .. })
    ));

    let lost = guard.lost();
    guard.release().await;
    assert_eq!(
        tokio::time::timeout(WAIT, lost).await.unwrap(),
        NameLost::Released
    );
    for n in &nodes {
        wait_owner(n, "scheduler", None).await;
    }
    probes[1]
        .wait_for("told scheduler has no owner", |s| {
            *s == Seen::Name("scheduler".into(), None)
        })
        .await;
    // Free again: another node takes it.
    let _b = nodes[1].register_name("scheduler").await.unwrap();
    for n in &nodes {
        wait_owner(n, "scheduler", Some("b")).await;
    }
}

#[tokio::test]
async fn a_claim_waits_and_takes_over_when_the_owner_leaves_then_when_it_crashes() {
    let (nodes, _probes) = cluster("names-takeover", &["a", "b", "c"]).await;
    let held = nodes[0].claim_name("leader").await.unwrap();
    let mut held = held;
    tokio::time::timeout(WAIT, held.acquired())
        .await
        .unwrap()
        .unwrap();
    for n in &nodes {
        wait_owner(n, "leader", Some("a")).await;
    }
    let mut b = nodes[1].claim_name("leader").await.unwrap();
    let mut c = nodes[2].claim_name("leader").await.unwrap();
    // Let b's and c's claims reach every node (a queued claim changes no owner).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b.is_owner() && !c.is_owner());
    let lost = held.lost();
    nodes[0].leave().await.unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, lost).await.unwrap(),
        NameLost::Stopped
    );
    // b claimed before c: its ticket is lower.
    tokio::time::timeout(WAIT, b.acquired())
        .await
        .unwrap()
        .unwrap();
    wait_owner(&nodes[2], "leader", Some("b")).await;
    assert!(!c.is_owner());

    nodes[1].shutdown().await.unwrap();
    tokio::time::timeout(WAIT, c.acquired())
        .await
        .expect("c takes over after b's failure is detected")
        .unwrap();
    assert_eq!(nodes[2].whereis("leader").unwrap().id(), "c");
}

#[tokio::test]
async fn after_two_clusters_merge_the_older_claim_wins_everywhere_and_the_loser_is_told() {
    // Two founders of the same cluster id that do not know each other: each holds "x".
    let (ra, _pa) = recorder();
    let a = node("a", "names-merge")
        .gossip_interval(Duration::from_millis(100))
        .start(ra)
        .await
        .unwrap();
    let (rb, _pb) = recorder();
    let b = node("b", "names-merge")
        .gossip_interval(Duration::from_millis(100))
        .start(rb)
        .await
        .unwrap();
    let mut older = a.claim_name("x").await.unwrap();
    tokio::time::timeout(WAIT, older.acquired())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let younger = b.register_name("x").await.unwrap();
    let mut younger_claim = b.claim_name("y").await.unwrap();
    tokio::time::timeout(WAIT, younger_claim.acquired())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let older_y = a.register_name("y").await.unwrap();
    let lost_x = younger.lost();
    let lost_y = older_y.lost();
    let lost_older = older.lost();

    // c is seeded with both: the two halves merge.
    let (rc, _pc) = recorder();
    let c = node("c", "names-merge")
        .gossip_interval(Duration::from_millis(100))
        .seed(a.addr().to_string())
        .seed(b.addr().to_string())
        .start(rc)
        .await
        .unwrap();
    for n in [&a, &b, &c] {
        wait_members(n, &["a", "b", "c"]).await;
    }
    match tokio::time::timeout(WAIT, lost_x).await.unwrap() {
        NameLost::Conflict { winner } => assert_eq!(winner.id(), "a"),
        other => panic!("b's guard on x: {other:?}"),
    }
    match tokio::time::timeout(WAIT, lost_y).await.unwrap() {
        NameLost::Conflict { winner } => assert_eq!(winner.id(), "b"),
        other => panic!("a's guard on y: {other:?}"),
    }
    for n in [&a, &b, &c] {
        wait_owner(n, "x", Some("a")).await;
        wait_owner(n, "y", Some("b")).await;
    }
    assert!(!younger.is_owner() && !older_y.is_owner());
    assert!(older.is_owner() && younger_claim.is_owner());
    // No flip-flop: the winners keep the names for a while after the heal.
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        for n in [&a, &b, &c] {
            assert_eq!(n.whereis("x").unwrap().id(), "a");
            assert_eq!(n.whereis("y").unwrap().id(), "b");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The loser's guard withdrew its claim: when a gives x up, nobody holds it.
    drop(younger);
    let lost = tokio::time::timeout(Duration::from_millis(50), lost_older).await;
    assert!(lost.is_err(), "a kept x: {lost:?}");
    older.release().await;
    for n in [&a, &b, &c] {
        wait_owner(n, "x", None).await;
    }
}

#[tokio::test]
async fn a_quorum_name_needs_a_majority_and_is_given_up_when_the_majority_is_gone() {
    let quorum = NameOptions::default().quorum(true);
    // Without an expected size, a quorum name is refused.
    let (r, _p) = recorder();
    let lone = node("lone", "names-no-quorum").start(r).await.unwrap();
    assert!(matches!(
        lone.register_name_with("q", quorum).await,
        Err(Error::NoQuorum { .. })
    ));

    let mut nodes: Vec<Node> = Vec::new();
    for id in ["a", "b", "c"] {
        let (recorder, _probe) = recorder();
        let mut builder = node(id, "names-quorum")
            .gossip_interval(Duration::from_millis(100))
            .expected_members(3);
        if let Some(first) = nodes.first() {
            builder = builder.seed(first.addr().to_string());
        }
        nodes.push(builder.start(recorder).await.unwrap());
        if nodes.len() == 1 {
            // Alone, a sees 1 of 3: no majority.
            match nodes[0].register_name_with("q", quorum).await {
                Err(Error::NoQuorum { name, .. }) => assert_eq!(name, "q"),
                other => panic!("a alone: {other:?}"),
            }
        }
    }
    for n in &nodes {
        wait_members(n, &["a", "b", "c"]).await;
    }
    // Contact both ways with the peers comes with the next gossip rounds.
    let deadline = tokio::time::Instant::now() + WAIT;
    let guard = loop {
        match nodes[0].register_name_with("q", quorum).await {
            Ok(guard) => break guard,
            Err(Error::NoQuorum { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(err) => panic!("a with b and c: {err}"),
        }
    };
    for n in &nodes {
        wait_owner(n, "q", Some("a")).await;
    }
    let lost = guard.lost();
    nodes[1].shutdown().await.unwrap();
    nodes[2].shutdown().await.unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, lost).await.unwrap(),
        NameLost::QuorumLost
    );
    assert!(!guard.is_owner());
    assert_eq!(nodes[0].whereis("q"), None);
}

#[tokio::test]
async fn a_node_that_just_started_does_not_take_a_name_its_seed_holds_before_it_sees_the_seed_live()
{
    // A node learns the seed's state (its claim included) in its first exchange, but sees the
    // seed live only at its second heartbeat. Claiming meanwhile must not make it a second owner.
    let (nodes, _probes) = cluster("names-newcomer", &["a", "b"]).await;
    let _held = nodes[0].register_name("leader").await.unwrap();
    for n in &nodes {
        wait_owner(n, "leader", Some("a")).await;
    }
    let (rc, _pc) = recorder();
    let c = node("c", "names-newcomer")
        .gossip_interval(Duration::from_millis(100))
        .seed(nodes[0].addr().to_string())
        .start(rc)
        .await
        .unwrap();
    let claim = c.claim_name("leader").await.unwrap();
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    let mut saw_a = false;
    while tokio::time::Instant::now() < until {
        assert!(!claim.is_owner(), "c took the name a holds");
        let owner = c.whereis("leader").map(|m| m.id().to_string());
        assert!(
            owner.is_none() || owner.as_deref() == Some("a"),
            "c sees {owner:?} own it"
        );
        saw_a |= owner.as_deref() == Some("a");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(saw_a, "c never saw a own the name");
    for n in nodes.iter().chain([&c]) {
        wait_owner(n, "leader", Some("a")).await;
    }
}

#[tokio::test]
async fn a_crashed_owner_restarted_and_crashed_again_leaves_the_name_with_its_new_owner() {
    // a holds the name and crashes; b takes it over. a comes back (a new incarnation) and
    // crashes again. The first incarnation's claim, older than b's and still gossiped with its
    // dead state, must not take the name from b.
    let (nodes, _probes) = cluster("names-restart", &["a", "b"]).await;
    let mut first = nodes[0].claim_name("leader").await.unwrap();
    tokio::time::timeout(WAIT, first.acquired())
        .await
        .unwrap()
        .unwrap();
    let mut b = nodes[1].claim_name("leader").await.unwrap();
    wait_owner(&nodes[1], "leader", Some("a")).await;
    nodes[0].shutdown().await.unwrap();
    tokio::time::timeout(WAIT, b.acquired())
        .await
        .expect("b takes over after a's failure is detected")
        .unwrap();
    let (ra, _pa) = recorder();
    let again = node("a", "names-restart")
        .gossip_interval(Duration::from_millis(100))
        .seed(nodes[1].addr().to_string())
        .start(ra)
        .await
        .unwrap();
    wait_members(&nodes[1], &["a", "b"]).await;
    let lost = b.lost();
    again.shutdown().await.unwrap();
    wait_members(&nodes[1], &["b"]).await;
    // Longer than a claimant not yet judged keeps its rank (10 gossip intervals).
    let outcome = tokio::time::timeout(Duration::from_millis(1_500), lost).await;
    assert!(outcome.is_err(), "b lost the name: {outcome:?}");
    assert!(b.is_owner());
    assert_eq!(nodes[1].whereis("leader").unwrap().id(), "b");
}
