//! Membership benchmark: N nodes in one process on loopback, at herd's default settings.
//!
//!     cargo bench --bench membership                      # N = 10 and 50, 5 runs each
//!     cargo bench --bench membership -- --nodes 30 --runs 3
//!     cargo bench --bench membership -- --nodes 50 --soak 60 --load 2
//!     cargo bench --bench membership -- --encrypt         # every node keyed: sealed gossip
//!
//! Prints, per N, the median over runs of: time until every node lists all N members
//! (convergence); time from `leave()` until every peer's callback saw `Left(Graceful)`; time from
//! `shutdown()` until every peer's callback saw `Left(Failed)`; and, while idle, gossip bytes/s and
//! CPU per node. `--soak S` then runs S idle seconds (with `--load K` busy-looping processes
//! competing for the CPU) and counts false failures.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herd::{async_trait, ClusterMember, Context, LeaveReason, Member, Node};
use tokio::sync::mpsc;

#[derive(Debug)]
enum Seen {
    Left {
        observer: String,
        id: String,
        reason: LeaveReason,
        at: Instant,
    },
}

struct Probe {
    tx: mpsc::UnboundedSender<Seen>,
}

#[async_trait]
impl ClusterMember for Probe {
    async fn on_node_left(&mut self, cx: &Context, member: &Member, reason: LeaveReason) {
        let _ = self.tx.send(Seen::Left {
            observer: cx.node_id().to_string(),
            id: member.id().to_string(),
            reason,
            at: Instant::now(),
        });
    }
}

struct Args {
    nodes: Vec<usize>,
    runs: usize,
    soak: u64,
    load: usize,
    interval: Option<Duration>,
    phi: Option<f64>,
    /// One cluster key for every node (sealed gossip).
    key: Option<herd::trust::SecretKey>,
}

fn args() -> Args {
    let mut args = Args {
        nodes: vec![10, 50],
        runs: 5,
        soak: 0,
        load: 0,
        interval: None,
        phi: None,
        key: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--nodes" => {
                args.nodes = value()
                    .split(',')
                    .map(|n| n.parse().expect("--nodes N[,N]"))
                    .collect()
            }
            "--runs" => args.runs = value().parse().expect("--runs N"),
            "--soak" => args.soak = value().parse().expect("--soak SECONDS"),
            "--load" => args.load = value().parse().expect("--load PROCESSES"),
            "--interval-ms" => {
                args.interval = Some(Duration::from_millis(
                    value().parse().expect("--interval-ms MS"),
                ))
            }
            "--phi" => args.phi = Some(value().parse().expect("--phi F")),
            "--encrypt" => args.key = Some(herd::trust::SecretKey::generate()),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

struct Cluster {
    nodes: Vec<Node>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

async fn start_cluster(n: usize, cluster: &str, args: &Args) -> (Cluster, Duration) {
    let (tx, seen) = mpsc::unbounded_channel();
    let started = Instant::now();
    let mut nodes: Vec<Node> = Vec::with_capacity(n);
    for i in 0..n {
        let mut builder = Node::builder(format!("n{i:03}"))
            .listen("127.0.0.1:0".parse().unwrap())
            .cluster_id(cluster);
        if let Some(first) = nodes.first() {
            builder = builder.seed(first.addr().to_string());
        }
        if let Some(interval) = args.interval {
            builder = builder.gossip_interval(interval);
        }
        if let Some(phi) = args.phi {
            builder = builder.phi_threshold(phi);
        }
        if let Some(key) = &args.key {
            builder = builder.keyring(herd::trust::Keyring::new(key.clone()));
        }
        nodes.push(
            builder
                .start(Probe { tx: tx.clone() })
                .await
                .expect("node starts"),
        );
    }
    let deadline = started + Duration::from_secs(60);
    for node in &nodes {
        let mut watch = node.members_watch();
        tokio::time::timeout_at(deadline.into(), watch.wait_for(|m| m.len() == n))
            .await
            .expect("cluster converges within 60 s")
            .expect("node runs");
    }
    (Cluster { nodes, seen }, started.elapsed())
}

/// Waits until every node still in `cluster` has seen `gone` leave; returns the time of the last
/// callback and the reasons seen.
async fn all_saw_leave(
    cluster: &mut Cluster,
    gone: &str,
    since: Instant,
) -> (Duration, HashMap<LeaveReason, usize>) {
    let expected = cluster.nodes.len();
    let mut observers = HashMap::new();
    let mut last = since;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while observers.len() < expected {
        match tokio::time::timeout_at(deadline, cluster.seen.recv()).await {
            Ok(Some(Seen::Left {
                observer,
                id,
                reason,
                at,
            })) if id == gone => {
                last = last.max(at);
                observers.insert(observer, reason);
            }
            Ok(Some(Seen::Left {
                observer,
                id,
                reason,
                ..
            })) => {
                eprintln!("  unexpected: {observer} saw {id} leave ({reason})");
            }
            Ok(None) | Err(_) => panic!(
                "only {} of {expected} peers saw {gone} leave",
                observers.len()
            ),
        }
    }
    let mut reasons = HashMap::new();
    for reason in observers.values() {
        *reasons.entry(*reason).or_insert(0) += 1;
    }
    (last - since, reasons)
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

struct Load(Vec<Child>);

impl Load {
    fn start(processes: usize) -> Load {
        Load(
            (0..processes)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("start a busy loop")
                })
                .collect(),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn bench(n: usize, args: &Args) {
    let mut converge = Vec::new();
    let mut leave = Vec::new();
    let mut crash = Vec::new();
    let mut bytes = Vec::new();
    let mut cpu = Vec::new();
    for run in 0..args.runs {
        let (mut cluster, converged) = start_cluster(n, &format!("bench-{n}-{run}"), args).await;
        converge.push(converged.as_secs_f64());

        // Idle traffic and CPU, after a short settle.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let window = Duration::from_secs(3);
        let bytes_before: u64 = cluster
            .nodes
            .iter()
            .map(|n| n.gossip_stats().bytes_sent)
            .sum();
        let cpu_before = cpu_seconds();
        tokio::time::sleep(window).await;
        let bytes_after: u64 = cluster
            .nodes
            .iter()
            .map(|n| n.gossip_stats().bytes_sent)
            .sum();
        let cpu_after = cpu_seconds();
        bytes.push((bytes_after - bytes_before) as f64 / window.as_secs_f64() / n as f64);
        cpu.push((cpu_after - cpu_before) / window.as_secs_f64() / n as f64 * 100.0);

        let leaver = cluster.nodes.pop().unwrap();
        let t0 = Instant::now();
        let id = leaver.id().to_string();
        let leaving = tokio::spawn(async move { leaver.leave().await });
        let (took, reasons) = all_saw_leave(&mut cluster, &id, t0).await;
        leaving.await.unwrap().unwrap();
        leave.push(took.as_secs_f64());
        if reasons.get(&LeaveReason::Graceful).copied() != Some(n - 1) {
            eprintln!("  leave of {id} was seen as {reasons:?}");
        }

        let crasher = cluster.nodes.pop().unwrap();
        let id = crasher.id().to_string();
        let t0 = Instant::now();
        crasher.shutdown().await.unwrap();
        let (took, reasons) = all_saw_leave(&mut cluster, &id, t0).await;
        crash.push(took.as_secs_f64());
        if reasons.get(&LeaveReason::Failed).copied() != Some(n - 2) {
            eprintln!("  crash of {id} was seen as {reasons:?}");
        }
        eprintln!(
            "  N={n} run {run}: converge {:.3}s leave {:.3}s crash {:.3}s idle {:.0} B/s/node cpu {:.2}%/node",
            converge[run], leave[run], crash[run], bytes[run], cpu[run]
        );
        for node in &cluster.nodes {
            node.shutdown().await.unwrap();
        }
    }
    println!(
        "N={n:<3} {} runs={} | converge {:.3} s | graceful leave seen by all {:.3} s | crash seen as Failed by all {:.3} s | idle {:.1} KB/s per node sent | idle CPU {:.2}% of a core per node",
        if args.key.is_some() { "sealed" } else { "plain " },
        args.runs,
        median(&mut converge),
        median(&mut leave),
        median(&mut crash),
        median(&mut bytes) / 1000.0,
        median(&mut cpu),
    );
}

async fn soak(n: usize, args: &Args) {
    let _load = Load::start(args.load);
    let (mut cluster, _) = start_cluster(n, &format!("soak-{n}"), args).await;
    let started = Instant::now();
    let end = tokio::time::Instant::now() + Duration::from_secs(args.soak);
    let mut false_failures = 0;
    while let Ok(Some(Seen::Left {
        observer,
        id,
        reason,
        at,
    })) = tokio::time::timeout_at(end, cluster.seen.recv()).await
    {
        false_failures += 1;
        eprintln!(
            "  false {reason}: {observer} saw {id} leave at {:.1}s",
            (at - started).as_secs_f64()
        );
    }
    println!(
        "N={n:<3} soak {} s with {} busy processes: {false_failures} false failures",
        args.soak, args.load
    );
    for node in &cluster.nodes {
        node.shutdown().await.unwrap();
    }
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for &n in &args.nodes {
            if args.soak > 0 {
                soak(n, &args).await;
            } else {
                bench(n, &args).await;
            }
        }
    });
}
