//! What the supervisor reports about its workers: [`WorkerState`], [`WorkerStatus`],
//! [`Exit`], [`Tail`].
//!
//! Plain serializable data, produced by the supervisor's owning task on
//! request (the HTTP API returns it as JSON). No task runs here.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use serde::{Serialize, Serializer};

/// How a worker's process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal number.
    Signal(i32),
}

impl Exit {
    /// Converts a process's exit status.
    pub fn from_status(status: std::process::ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Code(-1),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(sig) => match Signal::try_from(sig) {
                Ok(s) => write!(f, "signal {sig} ({})", s.as_str()),
                Err(_) => write!(f, "signal {sig}"),
            },
        }
    }
}

/// Where a worker is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WorkerState {
    /// Started but not ready yet.
    ///
    /// With a pid: its process runs and its [`ready`](super::WorkerSpec::ready)
    /// check has not passed yet (a worker without one goes straight to
    /// `Running`). Without a pid: `start_worker` registered it under
    /// [`Strategy::RestForOne`](super::Strategy::RestForOne) or
    /// [`Strategy::OneForAll`](super::Strategy::OneForAll), and it is spawned
    /// once the workers before it are ready.
    Starting {
        /// The process id, once spawned (also its process group id).
        pid: Option<u32>,
    },
    /// Its process runs (and is ready, if it declares readiness).
    Running {
        /// The process id (also its process group id).
        pid: u32,
    },
    /// Waiting before a restart (per its [`Backoff`](super::Backoff), until the
    /// siblings a strategy restarts with it are stopped, or, under an ordered
    /// strategy, until the workers before it are ready).
    Backoff {
        /// Milliseconds left before the restart, as of the status request.
        remaining_ms: u64,
        /// Why its last start failed, when the restart follows a failed start
        /// (`spawn failed: ETXTBSY (Text file busy): /srv/app/worker`, `not
        /// ready within 30s`, `exited before ready: exit code 1`); `None`
        /// after a crash of a started worker (its exit is in `last_exit`).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Asked to stop; waiting for the process to end.
    Stopping {
        /// The process id.
        pid: u32,
    },
    /// Stopped by the operator or by shutdown; stays stopped until started.
    Stopped,
    /// Ended by itself and not restarted (by its restart type).
    Exited {
        /// How it ended.
        exit: Exit,
    },
    /// Down until the operator starts it: restart intensity was exceeded
    /// (the supervisor's, or the worker's own; failed starts count as
    /// crashes), or a start the operator asked for (`start_worker`,
    /// `start_existing`, `restart_worker`) could not spawn it, or a
    /// [`Restart::Temporary`](super::Restart::Temporary) worker failed to
    /// start. `restart_worker` or `start_existing` brings it back;
    /// `delete_worker` removes it.
    Failed {
        /// The limit that was exceeded and the last exits or failed starts,
        /// or why the start failed (`spawn failed: ENOENT (No such file or
        /// directory): /srv/app/worker`).
        reason: String,
    },
}

impl WorkerState {
    /// The process id, when a process exists.
    pub fn pid(&self) -> Option<u32> {
        match *self {
            WorkerState::Running { pid } | WorkerState::Stopping { pid } => Some(pid),
            WorkerState::Starting { pid } => pid,
            _ => None,
        }
    }
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerState::Starting { pid: None } => write!(f, "starting"),
            WorkerState::Starting { pid: Some(pid) } => write!(f, "starting (pid {pid})"),
            WorkerState::Running { pid } => write!(f, "running (pid {pid})"),
            WorkerState::Backoff {
                remaining_ms,
                reason: None,
            } => write!(f, "backoff ({remaining_ms} ms)"),
            WorkerState::Backoff {
                remaining_ms,
                reason: Some(reason),
            } => write!(
                f,
                "backoff ({remaining_ms} ms) after a failed start: {reason}"
            ),
            WorkerState::Stopping { pid } => write!(f, "stopping (pid {pid})"),
            WorkerState::Stopped => write!(f, "stopped"),
            WorkerState::Exited { exit } => write!(f, "exited ({exit})"),
            WorkerState::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// A snapshot of one worker, as `Supervisor::status` returns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerStatus {
    /// The worker's name.
    pub name: String,
    /// Its state.
    pub state: WorkerState,
    /// Its process id, when a process exists.
    pub pid: Option<u32>,
    /// How many times the supervisor restarted it after an exit (operator
    /// restarts not counted).
    pub restarts: u32,
    /// How its last process ended.
    pub last_exit: Option<Exit>,
    /// When it entered its state (JSON: milliseconds since the Unix epoch).
    #[serde(serialize_with = "unix_ms")]
    pub since: SystemTime,
}

/// The last lines a worker wrote (at most 200 per stream, each at most 1 MiB).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tail {
    /// Last stdout lines, oldest first (protocol replies excluded).
    pub stdout: Vec<String>,
    /// Last stderr lines, oldest first.
    pub stderr: Vec<String>,
}

fn unix_ms<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    s.serialize_u64(ms.try_into().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_serialize_with_a_tag() {
        let json = serde_json::to_value(WorkerState::Running { pid: 7 }).unwrap();
        assert_eq!(json, serde_json::json!({"state": "running", "pid": 7}));
        let json = serde_json::to_value(WorkerState::Exited {
            exit: Exit::Signal(9),
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"state": "exited", "exit": {"signal": 9}})
        );
    }

    #[test]
    fn a_starting_worker_has_its_pid_once_spawned() {
        assert_eq!(WorkerState::Starting { pid: None }.pid(), None);
        assert_eq!(WorkerState::Starting { pid: Some(7) }.pid(), Some(7));
        let json = serde_json::to_value(WorkerState::Starting { pid: Some(7) }).unwrap();
        assert_eq!(json, serde_json::json!({"state": "starting", "pid": 7}));
    }

    #[test]
    fn a_backoff_after_a_failed_start_says_why() {
        let state = WorkerState::Backoff {
            remaining_ms: 5,
            reason: Some("not ready within 1s".into()),
        };
        assert_eq!(
            state.to_string(),
            "backoff (5 ms) after a failed start: not ready within 1s"
        );
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["reason"], "not ready within 1s");
        let plain = WorkerState::Backoff {
            remaining_ms: 5,
            reason: None,
        };
        assert!(serde_json::to_value(&plain)
            .unwrap()
            .get("reason")
            .is_none());
    }

    #[test]
    fn exits_read_well() {
        assert_eq!(Exit::Signal(9).to_string(), "signal 9 (SIGKILL)");
        assert_eq!(Exit::Code(3).to_string(), "exit code 3");
    }
}
