//! The supervisor's owning task: every worker's state lives here, and every
//! change happens here, one event at a time.
//!
//! [`Runner::run`] runs on the supervisor's own thread, in a current-thread
//! runtime that `Builder::start` creates there (tracked by the supervisor's
//! `TaskTracker`), with every task it spawns; it loops over four sources in a `select!`: exits reported
//! by process tasks, commands from `Supervisor` handles (each with a oneshot
//! reply), the earliest backoff deadline, and the cancellation token. The
//! decisions are policy.rs's pure functions; this file applies them. No lock
//! is held across an `.await`, and the loop never waits on a worker: a
//! spawn blocks only until the exec has happened.
//!
//! The operator's commands are in `runner/operator.rs`, what follows a crash
//! (strategy groups, intensity, giving up, failing one worker alone) in
//! `runner/group.rs`, and the
//! per-worker record in `runner/worker.rs`.
//!
//! The workers' output is read on the output thread (`output/pump.rs`):
//! [`Runner::spawn`] hands each new process's stdout and stderr there.
//!
//! It stops after a shutdown (cancellation, or the last handle dropped):
//! every worker is stopped in reverse start order, one at a time; when no
//! process is left, it cancels the I/O token (ending the output readers and
//! request writers) and returns.

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
use super::spec::{Strategy, WorkerSpec};
use super::status::{Exit, Tail, WorkerState, WorkerStatus};
use super::user;

mod group;
mod operator;
mod worker;

use group::Group;
use worker::{Intent, Proc, Waiter, Worker};

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
    /// Where the workers' output is read (off this thread).
    pub output: Pump,
}

/// The owning task's state.
pub(crate) struct Runner {
    strategy: Strategy,
    /// The supervisor-wide restart intensity, for workers without their own.
    intensity: RestartHistory,
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
    pub(crate) output: Pump,
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
            intensity: RestartHistory::new(config.max_restarts, config.period),
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

    /// Spawns the worker's process and its tasks.
    async fn spawn(&mut self, idx: usize) -> Result<u32> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let w = &mut self.workers[idx];
        w.start_at = None;
        w.set_state(WorkerState::Starting);
        let identity = user::resolve(&w.spec)?;
        let spawned = process::spawn(process::command(&w.spec, identity.as_ref()));
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
