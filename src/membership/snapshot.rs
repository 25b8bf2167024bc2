//! A plain picture of the cluster taken from chitchat's state: the members that are live, ready and
//! not leaving (one incarnation per id, the newest), and the incarnations that announced a leave.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chitchat::{Chitchat, ChitchatId, NodeState};

use super::keys;
use crate::Member;

/// The cluster as one node sees it at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Live, ready, not leaving members by id, this node included: the newest incarnation of each.
    pub(crate) members: BTreeMap<String, Member>,
    /// Incarnations `(id, generation)` that announced a graceful leave, live or not.
    pub(crate) departed: BTreeSet<(String, u64)>,
}

impl Snapshot {
    /// Reads the live nodes and the leave announcements from chitchat.
    pub(crate) fn read(chitchat: &Chitchat) -> Snapshot {
        let live = chitchat
            .live_nodes()
            .filter_map(|id| chitchat.node_state(id).map(|state| (id, state)));
        Snapshot::from_states(live, chitchat.node_states())
    }

    /// Builds a snapshot from the live node states and all known node states.
    pub(crate) fn from_states<'a>(
        live: impl Iterator<Item = (&'a ChitchatId, &'a NodeState)>,
        all: &'a BTreeMap<ChitchatId, NodeState>,
    ) -> Snapshot {
        let mut members: BTreeMap<String, Member> = BTreeMap::new();
        for (id, state) in live {
            if !keys::is_ready(state) || keys::is_leaving(state) {
                continue;
            }
            let member = Member {
                id: id.node_id.to_string(),
                addr: id.gossip_advertise_addr,
                generation: id.generation_id,
                tags: keys::tags(state),
                rpc: keys::rpc_addr(state),
            };
            match members.get(member.id()) {
                Some(known) if known.generation >= member.generation => {}
                _ => {
                    members.insert(member.id.clone(), member);
                }
            }
        }
        let departed = all
            .iter()
            .filter(|(_, state)| keys::is_leaving(state))
            .map(|(id, _)| (id.node_id.to_string(), id.generation_id))
            .collect();
        Snapshot { members, departed }
    }

    /// Drops incarnations older than the newest one ever seen for their id, and records newer ones
    /// in `newest`. An old incarnation that is still gossiped about after its successor appeared
    /// must not come back as a member.
    pub(crate) fn retain_newest(&mut self, newest: &mut HashMap<String, u64>) {
        self.members.retain(|id, member| {
            let seen = newest.entry(id.clone()).or_insert(member.generation);
            if member.generation >= *seen {
                *seen = member.generation;
                true
            } else {
                false
            }
        });
    }

    /// The members, sorted by id.
    pub(crate) fn member_list(&self) -> Vec<Member> {
        self.members.values().cloned().collect()
    }

    /// Whether the snapshot holds a member other than `self_id`.
    pub(crate) fn has_peer(&self, self_id: &str) -> bool {
        self.members.keys().any(|id| id != self_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, generation: u64) -> Member {
        Member {
            id: id.into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            generation,
            tags: BTreeMap::new(),
            rpc: None,
        }
    }

    #[test]
    fn an_old_incarnation_never_returns_once_a_newer_one_was_seen() {
        let mut newest = HashMap::new();
        let mut first = Snapshot::default();
        first.members.insert("b".into(), member("b", 2));
        first.retain_newest(&mut newest);
        assert_eq!(first.members.len(), 1);

        let mut stale = Snapshot::default();
        stale.members.insert("b".into(), member("b", 1));
        stale.retain_newest(&mut newest);
        assert!(stale.members.is_empty());
        assert_eq!(newest["b"], 2);
    }
}
