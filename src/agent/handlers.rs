//! Event handlers: the programs of the agent file's `[[handler]]` tables, run for the events
//! of this agent's [`EventLog`] they ask for.
//!
//! Each handler has one task that follows the log with a cursor of its own, from the first
//! event of the agent's run (for handlers set at SIGHUP, from the events recorded after it). For each event the handler wants it runs the program once, as
//! argv (never through a shell), in a process group of its own, and waits for it before the
//! next: a handler sees every event in the log's order, at once (there is no batching), and a
//! handler still running when the next event comes gets it when it is done. Handlers do not
//! wait for each other, and the agent never waits for any of them.
//!
//! What a run gets:
//!
//! - **stdin**: the event as one JSON line, as `GET /v1/events` shows it, then end of file.
//!   With `format = "serf"`, a member event is Serf's line instead:
//!   `NAME\tIP\tROLE\tTAGS\n`, `ROLE` being the member's `role` tag and `TAGS` its tags as
//!   `k=v,k=v`; a `user` event is its payload, as Serf gives it.
//! - **environment**: the agent's own, plus `HERD_EVENT` (the event's name), `HERD_NODE_ID`
//!   (this agent's node), `HERD_EVENT_SEQ`, `HERD_EVENT_TIME_MS`, and each of the event's
//!   fields as `HERD_` and the field's name in capitals (`HERD_MEMBER`, `HERD_WORKER`,
//!   `HERD_REASON`, ...; the member's address is `HERD_MEMBER_ADDR`, tags are `HERD_TAGS` as
//!   JSON). With `format = "serf"` also `SERF_EVENT` and `SERF_SELF_NAME` (and for a `user`
//!   event `SERF_USER_EVENT`, its name).
//!
//! A run that takes longer than the handler's `timeout` has its process group killed
//! (SIGKILL) and is logged. When the program has exited, whatever it left running in its
//! group is killed too, as a worker's leftovers are. The first 4 KiB of its stdout and of its
//! stderr are logged (at debug level after a success, as a warning after a failure). When the
//! agent stops, a run under way is killed.
//!
//! The log is the handler's queue: it holds the last [`EVENT_BUFFER`] events, so a handler
//! that falls further behind skips the oldest. It is then told how many it missed
//! (`herd_handler_missed_total{handler}`, and a warning).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `herd_handler_runs_total` | counter | `handler`; `outcome`: ok, failed (a non-zero exit or a signal), timeout, spawn_error |
//! | `herd_handler_missed_total` | counter: events the handler never ran for, for falling more than the log's length behind | `handler` |
//! | `herd_handler_delay_seconds` | histogram: from an event's recording to its run's start | `handler` |
//! | `herd_worker_events_dropped_total` | counter: events not given to an `events = true` worker whose stdin queue was full | `worker` |
//!
//! The same task set gives every event, as it is recorded, to the running workers of the
//! cluster config that set `events = true` (with `protocol = "jsonl"`): one line
//! `{"event": {...}}` (the event as above) on the worker's stdin, a notification it does not
//! answer. A worker that does not read its stdin misses events once
//! [`NOTIFY_QUEUE`](crate::supervisor::NOTIFY_QUEUE) of them wait for it.
//!
//! [`EVENT_BUFFER`]: super::events::EVENT_BUFFER

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

mod metrics;
mod to_workers;

pub(crate) use metrics::HandlerMetrics;
use to_workers::notify_workers;
pub(crate) use to_workers::ConfigWatch;

use super::events::{Event, EventLog};
use crate::config::{HandlerConfig, HandlerFormat};
use crate::supervisor::Supervisor;

/// How much of a run's stdout, and of its stderr, is kept for the log.
pub const OUTPUT_KEPT: usize = 4096;
/// Events a handler reads from the log at a time.
const BATCH: usize = 64;
/// How long a run's output is still read after its group was killed.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);
/// Upper bounds of the delay buckets, in seconds: 1 ms to 60 s.
const DELAY_BUCKETS: [f64; 12] = [
    1e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 0.5, 1.0, 5.0, 15.0, 60.0,
];

/// How one run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Timeout,
    SpawnError,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Failed,
        Outcome::Timeout,
        Outcome::SpawnError,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Timeout => "timeout",
            Outcome::SpawnError => "spawn_error",
        }
    }
}

/// One handler's counters.
#[derive(Debug)]
pub(crate) struct Stats {
    name: String,
    runs: [AtomicU64; 4],
    missed: AtomicU64,
    delay: Histogram,
}

impl Stats {
    fn new(name: &str) -> Stats {
        Stats {
            name: name.to_owned(),
            runs: Default::default(),
            missed: AtomicU64::new(0),
            delay: Histogram::new(DELAY_BUCKETS),
        }
    }

    fn ran(&self, outcome: Outcome) {
        let index = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.runs[index].fetch_add(1, Ordering::Relaxed);
    }
}

/// Notifications to each worker dropped because its stdin queue was full.
type Dropped = Arc<Mutex<BTreeMap<String, u64>>>;

/// The agent's handlers: the set running now, and the counters the metrics read. A set is
/// replaced whole ([`Handlers::replace`], at SIGHUP): the old set's tasks end (killing a run
/// under way, as at the agent's stop) and the new set follows the log from its newest event; a
/// handler that keeps its name keeps its counters.
#[derive(Debug, Default)]
pub(crate) struct Handlers {
    stats: Arc<Mutex<Vec<Arc<Stats>>>>,
    dropped: Dropped,
    set: Mutex<Set>,
}

/// The running set and what it needs to start another.
#[derive(Debug, Default)]
struct Set {
    configs: Vec<HandlerConfig>,
    cancel: Option<CancellationToken>,
    context: Option<SetContext>,
}

#[derive(Debug, Clone)]
struct SetContext {
    log: Arc<EventLog>,
    node: String,
    tracker: TaskTracker,
    /// The agent's stop: every set's token is its child.
    stop: CancellationToken,
}

impl Handlers {
    /// Handlers for `configs`, not yet running.
    pub(crate) fn new(configs: &[HandlerConfig]) -> Arc<Handlers> {
        let handlers = Handlers::default();
        handlers.set.lock().expect("handlers lock").configs = configs.to_vec();
        Arc::new(handlers)
    }

    /// Their metrics, read at each scrape.
    pub(crate) fn collector(&self) -> HandlerMetrics {
        HandlerMetrics {
            stats: self.stats.clone(),
            dropped: self.dropped.clone(),
        }
    }

    /// Starts one task per handler on `tracker`, following `log` from its first event until
    /// `cancel`, and the task that gives the events to the `events = true` workers of the config
    /// `current` holds.
    pub(crate) fn spawn(
        &self,
        log: &Arc<EventLog>,
        node: &str,
        to_workers: (Supervisor, ConfigWatch),
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) {
        let (sup, current) = to_workers;
        tracker.spawn(notify_workers(
            log.clone(),
            sup,
            current,
            self.dropped.clone(),
            cancel.clone(),
        ));
        let mut set = self.set.lock().expect("handlers lock");
        set.context = Some(SetContext {
            log: log.clone(),
            node: node.to_owned(),
            tracker: tracker.clone(),
            stop: cancel.clone(),
        });
        let configs = std::mem::take(&mut set.configs);
        self.start_set(&mut set, configs, 0);
    }

    /// Replaces the running handlers with `configs`, which follow the log from its newest event
    /// on. Returns whether anything changed.
    pub(crate) fn replace(&self, configs: Vec<HandlerConfig>) -> bool {
        let mut set = self.set.lock().expect("handlers lock");
        if set.configs == configs {
            return false;
        }
        let Some(context) = set.context.clone() else {
            set.configs = configs;
            return true;
        };
        if let Some(cancel) = set.cancel.take() {
            cancel.cancel();
        }
        self.start_set(&mut set, configs, context.log.newest());
        true
    }

    fn start_set(&self, set: &mut Set, configs: Vec<HandlerConfig>, cursor: u64) {
        let Some(context) = set.context.clone() else {
            return;
        };
        let cancel = context.stop.child_token();
        let mut stats = self.stats.lock().expect("handler stats lock");
        for config in &configs {
            let kept = stats.iter().find(|s| s.name == config.name).cloned();
            let stat = match kept {
                Some(stat) => stat,
                None => {
                    let stat = Arc::new(Stats::new(&config.name));
                    stats.push(stat.clone());
                    stat
                }
            };
            let runner = Runner {
                config: config.clone(),
                stats: stat,
                node: context.node.clone(),
            };
            context
                .tracker
                .spawn(runner.follow(context.log.clone(), cursor, cancel.clone()));
        }
        set.configs = configs;
        set.cancel = Some(cancel);
    }
}

/// One handler's task.
struct Runner {
    config: HandlerConfig,
    stats: Arc<Stats>,
    node: String,
}

impl Runner {
    /// Runs the handler for each event after `cursor` it wants, in order, until `cancel`.
    async fn follow(self, log: Arc<EventLog>, mut cursor: u64, cancel: CancellationToken) {
        let mut newest = log.watch();
        loop {
            let batch = log.since(cursor, BATCH);
            if batch.missed > 0 {
                self.stats.missed.fetch_add(batch.missed, Ordering::Relaxed);
                warn!(handler = %self.config.name, missed = batch.missed, "the handler fell behind the event log and skips events it never ran for");
            }
            for event in &batch.events {
                if cancel.is_cancelled() {
                    return;
                }
                if self.config.wants(event.event) {
                    self.run(event, &cancel).await;
                }
            }
            cursor = batch.next;
            if !batch.events.is_empty() {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = newest.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Runs the handler once for `event` and logs how it went.
    async fn run(&self, event: &Event, cancel: &CancellationToken) {
        let config = &self.config;
        let recorded = super::status::unix_ms(std::time::SystemTime::now());
        let delay_ms = recorded.saturating_sub(event.time_ms);
        self.stats.delay.observe(delay_ms as f64 / 1000.0);
        let started = tokio::time::Instant::now();
        let mut cmd = self.command(event);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(err) => {
                self.stats.ran(Outcome::SpawnError);
                warn!(handler = %config.name, event = event.event, seq = event.seq, command = %config.command, error = %err, "cannot start the handler");
                return;
            }
        };
        let pgid = child.id();
        let stdin = child.stdin.take();
        let payload = self.stdin_for(event);
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A handler that does not read its stdin is not an error.
                let _ = stdin.write_all(payload.as_bytes()).await;
            }
        };
        let read = read_output(child.stdout.take(), child.stderr.take());
        tokio::pin!(read);
        let mut output = None;
        let status = {
            let ran = async {
                let (_, status) = tokio::join!(feed, child.wait());
                status
            };
            tokio::pin!(ran);
            let deadline = tokio::time::sleep(config.timeout);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    status = &mut ran => break Some(status),
                    out = &mut read, if output.is_none() => output = Some(out),
                    _ = &mut deadline => break None,
                    _ = cancel.cancelled() => break None,
                }
            }
        };
        // The handler's leftovers (or, after a timeout, the handler itself).
        if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1) {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        let status = match status {
            Some(status) => status.ok(),
            None => {
                let _ = child.wait().await;
                None
            }
        };
        let output = match output {
            Some(output) => output,
            None => tokio::time::timeout(OUTPUT_GRACE, &mut read)
                .await
                .unwrap_or_default(),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let (stdout, stderr) = (output.stdout(), output.stderr());
        let (name, kind, seq) = (&config.name, event.event, event.seq);
        match status {
            Some(status) if status.success() => {
                self.stats.ran(Outcome::Ok);
                debug!(handler = %name, event = kind, seq, elapsed_ms, delay_ms, %stdout, %stderr, "handler ran");
            }
            Some(status) => {
                self.stats.ran(Outcome::Failed);
                warn!(handler = %name, event = kind, seq, elapsed_ms, %status, %stdout, %stderr, "handler failed");
            }
            None if cancel.is_cancelled() => {
                debug!(handler = %name, event = kind, seq, "the agent is stopping: killed the handler");
            }
            None => {
                self.stats.ran(Outcome::Timeout);
                warn!(handler = %name, event = kind, seq, timeout = ?config.timeout, %stdout, %stderr, "the handler timed out; killed its process group");
            }
        }
    }

    /// The command for one run: argv, own process group, the event in its environment.
    fn command(&self, event: &Event) -> Command {
        let mut cmd = Command::new(&self.config.command);
        cmd.args(&self.config.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .env("HERD_EVENT", event.event)
            .env("HERD_NODE_ID", &self.node)
            .env("HERD_EVENT_SEQ", event.seq.to_string())
            .env("HERD_EVENT_TIME_MS", event.time_ms.to_string());
        for (key, value) in &event.fields {
            let key = match key.as_str() {
                "addr" => "MEMBER_ADDR".to_string(),
                other => other.to_ascii_uppercase().replace('-', "_"),
            };
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            if !value.contains('\0') {
                cmd.env(format!("HERD_{key}"), value);
            }
        }
        if self.config.format == HandlerFormat::Serf {
            cmd.env("SERF_EVENT", event.event)
                .env("SERF_SELF_NAME", &self.node);
            if event.event == "user" {
                let name = event.fields.get("name").and_then(Value::as_str);
                cmd.env("SERF_USER_EVENT", name.unwrap_or_default());
            }
        }
        cmd
    }

    /// What the run reads on stdin.
    fn stdin_for(&self, event: &Event) -> String {
        if self.config.format == HandlerFormat::Serf && event.event.starts_with("member-") {
            return serf_line(event);
        }
        if self.config.format == HandlerFormat::Serf && event.event == "user" {
            let payload = event.fields.get("payload").and_then(Value::as_str);
            return payload.unwrap_or_default().to_string();
        }
        let mut line = serde_json::to_string(event).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// A member event as Serf gives it to handlers: `NAME\tIP\tROLE\tTAGS\n`.
fn serf_line(event: &Event) -> String {
    let field = |key: &str| event.fields.get(key).and_then(Value::as_str).unwrap_or("");
    let addr = field("addr");
    let ip = addr
        .parse::<std::net::SocketAddr>()
        .map_or_else(|_| addr.to_string(), |a| a.ip().to_string());
    let tags = event.fields.get("tags").and_then(Value::as_object);
    let role = tags
        .and_then(|t| t.get("role"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let tags = tags
        .map(|t| {
            t.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let clean = |s: &str| s.replace(['\t', '\n'], " ");
    format!(
        "{}\t{}\t{}\t{}\n",
        clean(field("member")),
        clean(&ip),
        clean(role),
        clean(&tags)
    )
}

/// The start of a run's stdout and stderr.
#[derive(Debug, Default)]
struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Output {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim_end().to_string()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim_end().to_string()
    }
}

/// Reads both pipes to their end, keeping the first [`OUTPUT_KEPT`] bytes of each.
async fn read_output(
    stdout: Option<tokio::process::ChildStdout>,
    stderr: Option<tokio::process::ChildStderr>,
) -> Output {
    let (stdout, stderr) = tokio::join!(read_capped(stdout), read_capped(stderr));
    Output { stdout, stderr }
}

async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>) -> Vec<u8> {
    let Some(mut reader) = reader else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = OUTPUT_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &'static str, fields: Value) -> Event {
        let Value::Object(fields) = fields else {
            unreachable!()
        };
        Event {
            seq: 7,
            time_ms: 1,
            event: kind,
            node: "a".into(),
            fields,
        }
    }

    #[test]
    fn a_member_event_in_serf_format_is_a_tab_separated_line() {
        let e = event(
            "member-join",
            json!({"member": "b", "addr": "10.0.0.2:7946", "tags": {"role": "web", "zone": "x"}}),
        );
        assert_eq!(serf_line(&e), "b\t10.0.0.2\tweb\trole=web,zone=x\n");
        let bare = event("member-failed", json!({"member": "c\td", "addr": "?"}));
        assert_eq!(serf_line(&bare), "c d\t?\t\t\n");
    }
}
