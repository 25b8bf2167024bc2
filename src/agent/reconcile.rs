//! Reconciling: which workers this node should run, and the actions that get it there, as plain
//! functions. `plan(desired, running)` starts what is missing, stops what is no longer wanted, and
//! replaces only workers whose spec changed; an unchanged worker is left alone (same pid).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::config::{ClusterConfig, WorkerConfig};
use crate::supervisor::WorkerSpec;

/// One step towards the desired workers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    /// Start a worker that is not running.
    Start(WorkerSpec),
    /// Stop and forget a worker that is no longer wanted.
    Remove(String),
    /// Stop a worker and start it again with a changed spec.
    Replace(WorkerSpec),
}

/// The specs of the workers node `node_id` with `tags` should run, by name. Workers an operator
/// deleted on this node are left out until the config changes them. With a `log_dir`, each
/// worker's output goes to `<log_dir>/<name>.log`, rotated by its `log` setting. Workers for
/// which `placed_here` is false (placed on other nodes) are left out.
pub(crate) fn desired(
    config: &ClusterConfig,
    node_id: &str,
    tags: &BTreeMap<String, String>,
    deleted: &BTreeSet<String>,
    log_dir: Option<&Path>,
    placed_here: impl Fn(&WorkerConfig) -> bool,
) -> BTreeMap<String, WorkerSpec> {
    config
        .workers_for(tags)
        .filter(|worker| !deleted.contains(&worker.name) && placed_here(worker))
        .map(|worker| {
            let spec = worker
                .to_spec()
                .env("HERD_NODE_ID", node_id)
                .max_restarts(worker.max_restarts, worker.period);
            let spec = match log_dir {
                Some(dir) => spec.log_file(
                    dir.join(format!("{}.log", worker.name)),
                    worker.log.max_size,
                    worker.log.keep,
                ),
                None => spec,
            };
            (worker.name.clone(), spec)
        })
        .collect()
}

/// The actions that turn `running` into `desired`: removals first (freeing what they hold), then
/// replacements, then starts, each in name order.
pub(crate) fn plan(
    desired: &BTreeMap<String, WorkerSpec>,
    running: &BTreeMap<String, WorkerSpec>,
) -> Vec<Action> {
    let removals = running
        .keys()
        .filter(|name| !desired.contains_key(*name))
        .map(|name| Action::Remove(name.clone()));
    let replacements = desired
        .iter()
        .filter(|(name, spec)| running.get(*name).is_some_and(|old| old != *spec))
        .map(|(_, spec)| Action::Replace(spec.clone()));
    let starts = desired
        .iter()
        .filter(|(name, _)| !running.contains_key(*name))
        .map(|(_, spec)| Action::Start(spec.clone()));
    removals.chain(replacements).chain(starts).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, arg: &str) -> WorkerSpec {
        WorkerSpec::new(name, "sleep").args([arg])
    }

    fn map(specs: &[WorkerSpec]) -> BTreeMap<String, WorkerSpec> {
        specs.iter().map(|s| (s.name.clone(), s.clone())).collect()
    }

    #[test]
    fn missing_workers_start_and_unwanted_ones_are_removed() {
        let desired = map(&[spec("a", "1"), spec("b", "1")]);
        let running = map(&[spec("b", "1"), spec("c", "1")]);
        assert_eq!(
            plan(&desired, &running),
            vec![Action::Remove("c".into()), Action::Start(spec("a", "1"))]
        );
    }

    #[test]
    fn only_a_changed_spec_is_replaced() {
        let desired = map(&[spec("a", "1"), spec("b", "2")]);
        let running = map(&[spec("a", "1"), spec("b", "1")]);
        assert_eq!(
            plan(&desired, &running),
            vec![Action::Replace(spec("b", "2"))]
        );
        assert!(
            plan(&desired, &desired).is_empty(),
            "nothing to do when all match"
        );
    }

    #[test]
    fn desired_workers_follow_groups_and_skip_deleted_ones() {
        let config = ClusterConfig::parse(
            "[[worker]]\nname = \"everywhere\"\ncommand = \"sleep\"\n\n\
             [[worker]]\nname = \"media\"\ncommand = \"sleep\"\ngroup = \"media\"\n\n\
             [[worker]]\nname = \"web\"\ncommand = \"sleep\"\ngroup = \"web\"\n",
            "test.toml",
        )
        .unwrap();
        let tags: BTreeMap<String, String> = [("group".to_string(), "media".to_string())].into();
        let names = |deleted: &[&str]| {
            let deleted = deleted.iter().map(|s| s.to_string()).collect();
            desired(&config, "n1", &tags, &deleted, None, |_| true)
                .into_keys()
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&[]), vec!["everywhere", "media"]);
        assert_eq!(names(&["media"]), vec!["everywhere"]);
        let spec = &desired(&config, "n1", &tags, &BTreeSet::new(), None, |_| true)["media"];
        assert_eq!(spec.env.get("HERD_NODE_ID").map(String::as_str), Some("n1"));
        assert_eq!(spec.log_file, None);
    }

    #[test]
    fn with_a_log_dir_each_worker_logs_to_its_own_file() {
        let config = ClusterConfig::parse(
            "[[worker]]\nname = \"a\"\ncommand = \"sleep\"\n\n\
             [[worker]]\nname = \"b\"\ncommand = \"sleep\"\nlog = { max_size = \"1KB\", keep = 2 }\n",
            "test.toml",
        )
        .unwrap();
        let dir = Path::new("/var/log/herd");
        let specs = desired(
            &config,
            "n1",
            &BTreeMap::new(),
            &BTreeSet::new(),
            Some(dir),
            |_| true,
        );
        let a = specs["a"].log_file.clone().unwrap();
        assert_eq!(a.path, dir.join("a.log"));
        assert_eq!((a.max_size, a.keep), (10 << 20, 5));
        let b = specs["b"].log_file.clone().unwrap();
        assert_eq!((b.path, b.max_size, b.keep), (dir.join("b.log"), 1024, 2));
    }
}
