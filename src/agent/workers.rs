//! The core task's worker operations: starts, stops and deletes that run beside the core's loop
//! instead of inside it.
//!
//! A stop can take a worker's whole `shutdown_timeout`; the core task must go on answering
//! pushes, API commands and gossip meanwhile. So every operation on a worker runs as a task of
//! [`WorkerOps`] (a `JoinSet` the core owns: dropped with the core, it aborts what is still
//! running), and its outcome comes back into the core's `select!` loop as a [`Done`]. Operations
//! on different workers run side by side: a reconcile that replaces 100 workers takes one
//! `shutdown_timeout`, not 100. Operations on one worker run one at a time, in the order they
//! were asked for (a queue per name), so a worker being removed and wanted again is started only
//! once its removal is over.
//!
//! The core updates what it believes runs (`Core::running`) when it queues an operation, not when
//! the operation ends, so a reconcile planned while operations are in flight plans against what
//! will be, and queues behind them what differs.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::AgentError;
use crate::supervisor::{self, Supervisor, WorkerSpec};

/// Where an operator's command gets its answer.
pub(crate) type Reply = oneshot::Sender<Result<(), AgentError>>;

/// An operator's command that ended, with the answer it is owed. The core sends it once it has
/// published the state the command left, so the caller's next read shows that state.
pub(crate) struct Answer {
    reply: Reply,
    result: Result<(), AgentError>,
}

impl Answer {
    /// Sends the answer (a caller that gave up waiting is no error).
    pub(crate) fn send(self) {
        let _ = self.reply.send(self.result);
    }
}

/// One operation on one worker.
pub(crate) enum Op {
    /// Start it from its spec (a reconcile; `reply`: the operator's `herd start` that asked).
    Start {
        spec: Box<WorkerSpec>,
        reply: Option<Reply>,
    },
    /// Stop it and forget it: the config no longer wants it here, or its spec changed.
    Remove,
    /// The operator's `herd start` of a worker the supervisor holds (stopped, exited, failed).
    StartExisting { reply: Reply },
    /// The operator's `herd restart`.
    Restart { reply: Reply },
    /// The operator's `herd stop`.
    Stop { reply: Reply },
    /// The operator's `herd delete`.
    Delete { reply: Reply },
}

/// What an operation did, for the core to take into account.
pub(crate) enum Done {
    /// A start from a spec ended; the pid, or why not.
    Started {
        name: String,
        spec: Box<WorkerSpec>,
        result: Result<u32, supervisor::Error>,
        /// The operator's `herd start` that asked for it, if one did.
        answer: Option<Answer>,
    },
    /// A removal ended.
    Removed {
        name: String,
        result: Result<(), supervisor::Error>,
    },
    /// An operator's command ended.
    Answered(Answer),
}

/// The operations in flight, and those waiting behind another on the same worker.
pub(crate) struct WorkerOps {
    sup: Supervisor,
    tasks: JoinSet<Done>,
    in_flight: BTreeSet<String>,
    /// The worker each task works on.
    names: HashMap<tokio::task::Id, String>,
    waiting: BTreeMap<String, VecDeque<Op>>,
}

impl WorkerOps {
    pub(crate) fn new(sup: Supervisor) -> Self {
        WorkerOps {
            sup,
            tasks: JoinSet::new(),
            in_flight: BTreeSet::new(),
            names: HashMap::new(),
            waiting: BTreeMap::new(),
        }
    }

    /// Queues `op` on worker `name`: it starts at once unless another operation on that worker
    /// is in flight, in which case it starts when those queued before it are done.
    pub(crate) fn push(&mut self, name: &str, op: Op) {
        if self.in_flight.contains(name) {
            self.waiting
                .entry(name.to_string())
                .or_default()
                .push_back(op);
        } else {
            self.launch(name.to_string(), op);
        }
    }

    /// The next operation to end, after which the next one queued on its worker (if any) is
    /// started; pending forever while nothing is in flight.
    pub(crate) async fn next(&mut self) -> Done {
        loop {
            let (id, done) = match self.tasks.join_next_with_id().await {
                Some(Ok((id, done))) => (id, Some(done)),
                // The supervisor's calls don't panic; if one did, its worker is free again.
                Some(Err(err)) => {
                    tracing::error!(error = %err, "a worker operation ended abnormally");
                    (err.id(), None)
                }
                None => std::future::pending().await,
            };
            if let Some(name) = self.names.remove(&id) {
                self.in_flight.remove(&name);
                let next = self.waiting.get_mut(&name).and_then(VecDeque::pop_front);
                if self.waiting.get(&name).is_some_and(VecDeque::is_empty) {
                    self.waiting.remove(&name);
                }
                if let Some(op) = next {
                    self.launch(name, op);
                }
            }
            if let Some(done) = done {
                return done;
            }
        }
    }

    fn launch(&mut self, name: String, op: Op) {
        let sup = self.sup.clone();
        self.in_flight.insert(name.clone());
        let task_name = name.clone();
        let handle = self.tasks.spawn(async move {
            match op {
                Op::Start { spec, reply } => {
                    let result = sup.start_worker((*spec).clone()).await;
                    let answer = reply.map(|reply| Answer {
                        reply,
                        result: match &result {
                            Ok(_) => Ok(()),
                            Err(err) => Err(AgentError::StartFailed {
                                worker: name.clone(),
                                reason: err.to_string(),
                            }),
                        },
                    });
                    Done::Started {
                        name,
                        spec,
                        result,
                        answer,
                    }
                }
                Op::Remove => {
                    let result = sup.delete_worker(&name).await;
                    Done::Removed { name, result }
                }
                Op::StartExisting { reply } => {
                    let result = sup.start_existing(&name).await;
                    Done::Answered(Answer {
                        reply,
                        result: result.map(drop).map_err(AgentError::from),
                    })
                }
                Op::Restart { reply } => {
                    let result = sup.restart_worker(&name).await;
                    Done::Answered(Answer {
                        reply,
                        result: result.map(drop).map_err(AgentError::from),
                    })
                }
                Op::Stop { reply } => {
                    let result = sup.stop_worker(&name).await;
                    Done::Answered(Answer {
                        reply,
                        result: result.map_err(AgentError::from),
                    })
                }
                Op::Delete { reply } => {
                    let result = sup.delete_worker(&name).await;
                    Done::Answered(Answer {
                        reply,
                        result: result.map_err(AgentError::from),
                    })
                }
            }
        });
        self.names.insert(handle.id(), task_name);
    }
}
