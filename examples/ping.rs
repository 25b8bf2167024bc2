//! Members calling each other with their own types: two nodes in one process on loopback; `a`
//! calls `b`, casts to it, and calls every member at once.
//!
//!     cargo run --example ping

use std::time::Duration;

use herd::{async_trait, ClusterMember, Context, Node, Reply, Request};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Ping {
    n: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Pong {
    n: u32,
    by: String,
}

#[derive(Serialize, Deserialize)]
struct Note {
    text: String,
}

struct Ponger;

#[async_trait]
impl ClusterMember for Ponger {
    async fn handle_call(&mut self, cx: &Context, request: Request) -> Reply {
        match request.decode::<Ping>() {
            Ok(ping) => Reply::ok(&Pong {
                n: ping.n,
                by: cx.node_id().to_string(),
            }),
            Err(err) => Reply::error(err),
        }
    }

    async fn handle_cast(&mut self, cx: &Context, request: Request) {
        if let Ok(note) = request.decode::<Note>() {
            println!(
                "{} got a note from {}: {}",
                cx.node_id(),
                request.from(),
                note.text
            );
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Node::builder("a")
        .listen("127.0.0.1:0".parse()?)
        .cluster_id("ping")
        .start(Ponger)
        .await?;
    let b = Node::builder("b")
        .listen("127.0.0.1:0".parse()?)
        .cluster_id("ping")
        .seed(a.addr().to_string())
        .start(Ponger)
        .await?;
    let mut members = a.members_watch();
    tokio::time::timeout(Duration::from_secs(10), members.wait_for(|m| m.len() == 2)).await??;

    let pong: Pong = a.call("b", &Ping { n: 1 }, Duration::from_secs(1)).await?;
    println!("a called b: {pong:?}");
    a.cast("b", &Note { text: "hi".into() }).await?;
    let replies: Vec<(String, Result<Pong, herd::Error>)> =
        a.multi_call(&Ping { n: 2 }, Duration::from_secs(1)).await;
    for (id, reply) in replies {
        println!("multi_call: {id} answered {:?}", reply?);
    }
    b.leave().await?;
    a.leave().await?;
    Ok(())
}
