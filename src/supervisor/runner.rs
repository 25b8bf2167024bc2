//! The supervisor's owning task: every worker's state lives here, and every
//! change happens here, one event at a time.
//!
//! [`Runner::run`] is spawned by `Builder::start` (tracked by the supervisor's
//! `TaskTracker`) and loops over four sources in a `select!`: exits reported
//! by process tasks, commands from `Supervisor` handles (each with a oneshot
//! reply), the earliest backoff deadline, and the cancellation token. The
//! decisions are policy.rs's pure functions; this file applies them. No lock
//! is held across an `.await`; the only awaits are spawns (a round trip to the
//! spawner thread), so the loop never waits on a worker.
//!
//! It stops after a shutdown (cancellation, or the last handle dropped):
//! every worker is stopped in reverse start order, one at a time; when no
//! process is left, it cancels the I/O token (ending the output readers and
//! request writers) and returns.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::{Error, Result};
use super::event::WorkerEvent;
use super::jsonl::{self, Channel};
use super::output::{self, Output, Stream};
use super::policy::{self, Intensity, Verdict};
use super::process::{self, Control, ExitNote};
use super::spec::{Restart, Strategy, WorkerSpec};
use super::status::{Exit, Tail, WorkerState, WorkerStatus};

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// What a handle asks of the owning task.
pub(crate) enum Command {
    Start {
        spec: Box<WorkerSpec>,
        reply: Reply<u32>,
    },
    Status {
        reply: oneshot::Sender<Vec<WorkerStatus>>,
    },
    Tail {
        name: String,
        reply: Reply<Tail>,
    },
    Restart {
        name: String,
        reply: Reply<u32>,
    },
    Stop {
        name: String,
        reply: Reply<()>,
    },
    StartExisting {
        name: String,
        reply: Reply<u32>,
    },
    Delete {
        name: String,
        reply: Reply<()>,
    },
    Channel {
        name: String,
        reply: Reply<Arc<Channel>>,
    },
}

/// What to do when a worker's current process ends.
#[derive(Debug, Clone, PartialEq)]
enum Intent {
    /// Nothing asked: it crashed or exited by itself; apply its policy.
    Policy,
    /// The operator stopped it: stay stopped.
    Stop,
    /// The operator restarted it: start again at once.
    Restart,
    /// Its strategy restarts it with a crashed sibling: wait for the group.
    Group,
    /// The supervisor gave up: stay failed.
    Fail(String),
    /// The operator deleted it: remove it.
    Delete,
    /// Shutdown: stay stopped.
    Shutdown,
}

enum Waiter {
    Started(Reply<u32>),
    Stopped(Reply<()>),
}

struct Proc {
    pid: u32,
    generation: u64,
    control: mpsc::UnboundedSender<Control>,
    started: Instant,
    channel: Option<Arc<Channel>>,
    stopping: bool,
}

struct Worker {
    key: u64,
    name: Arc<str>,
    spec: WorkerSpec,
    state: WorkerState,
    since: SystemTime,
    restarts: u32,
    last_exit: Option<Exit>,
    proc: Option<Proc>,
    intent: Intent,
    waiters: Vec<Waiter>,
    /// A pending restart (state `Backoff`).
    start_at: Option<Instant>,
    /// Consecutive restarts, for the backoff.
    streak: u32,
    output: Arc<Output>,
}

impl Worker {
    fn set_state(&mut self, state: WorkerState) {
        self.state = state;
        self.since = SystemTime::now();
    }

    fn status(&self, now: Instant) -> WorkerStatus {
        let state = match self.state {
            WorkerState::Backoff { .. } => WorkerState::Backoff {
                remaining_ms: self
                    .start_at
                    .map_or(0, |at| at.saturating_duration_since(now).as_millis() as u64),
            },
            ref s => s.clone(),
        };
        WorkerStatus {
            name: self.name.to_string(),
            pid: self.proc.as_ref().map(|p| p.pid),
            state,
            restarts: self.restarts,
            last_exit: self.last_exit,
            since: self.since,
        }
    }

    /// Answers the waiters once the worker rests without a process.
    fn settle(&mut self, started_error: impl Fn() -> Error) {
        for waiter in self.waiters.drain(..) {
            match waiter {
                Waiter::Started(reply) => {
                    let _ = reply.send(Err(started_error()));
                }
                Waiter::Stopped(reply) => {
                    let _ = reply.send(Ok(()));
                }
            }
        }
    }
}

/// A strategy restart in progress: members are stopped (in reverse start
/// order, through the stop queue), then started again in start order.
struct Group {
    /// Keys, and whether each is to be started again (temporary siblings are not).
    members: Vec<(u64, bool)>,
    delay: Duration,
}

/// Settings fixed at start.
pub(crate) struct Config {
    pub strategy: Strategy,
    pub max_restarts: u32,
    pub period: Duration,
}

/// The owning task's state.
pub(crate) struct Runner {
    strategy: Strategy,
    intensity: Intensity,
    /// In start order.
    workers: Vec<Worker>,
    next_key: u64,
    next_generation: u64,
    group: Option<Group>,
    /// Workers to stop one after the other (reverse start order).
    stop_queue: VecDeque<u64>,
    shutting_down: bool,
    events: broadcast::Sender<WorkerEvent>,
    exits_tx: mpsc::UnboundedSender<ExitNote>,
    tracker: TaskTracker,
    io_cancel: CancellationToken,
}

impl Runner {
    pub(crate) fn new(
        config: Config,
        events: broadcast::Sender<WorkerEvent>,
        exits_tx: mpsc::UnboundedSender<ExitNote>,
        tracker: TaskTracker,
    ) -> Self {
        Runner {
            strategy: config.strategy,
            intensity: Intensity::new(config.max_restarts, config.period),
            workers: Vec::new(),
            next_key: 1,
            next_generation: 1,
            group: None,
            stop_queue: VecDeque::new(),
            shutting_down: false,
            events,
            exits_tx,
            tracker,
            io_cancel: CancellationToken::new(),
        }
    }

    /// The loop. Returns when shut down and no process is left.
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut exits: mpsc::UnboundedReceiver<ExitNote>,
        cancel: CancellationToken,
    ) {
        let mut commands_open = true;
        loop {
            if self.shutting_down && self.workers.iter().all(|w| w.proc.is_none()) {
                break;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                Some(note) = exits.recv() => self.on_exit(note).await,
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => {
                        commands_open = false;
                        self.begin_shutdown();
                    }
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.on_timer().await;
                }
                _ = cancel.cancelled(), if !self.shutting_down => self.begin_shutdown(),
            }
        }
        tracing::debug!("supervisor stopped");
        self.io_cancel.cancel();
    }

    fn emit(&self, event: WorkerEvent) {
        let _ = self.events.send(event);
    }

    fn index(&self, name: &str) -> Result<usize> {
        self.workers
            .iter()
            .position(|w| &*w.name == name && w.intent != Intent::Delete)
            .ok_or_else(|| Error::UnknownWorker {
                name: name.to_owned(),
            })
    }

    fn index_of_key(&self, key: u64) -> Option<usize> {
        self.workers.iter().position(|w| w.key == key)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.workers.iter().filter_map(|w| w.start_at).min()
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Status { reply } => {
                let now = Instant::now();
                let _ = reply.send(self.workers.iter().map(|w| w.status(now)).collect());
            }
            Command::Tail { name, reply } => {
                let _ = reply.send(self.index(&name).map(|i| self.workers[i].output.tail()));
            }
            Command::Channel { name, reply } => {
                let _ = reply.send(self.channel(&name));
            }
            Command::Start { spec, reply } => {
                let r = self.start_new(*spec).await;
                let _ = reply.send(r);
            }
            Command::Restart { name, reply } => self.restart(&name, reply).await,
            Command::StartExisting { name, reply } => self.start_existing(&name, reply).await,
            Command::Stop { name, reply } => self.stop(&name, reply),
            Command::Delete { name, reply } => self.delete(&name, reply),
        }
    }

    fn channel(&self, name: &str) -> Result<Arc<Channel>> {
        let w = &self.workers[self.index(name)?];
        if !w.spec.jsonl {
            return Err(Error::NotJsonl {
                worker: name.to_owned(),
            });
        }
        w.proc
            .as_ref()
            .and_then(|p| p.channel.clone())
            .ok_or_else(|| Error::NotRunning {
                worker: name.to_owned(),
                state: w.state.to_string(),
            })
    }

    async fn start_new(&mut self, spec: WorkerSpec) -> Result<u32> {
        if self.shutting_down {
            return Err(Error::Shutdown);
        }
        if spec.name.is_empty() {
            return Err(Error::InvalidSpec {
                worker: spec.name,
                reason: "the name is empty".into(),
            });
        }
        if self.workers.iter().any(|w| w.spec.name == spec.name) {
            return Err(Error::DuplicateWorker { name: spec.name });
        }
        let key = self.next_key;
        self.next_key += 1;
        self.workers.push(Worker {
            key,
            name: spec.name.as_str().into(),
            spec,
            state: WorkerState::Starting,
            since: SystemTime::now(),
            restarts: 0,
            last_exit: None,
            proc: None,
            intent: Intent::Policy,
            waiters: Vec::new(),
            start_at: None,
            streak: 0,
            output: Arc::default(),
        });
        let idx = self.workers.len() - 1;
        let r = self.spawn(idx).await;
        if r.is_err() {
            // Never registered: no crash loop follows a bad program.
            self.workers.pop();
        }
        r
    }

    /// Spawns the worker's process and its tasks.
    async fn spawn(&mut self, idx: usize) -> Result<u32> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let w = &mut self.workers[idx];
        w.start_at = None;
        w.set_state(WorkerState::Starting);
        let spawned = process::spawn(process::command(&w.spec)).await;
        let mut child = spawned.map_err(|source| Error::Spawn {
            worker: w.spec.name.clone(),
            program: w.spec.program.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        let (channel, requests) = match w.spec.jsonl {
            true => {
                let (ch, rx) = Channel::new(w.name.clone());
                (Some(ch), Some(rx))
            }
            false => (None, None),
        };
        if let (Some(stdin), Some(rx)) = (child.stdin.take(), requests) {
            self.tracker
                .spawn(jsonl::write_requests(stdin, rx, self.io_cancel.clone()));
        }
        if let Some(stdout) = child.stdout.take() {
            self.tracker.spawn(output::read_stream(
                stdout,
                w.name.clone(),
                Stream::Stdout,
                w.output.clone(),
                channel.clone(),
                self.io_cancel.clone(),
            ));
        }
        if let Some(stderr) = child.stderr.take() {
            self.tracker.spawn(output::read_stream(
                stderr,
                w.name.clone(),
                Stream::Stderr,
                w.output.clone(),
                None,
                self.io_cancel.clone(),
            ));
        }
        let (control, control_rx) = mpsc::unbounded_channel();
        let note = ExitNote {
            key: w.key,
            generation,
            exit: Exit::Code(0),
        };
        self.tracker.spawn(process::watch(
            child,
            pid,
            note,
            control_rx,
            channel.clone(),
            self.exits_tx.clone(),
        ));
        w.proc = Some(Proc {
            pid,
            generation,
            control,
            started: Instant::now(),
            channel,
            stopping: false,
        });
        w.intent = Intent::Policy;
        w.set_state(WorkerState::Running { pid });
        for waiter in w.waiters.drain(..) {
            match waiter {
                Waiter::Started(reply) => {
                    let _ = reply.send(Ok(pid));
                }
                Waiter::Stopped(reply) => {
                    let _ = reply.send(Ok(()));
                }
            }
        }
        if w.restarts == 0 {
            tracing::info!(worker = %w.name, pid, "worker started");
        } else {
            tracing::info!(worker = %w.name, pid, restarts = w.restarts, "worker restarted");
        }
        let name = w.spec.name.clone();
        self.emit(WorkerEvent::Started { name, pid });
        Ok(pid)
    }

    /// Spawns a worker the supervisor restarts; a failure leaves it `Failed`.
    async fn respawn(&mut self, idx: usize) {
        if let Err(err) = self.spawn(idx).await {
            let w = &mut self.workers[idx];
            let reason = err.to_string();
            tracing::warn!(worker = %w.name, %err, "worker cannot be restarted");
            w.set_state(WorkerState::Failed {
                reason: reason.clone(),
            });
            let name = w.spec.name.clone();
            w.settle(|| Error::NotRunning {
                worker: name.clone(),
                state: "failed".into(),
            });
            self.emit(WorkerEvent::Failed { name, reason });
        }
    }

    /// Removes a worker from any group restart and the stop queue, so an
    /// operator's command decides its fate alone.
    fn detach(&mut self, idx: usize) {
        let key = self.workers[idx].key;
        if let Some(g) = &mut self.group {
            g.members.retain(|&(k, _)| k != key);
        }
        self.stop_queue.retain(|&k| k != key);
    }

    fn send_stop(&mut self, idx: usize) {
        let w = &mut self.workers[idx];
        let Some(p) = &mut w.proc else { return };
        if p.stopping {
            return;
        }
        p.stopping = true;
        let pid = p.pid;
        let _ = p.control.send(Control::Stop {
            signal: w.spec.stop_signal,
            timeout: w.spec.shutdown_timeout,
        });
        w.set_state(WorkerState::Stopping { pid });
    }

    async fn restart(&mut self, name: &str, reply: Reply<u32>) {
        if self.shutting_down {
            let _ = reply.send(Err(Error::Shutdown));
            return;
        }
        let idx = match self.index(name) {
            Ok(i) => i,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        self.detach(idx);
        let w = &mut self.workers[idx];
        if w.proc.is_some() {
            w.intent = Intent::Restart;
            w.waiters.push(Waiter::Started(reply));
            self.send_stop(idx);
        } else {
            self.start_resting(idx, reply).await;
        }
    }

    async fn start_existing(&mut self, name: &str, reply: Reply<u32>) {
        if self.shutting_down {
            let _ = reply.send(Err(Error::Shutdown));
            return;
        }
        let idx = match self.index(name) {
            Ok(i) => i,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let w = &mut self.workers[idx];
        match &w.proc {
            Some(p) if !p.stopping => {
                let _ = reply.send(Ok(p.pid));
            }
            Some(_) => {
                // Being stopped: start again once it is down.
                self.detach(idx);
                let w = &mut self.workers[idx];
                w.intent = Intent::Restart;
                w.waiters.push(Waiter::Started(reply));
            }
            None => {
                self.detach(idx);
                self.start_resting(idx, reply).await;
            }
        }
    }

    /// Starts a worker that has no process, at the operator's request.
    async fn start_resting(&mut self, idx: usize, reply: Reply<u32>) {
        if matches!(self.workers[idx].state, WorkerState::Failed { .. }) {
            // The operator takes over from a supervisor that gave up.
            self.intensity.clear();
        }
        self.workers[idx].streak = 0;
        let _ = reply.send(self.spawn(idx).await);
    }

    fn stop(&mut self, name: &str, reply: Reply<()>) {
        let idx = match self.index(name) {
            Ok(i) => i,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        self.detach(idx);
        let w = &mut self.workers[idx];
        if w.proc.is_some() {
            if w.intent != Intent::Shutdown {
                w.intent = Intent::Stop;
            }
            w.waiters.push(Waiter::Stopped(reply));
            self.send_stop(idx);
        } else {
            w.start_at = None;
            if !matches!(w.state, WorkerState::Stopped) {
                w.set_state(WorkerState::Stopped);
                let name = w.spec.name.clone();
                self.emit(WorkerEvent::Stopped { name });
            }
            let _ = reply.send(Ok(()));
            self.advance_group_sync();
        }
    }

    fn delete(&mut self, name: &str, reply: Reply<()>) {
        let idx = match self.index(name) {
            Ok(i) => i,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        self.detach(idx);
        let w = &mut self.workers[idx];
        if w.proc.is_some() {
            w.intent = Intent::Delete;
            w.waiters.push(Waiter::Stopped(reply));
            self.send_stop(idx);
        } else {
            self.remove(idx);
            let _ = reply.send(Ok(()));
            self.advance_group_sync();
        }
    }

    fn remove(&mut self, idx: usize) {
        let mut w = self.workers.remove(idx);
        let name = w.spec.name.clone();
        w.settle(|| Error::UnknownWorker { name: name.clone() });
        tracing::debug!(worker = %w.name, "worker deleted");
        self.emit(WorkerEvent::Deleted { name: w.spec.name });
    }

    async fn on_exit(&mut self, note: ExitNote) {
        let Some(idx) = self.index_of_key(note.key) else {
            return;
        };
        let w = &mut self.workers[idx];
        if w.proc.as_ref().map(|p| p.generation) != Some(note.generation) {
            return;
        }
        let proc = w.proc.take().expect("checked above");
        let exit = note.exit;
        w.last_exit = Some(exit);
        let intent = std::mem::replace(&mut w.intent, Intent::Policy);
        let name = w.spec.name.clone();
        self.emit(WorkerEvent::Exited {
            name: name.clone(),
            pid: proc.pid,
            exit,
        });
        let w = &mut self.workers[idx];
        match intent {
            Intent::Policy => {
                let uptime = proc.started.elapsed();
                self.on_crash(idx, exit, uptime).await;
            }
            Intent::Stop | Intent::Shutdown => {
                tracing::debug!(worker = %name, pid = proc.pid, %exit, "worker stopped");
                w.set_state(WorkerState::Stopped);
                w.settle(|| Error::NotRunning {
                    worker: name.clone(),
                    state: "stopped".into(),
                });
                self.emit(WorkerEvent::Stopped { name });
            }
            Intent::Restart => {
                w.streak = 0;
                self.respawn(idx).await;
            }
            Intent::Group => {
                w.set_state(WorkerState::Backoff { remaining_ms: 0 });
            }
            Intent::Fail(reason) => {
                w.set_state(WorkerState::Failed {
                    reason: reason.clone(),
                });
                w.settle(|| Error::GaveUp {
                    reason: reason.clone(),
                });
                self.emit(WorkerEvent::Failed { name, reason });
            }
            Intent::Delete => self.remove(idx),
        }
        self.pump_stops();
        self.advance_group().await;
    }

    /// A worker ended by itself: its restart type, intensity and strategy decide.
    async fn on_crash(&mut self, idx: usize, exit: Exit, uptime: Duration) {
        let w = &mut self.workers[idx];
        if policy::resets_streak(w.spec.backoff.as_ref(), uptime) {
            w.streak = 0;
        }
        if !policy::should_restart(w.spec.restart, exit, &w.spec.normal_exit_codes) {
            tracing::info!(worker = %w.name, %exit, "worker finished");
            w.set_state(WorkerState::Exited { exit });
            let name = w.spec.name.clone();
            self.emit(WorkerEvent::Finished { name, exit });
            return;
        }
        tracing::warn!(worker = %w.name, %exit, "worker crashed");
        if let Verdict::GiveUp(reason) =
            self.intensity
                .record(Instant::now().into_std(), &w.name, exit)
        {
            self.give_up(reason);
            return;
        }
        let w = &mut self.workers[idx];
        w.streak += 1;
        let delay = policy::backoff_delay(w.spec.backoff.as_ref(), w.streak, rand::random());
        let crashed = w.key;
        let set = policy::restart_set(self.strategy, self.workers.len(), idx);
        let mut group = self.group.take().unwrap_or(Group {
            members: Vec::new(),
            delay: Duration::ZERO,
        });
        group.delay = group.delay.max(delay);
        for j in set {
            let w = &mut self.workers[j];
            let pending = w.start_at.is_some() || matches!(w.state, WorkerState::Backoff { .. });
            let running = w.proc.is_some() && w.intent == Intent::Policy;
            if w.key != crashed && !running && !pending {
                continue;
            }
            let again = w.key == crashed || w.spec.restart != Restart::Temporary;
            if !group.members.iter().any(|&(k, _)| k == w.key) {
                group.members.push((w.key, again));
            }
            w.start_at = None;
            if w.proc.is_some() {
                w.intent = Intent::Group;
                if !self.stop_queue.contains(&w.key) {
                    self.stop_queue.push_back(w.key);
                }
            } else {
                w.set_state(WorkerState::Backoff { remaining_ms: 0 });
            }
            if again {
                w.restarts += 1;
                let name = w.spec.name.clone();
                self.emit(WorkerEvent::Restarting { name, delay });
            }
        }
        let queued: Vec<usize> = self
            .stop_queue
            .iter()
            .filter_map(|&k| self.index_of_key(k))
            .collect();
        self.stop_queue = policy::stop_order(queued)
            .into_iter()
            .map(|i| self.workers[i].key)
            .collect();
        self.group = Some(group);
    }

    /// Restart intensity exceeded: stop everything, mark it failed.
    fn give_up(&mut self, reason: String) {
        tracing::error!(%reason, "supervisor gave up");
        self.emit(WorkerEvent::GaveUp {
            reason: reason.clone(),
        });
        self.group = None;
        self.stop_queue.clear();
        let mut failed = Vec::new();
        for w in self.workers.iter_mut().rev() {
            w.start_at = None;
            if w.proc.is_some() {
                if !matches!(w.intent, Intent::Delete | Intent::Stop) {
                    w.intent = Intent::Fail(reason.clone());
                }
                self.stop_queue.push_back(w.key);
            } else if matches!(
                w.state,
                WorkerState::Backoff { .. }
                    | WorkerState::Starting
                    | WorkerState::Running { .. }
                    | WorkerState::Stopping { .. }
            ) {
                // Waiting for a restart, or the worker whose crash was one too many.
                w.set_state(WorkerState::Failed {
                    reason: reason.clone(),
                });
                failed.push(w.spec.name.clone());
            }
        }
        for name in failed {
            self.emit(WorkerEvent::Failed {
                name,
                reason: reason.clone(),
            });
        }
        self.pump_stops();
    }

    /// Sends the stop to the head of the stop queue, once the previous one is down.
    fn pump_stops(&mut self) {
        while let Some(&key) = self.stop_queue.front() {
            match self.index_of_key(key) {
                Some(idx) if self.workers[idx].proc.is_some() => {
                    if !self.workers[idx].proc.as_ref().is_some_and(|p| p.stopping) {
                        self.send_stop(idx);
                    }
                    return;
                }
                _ => {
                    self.stop_queue.pop_front();
                }
            }
        }
    }

    /// Whether the group restart can go ahead: no member has a process.
    fn group_ready(&self) -> bool {
        self.group.as_ref().is_some_and(|g| {
            g.members.iter().all(|&(k, _)| {
                self.index_of_key(k)
                    .is_none_or(|i| self.workers[i].proc.is_none())
            })
        })
    }

    /// After an operator command: a group waiting on nothing more can be
    /// scheduled without spawning here (the timer arm spawns).
    fn advance_group_sync(&mut self) {
        if self.group_ready() {
            let g = self.group.take().expect("ready implies some");
            let at = Instant::now() + g.delay;
            self.schedule(g, at);
        }
    }

    fn schedule(&mut self, g: Group, at: Instant) {
        for (key, again) in g.members {
            let Some(i) = self.index_of_key(key) else {
                continue;
            };
            let w = &mut self.workers[i];
            if again {
                w.start_at = Some(at);
                w.set_state(WorkerState::Backoff { remaining_ms: 0 });
            } else {
                w.set_state(WorkerState::Stopped);
                let name = w.spec.name.clone();
                self.emit(WorkerEvent::Stopped { name });
            }
        }
    }

    /// Starts the group once its members are down: at once without backoff
    /// (in start order), else at its deadline.
    async fn advance_group(&mut self) {
        if !self.group_ready() {
            return;
        }
        let g = self.group.take().expect("ready implies some");
        if !g.delay.is_zero() {
            let at = Instant::now() + g.delay;
            self.schedule(g, at);
            return;
        }
        let now = Instant::now();
        self.schedule(g, now);
        self.on_timer().await;
    }

    /// Starts, in start order, the workers whose restart is due.
    async fn on_timer(&mut self) {
        let now = Instant::now();
        let mut idx = 0;
        while idx < self.workers.len() {
            if self.workers[idx].start_at.is_some_and(|at| at <= now) {
                self.respawn(idx).await;
            }
            idx += 1;
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        tracing::debug!("supervisor shutting down");
        self.shutting_down = true;
        self.group = None;
        self.stop_queue.clear();
        let mut stopped = Vec::new();
        for w in self.workers.iter_mut().rev() {
            w.start_at = None;
            if w.proc.is_some() {
                if w.intent != Intent::Delete {
                    w.intent = Intent::Shutdown;
                }
                self.stop_queue.push_back(w.key);
            } else if matches!(w.state, WorkerState::Backoff { .. }) {
                w.set_state(WorkerState::Stopped);
                stopped.push(w.spec.name.clone());
            }
        }
        for name in stopped {
            self.emit(WorkerEvent::Stopped { name });
        }
        self.pump_stops();
    }
}
