//! What a node has heard from its peers since it started: whether any peer answered one of its
//! gossip exchanges, and whether one answered with nothing this node lacked. Layers built on a
//! node use it to tell a fresh view of the cluster from the view of a node that just started
//! (the agent judges pushes and its stored config by it).
//!
//! The gossip transport records it as chitchat's answers arrive: an exchange this node starts is
//! its digest (SYN), the peer's digest and the news this node lacks (SYN-ACK), and this node's
//! news for the peer (ACK). A SYN-ACK whose news is empty means that when the peer answered, this
//! node held every version of every key the peer held: it has caught up with that peer.

use std::sync::atomic::{AtomicBool, Ordering};

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
}

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
