//! The agent's event stream: what happened on and around this node, in the order this node saw
//! it, each numbered (`seq`, from 1 per agent run) so a reader can resume.
//!
//! | `event` | when | fields |
//! |---|---|---|
//! | `member-join` | a member joined (as this node sees it) | `member`, `addr`, `tags` |
//! | `member-leave` | a member left gracefully, or a new incarnation took its place | `member`, `addr`, `tags`, `reason` (`graceful`, `restarted`) |
//! | `member-failed` | the failure detector declared a member dead | `member`, `addr`, `tags`, `reason` (`failed`) |
//! | `member-update` | a member's tags changed | `member`, `addr`, `tags` |
//! | `worker-started` | a process was spawned for a worker of this node | `worker`, `pid` |
//! | `worker-ready` | its readiness check passed | `worker`, `pid` |
//! | `worker-exited` | its process ended | `worker`, `pid`, `exit` |
//! | `worker-restarting` | the supervisor restarts it by its policy | `worker`, `delay_ms`, `reason` |
//! | `worker-stopped` | stopped by the operator or a config change | `worker` |
//! | `worker-finished` | ended and stays down by its restart type | `worker`, `exit` |
//! | `worker-failed` | down for good (intensity exceeded, a start that cannot spawn) | `worker`, `reason` |
//! | `worker-deleted` | removed | `worker` |
//! | `supervisor-gave-up` | the node's restart intensity was exceeded | `reason` |
//! | `config-adopted` | this node runs a new cluster config | `version`, `checksum`, `pushed_by`, `via` (`push`: pushed to this node; `gossip`: from a peer; `disk`: restored from the data dir) |
//! | `name-owner-changed` | a global name got a new owner, or none | `name`, `owner` (or null) |
//! | `events-lost` | the supervisor's events came faster than they were read | `count` |
//! | `user` | an operator's event (`herd event NAME [PAYLOAD]`), sent to every live member | `name`, `payload`, `from` (the node it was sent through) |
//!
//! Every event also has `seq`, `time_ms` (milliseconds since the Unix epoch) and `node` (this
//! agent's node). The log keeps the last [`EVENT_BUFFER`] events; a reader that asks for older
//! ones is told how many it missed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::supervisor::WorkerEvent;
use crate::Member;

/// How many events the log keeps.
pub const EVENT_BUFFER: usize = 1024;

/// Every event name the log records, in the order of the [module docs](self).
pub const EVENT_KINDS: &[&str] = &[
    "member-join",
    "member-leave",
    "member-failed",
    "member-update",
    "worker-started",
    "worker-ready",
    "worker-exited",
    "worker-restarting",
    "worker-stopped",
    "worker-finished",
    "worker-failed",
    "worker-deleted",
    "supervisor-gave-up",
    "config-adopted",
    "name-owner-changed",
    "events-lost",
    "user",
];

/// The longest user event payload, in bytes (Serf's limit).
pub const MAX_USER_PAYLOAD: usize = 512;

/// One event as `GET /v1/events` and `herd events --json` show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// Its number in this agent run, from 1.
    pub seq: u64,
    /// When this node recorded it, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// What happened: `member-join`, `worker-exited`, ... (see the [module docs](self)).
    pub event: &'static str,
    /// The node that recorded it (this agent's).
    pub node: Arc<str>,
    /// The event's own fields.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// What a reader gets from [`EventLog::since`].
#[derive(Debug)]
pub struct Batch {
    /// The events after the asked-for number that the log still holds, oldest first.
    pub events: Vec<Event>,
    /// How many events after the asked-for number the log no longer holds.
    pub missed: u64,
    /// The number to ask for next.
    pub next: u64,
}

/// The bounded log of this agent's events, shared by their sources and readers.
#[derive(Debug)]
pub struct EventLog {
    node: Arc<str>,
    ring: Mutex<VecDeque<Event>>,
    /// The number of the newest event; changes wake followers.
    newest: watch::Sender<u64>,
}

impl EventLog {
    /// An empty log for node `node`.
    pub fn new(node: &str) -> Arc<EventLog> {
        Arc::new(EventLog {
            node: node.into(),
            ring: Mutex::new(VecDeque::with_capacity(EVENT_BUFFER)),
            newest: watch::channel(0).0,
        })
    }

    /// Records an event with `fields` (an object), dropping the oldest beyond [`EVENT_BUFFER`].
    pub fn push(&self, event: &'static str, fields: Value) {
        let fields = match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let mut ring = self.ring.lock().expect("event log lock");
        let seq = *self.newest.borrow() + 1;
        if ring.len() == EVENT_BUFFER {
            ring.pop_front();
        }
        ring.push_back(Event {
            seq,
            time_ms: super::status::unix_ms(std::time::SystemTime::now()),
            event,
            node: self.node.clone(),
            fields,
        });
        self.newest.send_replace(seq);
    }

    /// The events numbered above `after` (0: all the log holds), at most `max`. An `after`
    /// beyond the newest number (a reader from before the agent restarted) reads from the oldest.
    pub fn since(&self, after: u64, max: usize) -> Batch {
        let ring = self.ring.lock().expect("event log lock");
        let after = match after > *self.newest.borrow() {
            true => 0,
            false => after,
        };
        let oldest = ring.front().map_or(after + 1, |e| e.seq);
        let missed = oldest.saturating_sub(after + 1);
        let events: Vec<Event> = ring
            .iter()
            .filter(|e| e.seq > after)
            .take(max)
            .cloned()
            .collect();
        let next = events.last().map_or(after.max(oldest - 1), |e| e.seq);
        Batch {
            events,
            missed,
            next,
        }
    }

    /// The number of the newest event (0 before any).
    pub fn newest(&self) -> u64 {
        *self.newest.borrow()
    }

    /// A watch on the newest event's number: it changes with each event.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }

    /// Records a membership event about `member`, with its address and tags.
    pub(crate) fn member(&self, event: &'static str, member: &Member, extra: Option<Value>) {
        let tags = serde_json::to_value(member.tags()).unwrap_or_default();
        let mut fields = serde_json::json!({
            "member": member.id(),
            "addr": member.addr().to_string(),
            "tags": tags,
        });
        if let (Some(Value::Object(extra)), Value::Object(map)) = (extra, &mut fields) {
            map.extend(extra);
        }
        self.push(event, fields);
    }

    /// Records the supervisor's events until `cancel` fires or the supervisor stops.
    pub(crate) async fn record_workers(
        self: Arc<Self>,
        mut events: broadcast::Receiver<WorkerEvent>,
        cancel: CancellationToken,
    ) {
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                event = events.recv() => event,
            };
            match event {
                Ok(event) => {
                    let (kind, fields) = worker_event(&event);
                    self.push(kind, fields);
                }
                Err(broadcast::error::RecvError::Lagged(count)) => {
                    self.push("events-lost", serde_json::json!({ "count": count }));
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// A supervisor event as an event name and fields.
fn worker_event(event: &WorkerEvent) -> (&'static str, Value) {
    use serde_json::json;
    match event {
        WorkerEvent::Started { name, pid } => {
            ("worker-started", json!({ "worker": name, "pid": pid }))
        }
        WorkerEvent::Ready { name, pid } => ("worker-ready", json!({ "worker": name, "pid": pid })),
        WorkerEvent::Exited { name, pid, exit } => (
            "worker-exited",
            json!({ "worker": name, "pid": pid, "exit": exit.to_string() }),
        ),
        WorkerEvent::Restarting {
            name,
            delay,
            reason,
        } => (
            "worker-restarting",
            json!({ "worker": name, "delay_ms": delay.as_millis() as u64, "reason": reason }),
        ),
        WorkerEvent::Stopped { name } => ("worker-stopped", json!({ "worker": name })),
        WorkerEvent::Finished { name, exit } => (
            "worker-finished",
            json!({ "worker": name, "exit": exit.to_string() }),
        ),
        WorkerEvent::GaveUp { reason } => ("supervisor-gave-up", json!({ "reason": reason })),
        WorkerEvent::Failed { name, reason } => {
            ("worker-failed", json!({ "worker": name, "reason": reason }))
        }
        WorkerEvent::Deleted { name } => ("worker-deleted", json!({ "worker": name })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_numbered_kept_up_to_the_bound_and_a_late_reader_is_told_what_it_missed() {
        let log = EventLog::new("a");
        assert_eq!(log.since(0, 10).events.len(), 0);
        assert_eq!(log.since(0, 10).next, 0);
        for i in 0..(EVENT_BUFFER + 5) {
            log.push("member-join", json!({ "member": format!("m{i}") }));
        }
        assert_eq!(log.newest(), EVENT_BUFFER as u64 + 5);
        let batch = log.since(0, 3);
        assert_eq!(batch.missed, 5);
        assert_eq!(
            batch.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [6, 7, 8]
        );
        assert_eq!(batch.next, 8);
        let batch = log.since(batch.next, usize::MAX);
        assert_eq!((batch.missed, batch.events.len()), (0, EVENT_BUFFER - 3));
        let tail = log.since(log.newest(), 10);
        assert!(tail.events.is_empty());
        assert_eq!(tail.next, log.newest());
        // A number from an earlier run of the agent reads from the oldest.
        let earlier = log.since(log.newest() + 100, 2);
        assert_eq!(earlier.events[0].seq, 6);
        assert_eq!(earlier.missed, 5);
        let line = serde_json::to_value(&log.since(log.newest() - 1, 1).events[0]).unwrap();
        assert_eq!(line["event"], "member-join");
        assert_eq!(line["node"], "a");
        assert_eq!(line["member"], format!("m{}", EVENT_BUFFER + 4));
        assert!(line["time_ms"].as_u64().unwrap() > 0);
    }
}
