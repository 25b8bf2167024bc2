//! The config module as the agent uses it: a pushed text is validated,
//! versioned, saved, restored after a restart, and turned into the specs of the
//! workers this node runs.

use std::collections::BTreeMap;

use herd::config::{ClusterConfig, ConfigStore, Loaded, VersionedConfig};
use herd::supervisor::WorkerSpec;

const PUSHED: &str = r#"
[[worker]]
name = "thumbnailer"
command = "python3"
args = ["workers/thumbnailer.py"]
group = "media"
protocol = "jsonl"

[[worker]]
name = "janitor"
command = "sleep"
args = ["3600"]
"#;

#[test]
fn a_pushed_config_survives_a_restart_and_selects_this_nodes_workers() {
    // The CLI validates the file before pushing it.
    ClusterConfig::parse(PUSHED, "cluster.toml").expect("valid file");

    // The API stamps it with a version; gossip carries its encoding.
    let accepted = VersionedConfig::new(1, PUSHED, "node-a", 1_700_000_000_000).unwrap();
    let received = VersionedConfig::decode(&accepted.encode()).unwrap();
    assert_eq!(received, accepted);

    // Every node saves it; a node restarted alone restores it.
    let data = tempfile::tempdir().unwrap();
    ConfigStore::open(data.path())
        .unwrap()
        .save(&received)
        .unwrap();
    let restored = match ConfigStore::open(data.path()).unwrap().load().unwrap() {
        Loaded::Config(config) => config,
        other => panic!("expected the saved config, got {other:?}"),
    };

    // A node tagged group=db runs only the worker without a group.
    let tags = BTreeMap::from([("group".to_string(), "db".to_string())]);
    let specs: Vec<WorkerSpec> = restored
        .config()
        .workers_for(&tags)
        .map(|worker| worker.to_spec())
        .collect();
    assert_eq!(specs, [WorkerSpec::new("janitor", "sleep").args(["3600"])]);

    // A later push supersedes it everywhere.
    let newer = VersionedConfig::new(2, "", "node-b", 1_700_000_001_000).unwrap();
    assert!(newer.supersedes(&restored));
    assert!(!restored.supersedes(&newer));
}
