//! [`LogWriter`]: the agent's log output to stderr, which never blocks the code that logs.
//!
//! `tracing` formats each event into a buffer of its own ([`EventWriter`]); when the event is
//! complete the buffer is queued, if the queue has room (at most [`MAX_QUEUED_EVENTS`] events
//! and [`MAX_QUEUED_BYTES`] bytes), and otherwise dropped and counted ([`LogWriter::dropped`],
//! `herd_log_dropped_total`). A thread of its own (`herd-log`) writes the queue to stderr. When
//! stderr blocks (a pipe nobody reads, a slow journald, a blocking container log driver) only
//! that thread waits: the agent's runtime, its supervisor and its API go on, and log lines are
//! lost, counted, until stderr moves again. The thread lives as long as the process.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Events queued at most; past it, events are dropped.
pub const MAX_QUEUED_EVENTS: usize = 4096;
/// Bytes queued at most; past it, events are dropped.
pub const MAX_QUEUED_BYTES: usize = 1 << 20;

#[derive(Default)]
struct Queue {
    events: VecDeque<Vec<u8>>,
    bytes: usize,
    /// The writer is writing a batch it took.
    busy: bool,
}

#[derive(Default)]
struct Inner {
    queue: Mutex<Queue>,
    /// Wakes the writer when events arrive, and `flush` when the queue empties.
    changed: Condvar,
    dropped: AtomicU64,
}

/// A non-blocking, lossy writer to stderr for `tracing_subscriber::fmt().with_writer(..)`.
/// Cheap to clone; every clone feeds the same queue and thread.
#[derive(Clone)]
pub struct LogWriter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl LogWriter {
    /// Starts the thread that writes to stderr.
    ///
    /// # Panics
    /// If the thread cannot be started.
    pub fn stderr() -> LogWriter {
        LogWriter::to(std::io::stderr())
    }

    fn to(mut out: impl Write + Send + 'static) -> LogWriter {
        let inner = Arc::new(Inner::default());
        let writer = inner.clone();
        std::thread::Builder::new()
            .name("herd-log".into())
            .spawn(move || loop {
                let batch = {
                    let mut queue = writer.lock();
                    while queue.events.is_empty() {
                        queue = writer
                            .changed
                            .wait(queue)
                            .unwrap_or_else(|p| p.into_inner());
                    }
                    queue.bytes = 0;
                    queue.busy = true;
                    std::mem::take(&mut queue.events)
                };
                for event in batch {
                    // A write error (stderr closed) loses the line, like a full queue would.
                    let _ = out.write_all(&event);
                }
                let _ = out.flush();
                writer.lock().busy = false;
                writer.changed.notify_all();
            })
            .expect("cannot start the log writer thread");
        LogWriter { inner }
    }

    /// Queues `line` (a newline is added) after the events logged so far, or drops and counts
    /// it like an event when the queue is full: for the agent's own messages to its operator.
    pub fn print(&self, line: impl Into<String>) {
        let mut line = line.into().into_bytes();
        line.push(b'\n');
        self.inner.offer(line);
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Waits up to `timeout` for what is queued to be written (before the process exits).
    pub fn flush(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut queue = self.inner.lock();
        while !queue.events.is_empty() || queue.busy {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            queue = match self.inner.changed.wait_timeout(queue, left) {
                Ok((queue, _)) => queue,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn offer(&self, event: Vec<u8>) {
        let mut queue = self.lock();
        let full =
            queue.events.len() >= MAX_QUEUED_EVENTS || queue.bytes + event.len() > MAX_QUEUED_BYTES;
        if full {
            drop(queue);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.bytes += event.len();
        queue.events.push_back(event);
        drop(queue);
        self.changed.notify_all();
    }
}

/// One event being formatted; queued whole when dropped.
pub struct EventWriter {
    inner: Arc<Inner>,
    buf: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.inner.offer(std::mem::take(&mut self.buf));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> EventWriter {
        EventWriter {
            inner: self.inner.clone(),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    /// A writer that blocks until told to go on, like a pipe nobody reads.
    struct Blocked(Arc<(Mutex<bool>, Condvar)>, Arc<Mutex<Vec<u8>>>);

    impl Write for Blocked {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            let (open, cv) = &*self.0;
            let mut go = open.lock().unwrap();
            while !*go {
                go = cv.wait(go).unwrap();
            }
            self.1.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_output_drops_and_counts_and_never_blocks_the_logger() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let written = Arc::new(Mutex::new(Vec::new()));
        let log = LogWriter::to(Blocked(gate.clone(), written.clone()));
        let started = Instant::now();
        for i in 0..(MAX_QUEUED_EVENTS * 2) {
            let mut w = log.make_writer();
            writeln!(w, "event {i}").unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        // The writer holds the batch it took before blocking; the queue holds at most its bound.
        assert!(log.dropped() > 0);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        log.flush(Duration::from_secs(30));
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("event 0\n"), "{}", &text[..20]);
        let lines = text.lines().count() as u64;
        assert_eq!(lines + log.dropped(), MAX_QUEUED_EVENTS as u64 * 2);
    }
}
