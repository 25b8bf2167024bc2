//! Rendezvous (highest-random-weight) placement: which `k` of a set of nodes hold a key (a
//! worker's name, a shard), computed alike on every node that sees the same set, with no
//! coordination. Each (key, node) pair gets a weight; the key goes to the `k` nodes of highest
//! weight. When a node leaves, only the keys it held move (each to the next node by weight);
//! when a node joins, only the keys for which it now ranks among the top `k` move to it.
//!
//! The weight is part of herd's wire contract, like a message format: nodes of different herd
//! versions must agree on it, so it is a fixed function (FNV-1a over the key, a zero byte and the
//! node id, then the SplitMix64 finalizer), not `std`'s hasher, whose output may change between
//! Rust releases. A test pins its values.

/// The weight of `node` for `key`: the higher, the sooner `node` holds `key`.
pub fn weight(key: &str, node: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in key.bytes().chain([0]).chain(node.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    // SplitMix64's finalizer: FNV-1a alone leaves the high bits of similar inputs close.
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The nodes that hold `key`, best first: the `k` of `nodes` with the highest
/// [`weight`] (ties, which need equal 64-bit weights, go to the lower node id). Fewer than `k`
/// when there are fewer nodes; a node listed twice counts once.
pub fn place<'a, I>(key: &str, nodes: I, k: usize) -> Vec<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut ranked: Vec<(u64, &'a str)> = nodes
        .into_iter()
        .map(|node| (weight(key, node), node))
        .collect();
    ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().take(k).map(|(_, node)| node).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("worker-{i}")).collect()
    }

    fn placement(keys: &[String], nodes: &[String], k: usize) -> BTreeMap<String, Vec<String>> {
        keys.iter()
            .map(|key| {
                let held = place(key, nodes.iter().map(String::as_str), k);
                (key.clone(), held.into_iter().map(str::to_owned).collect())
            })
            .collect()
    }

    #[test]
    fn the_weight_is_a_fixed_function() {
        // Nodes of every herd version must agree: these values may never change.
        // (Checked against an independent implementation of the same definition.)
        assert_eq!(weight("", ""), 0x25fc_6dd3_6ce0_4b20);
        assert_eq!(weight("scheduler", "a"), 0x4494_d6f8_b4d0_44b5);
        assert_ne!(weight("scheduler", "a"), weight("scheduler", "b"));
        assert_ne!(
            weight("ab", "c"),
            weight("a", "bc"),
            "the separator keeps key and node apart"
        );
    }

    #[test]
    fn the_top_k_distinct_nodes_best_first() {
        let all = nodes(5);
        let one = place("cron", all.iter().map(String::as_str), 1);
        let three = place("cron", all.iter().map(String::as_str), 3);
        assert_eq!(one.len(), 1);
        assert_eq!(three.len(), 3);
        assert_eq!(one[0], three[0], "the best node is the same for any k");
        let weights: Vec<u64> = three.iter().map(|n| weight("cron", n)).collect();
        assert!(weights.windows(2).all(|w| w[0] >= w[1]), "{weights:?}");
        assert_eq!(place("cron", all.iter().map(String::as_str), 9).len(), 5);
        assert_eq!(place("cron", ["a", "a", "b"], 3), {
            let mut both = place("cron", ["a", "b"], 2);
            both.truncate(2);
            both
        });
        assert!(place("cron", [], 1).is_empty());
        let reversed: Vec<&str> = all.iter().rev().map(String::as_str).collect();
        assert_eq!(
            place("cron", reversed, 3),
            three,
            "the order nodes are given in does not matter"
        );
    }

    #[test]
    fn a_leave_moves_only_what_the_leaver_held() {
        let all = nodes(6);
        let work = keys(2_000);
        for k in [1, 2] {
            let before = placement(&work, &all, k);
            let gone = &all[2];
            let rest: Vec<String> = all.iter().filter(|n| *n != gone).cloned().collect();
            let after = placement(&work, &rest, k);
            for key in &work {
                let (old, new) = (&before[key], &after[key]);
                if old.contains(gone) {
                    let kept: Vec<&String> = old.iter().filter(|n| *n != gone).collect();
                    assert!(
                        kept.iter().all(|n| new.contains(n)),
                        "{key}: {old:?} → {new:?}"
                    );
                } else {
                    assert_eq!(old, new, "{key} moved though {gone} did not hold it");
                }
            }
        }
    }

    #[test]
    fn a_join_moves_only_what_the_newcomer_now_holds() {
        let all = nodes(6);
        let work = keys(2_000);
        let fewer = &all[..5];
        let before = placement(&work, fewer, 1);
        let after = placement(&work, &all, 1);
        let moved: Vec<&String> = work.iter().filter(|k| before[*k] != after[*k]).collect();
        assert!(moved.iter().all(|k| after[*k] == [all[5].clone()]));
        // About a sixth of the keys move to the sixth node; bounds far from the mean.
        assert!(
            (200..=500).contains(&moved.len()),
            "{} of 2,000 moved",
            moved.len()
        );
    }

    #[test]
    fn keys_spread_over_the_nodes() {
        let all = nodes(5);
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for held in placement(&keys(5_000), &all, 1).into_values() {
            *count.entry(held[0].clone()).or_default() += 1;
        }
        assert_eq!(count.len(), 5);
        assert!(
            count.values().all(|c| (800..=1200).contains(c)),
            "{count:?}"
        );
    }
}
