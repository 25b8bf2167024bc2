//! The JSON-lines call protocol: requests on the worker's stdin, replies on
//! its stdout, multiplexed by id.
//!
//! Request: `{"id":7,"method":"resize","params":{...}}`; reply:
//! `{"id":7,"result":...}` or `{"id":7,"error":{"message":"..."}}`, one JSON
//! object per line. A [`Channel`] exists per process of a `.jsonl()` worker:
//! callers register a pending call and queue its line; the writer task
//! ([`write_requests`]) writes queued lines to stdin; the stdout reader
//! (output.rs) hands each line to [`Channel::route`], which completes the
//! pending call with that id (other lines, valid JSON or not, are output).
//! When the process ends, its process task calls [`Channel::fail_all`], so
//! pending calls fail at once, and calls made later fail without waiting. The
//! writer ends when stdin breaks, when the channel is dropped, or at the end
//! of shutdown.
//!
//! A worker declared with [`Readiness::Jsonl`](super::Readiness::Jsonl)
//! announces it is ready with the line `{"ready": true}` (no `id`): the
//! channel then fires the [`ReadySignal`] the runner gave it with
//! [`Channel::expect_ready`]. Such lines are protocol, not output, for that
//! worker only; for other workers they are output like any line.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::error::{Error, Result};
use super::ready::ReadySignal;
use super::status::Exit;

type Reply = std::result::Result<Value, String>;

#[derive(Default)]
struct Calls {
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    /// Set when the process ended: how it ended, if known.
    ended: Option<Option<Exit>>,
}

/// Notifications ([`Supervisor::notify`](crate::supervisor::Supervisor::notify)) queued for one process at most; more are dropped.
pub const NOTIFY_QUEUE: usize = 256;

/// A line queued for the worker's stdin.
#[derive(Debug)]
pub(crate) struct Queued {
    line: String,
    /// A notification (counted against [`NOTIFY_QUEUE`]) rather than a call.
    note: bool,
}

/// The receiving end of a channel's lines, drained by [`write_requests`].
#[derive(Debug)]
pub(crate) struct Requests {
    rx: mpsc::UnboundedReceiver<Queued>,
    notes: Arc<AtomicUsize>,
}

impl Requests {
    /// The next queued line; `None` once the channel is dropped.
    pub(crate) async fn recv(&mut self) -> Option<String> {
        let queued = self.rx.recv().await?;
        if queued.note {
            self.notes.fetch_sub(1, Ordering::Relaxed);
        }
        Some(queued.line)
    }
}

/// The call channel to one process of a worker.
pub(crate) struct Channel {
    worker: Arc<str>,
    next_id: AtomicU64,
    calls: Mutex<Calls>,
    /// Lines for the writer: each call's line waits with its caller (one per pending call), and
    /// notifications are held to [`NOTIFY_QUEUE`] by `notes`; the writer ends with the process.
    requests: mpsc::UnboundedSender<Queued>,
    /// Notifications queued and not yet taken by the writer.
    notes: Arc<AtomicUsize>,
    ready: Mutex<ReadyLine>,
}

/// Whether `{"ready": true}` lines are protocol for this process.
#[derive(Debug, Default)]
enum ReadyLine {
    /// The worker does not declare JSON-lines readiness: such lines are output.
    #[default]
    NotExpected,
    /// Waiting for the first one.
    Waiting(ReadySignal),
    /// Seen; later ones are dropped as protocol too.
    Seen,
}

impl Channel {
    /// A channel and the receiving end its writer task drains.
    pub(crate) fn new(worker: Arc<str>) -> (Arc<Self>, Requests) {
        let (requests, rx) = mpsc::unbounded_channel();
        let notes = Arc::new(AtomicUsize::new(0));
        let ch = Channel {
            worker,
            next_id: AtomicU64::new(1),
            calls: Mutex::new(Calls::default()),
            requests,
            notes: notes.clone(),
            ready: Mutex::new(ReadyLine::NotExpected),
        };
        (Arc::new(ch), Requests { rx, notes })
    }

    /// Queues `message` as one line with no id (a notification: no reply is expected).
    /// Returns false, queuing nothing, when [`NOTIFY_QUEUE`] notifications already wait for
    /// the worker's stdin, or the process has ended.
    pub(crate) fn notify(&self, message: &Value) -> bool {
        if self.notes.fetch_add(1, Ordering::Relaxed) >= NOTIFY_QUEUE {
            self.notes.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let mut line = message.to_string();
        line.push('\n');
        let queued = Queued { line, note: true };
        if self.requests.send(queued).is_err() {
            self.notes.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn died(&self, method: &str, exit: Option<Exit>) -> Error {
        Error::WorkerDied {
            worker: self.worker.to_string(),
            method: method.to_owned(),
            exit,
        }
    }

    /// Sends one request and waits up to `timeout` for its reply.
    pub(crate) async fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut calls = self.calls();
            if let Some(exit) = calls.ended {
                return Err(self.died(method, exit));
            }
            calls.pending.insert(id, tx);
        }
        // Removes the pending entry however this call ends (timeout, caller gone).
        let _forget = Forget { channel: self, id };
        let mut line =
            serde_json::json!({"id": id, "method": method, "params": params}).to_string();
        line.push('\n');
        if self.requests.send(Queued { line, note: false }).is_err() {
            let exit = self.calls().ended.flatten();
            return Err(self.died(method, exit));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(message))) => Err(Error::Remote {
                worker: self.worker.to_string(),
                method: method.to_owned(),
                message,
            }),
            Ok(Err(_)) => {
                let exit = self.calls().ended.flatten();
                Err(self.died(method, exit))
            }
            Err(_) => Err(Error::CallTimeout {
                worker: self.worker.to_string(),
                method: method.to_owned(),
                timeout,
            }),
        }
    }

    /// Makes `{"ready": true}` lines protocol for this process: the first
    /// one fires `signal`.
    pub(crate) fn expect_ready(&self, signal: ReadySignal) {
        *self.ready.lock().unwrap_or_else(|p| p.into_inner()) = ReadyLine::Waiting(signal);
    }

    /// A line without an id: the readiness line, if this process expects one.
    fn route_ready(&self, obj: &serde_json::Map<String, Value>) -> bool {
        if obj.get("ready") != Some(&Value::Bool(true)) {
            return false;
        }
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        match std::mem::replace(&mut *ready, ReadyLine::Seen) {
            ReadyLine::NotExpected => {
                *ready = ReadyLine::NotExpected;
                false
            }
            ReadyLine::Waiting(signal) => {
                signal.fire();
                true
            }
            ReadyLine::Seen => true,
        }
    }

    /// Completes the pending call a stdout line answers, or takes the
    /// readiness line. Returns false when the line is neither (it is then
    /// output).
    pub(crate) fn route(&self, line: &str) -> bool {
        if !line.trim_start().starts_with('{') {
            return false;
        }
        let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(line) else {
            return false;
        };
        let Some(id) = obj.get("id").and_then(Value::as_u64) else {
            return self.route_ready(&obj);
        };
        let reply = if let Some(err) = obj.remove("error") {
            let message = match err {
                Value::Object(ref e) => match e.get("message") {
                    Some(Value::String(m)) => m.clone(),
                    _ => err.to_string(),
                },
                Value::String(m) => m,
                other => other.to_string(),
            };
            Err(message)
        } else if let Some(result) = obj.remove("result") {
            Ok(result)
        } else {
            return false;
        };
        match self.calls().pending.remove(&id) {
            Some(tx) => {
                let _ = tx.send(reply);
            }
            None => tracing::debug!(worker = %self.worker, id, "reply to no pending call"),
        }
        true
    }

    /// The process ended: fails every pending call and every later one.
    pub(crate) fn fail_all(&self, exit: Option<Exit>) {
        let pending = {
            let mut calls = self.calls();
            calls.ended = Some(exit);
            std::mem::take(&mut calls.pending)
        };
        // Dropping the senders wakes the callers, which read `ended`.
        drop(pending);
    }

    /// Number of calls waiting for a reply.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.calls().pending.len()
    }
}

struct Forget<'a> {
    channel: &'a Channel,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.channel.calls().pending.remove(&self.id);
    }
}

/// Writes queued request lines to the worker's stdin until stdin breaks, the
/// channel is dropped, or `cancel`.
pub(crate) async fn write_requests(
    mut stdin: ChildStdin,
    mut requests: Requests,
    cancel: CancellationToken,
) {
    loop {
        let line = tokio::select! {
            _ = cancel.cancelled() => break,
            line = requests.recv() => match line {
                Some(line) => line,
                None => break,
            },
        };
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_are_matched_by_id_in_any_order() {
        let (ch, mut rx) = Channel::new("w".into());
        let a = tokio::spawn({
            let ch = ch.clone();
            async move { ch.call("a", Value::Null, Duration::from_secs(5)).await }
        });
        let b = tokio::spawn({
            let ch = ch.clone();
            async move { ch.call("b", Value::Null, Duration::from_secs(5)).await }
        });
        let mut ids = HashMap::new();
        for _ in 0..2 {
            let req: Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
            ids.insert(
                req["method"].as_str().unwrap().to_owned(),
                req["id"].as_u64().unwrap(),
            );
        }
        assert!(ch.route(&format!(
            r#"{{"id":{},"error":{{"message":"nope"}}}}"#,
            ids["b"]
        )));
        assert!(ch.route(&format!(r#"{{"id":{},"result":42}}"#, ids["a"])));
        assert_eq!(a.await.unwrap().unwrap(), serde_json::json!(42));
        assert!(
            matches!(b.await.unwrap(), Err(Error::Remote { message, .. }) if message == "nope")
        );
    }

    #[test]
    fn lines_that_are_not_replies_are_output() {
        let (ch, _rx) = Channel::new("w".into());
        assert!(!ch.route("hello"));
        assert!(!ch.route("{not json"));
        assert!(!ch.route(r#"{"id":1,"method":"x"}"#));
        assert!(!ch.route(r#"{"level":"info"}"#));
    }

    #[test]
    fn the_ready_line_is_protocol_only_for_a_worker_expecting_it() {
        let (ch, _rx) = Channel::new("w".into());
        assert!(!ch.route(r#"{"ready": true}"#), "not expected: output");
        let (tx, mut ready) = mpsc::unbounded_channel();
        let note = super::super::ready::ReadyNote {
            key: 3,
            generation: 4,
        };
        ch.expect_ready(ReadySignal { note, tx });
        assert!(!ch.route(r#"{"ready": false}"#));
        assert!(ready.try_recv().is_err());
        assert!(ch.route(r#"{"ready": true}"#));
        assert_eq!(ready.try_recv().unwrap(), note);
        assert!(ch.route(r#"{"ready":true}"#), "later ones are protocol too");
        assert!(ready.try_recv().is_err(), "fired once");
    }

    #[tokio::test]
    async fn pending_calls_fail_at_once_when_the_process_ends() {
        let (ch, _rx) = Channel::new("w".into());
        let call = tokio::spawn({
            let ch = ch.clone();
            async move { ch.call("slow", Value::Null, Duration::from_secs(60)).await }
        });
        while ch.pending() == 0 {
            tokio::task::yield_now().await;
        }
        ch.fail_all(Some(Exit::Signal(9)));
        let err = call.await.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                Error::WorkerDied {
                    exit: Some(Exit::Signal(9)),
                    ..
                }
            ),
            "{err}"
        );
        let later = ch.call("x", Value::Null, Duration::from_secs(60)).await;
        assert!(matches!(later, Err(Error::WorkerDied { .. })));
    }

    #[tokio::test]
    async fn a_timed_out_call_leaves_nothing_pending() {
        let (ch, _rx) = Channel::new("w".into());
        let r = ch.call("x", Value::Null, Duration::from_millis(10)).await;
        assert!(matches!(r, Err(Error::CallTimeout { .. })));
        assert_eq!(ch.pending(), 0);
    }

    #[tokio::test]
    async fn notifications_are_bounded_and_a_taken_one_makes_room() {
        let (ch, mut rx) = Channel::new("w".into());
        let note = serde_json::json!({"event": {"seq": 1}});
        for _ in 0..NOTIFY_QUEUE {
            assert!(ch.notify(&note));
        }
        assert!(!ch.notify(&note), "a full queue drops the notification");
        assert_eq!(rx.recv().await.unwrap(), "{\"event\":{\"seq\":1}}\n");
        assert!(ch.notify(&note));
        let (ch, rx) = Channel::new("w".into());
        drop(rx);
        assert!(!ch.notify(&note), "nobody writes once the writer is gone");
    }
}
