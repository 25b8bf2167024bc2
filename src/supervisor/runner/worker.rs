//! The owning task's record of one worker: its spec, state, current
//! process, what to do when that process ends, and who waits for it.
//!
//! Plain data owned by the runner (runner.rs); no task runs here.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::DropGuard;

use super::super::error::Error;
use super::super::jsonl::Channel;
use super::super::output::Output;
use super::super::policy::RestartHistory;
use super::super::process::Control;
use super::super::spec::WorkerSpec;
use super::super::status::{Exit, WorkerState, WorkerStatus};
use super::Reply;

/// What to do when a worker's current process ends.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Intent {
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

pub(super) enum Waiter {
    Started(Reply<u32>),
    Stopped(Reply<()>),
}

pub(super) struct Proc {
    pub(super) pid: u32,
    pub(super) generation: u64,
    pub(super) control: mpsc::UnboundedSender<Control>,
    pub(super) started: Instant,
    pub(super) channel: Option<Arc<Channel>>,
    pub(super) stopping: bool,
    /// Its readiness check passed (always, for a worker without one).
    pub(super) ready: bool,
    /// `Readiness::After`: when it becomes ready.
    pub(super) ready_at: Option<Instant>,
    /// When, not ready by then, its group is killed (`ready_timeout`).
    pub(super) ready_deadline: Option<Instant>,
    /// Ends the TCP readiness probe when dropped.
    pub(super) probe: Option<DropGuard>,
    /// Set when it was killed for not becoming ready: its exit is then a
    /// failed start, for this reason.
    pub(super) start_failure: Option<String>,
}

/// The readiness fields of a new [`Proc`], as `spawn` sets them up.
#[derive(Default)]
pub(super) struct ReadyCheck {
    pub(super) ready: bool,
    pub(super) at: Option<Instant>,
    pub(super) deadline: Option<Instant>,
    pub(super) probe: Option<DropGuard>,
}

pub(super) struct Worker {
    pub(super) key: u64,
    pub(super) name: Arc<str>,
    pub(super) spec: WorkerSpec,
    pub(super) state: WorkerState,
    pub(super) since: SystemTime,
    pub(super) restarts: u32,
    pub(super) last_exit: Option<Exit>,
    pub(super) proc: Option<Proc>,
    pub(super) intent: Intent,
    pub(super) waiters: Vec<Waiter>,
    /// A pending restart (state `Backoff`).
    pub(super) start_at: Option<Instant>,
    /// Consecutive restarts, for the backoff.
    pub(super) streak: u32,
    /// Its own restart intensity and history (`spec.intensity`); `None`:
    /// its crashes count against the supervisor's.
    pub(super) history: Option<RestartHistory>,
    pub(super) output: Arc<Output>,
    /// Its pending start was asked for by the owner (`start_worker` held
    /// for an ordered strategy): a spawn error then goes to the caller
    /// instead of counting as a crash.
    pub(super) operator_start: bool,
    /// Why its last start failed, while a restart is pending after it.
    pub(super) retry_reason: Option<String>,
}

impl Worker {
    pub(super) fn set_state(&mut self, state: WorkerState) {
        self.state = state;
        self.since = SystemTime::now();
    }

    /// Whether the worker is still on its way up: waiting for a start, or
    /// started and not ready yet. Under an ordered strategy the workers after
    /// it wait for it.
    pub(super) fn on_its_way_up(&self) -> bool {
        self.start_at.is_some()
            || matches!(
                self.state,
                WorkerState::Backoff { .. } | WorkerState::Starting { .. }
            )
    }

    pub(super) fn status(&self, now: Instant) -> WorkerStatus {
        let state = match self.state {
            WorkerState::Backoff { .. } => WorkerState::Backoff {
                remaining_ms: self
                    .start_at
                    .map_or(0, |at| at.saturating_duration_since(now).as_millis() as u64),
                reason: self.retry_reason.clone(),
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
    pub(super) fn settle(&mut self, started_error: impl Fn() -> Error) {
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
