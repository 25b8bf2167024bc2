//! Call deadlines that hold across hosts whose clocks disagree, and across a callee that was
//! frozen.
//!
//! Every request frame (`Call`, `System`) starts its body with two times on the caller's
//! monotonic clock (microseconds since the caller's process took its first reading):
//!
//! ```text
//! u64 sent (big endian) | u64 deadline | the caller's payload
//! ```
//!
//! The callee never compares those with its own clock directly. For each connection it keeps the
//! smallest `local receive time − sent` it has seen ([`PeerClock`]): the clocks' offset plus the
//! shortest travel time. Adding that to the caller's deadline gives the deadline on the callee's
//! clock, late by at most that shortest travel time (microseconds on a LAN). A frame read late
//! (the callee was stopped, or busy) shows a larger difference and leaves the estimate alone, so
//! a callee that resumes after a freeze sees at once that the calls it finds waiting are past
//! their deadline. The estimate is the minimum over the last one to two windows of 30 s, so
//! the drift between two clocks (parts per million) cannot build up.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// Bytes of the timing prefix of a request body.
pub(crate) const TIMING_LEN: usize = 16;

/// How long one window of offset samples lasts.
const WINDOW: Duration = Duration::from_secs(30);

/// Stands for a deadline beyond what an `Instant` holds.
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds from this process's epoch to `at` (0 before it).
pub(crate) fn micros(at: Instant) -> u64 {
    let since = at.saturating_duration_since(epoch());
    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
}

/// The timing prefix of a request sent now with `deadline`.
pub(crate) fn prefix(deadline: Instant) -> [u8; TIMING_LEN] {
    let mut out = [0; TIMING_LEN];
    out[..8].copy_from_slice(&micros(Instant::now()).to_be_bytes());
    out[8..].copy_from_slice(&micros(deadline).to_be_bytes());
    out
}

/// Rewrites the `sent` time of a prefix in place to now (just before the frame is queued).
pub(crate) fn restamp(prefix: &mut [u8]) {
    prefix[..8].copy_from_slice(&micros(Instant::now()).to_be_bytes());
}

/// A request's times as the caller wrote them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timing {
    pub(crate) sent: u64,
    pub(crate) deadline: u64,
}

/// Splits a request body into its timing and the caller's payload; `None` when too short.
pub(crate) fn split(body: &[u8]) -> Option<(Timing, &[u8])> {
    if body.len() < TIMING_LEN {
        return None;
    }
    let sent = u64::from_be_bytes(body[..8].try_into().ok()?);
    let deadline = u64::from_be_bytes(body[8..16].try_into().ok()?);
    Some((Timing { sent, deadline }, &body[TIMING_LEN..]))
}

/// One connection's estimate of the caller's clock; see the module docs.
#[derive(Debug)]
pub(crate) struct PeerClock {
    current: Option<i128>,
    previous: Option<i128>,
    window_started: Instant,
}

impl PeerClock {
    pub(crate) fn new(now: Instant) -> PeerClock {
        PeerClock {
            current: None,
            previous: None,
            window_started: now,
        }
    }

    /// Takes in a request's timing received at `now`, and returns its deadline on this node's
    /// clock.
    pub(crate) fn deadline(&mut self, timing: Timing, now: Instant) -> Instant {
        if now.saturating_duration_since(self.window_started) >= WINDOW {
            self.previous = self.current.take();
            self.window_started = now;
        }
        let sample = i128::from(micros(now)) - i128::from(timing.sent);
        self.current = Some(self.current.map_or(sample, |best| best.min(sample)));
        let offset = match self.previous {
            Some(previous) => previous.min(self.current.unwrap_or(previous)),
            None => self.current.unwrap_or(sample),
        };
        let local = i128::from(timing.deadline) + offset;
        let local = u64::try_from(local.max(0)).unwrap_or(u64::MAX);
        // A deadline too far ahead to represent is as good as none.
        epoch()
            .checked_add(Duration::from_micros(local))
            .unwrap_or_else(|| now + FAR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_splits_back_into_its_times_and_payload() {
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut body = prefix(deadline).to_vec();
        body.extend_from_slice(b"payload");
        let (timing, payload) = split(&body).unwrap();
        assert_eq!(payload, b"payload");
        assert_eq!(timing.deadline, micros(deadline));
        assert!(timing.sent <= timing.deadline);
        assert!(split(&body[..15]).is_none());
    }

    #[test]
    fn the_deadline_moves_to_the_callee_clock_by_the_smallest_difference_seen() {
        // Whole microseconds from the epoch, so the conversions are exact.
        let start = epoch();
        let mut clock = PeerClock::new(start);
        // The caller's clock reads 1,000,000 µs behind ours; the first frame took 300 µs, the
        // second 100 µs, the third was read 5 s late (a frozen callee).
        let behind = 1_000_000i128;
        let at = |us: u64| start + Duration::from_micros(us);
        let caller = |local: Instant| (i128::from(micros(local)) - behind) as u64;
        let sent = caller(at(10_000));
        let d1 = clock.deadline(
            Timing {
                sent,
                deadline: sent + 500_000,
            },
            at(10_300),
        );
        assert_eq!(d1, at(10_000 + 300 + 500_000));
        let sent = caller(at(20_000));
        let d2 = clock.deadline(
            Timing {
                sent,
                deadline: sent + 500_000,
            },
            at(20_100),
        );
        assert_eq!(d2, at(20_000 + 100 + 500_000));
        let sent = caller(at(30_000));
        let late = at(5_030_000);
        let d3 = clock.deadline(
            Timing {
                sent,
                deadline: sent + 500_000,
            },
            late,
        );
        assert_eq!(d3, at(30_000 + 100 + 500_000));
        assert!(
            d3 < late,
            "a frame read after a freeze is past its deadline"
        );
    }

    #[test]
    fn any_times_give_a_deadline_without_overflow() {
        let now = Instant::now();
        let mut clock = PeerClock::new(now);
        for (sent, deadline) in [(0, u64::MAX), (u64::MAX, 0), (u64::MAX, u64::MAX), (0, 0)] {
            let _ = clock.deadline(Timing { sent, deadline }, now);
        }
    }

    #[test]
    fn old_windows_are_forgotten() {
        // Whole microseconds from the epoch, so the conversions are exact.
        let start = epoch();
        let mut clock = PeerClock::new(start);
        let t = |s: u64| start + Duration::from_secs(s);
        // A very small difference long ago, then only larger ones: after two windows the old
        // one no longer counts.
        let sample = |clock: &mut PeerClock, now: Instant, travel_us: u64| {
            let sent = micros(now).saturating_sub(travel_us);
            clock.deadline(
                Timing {
                    sent,
                    deadline: sent,
                },
                now,
            )
        };
        sample(&mut clock, t(1), 0);
        assert_eq!(
            sample(&mut clock, t(31), 2_000),
            t(31) - Duration::from_micros(2_000)
        );
        assert_eq!(sample(&mut clock, t(62), 2_000), t(62));
    }
}
