//! Reading a worker's logs: the last lines, or the lines after a cursor.
//!
//! Every line a worker writes (protocol replies aside) gets a number, its
//! `seq`, counted from 1 for each worker since it was added to the
//! supervisor, across both streams and its restarts. A [`LogBatch`] says
//! which number comes next (`next`): asking again with `since = next`
//! returns only newer lines, which is how the logs are followed.
//!
//! Where lines come from ([`LogSource`]): the worker's in-memory tail (the
//! last [`TAIL_LINES`](super::TAIL_LINES) lines per stream) when it holds
//! what is asked for; the worker's log file (and its rotated files) when
//! the tail asks for more lines than memory holds and the worker has one.
//! Lines read from a file carry no `seq`; the batch's `next` is then the
//! number after the last line written to the file, so following from it
//! neither repeats nor skips a line the file holds. Lines after a cursor
//! come from memory only: a follower that falls more than the in-memory
//! tail behind is told how many lines it `missed`.
//!
//! A batch holds at most [`MAX_LOG_LINES`] lines and [`MAX_LOG_BYTES`] bytes
//! of text (the newest lines for a tail, the oldest after a cursor), so it
//! always fits one member-to-member frame as JSON.

use serde::{Deserialize, Serialize};

use super::logfile::unix_ms;
use super::Output;

/// Most lines one request may ask for.
pub const MAX_LOG_LINES: usize = 10_000;
/// Most bytes of line text in one batch.
pub const MAX_LOG_BYTES: usize = 2 << 20;

/// What to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogQuery {
    /// The last `tail` lines (at most [`MAX_LOG_LINES`]); ignored with `since`.
    pub tail: usize,
    /// The lines numbered `since` and after (a previous batch's `next`), up
    /// to [`MAX_LOG_LINES`]. A cursor beyond the next number (the agent
    /// restarted, say) reads from the oldest line in memory.
    pub since: Option<u64>,
}

/// Where a batch's lines came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// The in-memory tail.
    Memory,
    /// The log file and its rotated files.
    File,
}

/// One line of a worker's output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Its number; `None` for a line read from a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When herd read it, in milliseconds since the Unix epoch (0: unknown).
    pub time_ms: u64,
    /// The line, without its newline.
    pub text: String,
}

/// Lines of one worker, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBatch {
    /// The lines.
    pub lines: Vec<LogLine>,
    /// The number of the first line not in this batch: the next `since`.
    pub next: u64,
    /// Lines after the cursor that are no longer in memory.
    pub missed: u64,
    /// Where the lines came from.
    pub source: LogSource,
}

/// Why a query is refused.
pub(crate) fn check(query: &LogQuery) -> Result<(), String> {
    if query.tail > MAX_LOG_LINES {
        return Err(format!(
            "tail {} is more than the {MAX_LOG_LINES} lines one request may ask for",
            query.tail
        ));
    }
    Ok(())
}

fn line(stream: super::Stream, entry: &super::Entry) -> LogLine {
    LogLine {
        seq: Some(entry.seq),
        stream: stream.as_str().to_owned(),
        time_ms: unix_ms(entry.time),
        text: entry.text.to_string(),
    }
}

/// Answers `query` from `output` (its memory, or its file); blocks on file I/O.
pub(crate) fn read(output: &Output, query: &LogQuery) -> std::io::Result<LogBatch> {
    let (entries, next_seq) = output.entries();
    if let Some(since) = query.since {
        let since = if since > next_seq { 1 } else { since };
        let oldest = entries.first().map_or(next_seq, |(_, e)| e.seq);
        let mut lines = Vec::new();
        let mut bytes = 0;
        let mut next = next_seq;
        for (stream, entry) in entries.iter().filter(|(_, e)| e.seq >= since) {
            let over = bytes + entry.text.len() > MAX_LOG_BYTES && !lines.is_empty();
            if over || lines.len() >= MAX_LOG_LINES {
                next = entry.seq;
                break;
            }
            bytes += entry.text.len();
            lines.push(line(*stream, entry));
        }
        return Ok(LogBatch {
            lines,
            next,
            missed: oldest.saturating_sub(since),
            source: LogSource::Memory,
        });
    }
    let n = query.tail.min(MAX_LOG_LINES);
    if let Some(file) = output.file.as_ref().filter(|_| entries.len() < n) {
        let (lines, next) = file.tail(n, MAX_LOG_BYTES)?;
        if lines.len() > entries.len() {
            return Ok(LogBatch {
                lines,
                next,
                missed: 0,
                source: LogSource::File,
            });
        }
    }
    let mut newest_first = Vec::new();
    let mut bytes = 0;
    for (stream, entry) in entries.iter().rev().take(n) {
        if bytes + entry.text.len() > MAX_LOG_BYTES && !newest_first.is_empty() {
            break;
        }
        bytes += entry.text.len();
        newest_first.push(line(*stream, entry));
    }
    newest_first.reverse();
    Ok(LogBatch {
        lines: newest_first,
        next: next_seq,
        missed: 0,
        source: LogSource::Memory,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{LogFileSpec, Stream};
    use super::*;

    fn texts(batch: &LogBatch) -> Vec<&str> {
        batch.lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn a_tail_merges_both_streams_in_order_and_a_cursor_follows() {
        let output = Output::new("w", None);
        output.keep(Stream::Stdout, "a".into());
        output.keep(Stream::Stderr, "b".into());
        output.keep(Stream::Stdout, "c".into());
        let batch = read(
            &output,
            &LogQuery {
                tail: 2,
                since: None,
            },
        )
        .unwrap();
        assert_eq!(texts(&batch), ["b", "c"]);
        assert_eq!(batch.lines[0].stream, "stderr");
        assert_eq!(batch.next, 4);
        output.keep(Stream::Stderr, "d".into());
        let after = LogQuery {
            tail: 0,
            since: Some(batch.next),
        };
        let batch = read(&output, &after).unwrap();
        assert_eq!(texts(&batch), ["d"]);
        assert_eq!((batch.next, batch.missed), (5, 0));
        let nothing = read(
            &output,
            &LogQuery {
                tail: 0,
                since: Some(5),
            },
        )
        .unwrap();
        assert!(nothing.lines.is_empty());
        assert_eq!(nothing.next, 5);
    }

    #[test]
    fn a_follower_too_far_behind_is_told_what_it_missed() {
        let output = Output::new("w", None);
        for i in 0..super::super::TAIL_LINES + 50 {
            output.keep(Stream::Stdout, format!("{i}").into());
        }
        let batch = read(
            &output,
            &LogQuery {
                tail: 0,
                since: Some(1),
            },
        )
        .unwrap();
        assert_eq!(batch.missed, 50);
        assert_eq!(batch.lines[0].text, "50");
    }

    #[test]
    fn a_tail_longer_than_memory_comes_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LogFileSpec {
            path: dir.path().join("w.log"),
            max_size: 1 << 20,
            keep: 1,
        };
        let output = Output::new("w", Some(&spec));
        let file = output.file.as_ref().unwrap();
        for i in 0..500u64 {
            let (seq, time) = output.keep(Stream::Stdout, format!("{i}").into());
            file.write(time, Stream::Stdout, seq, &format!("{i}"));
        }
        let batch = read(
            &output,
            &LogQuery {
                tail: 450,
                since: None,
            },
        )
        .unwrap();
        assert_eq!(batch.source, LogSource::File);
        assert_eq!(batch.lines.len(), 450);
        assert_eq!(batch.lines[0].text, "50");
        assert_eq!(batch.next, 501);
        let batch = read(
            &output,
            &LogQuery {
                tail: 5,
                since: None,
            },
        )
        .unwrap();
        assert_eq!(batch.source, LogSource::Memory);
        assert!(check(&LogQuery {
            tail: MAX_LOG_LINES + 1,
            since: None
        })
        .is_err());
    }
}
