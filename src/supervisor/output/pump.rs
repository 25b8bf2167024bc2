//! The output thread: where the readers of every worker's stdout and stderr
//! run, away from the supervisor's thread.
//!
//! [`Pump::start`] starts a thread named `herd-output` with a current-thread
//! Tokio runtime of its own, and the sink's writer thread. The supervisor's
//! thread hands each new process's pipes over with [`Pump::read`]: the file
//! descriptors leave the supervisor's runtime and are registered with the
//! output runtime, so neither reading nor waking up for output ever happens
//! on the supervisor's thread. The pump also keeps every worker's
//! [`Output`] by name (the registry), so the supervisor's handles read logs
//! and counters without asking the supervisor's thread.
//!
//! [`Pump::stop`] (called once the supervisor's thread has stopped every
//! worker and cancelled the readers) ends the output runtime and lets the
//! writer finish what is queued.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::super::jsonl::Channel;
use super::sink::Sink;
use super::{read_stream, Output, OutputStats, Stream};

/// The output thread's handle; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Pump {
    runtime: tokio::runtime::Handle,
    sink: Arc<Sink>,
    stop: CancellationToken,
    outputs: Arc<Mutex<BTreeMap<String, Arc<Output>>>>,
}

impl Pump {
    /// Starts the output thread and the writer thread.
    ///
    /// # Panics
    /// If a thread or the runtime cannot be created.
    pub(crate) fn start() -> Pump {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cannot create the output runtime");
        let runtime = rt.handle().clone();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("herd-output".into())
            .spawn(move || {
                rt.block_on(stopped.cancelled());
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("cannot start the output thread");
        Pump {
            runtime,
            sink: Sink::start(),
            stop,
            outputs: Arc::default(),
        }
    }

    fn outputs(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Output>>> {
        self.outputs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads `fd` (a process's stdout or stderr) on the output thread until
    /// end of file or `cancel`, as a task tracked by `tracker`.
    pub(crate) fn read(
        &self,
        fd: OwnedFd,
        stream: Stream,
        output: Arc<Output>,
        channel: Option<Arc<Channel>>,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) {
        let task = read_stream(fd, stream, output, self.sink.clone(), channel, cancel);
        self.runtime.spawn(tracker.track_future(task));
    }

    /// Keeps `output` as the output of the worker it names (replacing a
    /// deleted worker's of the same name).
    pub(crate) fn register(&self, output: Arc<Output>) {
        self.outputs().insert(output.worker.to_string(), output);
    }

    /// Forgets a deleted worker's output.
    pub(crate) fn unregister(&self, worker: &str) {
        self.outputs().remove(worker);
    }

    /// The output of worker `name`.
    pub(crate) fn output(&self, name: &str) -> Option<Arc<Output>> {
        self.outputs().get(name).cloned()
    }

    /// Every worker's counters, by name.
    pub(crate) fn stats(&self) -> Vec<OutputStats> {
        self.outputs().values().map(|o| o.stats()).collect()
    }

    /// Ends the output runtime and, once it has written what is queued, the writer.
    pub(crate) fn stop(&self) {
        self.stop.cancel();
        self.sink.close();
    }
}
