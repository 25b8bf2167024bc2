//! Worker output: splitting stdout/stderr into bounded lines, logging them to
//! `tracing`, and keeping the last lines of each stream.
//!
//! One reader task per stream per process (spawned by runner.rs, tracked by
//! the supervisor's `TaskTracker`) runs [`read_stream`]; it ends at end of
//! file (the process group is gone) or when the supervisor's I/O token is
//! cancelled at the end of shutdown. Memory stays bounded whatever the worker
//! writes: a line is cut at [`MAX_LINE_BYTES`] (the rest of it up to the next
//! newline is dropped), and each stream keeps at most [`TAIL_LINES`] lines and
//! [`TAIL_BYTES`] bytes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

use super::jsonl::Channel;
use super::status::Tail;

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

/// The last lines of one stream.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Ring {
    pub(crate) fn push(&mut self, line: String) {
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > TAIL_LINES || (self.bytes > TAIL_BYTES && self.lines.len() > 1) {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Which stream a reader reads.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A worker's kept output, shared by its readers and the supervisor. Kept
/// across restarts, so the lines before a crash stay readable.
#[derive(Debug, Default)]
pub(crate) struct Output {
    stdout: Mutex<Ring>,
    stderr: Mutex<Ring>,
}

impl Output {
    fn ring(&self, stream: Stream) -> &Mutex<Ring> {
        match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        }
    }

    pub(crate) fn tail(&self) -> Tail {
        Tail {
            stdout: lock(&self.stdout).lines(),
            stderr: lock(&self.stderr).lines(),
        }
    }
}

fn lock(ring: &Mutex<Ring>) -> std::sync::MutexGuard<'_, Ring> {
    ring.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads one stream of one process until end of file or `cancel`: protocol
/// replies go to `channel`, every other line to `tracing` and the tail.
pub(crate) async fn read_stream<R: AsyncRead + Unpin>(
    mut reader: R,
    worker: Arc<str>,
    stream: Stream,
    output: Arc<Output>,
    channel: Option<Arc<Channel>>,
    cancel: CancellationToken,
) {
    let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut lines = Vec::new();
    loop {
        let n = tokio::select! {
            _ = cancel.cancelled() => break,
            read = reader.read(&mut buf) => read.unwrap_or(0),
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
            tracing::info!(worker = %worker, stream = stream.as_str(), "{line}");
            lock(output.ring(stream)).push(line);
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
        let mut r = Ring::default();
        for i in 0..500 {
            r.push(format!("line {i}"));
        }
        let lines = r.lines();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines.last().unwrap(), "line 499");
        for _ in 0..5 {
            r.push("x".repeat(MAX_LINE_BYTES));
        }
        assert!(r.bytes() <= TAIL_BYTES);
    }
}
