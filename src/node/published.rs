//! Keys a node publishes in its gossip state beyond membership's own, for the layers built on a
//! node (the agent's config and worker status). Crate-internal: the key names live in
//! [`crate::membership::keys`].

use std::collections::BTreeMap;
use std::sync::Arc;

use chitchat::ListenerHandle;
use tokio::sync::Notify;

use super::Node;
use crate::membership::keys;
use crate::Error;

/// The keys under one prefix that one node publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeKeys {
    pub(crate) id: String,
    pub(crate) generation: u64,
    pub(crate) live: bool,
    pub(crate) keys: BTreeMap<String, String>,
}

/// Wakes when a key under its prefix changes on any node (this one included).
pub(crate) struct KeyWatch {
    notify: Arc<Notify>,
    _listener: ListenerHandle,
}

impl KeyWatch {
    /// Waits for the next change (or returns at once if one happened since the last call).
    pub(crate) async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl Node {
    /// Sets `set` and deletes `delete` in this node's state. Peers get the change with the next
    /// gossip rounds, or at once after [`push`](Node::push).
    pub(crate) async fn publish(
        &self,
        set: Vec<(String, String)>,
        delete: Vec<String>,
    ) -> Result<(), Error> {
        self.running()?;
        {
            let mut chitchat = self.inner.chitchat.lock().await;
            let state = chitchat.self_node_state();
            for key in delete {
                if state.get(&key).is_some() {
                    state.delete(&key);
                }
            }
            for (key, value) in set {
                if state.get(&key) != Some(value.as_str()) {
                    state.set(key, value);
                }
            }
        }
        Ok(())
    }

    /// Starts a gossip exchange with every live peer now, so that this node's latest changes
    /// reach them within a round trip instead of a few gossip rounds.
    pub(crate) async fn push(&self) {
        self.inner.push_to_peers().await;
    }

    /// The keys under `prefix` of every node this one knows of: live ready members (the
    /// incarnation that is the member, by the membership's rule: not always the highest
    /// generation), and with `include_dead`, also nodes the failure detector declared dead but
    /// whose state is still kept (the highest generation of an id that has no member). This node
    /// is included.
    pub(crate) async fn keys_with_prefix(&self, prefix: &str, include_dead: bool) -> Vec<NodeKeys> {
        let members: std::collections::HashMap<String, u64> = self
            .inner
            .members
            .borrow()
            .iter()
            .map(|m| (m.id().to_string(), m.generation()))
            .collect();
        let chitchat = self.inner.chitchat.lock().await;
        let live: std::collections::HashSet<_> = chitchat.live_nodes().cloned().collect();
        let mut newest: BTreeMap<String, NodeKeys> = BTreeMap::new();
        for (id, state) in chitchat.node_states() {
            let is_live = live.contains(id) && keys::is_ready(state) && !keys::is_leaving(state);
            if !is_live && !include_dead {
                continue;
            }
            let entry = NodeKeys {
                id: id.node_id.to_string(),
                generation: id.generation_id,
                live: is_live,
                keys: state
                    .iter_prefix(prefix)
                    .map(|(key, value)| (key.to_string(), value.value.clone()))
                    .collect(),
            };
            let wins = match (members.get(&entry.id), newest.get(&entry.id)) {
                (Some(member), _) => *member == entry.generation,
                (None, Some(known)) => entry.generation > known.generation,
                (None, None) => true,
            };
            if wins {
                newest.insert(entry.id.clone(), entry);
            }
        }
        newest.into_values().collect()
    }

    /// A watch that wakes when any node's key under `prefix` changes.
    pub(crate) async fn watch_prefix(&self, prefix: &str) -> KeyWatch {
        let notify = Arc::new(Notify::new());
        let chitchat = self.inner.chitchat.lock().await;
        let waker = notify.clone();
        let listener = chitchat.subscribe_event(prefix, move |_| waker.notify_one());
        KeyWatch {
            notify,
            _listener: listener,
        }
    }
}
