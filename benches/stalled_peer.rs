//! Calls to a peer that stopped reading: node a calls member b 10,000 times at once, with 16 KiB
//! payloads and a 2 s timeout, while b's messages go to a listener that answers the handshake as
//! b and then never reads. Prints how the calls ended (every one must end: `Overloaded` once a's
//! queue to b is at its bound, `CallTimeout` for those queued), how long the last took, and the
//! caller's resident memory before, at the peak and after.
//!
//!     cargo bench --bench stalled_peer
//!     cargo bench --bench stalled_peer -- --calls 20000 --payload 4096
//!
//! Plain connections (no keyring), so the listener can answer the handshake itself; b binds its
//! own RPC port on 127.0.0.2 and advertises 127.0.0.1, where the listener is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd::{async_trait, ClusterMember, Context, Error, Node, Reply, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Quiet;

#[async_trait]
impl ClusterMember for Quiet {
    async fn handle_call(&mut self, _cx: &Context, _request: Request) -> Reply {
        Reply::ok(&0u64)
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A Welcome of a plain herd handshake from node `id` (see src/trust/handshake.rs).
fn welcome(id: &str) -> Vec<u8> {
    let mut welcome = b"herd\x01\x01".to_vec();
    welcome.extend_from_slice(&[9; 32]);
    welcome.extend_from_slice(&[0; 4]);
    welcome.push(id.len() as u8);
    welcome.extend_from_slice(id.as_bytes());
    welcome
}

fn main() {
    let (mut calls, mut payload) = (10_000usize, 16 * 1024usize);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--calls" => calls = args.next().unwrap().parse().unwrap(),
            "--payload" => payload = args.next().unwrap().parse().unwrap(),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let stuck = tokio::net::TcpSocket::new_v4().unwrap();
        stuck.set_recv_buffer_size(64 * 1024).unwrap();
        stuck.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let stuck = stuck.listen(16).unwrap();
        let port = stuck.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut stream, _)) = stuck.accept().await {
                let mut hello = [0u8; 64];
                let _ = stream.read(&mut hello).await;
                let _ = stream.write_all(&welcome("b")).await;
                held.push(stream); // held open, never read again
            }
        });
        let a = Node::builder("a")
            .listen("127.0.0.1:0".parse().unwrap())
            .cluster_id("bench-stalled")
            .start(Quiet)
            .await
            .unwrap();
        let _b = Node::builder("b")
            .listen("127.0.0.1:0".parse().unwrap())
            .cluster_id("bench-stalled")
            .seed(a.addr().to_string())
            .rpc_listen(format!("127.0.0.2:{port}").parse().unwrap())
            .start(Quiet)
            .await
            .unwrap();
        let mut watch = a.members_watch();
        tokio::time::timeout(Duration::from_secs(30), watch.wait_for(|m| m.len() == 2))
            .await
            .expect("a and b meet")
            .unwrap();

        let before = rss_kib();
        let peak = Arc::new(AtomicU64::new(before));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(rss_kib(), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        // One payload shared by every call: what grows is herd's, not the benchmark's.
        let body = Arc::new(vec![7u8; payload]);
        let started = Instant::now();
        let tasks: Vec<_> = (0..calls)
            .map(|_| {
                let a = a.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    let result = a
                        .call::<_, u64>("b", body.as_slice(), Duration::from_secs(2))
                        .await;
                    (result, started.elapsed())
                })
            })
            .collect();
        let (mut overloaded, mut timed_out, mut other, mut last) = (0, 0, 0, Duration::ZERO);
        for task in tasks {
            let (result, took) = tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("no call hangs past 30 s")
                .unwrap();
            last = last.max(took);
            match result {
                Err(Error::Overloaded { .. }) => overloaded += 1,
                Err(Error::CallTimeout { .. }) => timed_out += 1,
                _ => other += 1,
            }
        }
        sampler.abort();
        tokio::time::sleep(Duration::from_millis(200)).await;
        println!(
            "{calls} calls of {payload} B to a peer that stopped reading: {overloaded} Overloaded, {timed_out} CallTimeout, {other} other; all ended within {:.2} s | caller RSS before {:.1} MiB, peak {:.1} MiB, after {:.1} MiB (queue bound per connection {} MiB)",
            last.as_secs_f64(),
            before as f64 / 1024.0,
            peak.load(Ordering::Relaxed) as f64 / 1024.0,
            rss_kib() as f64 / 1024.0,
            herd::rpc::DEFAULT_QUEUE_LIMIT / (1024 * 1024),
        );
    });
}
