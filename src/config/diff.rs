//! [`diff`]: what pushing a cluster config would change on which nodes, before it is pushed
//! (`herd config diff FILE`).
//!
//! For each node (its id and tags) and each worker, the node runs the worker under a config
//! when its groups select the worker and, for a placed worker, when it is among the nodes
//! [`crate::placement`] picks from the given nodes that the worker's group selects. A worker
//! that would run only under the new config is started there, one that would run only under the
//! old is stopped, and one that runs under both with a changed `[[worker]]` is replaced (stopped,
//! then started with the new settings). The preview places workers over the nodes it is given as
//! they are now; a node that joins or leaves before the push changes where placed workers go.

use std::collections::BTreeMap;

use serde::Serialize;

use super::cluster::{ClusterConfig, Placement, WorkerConfig};
use crate::placement::place;

/// What a push does to one worker on one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The worker starts there.
    Start,
    /// It is stopped with the new settings' changes, then started again.
    Replace,
    /// It stops there.
    Stop,
}

/// One worker on one node that a push changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The worker.
    pub worker: String,
    /// The node.
    pub node: String,
    /// What happens to the worker there.
    pub change: ChangeKind,
    /// For a replace: the `[[worker]]` keys whose values differ, in the file's order.
    pub fields: Vec<String>,
}

/// The workers of `config` each of `nodes` (id and tags) runs, by worker name. A
/// `placement = "one"` worker that runs now on a node it may run on stays there (the node holds
/// its name), as in `placed_now`.
fn placement<'a>(
    config: &'a ClusterConfig,
    nodes: &[(String, BTreeMap<String, String>)],
    placed_now: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<&'a str, (&'a WorkerConfig, Vec<String>)> {
    config
        .workers
        .iter()
        .map(|worker| {
            let eligible: Vec<&str> = nodes
                .iter()
                .filter(|(_, tags)| worker.runs_on(tags))
                .map(|(id, _)| id.as_str())
                .collect();
            let on: Vec<String> = match worker.placement {
                Placement::Each => eligible.iter().map(|id| id.to_string()).collect(),
                Placement::One => match placed_now.get(&worker.name) {
                    Some(now) if now.len() == 1 && eligible.contains(&now[0].as_str()) => {
                        now.clone()
                    }
                    _ => place(&worker.name, eligible, 1)
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                },
                Placement::Instances(k) => place(&worker.name, eligible, k as usize)
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            };
            (worker.name.as_str(), (worker, on))
        })
        .collect()
}

/// The keys of a `[[worker]]` whose values differ between `old` and `new`.
fn changed_fields(old: &WorkerConfig, new: &WorkerConfig) -> Vec<String> {
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    new.iter()
        .filter(|(key, value)| old.get(*key) != Some(*value))
        .map(|(key, _)| key.clone())
        .collect()
}

/// What pushing `new` over `old` changes on `nodes` (id and tags), by worker name, then kind,
/// then node. `placed_now` says where `placement = "one"` workers run now, by name (from
/// `GET /v1/workers`; empty: where placement would put them).
pub fn diff(
    old: &ClusterConfig,
    new: &ClusterConfig,
    nodes: &[(String, BTreeMap<String, String>)],
    placed_now: &BTreeMap<String, Vec<String>>,
) -> Vec<Change> {
    let before = placement(old, nodes, placed_now);
    let after = placement(new, nodes, placed_now);
    let mut changes = Vec::new();
    let change = |worker: &str, node: &str, change, fields: Vec<String>| Change {
        worker: worker.to_owned(),
        node: node.to_owned(),
        change,
        fields,
    };
    for (name, (worker, on)) in &after {
        let old = before.get(name);
        for node in on {
            match old {
                Some((old, old_on)) if old_on.contains(node) => {
                    let fields = changed_fields(old, worker);
                    if !fields.is_empty() {
                        changes.push(change(name, node, ChangeKind::Replace, fields));
                    }
                }
                _ => changes.push(change(name, node, ChangeKind::Start, Vec::new())),
            }
        }
    }
    for (name, (_, old_on)) in &before {
        let new_on = after.get(name).map(|(_, on)| on.as_slice()).unwrap_or(&[]);
        for node in old_on.iter().filter(|n| !new_on.contains(n)) {
            changes.push(change(name, node, ChangeKind::Stop, Vec::new()));
        }
    }
    changes.sort_by(|a, b| (&a.worker, a.change, &a.node).cmp(&(&b.worker, b.change, &b.node)));
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<(String, BTreeMap<String, String>)> {
        ["a", "b", "c"]
            .iter()
            .map(|id| {
                let group = if *id == "c" { "db" } else { "web" };
                let tags = BTreeMap::from([("group".to_string(), group.to_string())]);
                (id.to_string(), tags)
            })
            .collect()
    }

    fn config(text: &str) -> ClusterConfig {
        ClusterConfig::parse(text, "c.toml").unwrap()
    }

    #[test]
    fn additions_changes_and_removals_are_named_per_node() {
        let old = config(
            "[[worker]]\nname = \"web\"\ncommand = \"srv\"\ngroup = \"web\"\n\
             [[worker]]\nname = \"gone\"\ncommand = \"x\"\n\
             [[worker]]\nname = \"same\"\ncommand = \"y\"\n",
        );
        let new = config(
            "[[worker]]\nname = \"web\"\ncommand = \"srv\"\nargs = [\"-v\"]\ngroup = \"web\"\n\
             [[worker]]\nname = \"db\"\ncommand = \"pg\"\ngroup = \"db\"\n\
             [[worker]]\nname = \"same\"\ncommand = \"y\"\n",
        );
        let got: Vec<(String, String, ChangeKind, Vec<String>)> =
            diff(&old, &new, &nodes(), &BTreeMap::new())
                .into_iter()
                .map(|c| (c.worker, c.node, c.change, c.fields))
                .collect();
        let row = |w: &str, n: &str, k, f: &[&str]| {
            (
                w.to_string(),
                n.to_string(),
                k,
                f.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            got,
            [
                row("db", "c", ChangeKind::Start, &[]),
                row("gone", "a", ChangeKind::Stop, &[]),
                row("gone", "b", ChangeKind::Stop, &[]),
                row("gone", "c", ChangeKind::Stop, &[]),
                row("web", "a", ChangeKind::Replace, &["args"]),
                row("web", "b", ChangeKind::Replace, &["args"]),
            ]
        );
        assert!(diff(&new, &new, &nodes(), &BTreeMap::new()).is_empty());
    }

    #[test]
    fn a_placed_worker_goes_to_the_node_placement_picks_and_moves_with_its_group() {
        let one = config("[[worker]]\nname = \"cron\"\ncommand = \"c\"\nplacement = \"one\"\n");
        let changes = diff(&ClusterConfig::default(), &one, &nodes(), &BTreeMap::new());
        assert_eq!(changes.len(), 1);
        let picked = place("cron", ["a", "b", "c"], 1)[0];
        assert_eq!(changes[0].node, picked);
        // Restricted to the db group: it can only be on c.
        let db = config(
            "[[worker]]\nname = \"cron\"\ncommand = \"c\"\nplacement = \"one\"\ngroup = \"db\"\n",
        );
        let moved = diff(&one, &db, &nodes(), &BTreeMap::new());
        if picked == "c" {
            assert_eq!(moved.len(), 1);
            assert_eq!(moved[0].change, ChangeKind::Replace);
            assert_eq!(moved[0].fields, ["group"]);
        } else {
            let kinds: Vec<_> = moved.iter().map(|c| (c.node.as_str(), c.change)).collect();
            assert_eq!(
                kinds,
                [("c", ChangeKind::Start), (picked, ChangeKind::Stop)]
            );
        }
        // Where it runs now wins over where placement would put it afresh.
        let other = ["a", "b", "c"].into_iter().find(|n| *n != picked).unwrap();
        let now = BTreeMap::from([("cron".to_string(), vec![other.to_string()])]);
        let changed = config("[[worker]]\nname = \"cron\"\ncommand = \"d\"\nplacement = \"one\"\n");
        let kept = diff(&one, &changed, &nodes(), &now);
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].node.as_str(), kept[0].change),
            (other, ChangeKind::Replace)
        );
    }
}
