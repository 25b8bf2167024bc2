//! The RPC client: one reused TCP connection per peer address, requests multiplexed on it by id.
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

use super::frame::{self, Kind, Outcome, Request};
use super::server::{read_frame, ReadFrame};
use super::writer::{self, FrameWriter};

/// Why a request got no reply.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No connection could be made, or it broke before the reply.
    Unreachable(String),
    /// No reply within the timeout.
    Timeout,
    /// The request is larger than the frame limit.
    TooLarge { size: usize, limit: usize },
    /// The request could not be encoded.
    Encode(String),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Outcome>>>>;

struct Conn {
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
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Client {
    pub(crate) fn new(
        node_id: Arc<str>,
        max_frame: usize,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Client {
        Client {
            node_id,
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            max_frame,
            tracker,
            cancel,
        }
    }

    /// Sends a `Call` or `System` request and waits for its reply, for at most `timeout` in all
    /// (connecting included).
    pub(crate) async fn request(
        &self,
        addr: SocketAddr,
        kind: Kind,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Outcome, Failure> {
        let deadline = tokio::time::Instant::now() + timeout;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = self.encode(kind, id, payload)?;
        let conn = tokio::time::timeout_at(deadline, self.connection(addr))
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
        addr: SocketAddr,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let bytes = self.encode(Kind::Cast, 0, payload)?;
        let conn = tokio::time::timeout(timeout, self.connection(addr))
            .await
            .map_err(|_| Failure::Timeout)??;
        conn.frames
            .send(bytes, false)
            .map_err(|_| Failure::Unreachable("the connection closed".into()))
    }

    fn encode(&self, kind: Kind, id: u64, payload: Vec<u8>) -> Result<Vec<u8>, Failure> {
        let request = Request {
            from: self.node_id.to_string(),
            payload,
        };
        let bytes =
            frame::encode(kind, id, &request).map_err(|e| Failure::Encode(e.to_string()))?;
        let size = bytes.len() - 4 - frame::HEADER_LEN;
        if size > self.max_frame {
            return Err(Failure::TooLarge {
                size,
                limit: self.max_frame,
            });
        }
        Ok(bytes)
    }

    async fn connection(&self, addr: SocketAddr) -> Result<Arc<Conn>, Failure> {
        if let Some(conn) = self.conns.lock().expect("conns lock").get(&addr) {
            if !conn.closed.load(Ordering::Acquire) {
                return Ok(conn.clone());
            }
        }
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|err| Failure::Unreachable(format!("cannot connect: {err}")))?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let frames = FrameWriter::new(write);
        let conn = Arc::new(Conn {
            frames: frames.clone(),
            pending: Arc::new(Mutex::new(HashMap::new())),
            closed: Arc::new(AtomicBool::new(false)),
        });
        self.tracker
            .spawn(writer::flush(frames, self.cancel.clone()));
        self.tracker.spawn(read_replies(
            BufReader::with_capacity(64 * 1024, read),
            conn.pending.clone(),
            conn.closed.clone(),
            self.max_frame,
            self.cancel.clone(),
        ));
        let mut conns = self.conns.lock().expect("conns lock");
        match conns.get(&addr) {
            // Another caller connected meanwhile: use theirs; ours closes when dropped.
            Some(existing) if !existing.closed.load(Ordering::Acquire) => Ok(existing.clone()),
            _ => {
                conns.insert(addr, conn.clone());
                Ok(conn)
            }
        }
    }
}

async fn read_replies(
    mut reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    pending: Pending,
    closed: Arc<AtomicBool>,
    max_frame: usize,
    cancel: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => break,
            frame = read_frame(&mut reader, max_frame) => frame,
        };
        let bytes = match frame {
            Ok(ReadFrame::Frame(bytes)) => bytes,
            Ok(ReadFrame::TooLarge { id, size, .. }) => {
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
    // Dropping the senders fails every call still waiting on this connection.
    pending.lock().expect("pending lock").clear();
}
