//! Which incarnation of each id is the member, decided across refreshes.
//!
//! A node restarted on a host whose clock went back gets a lower generation than its dead
//! predecessor, so "the highest generation wins" would hide it behind the predecessor. Instead,
//! each incarnation is ranked by when this node first saw it live, then by generation:
//!
//! - the **rank** of an incarnation is (the refresh in which this node first saw it live, ready and
//!   not leaving; its generation): an incarnation seen later outranks one seen earlier, whatever
//!   their generations, and of two first seen in the same refresh the higher generation ranks
//!   higher;
//! - the **member** for an id is its highest-ranked incarnation that is live, ready and not
//!   leaving now, and not retired;
//! - an incarnation that was this node's member for its id and was then replaced by another
//!   incarnation (at once or after a gap in which the id had no member) is **retired**: it never
//!   becomes the member again, so gossip echoing an old incarnation cannot bring it back. An
//!   incarnation that vanished and returns with no other in between (a false failure) is not
//!   retired, and is the member again.
//!
//! Memory is bounded: an id's ranks and retirements are forgotten once chitchat holds no state
//! for that incarnation, and at most [`MAX_REMEMBERED`] incarnations per id are remembered (the
//! lowest-ranked is forgotten first, never the id's last member).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::Member;

/// The most incarnations of one id whose rank and retirement are remembered.
pub(crate) const MAX_REMEMBERED: usize = 64;

/// The ranks, retirements and last member of every id chitchat holds state for.
#[derive(Debug, Default)]
pub(crate) struct Incarnations {
    /// How many refreshes were made, this one included.
    refresh: u64,
    ids: HashMap<String, History>,
}

#[derive(Debug, Default)]
struct History {
    /// Generation → the refresh in which it was first seen live.
    first_seen: BTreeMap<u64, u64>,
    /// Generations that were the member and were replaced by another.
    retired: BTreeSet<u64>,
    /// The generation that was this node's member for the id last (it may be absent now).
    last: Option<u64>,
}

impl History {
    fn rank(&self, generation: u64) -> (u64, u64) {
        (
            self.first_seen.get(&generation).copied().unwrap_or(0),
            generation,
        )
    }

    /// Forgets what chitchat no longer holds, then the lowest-ranked beyond the cap.
    fn prune(&mut self, held: impl Fn(u64) -> bool) {
        self.first_seen.retain(|generation, _| held(*generation));
        self.retired.retain(|generation| held(*generation));
        self.last = self.last.filter(|generation| held(*generation));
        while self.first_seen.len() > MAX_REMEMBERED {
            let lowest = self
                .first_seen
                .keys()
                .copied()
                .filter(|generation| Some(*generation) != self.last)
                .min_by_key(|generation| self.rank(*generation));
            let Some(lowest) = lowest else { break };
            self.first_seen.remove(&lowest);
            self.retired.remove(&lowest);
        }
    }

    fn is_empty(&self) -> bool {
        self.first_seen.is_empty() && self.retired.is_empty() && self.last.is_none()
    }
}

impl Incarnations {
    /// Takes one refresh: `candidates` are the incarnations that are live, ready and not leaving
    /// now; `held(id, generation)` says whether chitchat still holds state for an incarnation,
    /// live or not. Returns the member of each id that has one.
    pub(crate) fn choose(
        &mut self,
        candidates: impl IntoIterator<Item = Member>,
        held: impl Fn(&str, u64) -> bool,
    ) -> BTreeMap<String, Member> {
        self.refresh += 1;
        let mut by_id: BTreeMap<String, Vec<Member>> = BTreeMap::new();
        for member in candidates {
            by_id.entry(member.id.clone()).or_default().push(member);
        }
        let mut members = BTreeMap::new();
        for (id, incarnations) in by_id {
            let history = self.ids.entry(id.clone()).or_default();
            for member in &incarnations {
                history
                    .first_seen
                    .entry(member.generation)
                    .or_insert(self.refresh);
            }
            let chosen = incarnations
                .into_iter()
                .filter(|member| !history.retired.contains(&member.generation))
                .max_by_key(|member| history.rank(member.generation));
            let Some(chosen) = chosen else { continue };
            if let Some(last) = history.last.filter(|last| *last != chosen.generation) {
                history.retired.insert(last);
            }
            history.last = Some(chosen.generation);
            members.insert(id, chosen);
        }
        self.ids.retain(|id, history| {
            history.prune(|generation| held(id, generation));
            !history.is_empty()
        });
        members
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::diff::diff;
    use crate::membership::snapshot::Snapshot;
    use crate::{LeaveReason, MembershipEvent};

    fn member(id: &str, generation: u64) -> Member {
        Member {
            id: id.into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            generation,
            tags: BTreeMap::new(),
            rpc: None,
        }
    }

    /// What node "a" reports over refreshes in which `steps[i]` are b's live incarnations, and
    /// chitchat holds every incarnation named in any step.
    fn events(steps: &[&[u64]]) -> Vec<MembershipEvent> {
        let all: BTreeSet<u64> = steps.iter().flat_map(|s| s.iter().copied()).collect();
        let mut incarnations = Incarnations::default();
        let mut prev = Snapshot::default();
        let mut events = Vec::new();
        for step in steps {
            let candidates = step.iter().map(|g| member("b", *g));
            let next = Snapshot {
                members: incarnations.choose(candidates, |_, g| all.contains(&g)),
                departed: BTreeSet::new(),
                claims: Default::default(),
                unjudged: Default::default(),
            };
            events.extend(diff("a", &prev, &next));
            prev = next;
        }
        events
    }

    fn joined(generation: u64) -> MembershipEvent {
        MembershipEvent::Joined(member("b", generation))
    }

    fn left(generation: u64, reason: LeaveReason) -> MembershipEvent {
        MembershipEvent::Left(member("b", generation), reason)
    }

    #[test]
    fn a_false_failure_and_return_is_joined_again_once_per_return() {
        assert_eq!(
            events(&[&[5], &[], &[5], &[5], &[], &[], &[5], &[5]]),
            vec![
                joined(5),
                left(5, LeaveReason::Failed),
                joined(5),
                left(5, LeaveReason::Failed),
                joined(5),
            ]
        );
    }

    #[test]
    fn a_restart_with_a_higher_generation_is_left_restarted_then_joined() {
        assert_eq!(
            events(&[&[1], &[1, 2], &[2], &[2]]),
            vec![joined(1), left(1, LeaveReason::Restarted), joined(2)]
        );
    }

    #[test]
    fn a_restart_with_a_lower_generation_is_left_restarted_then_joined() {
        // The clock went back: the new incarnation has the lower generation but was seen later.
        assert_eq!(
            events(&[&[9], &[9, 3], &[9, 3], &[3], &[3]]),
            vec![joined(9), left(9, LeaveReason::Restarted), joined(3)]
        );
    }

    #[test]
    fn a_late_joiner_takes_the_higher_generation_then_the_other_when_it_dies() {
        // Both are live in the first refresh; the higher one is a dead predecessor that is not
        // declared dead yet.
        assert_eq!(
            events(&[&[9, 3], &[9, 3], &[3], &[3]]),
            vec![joined(9), left(9, LeaveReason::Restarted), joined(3)]
        );
    }

    #[test]
    fn a_retired_incarnation_never_returns() {
        // 3 replaces 9 (seen later), then crashes while 9 is still counted live: only 3's
        // failure is reported, and 9 stays retired even when gossip shows it live again.
        assert_eq!(
            events(&[&[9], &[9, 3], &[9], &[9], &[], &[9]]),
            vec![
                joined(9),
                left(9, LeaveReason::Restarted),
                joined(3),
                left(3, LeaveReason::Failed),
            ]
        );
    }

    #[test]
    fn an_incarnation_replaced_after_a_gap_is_retired_too() {
        // 5 fails, 2 starts (lower clock), then an echo makes 5 look live: 2 stays the member.
        assert_eq!(
            events(&[&[5], &[], &[2], &[2, 5], &[5, 2]]),
            vec![joined(5), left(5, LeaveReason::Failed), joined(2)]
        );
    }

    #[test]
    fn memory_is_pruned_to_what_chitchat_holds() {
        let mut incarnations = Incarnations::default();
        incarnations.choose([member("b", 1)], |_, _| true);
        incarnations.choose([member("b", 2)], |_, _| true);
        assert!(incarnations.ids["b"].retired.contains(&1));
        // chitchat forgot 1: so does the tracker.
        incarnations.choose([member("b", 2)], |_, g| g == 2);
        assert_eq!(
            incarnations.ids["b"].first_seen.keys().collect::<Vec<_>>(),
            [&2]
        );
        assert!(incarnations.ids["b"].retired.is_empty());
        // chitchat forgot the id: so does the tracker.
        incarnations.choose([], |_, _| false);
        assert!(incarnations.ids.is_empty());
    }

    #[test]
    fn memory_per_id_is_capped_and_keeps_the_last_member() {
        let mut incarnations = Incarnations::default();
        for generation in 1..=(MAX_REMEMBERED as u64 * 2) {
            incarnations.choose([member("b", generation)], |_, _| true);
        }
        let history = &incarnations.ids["b"];
        assert_eq!(history.first_seen.len(), MAX_REMEMBERED);
        assert!(history.retired.len() < MAX_REMEMBERED);
        assert_eq!(history.last, Some(MAX_REMEMBERED as u64 * 2));
        assert!(history
            .first_seen
            .contains_key(&(MAX_REMEMBERED as u64 * 2)));
    }
}
