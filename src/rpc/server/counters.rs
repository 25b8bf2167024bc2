//! What the RPC server counts: frames and connections it refused or closed, by cause. The node
//! shares one [`ServerCounters`] between its server and its client; `/metrics` reads it.

use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Herd requests refused because [`MAX_SYSTEM_REQUESTS`](super::MAX_SYSTEM_REQUESTS) were running.
    pub(crate) system_busy: AtomicU64,
    /// Replies over the frame limit, sent as an error reply instead.
    pub(crate) oversized_replies: AtomicU64,
    /// Frames not sent because a connection's writer queue was full (replies here, requests in
    /// the client).
    pub(crate) overloaded: AtomicU64,
    /// Requests dropped because their deadline had passed (on arrival, or before the member
    /// started them).
    pub(crate) expired: AtomicU64,
    /// Connections refused at the handshake, by reason ([`REFUSED_REASONS`]).
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
    /// Counts a connection refused for `reason`, one of [`REFUSED_REASONS`].
    pub(super) fn refused(&self, reason: &str) {
        if let Some(at) = REFUSED_REASONS.iter().position(|r| *r == reason) {
            self.refused[at].fetch_add(1, Ordering::Relaxed);
        }
    }
}
