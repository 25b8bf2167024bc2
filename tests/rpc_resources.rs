//! The messaging layer's resources, over real TCP on 127.0.0.1 with in-process nodes: closed
//! connections release their sockets; the connection cap; one connection per peer under
//! concurrent first calls; idle and read timeouts; a peer that stops reading makes calls fail
//! with `Overloaded` or `CallTimeout`, never hang; a caller gone while its call runs, or a member
//! that left, releases the socket at once; a reply over the frame limit becomes an error reply.

#[path = "support/membership.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use herd::{async_trait, ClusterMember, Context, Error, Node, Reply, Request};
use support::{node, wait_members, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The tests of this file run one at a time: some count the process's RPC sockets.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Answers every call with the length of its payload, after a second for the payload `SLOW`.
struct Len;

const SLOW: &[u8] = b"slow";

#[async_trait]
impl ClusterMember for Len {
    async fn handle_call(&mut self, _cx: &Context, request: Request) -> Reply {
        match request.decode::<Vec<u8>>() {
            Ok(bytes) => {
                if bytes == SLOW {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Reply::ok(&(bytes.len() as u64))
            }
            Err(err) => Reply::error(err),
        }
    }
}

/// Answers every call with its payload.
struct Echo;

#[async_trait]
impl ClusterMember for Echo {
    async fn handle_call(&mut self, _cx: &Context, request: Request) -> Reply {
        match request.decode::<Vec<u8>>() {
            Ok(bytes) => Reply::ok(&bytes),
            Err(err) => Reply::error(err),
        }
    }
}

const T: Duration = Duration::from_secs(10);

/// The TCP connections to or from `port` (not the listener) that this process holds open: a
/// descriptor of this process whose socket /proc/net/tcp lists with `port` at either end. A
/// socket its owner closed (TIME_WAIT) has no descriptor and does not count; one it still holds
/// (CLOSE_WAIT, ESTABLISHED) does.
fn rpc_sockets(port: u16) -> usize {
    let held: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let port = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state, inode) = (fields[1], fields[2], fields[3], fields[9]);
            state != "0A"
                && (local.ends_with(&port) || remote.ends_with(&port))
                && held.contains(inode)
        })
        .count()
}

fn rpc_addr(node: &Node) -> SocketAddr {
    node.members()
        .iter()
        .find(|m| m.id() == node.id())
        .and_then(|m| m.rpc_addr())
        .unwrap()
}

/// The plain (keyless) handshake's opening, as a client sends it.
fn hello(id: &str) -> Vec<u8> {
    let mut hello = b"herd\x02".to_vec();
    hello.extend_from_slice(&[7; 32]);
    hello.push(0);
    hello.push(id.len() as u8);
    hello.extend_from_slice(id.as_bytes());
    hello
}

/// The plain handshake's answer, as a server sends it.
fn welcome(id: &str) -> Vec<u8> {
    let mut welcome = b"herd\x02\x01".to_vec();
    welcome.extend_from_slice(&[9; 32]);
    welcome.extend_from_slice(&[0; 4]);
    welcome.push(id.len() as u8);
    welcome.extend_from_slice(id.as_bytes());
    welcome
}

/// Opens a plain connection to `addr` as node `id`, through the handshake.
async fn handshaken(addr: SocketAddr, id: &str, server: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&hello(id)).await.unwrap();
    let mut answer = vec![0u8; welcome(server).len()];
    tokio::time::timeout(WAIT, stream.read_exact(&mut answer))
        .await
        .expect("a welcome in time")
        .expect("a welcome");
    assert_eq!(&answer[..6], b"herd\x02\x01");
    stream
}

/// Waits until the peer closes `stream`, which must take at least `at_least` (less 50 ms for
/// timer slack); how long it took.
async fn closed_by_peer(stream: &mut TcpStream, at_least: Duration) -> Duration {
    let waited = closing(stream).await;
    let slack = Duration::from_millis(50);
    assert!(waited + slack >= at_least, "closed after {waited:?}");
    waited
}

async fn closing(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the connection was not closed within {WAIT:?}"),
        }
    }
}

/// Polls `cond` every 20 ms until it holds or `within` passes.
async fn until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_close_cycles_leave_no_socket_behind() {
    let _serial = SERIAL.lock().await;
    let a = node("a", "res-fds").start(Len).await.unwrap();
    wait_members(&a, &["a"]).await;
    let addr = rpc_addr(&a);
    assert_eq!(rpc_sockets(addr.port()), 0);
    for i in 0..2_000 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        match i % 4 {
            // Half a handshake, then gone.
            1 => stream.write_all(&hello("scanner")[..10]).await.unwrap(),
            // A whole handshake, then gone before any frame.
            2 => {
                stream.write_all(&hello("scanner")).await.unwrap();
                let mut answer = vec![0u8; welcome("a").len()];
                stream.read_exact(&mut answer).await.unwrap();
            }
            // A whole handshake and half a frame.
            3 => {
                stream.write_all(&hello("scanner")).await.unwrap();
                stream.write_all(&[0, 0, 1, 0, 1]).await.unwrap();
            }
            _ => {}
        }
        drop(stream);
    }
    let all_seen = until(WAIT, || a.rpc_stats().connections_accepted == 2_000).await;
    assert!(all_seen, "{:?}", a.rpc_stats());
    let settled = until(Duration::from_secs(5), || rpc_sockets(addr.port()) == 0).await;
    assert!(
        settled,
        "{} connections still open after 2,000 connect/close cycles",
        rpc_sockets(addr.port())
    );
    // The node still answers.
    let b = node("b", "res-fds")
        .seed(a.addr().to_string())
        .start(Len)
        .await
        .unwrap();
    wait_members(&b, &["a", "b"]).await;
    let n: u64 = b.call("a", &vec![1u8; 10], T).await.unwrap();
    assert_eq!(n, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once_and_calls_go_on() {
    let _serial = SERIAL.lock().await;
    let a = node("a", "res-cap").start(Len).await.unwrap();
    let b = node("b", "res-cap")
        .seed(a.addr().to_string())
        .max_connections(8)
        .start(Len)
        .await
        .unwrap();
    wait_members(&a, &["a", "b"]).await;
    let n: u64 = a.call("b", &vec![0u8; 3], T).await.unwrap();
    assert_eq!(n, 3);
    assert_eq!(b.rpc_stats().connections_accepted, 1);

    // 7 more fit under the cap; 13 are refused.
    let addr = rpc_addr(&b);
    let mut raw = Vec::new();
    for _ in 0..20 {
        raw.push(TcpStream::connect(addr).await.unwrap());
    }
    let all_seen = until(WAIT, || {
        let stats = b.rpc_stats();
        stats.connections_accepted + stats.connections_over_cap == 21
    })
    .await;
    assert!(all_seen, "{:?}", b.rpc_stats());
    assert_eq!(b.rpc_stats().connections_over_cap, 13);
    assert_eq!(b.rpc_stats().connections_accepted, 8);
    // The last ones were refused: closed without a word.
    let waited = closed_by_peer(raw.last_mut().unwrap(), Duration::ZERO).await;
    assert!(waited < Duration::from_secs(2), "{waited:?}");

    // The connection already open keeps serving calls.
    let n: u64 = a.call("b", &vec![0u8; 4], T).await.unwrap();
    assert_eq!(n, 4);

    // Once the extra connections are gone, new ones are accepted again.
    drop(raw);
    let mut accepted = false;
    let deadline = Instant::now() + WAIT;
    while !accepted && Instant::now() < deadline {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&hello("probe")).await.unwrap();
        let mut answer = vec![0u8; welcome("b").len()];
        accepted = matches!(
            tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut answer)).await,
            Ok(Ok(_))
        );
        if !accepted {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(
        accepted,
        "no connection accepted after the extra ones closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_to_a_peer_share_one_connection() {
    let _serial = SERIAL.lock().await;
    let a = node("a", "res-one").start(Len).await.unwrap();
    let b = node("b", "res-one")
        .seed(a.addr().to_string())
        .start(Len)
        .await
        .unwrap();
    wait_members(&a, &["a", "b"]).await;
    wait_members(&b, &["a", "b"]).await;
    assert_eq!(b.rpc_stats().connections_accepted, 0);
    let calls = (0..64u8).map(|i| {
        let a = a.clone();
        tokio::spawn(async move { a.call::<_, u64>("b", &vec![i; i as usize], T).await })
    });
    for (i, call) in futures::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(call.unwrap().unwrap(), i as u64);
    }
    assert_eq!(b.rpc_stats().connections_accepted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_frames_and_idle_connections_are_closed() {
    let _serial = SERIAL.lock().await;
    let read_timeout = Duration::from_millis(400);
    let idle_timeout = Duration::from_millis(800);
    let a = node("a", "res-timeouts")
        .rpc_read_timeout(read_timeout)
        .rpc_idle_timeout(idle_timeout)
        .start(Len)
        .await
        .unwrap();
    wait_members(&a, &["a"]).await;
    let addr = rpc_addr(&a);

    // A frame announcing 1,000 bytes, of which 9 (its header) and 10 of body arrive.
    let mut stalled = handshaken(addr, "staller", "a").await;
    let mut start = 1_000u32.to_be_bytes().to_vec();
    start.push(1);
    start.extend_from_slice(&5u64.to_be_bytes());
    start.extend_from_slice(&[0; 10]);
    stalled.write_all(&start).await.unwrap();
    closed_by_peer(&mut stalled, read_timeout).await;
    assert_eq!(a.rpc_stats().read_timeouts, 1);
    assert_eq!(a.rpc_stats().idle_closed, 0);

    // A connection that never sends a frame.
    let mut idle = handshaken(addr, "idler", "a").await;
    closed_by_peer(&mut idle, idle_timeout).await;
    assert_eq!(a.rpc_stats().idle_closed, 1);
    assert_eq!(a.rpc_stats().read_timeouts, 1);
}

/// Nodes a and b in cluster `name`, where b's messages go to a listener that answers the
/// handshake as b, then never reads (its receive buffer small): b binds its own RPC port on
/// 127.0.0.2 and advertises 127.0.0.1, where the listener is. The listener's connections arrive
/// on the receiver. Node a's connection queues hold at most `queue_limit` bytes.
async fn cluster_with_a_stuck_peer(
    name: &str,
    queue_limit: usize,
) -> (Node, Node, tokio::sync::mpsc::UnboundedReceiver<TcpStream>) {
    let stuck = tokio::net::TcpSocket::new_v4().unwrap();
    stuck.set_recv_buffer_size(64 * 1024).unwrap();
    stuck.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let stuck = stuck.listen(16).unwrap();
    let port = stuck.local_addr().unwrap().port();
    let (tx, streams) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = stuck.accept().await {
            let mut hello = [0u8; 64];
            let _ = stream.read(&mut hello).await;
            stream.write_all(&welcome("b")).await.unwrap();
            if tx.send(stream).is_err() {
                return;
            }
        }
    });
    let a = node("a", name)
        .rpc_queue_limit(queue_limit)
        .start(Len)
        .await
        .unwrap();
    let b = node("b", name)
        .seed(a.addr().to_string())
        .rpc_listen(format!("127.0.0.2:{port}").parse().unwrap())
        .start(Len)
        .await
        .unwrap();
    wait_members(&a, &["a", "b"]).await;
    let published = a
        .members()
        .iter()
        .find(|m| m.id() == "b")
        .unwrap()
        .rpc_addr();
    assert_eq!(
        published,
        Some(format!("127.0.0.1:{port}").parse().unwrap())
    );
    (a, b, streams)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_to_a_member_that_left_is_closed() {
    let _serial = SERIAL.lock().await;
    let (a, b, mut streams) = cluster_with_a_stuck_peer("res-left", 1024 * 1024).await;
    // A call opens the connection; the listener never answers it.
    let err = a
        .call::<_, u64>("b", &vec![1u8; 3], Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CallTimeout { .. }), "{err:?}");
    let mut held = tokio::time::timeout(WAIT, streams.recv())
        .await
        .unwrap()
        .unwrap();
    b.leave().await.unwrap();
    wait_members(&a, &["a"]).await;
    // The caller closes its end, though the far end (the listener) never did.
    closed_by_peer(&mut held, Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_a_peer_that_stops_reading_fail_fast_with_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let limit = 1024 * 1024;
    let (a, b, _streams) = cluster_with_a_stuck_peer("res-stuck", limit).await;
    let timeout = Duration::from_secs(2);
    // 25 MiB in all: more than the sockets' buffers and the queue hold. A string, which encodes
    // in one copy, so that encoding does not starve the nodes' gossip.
    let blob = "x".repeat(256 * 1024);
    let started = Instant::now();
    let calls = (0..100).map(|_| {
        let (a, blob) = (a.clone(), blob.clone());
        tokio::spawn(async move { a.call::<_, u64>("b", &blob, timeout).await })
    });
    let (mut overloaded, mut timed_out) = (0, 0);
    for call in futures::future::join_all(calls).await {
        match call.unwrap() {
            Err(Error::Overloaded {
                member,
                queued,
                limit: bound,
            }) => {
                assert_eq!((member.as_str(), bound), ("b", limit));
                assert!(queued <= limit, "{queued} queued");
                overloaded += 1;
            }
            Err(Error::CallTimeout { .. }) => timed_out += 1,
            other => panic!("a call to a peer that does not read ended in {other:?}"),
        }
    }
    let took = started.elapsed();
    assert!(took < timeout + Duration::from_secs(5), "{took:?}");
    assert!(overloaded > 0, "{timed_out} timed out, none overloaded");
    assert_eq!(a.rpc_stats().overloaded, overloaded);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_the_frame_limit_becomes_an_error_reply() {
    let _serial = SERIAL.lock().await;
    let a = node("a", "res-reply").start(Len).await.unwrap();
    let b = node("b", "res-reply")
        .seed(a.addr().to_string())
        .max_frame(1_000)
        .start(Echo)
        .await
        .unwrap();
    wait_members(&a, &["a", "b"]).await;
    // The request's body is 998 bytes (a length and 990 bytes): within b's limit; the reply wraps
    // it in an outcome, 12 bytes more: over it.
    let echoed: Vec<u8> = a.call("b", &vec![3u8; 900], T).await.unwrap();
    assert_eq!(echoed.len(), 900);
    let err = a
        .call::<_, Vec<u8>>("b", &vec![3u8; 990], T)
        .await
        .unwrap_err();
    match err {
        Error::Remote { member, message } => {
            assert_eq!(member, "b");
            assert!(
                message.contains("exceeds the frame limit of 1000"),
                "{message}"
            );
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
    assert_eq!(b.rpc_stats().oversized_replies, 1);
    // The connection goes on.
    let echoed: Vec<u8> = a.call("b", &vec![4u8; 10], T).await.unwrap();
    assert_eq!(echoed, vec![4u8; 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_peer_closed_for_idleness_is_released_by_the_caller() {
    let _serial = SERIAL.lock().await;
    let a = node("a", "res-idle").start(Len).await.unwrap();
    let b = node("b", "res-idle")
        .seed(a.addr().to_string())
        .rpc_idle_timeout(Duration::from_millis(300))
        .start(Len)
        .await
        .unwrap();
    wait_members(&a, &["a", "b"]).await;
    let port = rpc_addr(&b).port();
    // A call in flight longer than the idle timeout keeps its connection.
    let n: u64 = a.call("b", &SLOW.to_vec(), T).await.unwrap();
    assert_eq!(n, 4);
    assert_eq!(b.rpc_stats().idle_closed, 0);
    assert!(until(WAIT, || b.rpc_stats().idle_closed == 1).await);
    // Both ends of the closed connection are released: the caller's too, without another call.
    let settled = until(Duration::from_secs(5), || rpc_sockets(port) == 0).await;
    assert!(settled, "{} connections still open", rpc_sockets(port));
    // The next call connects again.
    let n: u64 = a.call("b", &vec![0u8; 6], T).await.unwrap();
    assert_eq!(n, 6);
    assert_eq!(b.rpc_stats().connections_accepted, 2);
    assert_eq!(b.rpc_stats().idle_closed, 1);
}

/// Tells of every call, then holds it until the gate opens.
struct Gate {
    entered: tokio::sync::mpsc::UnboundedSender<()>,
    open: std::sync::Arc<tokio::sync::Notify>,
}

#[async_trait]
impl ClusterMember for Gate {
    async fn handle_call(&mut self, _cx: &Context, _request: Request) -> Reply {
        let _ = self.entered.send(());
        self.open.notified().await;
        Reply::ok(&0u64)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_gone_while_its_call_runs_releases_the_socket_at_once() {
    let _serial = SERIAL.lock().await;
    let (entered, mut calls) = tokio::sync::mpsc::unbounded_channel();
    let open = std::sync::Arc::new(tokio::sync::Notify::new());
    let a = node("a", "res-gone")
        .start(Gate {
            entered,
            open: open.clone(),
        })
        .await
        .unwrap();
    // Calls are delivered only from members in a's view: "caller" is one, and the raw
    // connection below claims its id (the plain handshake authenticates nobody).
    let member = node("caller", "res-gone")
        .seed(a.addr().to_string())
        .start(Echo)
        .await
        .unwrap();
    wait_members(&a, &["a", "caller"]).await;
    let port = rpc_addr(&a).port();
    let mut caller = handshaken(rpc_addr(&a), "caller", "a").await;
    // A call frame: length, kind 1, id 1, the body: the timing prefix (sent 0, no deadline to
    // speak of) and a bincode Vec<u8> of one byte.
    let mut body = vec![0u8; 8];
    body.extend_from_slice(&u64::MAX.to_be_bytes());
    body.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, b'x']);
    let mut frame = (9 + body.len() as u32).to_be_bytes().to_vec();
    frame.push(1);
    frame.extend_from_slice(&1u64.to_be_bytes());
    frame.extend_from_slice(&body);
    caller.write_all(&frame).await.unwrap();
    tokio::time::timeout(WAIT, calls.recv())
        .await
        .expect("the call reached the member");
    drop(caller);
    // The member still holds the call; the connection's socket is gone nonetheless.
    let settled = until(Duration::from_secs(5), || rpc_sockets(port) == 0).await;
    assert!(settled, "{} connections still open", rpc_sockets(port));
    open.notify_one();
    member.shutdown().await.unwrap();
}
