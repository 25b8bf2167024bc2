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
//!
//! This file holds the bounds, the accept loop and the per-connection loop; beside it:
//! - `server/read.rs`: reading a frame with the idle and read timeouts (the client reads with it
//!   too);
//! - `server/dispatch.rs`: acting on an opened frame (calls and casts to the dispatcher, herd
//!   requests to their handler) and sending replies;
//! - `server/counters.rs`: what the server refused or closed, for `/metrics`.

mod counters;
mod dispatch;
mod read;

pub(crate) use counters::{ServerCounters, REFUSED_REASONS};
pub(crate) use dispatch::{Incoming, SystemHandler};
pub(crate) use read::{read_frame, ReadFrame, Timeouts};

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::BufReader;
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
use dispatch::{handle, reply, ConnRef};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
