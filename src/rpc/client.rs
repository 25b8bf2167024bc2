//! The RPC client: one reused TCP connection per peer address, requests multiplexed on it by id.
//!
//! A new connection is opened with the handshake (`trust/handshake.rs`), which names the peer;
//! a peer that is not the member asked for (another node now at that address) is refused. With a
//! keyring every frame is sealed; a connection opened with a key that is no longer the primary is
//! replaced at the next call (so removing a rotated-out key never catches a connection still using
//! it), and one whose key was removed closes at its next frame, before acting on it.
//!
//! A caller writes its request through the connection's [`FrameWriter`] (straight to the socket
//! when nothing is queued); a reader task hands each reply to the caller waiting for its id. When a connection breaks, every
//! call waiting on it fails at once and the next call connects again. Tasks stop on the node's
//! cancellation token.
//!
//! Exactly one connection per peer address: callers that find none wait for the one being
//! opened (a per-address lock) instead of each opening their own. The connection's entry, its
//! reader task and its flush task end together: when the reader ends (the peer closed, a read
//! timeout, shutdown, or the peer left the membership: [`Client::retain`]) it closes the writer
//! and removes the entry, so the socket is released as soon as the last caller using it returns.
//! A request the connection's writer queue has no room for (the peer does not read) fails at once
//! with [`Failure::Overloaded`]. Every socket has TCP keepalive on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::frame::{self, Kind, Outcome};
use super::server::{keepalive, key_kept, read_frame, Limits, ReadFrame, ServerCounters, Timeouts};
use super::writer::{self, FrameWriter, SendError};
use crate::trust::handshake::{self, SessionReader};
use crate::trust::Keyring;

/// Why a request got no reply.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No connection could be made, or it broke before the reply.
    Unreachable(String),
    /// No reply within the timeout.
    Timeout,
    /// The request is larger than the frame limit.
    TooLarge { size: usize, limit: usize },
    /// The handshake failed: no common key, a bad proof, or another node at the address.
    Refused(String),
    /// The connection's writer queue holds `queued` bytes, at its bound `limit`: the peer is
    /// not reading.
    Overloaded { queued: usize, limit: usize },
}

impl From<SendError> for Failure {
    fn from(err: SendError) -> Failure {
        match err {
            SendError::Closed => Failure::Unreachable("the connection closed".into()),
            SendError::Full { queued, limit } => Failure::Overloaded { queued, limit },
        }
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Outcome>>>>;

type Conns = Arc<Mutex<HashMap<SocketAddr, Arc<Conn>>>>;

struct Conn {
    /// The peer's node id, as the handshake named it.
    peer: Arc<str>,
    /// The cluster key it was opened with.
    key: Option<crate::trust::KeyId>,
    frames: Arc<FrameWriter>,
    pending: Pending,
    closed: Arc<AtomicBool>,
}

/// Connections to peers, shared by every caller on a node.
pub(crate) struct Client {
    node_id: Arc<str>,
    conns: Conns,
    /// Held while a connection to the address is being opened.
    opening: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<()>>>>,
    next_id: AtomicU64,
    limits: Limits,
    counters: Arc<ServerCounters>,
    keyring: Option<Keyring>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Client {
    pub(crate) fn new(
        node_id: Arc<str>,
        limits: Limits,
        counters: Arc<ServerCounters>,
        keyring: Option<Keyring>,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Client {
        Client {
            node_id,
            conns: Arc::new(Mutex::new(HashMap::new())),
            opening: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            limits,
            counters,
            keyring,
            tracker,
            cancel,
        }
    }

    /// The id of the node this client calls from.
    pub(crate) fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Sends a `Call` or `System` request and waits for its reply, for at most `timeout` in all
    /// (connecting included).
    pub(crate) async fn request(
        &self,
        to: &str,
        addr: SocketAddr,
        kind: Kind,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Outcome, Failure> {
        let deadline = tokio::time::Instant::now() + timeout;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let timing = super::deadline::prefix(deadline);
        // The frame limit is the message's: the timing prefix comes on top.
        let limit = self.limits.max_frame + super::deadline::TIMING_LEN;
        let mut bytes =
            frame::encode_parts(kind, id, &[&timing, &payload], limit).map_err(|err| {
                match encode_failure(err) {
                    Failure::TooLarge { size, limit } => Failure::TooLarge {
                        size: size - super::deadline::TIMING_LEN,
                        limit: limit - super::deadline::TIMING_LEN,
                    },
                    other => other,
                }
            })?;
        // The frame holds the request now; a call waiting for its reply keeps no second copy.
        drop(payload);
        let conn = tokio::time::timeout_at(deadline, self.connection(to, addr))
            .await
            .map_err(|_| Failure::Timeout)??;
        // Sent now, not when encoded: connecting may have taken a while.
        super::deadline::restamp(&mut bytes[frame::BODY_OFFSET..]);
        let (tx, rx) = oneshot::channel();
        let alone = {
            let mut pending = conn.pending.lock().expect("pending lock");
            pending.insert(id, tx);
            pending.len() == 1
        };
        let sent = match conn.closed.load(Ordering::Acquire) {
            true => Err(SendError::Closed),
            false => conn.frames.send(bytes, alone),
        };
        if let Err(err) = sent {
            conn.pending.lock().expect("pending lock").remove(&id);
            return Err(self.failed(err));
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(Failure::Unreachable(
                "the connection closed before the reply".into(),
            )),
            Err(_) => {
                conn.pending.lock().expect("pending lock").remove(&id);
                Err(Failure::Timeout)
            }
        }
    }

    /// Sends a `Cast`: done once the frame is queued on a live connection.
    pub(crate) async fn cast(
        &self,
        to: &str,
        addr: SocketAddr,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let bytes = self.encode(Kind::Cast, 0, &payload)?;
        let conn = tokio::time::timeout(timeout, self.connection(to, addr))
            .await
            .map_err(|_| Failure::Timeout)??;
        conn.frames
            .send(bytes, false)
            .map_err(|err| self.failed(err))
    }

    /// The failure of a send, counted when the queue was full.
    fn failed(&self, err: SendError) -> Failure {
        if matches!(err, SendError::Full { .. }) {
            self.counters.overloaded.fetch_add(1, Ordering::Relaxed);
        }
        err.into()
    }

    fn encode(&self, kind: Kind, id: u64, payload: &[u8]) -> Result<Vec<u8>, Failure> {
        frame::encode_bytes(kind, id, payload, self.limits.max_frame).map_err(encode_failure)
    }

    /// The connection to `addr`: the cached one, or the one a concurrent caller is opening, or a
    /// new one.
    async fn connection(&self, to: &str, addr: SocketAddr) -> Result<Arc<Conn>, Failure> {
        if let Some(conn) = self.cached(addr) {
            return check_peer(&conn, to, addr);
        }
        let slot = self
            .opening
            .lock()
            .expect("opening lock")
            .entry(addr)
            .or_default()
            .clone();
        let opening = slot.lock().await;
        if let Some(conn) = self.cached(addr) {
            return check_peer(&conn, to, addr);
        }
        let conn = self.open(addr).await?;
        self.conns
            .lock()
            .expect("conns lock")
            .insert(addr, conn.clone());
        drop(opening);
        let mut slots = self.opening.lock().expect("opening lock");
        // Nobody else waits on this address's slot: forget it.
        if Arc::strong_count(&slot) == 2 {
            slots.remove(&addr);
        }
        drop(slots);
        check_peer(&conn, to, addr)
    }

    /// Closes the connections to every address not in `live` (members that left): their calls
    /// fail at once, and their sockets are released as soon as those calls return.
    pub(crate) fn retain(&self, live: &std::collections::HashSet<SocketAddr>) {
        self.conns.lock().expect("conns lock").retain(|addr, conn| {
            let keep = live.contains(addr);
            if !keep {
                conn.frames.close();
            }
            keep
        });
    }

    /// The cached connection to `addr` if it may carry the next request; a closed one, or one
    /// opened with a key that is no longer the primary, is closed and forgotten.
    fn cached(&self, addr: SocketAddr) -> Option<Arc<Conn>> {
        let mut conns = self.conns.lock().expect("conns lock");
        let conn = conns.get(&addr)?;
        if self.usable(conn) {
            return Some(conn.clone());
        }
        conn.frames.close();
        conns.remove(&addr);
        None
    }

    /// Connects, runs the handshake and starts the connection's reader and flush tasks.
    async fn open(&self, addr: SocketAddr) -> Result<Arc<Conn>, Failure> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|err| Failure::Unreachable(format!("cannot connect: {err}")))?;
        keepalive(&stream);
        let session = handshake::client(&mut stream, self.keyring.as_ref(), &self.node_id)
            .await
            .map_err(|err| Failure::Refused(err.to_string()))?;
        let (read, write) = stream.into_split();
        let frames = FrameWriter::new(write, session.writer, self.limits.max_queued);
        let conn = Arc::new(Conn {
            peer: session.peer.into(),
            key: session.key,
            frames: frames.clone(),
            pending: Arc::new(Mutex::new(HashMap::new())),
            closed: Arc::new(AtomicBool::new(false)),
        });
        let frames_shut = frames.shut();
        self.tracker
            .spawn(writer::flush(frames, self.cancel.clone()));
        self.tracker.spawn(read_replies(
            BufReader::with_capacity(64 * 1024, read),
            Replies {
                shut: frames_shut,
                opener: session.reader,
                pending: conn.pending.clone(),
                closed: conn.closed.clone(),
                frames: Arc::downgrade(&conn.frames),
                conns: Arc::downgrade(&self.conns),
                addr,
                limits: self.limits,
                keyring: self.keyring.clone(),
                key: session.key,
            },
            self.cancel.clone(),
        ));
        Ok(conn)
    }
}

impl Client {
    /// Whether a cached connection may carry the next request.
    fn usable(&self, conn: &Conn) -> bool {
        !conn.closed.load(Ordering::Acquire)
            && match &self.keyring {
                Some(ring) => conn.key == Some(ring.primary_id()),
                None => true,
            }
    }
}

/// The connection, if the node at its far end is `to`.
fn check_peer(conn: &Arc<Conn>, to: &str, addr: SocketAddr) -> Result<Arc<Conn>, Failure> {
    if &*conn.peer == to {
        Ok(conn.clone())
    } else {
        Err(Failure::Refused(format!(
            "the node at {addr} is {:?}, not {to:?}",
            conn.peer
        )))
    }
}

/// What the reader of one connection's replies holds.
struct Replies {
    /// Fires when the connection is closed from this side (its peer left).
    shut: CancellationToken,
    opener: SessionReader,
    pending: Pending,
    closed: Arc<AtomicBool>,
    /// Closed when the reader ends, so the flush task ends too; weak, so that dropping the
    /// connection drops its socket.
    frames: std::sync::Weak<FrameWriter>,
    /// The client's connections, where this one's entry is removed when the reader ends.
    conns: std::sync::Weak<Mutex<HashMap<SocketAddr, Arc<Conn>>>>,
    addr: SocketAddr,
    limits: Limits,
    keyring: Option<Keyring>,
    key: Option<crate::trust::KeyId>,
}

async fn read_replies(
    mut reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    replies: Replies,
    cancel: CancellationToken,
) {
    let Replies {
        shut,
        mut opener,
        pending,
        closed,
        frames,
        conns,
        addr,
        limits,
        keyring,
        key,
    } = replies;
    let max_frame = limits.max_frame;
    let timeouts = Timeouts {
        idle: None,
        read: limits.read,
    };
    let mut key_changes = keyring.as_ref().map(Keyring::changes);
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = shut.cancelled() => break,
            frame = read_frame(&mut reader, max_frame, opener.overhead(), &timeouts) => frame,
        };
        if !key_kept(&mut key_changes, keyring.as_ref(), key) {
            break;
        }
        let bytes = match frame {
            Ok(ReadFrame::Frame(mut bytes)) => {
                if opener.open(&mut bytes, frame::HEADER_LEN).is_err() {
                    break;
                }
                bytes
            }
            Ok(ReadFrame::TooLarge { id, size, .. }) => {
                opener.skip();
                let refusal = frame::Refusal::TooLarge {
                    size,
                    limit: max_frame,
                };
                if let Some(tx) = pending.lock().expect("pending lock").remove(&id) {
                    let _ = tx.send(Outcome::Err(refusal));
                }
                continue;
            }
            Ok(ReadFrame::Idle) => continue,
            Err(_) => break,
        };
        let Some((kind, id, body)) = frame::split(&bytes) else {
            continue;
        };
        if Kind::from_u8(kind) != Some(Kind::Reply) {
            continue;
        }
        let outcome = bincode::deserialize::<Outcome>(body).unwrap_or_else(|err| {
            Outcome::Err(frame::Refusal::Malformed(format!(
                "undecodable reply: {err}"
            )))
        });
        if let Some(tx) = pending.lock().expect("pending lock").remove(&id) {
            let _ = tx.send(outcome);
        }
    }
    closed.store(true, Ordering::Release);
    if let Some(frames) = frames.upgrade() {
        frames.close();
    }
    if let Some(conns) = conns.upgrade() {
        let mut conns = conns.lock().expect("conns lock");
        if conns
            .get(&addr)
            .is_some_and(|conn| std::ptr::eq(Arc::as_ptr(&conn.frames), frames.as_ptr()))
        {
            conns.remove(&addr);
        }
    }
    // Dropping the senders fails every call still waiting on this connection.
    pending.lock().expect("pending lock").clear();
}

fn encode_failure(err: frame::EncodeError) -> Failure {
    match err {
        frame::EncodeError::TooLarge { size, limit } => Failure::TooLarge { size, limit },
        frame::EncodeError::Codec(err) => Failure::Unreachable(err.to_string()),
    }
}
