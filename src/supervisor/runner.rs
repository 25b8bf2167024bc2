//! The supervisor's owning task: every worker's state lives here, and every
//! change happens here, one event at a time.
//!
//! [`Runner::run`] runs on the supervisor's own thread, in a current-thread
//! runtime that `Builder::start` creates there (tracked by the supervisor's
//! `TaskTracker`), with every task it spawns; it loops over five sources in a `select!`: exits reported
//! by process tasks, readiness signals (ready.rs), commands from `Supervisor`
//! handles (each with a oneshot reply), the earliest deadline (a backoff, a
//! readiness `after` or timeout), and the cancellation token. The
//! decisions are policy.rs's pure functions; this file applies them. No lock
//! is held across an `.await`, and the loop never waits on a worker: a
//! spawn blocks only until the exec has happened.
//!
//! The operator's commands are in `runner/operator.rs`, what follows a crash
//! (strategy groups, intensity, giving up, failing one worker alone) in
//! `runner/group.rs`, starting a worker and its readiness in
//! `runner/start.rs`, and the per-worker record in `runner/worker.rs`.
//!
//! Starts follow the strategy: under `RestForOne` and `OneForAll` a worker
//! is started (first start of a held `start_worker`, or a restart) only when
//! no worker before it in start order is still on its way up (waiting for a
//! restart, or started and not ready yet); see [`Runner::startable`]. Under
//! `OneForOne` starts never wait.
//!
//! A start that fails is handled where it was asked for: one the operator
//! asked for (`start_worker`, `start_existing`, `restart_worker`) leaves the
//! worker `Failed` and answers the error; one the policy made (a restart)
//! counts as a crash (`failed_start` in `runner/group.rs`).
//!
//! The workers' output is read on the output thread (`output/pump.rs`):
//! [`Runner::spawn`] hands each new process's stdout and stderr there.
//!
//! It stops after a shutdown (cancellation, or the last handle dropped):
//! under `OneForOne` every worker is sent its stop at once (in reverse start
//! order, without waiting in between), so the shutdown takes as long as the
//! longest `shutdown_timeout`; under `RestForOne` and `OneForAll` they are
//! stopped in reverse start order, each once the one after it is down, as OTP
//! does. When no process is left, it cancels the I/O token (ending the output
//! readers and request writers) and returns.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::{Error, Result};
use super::event::WorkerEvent;
use super::jsonl::{self, Channel};
use super::output::pump::Pump;
use super::output::Stream;
use super::policy::RestartHistory;
use super::process::{self, Control, ExitNote};
use super::ready::{ReadyNote, ReadySignal};
use super::spec::{Strategy, WorkerSpec};
use super::status::{Exit, Tail, WorkerState, WorkerStatus};
use super::user;

mod group;
mod operator;
mod start;
mod worker;

use group::Group;
use worker::{Intent, Proc, ReadyCheck, Waiter, Worker};

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

/// Settings fixed at start.
pub(crate) struct Config {
    pub strategy: Strategy,
    pub max_restarts: u32,
    pub period: Duration,
    /// Whether restarts of workers with their own limit count here too.
    pub count_every_restart: bool,
    /// Where the workers' output is read (off this thread).
    pub output: Pump,
}

/// The owning task's state.
pub(crate) struct Runner {
    strategy: Strategy,
    /// The supervisor-wide restart intensity, for workers without their own
    /// (and for every worker with `count_every_restart`).
    intensity: RestartHistory,
    count_every_restart: bool,
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
    ready_tx: mpsc::UnboundedSender<ReadyNote>,
    /// Taken by `run`.
    ready_rx: Option<mpsc::UnboundedReceiver<ReadyNote>>,
    tracker: TaskTracker,
    io_cancel: CancellationToken,
    pub(crate) output: Pump,
}

impl Runner {
    pub(crate) fn new(
        config: Config,
        events: broadcast::Sender<WorkerEvent>,
        exits_tx: mpsc::UnboundedSender<ExitNote>,
        tracker: TaskTracker,
    ) -> Self {
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        Runner {
            strategy: config.strategy,
            intensity: RestartHistory::new(config.max_restarts, config.period),
            count_every_restart: config.count_every_restart,
            workers: Vec::new(),
            next_key: 1,
            next_generation: 1,
            group: None,
            stop_queue: VecDeque::new(),
            shutting_down: false,
            events,
            exits_tx,
            ready_tx,
            ready_rx: Some(ready_rx),
            tracker,
            io_cancel: CancellationToken::new(),
            output: config.output,
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
        let mut readies = self.ready_rx.take().expect("run is called once");
        loop {
            if self.shutting_down && self.workers.iter().all(|w| w.proc.is_none()) {
                break;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                Some(note) = exits.recv() => self.on_exit(note).await,
                Some(note) = readies.recv() => self.on_ready(note).await,
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
        let startable = self.startable();
        let starts = self
            .workers
            .iter()
            .zip(startable)
            .filter_map(|(w, ok)| w.start_at.filter(|_| ok));
        let checks = self
            .workers
            .iter()
            .filter_map(|w| w.proc.as_ref())
            .filter(|p| !p.ready && !p.stopping)
            .flat_map(|p| [p.ready_at, p.ready_deadline])
            .flatten();
        starts.chain(checks).min()
    }

    /// Spawns the worker's process and its tasks. On an error nothing is
    /// spawned and the worker's state is left to the caller.
    async fn spawn(&mut self, idx: usize) -> Result<u32> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let w = &mut self.workers[idx];
        w.start_at = None;
        let identity = user::resolve(&w.spec)?;
        let spawned = process::spawn(process::command(&w.spec, identity.as_ref()));
        let mut child = spawned.map_err(|source| Error::Spawn {
            worker: w.spec.name.clone(),
            program: w.spec.program.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        let signal = ReadySignal {
            note: ReadyNote {
                key: w.key,
                generation,
            },
            tx: self.ready_tx.clone(),
        };
        let (channel, requests) = match w.spec.jsonl {
            true => {
                let (ch, rx) = Channel::new(w.name.clone());
                (Some(ch), Some(rx))
            }
            false => (None, None),
        };
        let now = Instant::now();
        let check = ReadyCheck::begin(
            &w.spec,
            signal,
            channel.as_deref(),
            &self.tracker,
            &self.io_cancel,
            now,
        );
        if let (Some(stdin), Some(rx)) = (child.stdin.take(), requests) {
            self.tracker
                .spawn(jsonl::write_requests(stdin, rx, self.io_cancel.clone()));
        }
        // The pipes leave this thread's runtime: the output thread reads them.
        let pipes = [
            (
                child.stdout.take().map(|p| p.into_owned_fd()),
                Stream::Stdout,
            ),
            (
                child.stderr.take().map(|p| p.into_owned_fd()),
                Stream::Stderr,
            ),
        ];
        for (pipe, stream) in pipes {
            match pipe {
                Some(Ok(fd)) => self.output.read(
                    fd,
                    stream,
                    w.output.clone(),
                    channel.clone().filter(|_| stream == Stream::Stdout),
                    self.io_cancel.clone(),
                    &self.tracker,
                ),
                Some(Err(err)) => {
                    tracing::warn!(worker = %w.name, stream = stream.as_str(), %err, "cannot hand worker output to the output thread")
                }
                None => {}
            }
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
        let ready_now = check.ready;
        w.proc = Some(Proc {
            pid,
            generation,
            control,
            started: now,
            channel,
            stopping: false,
            ready: check.ready,
            ready_at: check.at,
            ready_deadline: check.deadline,
            probe: check.probe,
            start_failure: None,
        });
        w.intent = Intent::Policy;
        w.operator_start = false;
        w.retry_reason = None;
        w.set_state(match ready_now {
            true => WorkerState::Running { pid },
            false => WorkerState::Starting { pid: Some(pid) },
        });
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
            Intent::Policy => match proc.start_failure {
                Some(reason) => self.failed_start(idx, reason),
                None if !proc.ready => {
                    self.failed_start(idx, format!("exited before ready: {exit}"));
                }
                None => {
                    let uptime = proc.started.elapsed();
                    self.on_crash(idx, exit, uptime).await;
                }
            },
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
                w.set_state(WorkerState::Backoff {
                    remaining_ms: 0,
                    reason: None,
                });
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

    /// Applies passed readiness deadlines, then starts, in start order, the
    /// workers whose start is due and that the strategy lets start (see
    /// [`startable`](Self::startable); a worker started here that is not
    /// ready at once holds back the ones after it).
    async fn on_timer(&mut self) {
        let now = Instant::now();
        self.check_readiness(now);
        let ordered = self.strategy != Strategy::OneForOne;
        let mut idx = 0;
        while idx < self.workers.len() {
            if self.workers[idx].start_at.is_some_and(|at| at <= now) {
                self.start_due(idx).await;
            }
            if ordered && self.workers[idx].on_its_way_up() {
                break;
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
        let mut to_stop = Vec::new();
        for w in self.workers.iter_mut().rev() {
            w.start_at = None;
            if w.proc.is_some() {
                if w.intent != Intent::Delete {
                    w.intent = Intent::Shutdown;
                }
                to_stop.push(w.key);
            } else if matches!(
                w.state,
                WorkerState::Backoff { .. } | WorkerState::Starting { .. }
            ) {
                w.operator_start = false;
                w.set_state(WorkerState::Stopped);
                w.settle(|| Error::Shutdown);
                stopped.push(w.spec.name.clone());
            }
        }
        for name in stopped {
            self.emit(WorkerEvent::Stopped { name });
        }
        self.stop_all(to_stop);
    }

    /// Stops the workers `keys` (given in reverse start order): all at once
    /// under `OneForOne`; one after the other, in that order, under the
    /// ordered strategies (through the stop queue).
    fn stop_all(&mut self, keys: Vec<u64>) {
        if self.strategy == Strategy::OneForOne {
            for key in keys {
                if let Some(idx) = self.index_of_key(key) {
                    self.send_stop(idx);
                }
            }
        } else {
            self.stop_queue.extend(keys);
            self.pump_stops();
        }
    }
}
