//! What to run and how to treat it: [`WorkerSpec`], [`Restart`], [`Strategy`], [`Backoff`],
//! [`Intensity`], [`Readiness`].
//!
//! Plain data, built with chained methods and compared with `==` (the agent
//! restarts only the workers whose spec changed). No task runs here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::output::LogFileSpec;

/// Default time a worker gets between the stop signal and SIGKILL.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time a worker with a [`Readiness`] check gets to become ready.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How the supervisor learns that a started worker is ready (see [`WorkerSpec::ready`]).
///
/// In JSON: `{"tcp": "127.0.0.1:8080"}`, `"jsonl"`, `{"after": 2000}` (milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// Ready once a TCP connection to this address succeeds. The supervisor
    /// tries to connect every 25 ms (each attempt bounded by 1 s) on its own
    /// runtime, never blocking its thread; the connection is closed at once.
    Tcp(SocketAddr),
    /// Ready once the worker writes the line `{"ready": true}` on stdout
    /// (only for a worker that speaks the call protocol, [`WorkerSpec::jsonl`]).
    /// The line is protocol, not output: it is not in the tail.
    Jsonl,
    /// Ready once the process has run this long (supervisord's `startsecs`);
    /// an exit before that is a failed start.
    After(#[serde(with = "duration_ms")] Duration),
}

/// When a worker that ended by itself is started again (OTP's restart types).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// Always restarted, whatever the exit.
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit: a code outside
    /// [`WorkerSpec::normal_exit_codes`] or death by a signal.
    Transient,
    /// Never restarted; also not restarted when a sibling's crash stops it.
    Temporary,
}

/// Which workers are restarted when one of them crashes (OTP's strategies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Only the crashed worker.
    #[default]
    OneForOne,
    /// Every worker: the others are stopped (in reverse start order), then all
    /// are started again in start order.
    OneForAll,
    /// The crashed worker and every worker started after it: those are stopped
    /// in reverse start order, then all of them started again in start order.
    RestForOne,
}

/// An optional delay before restarting a worker: exponential, capped, with jitter.
///
/// The n-th consecutive restart waits `initial * 2^(n-1)`, capped at `max`, then
/// spread by `±jitter` (a fraction, 0.0–1.0). The streak resets once the worker
/// has stayed up for longer than `max`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    /// Delay before the first restart of a streak.
    #[serde(with = "duration_ms")]
    pub initial: Duration,
    /// Upper bound of the delay.
    #[serde(with = "duration_ms")]
    pub max: Duration,
    /// Random spread, as a fraction of the delay (0.1 = ±10 %).
    pub jitter: f64,
}

impl Backoff {
    /// Exponential backoff from `initial` up to `max`, with ±10 % jitter.
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            jitter: 0.1,
        }
    }

    /// Sets the jitter fraction (clamped to 0.0–1.0).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 1.0);
        self
    }
}

/// A worker's own restart intensity: more than `max_restarts` restarts within
/// `period` and the supervisor gives up on that worker alone (see
/// [`WorkerSpec::max_restarts`]).
///
/// In JSON: `{"max_restarts": 3, "period": 5000}` (period in milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Intensity {
    /// Restarts allowed within `period`; one more and the worker fails.
    pub max_restarts: u32,
    /// The sliding window the restarts are counted in.
    #[serde(with = "duration_ms")]
    pub period: Duration,
}

/// Everything the supervisor needs to run one worker.
///
/// The program is executed directly with its arguments (never through a
/// shell). The worker's environment is herd's, plus `HOME`, `USER` and
/// `LOGNAME` of its [`user`](Self::user) if it has one, plus what
/// [`env`](Self::env) adds, plus `HERD_WORKER=<name>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerSpec {
    /// Unique name within the supervisor.
    pub name: String,
    /// Program to execute (a path, or a name looked up in `PATH`).
    pub program: PathBuf,
    /// Arguments, after the program name.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory; herd's own when `None`.
    #[serde(default)]
    pub current_dir: Option<PathBuf>,
    /// Restart type.
    #[serde(default)]
    pub restart: Restart,
    /// Time between the stop signal and SIGKILL.
    #[serde(with = "duration_ms", default = "default_shutdown_timeout")]
    pub shutdown_timeout: Duration,
    /// Signal sent to the worker's process group to ask it to stop.
    #[serde(with = "signal_name", default = "default_stop_signal")]
    pub stop_signal: Signal,
    /// Exit codes that count as a normal exit (for [`Restart::Transient`]).
    #[serde(default = "default_normal_codes")]
    pub normal_exit_codes: Vec<i32>,
    /// Delay before restarts; `None` restarts at once.
    #[serde(default)]
    pub backoff: Option<Backoff>,
    /// Whether the worker speaks the JSON-lines call protocol on stdin/stdout.
    #[serde(default)]
    pub jsonl: bool,
    /// The worker's own restart intensity; `None` counts its restarts against
    /// the supervisor's (see [`max_restarts`](Self::max_restarts)).
    #[serde(default)]
    pub intensity: Option<Intensity>,
    /// The user the worker runs as; herd's own when `None` (see [`user`](Self::user)).
    #[serde(default)]
    pub user: Option<String>,
    /// The file its output goes to; `tracing` when `None` (see [`log_file`](Self::log_file)).
    #[serde(default)]
    pub log_file: Option<LogFileSpec>,
    /// How the worker shows it is ready; `None`: ready once exec succeeded
    /// (see [`ready`](Self::ready)).
    #[serde(default)]
    pub ready: Option<Readiness>,
    /// How long a worker with [`ready`](Self::ready) gets to become ready
    /// (default [`DEFAULT_READY_TIMEOUT`]).
    #[serde(with = "duration_ms", default = "default_ready_timeout")]
    pub ready_timeout: Duration,
}

impl WorkerSpec {
    /// A permanent worker running `program` with no arguments.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        WorkerSpec {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            current_dir: None,
            restart: Restart::Permanent,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            stop_signal: Signal::SIGTERM,
            normal_exit_codes: default_normal_codes(),
            backoff: None,
            jsonl: false,
            intensity: None,
            user: None,
            log_file: None,
            ready: None,
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable for the worker.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Sets the restart type.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Sets the time between the stop signal and SIGKILL.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Sets the signal that asks the worker to stop (default SIGTERM).
    pub fn stop_signal(mut self, signal: Signal) -> Self {
        self.stop_signal = signal;
        self
    }

    /// Sets the exit codes that count as normal (default `[0]`).
    pub fn normal_exit_codes(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.normal_exit_codes = codes.into_iter().collect();
        self
    }

    /// Waits before each restart, per `backoff`.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Declares that the worker speaks the JSON-lines call protocol.
    pub fn jsonl(mut self) -> Self {
        self.jsonl = true;
        self
    }

    /// Runs the worker as the user `name` (a name from the user database, not a uid).
    ///
    /// At each start the name is looked up: the worker gets the user's uid,
    /// primary group and supplementary groups, and `HOME`, `USER` and
    /// `LOGNAME` from its entry unless [`env`](Self::env) sets them; the
    /// working directory is entered as that user. This needs herd to run as
    /// root, unless `name` is herd's own user: otherwise the start fails with
    /// [`Error::NeedsRoot`](super::Error::NeedsRoot), and an unknown name with
    /// [`Error::UnknownUser`](super::Error::UnknownUser). A name that is empty,
    /// longer than 64 bytes, or holds whitespace, control characters, `:` or
    /// `/` is refused with [`Error::InvalidSpec`](super::Error::InvalidSpec).
    pub fn user(mut self, name: impl Into<String>) -> Self {
        self.user = Some(name.into());
        self
    }

    /// Sends the worker's output (both streams) to the file `path` instead of
    /// `tracing`, rotated before it would pass `max_size` bytes, keeping
    /// `keep` rotated files (`<path>.1` is the newest). The file's format and
    /// the rotation are described in the supervisor's `output/logfile.rs`;
    /// its directory must exist. Writes happen on the supervisor's output
    /// writer thread; a failed write is counted
    /// ([`OutputStats::write_errors`](super::OutputStats::write_errors)) and
    /// never affects the worker.
    pub fn log_file(mut self, path: impl Into<PathBuf>, max_size: u64, keep: u32) -> Self {
        self.log_file = Some(LogFileSpec {
            path: path.into(),
            max_size,
            keep,
        });
        self
    }

    /// Gives the worker its own restart intensity (supervisord's per-program
    /// `startretries`): more than `max_restarts` restarts within `period` and
    /// the supervisor gives up on this worker alone.
    ///
    /// - Its crashes are counted in its own history, not against the
    ///   supervisor's [`max_restarts`](super::Builder::max_restarts).
    /// - When it exceeds its limit, it goes to
    ///   [`WorkerState::Failed`](super::WorkerState::Failed) (the reason names
    ///   it and its last exits) and [`WorkerEvent::Failed`](super::WorkerEvent::Failed)
    ///   is sent; it is not restarted again, not even by a sibling's group
    ///   restart, until [`restart_worker`](super::Supervisor::restart_worker) or
    ///   [`start_existing`](super::Supervisor::start_existing) brings it back
    ///   with a fresh history. The other workers keep running and the
    ///   supervisor does not give up.
    /// - With [`Strategy::OneForAll`] or [`Strategy::RestForOne`], its crash
    ///   within the limit restarts its group as usual; the crash that exceeds
    ///   the limit restarts no one: it fails alone and its siblings keep
    ///   running.
    /// - A group restart caused by a sibling's crash is counted where that
    ///   sibling's crashes are (its own history or the supervisor's), not here.
    pub fn max_restarts(mut self, max_restarts: u32, period: Duration) -> Self {
        self.intensity = Some(Intensity {
            max_restarts,
            period,
        });
        self
    }

    /// Declares how the worker shows it is ready. Until it is, its state is
    /// [`WorkerState::Starting`](super::WorkerState::Starting) with its pid;
    /// when it is, the state becomes `Running` and
    /// [`WorkerEvent::Ready`](super::WorkerEvent::Ready) is sent.
    ///
    /// - Under [`Strategy::RestForOne`] and [`Strategy::OneForAll`], a worker
    ///   is started (first start by `start_worker`, and each start of a group
    ///   restart) only once every worker before it in start order is ready
    ///   or at rest; under [`Strategy::OneForOne`] starts never wait.
    /// - A worker that exits before it is ready, or is not ready within
    ///   [`ready_timeout`](Self::ready_timeout) (its process group is then
    ///   SIGKILLed), has failed to start: that counts as a crash against
    ///   restart intensity and is retried after its backoff, with the reason
    ///   in its `Backoff` state and in the `Restarting` event. A
    ///   [`Restart::Temporary`] worker goes to `Failed` instead.
    /// - Without it, a worker is ready as soon as exec succeeded: `Running`
    ///   at once and no `Ready` event, as before readiness existed.
    ///
    /// [`Readiness::Jsonl`] needs [`jsonl`](Self::jsonl): without it,
    /// `start_worker` refuses the spec with
    /// [`Error::InvalidSpec`](super::Error::InvalidSpec).
    pub fn ready(mut self, readiness: Readiness) -> Self {
        self.ready = Some(readiness);
        self
    }

    /// Sets how long the worker gets to become ready (default
    /// [`DEFAULT_READY_TIMEOUT`], 30 s); used only with [`ready`](Self::ready).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }
}

fn default_ready_timeout() -> Duration {
    DEFAULT_READY_TIMEOUT
}

fn default_shutdown_timeout() -> Duration {
    DEFAULT_SHUTDOWN_TIMEOUT
}

fn default_stop_signal() -> Signal {
    Signal::SIGTERM
}

fn default_normal_codes() -> Vec<i32> {
    vec![0]
}

/// Durations as whole milliseconds in JSON.
mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Signals by name ("SIGTERM") in JSON.
mod signal_name {
    use nix::sys::signal::Signal;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(sig: &Signal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(sig.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Signal, D::Error> {
        let name = String::deserialize(d)?;
        let full = if name.starts_with("SIG") {
            name
        } else {
            format!("SIG{name}")
        };
        full.parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_survives_a_json_round_trip() {
        let spec = WorkerSpec::new("resizer", "python3")
            .args(["resizer.py"])
            .env("LOG_LEVEL", "info")
            .restart(Restart::Transient)
            .stop_signal(Signal::SIGINT)
            .backoff(Backoff::exponential(
                Duration::from_millis(100),
                Duration::from_secs(5),
            ))
            .jsonl()
            .max_restarts(4, Duration::from_secs(30))
            .user("nobody")
            .log_file("/var/log/herd/resizer.log", 1 << 20, 2);
        let json = serde_json::to_string(&spec).unwrap();
        let back: WorkerSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(spec, back);
    }

    #[test]
    fn readiness_reads_from_json_with_durations_in_ms() {
        let spec: WorkerSpec = serde_json::from_str(
            r#"{"name":"a","program":"sleep","ready":{"tcp":"127.0.0.1:8080"},"ready_timeout":5000}"#,
        )
        .unwrap();
        let addr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(spec.ready, Some(Readiness::Tcp(addr)));
        assert_eq!(spec.ready_timeout, Duration::from_secs(5));
        for ready in [
            Readiness::Jsonl,
            Readiness::After(Duration::from_millis(1500)),
        ] {
            let spec = WorkerSpec::new("a", "sleep").jsonl().ready(ready);
            let json = serde_json::to_value(&spec).unwrap();
            let back: WorkerSpec = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(back, spec);
            if let Readiness::After(_) = ready {
                assert_eq!(json["ready"], serde_json::json!({"after": 1500}));
            } else {
                assert_eq!(json["ready"], "jsonl");
            }
        }
        let plain: WorkerSpec = serde_json::from_str(r#"{"name":"a","program":"sleep"}"#).unwrap();
        assert_eq!(plain.ready, None);
        assert_eq!(plain.ready_timeout, DEFAULT_READY_TIMEOUT);
    }

    #[test]
    fn a_minimal_json_spec_gets_the_defaults() {
        let spec: WorkerSpec =
            serde_json::from_str(r#"{"name":"a","program":"sleep","stop_signal":"INT"}"#).unwrap();
        assert_eq!(spec.restart, Restart::Permanent);
        assert_eq!(spec.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
        assert_eq!(spec.stop_signal, Signal::SIGINT);
        assert_eq!(spec.normal_exit_codes, vec![0]);
        assert_eq!(spec.intensity, None);
        assert_eq!(spec.user, None);
        assert_eq!(spec.log_file, None);
    }

    #[test]
    fn a_workers_own_intensity_reads_from_json_with_the_period_in_ms() {
        let spec: WorkerSpec = serde_json::from_str(
            r#"{"name":"a","program":"sleep","intensity":{"max_restarts":2,"period":10000}}"#,
        )
        .unwrap();
        assert_eq!(
            spec,
            WorkerSpec::new("a", "sleep").max_restarts(2, Duration::from_secs(10))
        );
    }
}
