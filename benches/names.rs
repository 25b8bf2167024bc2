//! Name takeover benchmark: three nodes in one process on loopback, at herd's default settings.
//!
//!     cargo bench --bench names                 # 5 runs
//!     cargo bench --bench names -- --runs 10
//!
//! Each run starts a fresh cluster a, b, c; a holds the name (a claim), b and c queue for it.
//! Prints the median and the worst over runs of: the time from `a.leave()` until b holds the
//! name (graceful leave), and from `b.shutdown()` (a crash: no goodbye) until c holds it, which
//! is the failure-detection time plus the takeover.

use std::time::{Duration, Instant};

use herd::Node;

struct Quiet;
impl herd::ClusterMember for Quiet {}

const WAIT: Duration = Duration::from_secs(30);

async fn start(id: &str, cluster: &str, seed: Option<&Node>) -> Node {
    let mut builder = Node::builder(id)
        .listen("127.0.0.1:0".parse().unwrap())
        .cluster_id(cluster);
    if let Some(seed) = seed {
        builder = builder.seed(seed.addr().to_string());
    }
    builder.start(Quiet).await.unwrap()
}

async fn wait_members(node: &Node, n: usize) {
    let mut watch = node.members_watch();
    tokio::time::timeout(WAIT, watch.wait_for(|m| m.len() == n))
        .await
        .expect("members converge")
        .unwrap();
}

async fn run(round: usize) -> (Duration, Duration) {
    let cluster = format!("names-bench-{round}-{}", std::process::id());
    let a = start("a", &cluster, None).await;
    let b = start("b", &cluster, Some(&a)).await;
    let c = start("c", &cluster, Some(&a)).await;
    for n in [&a, &b, &c] {
        wait_members(n, 3).await;
    }
    let mut held = a.claim_name("bench").await.unwrap();
    tokio::time::timeout(WAIT, held.acquired())
        .await
        .unwrap()
        .unwrap();
    // b and c queue only once they see a's claim: a claim made before seeing the owner's would
    // own the name until the two meet (the older wins), and queue behind c after.
    let deadline = Instant::now() + WAIT;
    while [&a, &b, &c]
        .iter()
        .any(|n| n.whereis("bench").map(|m| m.id().to_string()).as_deref() != Some("a"))
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut next = b.claim_name("bench").await.unwrap();
    let mut last = c.claim_name("bench").await.unwrap();
    // Every node holds every claim before the owner goes.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let leave = Instant::now();
    let leaving = tokio::spawn(async move {
        let _ = a.leave().await;
        drop(held);
    });
    if tokio::time::timeout(WAIT, next.acquired()).await.is_err() {
        panic!(
            "b never held the name after a left: b sees {:?}, c sees {:?}; b lists {:?}",
            b.whereis("bench").map(|m| m.id().to_string()),
            c.whereis("bench").map(|m| m.id().to_string()),
            b.members()
                .iter()
                .map(|m| m.id().to_string())
                .collect::<Vec<_>>()
        );
    }
    let after_leave = leave.elapsed();
    leaving.await.unwrap();
    wait_members(&c, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let crash = Instant::now();
    b.shutdown().await.unwrap();
    tokio::time::timeout(WAIT, last.acquired())
        .await
        .unwrap()
        .unwrap();
    let after_crash = crash.elapsed();
    drop(next);
    c.shutdown().await.unwrap();
    (after_leave, after_crash)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    let mut runs = 5;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--runs" {
            runs = args.next().and_then(|n| n.parse().ok()).expect("--runs N");
        }
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut leaves, mut crashes) = (Vec::new(), Vec::new());
    for round in 0..runs {
        let (leave, crash) = runtime.block_on(run(round));
        println!("run {round}: takeover after leave {leave:?}, after crash {crash:?}");
        leaves.push(leave);
        crashes.push(crash);
    }
    let worst = |v: &[Duration]| v.iter().max().copied().unwrap();
    println!(
        "name takeover, 3 nodes, {runs} runs: after a graceful leave median {:?} (worst {:?}); after a crash median {:?} (worst {:?})",
        median(leaves.clone()),
        worst(&leaves),
        median(crashes.clone()),
        worst(&crashes)
    );
}
