//! `herd agent` processes on loopback with temp data dirs: a pushed config runs the right workers
//! on the right groups, changes touch only what changed, late joiners and restarted agents get
//! the config, corrupt files are recovered from peers, bad pushes change nothing, and every CLI
//! verb works against a live agent.

#[path = "support/agent.rs"]
mod support;

use std::fs;

use support::*;

const TWO_WORKERS: &str = r#"
[[worker]]
name = "everywhere"
command = "sleep"
args = ["3600"]

[[worker]]
name = "media-only"
command = "sleep"
args = ["3600"]
group = "media"
"#;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn a_pushed_config_runs_workers_on_their_groups_and_changes_touch_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "groups")
        .tag("group=media")
        .start();
    let b = Spec::new("b", tmp.path(), "groups")
        .tag("group=web")
        .seed(&a)
        .start();
    let c = Spec::new("c", tmp.path(), "groups").seed(&a).start();
    for agent in [&a, &b, &c] {
        agent.wait_members(3);
    }

    let file = write(tmp.path(), "cluster.toml", TWO_WORKERS);
    let out = b.cli_ok(&["config", "push", &file]);
    assert!(out.contains("version 1"), "{out}");

    let first = c.wait_workers("the workers on their groups", |w| {
        running(w, "a", "everywhere")
            && running(w, "a", "media-only")
            && running(w, "b", "everywhere")
            && running(w, "c", "everywhere")
    });
    assert_eq!(first.len(), 4, "media-only runs on a alone: {first:?}");
    for agent in [&a, &b, &c] {
        assert_eq!(agent.get("/v1/config")["version"], 1);
        let persisted = agent.data_dir.join(herd::config::STORE_FILE).exists();
        assert!(persisted, "{} persisted the config", agent.id);
    }

    // Change media-only's args: only it is replaced; everywhere keeps its pids.
    let changed = TWO_WORKERS.replacen("args = [\"3600\"]\ngroup", "args = [\"3601\"]\ngroup", 1);
    assert_ne!(changed, TWO_WORKERS);
    let file = write(tmp.path(), "cluster.toml", &changed);
    a.cli_ok(&["config", "push", &file]);
    let old_media = find(&first, "a", "media-only").unwrap().1;
    let second = c.wait_workers("media-only replaced", |w| {
        running(w, "a", "media-only") && find(w, "a", "media-only").unwrap().1 != old_media
    });
    for node in ["a", "b", "c"] {
        assert_eq!(
            find(&second, node, "everywhere"),
            find(&first, node, "everywhere"),
            "everywhere on {node} untouched"
        );
    }
    assert!(
        !alive(old_media.unwrap()),
        "the old media-only process is gone"
    );

    // Remove media-only: it stops.
    let file = write(
        tmp.path(),
        "cluster.toml",
        "[[worker]]\nname = \"everywhere\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n",
    );
    c.cli_ok(&["config", "push", &file]);
    let third = a.wait_workers("media-only removed", |w| {
        find(w, "a", "media-only").is_none() && w.len() == 3
    });
    let media_pid = find(&second, "a", "media-only").unwrap().1.unwrap();
    wait_until("the removed worker's process to end", || !alive(media_pid));
    assert_eq!(
        find(&third, "b", "everywhere"),
        find(&first, "b", "everywhere")
    );

    // A late joiner gets the config and starts its workers.
    let d = Spec::new("d", tmp.path(), "groups").seed(&b).start();
    d.wait_workers("d's own worker", |w| running(w, "d", "everywhere"));
    assert_eq!(d.get("/v1/config")["version"], 3);
}

#[test]
fn an_agent_restarted_alone_restores_its_workers_from_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "restore");
    let b = Spec::new("b", tmp.path(), "restore");
    let agent_a = a.start();
    let agent_b = b.clone().seed(&agent_a).start();
    agent_b.wait_members(2);
    let file = write(tmp.path(), "cluster.toml", TWO_WORKERS);
    agent_a.cli_ok(&["config", "push", &file]);
    agent_b.wait_workers("b's worker", |w| running(w, "b", "everywhere"));
    let before = find(&agent_b.workers(), "b", "everywhere")
        .unwrap()
        .1
        .unwrap();

    // Kill every agent (SIGKILL): their workers die with them.
    agent_a.kill();
    agent_b.kill();
    wait_until("b's worker to die with its agent", || !alive(before));

    // b alone, its seed unreachable: the config comes back from disk and the worker runs.
    let alone = b.seed_addr("127.0.0.1:9").start();
    alone.wait_workers("b's worker from disk", |w| running(w, "b", "everywhere"));
    assert_eq!(alone.get("/v1/config")["version"], 1);
}

#[test]
fn a_corrupt_data_file_is_set_aside_and_the_config_recovered_from_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "corrupt").start();
    let b_spec = Spec::new("b", tmp.path(), "corrupt").seed(&a);
    let b = b_spec.start();
    b.wait_members(2);
    let file = write(tmp.path(), "cluster.toml", TWO_WORKERS);
    a.cli_ok(&["config", "push", &file]);
    b.wait_workers("b's worker", |w| running(w, "b", "everywhere"));
    b.kill();

    // Truncate b's persisted config.
    let stored = b_spec.data_dir.join(herd::config::STORE_FILE);
    let bytes = fs::read(&stored).unwrap();
    fs::write(&stored, &bytes[..bytes.len() / 2]).unwrap();

    let b = b_spec.start();
    b.wait_workers("b's worker after recovery", |w| {
        running(w, "b", "everywhere")
    });
    assert_eq!(b.get("/v1/config")["version"], 1);
    assert!(
        b.log_contains("corrupt"),
        "the corruption is reported: {:#?}",
        b.log.lock().unwrap()
    );
    let kept: Vec<_> = fs::read_dir(&b_spec.data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        kept.iter().any(|n| n.contains("corrupt")),
        "the bad file is kept aside: {kept:?}"
    );
    assert!(
        kept.iter().any(|n| n == herd::config::STORE_FILE),
        "and a good one written: {kept:?}"
    );
}

#[test]
fn invalid_pushes_are_rejected_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "invalid").start();
    let file = write(tmp.path(), "cluster.toml", TWO_WORKERS);
    a.cli_ok(&["config", "push", &file]);

    let cases = [
        ("syntax.toml", "[[worker]]\nname = \"x\ncommand = \"sleep\"\n", "syntax.toml:2"),
        ("unknown.toml", "[[worker]]\nname = \"x\"\ncomand = \"sleep\"\n", "comand"),
        ("dupe.toml", "[[worker]]\nname = \"x\"\ncommand = \"a\"\n[[worker]]\nname = \"x\"\ncommand = \"b\"\n", "x"),
        ("missing.toml", "[[worker]]\nname = \"x\"\n", "command"),
    ];
    for (name, text, needle) in cases {
        let path = write(tmp.path(), name, text);
        let out = a.cli(&["config", "push", &path]);
        assert!(!out.status.success(), "{name} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{name}: {err}");
    }
    // The API rejects them too, naming the problem.
    let (status, body) = http(
        "PUT",
        &a.url("/v1/config"),
        Some(r#"{"toml": "[[worker]]\nname = \"x\"\n"}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("command"),
        "{body}"
    );
    let (status, body) = http(
        "PUT",
        &a.url("/v1/config"),
        Some(r#"{"toml": "", "colour": 1}"#),
    );
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("colour"), "{body}");
    let (status, body) = http("PUT", &a.url("/v1/config"), Some("{not json"));
    assert_eq!(status, 400, "{body}");
    let (status, body) = http(
        "PUT",
        &a.url("/v1/config"),
        Some(r#"{"toml": "", "base_version": 0}"#),
    );
    assert_eq!(status, 409, "{body}");

    assert_eq!(a.get("/v1/config")["version"], 1, "nothing changed");
    a.wait_workers("the workers still running", |w| {
        running(w, "a", "everywhere")
    });
}

#[test]
fn every_cli_verb_works_against_a_live_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "cli").tag("group=media").start();
    let file = write(tmp.path(), "cluster.toml", TWO_WORKERS);
    a.cli_ok(&["config", "push", &file]);
    let workers = a.wait_workers("both workers", |w| {
        running(w, "a", "everywhere") && running(w, "a", "media-only")
    });
    let pid = find(&workers, "a", "everywhere").unwrap().1.unwrap();

    let members = a.cli_ok(&["members"]);
    assert!(
        members.contains("ID") && members.contains("group=media"),
        "{members}"
    );
    let json: serde_json::Value = serde_json::from_str(&a.cli_ok(&["members", "--json"])).unwrap();
    assert_eq!(json[0]["id"], "a");

    let listing = a.cli_ok(&["workers"]);
    assert!(
        listing.contains("everywhere") && listing.contains("running"),
        "{listing}"
    );
    a.cli_ok(&["workers", "--node", "a"]);
    let out = a.cli(&["workers", "--node", "nobody"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));

    let out = a.cli_ok(&["restart", "everywhere"]);
    assert!(out.contains("restarted everywhere on a"), "{out}");
    a.wait_workers("a new pid", |w| {
        running(w, "a", "everywhere") && find(w, "a", "everywhere").unwrap().1 != Some(pid)
    });

    a.cli_ok(&["stop", "everywhere"]);
    a.wait_workers("everywhere stopped", |w| {
        find(w, "a", "everywhere").is_some_and(|(s, _)| s == "stopped")
    });
    a.cli_ok(&["start", "everywhere"]);
    a.wait_workers("everywhere running again", |w| {
        running(w, "a", "everywhere")
    });

    a.cli_ok(&["delete", "media-only"]);
    a.wait_workers("media-only deleted", |w| {
        find(w, "a", "media-only").is_none()
    });
    a.cli_ok(&["start", "media-only"]);
    a.wait_workers("media-only back", |w| running(w, "a", "media-only"));

    let out = a.cli(&["restart", "no-such-worker"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-worker"));
    let (status, _) = http("POST", &a.url("/v1/workers/no-such-worker/restart"), None);
    assert_eq!(status, 404);

    let shown = a.cli_ok(&["config", "show"]);
    assert!(
        shown.contains("version 1") && shown.contains("media-only"),
        "{shown}"
    );
    let status = a.cli_ok(&["status"]);
    assert!(
        status.contains("config version 1")
            && status.contains("MEMBER")
            && status.contains("WORKER"),
        "{status}"
    );
    let health = a.get("/v1/health");
    assert_eq!(health["status"], "ok");
}

#[test]
fn an_agent_whose_api_port_is_taken_exits_naming_the_address() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut spec = Spec::new("a", tmp.path(), "taken");
    spec.api = Some(addr.clone());
    let out = spec.command().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr), "{err}");
}

#[test]
fn an_agent_with_no_flags_starts_a_working_one_node_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    // Only addresses and the data dir are set, so that tests can run side by side.
    let a = Spec::new("solo", tmp.path(), "herd").start();
    let health = a.get("/v1/health");
    assert_eq!(health["members"], 1);
    assert_eq!(health["config_version"], 0);
}
