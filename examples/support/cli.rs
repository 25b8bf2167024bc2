//! What the member examples share: the command line of one cluster member, and the graceful
//! leave on SIGTERM or SIGINT (Ctrl-C). Included by each example with `#[path]`; not an example
//! itself.

use std::net::SocketAddr;

use clap::Parser;
use herd::{Node, NodeBuilder};
use tokio::signal::unix::{signal, SignalKind};

/// One herd cluster member (the example's source says what it does).
#[derive(Parser)]
pub struct Args {
    /// This member's id, unique in the cluster.
    #[arg(long)]
    pub id: String,
    /// The UDP address to gossip on (port 0 picks a free one; the first line printed says which).
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub listen: SocketAddr,
    /// Any member's address; omit it to found the cluster.
    #[arg(long)]
    pub seed: Vec<String>,
    /// Tags for this member, as KEY=VALUE.
    #[arg(long, value_parser = parse_tag)]
    pub tag: Vec<(String, String)>,
}

fn parse_tag(tag: &str) -> Result<(String, String), String> {
    tag.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {tag:?}"))
}

impl Args {
    /// A node builder with these flags applied.
    pub fn builder(self) -> NodeBuilder {
        let mut builder = Node::builder(self.id).listen(self.listen).seeds(self.seed);
        for (key, value) in self.tag {
            builder = builder.tag(key, value);
        }
        builder
    }
}

/// Waits for SIGTERM or SIGINT, then leaves the cluster gracefully, saying so. Prints the gossip
/// address first ("gossiping on ADDR; ..."), once the signals are caught.
pub async fn leave_on_signal(node: Node) -> Result<(), Box<dyn std::error::Error>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    println!("gossiping on {}; Ctrl-C or SIGTERM to leave", node.addr());
    let name = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    println!("{name}: leaving the cluster gracefully");
    node.leave().await?;
    println!("left the cluster");
    Ok(())
}
