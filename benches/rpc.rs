//! Member-to-member call benchmark on loopback, beside a plain tokio TCP echo of the same frame
//! size measured in the same run (the floor for this design).
//!
//!     cargo bench --bench rpc
//!     cargo bench --bench rpc -- --seconds 5
//!
//! Prints p50/p99 latency of sequential calls and calls per second with 1 and 64 in flight, for
//! herd's `Node::call` on plain connections and on keyed ones (handshake, every frame sealed) (64 independent caller tasks sharing the node's one connection) and for the
//! echo (one task; with 64 in flight it writes 64 frames at once and reads their 64 echoes, the
//! best case for one connection). Both clients run as tasks on a 2-worker runtime.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd::trust::{Keyring, SecretKey};
use herd::{async_trait, ClusterMember, Context, Node, Reply, Request};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

#[derive(Serialize, Deserialize)]
struct Ping(u64);
#[derive(Serialize, Deserialize)]
struct Pong(u64);

struct Server;

#[async_trait]
impl ClusterMember for Server {
    async fn handle_call(&mut self, _cx: &Context, request: Request) -> Reply {
        match request.decode::<Ping>() {
            Ok(Ping(n)) => Reply::ok(&Pong(n)),
            Err(err) => Reply::error(err),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Result {
    p50: Duration,
    p99: Duration,
    rate_1: f64,
    rate_64: f64,
}

fn print(name: &str, r: &Result) {
    println!(
        "{name:<12} sequential p50 {:>6.1} µs  p99 {:>6.1} µs  {:>8.0} calls/s | 64 in flight {:>8.0} calls/s",
        r.p50.as_secs_f64() * 1e6,
        r.p99.as_secs_f64() * 1e6,
        r.rate_1,
        r.rate_64
    );
}

/// Times `call` back to back for `seconds`, after a warm-up; returns sorted latencies and the rate.
async fn sequential<F, Fut>(seconds: f64, mut call: F) -> (Vec<Duration>, f64)
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for n in 0..1000 {
        call(n).await; // warm up
    }
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        call(n).await;
        latencies.push(t.elapsed());
        n += 1;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    (latencies, rate)
}

async fn herd(seconds: f64, key: Option<SecretKey>) -> Result {
    let builder = |id: &str| {
        let builder = Node::builder(id)
            .listen("127.0.0.1:0".parse().unwrap())
            .cluster_id("bench-rpc");
        match &key {
            Some(key) => builder.keyring(Keyring::new(key.clone())),
            None => builder,
        }
    };
    let server = builder("server").start(Server).await.unwrap();
    let client = builder("client")
        .seed(server.addr().to_string())
        .start(Server)
        .await
        .unwrap();
    let mut watch = client.members_watch();
    tokio::time::timeout(Duration::from_secs(30), watch.wait_for(|m| m.len() == 2))
        .await
        .expect("the two nodes meet")
        .unwrap();
    let timeout = Duration::from_secs(5);
    let (latencies, rate_1) = sequential(seconds, |n| {
        let client = &client;
        async move {
            let Pong(m) = client.call("server", &Ping(n), timeout).await.unwrap();
            assert_eq!(m, n);
        }
    })
    .await;
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let callers = (0..64).map(|_| {
        let client = client.clone();
        let done = done.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                let _: Pong = client.call("server", &Ping(1), timeout).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    });
    futures::future::join_all(callers).await;
    let rate_64 = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
    Result {
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        rate_1,
        rate_64,
    }
}

/// A plain length-prefixed echo over tokio TCP, with frames as large as herd's call frames.
async fn echo(seconds: f64, frame: usize) -> Result {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let (read, write) = stream.into_split();
                let mut read = BufReader::new(read);
                let mut write = BufWriter::new(write);
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let Ok(len) = read.read_u32().await else {
                        return;
                    };
                    let len = len as usize;
                    if read.read_exact(&mut buf[..len]).await.is_err() {
                        return;
                    }
                    let _ = write.write_u32(len as u32).await;
                    let _ = write.write_all(&buf[..len]).await;
                    // Flush when no more requests are already here: one write per batch.
                    if read.buffer().is_empty() && write.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let body = vec![7u8; frame];
    let mut request = Vec::new();
    request.extend_from_slice(&(frame as u32).to_be_bytes());
    request.extend_from_slice(&body);

    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut reply = vec![0u8; frame];

    // Sequential: one task owns the connection; write a frame, read the echo.
    for _ in 0..1000 {
        write.write_all(&request).await.unwrap();
        let len = read.read_u32().await.unwrap() as usize;
        read.read_exact(&mut reply[..len]).await.unwrap();
    }
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        write.write_all(&request).await.unwrap();
        let len = read.read_u32().await.unwrap() as usize;
        read.read_exact(&mut reply[..len]).await.unwrap();
        latencies.push(t.elapsed());
    }
    let rate_1 = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort();

    // 64 in flight: 64 frames go out in one write, their 64 echoes come back, and again: the
    // best case for one connection.
    let batch: Vec<u8> = request.repeat(64);
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        write.write_all(&batch).await.unwrap();
        for _ in 0..64 {
            let len = read.read_u32().await.unwrap() as usize;
            read.read_exact(&mut reply[..len]).await.unwrap();
        }
        done += 64;
    }
    let rate_64 = done as f64 / started.elapsed().as_secs_f64();
    Result {
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        rate_1,
        rate_64,
    }
}

fn main() {
    let mut seconds = 3.0;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--seconds" => seconds = args.next().unwrap().parse().unwrap(),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    // A plain call frame: kind, id, then the encoded Ping (a sealed one adds a 16-byte tag).
    let frame = 1 + 8 + bincode::serialized_size(&Ping(1)).unwrap() as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Both clients run as tasks on the runtime's workers, like any caller in a server.
        let echo = tokio::spawn(echo(seconds, frame)).await.unwrap();
        let herd_plain = tokio::spawn(herd(seconds, None)).await.unwrap();
        let sealed = tokio::spawn(herd(seconds, Some(SecretKey::generate())))
            .await
            .unwrap();
        println!("frame size {frame} bytes, {seconds} s per measurement, 2-core machine");
        print("tokio echo", &echo);
        print("herd plain", &herd_plain);
        print("herd sealed", &sealed);
        for (name, herd) in [("plain", &herd_plain), ("sealed", &sealed)] {
            println!(
                "herd {name}/echo: p50 {:.2}x, 64-in-flight throughput {:.0}% of the echo",
                herd.p50.as_secs_f64() / echo.p50.as_secs_f64(),
                herd.rate_64 / echo.rate_64 * 100.0
            );
        }
    });
}
