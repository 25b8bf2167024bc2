//! Reading frames off a connection with timeouts, for both ends of RPC (the server's connection
//! loop and the client's reader task).
//!
//! [`read_frame`] waits for a frame to begin for at most [`Timeouts::idle`], then for each further
//! byte for at most [`Timeouts::read`]. A frame's body is read into a buffer grown as its bytes
//! arrive, never allocated from its length prefix; a frame over the limit is read past so the
//! stream stays usable. Nothing here spawns a task: the caller's loop owns the reader.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::rpc::frame;

/// What [`read_frame`] read.
pub(crate) enum ReadFrame {
    /// A frame within the limit, without its length prefix.
    Frame(Vec<u8>),
    /// A frame over the limit, skipped; its header, when it had one.
    TooLarge { kind: u8, id: u64, size: usize },
    /// No frame began within the idle timeout.
    Idle,
}

/// How long [`read_frame`] waits.
pub(crate) struct Timeouts {
    /// For the first byte of a frame; `None`: as long as it takes.
    pub(crate) idle: Option<Duration>,
    /// For each further byte of a started frame: beyond it, a `TimedOut` error.
    pub(crate) read: Duration,
}

/// The step by which a frame's buffer grows as its bytes arrive.
const READ_CHUNK: usize = 64 * 1024;

/// Reads one frame; frames whose body is over `max_frame` are read past (not kept) so the stream
/// stays usable. `overhead` is what a seal adds (its tag), beyond the limit. The buffer grows as
/// the body arrives, by [`READ_CHUNK`] at most, so a length prefix alone allocates little.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    max_frame: usize,
    overhead: usize,
    timeouts: &Timeouts,
) -> std::io::Result<ReadFrame> {
    if reader.buffer().is_empty() {
        let first = match timeouts.idle {
            Some(idle) => match tokio::time::timeout(idle, reader.fill_buf()).await {
                Ok(first) => first,
                Err(_) => return Ok(ReadFrame::Idle),
            },
            None => reader.fill_buf().await,
        };
        if first?.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    let mut prefix = [0u8; 4];
    read_exact_within(reader, &mut prefix, timeouts.read).await?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len < frame::HEADER_LEN + overhead {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is shorter than its header"),
        ));
    }
    if len <= max_frame + frame::HEADER_LEN + overhead {
        let mut bytes = Vec::with_capacity(len.min(READ_CHUNK));
        while bytes.len() < len {
            let at = bytes.len();
            bytes.resize(at + (len - at).min(READ_CHUNK), 0);
            read_exact_within(reader, &mut bytes[at..], timeouts.read).await?;
        }
        return Ok(ReadFrame::Frame(bytes));
    }
    let mut header = [0u8; frame::HEADER_LEN];
    read_exact_within(reader, &mut header, timeouts.read).await?;
    let mut left = len - frame::HEADER_LEN;
    while left > 0 {
        let n = next_bytes(reader, timeouts.read).await?.len().min(left);
        reader.consume(n);
        left -= n;
    }
    let id = u64::from_be_bytes(header[1..9].try_into().expect("8 bytes"));
    Ok(ReadFrame::TooLarge {
        kind: header[0],
        id,
        size: len - frame::HEADER_LEN - overhead,
    })
}

/// Fills `buf` from `reader`, failing with `TimedOut` when no byte arrives for `limit`.
async fn read_exact_within<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    buf: &mut [u8],
    limit: Duration,
) -> std::io::Result<()> {
    let mut at = 0;
    while at < buf.len() {
        let n = {
            let available = next_bytes(reader, limit).await?;
            let n = available.len().min(buf.len() - at);
            buf[at..at + n].copy_from_slice(&available[..n]);
            n
        };
        reader.consume(n);
        at += n;
    }
    Ok(())
}

/// The bytes buffered, or the next ones to arrive within `limit` (no timer when some are
/// buffered already); an error at the end of the stream or after `limit` without a byte.
async fn next_bytes<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    limit: Duration,
) -> std::io::Result<&[u8]> {
    let available = if reader.buffer().is_empty() {
        tokio::time::timeout(limit, reader.fill_buf())
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("a started frame stopped arriving for {limit:?}"),
                )
            })??
    } else {
        reader.buffer()
    };
    if available.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(available)
}
