//! herd's gossip transport: chitchat's messages over UDP, sealed with the cluster key when the
//! node has a keyring, and counted.
//!
//! - **Sealing**: with a [`Keyring`], every datagram is sealed with the primary key
//!   (`trust/seal.rs`) and every datagram received must open with an installed key before chitchat
//!   decodes it. One that does not (plain, sealed with a key this node does not hold, tampered,
//!   truncated, or not a chitchat message once opened) is dropped, counted by reason
//!   ([`GossipStats::rejected`]) and logged at most once per peer address per minute.
//! - **Migration** (`verify_incoming = false`): plain datagrams are accepted too; a peer is sent
//!   what it last sent (plain or sealed), and a peer not heard from yet both forms, so a
//!   plaintext cluster can be given a key one node at a time without anyone losing sight of
//!   anyone; then every node is restarted with `verify_incoming = true`.
//! - **Counters**: bytes and messages in each direction (valid messages only).
//! - **One saving**: the last message of a gossip exchange (ACK) is not sent when it carries
//!   nothing (an empty delta: the peer already had everything). An idle cluster is mostly such
//!   exchanges, so this drops a third of its datagrams; the receiver would have done nothing with it.
//!
//! - **Contact**: a peer's answer to an exchange this node started (SYN-ACK) is recorded in
//!   [`PeerContact`](super::PeerContact): that a peer answered, and whether it had news for
//!   this node.
//!
//! Without a keyring, datagrams are plain, as chitchat's own transport sends them, and a sealed or
//! undecodable datagram is dropped and counted the same way.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion, Serializable};
use tracing::{error, warn};

use crate::log_limit::LogLimit;
use crate::trust::seal::{self, Opened};
use crate::trust::Keyring;

/// Why received datagrams were dropped, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GossipRejects {
    /// Plain datagrams at a node that requires sealed ones.
    pub plaintext: u64,
    /// Sealed with a key this node does not hold.
    pub unknown_key: u64,
    /// Sealed under an installed key's id but not authentic (tampered, or another key).
    pub forged: u64,
    /// Too short to be a sealed datagram.
    pub truncated: u64,
    /// Not a chitchat message (after opening, when sealed).
    pub malformed: u64,
    /// Sealed datagrams at a node that has no keyring.
    pub sealed: u64,
}

impl GossipRejects {
    /// Each reason with its count, as `herd_gossip_rejected_total{reason}` labels them.
    pub fn by_reason(&self) -> [(&'static str, u64); 6] {
        [
            ("plaintext", self.plaintext),
            ("unknown_key", self.unknown_key),
            ("forged", self.forged),
            ("truncated", self.truncated),
            ("malformed", self.malformed),
            ("sealed", self.sealed),
        ]
    }

    /// All rejected datagrams.
    pub fn total(&self) -> u64 {
        self.by_reason().iter().map(|(_, n)| n).sum()
    }
}

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
    /// Datagrams received and dropped, by reason.
    pub rejected: GossipRejects,
    /// The largest digest message (chitchat's SYN: this node's digest of every member it
    /// knows, dead incarnations included until the dead-node grace period ends) encoded since
    /// the node started, in bytes, before sealing. Gossip stops working when it passes
    /// [`datagram_limit_bytes`](Self::datagram_limit_bytes).
    pub largest_digest_bytes: u64,
    /// The largest gossip message that fits in one datagram, in bytes.
    pub datagram_limit_bytes: u64,
    /// Whether digests are sent compressed: set by
    /// [`compress_digests`](crate::NodeBuilder::compress_digests), or switched on by the node
    /// once a digest passed 60 % of the datagram limit.
    pub compressing: bool,
    /// Gossip messages not sent because they were larger than one datagram.
    pub oversized: u64,
}

/// A node whose digest passes this share of the datagram limit, in percent, switches to
/// compressed digests (every node reads both forms).
pub const COMPRESS_AT_PERCENT: u64 = 60;
/// A node whose digest passes this share of the datagram limit, in percent, logs a warning
/// (once).
pub const WARN_AT_PERCENT: u64 = 80;

#[derive(Clone, Copy)]
enum Reject {
    Plaintext,
    UnknownKey,
    Forged,
    Truncated,
    Malformed,
    Sealed,
}

/// Shared counters the socket updates and the node reads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    messages_sent: AtomicU64,
    messages_received: AtomicU64,
    rejected: [AtomicU64; 6],
    largest_digest: AtomicU64,
    oversized: AtomicU64,
    /// Whether messages are sent in chitchat's compressed format.
    pub(crate) compress: AtomicBool,
    warned: AtomicBool,
    /// Set by [`Counters::break_socket`]: the socket's next receive fails as a broken socket's
    /// would, which ends chitchat's gossip loop.
    broken: AtomicBool,
    wake: tokio::sync::Notify,
    /// What the node heard from its peers: recorded as their answers arrive.
    pub(crate) contact: super::contact::Contact,
}

impl Counters {
    pub(crate) fn stats(&self) -> GossipStats {
        let r = |reason: Reject| self.rejected[reason as usize].load(Ordering::Relaxed);
        GossipStats {
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            messages_sent: self.messages_sent.load(Ordering::Relaxed),
            messages_received: self.messages_received.load(Ordering::Relaxed),
            rejected: GossipRejects {
                plaintext: r(Reject::Plaintext),
                unknown_key: r(Reject::UnknownKey),
                forged: r(Reject::Forged),
                truncated: r(Reject::Truncated),
                malformed: r(Reject::Malformed),
                sealed: r(Reject::Sealed),
            },
            largest_digest_bytes: self.largest_digest.load(Ordering::Relaxed),
            datagram_limit_bytes: DATAGRAM_LIMIT as u64,
            compressing: self.compress.load(Ordering::Relaxed),
            oversized: self.oversized.load(Ordering::Relaxed),
        }
    }

    /// Makes the gossip socket fail as a broken one does: its next receive returns a fatal
    /// error, and chitchat's gossip loop ends. For tests of the node's liveness reporting.
    pub(crate) fn break_socket(&self) {
        self.broken.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    /// Records the size of a digest message about to be sent; tells whether later messages
    /// should be compressed, and warns once near the limit.
    fn digest_size(&self, node: &str, bytes: usize) {
        let bytes = bytes as u64;
        let before = self.largest_digest.fetch_max(bytes, Ordering::Relaxed);
        if bytes <= before {
            return;
        }
        let limit = DATAGRAM_LIMIT as u64;
        if bytes * 100 > limit * COMPRESS_AT_PERCENT && !self.compress.swap(true, Ordering::Relaxed)
        {
            warn!(node = %node, digest_bytes = bytes, limit, "the gossip digest passed {COMPRESS_AT_PERCENT}% of the datagram limit; digests are compressed from now on");
        }
        if bytes * 100 > limit * WARN_AT_PERCENT && !self.warned.swap(true, Ordering::Relaxed) {
            warn!(node = %node, digest_bytes = bytes, limit, "the gossip digest passed {WARN_AT_PERCENT}% of the datagram limit: past it, gossip stops and every peer looks failed (shorten the dead-node grace period, publish fewer tags, or split the cluster; see the README's \"Cluster size\")");
        }
    }
}

/// The largest gossip message that fits in one datagram (sealed or not).
const DATAGRAM_LIMIT: usize = chitchat::MAX_UDP_DATAGRAM_PAYLOAD_SIZE;

/// How a node's gossip is protected.
#[derive(Clone, Debug)]
pub(crate) struct Protection {
    /// The keys that seal and open; `None`: plain gossip.
    pub(crate) keyring: Option<Keyring>,
    /// With a keyring: whether plain datagrams are refused (true) or accepted (migration).
    pub(crate) verify_incoming: bool,
}

/// A [`Transport`] opening herd's gossip sockets.
pub(crate) struct GossipTransport {
    pub(crate) node: Arc<str>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) protection: Protection,
}

#[async_trait]
impl Transport for GossipTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = tokio::net::UdpSocket::bind(listen_addr)
            .await
            .with_context(|| format!("failed to bind to {listen_addr}/UDP for gossip"))?;
        Ok(Box::new(GossipSocket {
            socket,
            node: self.node.clone(),
            counters: self.counters.clone(),
            protection: self.protection.clone(),
            encoded: Vec::with_capacity(chitchat::MAX_UDP_DATAGRAM_PAYLOAD_SIZE),
            sealed: Vec::with_capacity(MAX_DATAGRAM),
            received: vec![0; MAX_DATAGRAM].into_boxed_slice(),
            opened: Vec::with_capacity(MAX_DATAGRAM),
            peer_kinds: HashMap::new(),
            logged: LogLimit::new(LOG_EVERY),
        }))
    }
}

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_507;
/// Peers whose kind is remembered (migration only); beyond this the map starts over.
const MAX_PEER_KINDS: usize = 4096;

/// How a peer last spoke to this node (migration only).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Sealed,
}

fn remember(kinds: &mut HashMap<SocketAddr, Kind>, peer: SocketAddr, kind: Kind) {
    if kinds.len() >= MAX_PEER_KINDS && !kinds.contains_key(&peer) {
        kinds.clear();
    }
    kinds.insert(peer, kind);
}
/// Per peer address, a rejection is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

struct GossipSocket {
    socket: tokio::net::UdpSocket,
    node: Arc<str>,
    counters: Arc<Counters>,
    protection: Protection,
    encoded: Vec<u8>,
    sealed: Vec<u8>,
    received: Box<[u8]>,
    opened: Vec<u8>,
    peer_kinds: HashMap<SocketAddr, Kind>,
    logged: LogLimit<SocketAddr>,
}

fn is_transient(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::OutOfMemory
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

#[async_trait]
impl Socket for GossipSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.socket
            .local_addr()
            .context("failed to get the gossip socket's address")
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        mut envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        if let ChitchatMessage::Ack { delta } = &envelope.message {
            // An empty delta encodes to a single byte.
            if delta.serialized_len() <= 1 {
                return Ok(SendOutcome { num_bytes_sent: 0 });
            }
        }
        if self.counters.compress.load(Ordering::Relaxed) {
            // Every node decodes both formats; a reply echoes the format of what it answers.
            envelope.version = ProtocolVersion::V1;
        }
        self.encoded.clear();
        envelope.serialize(&mut self.encoded);
        if let ChitchatMessage::Syn { .. } = &envelope.message {
            self.counters.digest_size(&self.node, self.encoded.len());
        }
        if self.encoded.len() > DATAGRAM_LIMIT {
            self.counters.oversized.fetch_add(1, Ordering::Relaxed);
            if self.logged.due(to) {
                error!(node = %self.node, peer = %to, bytes = self.encoded.len(), limit = DATAGRAM_LIMIT, "a gossip message is larger than one datagram and cannot be sent: peers will see this node as failed (see the README's \"Cluster size\")");
            }
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        let (sealed, plain) = match &self.protection.keyring {
            None => (false, true),
            Some(_) if self.protection.verify_incoming => (true, false),
            // Migrating: in kind to a peer heard from, both ways to one not heard from yet.
            Some(_) => match self.peer_kinds.get(&to) {
                Some(Kind::Plain) => (false, true),
                Some(Kind::Sealed) => (true, false),
                None => (true, true),
            },
        };
        let mut sent = 0;
        if sealed {
            let ring = self
                .protection
                .keyring
                .as_ref()
                .expect("sealed only with a keyring");
            seal::seal(&ring.primary(), &self.encoded, &mut self.sealed);
            sent += self.send_bytes(to, Which::Sealed).await?;
        }
        if plain {
            sent += self.send_bytes(to, Which::Plain).await?;
        }
        Ok(SendOutcome {
            num_bytes_sent: sent,
        })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let broken = self.counters.wake.notified();
            if self.counters.broken.load(Ordering::SeqCst) {
                anyhow::bail!("fatal gossip receive error: the socket was broken on purpose");
            }
            let received = tokio::select! {
                received = self.socket.recv_from(&mut self.received) => received,
                _ = broken => continue,
            };
            let (len, from) = match received {
                Ok(received) => received,
                Err(err) if is_transient(&err) => continue,
                Err(err) => return Err(err).context("fatal gossip receive error"),
            };
            if let Some(envelope) = self.accept(len, from) {
                match &envelope.message {
                    ChitchatMessage::SynAck { delta, .. } => {
                        // An empty delta encodes to a single byte: the peer had no news for us.
                        self.counters.contact.answered(delta.serialized_len() > 1);
                        self.counters.contact.both_ways(from);
                    }
                    ChitchatMessage::Ack { .. } => self.counters.contact.both_ways(from),
                    _ => {}
                }
                self.counters
                    .bytes_received
                    .fetch_add(len as u64, Ordering::Relaxed);
                self.counters
                    .messages_received
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(RecvOutcome {
                    from_addr: from,
                    envelope,
                    num_bytes_received: len,
                });
            }
        }
    }
}

/// Which of the encoded forms to send.
enum Which {
    Sealed,
    Plain,
}

impl GossipSocket {
    /// Sends the sealed or plain form of the message just encoded; 0 bytes on a transient error.
    async fn send_bytes(&mut self, to: SocketAddr, which: Which) -> anyhow::Result<usize> {
        let bytes = match which {
            Which::Sealed => &self.sealed,
            Which::Plain => &self.encoded,
        };
        let sent = match self.socket.send_to(bytes, to).await {
            Ok(sent) => sent,
            Err(err) if is_transient(&err) => return Ok(0),
            Err(err) => {
                return Err(err).with_context(|| format!("failed to send gossip to {to}"));
            }
        };
        self.counters
            .bytes_sent
            .fetch_add(sent as u64, Ordering::Relaxed);
        self.counters.messages_sent.fetch_add(1, Ordering::Relaxed);
        Ok(sent)
    }

    /// Opens (when keyed) and decodes one received datagram; `None` when it is dropped.
    fn accept(&mut self, len: usize, from: SocketAddr) -> Option<ChitchatEnvelope> {
        let datagram = &self.received[..len];
        let payload: &[u8] = match &self.protection.keyring {
            None => {
                if seal::is_sealed(datagram) {
                    return self.reject(Reject::Sealed, from, || "a sealed gossip datagram arrived at a node without a cluster key; dropped (give this node the cluster's key: --encrypt-key-file)".into());
                }
                datagram
            }
            Some(ring) => match seal::open(ring, datagram, &mut self.opened) {
                Opened::Sealed(_) => {
                    if !self.protection.verify_incoming {
                        remember(&mut self.peer_kinds, from, Kind::Sealed);
                    }
                    &self.opened
                }
                Opened::Plain if !self.protection.verify_incoming => {
                    remember(&mut self.peer_kinds, from, Kind::Plain);
                    datagram
                }
                Opened::Plain => {
                    return self.reject(Reject::Plaintext, from, || "a plain gossip datagram arrived and this node requires sealed ones; dropped (the peer has no cluster key, or is still migrating: --encrypt-verify-incoming=false accepts plain gossip while a cluster turns encryption on)".into());
                }
                Opened::Truncated => {
                    return self.reject(Reject::Truncated, from, || {
                        "a truncated sealed gossip datagram; dropped".into()
                    });
                }
                Opened::UnknownKey(id) => {
                    return self.reject(Reject::UnknownKey, from, || format!("a gossip datagram sealed with key {id}, which this node does not hold; dropped (this node's keyring or the peer's is out of date: install the cluster's current key with `herd keys install`, or start the node with it)"));
                }
                Opened::Forged(id) => {
                    return self.reject(Reject::Forged, from, || format!("a gossip datagram under key id {id} does not authenticate (tampered, or sealed with another key); dropped"));
                }
            },
        };
        let mut bytes = payload;
        match ChitchatEnvelope::deserialize(&mut bytes) {
            Ok(envelope) => Some(envelope),
            Err(err) => self.reject(Reject::Malformed, from, || {
                format!("a gossip datagram of {len} bytes is not a gossip message ({err}); dropped")
            }),
        }
    }

    /// Counts a dropped datagram and logs it, at most once per peer address per minute.
    fn reject(
        &mut self,
        reason: Reject,
        from: SocketAddr,
        why: impl FnOnce() -> String,
    ) -> Option<ChitchatEnvelope> {
        self.counters.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
        if self.logged.due(from) {
            warn!(node = %self.node, peer = %from, "{}", why());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_past_the_threshold_switch_compression_on_and_the_largest_is_kept() {
        let counters = Counters::default();
        let limit = DATAGRAM_LIMIT as u64;
        let below = (limit * COMPRESS_AT_PERCENT / 100) as usize;
        counters.digest_size("n", 100);
        counters.digest_size("n", below);
        let stats = counters.stats();
        assert_eq!(stats.largest_digest_bytes, below as u64);
        assert!(!stats.compressing, "at the threshold, not past it");
        counters.digest_size("n", below + 1);
        counters.digest_size("n", 200);
        let stats = counters.stats();
        assert!(stats.compressing);
        assert_eq!(stats.largest_digest_bytes, below as u64 + 1);
        assert_eq!(stats.datagram_limit_bytes, limit);
    }
}
