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
use super::server::{key_kept, read_frame, ReadFrame};
use super::writer::{self, FrameWriter};
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
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Outcome>>>>;

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
    conns: Mutex<HashMap<SocketAddr, Arc<Conn>>>,
    next_id: AtomicU64,
    max_frame: usize,
    keyring: Option<Keyring>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Client {
    pub(crate) fn new(
        node_id: Arc<str>,
        max_frame: usize,
        keyring: Option<Keyring>,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Client {
        Client {
            node_id,
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            max_frame,
            keyring,
            tracker,
            cancel,
        }
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
        let bytes = self.encode(kind, id, &payload)?;
        let conn = tokio::time::timeout_at(deadline, self.connection(to, addr))
            .await
            .map_err(|_| Failure::Timeout)??;
        let (tx, rx) = oneshot::channel();
        let alone = {
            let mut pending = conn.pending.lock().expect("pending lock");
            pending.insert(id, tx);
            pending.len() == 1
        };
        if conn.closed.load(Ordering::Acquire) || conn.frames.send(bytes, alone).is_err() {
            conn.pending.lock().expect("pending lock").remove(&id);
            return Err(Failure::Unreachable("the connection closed".into()));
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
            .map_err(|_| Failure::Unreachable("the connection closed".into()))
    }

    fn encode(&self, kind: Kind, id: u64, payload: &[u8]) -> Result<Vec<u8>, Failure> {
        if payload.len() > self.max_frame {
            return Err(Failure::TooLarge {
                size: payload.len(),
                limit: self.max_frame,
            });
        }
        Ok(frame::encode_bytes(kind, id, payload))
    }

    async fn connection(&self, to: &str, addr: SocketAddr) -> Result<Arc<Conn>, Failure> {
        if let Some(conn) = self.conns.lock().expect("conns lock").get(&addr) {
            if self.usable(conn) {
                return check_peer(conn, to, addr);
            }
            // Closed, or opened with a key that is no longer the primary: replaced below.
            conn.frames.close();
        }
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|err| Failure::Unreachable(format!("cannot connect: {err}")))?;
        let _ = stream.set_nodelay(true);
        let session = handshake::client(&mut stream, self.keyring.as_ref(), &self.node_id)
            .await
            .map_err(|err| Failure::Refused(err.to_string()))?;
        let (read, write) = stream.into_split();
        let frames = FrameWriter::new(write, session.writer);
        let conn = Arc::new(Conn {
            peer: session.peer.into(),
            key: session.key,
            frames: frames.clone(),
            pending: Arc::new(Mutex::new(HashMap::new())),
            closed: Arc::new(AtomicBool::new(false)),
        });
        self.tracker
            .spawn(writer::flush(frames, self.cancel.clone()));
        self.tracker.spawn(read_replies(
            BufReader::with_capacity(64 * 1024, read),
            Replies {
                opener: session.reader,
                pending: conn.pending.clone(),
                closed: conn.closed.clone(),
                frames: Arc::downgrade(&conn.frames),
                max_frame: self.max_frame,
                keyring: self.keyring.clone(),
                key: session.key,
            },
            self.cancel.clone(),
        ));
        let conn = {
            let mut conns = self.conns.lock().expect("conns lock");
            match conns.get(&addr) {
                // Another caller connected meanwhile: use theirs; ours closes when dropped.
                Some(existing) if self.usable(existing) => existing.clone(),
                _ => {
                    conns.insert(addr, conn.clone());
                    conn
                }
            }
        };
        check_peer(&conn, to, addr)
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
    opener: SessionReader,
    pending: Pending,
    closed: Arc<AtomicBool>,
    /// Closed when the reader ends, so the flush task ends too; weak, so that dropping the
    /// connection drops its socket.
    frames: std::sync::Weak<FrameWriter>,
    max_frame: usize,
    keyring: Option<Keyring>,
    key: Option<crate::trust::KeyId>,
}

async fn read_replies(
    mut reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    replies: Replies,
    cancel: CancellationToken,
) {
    let Replies {
        mut opener,
        pending,
        closed,
        frames,
        max_frame,
        keyring,
        key,
    } = replies;
    let mut key_changes = keyring.as_ref().map(Keyring::changes);
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => break,
            frame = read_frame(&mut reader, max_frame, opener.overhead()) => frame,
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
    // Dropping the senders fails every call still waiting on this connection.
    pending.lock().expect("pending lock").clear();
}
