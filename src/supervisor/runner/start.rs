//! Starting a worker (the spawn itself is `Runner::spawn` in runner.rs):
//! where a failed spawn goes (to the caller that asked for the start, or counted as a crash
//! when the policy made it), which workers an ordered strategy lets start,
//! and readiness: the signals of the checks, `after`, and `ready_timeout`.
//!
//! Methods of the runner (runner.rs), run inside its loop; no task of their
//! own, except the TCP readiness probe (ready.rs) that [`ReadyCheck::begin`]
//! starts.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::super::error::Error;
use super::super::event::WorkerEvent;
use super::super::jsonl::Channel;
use super::super::process::Control;
use super::super::ready::{self, ReadyNote, ReadySignal};
use super::super::spec::{Readiness, Strategy, WorkerSpec};
use super::super::status::WorkerState;
use super::{ReadyCheck, Runner};

impl Runner {
    /// Which workers may be started now, by the strategy: all under
    /// `OneForOne`; under the ordered strategies, those before the first
    /// worker (in start order) that is still on its way up, and that one.
    pub(super) fn startable(&self) -> Vec<bool> {
        let ordered = self.strategy != Strategy::OneForOne;
        let mut blocked = false;
        self.workers
            .iter()
            .map(|w| {
                let allowed = !blocked;
                blocked |= ordered && w.on_its_way_up();
                allowed
            })
            .collect()
    }

    /// A start the operator asked for could not spawn the worker: it goes
    /// to `Failed` with the reason, and every caller waiting for that start
    /// gets the error. Returns the error for the caller that asked.
    pub(super) fn refuse_start(&mut self, idx: usize, err: Error) -> Error {
        let w = &mut self.workers[idx];
        let reason = err.start_failure().unwrap_or_else(|| err.to_string());
        tracing::warn!(worker = %w.name, %reason, "worker cannot be started");
        w.start_at = None;
        w.operator_start = false;
        w.set_state(WorkerState::Failed {
            reason: reason.clone(),
        });
        w.settle(|| err.copy_start_error());
        let name = w.spec.name.clone();
        self.emit(WorkerEvent::Failed { name, reason });
        err
    }

    /// Spawns a worker at the operator's request (after a `restart_worker`
    /// or `start_existing` of a worker that was still stopping); a failure
    /// leaves it `Failed` (see [`refuse_start`](Self::refuse_start)).
    pub(super) async fn respawn(&mut self, idx: usize) {
        if let Err(err) = self.spawn(idx).await {
            self.refuse_start(idx, err);
        }
    }

    /// Starts a worker whose start is due: one held for an ordered strategy
    /// (its spawn error goes to its caller) or a restart (its spawn error is
    /// a failed start, counted as a crash).
    pub(super) async fn start_due(&mut self, idx: usize) {
        let asked = self.workers[idx].operator_start;
        match self.spawn(idx).await {
            Ok(_) => {}
            Err(err) if asked => {
                self.refuse_start(idx, err);
            }
            Err(err) => {
                let reason = err.start_failure().unwrap_or_else(|| err.to_string());
                self.failed_start(idx, reason);
                self.advance_group_sync();
            }
        }
    }

    /// A readiness check passed.
    pub(super) async fn on_ready(&mut self, note: ReadyNote) {
        let Some(idx) = self.index_of_key(note.key) else {
            return;
        };
        let current = self.workers[idx].proc.as_ref().map(|p| p.generation);
        if current == Some(note.generation) {
            self.mark_ready(idx);
            self.on_timer().await;
        }
    }

    /// The worker's process is ready: `Running`, and `Ready` is sent.
    pub(super) fn mark_ready(&mut self, idx: usize) {
        let w = &mut self.workers[idx];
        let Some(p) = &mut w.proc else { return };
        if p.ready || p.stopping || p.start_failure.is_some() {
            return;
        }
        p.ready = true;
        p.ready_at = None;
        p.ready_deadline = None;
        p.probe = None;
        let pid = p.pid;
        tracing::info!(worker = %w.name, pid, "worker ready");
        w.set_state(WorkerState::Running { pid });
        let name = w.spec.name.clone();
        self.emit(WorkerEvent::Ready { name, pid });
    }

    /// Applies the readiness deadlines that have passed: `after` makes the
    /// worker ready; `ready_timeout` kills its group, and its exit is then a
    /// failed start.
    pub(super) fn check_readiness(&mut self, now: Instant) {
        for idx in 0..self.workers.len() {
            let w = &mut self.workers[idx];
            let Some(p) = &mut w.proc else { continue };
            if p.ready || p.stopping || p.start_failure.is_some() {
                continue;
            }
            if p.ready_at.is_some_and(|at| at <= now) {
                self.mark_ready(idx);
            } else if p.ready_deadline.is_some_and(|at| at <= now) {
                let reason = format!(
                    "not ready within {}",
                    humantime::format_duration(w.spec.ready_timeout)
                );
                tracing::warn!(worker = %w.name, pid = p.pid, %reason, "worker not ready in time; killing its group");
                p.ready_deadline = None;
                p.probe = None;
                p.start_failure = Some(reason);
                let _ = p.control.send(Control::Stop {
                    signal: nix::sys::signal::Signal::SIGKILL,
                    timeout: Duration::ZERO,
                });
            }
        }
    }
}

impl ReadyCheck {
    /// Sets up the readiness check of a process spawned `now` for `spec`:
    /// ready at once without one; a deadline for `after`; the ready line
    /// expected on the call channel; a TCP probe task (ended by the returned
    /// guard, or by `io_cancel`); and the `ready_timeout` deadline.
    pub(super) fn begin(
        spec: &WorkerSpec,
        signal: ReadySignal,
        channel: Option<&Channel>,
        tracker: &TaskTracker,
        io_cancel: &CancellationToken,
        now: Instant,
    ) -> ReadyCheck {
        let mut check = ReadyCheck::default();
        match (spec.ready, channel) {
            (None, _) => check.ready = true,
            (Some(Readiness::After(after)), _) => check.at = Some(now + after),
            (Some(Readiness::Jsonl), Some(ch)) => ch.expect_ready(signal),
            // Refused by start_worker; treated as ready should it get here.
            (Some(Readiness::Jsonl), None) => check.ready = true,
            (Some(Readiness::Tcp(addr)), _) => {
                let token = io_cancel.child_token();
                tracker.spawn(ready::probe_tcp(addr, signal, token.clone()));
                check.probe = Some(token.drop_guard());
            }
        }
        if !check.ready {
            check.deadline = Some(now + spec.ready_timeout);
        }
        check
    }
}
