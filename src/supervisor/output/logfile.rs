//! A worker's log file, rotated by size like supervisord's `logfile_maxbytes`
//! / `logfile_backups` and s6-log's `s` / `n`.
//!
//! Both streams go to one file, one line per output line:
//!
//! ```text
//! 2026-12-03T13:25:58.123456Z stdout listening on 127.0.0.1:8080
//! 2026-12-03T13:25:58.123911Z stderr warning: cache is cold
//! ```
//!
//! (the time the line was read, RFC 3339 in UTC with microseconds, then
//! `stdout` or `stderr`, then the line as the worker wrote it, cut at
//! [`MAX_LINE_BYTES`](super::MAX_LINE_BYTES)). Before a line would take the
//! file past `max_size`, the file is rotated: `<file>.{keep-1}` becomes
//! `<file>.{keep}` (the oldest is overwritten), ..., `<file>` becomes
//! `<file>.1`, and a new `<file>` is started; so there are never more than
//! `keep + 1` files, and a line longer than `max_size` still gets a file of
//! its own. With `keep = 0` the file is emptied instead.
//!
//! Only the sink's writer thread writes ([`LogFile::write`]); the logs API
//! reads the end of the files ([`LogFile::tail`]) under the same lock, on a
//! caller's blocking thread. A failed open, write or rotation is counted
//! (`write_errors`), logged at most once a minute per worker, and retried
//! with the next line; the worker is never affected.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::logs::LogLine;
use super::Stream;
use crate::log_limit::LogLimit;

/// Size at which a log file is rotated when none is given: 10 MB (10 × 2^20 bytes).
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 << 20;
/// Rotated files kept when no number is given.
pub const DEFAULT_LOG_KEEP: u32 = 5;

/// Where a worker's output goes on disk, and how much of it is kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogFileSpec {
    /// The file (its directory must exist); rotated files are `<path>.1`, `<path>.2`, ...
    pub path: PathBuf,
    /// Bytes the file may reach before it is rotated.
    pub max_size: u64,
    /// Rotated files kept besides the current one.
    pub keep: u32,
}

struct State {
    writer: Option<BufWriter<File>>,
    /// Bytes in the current file, as far as this writer knows.
    size: u64,
    /// The number after the last line written (the logs API's cursor).
    written_next: u64,
    limit: LogLimit<()>,
}

/// One worker's log file.
pub(crate) struct LogFile {
    spec: LogFileSpec,
    state: Mutex<State>,
    errors: AtomicU64,
}

impl std::fmt::Debug for LogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFile")
            .field("path", &self.spec.path)
            .finish_non_exhaustive()
    }
}

/// The `i`-th rotated file of `path` (`i = 0`: `path` itself).
fn rotated(path: &Path, i: u32) -> PathBuf {
    match i {
        0 => path.to_owned(),
        _ => {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".{i}"));
            PathBuf::from(name)
        }
    }
}

/// Formats one line of the file, newline included.
pub(crate) fn format_line(time: SystemTime, stream: Stream, text: &str) -> String {
    format!(
        "{} {} {text}\n",
        humantime::format_rfc3339_micros(time),
        stream.as_str()
    )
}

/// Reads one line of the file back; a line not in the format is taken as
/// stdout text with no time.
pub(crate) fn parse_line(line: &str) -> LogLine {
    let parsed = line.split_once(' ').and_then(|(time, rest)| {
        let (stream, text) = rest.split_once(' ').unwrap_or((rest, ""));
        let stream = Stream::parse(stream)?;
        let time = humantime::parse_rfc3339(time).ok()?;
        Some((time, stream, text))
    });
    let (time_ms, stream, text) = match parsed {
        Some((time, stream, text)) => (unix_ms(time), stream, text),
        None => (0, Stream::Stdout, line),
    };
    LogLine {
        seq: None,
        stream: stream.as_str().to_owned(),
        time_ms,
        text: text.to_owned(),
    }
}

pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    let ms = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

impl LogFile {
    pub(crate) fn new(spec: LogFileSpec) -> LogFile {
        LogFile {
            spec,
            state: Mutex::new(State {
                writer: None,
                size: 0,
                written_next: 1,
                limit: LogLimit::new(Duration::from_secs(60)),
            }),
            errors: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    fn failed(&self, state: &mut State, what: &str, err: &io::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        state.writer = None;
        if state.limit.due(()) {
            tracing::warn!(path = %self.spec.path.display(), %err, "cannot {what} the worker's log file; lines are lost until it works again");
        }
    }

    /// Appends one line, rotating first when it would take the file past
    /// `max_size`.
    pub(crate) fn write(&self, time: SystemTime, stream: Stream, seq: u64, text: &str) {
        let line = format_line(time, stream, text);
        let mut state = self.state();
        state.written_next = seq + 1;
        if state.writer.is_none() {
            if let Err(err) = self.open(&mut state) {
                return self.failed(&mut state, "open", &err);
            }
        }
        let len = line.len() as u64;
        if state.size > 0 && state.size + len > self.spec.max_size {
            if let Err(err) = self.rotate(&mut state) {
                return self.failed(&mut state, "rotate", &err);
            }
        }
        let Some(writer) = state.writer.as_mut() else {
            return;
        };
        match writer.write_all(line.as_bytes()) {
            Ok(()) => state.size += len,
            Err(err) => self.failed(&mut state, "write", &err),
        }
    }

    fn open(&self, state: &mut State) -> io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.spec.path)?;
        state.size = file.metadata()?.len();
        state.writer = Some(BufWriter::with_capacity(64 * 1024, file));
        Ok(())
    }

    fn rotate(&self, state: &mut State) -> io::Result<()> {
        if let Some(mut writer) = state.writer.take() {
            writer.flush()?;
        }
        let path = &self.spec.path;
        if self.spec.keep == 0 {
            std::fs::remove_file(path).or_else(not_found_is_ok)?;
        }
        for i in (1..=self.spec.keep).rev() {
            match std::fs::rename(rotated(path, i - 1), rotated(path, i)) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        self.open(state)
    }

    /// Writes what is buffered to the file.
    pub(crate) fn flush(&self) {
        let mut state = self.state();
        if let Some(writer) = state.writer.as_mut() {
            if let Err(err) = writer.flush() {
                self.failed(&mut state, "write", &err);
            }
        }
    }

    /// The last `n` lines of the file and its rotated files (oldest first),
    /// reading at most `max_bytes` from their ends, and the number after the
    /// last line written. Holds the writer's lock (after flushing), so the
    /// number is exact: the lines after it are not in the files.
    pub(crate) fn tail(&self, n: usize, max_bytes: usize) -> io::Result<(Vec<LogLine>, u64)> {
        let mut state = self.state();
        if let Some(writer) = state.writer.as_mut() {
            writer.flush()?;
        }
        let mut newest_first: Vec<String> = Vec::new();
        let mut budget = max_bytes;
        for i in 0..=self.spec.keep {
            if newest_first.len() >= n || budget == 0 {
                break;
            }
            let mut file = match File::open(rotated(&self.spec.path, i)) {
                Ok(file) => file,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            let size = file.metadata()?.len();
            let take = size.min(budget as u64);
            file.seek(SeekFrom::Start(size - take))?;
            let mut bytes = Vec::with_capacity(take as usize);
            file.take(take).read_to_end(&mut bytes)?;
            budget -= bytes.len();
            let text = String::from_utf8_lossy(&bytes);
            let mut lines: Vec<&str> = text.lines().collect();
            if take < size && !lines.is_empty() {
                // Started inside a line: that part is not a whole line.
                lines.remove(0);
                budget = 0;
            }
            for line in lines.into_iter().rev() {
                if newest_first.len() >= n {
                    break;
                }
                newest_first.push(line.to_owned());
            }
        }
        let lines = newest_first.iter().rev().map(|l| parse_line(l)).collect();
        Ok((lines, state.written_next))
    }
}

fn not_found_is_ok(err: io::Error) -> io::Result<()> {
    match err.kind() {
        io::ErrorKind::NotFound => Ok(()),
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_line_reads_back_as_written() {
        let time = UNIX_EPOCH + Duration::from_micros(1_796_000_000_123_456);
        let line = format_line(time, Stream::Stderr, "a  b ");
        assert_eq!(line, "2026-11-30T00:53:20.123456Z stderr a  b \n");
        let back = parse_line(line.trim_end_matches('\n'));
        assert_eq!(back.stream, "stderr");
        assert_eq!(back.text, "a  b ");
        assert_eq!(back.time_ms, 1_796_000_000_123);
        assert_eq!(parse_line("no format").text, "no format");
    }

    #[test]
    fn files_rotate_at_max_size_and_keep_at_most_keep_plus_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        let log = LogFile::new(LogFileSpec {
            path: path.clone(),
            max_size: 200,
            keep: 2,
        });
        for seq in 1..=40 {
            log.write(
                SystemTime::now(),
                Stream::Stdout,
                seq,
                &format!("line {seq:03}"),
            );
            log.flush();
            assert!(files(dir.path()).len() <= 3);
        }
        assert_eq!(files(dir.path()), ["w.log", "w.log.1", "w.log.2"]);
        for i in 0..3 {
            let size = std::fs::metadata(rotated(&path, i)).unwrap().len();
            assert!(size <= 200, "{size}");
        }
        // Oldest first, in order, ending with the last line.
        let (lines, next) = log.tail(usize::MAX, 1 << 20).unwrap();
        assert_eq!(next, 41);
        let numbers: Vec<u32> = lines.iter().map(|l| l.text[5..].parse().unwrap()).collect();
        assert_eq!(*numbers.last().unwrap(), 40);
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
        let (last_two, _) = log.tail(2, 1 << 20).unwrap();
        assert_eq!(last_two.len(), 2);
        assert_eq!(last_two[1].text, "line 040");
    }

    #[test]
    fn keep_zero_empties_the_file_and_a_long_line_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        let log = LogFile::new(LogFileSpec {
            path: path.clone(),
            max_size: 100,
            keep: 0,
        });
        log.write(SystemTime::now(), Stream::Stdout, 1, "short");
        log.write(SystemTime::now(), Stream::Stdout, 2, &"long".repeat(50));
        log.flush();
        assert_eq!(files(dir.path()), ["w.log"]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() > 100 && !text.contains("short"), "{text}");
    }

    #[test]
    fn tail_reads_at_most_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::new(LogFileSpec {
            path: dir.path().join("w.log"),
            max_size: 1 << 20,
            keep: 1,
        });
        for seq in 1..=100 {
            log.write(SystemTime::now(), Stream::Stdout, seq, &"z".repeat(100));
        }
        let (lines, _) = log.tail(100, 1000).unwrap();
        assert!(!lines.is_empty() && lines.len() < 10, "{}", lines.len());
        assert!(lines.iter().all(|l| l.text.len() == 100));
    }

    #[test]
    fn a_write_error_is_counted_and_the_next_line_retries() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::new(LogFileSpec {
            path: dir.path().join("missing-dir").join("w.log"),
            max_size: 1000,
            keep: 1,
        });
        log.write(SystemTime::now(), Stream::Stdout, 1, "lost");
        assert_eq!(log.errors(), 1);
        std::fs::create_dir(dir.path().join("missing-dir")).unwrap();
        log.write(SystemTime::now(), Stream::Stdout, 2, "kept");
        log.flush();
        assert_eq!(log.errors(), 1);
        let (lines, _) = log.tail(10, 1 << 20).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "kept");
    }
}
