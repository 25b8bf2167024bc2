//! Every node-state key herd publishes in gossip, with typed accessors. No other file spells a key.
//!
//! Keys are short because each one travels in deltas to every peer.

use std::collections::BTreeMap;

use chitchat::NodeState;

use crate::names::table::Claim;

/// Set last among a node's initial keys: once a peer sees it, it has every initial key too
/// (deltas carry a node's keys in version order), so the node is reported with its full tags.
pub(crate) const READY: &str = "herd.ready";

/// Set when a node leaves gracefully. Peers report the incarnation as `Left(Graceful)`.
pub(crate) const LEAVING: &str = "herd.leaving";

/// Prefix of user tags: tag `group=media` is the key `tag.group` with the value `media`.
pub(crate) const TAG_PREFIX: &str = "tag.";

/// The node's RPC address (`ip:port`, TCP), for member-to-member messages.
pub(crate) const RPC: &str = "herd.rpc";

/// Prefix of every key of the cluster config a node holds (see [`CONFIG_HEAD`]).
pub(crate) const CONFIG_PREFIX: &str = "herd.config";

/// The cluster config a node holds: `version:checksum:chunks`. Every agent publishes it; one
/// agent per version also publishes the config's text in chunks ([`config_chunk_key`]), set
/// before the head so a peer that sees the head has the chunks too.
pub(crate) const CONFIG_HEAD: &str = "herd.config";

/// The key of chunk `index` of config `version`'s encoded text.
pub(crate) fn config_chunk_key(version: u64, index: usize) -> String {
    format!("{CONFIG_PREFIX}.{version}.{index:04}")
}

/// Set in an agent's initial keys: the node runs workers, so placement counts it.
pub(crate) const AGENT: &str = "herd.agent";

/// How far a node's workers are with the config it holds: `version:checksum:state`, the state
/// being `running` (every worker this node should run for it runs, or ended or stays stopped as
/// its restart type or an operator says), `starting` or `failed` (one could not start, or the
/// supervisor gave up on it). Published by its agent with its workers' status.
pub(crate) const APPLIED: &str = "herd.applied";

/// The compact status of a node's workers (JSON), published by its agent.
pub(crate) const WORKERS: &str = "herd.workers";

/// Prefix of name claims: a claim on the global name `scheduler` is the key `name.scheduler`;
/// its value is read by [`crate::names`].
pub(crate) const NAME_PREFIX: &str = "name.";

/// The longest global name, in bytes.
pub(crate) const MAX_NAME: usize = 255;

/// The gossip key of a claim on the global name `name`.
pub(crate) fn name_key(name: &str) -> String {
    format!("{NAME_PREFIX}{name}")
}

/// The name claims a node state carries, sorted by name; withdrawn and unreadable ones are
/// skipped.
pub(crate) fn name_claims(state: &NodeState) -> Vec<(String, Claim)> {
    state
        .iter_prefix(NAME_PREFIX)
        .filter_map(|(key, value)| {
            let name = key.strip_prefix(NAME_PREFIX)?;
            if name.is_empty() || name.len() > MAX_NAME {
                return None;
            }
            Some((name.to_string(), Claim::parse(&value.value)?))
        })
        .collect()
}

/// The gossip key holding the tag `name`.
pub(crate) fn tag_key(name: &str) -> String {
    format!("{TAG_PREFIX}{name}")
}

/// The tags a node state carries.
pub(crate) fn tags(state: &NodeState) -> BTreeMap<String, String> {
    state
        .key_values()
        .filter_map(|(key, value)| {
            key.strip_prefix(TAG_PREFIX)
                .map(|name| (name.to_string(), value.to_string()))
        })
        .collect()
}

/// The node's RPC address, if it publishes one that parses.
pub(crate) fn rpc_addr(state: &NodeState) -> Option<std::net::SocketAddr> {
    state.get(RPC).and_then(|addr| addr.parse().ok())
}

/// Whether the node has published all its initial keys.
pub(crate) fn is_ready(state: &NodeState) -> bool {
    state.contains_key(READY)
}

/// Whether the node has announced a graceful leave.
pub(crate) fn is_leaving(state: &NodeState) -> bool {
    state.get(LEAVING).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_keys_round_trip_through_the_prefix() {
        let key = tag_key("group");
        assert_eq!(key, "tag.group");
        assert_eq!(key.strip_prefix(TAG_PREFIX), Some("group"));
    }
}
