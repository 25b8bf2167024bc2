//! Shared by the membership tests: a [`ClusterMember`] that records every callback, and waits
//! with bounded timeouts.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use herd::{async_trait, ClusterMember, Context, LeaveReason, Member, Node};
use tokio::sync::mpsc;

/// Generous: the test machine is small, shared and noisy.
pub const WAIT: Duration = Duration::from_secs(20);

/// One callback, as a member saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    Join(Vec<String>),
    Joined(String, u64),
    Left(String, u64, LeaveReason),
    Updated(String, BTreeMap<String, String>),
    /// `on_name_owner_changed`: the name and its new owner's id.
    Name(String, Option<String>),
}

/// A member that reports each callback on a channel; it panics in `on_node_joined` for ids in
/// `panic_on_join`.
pub struct Recorder {
    tx: mpsc::UnboundedSender<Seen>,
    panic_on_join: Vec<String>,
}

#[async_trait]
impl ClusterMember for Recorder {
    async fn on_join(&mut self, _cx: &Context, members: &[Member]) {
        let _ = self.tx.send(Seen::Join(
            members.iter().map(|m| m.id().to_string()).collect(),
        ));
    }
    async fn on_node_joined(&mut self, _cx: &Context, member: &Member) {
        if self.panic_on_join.iter().any(|id| id == member.id()) {
            panic!("recorder told to panic on {}", member.id());
        }
        let _ = self
            .tx
            .send(Seen::Joined(member.id().into(), member.generation()));
    }
    async fn on_node_left(&mut self, _cx: &Context, member: &Member, reason: LeaveReason) {
        let _ = self
            .tx
            .send(Seen::Left(member.id().into(), member.generation(), reason));
    }
    async fn on_member_updated(&mut self, _cx: &Context, member: &Member) {
        let _ = self
            .tx
            .send(Seen::Updated(member.id().into(), member.tags().clone()));
    }
    async fn on_name_owner_changed(&mut self, _cx: &Context, name: &str, owner: Option<&Member>) {
        let _ = self.tx.send(Seen::Name(
            name.to_string(),
            owner.map(|m| m.id().to_string()),
        ));
    }
}

/// The receiving end of a [`Recorder`]: everything seen so far, in order.
pub struct Probe {
    rx: mpsc::UnboundedReceiver<Seen>,
    pub log: Vec<Seen>,
}

impl Probe {
    /// Waits until a callback matching `pred` has been seen (now or before), within [`WAIT`].
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        if let Some(seen) = self.log.iter().find(|s| pred(s)) {
            return seen.clone();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(seen)) => {
                    self.log.push(seen.clone());
                    if pred(&seen) {
                        return seen;
                    }
                }
                Ok(None) => panic!("member stopped before {what}; saw {:?}", self.log),
                Err(_) => panic!("timed out waiting for {what}; saw {:?}", self.log),
            }
        }
    }

    /// Everything seen so far, including callbacks no wait has read yet.
    pub fn seen(&mut self) -> &[Seen] {
        while let Ok(seen) = self.rx.try_recv() {
            self.log.push(seen);
        }
        &self.log
    }

    /// Waits for `on_join`, returning the member ids it was given.
    pub async fn joined_cluster(&mut self) -> Vec<String> {
        match self
            .wait_for("on_join", |s| matches!(s, Seen::Join(_)))
            .await
        {
            Seen::Join(ids) => ids,
            _ => unreachable!(),
        }
    }

    /// Waits for `on_node_left` about `id`, returning the reason.
    pub async fn left(&mut self, id: &str) -> LeaveReason {
        match self
            .wait_for(
                &format!("{id} to leave"),
                |s| matches!(s, Seen::Left(i, _, _) if i == id),
            )
            .await
        {
            Seen::Left(_, _, reason) => reason,
            _ => unreachable!(),
        }
    }

    /// Waits for `on_node_joined` about `id`.
    pub async fn saw_join_of(&mut self, id: &str) {
        self.wait_for(
            &format!("{id} to join"),
            |s| matches!(s, Seen::Joined(i, _) if i == id),
        )
        .await;
    }
}

pub fn recorder() -> (Recorder, Probe) {
    recorder_panicking_on(&[])
}

pub fn recorder_panicking_on(ids: &[&str]) -> (Recorder, Probe) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Recorder {
            tx,
            panic_on_join: ids.iter().map(|s| s.to_string()).collect(),
        },
        Probe {
            rx,
            log: Vec::new(),
        },
    )
}

/// A builder for a loopback node with a free port, in cluster `cluster`.
pub fn node(id: &str, cluster: &str) -> herd::NodeBuilder {
    Node::builder(id)
        .listen("127.0.0.1:0".parse().unwrap())
        .cluster_id(cluster)
}

/// Waits until `node` lists exactly the members `ids` (sorted).
pub async fn wait_members(node: &Node, ids: &[&str]) {
    let mut watch = node.members_watch();
    let want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let result = tokio::time::timeout(
        WAIT,
        watch.wait_for(|members| {
            members
                .iter()
                .map(|m| m.id().to_string())
                .collect::<Vec<_>>()
                == want
        }),
    )
    .await;
    if result.is_err() {
        panic!(
            "{} never listed {:?}; it lists {:?}",
            node.id(),
            want,
            node.members()
                .iter()
                .map(|m| m.id().to_string())
                .collect::<Vec<_>>()
        );
    }
}

/// A loopback port that was free for UDP and TCP a moment ago.
pub fn free_port() -> u16 {
    // A node binds the port twice (UDP gossip, TCP messages): pick one free for both.
    for _ in 0..100 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP in 100 tries");
}
