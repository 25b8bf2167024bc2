//! What a node heard from its peers since it started ([`PeerContact`]), for layers that must
//! know whether their view of the cluster is fresh: the agent waits on it before it judges a
//! push or runs the config on its disk.

use tokio::time::Instant;

use super::Node;
use crate::membership::PeerContact;

impl Node {
    /// What this node has heard from its peers since it started: whether it has seeds other than
    /// itself, whether a peer answered one of its gossip exchanges, and whether one answered with
    /// nothing this node lacked (it had caught up with that peer).
    pub fn peer_contact(&self) -> PeerContact {
        self.inner.counters.contact.get()
    }

    /// Waits until what this node heard from its peers differs from `seen`, or `deadline`
    /// passes; returns what it heard by then.
    pub async fn peer_contact_changed(&self, seen: PeerContact, deadline: Instant) -> PeerContact {
        self.inner
            .counters
            .contact
            .changed_from(seen, deadline)
            .await
    }
}
