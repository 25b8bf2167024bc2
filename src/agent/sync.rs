//! Config sync over gossip, as plain functions: how a config travels in node-state keys and which
//! config a node adopts. The core task does the I/O.
//!
//! Every agent publishes a head, `version:checksum:chunks`, for the config it holds. One agent per
//! version also publishes the encoded config itself, cut into chunks small enough for a gossip
//! datagram: the agent that accepted the push, or, when no live agent publishes that version any
//! more, the live holder with the lowest id. A new node assembles the chunks, checks the
//! checksum, and adopts the config if it supersedes the one it holds, so configs of any size
//! spread and nobody ever goes back to an older version. What a node accepts as an offer at all
//! (decoding, and the signer check of signed configs) is the `read` function the caller passes.

use std::collections::BTreeMap;

use crate::config::VersionedConfig;
use crate::membership::keys;
use crate::node::published::NodeKeys;

/// Bytes of encoded config per gossip key: a few chunks fit in one datagram.
pub(crate) const CHUNK_BYTES: usize = 16 * 1024;

/// What a node says about the config it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) version: u64,
    pub(crate) checksum: u32,
    pub(crate) chunks: usize,
}

impl Head {
    pub(crate) fn of(config: &VersionedConfig, chunks: usize) -> Head {
        Head {
            version: config.version,
            checksum: config.checksum,
            chunks,
        }
    }

    pub(crate) fn encode(&self) -> String {
        format!("{}:{}:{}", self.version, self.checksum, self.chunks)
    }

    pub(crate) fn parse(text: &str) -> Option<Head> {
        let mut parts = text.split(':');
        let head = Head {
            version: parts.next()?.parse().ok()?,
            checksum: parts.next()?.parse().ok()?,
            chunks: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(head)
    }

    /// Whether `other` names the same config.
    pub(crate) fn same_config(&self, other: &Head) -> bool {
        self.version == other.version && self.checksum == other.checksum
    }
}

/// Cuts `encoded` into chunks of at most [`CHUNK_BYTES`], on character boundaries.
pub(crate) fn split(encoded: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut rest = encoded;
    while !rest.is_empty() {
        let mut end = rest.len().min(CHUNK_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (chunk, tail) = rest.split_at(end);
        chunks.push(chunk.to_string());
        rest = tail;
    }
    chunks
}

/// The head a node publishes for holding `config`.
pub(crate) fn head_for(config: &VersionedConfig) -> Head {
    Head::of(config, split(&config.encode()).len())
}

/// The keys to set for publishing `config` in full: chunks first, head last.
pub(crate) fn full_keys(config: &VersionedConfig) -> Vec<(String, String)> {
    let chunks = split(&config.encode());
    let head = Head::of(config, chunks.len());
    let mut set: Vec<(String, String)> = chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| (keys::config_chunk_key(config.version, i), chunk))
        .collect();
    set.push((keys::CONFIG_HEAD.to_string(), head.encode()));
    set
}

/// The head a node publishes, if it has one that parses.
pub(crate) fn head_of(node: &NodeKeys) -> Option<Head> {
    node.keys
        .get(keys::CONFIG_HEAD)
        .and_then(|h| Head::parse(h))
}

/// The config a node says it holds, by its head: version and checksum.
pub(crate) fn config_id_of(node: &NodeKeys) -> Option<crate::config::ConfigId> {
    let head = head_of(node)?;
    Some(crate::config::ConfigId {
        version: head.version,
        checksum: head.checksum,
    })
}

/// The encoded config a node publishes in full, if all of its chunks are there.
pub(crate) fn assemble(node: &NodeKeys) -> Option<String> {
    let head = head_of(node)?;
    let mut text = String::new();
    for i in 0..head.chunks {
        text.push_str(node.keys.get(&keys::config_chunk_key(head.version, i))?);
    }
    Some(text)
}

/// Whether `node` publishes the whole of config `head`.
pub(crate) fn publishes(node: &NodeKeys, head: &Head) -> bool {
    head_of(node).is_some_and(|h| h.same_config(head) && h.chunks > 0)
        && (0..head.chunks).all(|i| {
            node.keys
                .contains_key(&keys::config_chunk_key(head.version, i))
        })
}

/// The config among those the nodes publish that supersedes `current` the most, if any.
/// Unassembled ones are skipped (they may be mid-flight), and so are those `read` turns down
/// (it decodes a node's assembled encoding, and may check it further).
pub(crate) fn newest_offer(
    current: Option<&VersionedConfig>,
    nodes: &[NodeKeys],
    mut read: impl FnMut(&NodeKeys, &str) -> Option<VersionedConfig>,
) -> Option<VersionedConfig> {
    let mut best: Option<VersionedConfig> = None;
    for node in nodes {
        let Some(head) = head_of(node) else { continue };
        let beats = |c: &VersionedConfig| {
            head.version > c.version || (head.version == c.version && head.checksum != c.checksum)
        };
        if current.is_some_and(|c| !beats(c)) || best.as_ref().is_some_and(|b| !beats(b)) {
            continue;
        }
        let Some(encoded) = assemble(node) else {
            continue;
        };
        let Some(offer) = read(node, &encoded) else {
            continue;
        };
        let wins = |c: &VersionedConfig| offer.supersedes(c);
        if current.is_none_or(wins) && best.as_ref().is_none_or(wins) {
            best = Some(offer);
        }
    }
    best
}

/// The highest config version any node publishes.
pub(crate) fn highest_version(nodes: &[NodeKeys]) -> u64 {
    nodes
        .iter()
        .filter_map(head_of)
        .map(|h| h.version)
        .max()
        .unwrap_or(0)
}

/// The highest config version among those `read` accepts: `held`, the configs nodes publish in
/// full and `read` returns, and the heads of nodes holding one of those. A head alone (say, of a
/// config no signer signed) does not count.
pub(crate) fn highest_admitted(
    held: Option<&VersionedConfig>,
    nodes: &[NodeKeys],
    mut read: impl FnMut(&NodeKeys, &str) -> Option<VersionedConfig>,
) -> u64 {
    let mut admitted: Vec<(u64, u32)> = held.map(|c| (c.version, c.checksum)).into_iter().collect();
    for node in nodes {
        if let Some(config) = assemble(node).and_then(|encoded| read(node, &encoded)) {
            admitted.push((config.version, config.checksum));
        }
    }
    let heads = nodes
        .iter()
        .filter_map(head_of)
        .map(|h| (h.version, h.checksum));
    let counted = heads.filter(|head| admitted.contains(head));
    counted
        .chain(admitted.iter().copied())
        .map(|(version, _)| version)
        .max()
        .unwrap_or(0)
}

/// Whether node `me` should publish config `held` in full: it keeps doing so unless a live node
/// with a lower id does too; it starts when no live node does and it is the live holder of that
/// config with the lowest id.
pub(crate) fn should_publish(
    me: &str,
    held: &Head,
    publishing_now: bool,
    nodes: &[NodeKeys],
) -> bool {
    let others = || nodes.iter().filter(|n| n.live && n.id != me);
    if publishing_now {
        return !others().any(|n| n.id.as_str() < me && publishes(n, held));
    }
    let anyone = others().any(|n| publishes(n, held));
    let lower_holder =
        others().any(|n| n.id.as_str() < me && head_of(n).is_some_and(|h| h.same_config(held)));
    !anyone && !lower_holder
}

/// The chunk keys of old versions a node should delete after adopting `version`.
pub(crate) fn stale_chunk_keys(own: &BTreeMap<String, String>, keep: Option<u64>) -> Vec<String> {
    own.keys()
        .filter(|key| key.as_str() != keys::CONFIG_HEAD)
        .filter(|key| match keep {
            Some(version) => !key.starts_with(&format!("{}.{version}.", keys::CONFIG_PREFIX)),
            None => true,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(version: u64, text: &str) -> VersionedConfig {
        VersionedConfig::new(version, text, "a", 0).unwrap()
    }

    fn node(id: &str, live: bool, keys: Vec<(String, String)>) -> NodeKeys {
        NodeKeys {
            id: id.into(),
            generation: 1,
            live,
            keys: keys.into_iter().collect(),
        }
    }

    fn decode(_: &NodeKeys, encoded: &str) -> Option<VersionedConfig> {
        VersionedConfig::decode(encoded).ok()
    }

    fn head_only(config: &VersionedConfig) -> Vec<(String, String)> {
        vec![(keys::CONFIG_HEAD.to_string(), Head::of(config, 1).encode())]
    }

    const ONE: &str = "[[worker]]\nname = \"w\"\ncommand = \"sleep\"\nargs = [\"60\"]\n";

    #[test]
    fn heads_round_trip_and_garbage_is_ignored() {
        let head = Head {
            version: 7,
            checksum: 42,
            chunks: 3,
        };
        assert_eq!(Head::parse(&head.encode()), Some(head));
        for bad in ["", "7", "7:x:1", "1:2:3:4"] {
            assert_eq!(Head::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_large_config_is_split_into_chunks_that_reassemble() {
        let big: String = (0..300)
            .map(|i| format!("[[worker]]\nname = \"w{i}\"\ncommand = \"python3\"\nargs = [\"workers/w{i}.py\", \"--flag\", \"{}\"]\n", "x".repeat(250)))
            .collect();
        let config = config(3, &big);
        let set = full_keys(&config);
        assert!(set.len() > 3, "100 KB must be several chunks");
        assert!(set.iter().all(|(_, v)| v.len() <= CHUNK_BYTES));
        assert_eq!(
            set.last().unwrap().0,
            keys::CONFIG_HEAD,
            "the head is set last"
        );
        let offer = newest_offer(None, &[node("b", true, set)], decode).unwrap();
        assert_eq!(offer.version, 3);
        assert_eq!(offer.text, big);
    }

    #[test]
    fn only_a_newer_complete_config_is_offered() {
        let v1 = config(1, ONE);
        let v2 = config(2, ONE);
        let mut partial = full_keys(&v2);
        partial.remove(0);
        let nodes = [node("b", true, partial), node("c", true, head_only(&v1))];
        assert!(
            newest_offer(Some(&v1), &nodes, decode).is_none(),
            "a head without its chunks is not enough"
        );
        let nodes = [node("b", true, full_keys(&v1))];
        assert!(
            newest_offer(Some(&v2), &nodes, decode).is_none(),
            "never go back to an older version"
        );
        let nodes = [node("b", false, full_keys(&v2))];
        assert_eq!(
            newest_offer(Some(&v1), &nodes, decode).unwrap().version,
            2,
            "a dead node's copy still counts"
        );
    }

    #[test]
    fn an_offer_the_reader_turns_down_is_passed_over_for_the_next_best() {
        let v2 = config(2, ONE);
        let v3 = config(3, ONE);
        let nodes = [
            node("b", true, full_keys(&v3)),
            node("c", true, full_keys(&v2)),
        ];
        let not_b = |n: &NodeKeys, e: &str| (n.id != "b").then(|| decode(n, e)).flatten();
        assert_eq!(newest_offer(None, &nodes, not_b).unwrap().version, 2);
    }

    #[test]
    fn the_highest_admitted_version_ignores_heads_of_configs_turned_down() {
        let v2 = config(2, ONE);
        let v9 = config(9, ONE);
        let nodes = [
            node("b", true, full_keys(&v9)),
            node("c", true, head_only(&v9)),
            node("d", true, full_keys(&v2)),
            node("e", true, head_only(&v2)),
        ];
        let not_b = |n: &NodeKeys, e: &str| (n.id != "b").then(|| decode(n, e)).flatten();
        assert_eq!(highest_admitted(None, &nodes, not_b), 2);
        assert_eq!(highest_admitted(None, &nodes, decode), 9);
        let v5 = config(5, ONE);
        assert_eq!(highest_admitted(Some(&v5), &nodes, not_b), 5);
        let lone_head = [node("c", true, head_only(&v9))];
        assert_eq!(highest_admitted(None, &lone_head, decode), 0);
    }

    #[test]
    fn one_live_holder_publishes_each_version() {
        let v = config(4, ONE);
        let head = Head::of(&v, full_keys(&v).len() - 1);
        let origin = node("m", true, full_keys(&v));
        let holder = |id: &str| node(id, true, head_only(&v));
        // The origin publishes; lower-id holders do not join in.
        assert!(!should_publish(
            "a",
            &head,
            false,
            &[origin.clone(), holder("a")]
        ));
        assert!(should_publish(
            "m",
            &head,
            true,
            &[origin.clone(), holder("a")]
        ));
        // The origin is gone: the lowest live holder takes over, and only it.
        let dead_origin = node("m", false, full_keys(&v));
        let nodes = [dead_origin, holder("a"), holder("b")];
        assert!(should_publish("a", &head, false, &nodes));
        assert!(!should_publish("b", &head, false, &nodes));
        // Two publishers: the higher id stops.
        let nodes = [
            node("a", true, full_keys(&v)),
            node("b", true, full_keys(&v)),
        ];
        assert!(!should_publish("b", &head, true, &nodes));
        assert!(should_publish("a", &head, true, &nodes));
    }

    #[test]
    fn stale_chunks_are_those_of_other_versions() {
        let own: BTreeMap<String, String> = [
            (keys::CONFIG_HEAD.to_string(), "2:1:1".to_string()),
            (keys::config_chunk_key(1, 0), "old".to_string()),
            (keys::config_chunk_key(2, 0), "new".to_string()),
        ]
        .into();
        assert_eq!(
            stale_chunk_keys(&own, Some(2)),
            vec![keys::config_chunk_key(1, 0)]
        );
        assert_eq!(stale_chunk_keys(&own, None).len(), 2);
    }
}
