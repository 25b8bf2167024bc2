//! What happens after a crash or a failed start (both count alike): the
//! restart type, restart intensity and the strategy decide (via policy.rs),
//! and this file carries it out: the group
//! of workers to restart, their stop in reverse start order (one at a time,
//! through the stop queue), their start in start order, giving up, and
//! failing one worker alone when its own intensity is exceeded.
//!
//! Methods of the runner (runner.rs), run inside its loop; no task of their own.

use std::time::Duration;

use tokio::time::Instant;

use super::super::error::Error;
use super::super::event::WorkerEvent;
use super::super::policy::{self, CrashVerdict};
use super::super::spec::Restart;
use super::super::status::{Exit, WorkerState};
use super::{Intent, Runner};

/// A strategy restart in progress: members are stopped (in reverse start
/// order, through the stop queue), then started again in start order.
pub(super) struct Group {
    /// Keys, and whether each is to be started again (temporary siblings are not).
    pub(super) members: Vec<(u64, bool)>,
    pub(super) delay: Duration,
}

impl Runner {
    /// A worker ended by itself: its restart type, intensity and strategy decide.
    pub(super) async fn on_crash(&mut self, idx: usize, exit: Exit, uptime: Duration) {
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
        self.crash(idx, exit.to_string());
    }

    /// A start made by the policy failed (its spawn, or its readiness): a
    /// crash for intensity, retried after the worker's backoff, the reason
    /// in its `Backoff` state and its `Restarting` event. A temporary worker
    /// is not restarted: it goes to `Failed`. The caller advances the group.
    pub(super) fn failed_start(&mut self, idx: usize, reason: String) {
        let w = &mut self.workers[idx];
        tracing::warn!(worker = %w.name, %reason, "worker failed to start");
        if w.spec.restart == Restart::Temporary {
            self.fail_alone(idx, reason);
            return;
        }
        w.retry_reason = Some(reason.clone());
        self.crash(idx, reason);
    }

    /// Counts a crash (`cause`: the exit, or why the start failed) and
    /// restarts the strategy's group, or gives up.
    fn crash(&mut self, idx: usize, cause: String) {
        let w = &mut self.workers[idx];
        let now = Instant::now().into_std();
        match policy::judge_crash(
            w.history.as_mut(),
            &mut self.intensity,
            self.count_every_restart,
            now,
            &w.name,
            &cause,
        ) {
            CrashVerdict::Restart => {}
            CrashVerdict::FailWorker(reason) => {
                self.fail_alone(idx, reason);
                return;
            }
            CrashVerdict::GiveUp(reason) => {
                self.give_up(reason);
                return;
            }
        }
        let w = &mut self.workers[idx];
        w.streak += 1;
        let delay = policy::backoff_delay(w.spec.backoff.as_ref(), w.streak, rand::random());
        let crashed = w.key;
        let sibling_reason = format!("restarted with {}: {cause}", w.name);
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
                w.set_state(WorkerState::Backoff {
                    remaining_ms: 0,
                    reason: None,
                });
            }
            if again {
                w.restarts += 1;
                let name = w.spec.name.clone();
                let reason = match w.key == crashed {
                    true => cause.clone(),
                    false => sibling_reason.clone(),
                };
                self.emit(WorkerEvent::Restarting {
                    name,
                    delay,
                    reason,
                });
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
    pub(super) fn give_up(&mut self, reason: String) {
        tracing::error!(%reason, "supervisor gave up");
        self.emit(WorkerEvent::GaveUp {
            reason: reason.clone(),
        });
        self.group = None;
        self.stop_queue.clear();
        let mut failed = Vec::new();
        let mut to_stop = Vec::new();
        for w in self.workers.iter_mut().rev() {
            w.start_at = None;
            if w.proc.is_some() {
                if !matches!(w.intent, Intent::Delete | Intent::Stop) {
                    w.intent = Intent::Fail(reason.clone());
                }
                to_stop.push(w.key);
            } else if matches!(
                w.state,
                WorkerState::Backoff { .. }
                    | WorkerState::Starting { .. }
                    | WorkerState::Running { .. }
                    | WorkerState::Stopping { .. }
            ) {
                // Waiting for a start, or the worker whose crash was one too many.
                w.operator_start = false;
                w.set_state(WorkerState::Failed {
                    reason: reason.clone(),
                });
                w.settle(|| Error::GaveUp {
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
        self.stop_all(to_stop);
    }

    /// The worker's own intensity is exceeded (or a temporary worker failed
    /// to start): it alone goes to `Failed` and stays there until the
    /// operator starts it. Its process has already ended (its crash is what
    /// counted); no group restart follows and the other workers are left as
    /// they are.
    pub(super) fn fail_alone(&mut self, idx: usize, reason: String) {
        self.detach(idx);
        let w = &mut self.workers[idx];
        tracing::error!(worker = %w.name, %reason, "worker failed; it stays down until started");
        w.start_at = None;
        w.set_state(WorkerState::Failed {
            reason: reason.clone(),
        });
        w.settle(|| Error::GaveUp {
            reason: reason.clone(),
        });
        let name = w.spec.name.clone();
        self.emit(WorkerEvent::Failed { name, reason });
    }

    /// Sends the stop to the head of the stop queue, once the previous one is down.
    pub(super) fn pump_stops(&mut self) {
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
    pub(super) fn group_ready(&self) -> bool {
        self.group.as_ref().is_some_and(|g| {
            g.members.iter().all(|&(k, _)| {
                self.index_of_key(k)
                    .is_none_or(|i| self.workers[i].proc.is_none())
            })
        })
    }

    /// After an operator command: a group waiting on nothing more can be
    /// scheduled without spawning here (the timer arm spawns).
    pub(super) fn advance_group_sync(&mut self) {
        if self.group_ready() {
            let g = self.group.take().expect("ready implies some");
            let at = Instant::now() + g.delay;
            self.schedule(g, at);
        }
    }

    pub(super) fn schedule(&mut self, g: Group, at: Instant) {
        for (key, again) in g.members {
            let Some(i) = self.index_of_key(key) else {
                continue;
            };
            let w = &mut self.workers[i];
            if again {
                w.start_at = Some(at);
                w.set_state(WorkerState::Backoff {
                    remaining_ms: 0,
                    reason: None,
                });
            } else {
                w.set_state(WorkerState::Stopped);
                let name = w.spec.name.clone();
                self.emit(WorkerEvent::Stopped { name });
            }
        }
    }

    /// Starts the group once its members are down: at once without backoff
    /// (in start order), else at its deadline.
    pub(super) async fn advance_group(&mut self) {
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
}
