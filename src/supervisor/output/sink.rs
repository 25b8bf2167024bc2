//! The output sink: a bounded queue between the readers and the writer
//! thread, which never makes a reader wait.
//!
//! [`Sink::offer`] queues a line if there is room (at most
//! [`MAX_QUEUED_LINES`] lines and [`MAX_QUEUED_BYTES`] bytes queued) and
//! otherwise drops it, counting it in the worker's `dropped`. The writer
//! thread ([`Sink::start`], named `herd-output-writer`) takes everything
//! queued at once, appends each line to its worker's log file or logs it
//! with `tracing`, then flushes the files it wrote to. A slow disk or a
//! blocked stderr stalls only this thread: the queue fills, lines are
//! dropped and counted, and the readers, the supervisor and the workers go
//! on. The thread ends once [`Sink::close`] is called and the queue is
//! empty.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::{Output, Stream};
use crate::log_limit::LogLimit;

/// Lines queued at most; past it, lines are dropped.
pub const MAX_QUEUED_LINES: usize = 16 * 1024;
/// Bytes queued at most (all lines' text together); past it, lines are dropped.
pub const MAX_QUEUED_BYTES: usize = 8 << 20;

/// One line on its way to a file or `tracing`.
pub(crate) struct Record {
    pub(crate) output: Arc<Output>,
    pub(crate) stream: Stream,
    pub(crate) seq: u64,
    pub(crate) time: SystemTime,
    pub(crate) text: Arc<str>,
}

#[derive(Default)]
struct Queue {
    records: VecDeque<Record>,
    bytes: usize,
    closed: bool,
    /// Workers with lines dropped since the writer last looked (one entry each).
    dropping: Vec<Arc<Output>>,
}

/// The queue and the writer's wake-up; shared by every reader of one supervisor.
#[derive(Default)]
pub(crate) struct Sink {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").finish_non_exhaustive()
    }
}

impl Sink {
    /// A sink and its writer thread.
    ///
    /// # Panics
    /// If the thread cannot be started.
    pub(crate) fn start() -> Arc<Sink> {
        let sink = Arc::new(Sink::default());
        let writer = sink.clone();
        std::thread::Builder::new()
            .name("herd-output-writer".into())
            .spawn(move || writer.write_all())
            .expect("cannot start the output writer thread");
        sink
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `record`, or drops and counts it when the queue is full (or
    /// closed). Never waits for the writer.
    pub(crate) fn offer(&self, record: Record) {
        let len = record.text.len();
        let mut queue = self.queue();
        let full = queue.records.len() >= MAX_QUEUED_LINES
            || (queue.bytes + len > MAX_QUEUED_BYTES && !queue.records.is_empty());
        if full || queue.closed {
            record.output.count_dropped();
            if !queue
                .dropping
                .iter()
                .any(|o| Arc::ptr_eq(o, &record.output))
            {
                queue.dropping.push(record.output);
            }
            return;
        }
        queue.bytes += len;
        let was_empty = queue.records.is_empty();
        queue.records.push_back(record);
        drop(queue);
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// Lets the writer end once it has written what is queued.
    pub(crate) fn close(&self) {
        self.queue().closed = true;
        self.ready.notify_one();
    }

    /// Waits for records; `None` once closed and empty. Also hands over the
    /// workers that had lines dropped.
    fn take(&self, dropping: &mut Vec<Arc<Output>>) -> Option<VecDeque<Record>> {
        let mut queue = self.queue();
        loop {
            if !queue.records.is_empty() {
                queue.bytes = 0;
                dropping.append(&mut queue.dropping);
                return Some(std::mem::take(&mut queue.records));
            }
            if queue.closed {
                return None;
            }
            queue = self.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The writer thread's loop. Lines dropped for a full queue are logged
    /// here, at most once a minute per worker.
    fn write_all(&self) {
        let mut touched: Vec<Arc<Output>> = Vec::new();
        let mut dropping: Vec<Arc<Output>> = Vec::new();
        let mut limit = LogLimit::new(Duration::from_secs(60));
        while let Some(batch) = self.take(&mut dropping) {
            for output in dropping.drain(..) {
                if limit.due(output.worker.clone()) {
                    let dropped = output.stats().dropped;
                    tracing::warn!(worker = %output.worker, dropped, "worker output lines dropped: the output queue was full (they stay in memory)");
                }
            }
            for record in batch {
                match &record.output.file {
                    Some(file) => {
                        file.write(record.time, record.stream, record.seq, &record.text);
                        if !touched.iter().any(|o| Arc::ptr_eq(o, &record.output)) {
                            touched.push(record.output.clone());
                        }
                    }
                    None => tracing::info!(
                        worker = %record.output.worker,
                        stream = record.stream.as_str(),
                        "{}",
                        record.text
                    ),
                }
            }
            for output in touched.drain(..) {
                if let Some(file) = &output.file {
                    file.flush();
                }
            }
        }
    }

    /// Records queued now.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queue().records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(output: &Arc<Output>, text: &str) -> Record {
        Record {
            output: output.clone(),
            stream: Stream::Stdout,
            seq: 1,
            time: SystemTime::now(),
            text: text.into(),
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        // No writer thread: nothing drains the queue.
        let sink = Sink::default();
        let output = Arc::new(Output::new("w", None));
        for _ in 0..MAX_QUEUED_LINES + 10 {
            sink.offer(record(&output, "x"));
        }
        assert_eq!(sink.queued(), MAX_QUEUED_LINES);
        assert_eq!(output.stats().dropped, 10);
    }

    #[test]
    fn the_queue_is_bounded_in_bytes() {
        let sink = Sink::default();
        let output = Arc::new(Output::new("w", None));
        let line = "y".repeat(1 << 20);
        for _ in 0..20 {
            sink.offer(record(&output, &line));
        }
        assert_eq!(sink.queued(), MAX_QUEUED_BYTES / line.len());
        assert_eq!(output.stats().dropped, 20 - sink.queued() as u64);
    }

    #[test]
    fn a_closed_sink_drops_and_its_writer_ends() {
        let sink = Sink::start();
        let output = Arc::new(Output::new("w", None));
        sink.close();
        sink.offer(record(&output, "late"));
        assert_eq!(output.stats().dropped, 1);
        assert!(sink.take(&mut Vec::new()).is_none());
    }
}
