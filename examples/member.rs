//! The "three terminals" walkthrough: each process is one cluster member that prints joins and
//! leaves as they happen. Ctrl-C (SIGINT) or SIGTERM leaves gracefully, and the others print it.
//!
//!     cargo run --example member -- --id a --listen 127.0.0.1:7001
//!     cargo run --example member -- --id b --listen 127.0.0.1:7002 --seed 127.0.0.1:7001
//!     cargo run --example member -- --id c --listen 127.0.0.1:7003 --seed 127.0.0.1:7001
//!
//! Kill one with `kill -9` instead, and the others print it as failed a few seconds later.

use clap::Parser;
use herd::{async_trait, ClusterMember, Context, LeaveReason, Member};

#[path = "support/cli.rs"]
mod cli;

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
    let args = cli::Args::parse();
    let node = args.builder().start(Printer).await?;
    cli::leave_on_signal(node).await
}
