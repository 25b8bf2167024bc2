//! The supervisor's decisions, as pure functions of their inputs.
//!
//! Should this exit be restarted? Has restart intensity been exceeded? Which
//! workers does the strategy restart, and in which order are they stopped?
//! How long is the backoff? Nothing here touches a process, a clock or a
//! channel: the owning task (runner.rs) passes `now` and randomness in, which
//! keeps these rules unit-tested without processes.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use super::spec::{Backoff, Restart, Strategy};
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

/// Restart intensity: at most `max` restarts within any `period`.
#[derive(Debug)]
pub(crate) struct Intensity {
    max: u32,
    period: Duration,
    /// Recent restarts: when, which worker, and the exit that caused it.
    history: VecDeque<(Instant, String, Exit)>,
}

impl Intensity {
    pub(crate) fn new(max: u32, period: Duration) -> Self {
        Intensity {
            max,
            period,
            history: VecDeque::new(),
        }
    }

    /// Records a restart caused by `worker`'s `exit` at `now`; gives up when
    /// that makes more than `max` restarts within `period`.
    pub(crate) fn record(&mut self, now: Instant, worker: &str, exit: Exit) -> Verdict {
        while let Some((at, _, _)) = self.history.front() {
            if now.saturating_duration_since(*at) >= self.period {
                self.history.pop_front();
            } else {
                break;
            }
        }
        self.history.push_back((now, worker.to_owned(), exit));
        if self.history.len() as u64 <= u64::from(self.max) {
            return Verdict::Restart;
        }
        let last: Vec<String> = self
            .history
            .iter()
            .rev()
            .take(5)
            .map(|(_, name, exit)| format!("{name}: {exit}"))
            .collect();
        let reason = format!(
            "more than {} restarts in {:?}; last exits: {}",
            self.max,
            self.period,
            last.join(", ")
        );
        self.history.clear();
        Verdict::GiveUp(reason)
    }

    /// Forgets past restarts (after the operator brings a failed worker back).
    pub(crate) fn clear(&mut self) {
        self.history.clear();
    }
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
        let mut i = Intensity::new(2, Duration::from_secs(5));
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
        let mut i = Intensity::new(1, Duration::from_secs(5));
        assert_eq!(i.record(t0, "a", Exit::Code(1)), Verdict::Restart);
        let later = t0 + Duration::from_secs(6);
        assert_eq!(i.record(later, "a", Exit::Code(1)), Verdict::Restart);
    }

    #[test]
    fn zero_max_restarts_gives_up_at_the_first_crash() {
        let mut i = Intensity::new(0, Duration::from_secs(5));
        assert!(matches!(
            i.record(Instant::now(), "a", Exit::Code(1)),
            Verdict::GiveUp(_)
        ));
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
