//! Cluster keys on real loopback sockets: only holders of a key of the ring gossip with a keyed
//! node, join through it or call it; what they send is dropped before chitchat sees it and
//! counted; keys rotate without anyone losing sight of anyone; a plaintext cluster turns
//! encryption on with `verify_incoming(false)` first.

#[path = "support/membership.rs"]
mod support;

use std::time::Duration;

use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion};
use herd::trust::{Keyring, SecretKey};
use herd::{async_trait, ClusterMember, Context, Error, Node, Reply, Request};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Polls `cond` every 20 ms until it holds, within [`WAIT`].
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(node: &Node) -> Vec<String> {
    node.members().iter().map(|m| m.id().to_string()).collect()
}

/// Waits until `node` has received `n` more gossip messages than now: several gossip rounds have
/// passed, long enough for what is being ruled out (a join, a failure) to have shown up.
async fn rounds(node: &Node, n: u64) {
    let from = node.gossip_stats().messages_received;
    until(
        &format!("{n} more gossip messages at {}", node.id()),
        || node.gossip_stats().messages_received >= from + n,
    )
    .await;
}

/// Answers every call with the id of the member that sent it.
struct WhoAsks;

#[async_trait]
impl ClusterMember for WhoAsks {
    async fn handle_call(&mut self, _cx: &Context, request: Request) -> Reply {
        Reply::ok(&request.from().to_string())
    }
}

async fn start(id: &str, cluster: &str, ring: Option<&Keyring>, seed: Option<&Node>) -> Node {
    let mut builder = node(id, cluster);
    if let Some(ring) = ring {
        builder = builder.keyring(ring.clone());
    }
    if let Some(seed) = seed {
        builder = builder.seed(seed.addr().to_string());
    }
    builder.start(WhoAsks).await.unwrap()
}

#[tokio::test]
async fn nodes_without_the_cluster_key_cannot_join_and_their_gossip_is_counted() {
    let key = SecretKey::generate();
    let ring = |k: &SecretKey| Keyring::new(k.clone());
    let a = start("a", "trust-join", Some(&ring(&key)), None).await;
    let b = start("b", "trust-join", Some(&ring(&key)), Some(&a)).await;
    wait_members(&a, &["a", "b"]).await;
    wait_members(&b, &["a", "b"]).await;
    let asked: String = a.call("b", &(), WAIT).await.unwrap();
    assert_eq!(asked, "a", "the receiver names the authenticated caller");

    let other = start(
        "other-key",
        "trust-join",
        Some(&ring(&SecretKey::generate())),
        Some(&a),
    )
    .await;
    let plain = start("no-key", "trust-join", None, Some(&a)).await;
    until("a to count both strangers' gossip", || {
        let r = a.gossip_stats().rejected;
        r.unknown_key > 0 && r.plaintext > 0
    })
    .await;
    // Several more gossip rounds: still nobody new on either side.
    rounds(&a, 30).await;
    assert_eq!(ids(&a), ["a", "b"]);
    assert_eq!(ids(&b), ["a", "b"]);
    assert_eq!(ids(&other), ["other-key"]);
    assert_eq!(ids(&plain), ["no-key"]);
    assert_eq!(a.gossip_stats().rejected.forged, 0);
}

#[tokio::test]
async fn a_forged_plaintext_synack_is_dropped_before_chitchat() {
    let key = SecretKey::generate();
    let keyed = start("keyed", "trust-forge", Some(&Keyring::new(key)), None).await;
    // A plaintext node of the same cluster id holding a "ghost" member's state: ask it for a
    // SynAck (a Syn with an empty digest gets its whole state) and forward that to the keyed node.
    let ghost = start("ghost", "trust-forge", None, None).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let syn = ChitchatEnvelope {
        version: ProtocolVersion::V0,
        message: ChitchatMessage::Syn {
            cluster_id: "trust-forge".into(),
            digest: Default::default(),
        },
    };
    let mut bytes = Vec::new();
    syn.serialize(&mut bytes);
    socket.send_to(&bytes, ghost.addr()).await.unwrap();
    let mut synack = vec![0u8; 65_536];
    let (len, _) = tokio::time::timeout(WAIT, socket.recv_from(&mut synack))
        .await
        .expect("the plain node answers a Syn")
        .unwrap();
    synack.truncate(len);
    let decoded = ChitchatEnvelope::deserialize(&mut &synack[..]).unwrap();
    assert!(matches!(decoded.message, ChitchatMessage::SynAck { .. }));

    for _ in 0..5 {
        socket.send_to(&synack, keyed.addr()).await.unwrap();
    }
    until("the keyed node to count five plain datagrams", || {
        keyed.gossip_stats().rejected.plaintext >= 5
    })
    .await;
    assert_eq!(keyed.gossip_stats().messages_received, 0);
    assert_eq!(ids(&keyed), ["keyed"]);
}

#[tokio::test]
async fn a_raw_client_without_the_key_gets_nothing_acted_on() {
    let key = SecretKey::generate();
    let a = start("a", "trust-raw", Some(&Keyring::new(key)), None).await;
    let rpc = a.members()[0].rpc_addr().unwrap();
    let refused = |a: &Node, reason: &str| {
        a.rpc_stats()
            .refused
            .iter()
            .find(|(r, _)| *r == reason)
            .map(|(_, n)| *n)
            .unwrap()
    };

    // An old-style plain frame (a call, as herd framed them before handshakes): refused.
    let mut raw = tokio::net::TcpStream::connect(rpc).await.unwrap();
    let mut frame = 13u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    raw.write_all(&frame).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, raw.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed without an answer: {read:?}"
    );
    until("a malformed handshake counted", || {
        refused(&a, "malformed") >= 1
    })
    .await;

    // A herd handshake that offers no key: told no, closed.
    let mut raw = tokio::net::TcpStream::connect(rpc).await.unwrap();
    let mut hello = b"herd".to_vec();
    hello.push(2);
    hello.extend_from_slice(&[0; 32]);
    hello.push(0);
    hello.push(7);
    hello.extend_from_slice(b"mallory");
    raw.write_all(&hello).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, raw.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer[5], 2, "status: no common key");
    until("a refusal for no common key", || {
        refused(&a, "no_common_key") >= 1
    })
    .await;

    // A client that stops mid-handshake.
    let mut raw = tokio::net::TcpStream::connect(rpc).await.unwrap();
    raw.write_all(b"herd").await.unwrap();
    drop(raw);
    until("a refusal for a cut handshake", || {
        refused(&a, "closed") >= 1
    })
    .await;
}

#[tokio::test]
async fn keys_rotate_without_anyone_losing_sight_of_anyone() {
    let (old, new) = (SecretKey::generate(), SecretKey::generate());
    let all = ["a", "b", "c", "d"];
    let mut nodes = Vec::new();
    let mut probes = Vec::new();
    for id in all {
        let (recorder, probe) = recorder();
        let mut builder = node(id, "trust-rotate")
            .keyring(Keyring::new(old.clone()))
            .gossip_interval(Duration::from_millis(100));
        if let Some(first) = nodes.first() {
            let first: &Node = first;
            builder = builder.seed(first.addr().to_string());
        }
        nodes.push(builder.start(recorder).await.unwrap());
        probes.push(probe);
    }
    for n in &nodes {
        wait_members(n, &all).await;
    }
    // d goes down before the rotation and misses it.
    let d = nodes.pop().unwrap();
    let d_addr = d.addr();
    d.shutdown().await.unwrap();
    probes.pop();
    for probe in &mut probes {
        probe.left("d").await;
    }
    let live = ["a", "b", "c"];
    // Install everywhere, use everywhere (one node at a time), remove everywhere.
    for n in &nodes {
        assert!(n.keyring().unwrap().install(new.clone()).unwrap());
    }
    for n in &nodes {
        n.keyring().unwrap().use_key(&new).unwrap();
        rounds(n, 10).await; // gossip goes on with this node sealing under the new key
    }
    for n in &nodes {
        n.keyring().unwrap().remove(&old).unwrap();
    }
    // Gossip and calls go on under the new key alone.
    let before = nodes[1].gossip_stats().messages_received;
    until("gossip under the new key", || {
        nodes[1].gossip_stats().messages_received > before + 10
    })
    .await;
    // The recorder takes no calls; its refusal still comes back over a connection opened with
    // the new key, naming the caller the handshake authenticated.
    let err = nodes[0]
        .call::<_, String>("c", &(), WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Remote { message, .. } if message.contains("(from a)")),
        "{err}"
    );

    // d comes back at its address with the old key alone: the cluster's gossip to it (chitchat
    // keeps trying dead members) does not open there, and its own does not open anywhere.
    let stale = node("d", "trust-rotate")
        .listen(d_addr)
        // Its old messaging port may have gone to another test's connection meanwhile.
        .rpc_listen("127.0.0.1:0".parse().unwrap())
        .keyring(Keyring::new(old.clone()))
        .seed(nodes[0].addr().to_string())
        .start(WhoAsks)
        .await
        .unwrap();
    until("d to count gossip sealed with the new key", || {
        stale.gossip_stats().rejected.unknown_key > 0
    })
    .await;
    until("the cluster to count d's old key", || {
        nodes
            .iter()
            .any(|n| n.gossip_stats().rejected.unknown_key > 0)
    })
    .await;
    // Past the failure detector's horizon (about 12 heartbeat intervals of silence).
    rounds(&nodes[0], 200).await;
    assert_eq!(ids(&stale), ["d"]);
    for (n, probe) in nodes.iter().zip(&mut probes) {
        assert_eq!(ids(n), live);
        let lefts: Vec<_> = probe
            .seen()
            .iter()
            .filter(|s| matches!(s, Seen::Left(..)))
            .collect();
        assert!(
            matches!(lefts[..], [Seen::Left(id, _, _)] if id == "d"),
            "{}: only d's failure: {:?}",
            n.id(),
            probe.log
        );
        assert_eq!(n.gossip_stats().rejected.forged, 0, "{}", n.id());
    }
}

#[tokio::test]
async fn a_plaintext_cluster_turns_encryption_on_without_failures() {
    let key = SecretKey::generate();
    let (rec_a, mut probe_a) = recorder();
    let a = node("a", "trust-migrate")
        .gossip_interval(Duration::from_millis(100))
        .start(rec_a)
        .await
        .unwrap();
    let (rec_b, mut probe_b) = recorder();
    // b already has the key but accepts plain gossip (step one of the migration).
    let b = node("b", "trust-migrate")
        .gossip_interval(Duration::from_millis(100))
        .keyring(Keyring::new(key.clone()))
        .verify_incoming(false)
        .seed(a.addr().to_string())
        .start(rec_b)
        .await
        .unwrap();
    wait_members(&a, &["a", "b"]).await;
    wait_members(&b, &["a", "b"]).await;
    probe_a.saw_join_of("b").await;
    probe_b.joined_cluster().await;
    // Past the failure detector's horizon: a would have declared b failed by now if it could
    // not read it.
    rounds(&a, 200).await;
    assert_eq!(
        ids(&a),
        ["a", "b"],
        "a keeps hearing b, which answers it in plain"
    );
    assert_eq!(ids(&b), ["a", "b"]);
    for probe in [&mut probe_a, &mut probe_b] {
        let seen = probe.seen();
        assert!(
            !seen.iter().any(|s| matches!(s, Seen::Left(..))),
            "{seen:?}"
        );
    }
}

#[tokio::test]
async fn a_connection_outlives_neither_a_rotation_nor_its_key() {
    let (k1, k2) = (SecretKey::generate(), SecretKey::generate());
    let a = start("a", "trust-conn", Some(&Keyring::new(k1.clone())), None).await;
    let b = start("b", "trust-conn", Some(&Keyring::new(k1.clone())), Some(&a)).await;
    wait_members(&a, &["a", "b"]).await;
    let _: String = a.call("b", &(), WAIT).await.unwrap();

    // A full rotation on both: a's next call does not use its connection opened with k1.
    for n in [&a, &b] {
        n.keyring().unwrap().install(k2.clone()).unwrap();
    }
    for n in [&a, &b] {
        n.keyring().unwrap().use_key(&k2).unwrap();
    }
    for n in [&a, &b] {
        n.keyring().unwrap().remove(&k1).unwrap();
    }
    let asked: String = a.call("b", &(), WAIT).await.unwrap();
    assert_eq!(asked, "a");

    // b alone moves on to k3: the frame a sends on its k2 connection is not acted on (the
    // connection closes), and a new connection finds no common key.
    let k3 = SecretKey::generate();
    let ring = b.keyring().unwrap();
    ring.install(k3.clone()).unwrap();
    ring.use_key(&k3).unwrap();
    ring.remove(&k2).unwrap();
    let err = a.call::<_, String>("b", &(), WAIT).await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    let err = a.call::<_, String>("b", &(), WAIT).await.unwrap_err();
    assert!(
        matches!(&err, Error::Refused { reason, .. } if reason.contains("none of this node's keys")),
        "{err}"
    );
}
