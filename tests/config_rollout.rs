//! Rollouts against real agents: `herd config diff FILE` says, before a push, which workers
//! would start, be replaced or stop on which nodes (and pushes nothing); `herd config push
//! --wait` returns once every node runs the pushed config's workers, and fails naming the node
//! whose worker cannot start; `herd members` shows each node's version and its workers' state.

#[path = "support/agent.rs"]
mod support;

use serde_json::{json, Value};
use support::*;

const OLD: &str = r#"
[[worker]]
name = "web"
command = "sleep"
args = ["3600"]
group = "web"

[[worker]]
name = "gone"
command = "sleep"
args = ["3600"]

[[worker]]
name = "same"
command = "sleep"
args = ["3600"]
"#;

const NEW: &str = r#"
[[worker]]
name = "web"
command = "sleep"
args = ["3601"]
group = "web"

[[worker]]
name = "db"
command = "sleep"
args = ["3600"]
group = "db"

[[worker]]
name = "same"
command = "sleep"
args = ["3600"]
"#;

#[test]
fn a_diff_names_the_workers_a_push_would_start_replace_and_stop_on_each_node() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "diff").tag("group=web").start();
    let b = Spec::new("b", tmp.path(), "diff")
        .tag("group=web")
        .seed(&a)
        .start();
    let c = Spec::new("c", tmp.path(), "diff")
        .tag("group=db")
        .seed(&a)
        .start();
    for agent in [&a, &b, &c] {
        agent.wait_members(3);
    }
    let (status, body) = a.request(
        "PUT",
        "/v1/config",
        Some(&json!({ "toml": OLD }).to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let version = a.config_id();
    wait_until("every node to hold the config", || {
        [&b, &c].iter().all(|agent| agent.config_id() == version)
    });

    let file = tmp.path().join("new.toml");
    std::fs::write(&file, NEW).unwrap();
    let path = file.to_str().unwrap();
    let out = c.cli_ok(&["config", "diff", path]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "+ start db on c",
            "- stop gone on a, b, c",
            "~ replace web on a, b (args changed)",
        ],
        "{out}"
    );
    let changes: Value =
        serde_json::from_str(&a.cli_ok(&["config", "diff", path, "--json"])).unwrap();
    let changes = changes.as_array().unwrap();
    assert_eq!(changes.len(), 6, "{changes:?}");
    assert!(changes
        .contains(&json!({"worker": "web", "node": "b", "change": "replace", "fields": ["args"]})));
    // Nothing was pushed.
    assert_eq!(a.config_id(), version);

    let same = tmp.path().join("same.toml");
    std::fs::write(&same, OLD).unwrap();
    let out = b.cli_ok(&["config", "diff", same.to_str().unwrap()]);
    assert_eq!(
        out.trim(),
        "no change: 3 workers, the same on all 3 live nodes"
    );
    // A file that does not parse is named, with its line.
    std::fs::write(&same, "[[worker]]\nname = \"x\"\n").unwrap();
    let out = a.cli(&["config", "diff", same.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("same.toml:1:1"),
        "{out:?}"
    );
}

#[test]
fn push_wait_returns_once_every_node_runs_the_config_and_names_a_node_whose_worker_cannot_start() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "rollout")
        .tag("group=web")
        .start();
    let b = Spec::new("b", tmp.path(), "rollout")
        .tag("group=web")
        .seed(&a)
        .start();
    let c = Spec::new("c", tmp.path(), "rollout")
        .tag("group=odd")
        .seed(&a)
        .start();
    for agent in [&a, &b, &c] {
        agent.wait_members(3);
    }
    let good = tmp.path().join("good.toml");
    std::fs::write(&good, OLD).unwrap();
    let out = a.cli_ok(&["config", "push", good.to_str().unwrap(), "--wait"]);
    assert!(out.contains("runs on every node (3)"), "{out}");
    // Every node runs it: the table says so.
    let (version, _) = a.config_id();
    let table = a.cli_ok(&["members"]);
    for node in ["a", "b", "c"] {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{node} ")))
            .unwrap();
        assert!(line.contains(&format!("{version} running")), "{table}");
    }

    // A worker c's group runs, whose program does not exist: c never runs the config.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!("{OLD}\n[[worker]]\nname = \"broken\"\ncommand = \"/nonexistent/herd-test-program\"\ngroup = \"odd\"\n"),
    )
    .unwrap();
    let out = a.cli(&[
        "config",
        "push",
        bad.to_str().unwrap(),
        "--wait",
        "--timeout",
        "5s",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 of 3 nodes run version"), "{stderr}");
    assert!(
        stderr.contains("still behind: c (version") && stderr.contains("workers failed"),
        "{stderr}"
    );
    let members = a.get("/v1/members");
    let c_entry = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "c")
        .unwrap();
    assert_eq!(c_entry["config_workers"], "failed", "{c_entry}");
}
