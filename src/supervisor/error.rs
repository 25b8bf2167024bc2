//! The supervisor's error type, [`Error`].
//!
//! Every variant carries the values a caller needs to act on it (the worker's
//! name, the program, the method, the timeout), so the message stands alone in
//! a log line and the caller can match on the variant.

use std::path::PathBuf;
use std::time::Duration;

use super::status::Exit;

/// What can go wrong when driving a [`Supervisor`](super::Supervisor).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The worker's program could not be started (missing, not executable, ...).
    #[error("cannot start worker {worker}: {}: {source}", program.display())]
    Spawn {
        /// The worker's name.
        worker: String,
        /// The program that was to be executed.
        program: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The worker's [`user`](super::WorkerSpec::user) is not in this machine's user database.
    #[error("cannot start worker {worker}: it sets user = {user:?}, and there is no such user on this machine")]
    UnknownUser {
        /// The worker's name.
        worker: String,
        /// The user it asked for.
        user: String,
    },
    /// The worker's [`user`](super::WorkerSpec::user) is another user than
    /// herd's own, and herd does not run as root, so it cannot switch to it.
    #[error("worker {worker} sets user = {user:?}, which needs the agent to run as root; it runs as uid {euid}")]
    NeedsRoot {
        /// The worker's name.
        worker: String,
        /// The user it asked for.
        user: String,
        /// herd's effective uid.
        euid: u32,
    },
    /// The user database could not be read for the worker's [`user`](super::WorkerSpec::user).
    #[error("cannot start worker {worker}: cannot look up user {user:?}: {source}")]
    UserLookup {
        /// The worker's name.
        worker: String,
        /// The user it asked for.
        user: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// No worker has this name.
    #[error("no worker named {name:?}")]
    UnknownWorker {
        /// The name that was asked for.
        name: String,
    },
    /// A worker with this name already exists.
    #[error("a worker named {name:?} already exists")]
    DuplicateWorker {
        /// The name that is taken.
        name: String,
    },
    /// The spec cannot be used as given.
    #[error("invalid spec for worker {worker:?}: {reason}")]
    InvalidSpec {
        /// The worker's name.
        worker: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A call was made to a worker that was not declared `.jsonl()`.
    #[error("worker {worker} does not speak the call protocol (declare it with .jsonl())")]
    NotJsonl {
        /// The worker's name.
        worker: String,
    },
    /// A call was made to a worker that has no running process.
    #[error("worker {worker} is not running (state: {state})")]
    NotRunning {
        /// The worker's name.
        worker: String,
        /// The state it is in, as text.
        state: String,
    },
    /// A call got no reply in time. The worker keeps running.
    #[error("call {method} to worker {worker} timed out after {timeout:?}")]
    CallTimeout {
        /// The worker's name.
        worker: String,
        /// The method that was called.
        method: String,
        /// How long the caller waited.
        timeout: Duration,
    },
    /// The worker's process ended while a call was pending (or before it could be sent).
    #[error("worker {worker} died during call {method}{}", exit.map(|e| format!(" ({e})")).unwrap_or_default())]
    WorkerDied {
        /// The worker's name.
        worker: String,
        /// The method that was called.
        method: String,
        /// How the process ended, when known.
        exit: Option<Exit>,
    },
    /// The worker answered the call with an error object.
    #[error("worker {worker} failed call {method}: {message}")]
    Remote {
        /// The worker's name.
        worker: String,
        /// The method that was called.
        method: String,
        /// The `error.message` the worker sent.
        message: String,
    },
    /// The supervisor gave up (restart intensity exceeded) before the operation completed.
    #[error("supervisor gave up: {reason}")]
    GaveUp {
        /// Why it gave up: the limit and the last exits.
        reason: String,
    },
    /// The supervisor is shutting down or has shut down.
    #[error("the supervisor has shut down")]
    Shutdown,
    /// A logs query asked for more than one batch may hold.
    #[error("invalid logs query: {reason}")]
    InvalidLogQuery {
        /// What was wrong with it.
        reason: String,
    },
    /// The worker's log file could not be read.
    #[error("cannot read the log file of worker {worker}: {source}")]
    LogRead {
        /// The worker's name.
        worker: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether this is a start that failed: the program could not be spawned
    /// ([`Spawn`](Self::Spawn)) or its user not be taken on
    /// ([`UnknownUser`](Self::UnknownUser), [`NeedsRoot`](Self::NeedsRoot),
    /// [`UserLookup`](Self::UserLookup)). After such an error from
    /// `start_worker`, `start_existing` or `restart_worker`, the worker is
    /// registered in the `Failed` state with [`start_failure`](Self::start_failure)
    /// as its reason; other errors of `start_worker` (an invalid spec, a
    /// duplicate name, shutdown) register nothing.
    pub fn is_start_failure(&self) -> bool {
        self.start_failure().is_some()
    }

    /// For a start that failed (see [`is_start_failure`](Self::is_start_failure)),
    /// the reason the worker's state and events give:
    /// `spawn failed: ETXTBSY (Text file busy): /srv/app/worker` for an
    /// operating system error (errno name, its text, the program), the
    /// error's message for the others.
    pub fn start_failure(&self) -> Option<String> {
        match self {
            Error::Spawn {
                program, source, ..
            } => {
                let what = match source.raw_os_error() {
                    Some(code) => {
                        let errno = nix::errno::Errno::from_raw(code);
                        format!("{errno:?} ({})", errno.desc())
                    }
                    None => source.to_string(),
                };
                Some(format!("spawn failed: {what}: {}", program.display()))
            }
            Error::UnknownUser { .. } | Error::NeedsRoot { .. } | Error::UserLookup { .. } => {
                Some(self.to_string())
            }
            _ => None,
        }
    }

    /// A copy of a start error, for every caller waiting on the same start.
    pub(crate) fn copy_start_error(&self) -> Error {
        let copy_io = |e: &std::io::Error| match e.raw_os_error() {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::new(e.kind(), e.to_string()),
        };
        match self {
            Error::Spawn {
                worker,
                program,
                source,
            } => Error::Spawn {
                worker: worker.clone(),
                program: program.clone(),
                source: copy_io(source),
            },
            Error::UnknownUser { worker, user } => Error::UnknownUser {
                worker: worker.clone(),
                user: user.clone(),
            },
            Error::NeedsRoot { worker, user, euid } => Error::NeedsRoot {
                worker: worker.clone(),
                user: user.clone(),
                euid: *euid,
            },
            Error::UserLookup {
                worker,
                user,
                source,
            } => Error::UserLookup {
                worker: worker.clone(),
                user: user.clone(),
                source: copy_io(source),
            },
            other => Error::NotRunning {
                worker: String::new(),
                state: other.to_string(),
            },
        }
    }
}

/// Shorthand for results of supervisor operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawn_error_reads_as_errno_text_and_program() {
        let err = Error::Spawn {
            worker: "w".into(),
            program: "/srv/app/worker".into(),
            source: std::io::Error::from_raw_os_error(nix::libc::ETXTBSY),
        };
        assert_eq!(
            err.start_failure().as_deref(),
            Some("spawn failed: ETXTBSY (Text file busy): /srv/app/worker")
        );
        assert!(err.copy_start_error().to_string() == err.to_string());
        let other = Error::UnknownWorker { name: "w".into() };
        assert!(!other.is_start_failure());
    }
}
