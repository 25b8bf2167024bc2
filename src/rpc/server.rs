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

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::frame::{self, Kind, Outcome, Refusal};
use super::writer::{self, FrameWriter};
use crate::log_limit::LogLimit;
use crate::trust::handshake;
use crate::trust::Keyring;

/// How long a peer has to complete the handshake after connecting.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A request from a peer for the member's callbacks.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// Answer through `reply`.
    Call {
        from: String,
        payload: Vec<u8>,
        reply: Responder,
    },
    /// No answer.
    Cast { from: String, payload: Vec<u8> },
}

/// Answers one call: writes the reply frame straight to the caller's connection. A call dropped
/// unanswered (the member is stopping) is answered with a refusal.
pub(crate) struct Responder {
    id: u64,
    replies: Option<Arc<FrameWriter>>,
    in_flight: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").field("id", &self.id).finish()
    }
}

impl Responder {
    /// Sends the answer.
    pub(crate) fn send(mut self, outcome: Outcome) {
        if let Some(replies) = self.replies.take() {
            // The only call in flight on its connection: write the reply at once.
            let alone = self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1;
            send_reply(&replies, self.id, outcome, alone);
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(replies) = self.replies.take() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            let refusal = Refusal::Unavailable("the member stopped before answering".into());
            reply(&replies, self.id, Outcome::Err(refusal));
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
    pub(crate) max_frame: usize,
    pub(crate) counters: ServerCounters,
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
                let _ = stream.set_nodelay(true);
                tracker.spawn(connection(
                    stream,
                    peer,
                    shared.clone(),
                    tracker.clone(),
                    cancel.clone(),
                ));
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
    let replies = FrameWriter::new(write, session.writer);
    let in_flight = Arc::new(AtomicUsize::new(0));
    tracker.spawn(writer::flush(replies.clone(), cancel.clone()));
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => break,
            frame = read_frame(&mut reader, shared.max_frame, opener.overhead()) => frame,
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
                handle(&bytes, peer, &from, &shared, &replies, &in_flight, &tracker)
            }
            Ok(ReadFrame::TooLarge { kind, id, size }) => {
                opener.skip();
                shared
                    .counters
                    .oversized_frames
                    .fetch_add(1, Ordering::Relaxed);
                warn!(node = %shared.node_id, %peer, size, limit = shared.max_frame, "rpc frame over the size limit dropped");
                if matches!(Kind::from_u8(kind), Some(Kind::Call | Kind::System)) {
                    let refusal = Refusal::TooLarge {
                        size,
                        limit: shared.max_frame,
                    };
                    reply(&replies, id, Outcome::Err(refusal));
                }
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
}

/// Reads one frame; frames whose body is over `max_frame` are read past (not kept) so the stream
/// stays usable. `overhead` is what a seal adds (its tag), beyond the limit.
pub(crate) async fn read_frame<R: AsyncReadExt + Unpin>(
    reader: &mut R,
    max_frame: usize,
    overhead: usize,
) -> std::io::Result<ReadFrame> {
    let len = reader.read_u32().await? as usize;
    if len < frame::HEADER_LEN + overhead {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is shorter than its header"),
        ));
    }
    if len <= max_frame + frame::HEADER_LEN + overhead {
        let mut bytes = vec![0; len];
        reader.read_exact(&mut bytes).await?;
        return Ok(ReadFrame::Frame(bytes));
    }
    let mut header = [0u8; frame::HEADER_LEN];
    reader.read_exact(&mut header).await?;
    let mut rest = (&mut *reader).take((len - frame::HEADER_LEN) as u64);
    tokio::io::copy(&mut rest, &mut tokio::io::sink()).await?;
    let id = u64::from_be_bytes(header[1..9].try_into().expect("8 bytes"));
    Ok(ReadFrame::TooLarge {
        kind: header[0],
        id,
        size: len - frame::HEADER_LEN - overhead,
    })
}

fn handle(
    bytes: &[u8],
    peer: SocketAddr,
    from: &Arc<str>,
    shared: &Arc<Shared>,
    replies: &Arc<FrameWriter>,
    in_flight: &Arc<AtomicUsize>,
    tracker: &TaskTracker,
) {
    let refuse = |id: u64, kind: Option<Kind>, why: String| {
        shared.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
        warn!(node = %shared.node_id, %peer, id, reason = %why, "rpc frame dropped");
        if matches!(kind, Some(Kind::Call | Kind::System)) {
            reply(replies, id, Outcome::Err(Refusal::Malformed(why)));
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
    let payload = body.to_vec();
    match kind {
        Some(Kind::Call) => {
            in_flight.fetch_add(1, Ordering::AcqRel);
            let responder = Responder {
                id,
                replies: Some(replies.clone()),
                in_flight: in_flight.clone(),
            };
            let incoming = Incoming::Call {
                from: from.to_string(),
                payload,
                reply: responder,
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
                from: from.to_string(),
                payload,
            };
            if shared.incoming.try_send(incoming).is_err() {
                warn!(node = %shared.node_id, %peer, "cast dropped: the member's message queue is full or closed");
            }
        }
        _ => {
            let handler = shared.system.read().expect("system handler lock").clone();
            let replies = replies.clone();
            let from = from.to_string();
            tracker.spawn(async move {
                let outcome = match handler {
                    Some(handler) => handler.handle(from, payload).await,
                    None => Outcome::Err(Refusal::Unavailable(
                        "this node takes no herd requests".into(),
                    )),
                };
                reply(&replies, id, outcome);
            });
        }
    }
}

fn reply(replies: &FrameWriter, id: u64, outcome: Outcome) {
    send_reply(replies, id, outcome, false);
}

fn send_reply(replies: &FrameWriter, id: u64, outcome: Outcome, direct: bool) {
    match frame::encode(Kind::Reply, id, &outcome) {
        Ok(bytes) => {
            let _ = replies.send(bytes, direct);
        }
        Err(err) => warn!(id, error = %err, "rpc reply could not be encoded"),
    }
}
