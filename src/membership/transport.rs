//! chitchat's UDP transport with counters: bytes and messages in each direction; and one
//! saving: the last message of a gossip exchange (ACK) is not sent when it carries nothing (an
//! empty delta: the peer already had everything). An idle cluster is mostly such exchanges, so this
//! drops a third of its datagrams; the receiver would have done nothing with it.
//!
//! Datagrams that do not decode as gossip are dropped by chitchat's socket before they reach
//! herd (with a warning in the log); they never disturb the gossip loop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket};
use chitchat::{ChitchatEnvelope, ChitchatMessage, Serializable};

/// Gossip traffic counters of one node since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GossipStats {
    /// Bytes of gossip sent.
    pub bytes_sent: u64,
    /// Bytes of gossip received (valid messages only).
    pub bytes_received: u64,
    /// Gossip messages sent.
    pub messages_sent: u64,
    /// Gossip messages received (valid messages only).
    pub messages_received: u64,
}

/// Shared counters the socket updates and the node reads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    messages_sent: AtomicU64,
    messages_received: AtomicU64,
}

impl Counters {
    pub(crate) fn stats(&self) -> GossipStats {
        GossipStats {
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            messages_sent: self.messages_sent.load(Ordering::Relaxed),
            messages_received: self.messages_received.load(Ordering::Relaxed),
        }
    }
}

/// A [`Transport`] opening counted UDP sockets.
pub(crate) struct CountingUdp {
    pub(crate) counters: Arc<Counters>,
}

#[async_trait]
impl Transport for CountingUdp {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inner = UdpSocket::open(listen_addr).await?;
        Ok(Box::new(CountingSocket {
            inner,
            counters: self.counters.clone(),
        }))
    }
}

struct CountingSocket {
    inner: UdpSocket,
    counters: Arc<Counters>,
}

#[async_trait]
impl Socket for CountingSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        if let ChitchatMessage::Ack { delta } = &envelope.message {
            // An empty delta encodes to a single byte.
            if delta.serialized_len() <= 1 {
                return Ok(SendOutcome { num_bytes_sent: 0 });
            }
        }
        let outcome = self.inner.send(to, envelope).await?;
        self.counters
            .bytes_sent
            .fetch_add(outcome.num_bytes_sent as u64, Ordering::Relaxed);
        self.counters.messages_sent.fetch_add(1, Ordering::Relaxed);
        Ok(outcome)
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        let outcome = self.inner.recv().await?;
        self.counters
            .bytes_received
            .fetch_add(outcome.num_bytes_received as u64, Ordering::Relaxed);
        self.counters
            .messages_received
            .fetch_add(1, Ordering::Relaxed);
        Ok(outcome)
    }
}
