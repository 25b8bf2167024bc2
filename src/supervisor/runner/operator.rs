//! The operator's commands, as the owning task applies them: start, stop,
//! restart, start again, delete, status, tail, and handing out call channels.
//!
//! Methods of the runner (runner.rs), run inside its loop; no task of their own.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;

use super::super::error::{Error, Result};
use super::super::event::WorkerEvent;
use super::super::jsonl::Channel;
use super::super::output::Output;
use super::super::policy::{self, Forget, RestartHistory};
use super::super::spec::{Readiness, WorkerSpec};
use super::super::status::WorkerState;
use super::super::user;
use super::{Command, Intent, Reply, Runner, Waiter, Worker};

impl Runner {
    pub(super) async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Status { reply } => {
                let now = Instant::now();
                let _ = reply.send(self.workers.iter().map(|w| w.status(now)).collect());
            }
            Command::Tail { name, reply } => {
                let _ = reply.send(self.index(&name).map(|i| self.workers[i].output.tail()));
            }
            Command::Channel { name, reply } => {
                let _ = reply.send(self.channel(&name));
            }
            Command::Start { spec, reply } => self.start_new(*spec, reply).await,
            Command::Restart { name, reply } => self.restart(&name, reply).await,
            Command::StartExisting { name, reply } => self.start_existing(&name, reply).await,
            Command::Stop { name, reply } => self.stop(&name, reply),
            Command::Delete { name, reply } => self.delete(&name, reply),
        }
    }

    pub(super) fn channel(&self, name: &str) -> Result<Arc<Channel>> {
        let w = &self.workers[self.index(name)?];
        if !w.spec.jsonl {
            return Err(Error::NotJsonl {
                worker: name.to_owned(),
            });
        }
        w.proc
            .as_ref()
            .and_then(|p| p.channel.clone())
            .ok_or_else(|| Error::NotRunning {
                worker: name.to_owned(),
                state: w.state.to_string(),
            })
    }

    /// Registers a new worker and starts it: at once, or, under an ordered
    /// strategy while a worker before it is still on its way up, once that
    /// one is ready (the reply waits). A spawn error answers the error and
    /// leaves the worker registered as `Failed`; an invalid spec, a duplicate
    /// name or a shutdown registers nothing.
    pub(super) async fn start_new(&mut self, spec: WorkerSpec, reply: Reply<u32>) {
        if let Err(err) = self.admit(&spec) {
            let _ = reply.send(Err(err));
            return;
        }
        let key = self.next_key;
        self.next_key += 1;
        let output = Arc::new(Output::new(&spec.name, spec.log_file.as_ref()));
        self.output.register(output.clone());
        let history = spec
            .intensity
            .map(|i| RestartHistory::of_worker(&spec.name, i));
        self.workers.push(Worker {
            key,
            name: spec.name.as_str().into(),
            spec,
            state: WorkerState::Starting { pid: None },
            since: SystemTime::now(),
            restarts: 0,
            last_exit: None,
            proc: None,
            intent: Intent::Policy,
            waiters: Vec::new(),
            start_at: None,
            streak: 0,
            history,
            output,
            operator_start: false,
            retry_reason: None,
        });
        let idx = self.workers.len() - 1;
        if self.startable().get(idx) == Some(&false) {
            let w = &mut self.workers[idx];
            w.operator_start = true;
            w.start_at = Some(Instant::now());
            w.waiters.push(Waiter::Started(reply));
            return;
        }
        let r = match self.spawn(idx).await {
            Ok(pid) => Ok(pid),
            // Registered as failed, not retried: no crash loop follows a bad program.
            Err(err) => Err(self.refuse_start(idx, err)),
        };
        let _ = reply.send(r);
    }

    /// Checks a new worker's spec and name before anything is registered.
    fn admit(&self, spec: &WorkerSpec) -> Result<()> {
        let invalid = |reason: String| Error::InvalidSpec {
            worker: spec.name.clone(),
            reason,
        };
        if self.shutting_down {
            return Err(Error::Shutdown);
        }
        if spec.name.is_empty() {
            return Err(invalid("the name is empty".into()));
        }
        if let Some(problem) = spec.user.as_deref().and_then(user::name_problem) {
            return Err(invalid(format!("user {problem}")));
        }
        if let Some(problem) = readiness_problem(spec) {
            return Err(invalid(problem));
        }
        if self.workers.iter().any(|w| w.spec.name == spec.name) {
            return Err(Error::DuplicateWorker {
                name: spec.name.clone(),
            });
        }
        Ok(())
    }

    pub(super) async fn restart(&mut self, name: &str, reply: Reply<u32>) {
        if self.shutting_down {
            let _ = reply.send(Err(Error::Shutdown));
            return;
        }
        let idx = match self.index(name) {
            Ok(i) => i,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        self.detach(idx);
        let w = &mut self.workers[idx];
        if w.proc.is_some() {
            w.intent = Intent::Restart;
            w.waiters.push(Waiter::Started(reply));
            self.send_stop(idx);
        } else {
            self.start_resting(idx, reply).await;
        }
    }

    pub(super) async fn start_existing(&mut self, name: &str, reply: Reply<u32>) {
        if self.shutting_down {
            let _ = reply.send(Err(Error::Shutdown));
            return;
        }
        let idx = match self.index(name) {
            Ok(i) => i,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let w = &mut self.workers[idx];
        match &w.proc {
            Some(p) if !p.stopping => {
                let _ = reply.send(Ok(p.pid));
            }
            Some(_) => {
                // Being stopped: start again once it is down.
                self.detach(idx);
                let w = &mut self.workers[idx];
                w.intent = Intent::Restart;
                w.waiters.push(Waiter::Started(reply));
            }
            None => {
                self.detach(idx);
                self.start_resting(idx, reply).await;
            }
        }
    }

    /// Starts a worker that has no process, at the operator's request.
    pub(super) async fn start_resting(&mut self, idx: usize, reply: Reply<u32>) {
        let w = &mut self.workers[idx];
        let failed = matches!(w.state, WorkerState::Failed { .. });
        // The operator takes over from a supervisor that gave up (on all, or on this one).
        match policy::operator_start_forgets(failed, w.history.is_some()) {
            Forget::Nothing => {}
            Forget::Own => w.history.iter_mut().for_each(RestartHistory::clear),
            Forget::Supervisor => self.intensity.clear(),
        }
        self.workers[idx].streak = 0;
        let r = match self.spawn(idx).await {
            Ok(pid) => Ok(pid),
            Err(err) => Err(self.refuse_start(idx, err)),
        };
        let _ = reply.send(r);
    }

    pub(super) fn stop(&mut self, name: &str, reply: Reply<()>) {
        let idx = match self.index(name) {
            Ok(i) => i,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        self.detach(idx);
        let w = &mut self.workers[idx];
        if w.proc.is_some() {
            if w.intent != Intent::Shutdown {
                w.intent = Intent::Stop;
            }
            w.waiters.push(Waiter::Stopped(reply));
            self.send_stop(idx);
        } else {
            w.start_at = None;
            w.operator_start = false;
            if !matches!(w.state, WorkerState::Stopped) {
                w.set_state(WorkerState::Stopped);
                let name = w.spec.name.clone();
                // A start_worker still held for an ordered strategy ends here.
                w.settle(|| Error::NotRunning {
                    worker: name.clone(),
                    state: "stopped".into(),
                });
                self.emit(WorkerEvent::Stopped { name });
            }
            let _ = reply.send(Ok(()));
            self.advance_group_sync();
        }
    }

    pub(super) fn delete(&mut self, name: &str, reply: Reply<()>) {
        let idx = match self.index(name) {
            Ok(i) => i,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        self.detach(idx);
        let w = &mut self.workers[idx];
        if w.proc.is_some() {
            w.intent = Intent::Delete;
            w.waiters.push(Waiter::Stopped(reply));
            self.send_stop(idx);
        } else {
            self.remove(idx);
            let _ = reply.send(Ok(()));
            self.advance_group_sync();
        }
    }

    pub(super) fn remove(&mut self, idx: usize) {
        let mut w = self.workers.remove(idx);
        let name = w.spec.name.clone();
        self.output.unregister(&name);
        w.settle(|| Error::UnknownWorker { name: name.clone() });
        tracing::debug!(worker = %w.name, "worker deleted");
        self.emit(WorkerEvent::Deleted { name: w.spec.name });
    }
}

/// What is wrong with the spec's readiness settings, if anything.
fn readiness_problem(spec: &WorkerSpec) -> Option<String> {
    let ready = spec.ready?;
    if spec.ready_timeout.is_zero() {
        return Some("ready_timeout must be longer than zero".into());
    }
    match ready {
        Readiness::Jsonl if !spec.jsonl => {
            Some("jsonl readiness needs the call protocol (.jsonl())".into())
        }
        Readiness::After(after) if after >= spec.ready_timeout => Some(format!(
            "ready after {after:?} is not shorter than ready_timeout {:?}",
            spec.ready_timeout
        )),
        _ => None,
    }
}
