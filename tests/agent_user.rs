//! `herd agent` running workers as the user the cluster config names: a pushed `user = "nobody"`
//! runs that worker as nobody (and it still dies with a SIGKILLed agent), and a worker whose user
//! does not exist is a start error in the status while the others run.

#[path = "support/agent.rs"]
mod support;

use nix::unistd::{geteuid, User};
use support::*;

const CONFIG: &str = r#"
[[worker]]
name = "as-nobody"
command = "sleep"
args = ["3600"]
user = "nobody"

[[worker]]
name = "as-ghost"
command = "sleep"
args = ["3600"]
user = "herd-no-such-user"

[[worker]]
name = "as-agent"
command = "sleep"
args = ["3600"]
"#;

/// The real, effective, saved and file-system uids of a process.
fn uids(pid: u64) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
    line.split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// The `detail` the agent lists for one of its workers.
fn detail(agent: &AgentProc, name: &str) -> String {
    agent
        .get("/v1/workers")
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .and_then(|w| w["detail"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_pushed_config_runs_a_worker_as_its_user_and_reports_an_unknown_one() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "users").start();
    let file = tmp.path().join("cluster.toml");
    std::fs::write(&file, CONFIG).unwrap();
    a.cli_ok(&["config", "push", file.to_str().unwrap()]);

    let ghost_error = "cannot start worker as-ghost: it sets user = \"herd-no-such-user\", \
                       and there is no such user on this machine";
    let listing = a.wait_workers("as-agent running and as-ghost failed", |w| {
        running(w, "a", "as-agent")
            && find(w, "a", "as-ghost").is_some_and(|(state, _)| state == "failed")
    });
    assert_eq!(detail(&a, "as-ghost"), ghost_error);
    let table = a.cli_ok(&["workers"]);
    assert!(table.contains("herd-no-such-user"), "{table}");
    assert!(
        a.log_contains("herd-no-such-user"),
        "the start error is logged"
    );

    if !geteuid().is_root() {
        // Not root: nobody's worker is refused, naming the agent's uid.
        let failed = find(&listing, "a", "as-nobody").unwrap().0;
        assert_eq!(failed, "failed");
        let needs_root = format!(
            "worker as-nobody sets user = \"nobody\", which needs the agent to run as root; \
             it runs as uid {}",
            geteuid()
        );
        assert_eq!(detail(&a, "as-nobody"), needs_root);
        return;
    }
    let listing = a.wait_workers("as-nobody running", |w| running(w, "a", "as-nobody"));
    let nobody = User::from_name("nobody").unwrap().unwrap().uid.as_raw();
    let worker = find(&listing, "a", "as-nobody").unwrap().1.unwrap();
    assert_eq!(uids(worker), [nobody; 4]);
    let own = find(&listing, "a", "as-agent").unwrap().1.unwrap();
    assert_eq!(uids(own), [0; 4], "a worker without user runs as the agent");

    // The death signal survives the switch: set after it, it is not cleared.
    a.kill();
    wait_until("nobody's worker to die with the agent", || !alive(worker));
    wait_until("the agent's own worker to die with it", || !alive(own));
}
