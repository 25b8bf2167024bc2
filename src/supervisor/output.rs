//! Worker output: splitting stdout/stderr into bounded lines, keeping the
//! last lines of each stream, and handing every line to the output sink.
//!
//! Nothing here runs on the supervisor's thread. Each supervisor has an
//! output thread of its own ([`pump`]: a current-thread runtime) where one
//! reader task per stream per process runs [`read_stream`]: it routes the
//! JSON-lines replies of a `jsonl` worker (`jsonl.rs`) to their callers,
//! keeps every other line in the worker's [`Output`] (numbered, with its
//! time), and offers it to the [`sink`]: a bounded queue drained by a writer
//! thread that appends the line to the worker's log file ([`logfile`]) or,
//! without one, logs it with `tracing` (fields `worker`, `stream`). When the
//! queue is full the line is dropped from the sink and counted in the
//! worker's `dropped` ([`OutputStats`]); the reader never waits for the
//! writer, and the supervisor never waits for either.
//!
//! A reader ends at end of file (the process group is gone) or when the
//! supervisor's I/O token is cancelled at the end of shutdown; the output
//! thread and the writer thread end after the supervisor's thread. Memory
//! stays bounded whatever the worker writes: a line is cut at
//! [`MAX_LINE_BYTES`] (the rest of it up to the next newline is dropped), each
//! stream keeps at most [`TAIL_LINES`] lines and [`TAIL_BYTES`] bytes, and
//! the sink holds at most [`sink::MAX_QUEUED_LINES`] lines and
//! [`sink::MAX_QUEUED_BYTES`] bytes.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use super::jsonl::Channel;
use super::status::Tail;

pub(crate) mod logfile;
pub(crate) mod logs;
pub(crate) mod pump;
pub(crate) mod sink;

pub use logfile::{LogFileSpec, DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX_SIZE};
pub use logs::{LogBatch, LogLine, LogQuery, LogSource, MAX_LOG_BYTES, MAX_LOG_LINES};

use logfile::LogFile;
use sink::Sink;

/// Lines kept per stream.
pub const TAIL_LINES: usize = 200;
/// Longest line kept or parsed; longer lines are cut.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Bytes kept per stream, all lines together.
pub const TAIL_BYTES: usize = 2 * MAX_LINE_BYTES;
/// Appended to a line that was cut.
pub(crate) const TRUNCATED: &str = " [truncated]";

const READ_CHUNK: usize = 64 * 1024;

/// Splits a byte stream into lines of at most `max` bytes.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
    /// After a cut: dropping bytes until the next newline.
    discarding: bool,
}

impl LineSplitter {
    pub(crate) fn new(max: usize) -> Self {
        LineSplitter {
            buf: Vec::new(),
            max,
            discarding: false,
        }
    }

    /// Feeds bytes; complete (or cut) lines are appended to `out`.
    pub(crate) fn push(&mut self, mut data: &[u8], out: &mut Vec<String>) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.append(&data[..i], out);
                    if self.discarding {
                        self.discarding = false;
                    } else {
                        out.push(self.take());
                    }
                    data = &data[i + 1..];
                }
                None => {
                    self.append(data, out);
                    data = &[];
                }
            }
        }
    }

    /// At end of file: the last line, if it had no newline.
    pub(crate) fn finish(&mut self, out: &mut Vec<String>) {
        if !self.discarding && !self.buf.is_empty() {
            out.push(self.take());
        }
    }

    fn append(&mut self, seg: &[u8], out: &mut Vec<String>) {
        if self.discarding {
            return;
        }
        let room = self.max - self.buf.len();
        if seg.len() <= room {
            self.buf.extend_from_slice(seg);
        } else {
            self.buf.extend_from_slice(&seg[..room]);
            let mut line = self.take();
            line.push_str(TRUNCATED);
            out.push(line);
            self.discarding = true;
        }
    }

    fn take(&mut self) -> String {
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let line = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        if self.buf.capacity() > READ_CHUNK {
            self.buf.shrink_to(READ_CHUNK);
        }
        line
    }
}

/// One kept line: its number in the worker's output, when it was read, its text.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) time: SystemTime,
    pub(crate) text: Arc<str>,
}

/// The last lines of one stream.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    lines: VecDeque<Entry>,
    bytes: usize,
}

impl Ring {
    pub(crate) fn push(&mut self, entry: Entry) {
        self.bytes += entry.text.len();
        self.lines.push_back(entry);
        while self.lines.len() > TAIL_LINES || (self.bytes > TAIL_BYTES && self.lines.len() > 1) {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.text.len();
            }
        }
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.iter().map(|e| e.text.to_string()).collect()
    }

    pub(crate) fn entries(&self) -> impl DoubleEndedIterator<Item = &Entry> {
        self.lines.iter()
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Which stream a reader reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Stream> {
        match text {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// What a worker's output has cost so far, as [`Supervisor::output_stats`](super::Supervisor::output_stats)
/// reports it. Counted since the worker was added (kept across its restarts).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutputStats {
    /// The worker's name.
    pub worker: String,
    /// Lines read from its stdout and stderr (protocol replies not counted).
    pub lines: u64,
    /// Lines the output sink had no room for: kept in memory (for
    /// [`Supervisor::tail`](super::Supervisor::tail) and the logs) but never
    /// written to the log file or to `tracing`.
    pub dropped: u64,
    /// Failed writes, opens and rotations of its log file (each line that
    /// could not be written counts once).
    pub write_errors: u64,
}

#[derive(Debug, Default)]
struct Kept {
    stdout: Ring,
    stderr: Ring,
    /// The number the next line gets; lines are numbered from 1.
    next_seq: u64,
}

/// A worker's kept output, shared by its readers, the sink's writer and the
/// supervisor's handles. Kept across restarts, so the lines before a crash
/// stay readable.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) worker: Arc<str>,
    kept: Mutex<Kept>,
    dropped: AtomicU64,
    /// Its log file, if its spec has one.
    pub(crate) file: Option<LogFile>,
}

impl Output {
    pub(crate) fn new(worker: &str, file: Option<&LogFileSpec>) -> Output {
        Output {
            worker: worker.into(),
            kept: Mutex::new(Kept {
                next_seq: 1,
                ..Kept::default()
            }),
            dropped: AtomicU64::new(0),
            file: file.map(|spec| LogFile::new(spec.clone())),
        }
    }

    fn kept(&self) -> MutexGuard<'_, Kept> {
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn tail(&self) -> Tail {
        let kept = self.kept();
        Tail {
            stdout: kept.stdout.lines(),
            stderr: kept.stderr.lines(),
        }
    }

    /// Keeps a line; returns its number and time.
    pub(crate) fn keep(&self, stream: Stream, text: Arc<str>) -> (u64, SystemTime) {
        let mut kept = self.kept();
        let seq = kept.next_seq;
        kept.next_seq += 1;
        let time = SystemTime::now();
        let entry = Entry { seq, time, text };
        match stream {
            Stream::Stdout => kept.stdout.push(entry),
            Stream::Stderr => kept.stderr.push(entry),
        }
        (seq, time)
    }

    /// The kept lines of both streams in the order they were read, and the
    /// number the next line will get.
    pub(crate) fn entries(&self) -> (Vec<(Stream, Entry)>, u64) {
        let kept = self.kept();
        let mut out: Vec<(Stream, Entry)> = kept
            .stdout
            .entries()
            .map(|e| (Stream::Stdout, e.clone()))
            .chain(kept.stderr.entries().map(|e| (Stream::Stderr, e.clone())))
            .collect();
        out.sort_by_key(|(_, e)| e.seq);
        (out, kept.next_seq)
    }

    pub(crate) fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> OutputStats {
        OutputStats {
            worker: self.worker.to_string(),
            lines: self.kept().next_seq - 1,
            dropped: self.dropped.load(Ordering::Relaxed),
            write_errors: self.file.as_ref().map_or(0, LogFile::errors),
        }
    }
}

/// Reads one stream of one process until end of file or `cancel`: protocol
/// replies go to `channel`, every other line to the worker's [`Output`] and
/// the sink. Runs on the output thread's runtime (it registers `fd` there).
pub(crate) async fn read_stream(
    fd: OwnedFd,
    stream: Stream,
    output: Arc<Output>,
    sink: Arc<Sink>,
    channel: Option<Arc<Channel>>,
    cancel: CancellationToken,
) {
    let reader = match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
        Ok(reader) => reader,
        Err(err) => {
            tracing::warn!(worker = %output.worker, stream = stream.as_str(), %err, "cannot read worker output");
            return;
        }
    };
    let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
    // Allocated at the first output: an idle worker's streams hold no buffer (1,000 idle
    // workers would otherwise keep 128 MiB of them).
    let mut buf: Vec<u8> = Vec::new();
    let mut lines = Vec::new();
    loop {
        let ready = tokio::select! {
            _ = cancel.cancelled() => break,
            ready = reader.readable() => ready,
        };
        let n = match ready {
            Ok(()) => {
                if buf.is_empty() {
                    buf = vec![0u8; READ_CHUNK];
                }
                match reader.try_read(&mut buf) {
                    Ok(n) => n,
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => 0,
                }
            }
            Err(_) => 0,
        };
        if n == 0 {
            splitter.finish(&mut lines);
        } else {
            splitter.push(&buf[..n], &mut lines);
        }
        for line in lines.drain(..) {
            if let Some(ch) = &channel {
                if ch.route(&line) {
                    continue;
                }
            }
            let text: Arc<str> = line.into();
            let (seq, time) = output.keep(stream, text.clone());
            sink.offer(sink::Record {
                output: output.clone(),
                stream,
                seq,
                time,
                text,
            });
        }
        if n == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn lines_are_split_across_chunks() {
        assert_eq!(
            split(100, &[b"ab", b"c\nde\r\n", b"f"]),
            vec!["abc", "de", "f"]
        );
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_dropped_until_the_newline() {
        let out = split(4, &[b"abcdefgh", b"ij\nxy\n"]);
        assert_eq!(out, vec![format!("abcd{TRUNCATED}"), "xy".to_owned()]);
    }

    #[test]
    fn output_without_newline_does_not_grow_the_buffer() {
        let mut s = LineSplitter::new(1024);
        let mut out = Vec::new();
        for _ in 0..1000 {
            s.push(&[b'a'; 4096], &mut out);
            assert!(s.buf.len() <= 1024);
        }
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn the_ring_keeps_the_last_lines_within_its_budget() {
        let entry = |seq: u64, text: String| Entry {
            seq,
            time: SystemTime::now(),
            text: text.into(),
        };
        let mut r = Ring::default();
        for i in 0..500 {
            r.push(entry(i, format!("line {i}")));
        }
        let lines = r.lines();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines.last().unwrap(), "line 499");
        for _ in 0..5 {
            r.push(entry(0, "x".repeat(MAX_LINE_BYTES)));
        }
        assert!(r.bytes() <= TAIL_BYTES);
    }
}
