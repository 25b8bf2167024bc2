//! The "three terminals" walkthrough: each process is one cluster member that prints joins and
//! leaves as they happen. Ctrl-C leaves gracefully, and the others print it.
//!
//!     cargo run --example member -- --id a --listen 127.0.0.1:7001
//!     cargo run --example member -- --id b --listen 127.0.0.1:7002 --seed 127.0.0.1:7001
//!     cargo run --example member -- --id c --listen 127.0.0.1:7003 --seed 127.0.0.1:7001
//!
//! Kill one with `kill -9` instead, and the others print it as failed a few seconds later.

use std::net::SocketAddr;

use clap::Parser;
use herd::{async_trait, ClusterMember, Context, LeaveReason, Member, Node};

#[derive(Parser)]
struct Args {
    /// This member's id, unique in the cluster.
    #[arg(long)]
    id: String,
    /// The UDP address to gossip on.
    #[arg(long, default_value = "127.0.0.1:7001")]
    listen: SocketAddr,
    /// Any member's address; omit it to found the cluster.
    #[arg(long)]
    seed: Vec<String>,
    /// Tags for this member, as KEY=VALUE.
    #[arg(long, value_parser = parse_tag)]
    tag: Vec<(String, String)>,
}

fn parse_tag(tag: &str) -> Result<(String, String), String> {
    tag.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {tag:?}"))
}

struct Printer;

#[async_trait]
impl ClusterMember for Printer {
    async fn on_join(&mut self, cx: &Context, members: &[Member]) {
        let ids: Vec<&str> = members.iter().map(Member::id).collect();
        println!("{} joined the cluster: {}", cx.node_id(), ids.join(", "));
    }
    async fn on_node_joined(&mut self, _cx: &Context, member: &Member) {
        println!(
            "+ {} joined from {} {:?}",
            member.id(),
            member.addr(),
            member.tags()
        );
    }
    async fn on_node_left(&mut self, _cx: &Context, member: &Member, reason: LeaveReason) {
        println!("- {} left ({reason})", member.id());
    }
    async fn on_member_updated(&mut self, _cx: &Context, member: &Member) {
        println!("~ {} now has tags {:?}", member.id(), member.tags());
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut builder = Node::builder(args.id).listen(args.listen).seeds(args.seed);
    for (key, value) in args.tag {
        builder = builder.tag(key, value);
    }
    let node = builder.start(Printer).await?;
    println!("gossiping on {}; Ctrl-C to leave", node.addr());
    tokio::signal::ctrl_c().await?;
    println!("leaving...");
    node.leave().await?;
    Ok(())
}
