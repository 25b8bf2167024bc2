//! Member-to-member messages between in-process nodes over real TCP on 127.0.0.1: calls, casts
//! and multi-calls with the users' own types; timeouts; calls to a member that crashed; frames
//! over the limit, garbage and undecodable requests refused while the receiver serves everyone.

#[path = "support/membership.rs"]
mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use herd::{async_trait, ClusterMember, Context, Error, Node, Reply, Request};
use serde::{Deserialize, Serialize};
use support::{node, wait_members, WAIT};
use tokio::sync::mpsc;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Ask {
    Ping(u32),
    Sleep(u64),
    Panic,
    Blob(Vec<u8>),
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Pong {
    n: u32,
    by: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Note {
    text: String,
}

struct Echo {
    notes: mpsc::UnboundedSender<(String, Note)>,
}

#[async_trait]
impl ClusterMember for Echo {
    async fn handle_call(&mut self, cx: &Context, request: Request) -> Reply {
        match request.decode::<Ask>() {
            Ok(Ask::Ping(n)) => Reply::ok(&Pong {
                n,
                by: cx.node_id().to_string(),
            }),
            Ok(Ask::Sleep(ms)) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Reply::ok(&Pong {
                    n: 0,
                    by: cx.node_id().to_string(),
                })
            }
            Ok(Ask::Panic) => panic!("told to panic"),
            Ok(Ask::Blob(bytes)) => Reply::ok(&(bytes.len() as u32)),
            Err(err) => Reply::error(err),
        }
    }

    async fn handle_cast(&mut self, _cx: &Context, request: Request) {
        if let Ok(note) = request.decode::<Note>() {
            let _ = self.notes.send((request.from().to_string(), note));
        }
    }
}

struct Cluster {
    nodes: Vec<Node>,
    notes: Vec<mpsc::UnboundedReceiver<(String, Note)>>,
}

async fn cluster(
    name: &str,
    ids: &[&str],
    tweak: impl Fn(&str, herd::NodeBuilder) -> herd::NodeBuilder,
) -> Cluster {
    let mut nodes: Vec<Node> = Vec::new();
    let mut notes = Vec::new();
    for id in ids {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut builder = tweak(id, node(id, name));
        if let Some(first) = nodes.first() {
            builder = builder.seed(first.addr().to_string());
        }
        nodes.push(builder.start(Echo { notes: tx }).await.unwrap());
        notes.push(rx);
    }
    for n in &nodes {
        wait_members(n, ids).await;
    }
    Cluster { nodes, notes }
}

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn calls_casts_and_multi_calls_carry_the_users_own_types() {
    let mut c = cluster("rpc-basic", &["a", "b", "c"], |_, b| b).await;
    let (a, b) = (&c.nodes[0], &c.nodes[1]);

    let pong: Pong = a.call("b", &Ask::Ping(1), T).await.unwrap();
    assert_eq!(
        pong,
        Pong {
            n: 1,
            by: "b".into()
        }
    );
    let pong: Pong = b.call("a", &Ask::Ping(2), T).await.unwrap();
    assert_eq!(pong.by, "a");

    a.cast("c", &Note { text: "hi".into() }).await.unwrap();
    let (from, note) = tokio::time::timeout(WAIT, c.notes[2].recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((from.as_str(), note.text.as_str()), ("a", "hi"));

    let replies: Vec<(String, Result<Pong, Error>)> = a.multi_call(&Ask::Ping(3), T).await;
    let by: Vec<(String, String)> = replies
        .into_iter()
        .map(|(id, r)| (id, r.unwrap().by))
        .collect();
    assert_eq!(
        by,
        [("a", "a"), ("b", "b"), ("c", "c")].map(|(x, y)| (x.to_string(), y.to_string()))
    );
}

#[tokio::test]
async fn a_call_times_out_and_the_next_one_is_answered() {
    let c = cluster("rpc-timeout", &["a", "b"], |_, b| b).await;
    let a = &c.nodes[0];
    let started = Instant::now();
    let err = a
        .call::<_, Pong>("b", &Ask::Sleep(3_000), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::CallTimeout { ref member, .. } if member == "b"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout, not the handler, ended the call"
    );
    let pong: Pong = a.call("b", &Ask::Ping(4), T).await.unwrap();
    assert_eq!(pong.n, 4);
}

#[tokio::test]
async fn calls_to_unknown_or_crashed_members_fail_at_once_naming_them() {
    let c = cluster("rpc-dead", &["a", "b"], |_, b| b).await;
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let err = a
        .call::<_, Pong>("nobody", &Ask::Ping(1), T)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownMember { ref member } if member == "nobody"),
        "{err}"
    );

    let _: Pong = a.call("b", &Ask::Ping(1), T).await.unwrap();
    b.shutdown().await.unwrap();
    let started = Instant::now();
    let err = a.call::<_, Pong>("b", &Ask::Ping(2), T).await.unwrap_err();
    assert!(
        matches!(err, Error::Unreachable { ref member, .. } | Error::UnknownMember { ref member } if member == "b"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed at once, not at the timeout"
    );
}

#[tokio::test]
async fn frames_over_the_limit_are_refused_and_the_connection_serves_on() {
    let c = cluster("rpc-large", &["a", "b"], |id, b| {
        if id == "b" {
            b.max_frame(4096)
        } else {
            b
        }
    })
    .await;
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let err = a
        .call::<_, u32>("b", &Ask::Blob(vec![7; 100_000]), T)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Remote { ref message, .. } if message.contains("exceeds")),
        "{err}"
    );
    let n: u32 = a.call("b", &Ask::Blob(vec![7; 100]), T).await.unwrap();
    assert_eq!(n, 100, "the same connection still works");

    let err = b
        .call::<_, u32>("a", &Ask::Blob(vec![7; 100_000]), T)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::FrameTooLarge { limit: 4096, .. }),
        "refused before sending: {err}"
    );
}

// Two worker threads: the panic below makes the default panic hook print a backtrace (slow to
// symbolize in a debug build, and CI runs with RUST_BACKTRACE=1) on the thread running the
// dispatcher; on a one-thread runtime that would stall both nodes' gossip for as long, and the
// failure detector would declare b failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_undecodable_requests_are_refused_while_others_are_served() {
    // The handler's panic below is expected: keep the default hook (and its backtrace, slow to
    // symbolize on a loaded machine) for every other panic.
    let default = std::sync::Arc::new(std::panic::take_hook());
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&"told to panic") {
            default(info);
        }
    }));
    let c = cluster("rpc-garbage", &["a", "b"], |_, b| b).await;
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let rpc = b
        .members()
        .iter()
        .find(|m| m.id() == "b")
        .unwrap()
        .rpc_addr()
        .unwrap();

    // Raw garbage on b's RPC port: a short frame, an unknown kind, then a truncated frame. b
    // may close the connection at its first bad byte, so the write may fail part way: either
    // way, b must go on serving.
    let mut garbage = Vec::new();
    garbage.extend_from_slice(&3u32.to_be_bytes());
    garbage.extend_from_slice(&[1, 2, 3]);
    garbage.extend_from_slice(&9u32.to_be_bytes());
    garbage.extend_from_slice(&[99, 0, 0, 0, 0, 0, 0, 0, 1]);
    garbage.extend_from_slice(&1000u32.to_be_bytes());
    garbage.extend_from_slice(b"only a little");
    let mut raw = std::net::TcpStream::connect(rpc).unwrap();
    let _ = raw.write_all(&garbage);
    drop(raw);

    // A request of a type b's handler does not take: b says so.
    let err = a
        .call::<_, Pong>(
            "b",
            &Note {
                text: "not an Ask".into(),
            },
            T,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Remote { ref member, .. } if member == "b"),
        "{err}"
    );

    // A panicking handler answers with an error; b keeps serving.
    let err = a.call::<_, Pong>("b", &Ask::Panic, T).await.unwrap_err();
    assert!(
        matches!(err, Error::Remote { ref message, .. } if message.contains("panicked")),
        "{err}"
    );
    let pong: Pong = a.call("b", &Ask::Ping(5), T).await.unwrap();
    assert_eq!(pong.by, "b");
}

#[tokio::test]
async fn many_calls_in_flight_on_one_connection_each_get_their_own_reply() {
    let c = cluster("rpc-many", &["a", "b"], |_, b| b).await;
    let a = &c.nodes[0];
    let calls = (0..200u32).map(|n| async move {
        let pong: Pong = a.call("b", &Ask::Ping(n), T).await.unwrap();
        assert_eq!(pong.n, n);
    });
    futures::future::join_all(calls).await;
}
