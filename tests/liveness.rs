//! Membership resources and liveness over real UDP on 127.0.0.1: a slow member still gets every
//! event in order (bounded deliveries), a stream that is not read says how much it lost, a node
//! whose gossip loop ends says so, oversized tags are refused, and the digest size is tracked.
//! Every wait is for an event, bounded by a generous timeout.

#[path = "support/membership.rs"]
mod support;

use std::time::Duration;

use futures::StreamExt;
use herd::{async_trait, ClusterMember, Context, Error, EventStream, Lagged, LeaveReason};
use herd::{Member, MembershipEvent, Node};
use support::*;
use tokio::sync::mpsc;

/// A member whose `on_member_updated` takes a while, and reports the value of tag `n`.
struct Slow {
    tx: mpsc::UnboundedSender<String>,
}

#[async_trait]
impl ClusterMember for Slow {
    async fn on_member_updated(&mut self, _cx: &Context, member: &Member) {
        tokio::time::sleep(Duration::from_millis(40)).await;
        if let Some(n) = member.tags().get("n") {
            let _ = self.tx.send(n.clone());
        }
    }
}

/// The next event of `stream`, within [`WAIT`].
async fn next(stream: &mut EventStream) -> Result<MembershipEvent, Lagged> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
}

/// Sets tag `n` on `on` to each of `values`, waiting each time until `watch` (a stream of another
/// node) reports it, so that every value is an event of its own.
async fn step_tags(on: &Node, watch: &mut EventStream, values: std::ops::Range<u32>) {
    for n in values {
        on.set_tag("n", &n.to_string()).await.unwrap();
        loop {
            match next(watch).await.expect("the watching stream keeps up") {
                MembershipEvent::Updated(m) if m.tags().get("n") == Some(&n.to_string()) => break,
                _ => {}
            }
        }
    }
}

/// A node with a recorder that joins through `seed`.
async fn peer(id: &str, cluster: &str, seed: &Node) -> Node {
    let (r, _p) = recorder();
    node(id, cluster)
        .seed(seed.addr().to_string())
        .start(r)
        .await
        .unwrap()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_slow_member_gets_every_event_in_order_through_a_small_queue() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let a = node("a", "slow")
        .delivery_queue(2)
        .start(Slow { tx })
        .await
        .unwrap();
    let mut watch = a.events();
    let b = peer("b", "slow", &a).await;
    wait_members(&a, &["a", "b"]).await;

    step_tags(&b, &mut watch, 0..30).await;
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some("29") {
        let value = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("the slow member stopped at {got:?}"))
            .unwrap();
        got.push(value);
    }
    let want: Vec<String> = (0..30).map(|n| n.to_string()).collect();
    assert_eq!(got, want, "every update, once, in order");
    assert!(
        a.membership_health().delivery_stalls > 0,
        "a queue of 2 was full at times"
    );
    assert!(a.gossip_alive());
}

#[tokio::test]
async fn an_unread_event_stream_yields_lagged_then_goes_on() {
    let (ra, _pa) = recorder();
    let a = node("a", "lag").event_buffer(4).start(ra).await.unwrap();
    // Both streams see the same events; `watch` is read as they come, `unread` is not.
    let mut watch = a.events();
    let mut unread = a.events();
    let b = peer("b", "lag", &a).await;
    wait_members(&a, &["a", "b"]).await;
    // Joined(b) and ten updates: 11 events, more than the buffer of 4.
    step_tags(&b, &mut watch, 0..10).await;

    let Err(Lagged(missed)) = next(&mut unread).await else {
        panic!("the first item of a stream 11 events behind is Lagged");
    };
    assert_eq!(missed, 7, "11 events, 4 kept");
    let mut rest = Vec::new();
    for _ in 0..4 {
        rest.push(next(&mut unread).await.expect("one Lagged, then events"));
    }
    let values: Vec<&str> = rest
        .iter()
        .map(|event| match event {
            MembershipEvent::Updated(m) => m.tags()["n"].as_str(),
            other => panic!("the newest four are updates, not {other:?}"),
        })
        .collect();
    assert_eq!(values, ["6", "7", "8", "9"]);
    // And it goes on with new events.
    b.set_tag("n", "10").await.unwrap();
    assert!(
        matches!(next(&mut unread).await, Ok(MembershipEvent::Updated(m)) if m.tags()["n"] == "10")
    );
}

#[tokio::test]
async fn a_node_whose_gossip_loop_ends_reports_it_and_peers_see_it_fail() {
    let (ra, _pa) = recorder();
    let a = node("a", "dead-loop").start(ra).await.unwrap();
    let (rb, mut pb) = recorder();
    let b = node("b", "dead-loop")
        .seed(a.addr().to_string())
        .start(rb)
        .await
        .unwrap();
    wait_members(&b, &["a", "b"]).await;
    assert!(a.gossip_alive());
    assert_eq!(a.membership_health().gossip_failure, None);

    a.break_gossip_socket();
    wait_until("a to report its gossip down", || !a.gossip_alive()).await;
    let why = a.membership_health().gossip_failure.expect("a reason");
    assert!(why.contains("fatal gossip receive error"), "{why}");
    assert_eq!(pb.left("a").await, LeaveReason::Failed);
    assert!(b.gossip_alive(), "the peer's own gossip is fine");

    a.shutdown().await.unwrap();
    assert!(!a.gossip_alive());
    b.shutdown().await.unwrap();
    assert!(!b.gossip_alive());
    assert_eq!(
        b.membership_health().gossip_failure,
        None,
        "a deliberate stop is not a failure"
    );
}

#[tokio::test]
async fn oversized_tags_are_refused_and_change_nothing() {
    let (r, _p) = recorder();
    let long_key = "k".repeat(herd::node::MAX_TAG_KEY + 1);
    let err = node("x", "tags")
        .tag(&long_key, "v")
        .start(r)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidTag { reason, .. } if reason.contains("129 bytes; the limit is 128")),
        "{err}"
    );

    let (ra, _pa) = recorder();
    let a = node("a", "tags")
        .tag("group", "one")
        .start(ra)
        .await
        .unwrap();
    let b = peer("b", "tags", &a).await;
    wait_members(&b, &["a", "b"]).await;
    let mut watch = b.events();
    let big = "v".repeat(herd::node::MAX_TAG_VALUE + 1);
    let err = a.set_tag("group", &big).await.unwrap_err();
    assert!(
        err.to_string().contains("4097 bytes; the limit is 4096"),
        "{err}"
    );
    assert!(a.set_tag(&long_key, "v").await.is_err());
    a.set_tag("next", "1").await.unwrap();
    let Ok(MembershipEvent::Updated(seen)) = next(&mut watch).await else {
        panic!("b sees the valid change");
    };
    assert_eq!(seen.tags().get("group").map(String::as_str), Some("one"));
    assert_eq!(seen.tags().get("next").map(String::as_str), Some("1"));
    assert_eq!(seen.tags().len(), 2, "{:?}", seen.tags());
}

#[tokio::test]
async fn the_largest_digest_grows_with_the_members() {
    let (ra, _pa) = recorder();
    let a = node("a", "digest").start(ra).await.unwrap();
    let seed = a.addr().to_string();
    let mut nodes = Vec::new();
    let (r, _p) = recorder();
    nodes.push(node("b", "digest").seed(&seed).start(r).await.unwrap());
    wait_members(&a, &["a", "b"]).await;
    wait_until("a digest sent", || {
        a.gossip_stats().largest_digest_bytes > 0
    })
    .await;
    let two = a.gossip_stats().largest_digest_bytes;
    let stats = a.gossip_stats();
    assert_eq!(stats.datagram_limit_bytes, 65_507 - 64);
    assert!(!stats.compressing);
    assert!(two < stats.datagram_limit_bytes / 10);

    for id in ["c", "d", "e"] {
        let (r, _p) = recorder();
        nodes.push(node(id, "digest").seed(&seed).start(r).await.unwrap());
    }
    wait_members(&a, &["a", "b", "c", "d", "e"]).await;
    wait_until("a larger digest", || {
        a.gossip_stats().largest_digest_bytes > two
    })
    .await;
    assert_eq!(a.gossip_stats().oversized, 0);
}

/// GETs `path` of the API at `addr`; the status and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.get(&url).call().expect("the API answers");
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    })
    .await
    .unwrap()
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn an_agent_whose_gossip_stops_answers_503_and_shows_it_in_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let mut settings = herd::agent::AgentSettings::new("solo");
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.api = "127.0.0.1:0".parse().unwrap();
    settings.cluster_id = "agent-gossip-down".into();
    settings.data_dir = tmp.path().join("data");
    let agent = herd::agent::Agent::start(settings).await.unwrap();
    let api = agent.api_addr();
    let (status, body) = get(api, "/v1/health").await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = get(api, "/metrics").await;
    assert_eq!(
        sample(&metrics, "herd_gossip_alive"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "herd_gossip_datagram_limit_bytes"),
        Some(65_443.0)
    );
    assert_eq!(sample(&metrics, "herd_gossip_oversized_total"), Some(0.0));
    assert_eq!(
        sample(&metrics, "herd_membership_delivery_stalls_total"),
        Some(0.0)
    );

    agent.node().break_gossip_socket();
    wait_until("the node to report gossip down", || {
        !agent.node().gossip_alive()
    })
    .await;
    let (status, body) = get(api, "/v1/health").await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "gossip_down");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("fatal gossip receive error"),
        "{body}"
    );
    let (_, metrics) = get(api, "/metrics").await;
    assert_eq!(sample(&metrics, "herd_gossip_alive"), Some(0.0));
    agent.leave().await;
}
