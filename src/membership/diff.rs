//! The pure heart of membership: `diff(previous, next) -> events`.
//!
//! Everything the ordering and exactly-once promises of [`MembershipEvent`] rest on is decided
//! here, without sockets or clocks, so it is tested on its own.

use super::snapshot::Snapshot;
use crate::{LeaveReason, MembershipEvent};

/// The events that turn `prev` into `next`, as seen by node `self_id` (never reported about).
///
/// Events come sorted by member id; for one id, a `Left` comes before the `Joined` of its
/// successor. A member missing from `next` left gracefully if its incarnation announced a leave,
/// and failed otherwise. A member whose generation differs in `next` (higher or lower: a host's
/// clock may go back) was replaced by another incarnation: `Left(old, Restarted)`, or
/// `Left(old, Graceful)` if the old one announced its leave, then `Joined(new)`.
pub(crate) fn diff(self_id: &str, prev: &Snapshot, next: &Snapshot) -> Vec<MembershipEvent> {
    let mut events = Vec::new();
    let ids = prev
        .members
        .keys()
        .chain(next.members.keys())
        .filter(|id| id.as_str() != self_id)
        .collect::<std::collections::BTreeSet<_>>();
    for id in ids {
        let announced_leave = |member: &crate::Member| {
            next.departed
                .contains(&(member.id.clone(), member.generation))
        };
        match (prev.members.get(id), next.members.get(id)) {
            (None, Some(new)) => events.push(MembershipEvent::Joined(new.clone())),
            (Some(old), None) => {
                let reason = if announced_leave(old) {
                    LeaveReason::Graceful
                } else {
                    LeaveReason::Failed
                };
                events.push(MembershipEvent::Left(old.clone(), reason));
            }
            (Some(old), Some(new)) if new.generation != old.generation => {
                let reason = if announced_leave(old) {
                    LeaveReason::Graceful
                } else {
                    LeaveReason::Restarted
                };
                events.push(MembershipEvent::Left(old.clone(), reason));
                events.push(MembershipEvent::Joined(new.clone()));
            }
            (Some(old), Some(new)) if new.generation == old.generation && new.tags != old.tags => {
                events.push(MembershipEvent::Updated(new.clone()));
            }
            _ => {}
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::Member;

    fn member(id: &str, generation: u64, tags: &[(&str, &str)]) -> Member {
        Member {
            id: id.into(),
            addr: "127.0.0.1:7000".parse().unwrap(),
            generation,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            rpc: None,
        }
    }

    fn snapshot(members: &[Member], departed: &[(&str, u64)]) -> Snapshot {
        Snapshot {
            members: members.iter().map(|m| (m.id.clone(), m.clone())).collect(),
            departed: departed
                .iter()
                .map(|(id, g)| (id.to_string(), *g))
                .collect(),
            claims: Default::default(),
            unjudged: Default::default(),
        }
    }

    #[test]
    fn a_new_member_is_joined_and_self_is_never_reported() {
        let prev = snapshot(&[member("a", 1, &[])], &[]);
        let next = snapshot(&[member("a", 1, &[("x", "1")]), member("b", 1, &[])], &[]);
        assert_eq!(
            diff("a", &prev, &next),
            vec![MembershipEvent::Joined(member("b", 1, &[]))]
        );
    }

    #[test]
    fn an_unchanged_snapshot_gives_no_events() {
        let s = snapshot(&[member("a", 1, &[]), member("b", 1, &[("g", "x")])], &[]);
        assert!(diff("a", &s, &s.clone()).is_empty());
    }

    #[test]
    fn a_vanished_member_failed_unless_it_announced_its_leave() {
        let prev = snapshot(
            &[
                member("a", 1, &[]),
                member("b", 1, &[]),
                member("c", 1, &[]),
            ],
            &[],
        );
        let next = snapshot(&[member("a", 1, &[])], &[("c", 1)]);
        assert_eq!(
            diff("a", &prev, &next),
            vec![
                MembershipEvent::Left(member("b", 1, &[]), LeaveReason::Failed),
                MembershipEvent::Left(member("c", 1, &[]), LeaveReason::Graceful),
            ]
        );
    }

    #[test]
    fn a_leave_announced_by_an_older_incarnation_does_not_make_a_failure_graceful() {
        let prev = snapshot(&[member("b", 2, &[])], &[]);
        let next = snapshot(&[], &[("b", 1)]);
        assert_eq!(
            diff("a", &prev, &next),
            vec![MembershipEvent::Left(
                member("b", 2, &[]),
                LeaveReason::Failed
            )]
        );
    }

    #[test]
    fn another_generation_higher_or_lower_is_left_restarted_then_joined() {
        // Lower: a restart on a host whose clock went back.
        for (old, new) in [(1, 2), (9, 3)] {
            let prev = snapshot(&[member("b", old, &[])], &[]);
            let next = snapshot(&[member("b", new, &[])], &[]);
            assert_eq!(
                diff("a", &prev, &next),
                vec![
                    MembershipEvent::Left(member("b", old, &[]), LeaveReason::Restarted),
                    MembershipEvent::Joined(member("b", new, &[])),
                ]
            );
        }
    }

    #[test]
    fn a_graceful_leave_followed_by_a_new_generation_stays_graceful() {
        let prev = snapshot(&[member("b", 1, &[])], &[]);
        let next = snapshot(&[member("b", 2, &[])], &[("b", 1)]);
        assert_eq!(
            diff("a", &prev, &next)[0],
            MembershipEvent::Left(member("b", 1, &[]), LeaveReason::Graceful)
        );
        let lower = snapshot(&[member("b", 0, &[])], &[("b", 1)]);
        assert_eq!(
            diff("a", &prev, &lower)[0],
            MembershipEvent::Left(member("b", 1, &[]), LeaveReason::Graceful)
        );
    }

    #[test]
    fn changed_tags_are_an_update_with_the_new_tags() {
        let prev = snapshot(&[member("b", 1, &[("load", "0.1")])], &[]);
        let next = snapshot(&[member("b", 1, &[("load", "0.3")])], &[]);
        assert_eq!(
            diff("a", &prev, &next),
            vec![MembershipEvent::Updated(member("b", 1, &[("load", "0.3")]))]
        );
    }

    #[test]
    fn applying_the_events_of_a_sequence_of_snapshots_reports_each_change_once() {
        // b joins, updates, leaves gracefully; c joins and fails; the same snapshots twice in a
        // row never repeat an event.
        let steps = [
            snapshot(&[member("a", 1, &[])], &[]),
            snapshot(&[member("a", 1, &[]), member("b", 1, &[])], &[]),
            snapshot(&[member("a", 1, &[]), member("b", 1, &[])], &[]),
            snapshot(
                &[
                    member("a", 1, &[]),
                    member("b", 1, &[("t", "1")]),
                    member("c", 1, &[]),
                ],
                &[],
            ),
            snapshot(&[member("a", 1, &[]), member("c", 1, &[])], &[("b", 1)]),
            snapshot(&[member("a", 1, &[])], &[("b", 1)]),
            snapshot(&[member("a", 1, &[])], &[("b", 1)]),
        ];
        let events: Vec<_> = steps
            .windows(2)
            .flat_map(|w| diff("a", &w[0], &w[1]))
            .collect();
        assert_eq!(
            events,
            vec![
                MembershipEvent::Joined(member("b", 1, &[])),
                MembershipEvent::Updated(member("b", 1, &[("t", "1")])),
                MembershipEvent::Joined(member("c", 1, &[])),
                MembershipEvent::Left(member("b", 1, &[("t", "1")]), LeaveReason::Graceful),
                MembershipEvent::Left(member("c", 1, &[]), LeaveReason::Failed),
            ]
        );
    }
}
