//! Helpers shared by the supervisor's integration tests: bounded waits on
//! status, events and /proc, never fixed sleeps.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use herd::supervisor::{Supervisor, WorkerEvent, WorkerSpec, WorkerStatus};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::broadcast;

/// Generous bound for anything to happen on a busy 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A worker that sleeps for an hour.
pub fn sleeper(name: &str) -> WorkerSpec {
    WorkerSpec::new(name, "sleep").args(["3600"])
}

/// A worker running a shell script (sh is the program; the script is its argument).
pub fn script(name: &str, script: &str) -> WorkerSpec {
    WorkerSpec::new(name, "sh").args(["-c", script])
}

/// The directory holding herd_worker.py and the example worker.
pub fn workers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/workers")
}

/// Polls `cond` every 10 ms until it returns Some, or panics after PATIENCE.
pub async fn eventually<T, F, Fut>(what: &str, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the worker's status satisfies `pred`.
pub async fn wait_status(
    sup: &Supervisor,
    name: &str,
    pred: impl Fn(&WorkerStatus) -> bool,
) -> WorkerStatus {
    eventually(&format!("status of {name}"), || async {
        sup.worker_status(name).await.ok().filter(|s| pred(s))
    })
    .await
}

/// Waits until the worker runs with a pid other than `old`.
pub async fn wait_new_pid(sup: &Supervisor, name: &str, old: u32) -> u32 {
    wait_status(sup, name, |s| {
        s.state.pid().is_some_and(|p| p != old)
            && matches!(s.state, herd::supervisor::WorkerState::Running { .. })
    })
    .await
    .pid
    .unwrap()
}

/// Waits for the first event matching `pred`, collecting the ones before it.
pub async fn wait_event(
    rx: &mut broadcast::Receiver<WorkerEvent>,
    pred: impl Fn(&WorkerEvent) -> bool,
) -> Vec<WorkerEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ev)) => {
                let done = pred(&ev);
                seen.push(ev);
                if done {
                    return seen;
                }
            }
            Ok(Err(e)) => panic!("event channel: {e}; seen {seen:?}"),
            Err(_) => panic!("timed out waiting for an event; seen {seen:?}"),
        }
    }
}

/// SIGKILLs one process we started.
pub fn sigkill(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill");
}

/// The state letter and parent pid of a process, if it exists.
pub fn proc_state(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether the process no longer runs: gone, or a zombie left to another
/// parent (this machine's init does not reap orphans; ours are reaped by herd).
pub fn is_dead(pid: u32) -> bool {
    match proc_state(pid) {
        None => true,
        Some(('Z', ppid)) => ppid != std::process::id(),
        Some(_) => false,
    }
}

/// Waits until the process no longer runs.
pub async fn wait_dead(pid: u32) {
    eventually(&format!("process {pid} to die"), || async {
        is_dead(pid).then_some(())
    })
    .await
}

/// Waits until our own child is gone from /proc: dead and reaped.
pub async fn wait_reaped(pid: u32) {
    eventually(&format!("process {pid} to be reaped"), || async {
        proc_state(pid).is_none().then_some(())
    })
    .await
}
