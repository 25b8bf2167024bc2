//! The RPC server: accepts TCP connections from peers and turns their frames into deliveries.
//!
//! One task accepts; one task per connection opens it with the handshake (`trust/handshake.rs`:
//! with a keyring, the peer must prove it holds a cluster key, within [`HANDSHAKE_TIMEOUT`]; a
//! connection that fails is closed, counted and logged at most once per peer address a minute),
//! then reads frames, opening each with the session's key (a frame that does not authenticate
//! closes the connection). The sender of every request is the peer the handshake named. Replies go out through the
//! connection's [`FrameWriter`]: straight from whoever answers when the socket takes them, else
//! queued for the connection's flush task. A `Call` or `Cast` goes
//! to the node's dispatcher, which runs the member's `handle_call` / `handle_cast` in order with the
//! other callbacks; a `System` frame goes to herd's own handler (the agent's remote actions),
//! concurrently. A frame that is too large or does not decode is answered with an error when it
//! carries a request id, counted, and logged; the connection and everyone else go on. Every task
//! stops on the node's cancellation token.
//!
//! Resources, each bounded: at most [`Limits::max_connections`] accepted connections at once (one
//! beyond is accepted and closed at once, counted); a connection with no frame for
//! [`Limits::idle`] while no call of its is in flight is closed, and so is one whose started frame
//! stops arriving for [`Limits::read`]; a frame's body is read into a buffer grown as its bytes
//! arrive, never allocated from its length prefix; at most [`MAX_SYSTEM_REQUESTS`] herd requests
//! run at once (one beyond is answered at once with a refusal); replies over the frame limit
//! become an error reply. Every RPC socket has TCP keepalive on. A connection's reader task owns
//! its read half and, with its flush task, its [`FrameWriter`]; those who answer later hold the
//! writer weakly, so when the reader ends (peer gone, timeout, shutdown) the socket is released at
//! once.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::deadline::{self, PeerClock};
use super::frame::{self, Kind, Outcome, Refusal};
use super::writer::{self, FrameWriter};
use crate::log_limit::LogLimit;
use crate::trust::handshake;
use crate::trust::Keyring;

/// How long a peer has to complete the handshake after connecting.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The default cap on accepted connections at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The default idle timeout of an accepted connection: 5 minutes without a frame.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The default read timeout of a started frame: 30 s without a byte of it.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The most herd requests (`System` frames) a node runs at once.
pub(crate) const MAX_SYSTEM_REQUESTS: usize = 64;

/// The bounds of a node's RPC connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The largest frame body sent or accepted.
    pub(crate) max_frame: usize,
    /// Accepted connections open at once.
    pub(crate) max_connections: usize,
    /// How long an accepted connection may go without a frame (while nothing is in flight).
    pub(crate) idle: Duration,
    /// How long a started frame's bytes may stop arriving.
    pub(crate) read: Duration,
    /// The bound of each connection's writer queue, in bytes.
    pub(crate) max_queued: usize,
}

impl Limits {
    /// The defaults, with `max_frame`.
    pub(crate) fn new(max_frame: usize) -> Limits {
        Limits {
            max_frame,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle: DEFAULT_IDLE_TIMEOUT,
            read: DEFAULT_READ_TIMEOUT,
            max_queued: writer::MAX_QUEUED_BYTES,
        }
    }
}

/// Keepalive probes on an RPC socket: first after a minute of silence, then every 10 s.
pub(crate) fn keepalive(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10));
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
}

/// A request from a peer for the member's callbacks.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// Answer through `reply`.
    Call {
        from: String,
        payload: Vec<u8>,
        reply: Responder,
        /// The caller's deadline on this node's clock (`deadline.rs`): past it, the member must
        /// not start the call.
        deadline: tokio::time::Instant,
    },
    /// No answer.
    Cast { from: String, payload: Vec<u8> },
}

/// Answers one call: writes the reply frame straight to the caller's connection. A call dropped
/// unanswered (the member is stopping) is answered with a refusal.
pub(crate) struct Responder {
    id: u64,
    /// Weak: a call waiting in the member's queue does not keep its connection's socket open.
    replies: Option<Weak<FrameWriter>>,
    in_flight: Arc<AtomicUsize>,
    max_frame: usize,
    counters: Arc<ServerCounters>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").field("id", &self.id).finish()
    }
}

impl Responder {
    /// Sends the answer.
    /// Drops a call whose deadline passed before the member started it: counted, and answered
    /// with a refusal that nobody waits for any more.
    pub(crate) fn expired(self) {
        self.counters.expired.fetch_add(1, Ordering::Relaxed);
        self.send(Outcome::Err(Refusal::Unavailable(
            "the call's deadline passed before the member started it".into(),
        )));
    }

    pub(crate) fn send(mut self, outcome: Outcome) {
        if let Some(replies) = self.replies.take() {
            // The only call in flight on its connection: write the reply at once.
            let alone = self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1;
            if let Some(replies) = replies.upgrade() {
                send_reply(
                    &replies,
                    self.id,
                    outcome,
                    alone,
                    self.max_frame,
                    &self.counters,
                );
            }
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(replies) = self.replies.take() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            if let Some(replies) = replies.upgrade() {
                let refusal = Refusal::Unavailable("the member stopped before answering".into());
                let outcome = Outcome::Err(refusal);
                send_reply(
                    &replies,
                    self.id,
                    outcome,
                    false,
                    self.max_frame,
                    &self.counters,
                );
            }
        }
    }
}

/// herd's own request handler on a node (the agent registers one).
#[async_trait]
pub(crate) trait SystemHandler: Send + Sync + 'static {
    /// Answers one request from node `from`.
    async fn handle(&self, from: String, payload: Vec<u8>) -> Outcome;
}

/// Counters of what the server refused.
#[derive(Debug, Default)]
pub(crate) struct ServerCounters {
    pub(crate) bad_frames: AtomicU64,
    pub(crate) oversized_frames: AtomicU64,
    /// Connections accepted under the cap (each one counted once, whatever became of it).
    pub(crate) accepted: AtomicU64,
    /// Connections accepted and closed at once: the cap was reached.
    pub(crate) over_cap: AtomicU64,
    /// Connections closed after the idle timeout.
    pub(crate) idle_closed: AtomicU64,
    /// Connections closed because a started frame stopped arriving.
    pub(crate) read_timeouts: AtomicU64,
    /// Herd requests refused because [`MAX_SYSTEM_REQUESTS`] were running.
    pub(crate) system_busy: AtomicU64,
    /// Replies over the frame limit, sent as an error reply instead.
    pub(crate) oversized_replies: AtomicU64,
    /// Frames not sent because a connection's writer queue was full (replies here, requests in
    /// the client).
    pub(crate) overloaded: AtomicU64,
    /// Requests dropped because their deadline had passed (on arrival, or before the member
    /// started them).
    pub(crate) expired: AtomicU64,
    /// Connections refused at the handshake, by [`Refused`] reason.
    pub(crate) refused: [AtomicU64; REFUSED_REASONS.len()],
}

/// The reasons a connection is refused, as `herd_rpc_rejected_total{reason}` labels them.
pub(crate) const REFUSED_REASONS: [&str; 7] = [
    "closed",
    "malformed",
    "no_common_key",
    "bad_proof",
    "plaintext",
    "timeout",
    "forged_frame",
];

impl ServerCounters {
    fn refused(&self, reason: &str) {
        if let Some(at) = REFUSED_REASONS.iter().position(|r| *r == reason) {
            self.refused[at].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) node_id: Arc<str>,
    pub(crate) incoming: mpsc::Sender<Incoming>,
    pub(crate) system: RwLock<Option<Arc<dyn SystemHandler>>>,
    pub(crate) limits: Limits,
    pub(crate) counters: Arc<ServerCounters>,
    /// One permit per accepted connection open.
    pub(crate) connections: Arc<Semaphore>,
    /// One permit per herd request running.
    pub(crate) system_slots: Arc<Semaphore>,
    pub(crate) keyring: Option<Keyring>,
    /// Refusals logged per peer address.
    pub(crate) logged: Mutex<LogLimit<IpAddr>>,
}

impl Shared {
    fn refuse(&self, peer: SocketAddr, reason: &'static str, why: &dyn std::fmt::Display) {
        self.counters.refused(reason);
        if self.logged.lock().expect("log limit lock").due(peer.ip()) {
            warn!(node = %self.node_id, %peer, reason, "rpc connection refused: {why}");
        }
    }
}

/// Accepts connections until `cancel` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
                    drop(stream);
                    shared.counters.over_cap.fetch_add(1, Ordering::Relaxed);
                    if shared.logged.lock().expect("log limit lock").due(peer.ip()) {
                        warn!(node = %shared.node_id, %peer, limit = shared.limits.max_connections, "rpc connection refused: too many connections");
                    }
                    continue;
                };
                shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
                keepalive(&stream);
                let shared = shared.clone();
                let (tracker2, cancel) = (tracker.clone(), cancel.clone());
                tracker.spawn(async move {
                    connection(stream, peer, shared, tracker2, cancel).await;
                    drop(permit);
                });
            }
            Err(err) => {
                warn!(node = %shared.node_id, error = %err, "rpc accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    let opened = tokio::select! {
        _ = cancel.cancelled() => return,
        opened = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            handshake::server(&mut stream, shared.keyring.as_ref(), &shared.node_id),
        ) => opened,
    };
    let session = match opened {
        Ok(Ok(session)) => session,
        Ok(Err(err)) => return shared.refuse(peer, err.reason(), &err),
        Err(_) => {
            let why = "no handshake within the time allowed";
            return shared.refuse(peer, "timeout", &why);
        }
    };
    let from: Arc<str> = session.peer.into();
    let mut opener = session.reader;
    let mut key_changes = shared.keyring.as_ref().map(Keyring::changes);
    let (read, write) = stream.into_split();
    let limits = shared.limits;
    let replies = FrameWriter::new(write, session.writer, limits.max_queued);
    let in_flight = Arc::new(AtomicUsize::new(0));
    tracker.spawn(writer::flush(replies.clone(), cancel.clone()));
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let mut clock = PeerClock::new(tokio::time::Instant::now());
    let timeouts = Timeouts {
        idle: Some(limits.idle),
        read: limits.read,
    };
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => break,
            // A request's timing prefix does not count against the message limit.
            frame = read_frame(&mut reader, limits.max_frame + deadline::TIMING_LEN, opener.overhead(), &timeouts) => frame,
        };
        if !key_kept(&mut key_changes, shared.keyring.as_ref(), session.key) {
            debug!(node = %shared.node_id, %peer, "rpc connection closed: its key was removed");
            break;
        }
        match frame {
            Ok(ReadFrame::Frame(mut bytes)) => {
                if opener.open(&mut bytes, frame::HEADER_LEN).is_err() {
                    let why = "a frame did not authenticate";
                    shared.refuse(peer, "forged_frame", &why);
                    break;
                }
                let conn = ConnRef {
                    peer,
                    from: &from,
                    replies: &replies,
                    in_flight: &in_flight,
                };
                handle(&bytes, &conn, &mut clock, &shared, &tracker, &cancel)
            }
            Ok(ReadFrame::Idle) if in_flight.load(Ordering::Acquire) > 0 => continue,
            Ok(ReadFrame::Idle) => {
                shared.counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                debug!(node = %shared.node_id, %peer, "rpc connection closed: idle");
                break;
            }
            Ok(ReadFrame::TooLarge { kind, id, size }) => {
                opener.skip();
                shared
                    .counters
                    .oversized_frames
                    .fetch_add(1, Ordering::Relaxed);
                warn!(node = %shared.node_id, %peer, size, limit = limits.max_frame, "rpc frame over the size limit dropped");
                if matches!(Kind::from_u8(kind), Some(Kind::Call | Kind::System)) {
                    let refusal = Refusal::TooLarge {
                        size,
                        limit: limits.max_frame,
                    };
                    reply(&replies, id, Outcome::Err(refusal), &shared);
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::TimedOut => {
                shared
                    .counters
                    .read_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                if shared.logged.lock().expect("log limit lock").due(peer.ip()) {
                    warn!(node = %shared.node_id, %peer, "rpc connection closed: {err}");
                }
                break;
            }
            Err(err) => {
                debug!(node = %shared.node_id, %peer, error = %err, "rpc connection closed");
                break;
            }
        }
    }
    replies.close();
}

/// Whether the key a connection was opened with is still installed: checked before each frame
/// is acted on (one atomic load while the keyring is unchanged), so a frame that arrives after
/// its key was removed is never acted on.
pub(crate) fn key_kept(
    changes: &mut Option<tokio::sync::watch::Receiver<u64>>,
    ring: Option<&Keyring>,
    used: Option<crate::trust::KeyId>,
) -> bool {
    let (Some(changes), Some(ring), Some(used)) = (changes.as_mut(), ring, used) else {
        return true;
    };
    if !changes.has_changed().unwrap_or(false) {
        return true;
    }
    changes.borrow_and_update();
    ring.get(used).is_some()
}

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

/// One connection, as the frame handler sees it.
struct ConnRef<'a> {
    peer: SocketAddr,
    from: &'a Arc<str>,
    replies: &'a Arc<FrameWriter>,
    in_flight: &'a Arc<AtomicUsize>,
}

fn handle(
    bytes: &[u8],
    conn: &ConnRef<'_>,
    clock: &mut PeerClock,
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) {
    let (peer, replies) = (conn.peer, conn.replies);
    let refuse = |id: u64, kind: Option<Kind>, why: String| {
        shared.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
        warn!(node = %shared.node_id, %peer, id, reason = %why, "rpc frame dropped");
        if matches!(kind, Some(Kind::Call | Kind::System)) {
            reply(replies, id, Outcome::Err(Refusal::Malformed(why)), shared);
        }
    };
    let Some((kind_byte, id, body)) = frame::split(bytes) else {
        return refuse(
            0,
            None,
            format!(
                "a frame of {} bytes is shorter than its header",
                bytes.len()
            ),
        );
    };
    let kind = Kind::from_u8(kind_byte);
    if !matches!(kind, Some(Kind::Call | Kind::Cast | Kind::System)) {
        return refuse(id, kind, format!("unexpected frame kind {kind_byte}"));
    }
    let (deadline, body) = match kind {
        Some(Kind::Call | Kind::System) => {
            let Some((timing, payload)) = deadline::split(body) else {
                return refuse(id, kind, "a request shorter than its timing prefix".into());
            };
            let now = tokio::time::Instant::now();
            let deadline = clock.deadline(timing, now);
            if deadline <= now {
                shared.counters.expired.fetch_add(1, Ordering::Relaxed);
                debug!(node = %shared.node_id, %peer, id, "request dropped: its deadline passed before it arrived");
                return;
            }
            (deadline, payload)
        }
        _ => (tokio::time::Instant::now(), body),
    };
    let payload = body.to_vec();
    match kind {
        Some(Kind::Call) => {
            conn.in_flight.fetch_add(1, Ordering::AcqRel);
            let responder = Responder {
                id,
                replies: Some(Arc::downgrade(replies)),
                in_flight: conn.in_flight.clone(),
                max_frame: shared.limits.max_frame,
                counters: shared.counters.clone(),
            };
            let incoming = Incoming::Call {
                from: conn.from.to_string(),
                payload,
                reply: responder,
                deadline,
            };
            if let Err(err) = shared.incoming.try_send(incoming) {
                let (why, incoming) = match err {
                    mpsc::error::TrySendError::Full(i) => ("the member's message queue is full", i),
                    mpsc::error::TrySendError::Closed(i) => ("the member is stopping", i),
                };
                if let Incoming::Call {
                    reply: responder, ..
                } = incoming
                {
                    responder.send(Outcome::Err(Refusal::Unavailable(why.into())));
                }
            }
        }
        Some(Kind::Cast) => {
            let incoming = Incoming::Cast {
                from: conn.from.to_string(),
                payload,
            };
            if shared.incoming.try_send(incoming).is_err() {
                warn!(node = %shared.node_id, %peer, "cast dropped: the member's message queue is full or closed");
            }
        }
        _ => {
            let Ok(slot) = shared.system_slots.clone().try_acquire_owned() else {
                shared.counters.system_busy.fetch_add(1, Ordering::Relaxed);
                let why = format!("{MAX_SYSTEM_REQUESTS} herd requests are running; try again");
                return reply(replies, id, Outcome::Err(Refusal::Unavailable(why)), shared);
            };
            let handler = shared.system.read().expect("system handler lock").clone();
            let weak = Arc::downgrade(replies);
            let from = conn.from.to_string();
            let (shared, cancel) = (shared.clone(), cancel.clone());
            tracker.spawn(async move {
                let outcome = match handler {
                    Some(handler) => tokio::select! {
                        _ = cancel.cancelled() => return,
                        outcome = handler.handle(from, payload) => outcome,
                    },
                    None => Outcome::Err(Refusal::Unavailable(
                        "this node takes no herd requests".into(),
                    )),
                };
                drop(slot);
                if let Some(replies) = weak.upgrade() {
                    reply(&replies, id, outcome, &shared);
                }
            });
        }
    }
}

fn reply(replies: &FrameWriter, id: u64, outcome: Outcome, shared: &Shared) {
    send_reply(
        replies,
        id,
        outcome,
        false,
        shared.limits.max_frame,
        &shared.counters,
    );
}

/// Sends a reply; one over `max_frame` goes as a `TooLarge` refusal instead, and one the queue
/// has no room for is dropped (the peer is not reading), both counted.
fn send_reply(
    replies: &FrameWriter,
    id: u64,
    outcome: Outcome,
    direct: bool,
    max_frame: usize,
    counters: &ServerCounters,
) {
    let bytes = match frame::encode(Kind::Reply, id, &outcome, max_frame) {
        Ok(bytes) => bytes,
        Err(frame::EncodeError::TooLarge { size, limit }) => {
            counters.oversized_replies.fetch_add(1, Ordering::Relaxed);
            warn!(
                id,
                size, limit, "rpc reply over the frame limit: answered with an error"
            );
            let refusal = Refusal::Unavailable(format!(
                "the reply of {size} bytes exceeds the frame limit of {limit}"
            ));
            match frame::encode(Kind::Reply, id, &Outcome::Err(refusal), max_frame) {
                Ok(bytes) => bytes,
                Err(_) => return,
            }
        }
        Err(frame::EncodeError::Codec(err)) => {
            return warn!(id, error = %err, "rpc reply could not be encoded")
        }
    };
    if let Err(writer::SendError::Full { .. }) = replies.send(bytes, direct) {
        counters.overloaded.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::client::{Client, Failure};

    /// Never answers, until cancelled.
    struct Hang;

    #[async_trait]
    impl SystemHandler for Hang {
        async fn handle(&self, _from: String, _payload: Vec<u8>) -> Outcome {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn rpc_sockets_have_keepalive_on() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        keepalive(&stream);
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            Duration::from_secs(60)
        );
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(10)
        );
        assert!(stream.nodelay().unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn herd_requests_beyond_the_bound_are_refused_at_once_and_cancelled_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (incoming, _queue) = mpsc::channel(16);
        let limits = Limits::new(frame::DEFAULT_MAX_FRAME);
        let handler: Arc<dyn SystemHandler> = Arc::new(Hang);
        let shared = Arc::new(Shared {
            node_id: "server".into(),
            incoming,
            system: RwLock::new(Some(handler)),
            limits,
            counters: Arc::default(),
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            system_slots: Arc::new(Semaphore::new(MAX_SYSTEM_REQUESTS)),
            keyring: None,
            logged: Mutex::new(LogLimit::new(Duration::from_secs(60))),
        });
        let (tracker, cancel) = (TaskTracker::new(), CancellationToken::new());
        tracker.spawn(serve(
            listener,
            shared.clone(),
            tracker.clone(),
            cancel.clone(),
        ));
        let client = Arc::new(Client::new(
            "caller".into(),
            limits,
            Arc::default(),
            None,
            tracker.clone(),
            cancel.clone(),
        ));
        let wait = Duration::from_secs(20);
        let calls: Vec<_> = (0..=MAX_SYSTEM_REQUESTS)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    client
                        .request("server", addr, Kind::System, vec![1], wait)
                        .await
                })
            })
            .collect();
        // Exactly one finds every slot taken, and is answered at once.
        let busy = tokio::time::timeout(wait, async {
            while shared.counters.system_busy.load(Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(busy.is_ok(), "no herd request was refused");
        let refused = calls.iter().filter(|call| call.is_finished()).count();
        assert!(refused <= 1, "{refused} calls ended");

        // Shutdown cancels the running requests: every task ends, every caller is answered.
        cancel.cancel();
        tracker.close();
        tokio::time::timeout(wait, tracker.wait())
            .await
            .expect("every task ended on shutdown");
        let mut unavailable = 0;
        for call in calls {
            match call.await.unwrap() {
                Ok(Outcome::Err(Refusal::Unavailable(why))) => {
                    assert!(why.contains("herd requests are running"), "{why}");
                    unavailable += 1;
                }
                Err(Failure::Unreachable(_)) => {}
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!(unavailable, 1);
        assert_eq!(shared.counters.system_busy.load(Ordering::Relaxed), 1);
    }
}
