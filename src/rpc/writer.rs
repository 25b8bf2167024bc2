//! [`FrameWriter`]: the sending side of one connection, shared by everyone who sends on it.
//!
//! A lone sender (nothing else in flight on the connection) writes its frame straight to the
//! socket when nothing is queued: one non-blocking system call, no hop to another task. Otherwise,
//! or when the socket is full, the frame is queued and the connection's flush task writes the
//! queue, many frames per system call: under load, batching beats a call per frame. Direct writes
//! are synchronous (`try_write`), so a caller's future dropped mid-call can never leave half a
//! frame on the connection; a mutex held only across those non-blocking calls keeps frames whole
//! and in order. On a keyed connection each frame is sealed under the same mutex, so frames are
//! numbered (the seal's nonce) in the order they reach the socket. The flush task stops when the
//! connection breaks, when it is closed, or on cancellation.
//!
//! The queue is bounded: at most [`MAX_QUEUED_BYTES`] of frames wait for a peer that does not
//! read. A frame that would go beyond it is refused with [`SendError::Full`] (the caller's
//! `Error::Overloaded`), never queued; nothing grows without bound behind a stalled peer.
//!
//! Ownership: the writer (and with it the socket's write half) lives as long as its strong
//! holders: the connection's reader task, its flush task, and on the client the connection's
//! entry. Whoever answers a request later (a `Responder`, a herd-request task) holds it weakly,
//! so a connection whose reader ended releases its socket at once.

use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice};
use std::sync::{Arc, Mutex};

use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::frame::HEADER_LEN;
use crate::trust::handshake::SessionWriter;

/// The default bound of a connection's queue: 64 MiB of frames waiting for the socket.
pub(crate) const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// The connection is broken or closed.
#[derive(Debug)]
pub(crate) struct Closed;

/// Why a frame was not sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The connection is broken or closed.
    Closed,
    /// The queue holds `queued` bytes and this frame would take it past `limit`: the peer does
    /// not read as fast as frames come.
    Full { queued: usize, limit: usize },
}

/// Frames taken for writing, and how much of the first one was already written.
type Batch = (Vec<Vec<u8>>, usize);

/// Frames queued for the flush task; the head may be partly written.
struct Queue {
    frames: VecDeque<Vec<u8>>,
    /// Bytes of the frames queued or being flushed.
    bytes: usize,
    head_written: usize,
    /// The flush task is writing a batch it took from the queue: nobody writes directly.
    flushing: bool,
    closed: bool,
    /// Seals each frame as it is sent, in order.
    session: SessionWriter,
}

/// The shared sending side of one connection.
pub(crate) struct FrameWriter {
    stream: OwnedWriteHalf,
    queue: Mutex<Queue>,
    wake: Notify,
    /// The queue's bound in bytes.
    limit: usize,
    /// Fires when the connection is closed, so a flush blocked on a full socket ends too.
    shut: CancellationToken,
}

impl FrameWriter {
    /// A writer whose queue holds at most `limit` bytes.
    pub(crate) fn new(
        stream: OwnedWriteHalf,
        session: SessionWriter,
        limit: usize,
    ) -> Arc<FrameWriter> {
        Arc::new(FrameWriter {
            stream,
            limit,
            shut: CancellationToken::new(),
            queue: Mutex::new(Queue {
                frames: VecDeque::new(),
                bytes: 0,
                head_written: 0,
                flushing: false,
                closed: false,
                session,
            }),
            wake: Notify::new(),
        })
    }

    /// Sends one whole frame: with `direct`, now if nothing is queued or being flushed and the
    /// socket takes it; else after what is queued, by the flush task. A frame the queue has no
    /// room for is refused ([`SendError::Full`]) before it is sealed, so the connection goes on.
    pub(crate) fn send(&self, mut frame: Vec<u8>, direct: bool) -> Result<(), SendError> {
        let mut queue = self.queue.lock().expect("writer lock");
        if queue.closed {
            return Err(SendError::Closed);
        }
        if queue.bytes > 0 && queue.bytes + frame.len() > self.limit {
            return Err(SendError::Full {
                queued: queue.bytes,
                limit: self.limit,
            });
        }
        queue.session.seal(&mut frame, HEADER_LEN);
        if direct && queue.frames.is_empty() && !queue.flushing {
            match self.stream.try_write(&frame) {
                Ok(n) if n == frame.len() => return Ok(()),
                Ok(n) => queue.head_written = n,
                Err(err) if err.kind() == ErrorKind::WouldBlock => queue.head_written = 0,
                Err(_) => {
                    queue.closed = true;
                    drop(queue);
                    self.wake.notify_one();
                    return Err(SendError::Closed);
                }
            }
        }
        queue.bytes += frame.len();
        queue.frames.push_back(frame);
        drop(queue);
        self.wake.notify_one();
        Ok(())
    }

    /// Marks the connection closed: later sends fail.
    pub(crate) fn close(&self) {
        self.queue.lock().expect("writer lock").closed = true;
        self.shut.cancel();
        self.wake.notify_one();
    }

    /// A token that fires when the connection is closed: the reader of a client connection
    /// stops on it too.
    pub(crate) fn shut(&self) -> CancellationToken {
        self.shut.clone()
    }

    /// Takes everything queued, marking a flush in progress; `None` when there is nothing.
    fn take(&self) -> Result<Option<Batch>, Closed> {
        let mut queue = self.queue.lock().expect("writer lock");
        if queue.closed {
            return Err(Closed);
        }
        queue.flushing = false;
        queue.bytes = queue.frames.iter().map(Vec::len).sum();
        if queue.frames.is_empty() {
            return Ok(None);
        }
        queue.flushing = true;
        let skip = std::mem::take(&mut queue.head_written);
        Ok(Some((queue.frames.drain(..).collect(), skip)))
    }

    /// Writes `frames` (the first from byte `skip`) to the end, waiting when the socket is full.
    async fn write_all(&self, frames: &[Vec<u8>], mut skip: usize) -> Result<(), Closed> {
        let mut first = 0;
        while first < frames.len() {
            let written = {
                let slices: Vec<IoSlice<'_>> = frames[first..]
                    .iter()
                    .take(64)
                    .enumerate()
                    .map(|(i, f)| IoSlice::new(if i == 0 { &f[skip..] } else { f }))
                    .collect();
                self.stream.try_write_vectored(&slices)
            };
            match written {
                Ok(mut n) => {
                    while n > 0 && first < frames.len() {
                        let left = frames[first].len() - skip;
                        if n >= left {
                            n -= left;
                            first += 1;
                            skip = 0;
                        } else {
                            skip += n;
                            n = 0;
                        }
                    }
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    self.stream.writable().await.map_err(|_| Closed)?;
                }
                Err(_) => return Err(Closed),
            }
        }
        Ok(())
    }
}

/// Writes queued frames whenever there are some, until the connection breaks, is closed, or
/// `cancel` fires.
pub(crate) async fn flush(writer: Arc<FrameWriter>, cancel: CancellationToken) {
    loop {
        match writer.take() {
            Ok(Some((frames, skip))) => {
                let written = tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = writer.shut.cancelled() => break,
                    written = writer.write_all(&frames, skip) => written,
                };
                if written.is_err() {
                    break;
                }
            }
            Ok(None) => {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = writer.shut.cancelled() => break,
                    _ = writer.wake.notified() => {}
                }
            }
            Err(Closed) => break,
        }
    }
    writer.close();
}
