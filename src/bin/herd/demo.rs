//! `herd demo`: a cluster of a few nodes inside this process, on free loopback ports, with every
//! callback printed as a timeline: members join, one changes a tag, one leaves gracefully, one
//! crashes and is detected as failed.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use herd::{async_trait, ClusterMember, Context, LeaveReason, Member, Node};
use tokio::sync::mpsc;

/// Options of `herd demo`.
#[derive(clap::Args)]
pub struct Args {
    /// How many nodes to start (at least 3).
    #[arg(long, default_value_t = 4)]
    nodes: usize,
}

/// What a callback heard, for the demo to wait on.
#[derive(Debug, PartialEq)]
enum Heard {
    Welcome(usize),
    Joined(String),
    Updated(String),
    Left(String, LeaveReason),
}

/// Prints each callback with the time since the demo started, and reports it to the demo.
struct Timeline {
    start: Instant,
    heard: mpsc::UnboundedSender<Heard>,
}

impl Timeline {
    fn say(&self, cx: &Context, what: String, heard: Heard) {
        let t = self.start.elapsed().as_secs_f64();
        outln!("  [{t:6.3}s] {:<4} {what}", cx.node_id());
        let _ = self.heard.send(heard);
    }
}

fn describe(member: &Member) -> String {
    let tags: Vec<String> = member
        .tags()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{} ({})", member.id(), tags.join(", "))
}

#[async_trait]
impl ClusterMember for Timeline {
    async fn on_join(&mut self, cx: &Context, members: &[Member]) {
        let ids: Vec<&str> = members.iter().map(Member::id).collect();
        let what = format!("joined the cluster; members: {}", ids.join(", "));
        self.say(cx, what, Heard::Welcome(members.len() - 1));
    }
    async fn on_node_joined(&mut self, cx: &Context, member: &Member) {
        let what = format!("sees {} join", describe(member));
        self.say(cx, what, Heard::Joined(member.id().into()));
    }
    async fn on_node_left(&mut self, cx: &Context, member: &Member, reason: LeaveReason) {
        let how = match reason {
            LeaveReason::Graceful => "leave gracefully",
            LeaveReason::Failed => "FAIL (the failure detector noticed)",
            LeaveReason::Restarted => "restart",
            _ => "leave",
        };
        let what = format!("sees {} {how}", member.id());
        self.say(cx, what, Heard::Left(member.id().into(), reason));
    }
    async fn on_member_updated(&mut self, cx: &Context, member: &Member) {
        let what = format!("sees {} update its tags", describe(member));
        self.say(cx, what, Heard::Updated(member.id().into()));
    }
}

/// Waits until `count` callbacks matching `want` were heard, within 30 s.
async fn hear(
    heard: &mut mpsc::UnboundedReceiver<Heard>,
    count: usize,
    want: impl Fn(&Heard) -> bool,
) -> anyhow::Result<()> {
    hear_weighted(heard, count, |h| usize::from(want(h))).await
}

/// Waits until the callbacks heard add up to `count`, each weighing `weight(callback)`.
async fn hear_weighted(
    heard: &mut mpsc::UnboundedReceiver<Heard>,
    count: usize,
    weight: impl Fn(&Heard) -> usize,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    while seen < count {
        match tokio::time::timeout_at(deadline, heard.recv()).await {
            Ok(Some(h)) => seen += weight(&h),
            Ok(None) => bail!("the members stopped"),
            Err(_) => bail!("only {seen} of {count} expected callbacks came within 30 s"),
        }
    }
    Ok(())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let n = args.nodes;
    if !(3..=26).contains(&n) {
        bail!("--nodes must be from 3 to 26 (one leaves, one crashes), not {n}");
    }
    let start = Instant::now();
    let (tx, mut heard) = mpsc::unbounded_channel();
    let names: Vec<String> = (0..n)
        .map(|i| ((b'a' + i as u8) as char).to_string())
        .collect();
    outln!("herd demo: {n} nodes on 127.0.0.1 (free ports), default gossip settings\n");

    outln!(
        "== {} founds the cluster; the others join with it as their seed",
        names[0]
    );
    let mut nodes: Vec<Node> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut builder = Node::builder(name.as_str())
            .listen("127.0.0.1:0".parse()?)
            .cluster_id("demo")
            .tag("role", if i == 0 { "seed" } else { "worker" });
        if let Some(seed) = nodes.first() {
            builder = builder.seed(seed.addr().to_string());
        }
        let timeline = Timeline {
            start,
            heard: tx.clone(),
        };
        let node = builder.start(timeline).await?;
        let t = start.elapsed().as_secs_f64();
        outln!("  [{t:6.3}s] {name:<4} started on {}", node.addr());
        nodes.push(node);
    }
    // Each node hears of each other one: by its welcome (the founder's is empty) or a join.
    hear_weighted(&mut heard, n * (n - 1), |h| match h {
        Heard::Welcome(peers) => *peers,
        Heard::Joined(_) => 1,
        _ => 0,
    })
    .await?;
    outln!("  every node sees all {n} members\n");

    let tagged = nodes[1].clone();
    outln!("== {} sets the tag load=0.3", tagged.id());
    tagged.set_tag("load", "0.3").await?;
    hear(
        &mut heard,
        n - 1,
        |h| matches!(h, Heard::Updated(id) if id == tagged.id()),
    )
    .await?;
    outln!();

    let crasher = nodes.pop().context("a node to crash")?;
    let leaver = nodes.pop().context("a node to leave")?;
    outln!("== {} leaves gracefully", leaver.id());
    let t = Instant::now();
    let id = leaver.id().to_string();
    let leaving = tokio::spawn(async move { leaver.leave().await });
    hear(&mut heard, n - 1, |h| {
        *h == Heard::Left(id.clone(), LeaveReason::Graceful)
    })
    .await?;
    outln!(
        "  all {} peers heard it within {:.3}s\n",
        n - 1,
        t.elapsed().as_secs_f64()
    );
    leaving.await??;

    outln!("== {} crashes (stops without a goodbye)", crasher.id());
    let t = Instant::now();
    let id = crasher.id().to_string();
    crasher.shutdown().await?;
    hear(&mut heard, n - 2, |h| {
        *h == Heard::Left(id.clone(), LeaveReason::Failed)
    })
    .await?;
    outln!(
        "  all {} peers detected it within {:.3}s\n",
        n - 2,
        t.elapsed().as_secs_f64()
    );

    outln!("== the rest leave, one by one");
    while let Some(node) = nodes.pop() {
        let id = node.id().to_string();
        node.leave().await?;
        hear(&mut heard, nodes.len(), |h| {
            *h == Heard::Left(id.clone(), LeaveReason::Graceful)
        })
        .await?;
    }
    outln!("\ndone in {:.3}s", start.elapsed().as_secs_f64());
    Ok(())
}
