//! A leader and its followers, one process per terminal: the leader is the live member with the
//! smallest id; every other member calls it once a second and prints the answer (how many calls
//! the leader has answered, and who it is). When the leader leaves or fails, the others print it
//! and follow the next one.
//!
//!     cargo run --example leader -- --id a --listen 127.0.0.1:7001
//!     cargo run --example leader -- --id b --listen 127.0.0.1:7002 --seed 127.0.0.1:7001
//!     cargo run --example leader -- --id c --listen 127.0.0.1:7003 --seed 127.0.0.1:7001
//!
//! Ctrl-C (or `kill PID`) in a's terminal: a leaves gracefully, b and c print it at once and b
//! leads. `kill -STOP` b: c's calls to it end in timeouts (c prints how each call ended) while c
//! goes on handling membership news, and within a couple of seconds c prints b as failed and
//! leads itself (`kill -9` is seen the same way).
//!
//! A follower never waits for the leader inside a callback: the tick is a message it sends itself
//! ([`Context::send_after`]), and the call is made with [`Context::call_later`], whose outcome
//! arrives later in `handle_info`. So a frozen leader costs a follower nothing but a timeout.

use std::collections::BTreeSet;
use std::time::Duration;

use clap::Parser;
use herd::{
    async_trait, CallId, ClusterMember, Context, Info, LeaveReason, Member, Reply, Request,
};
use serde::{Deserialize, Serialize};

#[path = "support/cli.rs"]
mod cli;

/// How often a follower calls the leader.
const TICK: Duration = Duration::from_secs(1);
/// How long a follower waits for the leader's answer: less than a tick, so calls never pile up,
/// and less than failure detection takes, so a frozen leader shows as timeouts first.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// A follower's call: its own count of the calls it made.
#[derive(Serialize, Deserialize)]
struct Ask {
    seq: u64,
}

/// The leader's answer.
#[derive(Serialize, Deserialize)]
struct Answer {
    leader: String,
    answered: u64,
}

/// The message a member sends itself once a second.
struct Tick;

#[derive(Default)]
struct Elector {
    /// The live members' ids, this one's included, as the callbacks reported them.
    live: BTreeSet<String>,
    leader: Option<String>,
    /// Calls this member answered as leader.
    answered: u64,
    /// Calls this member made as follower.
    asked: u64,
    /// The call waiting for an answer, if any.
    pending: Option<CallId>,
}

impl Elector {
    /// Re-elects from the live set; prints when the leader changes.
    fn elect(&mut self, cx: &Context) {
        let leader = self.live.first().cloned();
        if leader == self.leader {
            return;
        }
        let was = self.leader.as_deref().unwrap_or("none");
        match leader.as_deref() {
            Some(id) if id == cx.node_id() => println!("leader is now {id} (was {was}): me"),
            Some(id) => println!("leader is now {id} (was {was})"),
            None => println!("no leader (was {was})"),
        }
        self.leader = leader;
    }

    /// Calls the leader, unless this member leads or still waits for an answer.
    fn ask_leader(&mut self, cx: &Context) {
        let Some(leader) = self.leader.clone() else {
            return;
        };
        if leader == cx.node_id() || self.pending.is_some() {
            return;
        }
        self.asked += 1;
        match cx.call_later(&leader, &Ask { seq: self.asked }, CALL_TIMEOUT) {
            Ok(id) => self.pending = Some(id),
            Err(err) => println!("could not call {leader}: {err}"),
        }
    }
}

#[async_trait]
impl ClusterMember for Elector {
    async fn on_join(&mut self, cx: &Context, members: &[Member]) {
        self.live = members.iter().map(|m| m.id().to_string()).collect();
        let ids: Vec<&str> = self.live.iter().map(String::as_str).collect();
        println!("{} joined the cluster: {}", cx.node_id(), ids.join(", "));
        self.elect(cx);
        if let Err(err) = cx.send_after(TICK, Tick) {
            println!("could not start the tick: {err}");
        }
    }

    async fn on_node_joined(&mut self, cx: &Context, member: &Member) {
        println!("+ {} joined", member.id());
        self.live.insert(member.id().to_string());
        self.elect(cx);
    }

    async fn on_node_left(&mut self, cx: &Context, member: &Member, reason: LeaveReason) {
        println!("- {} left ({reason})", member.id());
        self.live.remove(member.id());
        self.elect(cx);
    }

    async fn handle_call(&mut self, cx: &Context, request: Request) -> Reply {
        let me = cx.node_id();
        if self.leader.as_deref() != Some(me) {
            let leader = self.leader.as_deref().unwrap_or("none");
            return Reply::error(format!("{me} does not lead; {leader} does"));
        }
        match request.decode::<Ask>() {
            Ok(ask) => {
                self.answered += 1;
                println!(
                    "answered {}'s call {} ({} answered)",
                    request.from(),
                    ask.seq,
                    self.answered
                );
                Reply::ok(&Answer {
                    leader: me.to_string(),
                    answered: self.answered,
                })
            }
            Err(err) => Reply::error(err),
        }
    }

    async fn handle_info(&mut self, cx: &Context, info: Info) {
        match info {
            Info::Message(message) if message.is::<Tick>() => {
                self.ask_leader(cx);
                if let Err(err) = cx.send_after(TICK, Tick) {
                    println!("could not set the next tick: {err}");
                }
            }
            Info::Reply(reply) => {
                if self.pending == Some(reply.id()) {
                    self.pending = None;
                }
                let from = reply.member().to_string();
                match reply.decode::<Answer>() {
                    Ok(answer) => println!(
                        "reply from {from}: leader {}, calls answered: {}",
                        answer.leader, answer.answered
                    ),
                    Err(err) => println!("no reply from {from}: {err}"),
                }
            }
            _ => {}
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = cli::Args::parse();
    let node = args.builder().start(Elector::default()).await?;
    cli::leave_on_signal(node).await
}
