//! One worker process: spawning it in its own process group, tied to herd's
//! life, as its user when it names one (see `user.rs`), and stopping it
//! (signal to the group, grace period, SIGKILL, reap).
//!
//! Spawns happen on the supervisor's own thread (see [`spawn`]). Each
//! process then has a process task, [`watch`], spawned by the runner and
//! tracked by the supervisor's `TaskTracker`: it owns the `Child`, applies
//! stop requests, reaps the process, kills what is left of its group, fails
//! the pending calls and reports the exit to the runner. It ends when the
//! process has been reaped and its group is empty (see [`watch`]). If the task is dropped instead (the runtime shuts
//! down under it), its guard SIGKILLs the process group and `kill_on_drop`
//! kills the child as a last safety net.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::jsonl::Channel;
use super::spec::WorkerSpec;
use super::status::Exit;
use super::user::{self, Identity};

/// Builds the command for a spec: argv exec (no shell), own process group,
/// piped output, stdin piped only for the call protocol, the death signal,
/// and, with an `identity`, the user's environment and credentials.
pub(crate) fn command(spec: &WorkerSpec, identity: Option<&Identity>) -> Command {
    let mut cmd = Command::new(&spec.program);
    if let Some(identity) = identity {
        // Before the spec's env, which overrides them.
        cmd.env("HOME", &identity.home)
            .env("USER", &identity.name)
            .env("LOGNAME", &identity.name);
    }
    cmd.args(&spec.args)
        .envs(&spec.env)
        .env("HERD_WORKER", &spec.name)
        .stdin(if spec.jsonl {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let creds = identity.and_then(|i| i.switch.clone());
    // A worker that changes user enters its working directory as that user,
    // after the switch; the path is made a C string here, before the fork.
    let mut cwd_after_switch: Option<CString> = None;
    if let Some(dir) = &spec.current_dir {
        match (&creds, CString::new(dir.as_os_str().as_bytes())) {
            (Some(_), Ok(path)) => cwd_after_switch = Some(path),
            // A path with a NUL fails in the spawn, as it always has.
            _ => {
                cmd.current_dir(dir);
            }
        }
    }
    let parent = nix::unistd::getpid();
    // SAFETY: runs in the child between fork and exec; it only makes
    // async-signal-safe system calls (setgroups, setgid, setuid, chdir,
    // prctl, getppid) on data prepared before the fork, and allocates nothing
    // on the success path.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(creds) = &creds {
                user::become_user(creds).map_err(io::Error::from)?;
            }
            if let Some(dir) = &cwd_after_switch {
                nix::unistd::chdir(dir.as_c_str()).map_err(io::Error::from)?;
            }
            // The worker gets SIGKILL when the thread that forked it exits:
            // the supervisor's own thread, which lives until its workers are
            // stopped, so in effect when herd dies, even by SIGKILL. Set after
            // the user switch: a change of credentials clears it.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            // Herd may have died between fork and prctl: then nobody would
            // send the signal, so give up now instead of running orphaned.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::other("herd exited while starting the worker"));
            }
            Ok(())
        });
    }
    cmd
}

/// Forks and execs `cmd` on the calling thread, which must be the
/// supervisor's own thread (see below); returns once the exec succeeded or
/// failed, so a bad program is reported at once.
///
/// Why the thread matters: `PR_SET_PDEATHSIG` fires when the *thread* that
/// forked the child exits, not the process. Forking from a Tokio
/// blocking-pool thread, or from whatever thread happens to drive a
/// current-thread runtime, would kill healthy workers when that thread goes
/// away. So each supervisor runs on a dedicated thread of its own (started by
/// `Builder::start`), and every fork happens there. That thread exits only
/// after the supervisor has stopped all its workers, when it panics, or with
/// the herd process: in each case the workers should die, and do.
pub(crate) fn spawn(mut cmd: Command) -> io::Result<Child> {
    cmd.spawn()
}

/// Sends `signal` to the whole process group `pgid`; a group that is already
/// gone is not an error.
pub(crate) fn signal_group(pgid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pgid) else {
        return;
    };
    if raw <= 1 {
        return;
    }
    if let Err(err) = killpg(Pid::from_raw(raw), signal) {
        if err != nix::errno::Errno::ESRCH {
            tracing::warn!(pgid, signal = signal.as_str(), %err, "cannot signal worker group");
        }
    }
}

/// Whether any process is left in the group `pgid` that has not ended:
/// `kill(-pgid, 0)` first (no process: empty), then, since a zombie counts
/// for `kill` and an init that does not reap orphans leaves them for good,
/// a look through `/proc` for a member that is not a zombie.
async fn group_alive(pgid: u32, look_in_proc: bool) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    if raw <= 1 {
        return false;
    }
    if killpg(Pid::from_raw(raw), None) == Err(nix::errno::Errno::ESRCH) {
        return false;
    }
    if !look_in_proc {
        return true;
    }
    // Reading /proc is blocking file I/O: off the supervisor's thread.
    tokio::task::spawn_blocking(move || live_member(pgid))
        .await
        .unwrap_or(true)
}

/// Whether `/proc` lists a process of group `pgid` that is not a zombie.
fn live_member(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|f| f.parse::<u32>().ok());
        if pgrp == Some(pgid) && !matches!(state, "Z" | "X") {
            return true;
        }
    }
    false
}

/// How often a stop checks whether the rest of the group has ended after its
/// leader did; every fifth check also looks through `/proc`.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// A request to a process task.
#[derive(Debug)]
pub(crate) enum Control {
    /// Send `signal` to the group; SIGKILL the group if still alive after
    /// `timeout`. A second stop can only bring the SIGKILL closer.
    Stop { signal: Signal, timeout: Duration },
}

/// What a process task reports when its process has ended.
#[derive(Debug)]
pub(crate) struct ExitNote {
    pub key: u64,
    pub generation: u64,
    pub exit: Exit,
}

/// Kills the process group if the process task is dropped before reaping.
struct GroupGuard {
    pgid: u32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pgid, Signal::SIGKILL);
        }
    }
}

/// The process task: waits for the child, applies stop requests, then cleans
/// up and reports.
///
/// Stop semantics: a stop sends its signal to the whole group and sets the
/// deadline. When the leader ends before the deadline, the rest of its group
/// keeps its grace period: the task waits until the group is empty (checked
/// every 20 ms) or the deadline passes, then SIGKILLs what is left, and only
/// then reports the exit, so the worker's `Stopped` (or `Exited`) means
/// its whole group is gone. A leader that ends by itself (no stop asked)
/// takes its group with it at once: whatever it left is SIGKILLed.
pub(crate) async fn watch(
    mut child: Child,
    pid: u32,
    note: ExitNote,
    mut control: mpsc::UnboundedReceiver<Control>,
    channel: Option<Arc<Channel>>,
    exits: mpsc::UnboundedSender<ExitNote>,
) {
    let mut guard = GroupGuard {
        pgid: pid,
        armed: true,
    };
    let mut kill_at: Option<Instant> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            Some(Control::Stop { signal, timeout }) = control.recv() => {
                signal_group(pid, signal);
                let at = Instant::now() + timeout;
                kill_at = Some(kill_at.map_or(at, |k| k.min(at)));
            }
            _ = tokio::time::sleep_until(kill_at.unwrap_or_else(Instant::now)), if kill_at.is_some() => {
                tracing::info!(pid, "worker ignored its stop signal, killing its group");
                signal_group(pid, Signal::SIGKILL);
                kill_at = None;
            }
        }
    };
    if let Some(deadline) = kill_at {
        // A stop is under way and the leader is gone: the rest of the group
        // gets what is left of its grace period.
        let mut polls = 0u32;
        loop {
            polls += 1;
            if !group_alive(pid, polls % 5 == 0).await {
                break;
            }
            let at = kill_at.unwrap_or(deadline);
            tokio::select! {
                _ = tokio::time::sleep(GROUP_POLL) => {}
                _ = tokio::time::sleep_until(at) => {
                    tracing::info!(pid, "worker's group outlived its grace period, killing it");
                    break;
                }
                Some(Control::Stop { signal, timeout }) = control.recv() => {
                    signal_group(pid, signal);
                    let sooner = Instant::now() + timeout;
                    kill_at = Some(at.min(sooner));
                }
            }
        }
    }
    guard.armed = false;
    // The leader is gone; whatever it left running in its group goes too.
    signal_group(pid, Signal::SIGKILL);
    let exit = match status {
        Ok(status) => Exit::from_status(status),
        Err(err) => {
            tracing::warn!(pid, %err, "cannot read worker exit status");
            Exit::Code(-1)
        }
    };
    if let Some(ch) = channel {
        ch.fail_all(Some(exit));
    }
    let _ = exits.send(ExitNote { exit, ..note });
}
