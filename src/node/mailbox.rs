//! A member's mailbox: what waits for its [`handle_info`](crate::ClusterMember::handle_info).
//!
//! Bounded by slots, not by the channel: a slot is taken when a message is sent, a timer is set
//! or a `call_later` starts, and given back when `handle_info` has been called with it (or the
//! timer was cancelled). So the number of sent-but-unhandled messages, pending timers and
//! unanswered later-calls together never exceeds the limit
//! ([`NodeBuilder::mailbox`](crate::NodeBuilder::mailbox)); beyond it the sender gets
//! [`Error::MailboxFull`] at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::member::{CallId, Info};
use crate::Error;

/// One item on its way to `handle_info`, holding its slot.
pub(crate) struct Letter {
    pub(crate) info: Info,
    _slot: OwnedSemaphorePermit,
}

/// A slot in the mailbox, taken before the message exists.
pub(crate) struct Slot(OwnedSemaphorePermit);

/// The sending side; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Mailbox {
    node: Arc<str>,
    tx: mpsc::UnboundedSender<Letter>,
    slots: Arc<Semaphore>,
    limit: usize,
    next_call: Arc<AtomicU64>,
}

impl Mailbox {
    /// A mailbox of `limit` slots, and its receiving end (the dispatcher's).
    pub(crate) fn new(node: Arc<str>, limit: usize) -> (Mailbox, mpsc::UnboundedReceiver<Letter>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mailbox = Mailbox {
            node,
            tx,
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            next_call: Arc::new(AtomicU64::new(1)),
        };
        (mailbox, rx)
    }

    /// Takes a slot, or says the mailbox is full.
    pub(crate) fn reserve(&self) -> Result<Slot, Error> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map(Slot)
            .map_err(|_| Error::MailboxFull {
                node: self.node.to_string(),
                limit: self.limit,
            })
    }

    /// Puts `info` in the mailbox in `slot`. After the node stopped it is dropped.
    pub(crate) fn post(&self, slot: Slot, info: Info) {
        let _ = self.tx.send(Letter {
            info,
            _slot: slot.0,
        });
    }

    /// A new call id.
    pub(crate) fn next_call_id(&self) -> CallId {
        CallId(self.next_call.fetch_add(1, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::Message;

    #[test]
    fn slots_come_back_when_a_letter_is_handled() {
        let (mailbox, mut rx) = Mailbox::new("a".into(), 2);
        let one = mailbox.reserve().unwrap();
        let _two = mailbox.reserve().unwrap();
        let err = mailbox.reserve().err().unwrap().to_string();
        assert!(err.contains("mailbox of a is full (2"), "{err}");
        mailbox.post(one, Info::Message(Message::new(1u8)));
        let letter = rx.try_recv().unwrap();
        assert!(mailbox.reserve().is_err());
        drop(letter);
        assert!(mailbox.reserve().is_ok());
    }

    #[test]
    fn call_ids_are_unique() {
        let (mailbox, _rx) = Mailbox::new("a".into(), 1);
        assert_ne!(mailbox.next_call_id(), mailbox.next_call_id());
    }
}
