//! What a node has heard from its peers since it started: whether any peer answered one of its
//! gossip exchanges, and whether one answered with nothing this node lacked. Layers built on a
//! node use it to tell a fresh view of the cluster from the view of a node that just started
//! (the agent judges pushes and its stored config by it).
//!
//! The gossip transport records it as chitchat's answers arrive: an exchange this node starts is
//! its digest (SYN), the peer's digest and the news this node lacks (SYN-ACK), and this node's
//! news for the peer (ACK). A SYN-ACK whose news is empty means that when the peer answered, this
//! node held every version of every key the peer held: it has caught up with that peer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// What a node has heard from its peers since it started; see [`crate::Node::peer_contact`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerContact {
    /// The node was given seeds other than its own address: it expects to find a cluster.
    pub seeded: bool,
    /// A peer answered one of this node's gossip exchanges.
    pub answered: bool,
    /// A peer answered one of them with nothing this node lacked: this node held everything that
    /// peer knew when it answered. Once true, it stays true.
    pub caught_up: bool,
}

/// The shared record the transport writes and the node reads.
#[derive(Debug, Default)]
pub(crate) struct Contact {
    seeded: AtomicBool,
    answered: AtomicBool,
    caught_up: AtomicBool,
    changed: Notify,
    /// When each peer (by the address its datagrams come from) last completed an exchange with
    /// this node both ways: it answered this node's digest (SYN-ACK), or answered this node's
    /// answer (ACK). What a quorum name's owner counts its majority by.
    both_ways: std::sync::Mutex<HashMap<SocketAddr, Instant>>,
}

/// Above this many peers remembered, those not heard from for [`FORGET_AFTER`] are forgotten.
const MAX_PEERS: usize = 4096;
/// How long a silent peer's last contact is kept once [`MAX_PEERS`] is reached.
const FORGET_AFTER: Duration = Duration::from_secs(600);

impl Contact {
    pub(crate) fn set_seeded(&self, seeded: bool) {
        self.seeded.store(seeded, Ordering::SeqCst);
    }

    /// Records a peer's answer to an exchange this node started; `news` is whether it carried
    /// anything this node lacked.
    pub(crate) fn answered(&self, news: bool) {
        let first = !self.answered.swap(true, Ordering::SeqCst);
        let caught_up = !news && !self.caught_up.swap(true, Ordering::SeqCst);
        if first || caught_up {
            self.changed.notify_waiters();
        }
    }

    /// Records that `peer` completed an exchange with this node both ways just now.
    pub(crate) fn both_ways(&self, peer: SocketAddr) {
        let now = Instant::now();
        let mut peers = self.both_ways.lock().expect("contact lock");
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            peers.retain(|_, at| now.duration_since(*at) < FORGET_AFTER);
        }
        peers.insert(peer, now);
    }

    /// Which of `peers` completed an exchange with this node both ways since `since`.
    pub(crate) fn heard_both_ways_since<'a>(
        &self,
        peers: impl Iterator<Item = &'a SocketAddr>,
        since: Instant,
    ) -> usize {
        let heard = self.both_ways.lock().expect("contact lock");
        peers
            .filter(|peer| heard.get(peer).is_some_and(|at| *at >= since))
            .count()
    }

    pub(crate) fn get(&self) -> PeerContact {
        PeerContact {
            seeded: self.seeded.load(Ordering::SeqCst),
            answered: self.answered.load(Ordering::SeqCst),
            caught_up: self.caught_up.load(Ordering::SeqCst),
        }
    }

    /// Waits until what was heard differs from `seen`, or `deadline` passes; returns what was
    /// heard by then.
    pub(crate) async fn changed_from(&self, seen: PeerContact, deadline: Instant) -> PeerContact {
        loop {
            let changed = self.changed.notified();
            let now = self.get();
            if now != seen || Instant::now() >= deadline {
                return now;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.get();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn an_answer_with_news_is_contact_and_an_empty_one_is_caught_up_for_good() {
        let contact = Contact::default();
        assert_eq!(contact.get(), PeerContact::default());
        contact.answered(true);
        let after_news = contact.get();
        assert!(after_news.answered && !after_news.caught_up);
        contact.answered(false);
        assert!(contact.get().caught_up);
        contact.answered(true);
        assert!(contact.get().caught_up, "caught up stays caught up");
    }

    #[tokio::test(start_paused = true)]
    async fn two_way_contact_is_counted_per_peer_since_a_moment() {
        let contact = Contact::default();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let start = Instant::now();
        contact.both_ways(a);
        tokio::time::advance(Duration::from_secs(2)).await;
        contact.both_ways(b);
        assert_eq!(contact.heard_both_ways_since([a, b].iter(), start), 2);
        let recent = Instant::now() - Duration::from_secs(1);
        assert_eq!(contact.heard_both_ways_since([a, b].iter(), recent), 1);
        assert_eq!(contact.heard_both_ways_since([a].iter(), recent), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_wakes_on_the_change_or_at_its_deadline() {
        let contact = Arc::new(Contact::default());
        let seen = contact.get();
        let deadline = Instant::now() + Duration::from_secs(2);
        assert_eq!(contact.changed_from(seen, deadline).await, seen);
        assert!(Instant::now() >= deadline);

        let writer = contact.clone();
        let waiting = tokio::spawn(async move {
            contact
                .changed_from(seen, Instant::now() + Duration::from_secs(60))
                .await
        });
        tokio::task::yield_now().await;
        writer.answered(false);
        let heard = waiting.await.unwrap();
        assert!(heard.answered && heard.caught_up);
    }
}
