//! The supervisor's decisions, as pure functions of their inputs.
//!
//! Should this exit be restarted? Has restart intensity been exceeded, the
//! worker's own or the supervisor's, and who fails then? Which workers does
//! the strategy restart, and in which order are they stopped?
//! How long is the backoff? Nothing here touches a process, a clock or a
//! channel: the owning task (runner.rs) passes `now` and randomness in, which
//! keeps these rules unit-tested without processes.

use std::collections::VecDeque;
use std::fmt::Display;
use std::ops::Range;
use std::time::{Duration, Instant};

use super::spec::{Backoff, Intensity, Restart, Strategy};
use super::status::Exit;

/// Whether an exit is normal: one of the normal codes. A signal is never normal.
pub(crate) fn is_normal_exit(exit: Exit, normal_codes: &[i32]) -> bool {
    matches!(exit, Exit::Code(code) if normal_codes.contains(&code))
}

/// Whether a worker that ended by itself is restarted, by its restart type.
pub(crate) fn should_restart(restart: Restart, exit: Exit, normal_codes: &[i32]) -> bool {
    match restart {
        Restart::Permanent => true,
        Restart::Transient => !is_normal_exit(exit, normal_codes),
        Restart::Temporary => false,
    }
}

/// The workers (as start-order indices) the strategy restarts when the worker
/// at `crashed` of `len` crashes.
pub(crate) fn restart_set(strategy: Strategy, len: usize, crashed: usize) -> Range<usize> {
    match strategy {
        Strategy::OneForOne => crashed..crashed + 1,
        Strategy::OneForAll => 0..len,
        Strategy::RestForOne => crashed..len,
    }
}

/// The order in which to stop workers (start-order indices): the one started
/// last first, each once.
pub(crate) fn stop_order(mut indices: Vec<usize>) -> Vec<usize> {
    indices.sort_unstable_by(|a, b| b.cmp(a));
    indices.dedup();
    indices
}

/// The verdict on one more restart.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the limit: restart.
    Restart,
    /// Over the limit: give up, for this reason.
    GiveUp(String),
}

/// Restart intensity and the restarts it counts: at most `max` restarts
/// within any `period`. The supervisor has one; so does each worker with its
/// own [`Intensity`](super::spec::Intensity).
#[derive(Debug)]
pub(crate) struct RestartHistory {
    max: u32,
    period: Duration,
    /// The worker whose own history this is; `None` for the supervisor's.
    owner: Option<String>,
    /// Recent restarts: when, which worker, and what caused it (an exit, or
    /// a failed start).
    history: VecDeque<(Instant, String, String)>,
}

impl RestartHistory {
    /// The supervisor's history, shared by the workers without their own.
    pub(crate) fn new(max: u32, period: Duration) -> Self {
        RestartHistory {
            max,
            period,
            owner: None,
            history: VecDeque::new(),
        }
    }

    /// A worker's own history, by its own intensity.
    pub(crate) fn of_worker(worker: &str, intensity: Intensity) -> Self {
        RestartHistory {
            owner: Some(worker.to_owned()),
            ..Self::new(intensity.max_restarts, intensity.period)
        }
    }

    /// Records a restart caused by `worker`'s `cause` (its exit, or why its
    /// start failed) at `now`; gives up when that makes more than `max`
    /// restarts within `period`.
    pub(crate) fn record(&mut self, now: Instant, worker: &str, cause: impl Display) -> Verdict {
        while let Some((at, _, _)) = self.history.front() {
            if now.saturating_duration_since(*at) >= self.period {
                self.history.pop_front();
            } else {
                break;
            }
        }
        self.history
            .push_back((now, worker.to_owned(), cause.to_string()));
        if self.history.len() as u64 <= u64::from(self.max) {
            return Verdict::Restart;
        }
        let last = self.history.iter().rev().take(5);
        let reason = match &self.owner {
            None => format!(
                "more than {} restarts in {:?}; last exits: {}",
                self.max,
                self.period,
                last.map(|(_, name, exit)| format!("{name}: {exit}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(owner) => format!(
                "worker {owner}: more than {} restarts in {:?} (its own limit); last exits: {}",
                self.max,
                self.period,
                last.map(|(_, _, exit)| exit.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        self.history.clear();
        Verdict::GiveUp(reason)
    }

    /// Forgets past restarts (after the operator brings a failed worker back).
    pub(crate) fn clear(&mut self) {
        self.history.clear();
    }
}

/// What follows a crash that the worker's restart type restarts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CrashVerdict {
    /// Within the limits: restart it (and its strategy's group).
    Restart,
    /// The worker's own intensity is exceeded: it alone fails, for this
    /// reason; no group restart, the supervisor goes on.
    FailWorker(String),
    /// The supervisor's intensity is exceeded: it gives up on every worker.
    GiveUp(String),
}

/// Counts a crash of `worker` at `now` (an exit, or a failed start: both
/// count alike) in the history it belongs to: the worker's own (`own`) if it
/// has one, else the supervisor's; with `count_every`, a crash within the
/// worker's own limit is then counted in the supervisor's too.
pub(crate) fn judge_crash(
    own: Option<&mut RestartHistory>,
    supervisor: &mut RestartHistory,
    count_every: bool,
    now: Instant,
    worker: &str,
    cause: impl Display,
) -> CrashVerdict {
    match own {
        Some(own) => match own.record(now, worker, &cause) {
            Verdict::GiveUp(reason) => CrashVerdict::FailWorker(reason),
            Verdict::Restart if !count_every => CrashVerdict::Restart,
            Verdict::Restart => match supervisor.record(now, worker, cause) {
                Verdict::Restart => CrashVerdict::Restart,
                Verdict::GiveUp(reason) => CrashVerdict::GiveUp(reason),
            },
        },
        None => match supervisor.record(now, worker, cause) {
            Verdict::Restart => CrashVerdict::Restart,
            Verdict::GiveUp(reason) => CrashVerdict::GiveUp(reason),
        },
    }
}

/// Which histories an operator's start of a worker forgets: none unless the
/// worker was `Failed`; then its own if it has one, else the supervisor's.
/// (A worker failed alone leaves the others' budget as it is.)
pub(crate) fn operator_start_forgets(failed: bool, has_own: bool) -> Forget {
    match (failed, has_own) {
        (false, _) => Forget::Nothing,
        (true, true) => Forget::Own,
        (true, false) => Forget::Supervisor,
    }
}

/// See [`operator_start_forgets`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Forget {
    Nothing,
    Own,
    Supervisor,
}

/// The delay before the `streak`-th consecutive restart (1-based); zero
/// without backoff. `unit_random` is uniform in `[0, 1)`.
pub(crate) fn backoff_delay(backoff: Option<&Backoff>, streak: u32, unit_random: f64) -> Duration {
    let Some(b) = backoff else {
        return Duration::ZERO;
    };
    let doublings = streak.saturating_sub(1).min(32);
    let base = b
        .initial
        .checked_mul(1u32 << doublings.min(31))
        .unwrap_or(b.max)
        .min(b.max);
    let spread = (unit_random * 2.0 - 1.0) * b.jitter.clamp(0.0, 1.0);
    base.mul_f64((1.0 + spread).max(0.0))
}

/// Whether a worker that ran for `uptime` starts a new backoff streak.
pub(crate) fn resets_streak(backoff: Option<&Backoff>, uptime: Duration) -> bool {
    backoff.is_none_or(|b| uptime > b.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NORMAL: &[i32] = &[0];

    #[test]
    fn permanent_workers_restart_after_any_exit() {
        for exit in [Exit::Code(0), Exit::Code(1), Exit::Signal(9)] {
            assert!(should_restart(Restart::Permanent, exit, NORMAL));
        }
    }

    #[test]
    fn transient_workers_restart_only_after_abnormal_exits() {
        assert!(!should_restart(Restart::Transient, Exit::Code(0), NORMAL));
        assert!(should_restart(Restart::Transient, Exit::Code(1), NORMAL));
        assert!(should_restart(Restart::Transient, Exit::Signal(15), NORMAL));
        assert!(!should_restart(Restart::Transient, Exit::Code(3), &[0, 3]));
    }

    #[test]
    fn temporary_workers_never_restart() {
        assert!(!should_restart(Restart::Temporary, Exit::Signal(9), NORMAL));
    }

    #[test]
    fn strategies_pick_their_sets() {
        assert_eq!(restart_set(Strategy::OneForOne, 4, 1), 1..2);
        assert_eq!(restart_set(Strategy::OneForAll, 4, 1), 0..4);
        assert_eq!(restart_set(Strategy::RestForOne, 4, 1), 1..4);
    }

    #[test]
    fn siblings_stop_in_reverse_start_order() {
        assert_eq!(stop_order(vec![1, 3, 2, 3]), vec![3, 2, 1]);
        assert_eq!(stop_order(vec![]), Vec::<usize>::new());
    }

    #[test]
    fn intensity_gives_up_on_more_than_max_restarts_within_the_period() {
        let t0 = Instant::now();
        let mut i = RestartHistory::new(2, Duration::from_secs(5));
        assert_eq!(i.record(t0, "a", Exit::Code(1)), Verdict::Restart);
        assert_eq!(
            i.record(t0 + Duration::from_secs(1), "a", Exit::Code(1)),
            Verdict::Restart
        );
        match i.record(t0 + Duration::from_secs(2), "b", Exit::Signal(9)) {
            Verdict::GiveUp(reason) => {
                assert!(reason.contains("more than 2 restarts"), "{reason}");
                assert!(reason.contains("b: signal 9 (SIGKILL)"), "{reason}");
            }
            v => panic!("expected to give up, got {v:?}"),
        }
    }

    #[test]
    fn restarts_older_than_the_period_are_forgotten() {
        let t0 = Instant::now();
        let mut i = RestartHistory::new(1, Duration::from_secs(5));
        assert_eq!(i.record(t0, "a", Exit::Code(1)), Verdict::Restart);
        let later = t0 + Duration::from_secs(6);
        assert_eq!(i.record(later, "a", Exit::Code(1)), Verdict::Restart);
    }

    #[test]
    fn zero_max_restarts_gives_up_at_the_first_crash() {
        let mut i = RestartHistory::new(0, Duration::from_secs(5));
        assert!(matches!(
            i.record(Instant::now(), "a", Exit::Code(1)),
            Verdict::GiveUp(_)
        ));
    }

    fn own(max_restarts: u32) -> RestartHistory {
        RestartHistory::of_worker(
            "w",
            Intensity {
                max_restarts,
                period: Duration::from_secs(5),
            },
        )
    }

    #[test]
    fn counting_every_restart_caps_the_node_above_each_workers_own_limit() {
        let t0 = Instant::now();
        let mut sup = RestartHistory::new(2, Duration::from_secs(5));
        let (mut a, mut b) = (own(5), own(5));
        for (w, name) in [(&mut a, "a"), (&mut b, "b")] {
            let v = judge_crash(Some(w), &mut sup, true, t0, name, Exit::Code(1));
            assert_eq!(v, CrashVerdict::Restart);
        }
        // Each is within its own 5; the third restart on the node is over the supervisor's 2.
        match judge_crash(Some(&mut a), &mut sup, true, t0, "a", Exit::Code(1)) {
            CrashVerdict::GiveUp(reason) => assert!(reason.contains("more than 2"), "{reason}"),
            v => panic!("expected the supervisor to give up, got {v:?}"),
        }
        // A worker over its own limit still fails alone first.
        let mut sup = RestartHistory::new(100, Duration::from_secs(5));
        let mut w = own(0);
        assert!(matches!(
            judge_crash(Some(&mut w), &mut sup, true, t0, "w", Exit::Code(1)),
            CrashVerdict::FailWorker(_)
        ));
    }

    #[test]
    fn a_worker_with_its_own_intensity_fails_alone_and_spares_the_supervisors_budget() {
        let t0 = Instant::now();
        let mut sup = RestartHistory::new(0, Duration::from_secs(5));
        let mut w = own(1);
        let v = judge_crash(Some(&mut w), &mut sup, false, t0, "w", Exit::Code(1));
        assert_eq!(v, CrashVerdict::Restart);
        match judge_crash(Some(&mut w), &mut sup, false, t0, "w", Exit::Signal(9)) {
            CrashVerdict::FailWorker(reason) => {
                assert!(
                    reason.starts_with("worker w: more than 1 restarts"),
                    "{reason}"
                );
                assert!(
                    reason.ends_with("last exits: signal 9 (SIGKILL), exit code 1"),
                    "{reason}"
                );
            }
            v => panic!("expected the worker to fail alone, got {v:?}"),
        }
        // The supervisor's budget (0) was never touched: one crash of a
        // worker without its own intensity still is its first.
        assert!(matches!(
            judge_crash(None, &mut sup, false, t0, "x", Exit::Code(1)),
            CrashVerdict::GiveUp(_)
        ));
    }

    #[test]
    fn workers_without_their_own_intensity_count_against_the_supervisor() {
        let t0 = Instant::now();
        let mut sup = RestartHistory::new(1, Duration::from_secs(5));
        let mut w = own(0);
        assert_eq!(
            judge_crash(None, &mut sup, false, t0, "a", Exit::Code(1)),
            CrashVerdict::Restart
        );
        match judge_crash(None, &mut sup, false, t0, "b", Exit::Code(2)) {
            CrashVerdict::GiveUp(reason) => {
                assert!(
                    reason.contains("b: exit code 2, a: exit code 1"),
                    "{reason}"
                )
            }
            v => panic!("expected the supervisor to give up, got {v:?}"),
        }
        // A worker's own limit of 0 fails it at its first crash.
        assert!(matches!(
            judge_crash(Some(&mut w), &mut sup, false, t0, "w", Exit::Code(1)),
            CrashVerdict::FailWorker(_)
        ));
    }

    #[test]
    fn a_workers_own_restarts_older_than_its_period_are_forgotten() {
        let t0 = Instant::now();
        let mut sup = RestartHistory::new(0, Duration::from_secs(5));
        let mut w = own(1);
        let later = t0 + Duration::from_secs(6);
        for at in [t0, later] {
            assert_eq!(
                judge_crash(Some(&mut w), &mut sup, false, at, "w", Exit::Code(1)),
                CrashVerdict::Restart
            );
        }
    }

    #[test]
    fn an_operator_start_of_a_failed_worker_forgets_the_history_that_failed_it() {
        assert_eq!(operator_start_forgets(false, true), Forget::Nothing);
        assert_eq!(operator_start_forgets(false, false), Forget::Nothing);
        assert_eq!(operator_start_forgets(true, true), Forget::Own);
        assert_eq!(operator_start_forgets(true, false), Forget::Supervisor);
    }

    #[test]
    fn no_backoff_means_immediate_restarts() {
        assert_eq!(backoff_delay(None, 5, 0.9), Duration::ZERO);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b =
            Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1)).jitter(0.0);
        let d: Vec<u128> = (1..=6)
            .map(|n| backoff_delay(Some(&b), n, 0.5).as_millis())
            .collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff_delay(Some(&b), 1000, 0.5), Duration::from_secs(1));
    }

    #[test]
    fn jitter_spreads_the_delay_within_its_fraction() {
        let b =
            Backoff::exponential(Duration::from_millis(1000), Duration::from_secs(10)).jitter(0.2);
        assert_eq!(backoff_delay(Some(&b), 1, 0.0), Duration::from_millis(800));
        assert_eq!(backoff_delay(Some(&b), 1, 0.5), Duration::from_millis(1000));
        assert!(backoff_delay(Some(&b), 1, 0.999_999) <= Duration::from_millis(1200));
    }

    #[test]
    fn a_long_uptime_resets_the_backoff_streak() {
        let b = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1));
        assert!(!resets_streak(Some(&b), Duration::from_millis(500)));
        assert!(resets_streak(Some(&b), Duration::from_secs(2)));
        assert!(resets_streak(None, Duration::ZERO));
    }
}
