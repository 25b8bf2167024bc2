//! A plain picture of the cluster taken from chitchat's state: the members that are live, ready and
//! not leaving (one incarnation per id, chosen by [`Incarnations`]), and the incarnations that
//! announced a leave.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chitchat::{Chitchat, ChitchatId, NodeState};

use super::incarnations::Incarnations;
use super::keys;
use crate::names::table::{Claim, Unjudged};
use crate::Member;

/// The cluster as one node sees it at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Live, ready, not leaving members by id, this node included: for each id, the incarnation
    /// [`Incarnations::choose`] picked (the one first seen live last, not retired; of several first
    /// seen together, the highest generation). For this node's own id, always this incarnation.
    pub(crate) members: BTreeMap<String, Member>,
    /// Incarnations `(id, generation)` that announced a graceful leave, live or not.
    pub(crate) departed: BTreeSet<(String, u64)>,
    /// The name claims of each member (by id) that holds any: see [`crate::names`].
    pub(crate) claims: BTreeMap<String, Vec<(String, Claim)>>,
    /// The name claims of incarnations whose state this node holds but that are neither members
    /// nor leaving: a peer this node has not yet judged live (a node that just started sees every
    /// peer so until its second heartbeat), one that is dead, or an id's other incarnation. The
    /// resolver keeps the claim of one whose id has no member from being passed over while it is
    /// new ([`crate::names`]).
    pub(crate) unjudged: Unjudged,
}

impl Snapshot {
    /// Reads the live nodes and the leave announcements from chitchat; `incarnations` picks the
    /// member of each id and remembers what it needs for the next refresh.
    pub(crate) fn read(chitchat: &Chitchat, incarnations: &mut Incarnations) -> Snapshot {
        let live = chitchat
            .live_nodes()
            .filter_map(|id| chitchat.node_state(id).map(|state| (id, state)));
        Snapshot::from_states(
            chitchat.self_chitchat_id(),
            live,
            chitchat.node_states(),
            incarnations,
        )
    }

    /// Builds a snapshot from this node's id, the live node states and all known node states.
    pub(crate) fn from_states<'a>(
        me: &ChitchatId,
        live: impl Iterator<Item = (&'a ChitchatId, &'a NodeState)>,
        all: &'a BTreeMap<ChitchatId, NodeState>,
        incarnations: &mut Incarnations,
    ) -> Snapshot {
        let candidates = live
            .filter(|(_, state)| keys::is_ready(state) && !keys::is_leaving(state))
            // This node's predecessors may still be gossiped about: it is itself, not them.
            .filter(|(id, _)| id.node_id != me.node_id || id.generation_id == me.generation_id)
            .map(|(id, state)| Member {
                id: id.node_id.to_string(),
                addr: id.gossip_advertise_addr,
                generation: id.generation_id,
                tags: keys::tags(state),
                rpc: keys::rpc_addr(state),
            });
        let held: HashSet<(&str, u64)> = all
            .keys()
            .map(|id| (&*id.node_id, id.generation_id))
            .collect();
        let members = incarnations.choose(candidates, |id, generation| {
            held.contains(&(id, generation))
        });
        let departed = all
            .iter()
            .filter(|(_, state)| keys::is_leaving(state))
            .map(|(id, _)| (id.node_id.to_string(), id.generation_id))
            .collect();
        let claims = members
            .values()
            .filter_map(|member| {
                let id = ChitchatId::new(member.id.clone(), member.generation, member.addr);
                let claims = keys::name_claims(all.get(&id)?);
                (!claims.is_empty()).then(|| (member.id.clone(), claims))
            })
            .collect();
        let unjudged = all
            .iter()
            .filter(|(id, state)| {
                id.node_id != me.node_id
                    && members
                        .get(&*id.node_id)
                        .is_none_or(|member| member.generation != id.generation_id)
                    && !keys::is_leaving(state)
            })
            .filter_map(|(id, state)| {
                let claims = keys::name_claims(state);
                let member = Member {
                    id: id.node_id.to_string(),
                    addr: id.gossip_advertise_addr,
                    generation: id.generation_id,
                    tags: keys::tags(state),
                    rpc: keys::rpc_addr(state),
                };
                (!claims.is_empty())
                    .then(|| ((id.node_id.to_string(), id.generation_id), (member, claims)))
            })
            .collect();
        Snapshot {
            members,
            departed,
            claims,
            unjudged,
        }
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
