//! Member-API benchmark: what a member notices while a call to a frozen peer is in flight, and
//! how long `leave()` takes when a callback hangs.
//!
//!     cargo bench --bench member_api                 # 5 runs each
//!     cargo bench --bench member_api -- --runs 9
//!
//! 1. Frozen peer: a real `herd agent` process P is stopped (SIGSTOP). In-process member A starts
//!    a call to P from a callback (on a cast from C); 50 ms later C leaves gracefully. Printed:
//!    the median time from `C.leave()` to A's `on_node_left(C)`, when A's callback used
//!    `cx.call_later` (it returned at once) and when it awaited `cx.call` (A's callbacks wait for
//!    the call, which ends only when P is declared failed and its connection is closed, or at the
//!    call's 10 s timeout). P is resumed and re-frozen before each run.
//! 2. Hung callback: a node whose `on_node_joined` never returns, shutdown timeout 1 s; the
//!    median time `leave()` takes, beside the bound (2 gossip intervals + the shutdown timeout).

use std::time::{Duration, Instant};

use herd::{async_trait, ClusterMember, Context, LeaveReason, Member, Node, Request};
use tokio::sync::mpsc;

#[path = "../tests/support/agent.rs"]
mod agent;

const CLUSTER: &str = "bench-member-api";

/// The agent that is frozen and resumed.
struct Frozen(agent::AgentProc);

impl Frozen {
    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.0.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the agent");
    }
}

/// A: on a cast from anyone, calls `p` (without waiting, or waiting); reports leaves.
struct Caller {
    later: bool,
    left: mpsc::UnboundedSender<(String, Instant)>,
}

#[async_trait]
impl ClusterMember for Caller {
    async fn handle_cast(&mut self, cx: &Context, _request: Request) {
        let timeout = Duration::from_secs(10);
        if self.later {
            cx.call_later("p", &1u32, timeout).expect("call_later");
        } else {
            let _ = cx.call::<_, u32>("p", &1u32, timeout).await;
        }
    }
    async fn on_node_left(&mut self, _cx: &Context, member: &Member, _reason: LeaveReason) {
        let _ = self.left.send((member.id().to_string(), Instant::now()));
    }
}

struct Quiet;

#[async_trait]
impl ClusterMember for Quiet {}

async fn wait_for(what: &str, node: &Node, cond: impl Fn(&[Member]) -> bool) {
    let mut watch = node.members_watch();
    tokio::time::timeout(Duration::from_secs(30), watch.wait_for(|m| cond(m)))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap();
}

async fn frozen_peer(runs: usize, later: bool) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let p = Frozen(agent::Spec::new("p", dir.path(), CLUSTER).start());
    let (left_tx, mut left_rx) = mpsc::unbounded_channel();
    let a = Node::builder("a")
        .listen("127.0.0.1:0".parse().unwrap())
        .cluster_id(CLUSTER)
        .seed(p.0.gossip.to_string())
        .start(Caller {
            later,
            left: left_tx,
        })
        .await
        .unwrap();
    let mut took = Vec::new();
    for run in 0..runs {
        p.signal(nix::sys::signal::Signal::SIGCONT);
        wait_for("p live", &a, |m| m.iter().any(|m| m.id() == "p")).await;
        let c_id = format!("c{run}");
        let c = Node::builder(c_id.clone())
            .listen("127.0.0.1:0".parse().unwrap())
            .cluster_id(CLUSTER)
            .seed(a.addr().to_string())
            .start(Quiet)
            .await
            .unwrap();
        wait_for("c joined", &a, |m| m.iter().any(|m| m.id() == c_id)).await;
        wait_for("a seen by c", &c, |m| m.iter().any(|m| m.id() == "a")).await;
        p.signal(nix::sys::signal::Signal::SIGSTOP);
        c.cast("a", &0u8).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        c.leave().await.unwrap();
        let seen = loop {
            let (id, at) = tokio::time::timeout(Duration::from_secs(30), left_rx.recv())
                .await
                .expect("a saw c leave")
                .unwrap();
            if id == c_id {
                break at;
            }
        };
        took.push(seen.saturating_duration_since(started));
    }
    p.signal(nix::sys::signal::Signal::SIGCONT);
    a.shutdown().await.unwrap();
    took
}

struct Hang;

#[async_trait]
impl ClusterMember for Hang {
    async fn on_node_joined(&mut self, _cx: &Context, _member: &Member) {
        std::future::pending::<()>().await;
    }
}

async fn hung_leave(runs: usize, grace: Duration) -> Vec<Duration> {
    let mut took = Vec::new();
    for run in 0..runs {
        let cluster = format!("{CLUSTER}-hang-{run}");
        let h = Node::builder("h")
            .listen("127.0.0.1:0".parse().unwrap())
            .cluster_id(cluster.clone())
            .shutdown_timeout(grace)
            .start(Hang)
            .await
            .unwrap();
        let other = Node::builder("o")
            .listen("127.0.0.1:0".parse().unwrap())
            .cluster_id(cluster)
            .seed(h.addr().to_string())
            .start(Quiet)
            .await
            .unwrap();
        wait_for("o joined", &h, |m| m.len() == 2).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let _ = h.leave().await;
        took.push(started.elapsed());
        other.shutdown().await.unwrap();
    }
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    println!("member API, {runs} runs each (medians)");
    let later = frozen_peer(runs, true).await;
    let blocking = frozen_peer(runs, false).await;
    println!(
        "  call to a frozen peer in flight: another member's graceful leave seen after {:.1} ms with call_later (runs: {:?}), {:.0} ms with an awaited call",
        median(later.clone()).as_secs_f64() * 1e3,
        later.iter().map(|d| format!("{:.1}", d.as_secs_f64() * 1e3)).collect::<Vec<_>>(),
        median(blocking).as_secs_f64() * 1e3,
    );
    let grace = Duration::from_secs(1);
    let hung = hung_leave(runs, grace).await;
    let bound = herd::node::DEFAULT_GOSSIP_INTERVAL * 2 + grace;
    println!(
        "  leave() with a hung callback (shutdown timeout {grace:?}): {:.3} s; bound (2 gossip intervals + the timeout) {:.3} s",
        median(hung).as_secs_f64(),
        bound.as_secs_f64()
    );
}
