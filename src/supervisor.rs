//! Supervision of external worker programs by OTP's rules.
//!
//! A [`Supervisor`] keeps worker programs (any language: Python, shell,
//! binaries) running: it restarts them when they end, by the restart type of
//! each and the strategy of the supervisor, gives up when they crash too
//! often, and lets the owner call into them over a JSON-lines protocol.
//!
//! ```no_run
//! # async fn demo() -> Result<(), herd::supervisor::Error> {
//! use std::time::Duration;
//! use herd::supervisor::{Restart, Strategy, Supervisor, WorkerSpec};
//!
//! let sup = Supervisor::builder()
//!     .strategy(Strategy::OneForOne)
//!     .max_restarts(3, Duration::from_secs(5))
//!     .start();
//! sup.start_worker(
//!     WorkerSpec::new("resizer", "python3")
//!         .args(["examples/workers/resizer.py"])
//!         .restart(Restart::Permanent)
//!         .jsonl(),
//! )
//! .await?;
//! let reply = sup
//!     .call("resizer", "resize", serde_json::json!({"w": 64, "h": 48}), Duration::from_secs(2))
//!     .await?;
//! sup.shutdown().await;
//! # let _ = reply; Ok(()) }
//! ```
//!
//! # Semantics, next to OTP and supervisord
//!
//! | herd | Erlang/OTP `supervisor` | supervisord |
//! | --- | --- | --- |
//! | [`Strategy::OneForOne`]: restart the crashed worker | `one_for_one` | the only behaviour |
//! | [`Strategy::OneForAll`]: stop the others (reverse start order), restart all | `one_for_all` | none (groups are started/stopped by hand) |
//! | [`Strategy::RestForOne`]: stop those started after it (reverse order), restart them and it | `rest_for_one` | none |
//! | [`Restart::Permanent`]: always restarted | `permanent` | `autorestart=true` |
//! | [`Restart::Transient`]: restarted after an abnormal exit (code not in `normal_exit_codes`, or a signal) | `transient` (normal = `normal`/`shutdown`) | `autorestart=unexpected` with `exitcodes` |
//! | [`Restart::Temporary`]: never restarted | `temporary` | `autorestart=false` |
//! | `Builder::max_restarts(n, period)`: more than `n` restarts in `period`, give up: stop all workers, state `Failed` | `intensity`/`period`, then the supervisor exits | none (limits are per program) |
//! | [`WorkerSpec::max_restarts`]`(n, period)`: the worker's own limit; over it, that worker alone goes to `Failed`, the others run on | none (intensity is per supervisor only; a worker needing its own is put under a supervisor of its own) | `startretries` per program, then that program goes `FATAL` |
//! | restart at once; optional [`Backoff`] per worker | at once | after `startsecs`, with a growing delay |
//! | `shutdown_timeout`: stop signal to the process group, wait until the whole group is gone, SIGKILL what is left | `shutdown` timeout, then `kill` | `stopsignal`, `stopwaitsecs`, SIGKILL (`killasgroup`) |
//! | a failed spawn at restart counts as a crash, retried after the backoff | a failed restart counts against intensity, retried | `BACKOFF`, retried `startretries` times, then `FATAL` |
//! | [`WorkerSpec::ready`]: `tcp`, `jsonl` or `after`, within `ready_timeout` | none (started = `init` returned) | `startsecs` (like `after`) |
//! | `start_worker` / `stop_worker` / `start_existing` / `restart_worker` / `delete_worker` | `start_child` / `terminate_child` / `restart_child` / `delete_child` | `start` / `stop` / `restart` / `remove` |
//! | `call` over JSON lines | port commands | none |
//! | states `Starting` (not ready yet), `Running`, `Backoff`, `Stopping`, `Stopped`, `Exited`, `Failed` | child pid, `restarting`, `undefined` | `STARTING`, `RUNNING`, `BACKOFF`, `STOPPING`, `STOPPED`, `EXITED`, `FATAL` |
//!
//! Intensity is counted per supervisor, one restart per triggering exit. The
//! default is 3 restarts in 5 seconds (OTP's default is 1 in 5). Operator
//! commands (`restart_worker`, ...) do not count. After giving up, an
//! operator's `restart_worker` or `start_existing` brings the named worker
//! back, with a fresh restart history; other failed workers stay down until
//! started.
//!
//! ## Failed starts
//!
//! A restart whose spawn fails (EAGAIN, ENOMEM, ETXTBSY while the binary is
//! replaced, a program deleted or made non-executable) is a crash like an
//! exit: it counts against restart intensity (the worker's own, or the
//! supervisor's) and is retried after the worker's [`Backoff`] (at once
//! without one), with the reason (`spawn failed: ETXTBSY (Text file busy):
//! /srv/app/worker`) in the worker's `Backoff` state and in its
//! [`WorkerEvent::Restarting`]; once intensity is exceeded it ends `Failed`
//! with a reason that lists those failures. So does a worker that exits
//! before its [readiness](WorkerSpec::ready) check passed, or fails it within
//! `ready_timeout`. A start the owner asks for is not retried: when
//! `start_worker`, `start_existing` or `restart_worker` cannot spawn the
//! worker, the call returns the error and the worker is left `Failed` with
//! the reason (a new worker stays registered, so status shows it,
//! `delete_worker` removes it and `start_existing` tries again).
//!
//! ## Readiness
//!
//! A worker may declare how it shows it is ready ([`WorkerSpec::ready`]: a
//! TCP port that accepts, a `{"ready": true}` line, or a time it must stay
//! up). Until then it is `Starting` with its pid; then `Running`, with a
//! [`WorkerEvent::Ready`]. Under `RestForOne` and `OneForAll` the next worker
//! in start order is started only once the one before it is ready, at first
//! start and at each group restart; `OneForOne` starts never wait. A worker
//! without a readiness check is ready at exec, as OTP's children are.
//!
//! ## Per-worker intensity
//!
//! A worker given its own limit with [`WorkerSpec::max_restarts`] (as the
//! agent's config does, supervisord-style, per program) counts its crashes
//! in its own history instead of the supervisor's; the other workers still
//! share the supervisor's. Its crash within its limit is handled as any
//! other: its strategy's group is restarted. The crash that takes it over
//! its limit restarts no one: it alone goes to `Failed` (the reason names it
//! and its last exits) with a [`WorkerEvent::Failed`], its siblings keep
//! running (even under `OneForAll`/`RestForOne`), and the supervisor does not
//! give up. It stays down, also through later group restarts of its siblings,
//! until `restart_worker` or `start_existing` brings it back with a fresh
//! history of its own (the supervisor's is left as it is). A group restart
//! caused by a sibling's crash is counted where that sibling's crashes are.
//! If the supervisor itself gives up, such a worker is stopped and failed
//! with the others.
//!
//! # Process hygiene (Linux)
//!
//! Each worker runs in its own process group. Stopping sends the stop signal
//! (default SIGTERM) to the group and gives the whole group its
//! `shutdown_timeout`: when the leader ends first (a shell or `npm` wrapper),
//! the rest of the group keeps its grace period, and the worker is reported
//! stopped once no process is left in the group (zombies do not count); at
//! the deadline whatever is left is SIGKILLed. A leader that ends by itself,
//! with no stop asked, takes its group with it: what it left is SIGKILLed at
//! once. Every process is reaped by its own task, so no zombies stay
//! behind. Each worker is started with `PR_SET_PDEATHSIG` = SIGKILL, so it
//! dies with herd even when herd is SIGKILLed (its own children, which the
//! kernel does not signal, are then left to it).
//!
//! # Output
//!
//! Workers' stdout and stderr are read on an output thread of the
//! supervisor's own, never on the supervisor's thread. The last 200 lines of
//! each stream are kept for [`Supervisor::tail`] and [`Supervisor::logs`];
//! every line is also handed to a bounded queue whose writer thread appends
//! it to the worker's log file ([`WorkerSpec::log_file`], rotated by size)
//! or, without one, logs it with `tracing` (fields `worker`, `stream`). When
//! that queue is full (a slow disk, a blocked stderr) lines are dropped and
//! counted ([`Supervisor::output_stats`]); restarts never wait for output.
//!
//! # Running as another user
//!
//! A worker with [`WorkerSpec::user`] runs as that user: herd, running as
//! root, looks the name up before each start and the child takes on the
//! user's supplementary groups, primary group and uid, in that order, before
//! its working directory, its death signal and the exec. Without root (and
//! for another user than herd's own) the start fails with
//! [`Error::NeedsRoot`]; an unknown name with [`Error::UnknownUser`]. Both
//! are start errors like a program that cannot be executed: nothing is
//! forked, and the worker is `Failed` with the reason (see "Failed starts").
//!
//! # Files
//! `spec.rs` (what to run), `policy.rs` (pure decisions), `runner.rs` and `runner/` (the
//! owning task), `process.rs` (spawn, signal, reap), `user.rs` (running a
//! worker as another user), `output.rs` and `output/` (bounded lines, the output thread, the
//! sink, log files, reading logs), `jsonl.rs` (calls), `ready.rs` (readiness checks),
//! `status.rs`, `event.rs`, `error.rs`.

mod error;
mod event;
pub(crate) mod jsonl;
mod output;
mod policy;
mod process;
mod ready;
mod runner;
mod spec;
mod status;
pub(crate) mod user;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::{Error, Result};
pub use event::WorkerEvent;
pub use jsonl::NOTIFY_QUEUE;
pub use output::{
    LogBatch, LogFileSpec, LogLine, LogQuery, LogSource, OutputStats, DEFAULT_LOG_KEEP,
    DEFAULT_LOG_MAX_SIZE, MAX_LINE_BYTES, MAX_LOG_BYTES, MAX_LOG_LINES, TAIL_BYTES, TAIL_LINES,
};
pub use spec::{
    Backoff, Intensity, Readiness, Restart, Strategy, WorkerSpec, DEFAULT_READY_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
};
pub use status::{Exit, Tail, WorkerState, WorkerStatus};
pub use user::MAX_USER_LEN;

use runner::{Command, Config, Runner};

/// Configures and starts a [`Supervisor`].
#[derive(Debug, Clone)]
pub struct Builder {
    strategy: Strategy,
    max_restarts: u32,
    period: Duration,
    count_every_restart: bool,
    cancel: Option<CancellationToken>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            strategy: Strategy::OneForOne,
            max_restarts: 3,
            period: Duration::from_secs(5),
            count_every_restart: false,
            cancel: None,
        }
    }
}

impl Builder {
    /// Sets the restart strategy (default [`Strategy::OneForOne`]).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets restart intensity: more than `max` restarts within `period` and the
    /// supervisor gives up (default 3 in 5 s). Crashes of workers with their
    /// own limit ([`WorkerSpec::max_restarts`]) are not counted here.
    pub fn max_restarts(mut self, max: u32, period: Duration) -> Self {
        self.max_restarts = max;
        self.period = period;
        self
    }

    /// Counts every restart against the supervisor's intensity, also those of
    /// workers with a limit of their own (default false: those count only in
    /// their own history). A crash is judged by the worker's own limit first
    /// (over it, that worker alone fails), then by the supervisor's (over it,
    /// the supervisor gives up): a node-wide cap on restarts above each
    /// worker's, as the agent uses.
    pub fn count_every_restart(mut self, yes: bool) -> Self {
        self.count_every_restart = yes;
        self
    }

    /// Shuts the supervisor down when `token` is cancelled (as [`Supervisor::shutdown`] does).
    pub fn cancel_on(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Starts the supervisor on a thread of its own and returns its handle.
    ///
    /// The thread runs a current-thread Tokio runtime with the supervisor's
    /// task and the tasks watching each process: exit detection, the restart
    /// decision and the fork all happen on it, with no hop between threads.
    /// Workers' output is read on two more threads of the supervisor's own
    /// (see "Output" in the module docs), so a chatty worker or a blocked
    /// log never delays it. Every worker is forked there, so its death signal
    /// is tied to that thread (see the module docs). The handle works from
    /// any runtime, or none for `subscribe`; the supervisor does not depend on
    /// the caller's runtime staying up, only on its handles.
    ///
    /// # Panics
    /// If the thread or its runtime cannot be created.
    pub fn start(self) -> Supervisor {
        let (commands, commands_rx) = mpsc::channel(256);
        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(event::EVENT_CAPACITY);
        let cancel = match self.cancel {
            Some(parent) => parent.child_token(),
            None => CancellationToken::new(),
        };
        let tracker = TaskTracker::new();
        let pump = output::pump::Pump::start();
        let config = Config {
            strategy: self.strategy,
            max_restarts: self.max_restarts,
            period: self.period,
            count_every_restart: self.count_every_restart,
            output: pump.clone(),
        };
        let runner = Runner::new(config, events.clone(), exits_tx, tracker.clone());
        let run = tracker.track_future(runner.run(commands_rx, exits_rx, cancel.clone()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cannot create the supervisor's runtime");
        let stop_output = pump.clone();
        std::thread::Builder::new()
            .name("herd-supervisor".into())
            .spawn(move || {
                rt.block_on(run);
                // The runner has cancelled the readers and writers; let them end.
                rt.shutdown_timeout(Duration::from_secs(1));
                stop_output.stop();
            })
            .expect("cannot start the supervisor's thread");
        Supervisor {
            commands,
            shared: Arc::new(Shared {
                events,
                tracker,
                cancel,
                output: pump,
            }),
        }
    }
}

struct Shared {
    events: broadcast::Sender<WorkerEvent>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    output: output::pump::Pump,
}

/// A handle to a running supervisor; cheap to clone.
///
/// Every method sends a command to the supervisor's owning task and waits for
/// its answer. Once the supervisor has shut down, methods return
/// [`Error::Shutdown`] (and `status` an empty list).
///
/// **Dropping the last handle** shuts the supervisor down in the background:
/// every worker is stopped (stop signal, `shutdown_timeout`, SIGKILL) as
/// [`shutdown`](Self::shutdown) does, then the
/// supervisor's thread ends. This does not need the caller's runtime: the
/// supervisor runs on its own thread. Should that thread's runtime be dropped
/// with workers still running (a panic), each worker's process group is
/// SIGKILLed as its task is dropped, `kill_on_drop` kills the process as a
/// last safety net, and the death signal fires as the thread exits. No worker
/// process outlives the supervisor.
#[derive(Clone)]
pub struct Supervisor {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("shut_down", &self.commands.is_closed())
            .finish()
    }
}

impl Supervisor {
    /// A builder with the defaults: one-for-one, 3 restarts in 5 seconds.
    pub fn builder() -> Builder {
        Builder::default()
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)?
    }

    /// Adds a worker and spawns it; returns its pid once it is spawned (a
    /// worker with a [`ready`](WorkerSpec::ready) check is then `Starting`
    /// until it passes).
    ///
    /// Under [`Strategy::RestForOne`] and [`Strategy::OneForAll`], while a
    /// worker added before it is still on its way up (not ready yet, or
    /// waiting for a restart), the new worker is registered as `Starting`
    /// without a pid and spawned once those are ready; the call returns then
    /// (or with [`Error::NotRunning`] if it is stopped meanwhile, or
    /// [`Error::GaveUp`]). Under [`Strategy::OneForOne`] it is spawned at once.
    ///
    /// A program that cannot be started (or a user that cannot be taken on)
    /// is an error at once ([`Error::Spawn`], ...; see
    /// [`Error::is_start_failure`]); the worker then stays registered in the
    /// `Failed` state with the reason, with a [`WorkerEvent::Failed`] and no
    /// retry: [`start_existing`](Self::start_existing) tries again and
    /// [`delete_worker`](Self::delete_worker) removes it. An invalid spec
    /// ([`Error::InvalidSpec`]: an empty name, a bad user name, `jsonl`
    /// readiness without `.jsonl()`, a zero `ready_timeout`, an `after` not
    /// shorter than `ready_timeout`), a name in use
    /// ([`Error::DuplicateWorker`]) or a shutdown register nothing.
    pub async fn start_worker(&self, spec: WorkerSpec) -> Result<u32> {
        self.request(|reply| Command::Start {
            spec: Box::new(spec),
            reply,
        })
        .await
    }

    /// A snapshot of every worker, in start order.
    pub async fn status(&self) -> Vec<WorkerStatus> {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Status { reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// A snapshot of one worker.
    pub async fn worker_status(&self, name: &str) -> Result<WorkerStatus> {
        self.status()
            .await
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::UnknownWorker {
                name: name.to_owned(),
            })
    }

    /// The last lines the worker wrote to stdout and stderr (across restarts).
    pub async fn tail(&self, name: &str) -> Result<Tail> {
        let name = name.to_owned();
        self.request(|reply| Command::Tail { name, reply }).await
    }

    /// The worker's logs, as `query` asks ([`LogQuery`]; see [`LogBatch`] for
    /// where the lines come from). Answered without the supervisor's thread;
    /// reads the worker's log file when the tail asks for more lines than
    /// memory holds, so call it from a blocking context (`spawn_blocking`)
    /// when workers have log files.
    ///
    /// # Errors
    /// [`Error::UnknownWorker`]; [`Error::InvalidLogQuery`] for a tail over
    /// [`MAX_LOG_LINES`]; [`Error::LogRead`] when the log file cannot be read.
    pub fn logs(&self, name: &str, query: &LogQuery) -> Result<LogBatch> {
        output::logs::check(query).map_err(|reason| Error::InvalidLogQuery { reason })?;
        let output = self
            .shared
            .output
            .output(name)
            .ok_or_else(|| Error::UnknownWorker {
                name: name.to_owned(),
            })?;
        output::logs::read(&output, query).map_err(|source| Error::LogRead {
            worker: name.to_owned(),
            source,
        })
    }

    /// Every worker's output counters (lines read, lines dropped by the full
    /// output sink, log file write errors), by name; answered without the
    /// supervisor's thread.
    pub fn output_stats(&self) -> Vec<OutputStats> {
        self.shared.output.stats()
    }

    /// Stops the worker (if running) and starts it again; returns the new pid
    /// once spawned (not waiting for readiness or for other workers). Also
    /// brings back a `Failed` worker. Not counted as a restart for intensity.
    /// If the spawn fails, returns the error and leaves the worker `Failed`
    /// with the reason (never `Starting`).
    pub async fn restart_worker(&self, name: &str) -> Result<u32> {
        let name = name.to_owned();
        self.request(|reply| Command::Restart { name, reply }).await
    }

    /// Stops the worker; it stays `Stopped` until `start_existing` or
    /// `restart_worker`. Returns once its process group is empty (or was
    /// SIGKILLed at the end of `shutdown_timeout`). The supervisor serves
    /// other commands meanwhile: concurrent stops and deletes overlap.
    pub async fn stop_worker(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.request(|reply| Command::Stop { name, reply }).await
    }

    /// Starts a worker that is stopped, exited, failed or in backoff; returns
    /// its pid (the current one if it already runs) once spawned, not
    /// waiting for readiness or for other workers. If the spawn fails,
    /// returns the error and leaves the worker `Failed` with the reason
    /// (never `Starting`).
    pub async fn start_existing(&self, name: &str) -> Result<u32> {
        let name = name.to_owned();
        self.request(|reply| Command::StartExisting { name, reply })
            .await
    }

    /// Stops the worker (if running) and removes it, whatever its state
    /// (also `Failed` after a start that could not spawn it). Returns once
    /// its process group is empty; concurrent deletes overlap.
    pub async fn delete_worker(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.request(|reply| Command::Delete { name, reply }).await
    }

    /// Calls `method` on a `.jsonl()` worker and waits up to `timeout` for the
    /// reply's `result`. Fails at once if the worker's process ends meanwhile.
    pub async fn call(
        &self,
        name: &str,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value> {
        self.channel(name)
            .await?
            .call(method, params, timeout)
            .await
    }

    /// The call channel of a running `.jsonl()` worker's process.
    async fn channel(&self, name: &str) -> Result<Arc<jsonl::Channel>> {
        let name = name.to_owned();
        self.request(|reply| Command::Channel { name, reply }).await
    }

    /// Writes `message` to a running `.jsonl()` worker's stdin as one line with no `id`: a
    /// notification, which the worker does not answer. Returns `Ok(false)`, writing nothing,
    /// when [`NOTIFY_QUEUE`] notifications already wait for its stdin
    /// (a worker that does not read them) or its process has just ended.
    ///
    /// # Errors
    /// No such worker, it is not `.jsonl()`, or it is not running.
    pub async fn notify(&self, name: &str, message: &Value) -> Result<bool> {
        Ok(self.channel(name).await?.notify(message))
    }

    /// Receives every [`WorkerEvent`] from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<WorkerEvent> {
        self.shared.events.subscribe()
    }

    /// Stops every worker and waits until every process is reaped and every
    /// task of the supervisor has ended.
    ///
    /// Under [`Strategy::OneForOne`] every worker is sent its stop signal at
    /// once (in reverse start order, without waiting in between), so the
    /// whole shutdown takes at most the longest `shutdown_timeout`. Under
    /// [`Strategy::RestForOne`] and [`Strategy::OneForAll`], whose later
    /// workers depend on earlier ones, workers are stopped one at a time in
    /// reverse start order, each after the one started after it is gone (as
    /// OTP does), so the bound is the sum of their timeouts.
    pub async fn shutdown(&self) {
        self.shared.cancel.cancel();
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }
}
