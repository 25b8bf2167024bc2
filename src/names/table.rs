//! The pure heart of global names: the claims gossip carries, turned into one owner per name.
//!
//! A claim is a key `name.<name>` in the claimant's node state with the value `<ticket>`,
//! `<ticket> q` (a quorum claim) or `<ticket> q h` (a quorum claim whose node holds the name);
//! `-` is a withdrawn claim. The owner of a name is the claimant whose claim ranks first: the
//! lowest ticket, then the lowest node id. Every node that holds the same claims computes the same
//! owner, so a heal ends with one winner everywhere, and a waiting claim becomes the owner the
//! moment the claims ranked above it are gone, with no election.
//!
//! Quorum names add three rules, evaluated on this node's clock:
//! - a node that does not see a majority of the expected members resolves no quorum name;
//! - the holder keeps it: while a live claimant marks its claim held, the first such is the
//!   owner, whatever ranks above it, so a claim seen only after a heal never takes the name from
//!   the holder before the holder has given it up (it ranks first once the holder withdraws);
//! - a claimant that vanished without a graceful leave keeps its rank for a lease after it
//!   vanished (a *ghost*): while a ghost ranks first, or marked its claim held, the name has no
//!   owner, so the next claimant takes over only after the old owner, cut off from the majority,
//!   must have given it up.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::Member;

/// The value of a withdrawn claim. Deleting a key would not wake peers' key listeners.
pub(crate) const WITHDRAWN: &str = "-";

/// One claim on a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    /// Lower ranks first.
    pub(crate) ticket: u64,
    /// Held only with a majority of the expected members.
    pub(crate) quorum: bool,
    /// A quorum claim whose node holds the name (always false without quorum).
    pub(crate) held: bool,
}

impl Claim {
    /// A claim that does not hold the name.
    pub(crate) fn new(ticket: u64, quorum: bool) -> Claim {
        Claim {
            ticket,
            quorum,
            held: false,
        }
    }

    /// Reads a claim's gossip value; `None` for a withdrawn or unreadable one.
    pub(crate) fn parse(value: &str) -> Option<Claim> {
        let (ticket, quorum, held) = match value.split_once(' ') {
            Some((ticket, "q")) => (ticket, true, false),
            Some((ticket, "q h")) => (ticket, true, true),
            Some(_) => return None,
            None => (value, false, false),
        };
        let ticket = ticket.parse().ok()?;
        Some(Claim {
            ticket,
            quorum,
            held,
        })
    }

    /// The claim's gossip value.
    pub(crate) fn encode(&self) -> String {
        match (self.quorum, self.held) {
            (true, true) => format!("{} q h", self.ticket),
            (true, false) => format!("{} q", self.ticket),
            (false, _) => self.ticket.to_string(),
        }
    }
}

/// What one node knows of one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The owner, with its claim; `None` while no claimant may hold it (a quorum name on a node
    /// without a majority, or a ghost ranked first).
    pub(crate) owner: Option<(Member, Claim)>,
    /// The claimant ranked first, live or ghost: who a refused registration is told holds it.
    pub(crate) first: Member,
    /// The highest ticket of any claim seen on the name: a new claim's ticket is above it.
    pub(crate) highest: u64,
    /// Whether any claim on the name is a quorum claim: then the quorum rules apply to it.
    pub(crate) quorum: bool,
}

/// The names as one node sees them at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Table {
    /// Every name with at least one claim, live or ghost.
    pub(crate) names: BTreeMap<String, Entry>,
    /// This node's own claims as the snapshot read them from gossip.
    pub(crate) mine: BTreeMap<String, Claim>,
    /// Whether this node sees a majority of the expected members (true without a quorum
    /// setting).
    pub(crate) quorum: bool,
}

impl Table {
    /// The owner of `name`, if it has one.
    pub(crate) fn owner(&self, name: &str) -> Option<&Member> {
        self.names
            .get(name)
            .and_then(|entry| entry.owner.as_ref().map(|(member, _)| member))
    }
}

/// A claimant that vanished without a graceful leave, remembered for the lease.
#[derive(Clone, Debug)]
struct Ghost {
    member: Member,
    claims: Vec<(String, Claim)>,
    until: Instant,
}

/// One claim ranked for a name: its rank `(ticket, id)`, the claimant, the claim, and whether the
/// claimant is live (false: a ghost, or a claimant not yet judged).
type Ranked<'a> = ((u64, &'a str), &'a Member, Claim, bool);

/// The claims of incarnations that are not members, by `(id, generation)`, with the claimant.
pub(crate) type Unjudged = BTreeMap<(String, u64), (Member, Vec<(String, Claim)>)>;

/// Computes a [`Table`] from each snapshot, remembering ghosts between snapshots.
#[derive(Debug, Default)]
pub(crate) struct Resolver {
    /// Quorum claims of the members in the previous snapshot, by member id.
    prev: BTreeMap<String, (Member, Vec<(String, Claim)>)>,
    ghosts: BTreeMap<String, Ghost>,
    /// Incarnations `(id, generation)` this node has seen as members, while chitchat holds their
    /// state: one that stops being a member was judged (failed), it is no newcomer.
    judged: BTreeSet<(String, u64)>,
    /// Claimants not yet judged, with when this node first saw their claims.
    newcomers: BTreeMap<(String, u64), Instant>,
    /// The settling time of the last input.
    settle: Duration,
    /// The time of the last input.
    last: Option<Instant>,
}

/// What the resolver reads from one snapshot.
pub(crate) struct Input<'a> {
    pub(crate) self_id: &'a str,
    /// Live, ready, not leaving members by id.
    pub(crate) members: &'a BTreeMap<String, Member>,
    /// Their claims, by member id.
    pub(crate) claims: &'a BTreeMap<String, Vec<(String, Claim)>>,
    /// Incarnations `(id, generation)` that announced a graceful leave.
    pub(crate) departed: &'a BTreeSet<(String, u64)>,
    /// Whether this node sees a majority of the expected members.
    pub(crate) quorum: bool,
    /// How long a vanished quorum claimant keeps its rank.
    pub(crate) lease: Duration,
    /// The claims of incarnations that are neither members nor leaving, by `(id, generation)`
    /// (an id's member may be another incarnation).
    pub(crate) unjudged: &'a Unjudged,
    /// How long a claimant first seen not yet judged keeps its rank: time for this node to see it
    /// live (two heartbeats) if it is.
    pub(crate) settle: Duration,
    pub(crate) now: Instant,
}

impl Resolver {
    /// The table for one snapshot.
    pub(crate) fn resolve(&mut self, input: Input<'_>) -> Table {
        self.last = Some(input.now);
        self.track_ghosts(&input);
        self.track_newcomers(&input);
        let mut ranked: BTreeMap<&str, Vec<Ranked<'_>>> = BTreeMap::new();
        for (id, claims) in input.claims {
            let Some(member) = input.members.get(id) else {
                continue;
            };
            for (name, claim) in claims {
                ranked.entry(name.as_str()).or_default().push((
                    (claim.ticket, id.as_str()),
                    member,
                    *claim,
                    true,
                ));
            }
        }
        for (id, ghost) in &self.ghosts {
            for (name, claim) in &ghost.claims {
                ranked.entry(name.as_str()).or_default().push((
                    (claim.ticket, id.as_str()),
                    &ghost.member,
                    *claim,
                    false,
                ));
            }
        }
        for (key, (member, claims)) in input.unjudged {
            if input.members.contains_key(&key.0) || !self.settling(key, input.now) {
                continue;
            }
            for (name, claim) in claims {
                ranked.entry(name.as_str()).or_default().push((
                    (claim.ticket, member.id.as_str()),
                    member,
                    *claim,
                    false,
                ));
            }
        }
        let mut table = Table {
            names: BTreeMap::new(),
            mine: input
                .claims
                .get(input.self_id)
                .filter(|_| input.members.contains_key(input.self_id))
                .map(|claims| claims.iter().cloned().collect())
                .unwrap_or_default(),
            quorum: input.quorum,
        };
        for (name, mut claims) in ranked {
            claims.sort_by(|a, b| a.0.cmp(&b.0));
            let quorum = claims.iter().any(|(_, _, claim, _)| claim.quorum);
            let highest = claims
                .iter()
                .map(|(_, _, claim, _)| claim.ticket)
                .max()
                .unwrap_or(0);
            let owner = if quorum {
                // The live holder keeps it. Otherwise a ghost that ranks first, or that held the
                // name, holds it in limbo; other ghosts do not matter.
                let holder = claims
                    .iter()
                    .find(|(_, _, claim, live)| *live && claim.held);
                let limbo = claims.first().is_some_and(|(_, _, _, live)| !live)
                    || claims.iter().any(|(_, _, claim, live)| !live && claim.held);
                holder
                    .or_else(|| claims.first().filter(|_| !limbo))
                    .filter(|_| input.quorum)
                    .map(|(_, member, claim, _)| ((*member).clone(), *claim))
            } else {
                // A claimant not yet judged that ranks first holds it in limbo: this node may
                // not see the owner live yet.
                claims
                    .first()
                    .filter(|(_, _, _, live)| *live)
                    .map(|(_, member, claim, _)| ((*member).clone(), *claim))
            };
            let first = match (&owner, quorum) {
                (Some((member, _)), _) => member.clone(),
                _ => claims[0].1.clone(),
            };
            table.names.insert(
                name.to_string(),
                Entry {
                    owner,
                    first,
                    highest,
                    quorum,
                },
            );
        }
        table
    }

    /// Turns quorum claimants that vanished without a graceful leave into ghosts, drops ghosts
    /// that are back, replaced or past their lease, and remembers this snapshot's claimants.
    fn track_ghosts(&mut self, input: &Input<'_>) {
        let now = input.now;
        for (id, (member, claims)) in std::mem::take(&mut self.prev) {
            if input.members.contains_key(&id) || id == input.self_id {
                continue;
            }
            if input
                .departed
                .contains(&(member.id.clone(), member.generation))
            {
                continue;
            }
            self.ghosts.insert(
                id,
                Ghost {
                    member,
                    claims,
                    until: now + input.lease,
                },
            );
        }
        self.ghosts.retain(|id, ghost| {
            ghost.until > now
                && !input.members.contains_key(id)
                && !input
                    .departed
                    .contains(&(ghost.member.id.clone(), ghost.member.generation))
        });
        for (id, claims) in input.claims {
            let Some(member) = input.members.get(id) else {
                continue;
            };
            let quorum: Vec<_> = claims
                .iter()
                .filter(|(_, claim)| claim.quorum)
                .cloned()
                .collect();
            if !quorum.is_empty() {
                self.prev.insert(id.clone(), (member.clone(), quorum));
            }
        }
    }

    /// Remembers which incarnations were members, and since when each claimant not yet judged
    /// has been seen; forgets both once chitchat no longer holds the incarnation. A newcomer
    /// keeps its rank until it becomes a member or `settle` passes.
    fn track_newcomers(&mut self, input: &Input<'_>) {
        for member in input.members.values() {
            self.judged.insert((member.id.clone(), member.generation));
        }
        self.judged.retain(|key| {
            input.unjudged.contains_key(key)
                || input
                    .members
                    .get(&key.0)
                    .is_some_and(|member| member.generation == key.1)
        });
        let judged = &self.judged;
        self.newcomers
            .retain(|key, _| input.unjudged.contains_key(key) && !judged.contains(key));
        for key in input.unjudged.keys() {
            if !self.judged.contains(key) {
                self.newcomers.entry(key.clone()).or_insert(input.now);
            }
        }
        self.settle = input.settle;
    }

    /// Whether the claims of unjudged incarnation `key` still keep their rank.
    fn settling(&self, key: &(String, u64), now: Instant) -> bool {
        self.newcomers
            .get(key)
            .is_some_and(|seen| now < *seen + self.settle)
    }

    /// When the next ghost's lease or newcomer's settling time ends, if any: the table changes
    /// then.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        let ghosts = self.ghosts.values().map(|ghost| ghost.until);
        let newcomers = self.newcomers.values().map(|seen| *seen + self.settle);
        ghosts
            .chain(newcomers)
            .filter(|at| self.last.is_none_or(|last| *at > last))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str) -> Member {
        Member {
            id: id.into(),
            addr: "127.0.0.1:7000".parse().unwrap(),
            generation: 1,
            tags: BTreeMap::new(),
            rpc: None,
        }
    }

    struct World {
        members: BTreeMap<String, Member>,
        claims: BTreeMap<String, Vec<(String, Claim)>>,
        departed: BTreeSet<(String, u64)>,
        unjudged: Unjudged,
        quorum: bool,
    }

    impl World {
        fn new(ids: &[&str]) -> World {
            World {
                members: ids.iter().map(|id| (id.to_string(), member(id))).collect(),
                claims: BTreeMap::new(),
                departed: BTreeSet::new(),
                unjudged: BTreeMap::new(),
                quorum: true,
            }
        }

        fn claim(&mut self, id: &str, name: &str, ticket: u64, quorum: bool) {
            self.claims
                .entry(id.into())
                .or_default()
                .push((name.into(), Claim::new(ticket, quorum)));
        }

        /// A quorum claim whose node marked it held.
        fn held(&mut self, id: &str, name: &str, ticket: u64) {
            let claim = Claim {
                held: true,
                ..Claim::new(ticket, true)
            };
            self.claims
                .entry(id.into())
                .or_default()
                .push((name.into(), claim));
        }

        fn gone(&mut self, id: &str) {
            self.members.remove(id);
            self.claims.remove(id);
        }

        /// `id`'s state is known with its claims, but it is not a member: not yet seen live, or
        /// dead.
        fn unjudged(&mut self, id: &str) {
            self.members.remove(id);
            let claims = self.claims.remove(id).unwrap_or_default();
            self.unjudged
                .insert((id.to_string(), 1), (member(id), claims));
        }

        /// `id` is judged live: a member with the claims it had.
        fn live(&mut self, id: &str) {
            if let Some((member, claims)) = self.unjudged.remove(&(id.to_string(), 1)) {
                self.members.insert(id.to_string(), member);
                self.claims.insert(id.to_string(), claims);
            }
        }

        fn resolve(&self, resolver: &mut Resolver, now: Instant) -> Table {
            resolver.resolve(Input {
                self_id: "a",
                members: &self.members,
                claims: &self.claims,
                departed: &self.departed,
                quorum: self.quorum,
                lease: Duration::from_secs(3),
                unjudged: &self.unjudged,
                settle: Duration::from_secs(2),
                now,
            })
        }
    }

    fn owner(table: &Table, name: &str) -> Option<String> {
        table.owner(name).map(|m| m.id.clone())
    }

    #[test]
    fn claims_round_trip_and_bad_values_are_no_claim() {
        let held = Claim {
            held: true,
            ..Claim::new(5, true)
        };
        for claim in [Claim::new(17, false), Claim::new(u64::MAX, true), held] {
            assert_eq!(Claim::parse(&claim.encode()), Some(claim));
        }
        assert_eq!(held.encode(), "5 q h");
        for bad in [
            WITHDRAWN, "", "x", "12 z", "12 q q", "12 h", "12 q h h", "-3", "12q",
        ] {
            assert_eq!(Claim::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_lowest_ticket_owns_then_the_lowest_id_and_every_order_agrees() {
        let now = Instant::now();
        let mut world = World::new(&["a", "b", "c"]);
        world.claim("c", "x", 5, false);
        world.claim("b", "x", 5, false);
        world.claim("a", "x", 9, false);
        world.claim("c", "y", 1, false);
        let table = world.resolve(&mut Resolver::default(), now);
        assert_eq!(owner(&table, "x").as_deref(), Some("b"));
        assert_eq!(owner(&table, "y").as_deref(), Some("c"));
        assert_eq!(table.names["x"].highest, 9);
        assert_eq!(table.mine.get("x").map(|c| c.ticket), Some(9));
        // Withdraw the owner: the next by rank takes over at once.
        world.claims.get_mut("b").unwrap().clear();
        let table = world.resolve(&mut Resolver::default(), now);
        assert_eq!(owner(&table, "x").as_deref(), Some("c"));
    }

    #[test]
    fn a_failed_owner_of_a_plain_name_is_replaced_at_once() {
        let now = Instant::now();
        let mut resolver = Resolver::default();
        let mut world = World::new(&["a", "b"]);
        world.claim("b", "x", 1, false);
        world.claim("a", "x", 2, false);
        assert_eq!(
            owner(&world.resolve(&mut resolver, now), "x").as_deref(),
            Some("b")
        );
        world.gone("b");
        assert_eq!(
            owner(&world.resolve(&mut resolver, now), "x").as_deref(),
            Some("a")
        );
    }

    #[test]
    fn a_failed_quorum_owner_holds_the_name_in_limbo_for_the_lease_and_a_leave_does_not() {
        let start = Instant::now();
        let mut resolver = Resolver::default();
        let mut world = World::new(&["a", "b", "c"]);
        world.claim("b", "x", 1, true);
        world.claim("a", "x", 2, true);
        world.claim("c", "y", 1, true);
        world.claim("a", "y", 2, true);
        assert_eq!(
            owner(&world.resolve(&mut resolver, start), "x").as_deref(),
            Some("b")
        );
        world.gone("b");
        world.departed.insert(("c".into(), 1));
        world.gone("c");
        let table = world.resolve(&mut resolver, start);
        assert_eq!(owner(&table, "x"), None, "b failed: in limbo");
        assert_eq!(table.names["x"].first.id, "b");
        assert_eq!(
            owner(&table, "y").as_deref(),
            Some("a"),
            "c left gracefully"
        );
        assert_eq!(resolver.next_expiry(), Some(start + Duration::from_secs(3)));
        let later = start + Duration::from_millis(2999);
        assert_eq!(owner(&world.resolve(&mut resolver, later), "x"), None);
        let after = start + Duration::from_secs(3);
        assert_eq!(
            owner(&world.resolve(&mut resolver, after), "x").as_deref(),
            Some("a")
        );
        assert_eq!(resolver.next_expiry(), None);
    }

    #[test]
    fn the_holder_of_a_quorum_name_keeps_it_from_an_older_claim_seen_after_a_heal() {
        let now = Instant::now();
        let mut resolver = Resolver::default();
        let mut world = World::new(&["a", "b", "c"]);
        // b took the name while a was cut off; a queued again with an older ticket meanwhile.
        world.claim("a", "x", 1, true);
        world.held("b", "x", 2);
        let table = world.resolve(&mut resolver, now);
        assert_eq!(
            owner(&table, "x").as_deref(),
            Some("b"),
            "the holder keeps it"
        );
        assert_eq!(table.names["x"].first.id, "b");
        // b gives it up: a ranks first and owns it.
        world.claims.get_mut("b").unwrap().clear();
        assert_eq!(
            owner(&world.resolve(&mut resolver, now), "x").as_deref(),
            Some("a")
        );
    }

    #[test]
    fn a_vanished_holder_holds_a_quorum_name_in_limbo_even_when_it_ranked_below() {
        let start = Instant::now();
        let mut resolver = Resolver::default();
        let mut world = World::new(&["a", "b", "c"]);
        world.claim("a", "x", 1, true);
        world.held("b", "x", 2);
        world.resolve(&mut resolver, start);
        world.gone("b");
        assert_eq!(owner(&world.resolve(&mut resolver, start), "x"), None);
        let after = start + Duration::from_secs(3);
        assert_eq!(
            owner(&world.resolve(&mut resolver, after), "x").as_deref(),
            Some("a")
        );
    }

    #[test]
    fn a_ghost_that_returns_is_the_owner_again_at_once() {
        let start = Instant::now();
        let mut resolver = Resolver::default();
        let mut world = World::new(&["a", "b"]);
        world.claim("b", "x", 1, true);
        world.claim("a", "x", 2, true);
        world.resolve(&mut resolver, start);
        let b = world.claims["b"].clone();
        world.gone("b");
        assert_eq!(owner(&world.resolve(&mut resolver, start), "x"), None);
        world.members.insert("b".into(), member("b"));
        world.claims.insert("b".into(), b);
        assert_eq!(
            owner(&world.resolve(&mut resolver, start), "x").as_deref(),
            Some("b")
        );
        assert_eq!(resolver.next_expiry(), None);
    }

    #[test]
    fn without_a_majority_no_quorum_name_resolves_but_plain_names_do() {
        let now = Instant::now();
        let mut world = World::new(&["a", "b"]);
        world.claim("a", "x", 1, true);
        world.claim("b", "p", 1, false);
        world.quorum = false;
        let table = world.resolve(&mut Resolver::default(), now);
        assert_eq!(owner(&table, "x"), None);
        assert_eq!(table.names["x"].first.id, "a");
        assert_eq!(owner(&table, "p").as_deref(), Some("b"));
        assert!(!table.quorum);
    }

    #[test]
    fn a_leaving_node_holds_none_of_its_own_claims() {
        let now = Instant::now();
        let mut world = World::new(&["b"]);
        world.claim("a", "x", 1, false);
        world.claim("b", "x", 2, false);
        let table = world.resolve(&mut Resolver::default(), now);
        assert_eq!(owner(&table, "x").as_deref(), Some("b"));
        assert!(table.mine.is_empty());
    }

    #[test]
    fn a_claimant_not_yet_seen_live_keeps_its_rank_while_it_settles_and_a_dead_one_not_after() {
        // A node that just started holds b's state (b owns the name) but does not see b live
        // yet: the name has no owner here, so a's later claim does not take it.
        let mut world = World::new(&["a", "b"]);
        world.claim("b", "job", 10, false);
        world.claim("a", "job", 20, false);
        world.unjudged("b");
        let mut resolver = Resolver::default();
        let t0 = Instant::now();
        let table = world.resolve(&mut resolver, t0);
        assert_eq!(owner(&table, "job"), None);
        assert_eq!(&*table.names["job"].first.id, "b");
        assert_eq!(resolver.next_expiry(), Some(t0 + Duration::from_secs(2)));
        // b turns out live: it owns the name.
        world.live("b");
        let table = world.resolve(&mut resolver, t0 + Duration::from_millis(300));
        assert_eq!(owner(&table, "job").as_deref(), Some("b"));
        // Once judged, b failing hands the name on at once: it is no newcomer.
        world.unjudged("b");
        let table = world.resolve(&mut resolver, t0 + Duration::from_millis(400));
        assert_eq!(owner(&table, "job").as_deref(), Some("a"));

        // A claimant never seen live (a dead node's state, still gossiped) holds the name in
        // limbo only while it settles.
        let mut world = World::new(&["a", "c"]);
        world.claim("c", "cron", 10, false);
        world.claim("a", "cron", 20, false);
        world.unjudged("c");
        let mut resolver = Resolver::default();
        let table = world.resolve(&mut resolver, t0);
        assert_eq!(owner(&table, "cron"), None);
        let table = world.resolve(&mut resolver, t0 + Duration::from_millis(1_999));
        assert_eq!(owner(&table, "cron"), None);
        let table = world.resolve(&mut resolver, t0 + Duration::from_secs(2));
        assert_eq!(owner(&table, "cron").as_deref(), Some("a"));
        assert_eq!(resolver.next_expiry(), None);
        // A newcomer that ranks below the owner changes nothing.
        let mut world = World::new(&["a", "d"]);
        world.claim("a", "lock", 10, false);
        world.claim("d", "lock", 20, false);
        world.unjudged("d");
        let table = world.resolve(&mut Resolver::default(), t0);
        assert_eq!(owner(&table, "lock").as_deref(), Some("a"));
    }

    #[test]
    fn an_earlier_incarnation_of_a_member_is_no_newcomer_once_the_member_fails() {
        // f ran as generation 1 and held the name, died, and came back as generation 2; g holds
        // the name now. When generation 2 fails too, generation 1's stale claim (still gossiped,
        // older than g's) must not hold the name in limbo: this node judged it long ago.
        let mut world = World::new(&["a", "f", "g"]);
        world.claim("g", "job", 20, false);
        let old = Member {
            generation: 1,
            ..member("f")
        };
        let new = Member {
            generation: 2,
            ..member("f")
        };
        world.members.insert("f".into(), old.clone());
        world
            .claims
            .insert("f".into(), vec![("job".into(), Claim::new(10, false))]);
        let mut resolver = Resolver::default();
        let t0 = Instant::now();
        assert_eq!(
            owner(&world.resolve(&mut resolver, t0), "job").as_deref(),
            Some("f")
        );
        // Generation 1 fails; generation 2 is a member (with no claim on the name).
        world.members.insert("f".into(), new.clone());
        let stale = world.claims.remove("f").unwrap();
        world
            .unjudged
            .insert(("f".into(), 1), (old.clone(), stale.clone()));
        let table = world.resolve(&mut resolver, t0 + Duration::from_millis(100));
        assert_eq!(owner(&table, "job").as_deref(), Some("g"));
        // Generation 2 fails: both incarnations are unjudged states now.
        world.members.remove("f");
        world.unjudged.insert(("f".into(), 2), (new, Vec::new()));
        let table = world.resolve(&mut resolver, t0 + Duration::from_millis(200));
        assert_eq!(owner(&table, "job").as_deref(), Some("g"));
    }
}
