//! Whether this agent's view of the cluster's config is fresh enough to act on: to judge a push
//! (which version comes next, whether `base_version` is stale) and to run the config stored in
//! its data dir. A node that just started knows only its disk; it is fresh once it has caught up
//! with one peer ([`PeerContact::caught_up`]: a peer answered a gossip exchange with nothing
//! this node lacked), or once it knows it is alone.
//!
//! The rule, as the plain function `judge`:
//!
//! - no seeds other than itself: **alone** at once (it founds the cluster, or waits to be found);
//! - caught up with a peer: **synced** (for good);
//! - otherwise it waits: for [`ALONE_AFTER`] from the start; if no peer answered by then, it is
//!   **alone** (none is reachable); if one answered, it waits until [`CATCH_UP_LIMIT`] from the
//!   start and at least [`ALONE_AFTER`] from the request, then is **behind**.
//!
//! A push waits here before the core judges it, and a behind node refuses it (503, retry). The
//! core waits here once, before it runs a stored config: synced, it runs the cluster's config
//! if that supersedes the stored one; alone or behind, it runs the stored one and follows
//! gossip from then on. The wait is a `SyncGate` held by the API side and the core; it
//! returns when the node stops too (its contact then stops changing and the bounds pass).

use std::time::Duration;

use tokio::time::Instant;

use crate::{Node, PeerContact};

/// A seeded node that no peer answered within this long from its start is alone.
pub const ALONE_AFTER: Duration = Duration::from_secs(2);
/// A node peers answered but that has not caught up with one within this long from its start
/// (and [`ALONE_AFTER`] from the request) is behind.
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(10);

/// What a node's view of the cluster is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum View {
    /// It caught up with a peer.
    Synced,
    /// It has no seeds, or none answered within [`ALONE_AFTER`].
    Alone,
    /// Peers answered, but it has not caught up with one.
    Behind,
}

impl View {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            View::Synced => "synced",
            View::Alone => "alone",
            View::Behind => "behind",
        }
    }
}

/// The view a node has at `now`, having heard `contact`, started at `started`, for a request
/// that arrived at `arrived`; `Err(at)`: not decided yet, judge again at `at` (or when the
/// contact changes).
pub(crate) fn judge(
    contact: PeerContact,
    now: Instant,
    started: Instant,
    arrived: Instant,
) -> Result<View, Instant> {
    if !contact.seeded {
        return Ok(View::Alone);
    }
    if contact.caught_up {
        return Ok(View::Synced);
    }
    let alone_at = started + ALONE_AFTER;
    if now < alone_at {
        return Err(alone_at);
    }
    if !contact.answered {
        return Ok(View::Alone);
    }
    let behind_at = (started + CATCH_UP_LIMIT).max(arrived + ALONE_AFTER);
    if now < behind_at {
        return Err(behind_at);
    }
    Ok(View::Behind)
}

/// Waits for a node's view to be decided; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct SyncGate {
    node: Node,
    started: Instant,
}

impl SyncGate {
    /// The gate of `node`, which started at `started`.
    pub(crate) fn new(node: Node, started: Instant) -> SyncGate {
        SyncGate { node, started }
    }

    /// Waits until the view is decided ([`judge`]); returns it and how long it waited.
    pub(crate) async fn wait(&self) -> (View, Duration) {
        let arrived = Instant::now();
        loop {
            let contact = self.node.peer_contact();
            match judge(contact, Instant::now(), self.started, arrived) {
                Ok(view) => return (view, arrived.elapsed()),
                Err(at) => {
                    self.node.peer_contact_changed(contact, at).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(seeded: bool, answered: bool, caught_up: bool) -> PeerContact {
        PeerContact {
            seeded,
            answered,
            caught_up,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_without_seeds_is_alone_at_once_and_one_caught_up_is_synced_at_once() {
        let t = Instant::now();
        assert_eq!(
            judge(contact(false, false, false), t, t, t),
            Ok(View::Alone)
        );
        assert_eq!(judge(contact(true, true, true), t, t, t), Ok(View::Synced));
    }

    #[tokio::test(start_paused = true)]
    async fn a_seeded_node_nobody_answers_is_alone_after_the_window() {
        let t = Instant::now();
        let silent = contact(true, false, false);
        assert_eq!(judge(silent, t, t, t), Err(t + ALONE_AFTER));
        let later = t + ALONE_AFTER;
        assert_eq!(judge(silent, later, t, t), Ok(View::Alone));
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_peers_answer_waits_to_catch_up_then_is_behind() {
        let t = Instant::now();
        let answered = contact(true, true, false);
        assert_eq!(judge(answered, t, t, t), Err(t + ALONE_AFTER));
        let at = t + ALONE_AFTER;
        assert_eq!(judge(answered, at, t, t), Err(t + CATCH_UP_LIMIT));
        assert_eq!(judge(answered, t + CATCH_UP_LIMIT, t, t), Ok(View::Behind));
        // Long after the start, a request still waits a window for the catch-up.
        let late = t + Duration::from_secs(3600);
        assert_eq!(judge(answered, late, t, late), Err(late + ALONE_AFTER));
        assert_eq!(
            judge(answered, late + ALONE_AFTER, t, late),
            Ok(View::Behind)
        );
    }

    struct Quiet;
    impl crate::ClusterMember for Quiet {}

    #[tokio::test]
    async fn the_gate_of_a_node_whose_seed_never_answers_opens_alone_after_the_window() {
        let node = Node::builder("lone")
            .listen("127.0.0.1:0".parse().unwrap())
            .seed("127.0.0.1:9")
            .start(Quiet)
            .await
            .unwrap();
        let gate = SyncGate::new(node.clone(), Instant::now());
        let (view, waited) = gate.wait().await;
        assert_eq!(view, View::Alone);
        assert!(waited >= ALONE_AFTER, "{waited:?}");
        node.shutdown().await.unwrap();
    }
}
