//! [`WorkerEvent`]: what the supervisor announces as it happens.
//!
//! The owning task sends them on a broadcast channel (`Supervisor::subscribe`),
//! so an owner can publish worker state without polling. A subscriber that
//! falls more than 1,024 events behind gets `RecvError::Lagged` and should
//! re-read `Supervisor::status`.

use std::time::Duration;

use serde::Serialize;

use super::status::Exit;

/// Capacity of the event channel.
pub(crate) const EVENT_CAPACITY: usize = 1024;

/// One change in a worker's life, in the order the supervisor saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WorkerEvent {
    /// A process was spawned for the worker: first start, restart, or start by the operator.
    /// Without a [`ready`](super::WorkerSpec::ready) check the worker is ready
    /// from here on; with one, `Ready` follows once it passes (or the start
    /// fails: `Exited`, then `Restarting` or `Failed` with the reason).
    Started {
        /// The worker's name.
        name: String,
        /// Its new process id.
        pid: u32,
    },
    /// The worker's [`ready`](super::WorkerSpec::ready) check passed: its state
    /// is now `Running`. Follows that process's `Started`, at most once; never
    /// sent for a worker without a readiness check.
    Ready {
        /// The worker's name.
        name: String,
        /// Its process id.
        pid: u32,
    },
    /// The worker's process ended, for any reason (crash, stop, kill). Sent
    /// after its pending calls have failed and before any restart.
    Exited {
        /// The worker's name.
        name: String,
        /// The process id that ended.
        pid: u32,
        /// How it ended.
        exit: Exit,
    },
    /// The supervisor will restart the worker by its policy (after its own
    /// exit, after a failed start, or because its strategy restarts it with a
    /// crashed sibling). `Started` follows after `delay` and after the
    /// siblings are stopped (under an ordered strategy, also after the
    /// workers before it are ready). A start that fails again is followed by
    /// another `Restarting`, until restart intensity is exceeded (`Failed`).
    Restarting {
        /// The worker's name.
        name: String,
        /// The backoff before the restart (zero: at once).
        #[serde(serialize_with = "ms")]
        delay: Duration,
        /// Why: the exit (`exit code 1`), the failed start (`spawn failed:
        /// ETXTBSY (Text file busy): /srv/app/worker`, `not ready within 30s`,
        /// `exited before ready: exit code 1`), or, for a worker restarted
        /// with a crashed sibling, `restarted with NAME: ` and the sibling's reason.
        reason: String,
    },
    /// The worker was stopped by the operator (`stop_worker`) or by shutdown,
    /// and stays stopped until started.
    Stopped {
        /// The worker's name.
        name: String,
    },
    /// The worker ended and stays down by its restart type (transient after a
    /// normal exit, temporary after any exit).
    Finished {
        /// The worker's name.
        name: String,
        /// How it ended.
        exit: Exit,
    },
    /// Restart intensity was exceeded: the supervisor stops all its workers,
    /// each of which then reports `Failed`.
    GaveUp {
        /// The limit that was exceeded and the last exits.
        reason: String,
    },
    /// The worker is down in the `Failed` state, because the supervisor gave up,
    /// because the worker exceeded its own restart intensity
    /// ([`WorkerSpec::max_restarts`](super::WorkerSpec::max_restarts); no
    /// `GaveUp` then, the other workers run on), because a start the operator
    /// asked for could not spawn it (`start_worker`, `start_existing`,
    /// `restart_worker`, which also return the error), or because a
    /// temporary worker failed to start. No `Started` precedes it for a
    /// spawn that failed.
    Failed {
        /// The worker's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The worker was removed (`delete_worker`).
    Deleted {
        /// The worker's name.
        name: String,
    },
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
}
