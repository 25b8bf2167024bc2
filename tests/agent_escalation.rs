//! Giving up escalates, and SIGHUP reloads: real `herd agent` processes.
//!
//! - With `on_give_up = "exit"`, a node whose workers restart more than the agent's
//!   `max_restarts` within `period` leaves the cluster gracefully (its peer logs a graceful leave,
//!   not a failure) and the process exits with status 75.
//! - With `stay` (the default), the agent keeps running and its workers show failed.
//! - SIGHUP applies a changed tag (a peer sees it, nobody sees a leave, same process) and leaves
//!   everything as it was when the file does not parse.

#[path = "support/agent.rs"]
mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::*;

/// A worker that exits at once, forever; its own limit is high so the node's is reached first.
const CRASHER: &str = r#"
[[worker]]
name = "crasher"
command = "sh"
args = ["-c", "exit 1"]
max_restarts = 1000
period = "60s"
"#;

fn push(a: &AgentProc, dir: &std::path::Path, text: &str) {
    let file = dir.join("cluster.toml");
    std::fs::write(&file, text).unwrap();
    a.cli_ok(&["config", "push", file.to_str().unwrap()]);
}

/// Waits (bounded) for the agent process to exit; its status code.
fn exit_code(a: &mut AgentProc) -> Option<i32> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = a.child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "{} did not exit", a.id);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_supervisor_that_gives_up_makes_the_agent_leave_gracefully_and_exit_75() {
    let tmp = tempfile::tempdir().unwrap();
    let b = Spec::new("b", tmp.path(), "escalate-exit").start();
    // Only a's node is in the crasher's group.
    let mut a = Spec::new("a", tmp.path(), "escalate-exit")
        .seed(&b)
        .tag("group=crash")
        .args(&[
            "--on-give-up",
            "exit",
            "--max-restarts",
            "3",
            "--restart-period",
            "30s",
        ])
        .start();
    b.wait_members(2);
    a.wait_members(2);
    let config = CRASHER.replace(
        "max_restarts = 1000",
        "group = \"crash\"\nmax_restarts = 1000",
    );
    push(&b, tmp.path(), &config);
    assert_eq!(exit_code(&mut a), Some(75));
    assert!(a.log_contains("the supervisor gave up"));
    wait_until("b to log a's graceful leave", || {
        b.log_contains("member left") && b.log_contains("graceful")
    });
    assert!(
        !b.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("member left") && l.contains("member=a") && l.contains("failed")),
        "a was seen failed, not leaving"
    );
}

#[test]
fn with_stay_the_agent_runs_on_and_shows_the_failed_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Spec::new("a", tmp.path(), "escalate-stay")
        .args(&["--max-restarts", "3", "--restart-period", "30s"])
        .start();
    push(&a, tmp.path(), CRASHER);
    a.wait_workers("crasher failed", |w| {
        find(w, "a", "crasher").is_some_and(|(state, _)| state == "failed")
    });
    assert!(a.log_contains("the supervisor gave up"));
    let metrics = metrics_of(&a);
    assert!(
        metrics.contains("herd_supervisor_gave_up_total 1"),
        "{metrics}"
    );
    assert!(a.child.try_wait().unwrap().is_none(), "the agent exited");
    // Its health says so, for a readiness probe.
    let (status, health) = a.request("GET", "/v1/health", None);
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "supervisor_gave_up", "{health}");
    assert!(
        health["reason"].as_str().unwrap().contains("gave up"),
        "{health}"
    );
    assert_eq!(health["problems"][0]["status"], "supervisor_gave_up");
}

fn metrics_of(a: &AgentProc) -> String {
    let (status, body) = raw_http(
        a.api,
        &format!("GET /metrics HTTP/1.1\r\nHost: {}", a.api),
        b"",
    );
    assert_eq!(status, 200);
    body
}

fn tag_of(agent: &AgentProc, node: &str, key: &str) -> Option<String> {
    agent
        .get("/v1/members")
        .as_array()?
        .iter()
        .find(|m| m["id"] == node)
        .and_then(|m| m["tags"][key].as_str().map(str::to_string))
}

#[test]
fn sighup_applies_a_changed_tag_without_leaving_and_a_broken_file_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("herd.toml");
    std::fs::write(&file, "[tags]\nzone = \"x\"\n").unwrap();
    let b = Spec::new("b", tmp.path(), "sighup").start();
    let mut a = Spec::new("a", tmp.path(), "sighup")
        .seed(&b)
        .args(&["--config", file.to_str().unwrap()])
        .start();
    b.wait_members(2);
    wait_until("b to see zone=x", || {
        tag_of(&b, "a", "zone").as_deref() == Some("x")
    });
    let pid = Pid::from_raw(a.child.id() as i32);

    std::fs::write(&file, "[tags]\nzone = \"y\"\nrack = \"7\"\n").unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    wait_until("b to see zone=y and rack=7", || {
        tag_of(&b, "a", "zone").as_deref() == Some("y")
            && tag_of(&b, "a", "rack").as_deref() == Some("7")
    });
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "SIGHUP ended the agent"
    );

    std::fs::write(&file, "[tags\nzone = ").unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    assert!(a.log_contains("the agent file does not load; nothing changed"));
    assert_eq!(tag_of(&b, "a", "zone").as_deref(), Some("y"));

    std::fs::write(
        &file,
        "cluster_id = \"other\"\n[tags]\nzone = \"y\"\nrack = \"7\"\n",
    )
    .unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    assert!(a.log_contains("need a restart"));
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "SIGHUP ended the agent"
    );
    assert!(
        !b.log_contains("member left"),
        "b saw a leave: {:#?}",
        b.log.lock().unwrap()
    );
}
