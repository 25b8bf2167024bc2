//! Operator intent on a live `herd agent`: `herd stop` and `herd delete` outlast pushes that
//! don't change the worker and agent restarts; `herd start`, or a push that changes the
//! worker's spec, ends them.

#[path = "support/agent.rs"]
mod support;

use support::*;

fn config(keep_arg: &str, other_arg: &str) -> String {
    format!(
        "[[worker]]\nname = \"keep\"\ncommand = \"sleep\"\nargs = [\"{keep_arg}\"]\n\n\
         [[worker]]\nname = \"other\"\ncommand = \"sleep\"\nargs = [\"{other_arg}\"]\n"
    )
}

fn push(a: &AgentProc, dir: &std::path::Path, text: &str) {
    let file = dir.join("cluster.toml");
    std::fs::write(&file, text).unwrap();
    a.cli_ok(&["config", "push", file.to_str().unwrap()]);
}

fn state(w: &[(String, String, String, Option<u64>)], name: &str) -> Option<String> {
    find(w, "a", name).map(|(state, _)| state)
}

fn pid(w: &[(String, String, String, Option<u64>)], name: &str) -> Option<u64> {
    find(w, "a", name).and_then(|(_, pid)| pid)
}

#[test]
fn a_stop_outlasts_unrelated_pushes_and_restarts_until_started_or_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = Spec::new("a", tmp.path(), "intent-stop");
    let a = spec.start();
    push(&a, tmp.path(), &config("3600", "3600"));
    a.wait_workers("both running", |w| {
        running(w, "a", "keep") && running(w, "a", "other")
    });

    a.cli_ok(&["stop", "keep"]);
    a.wait_workers("keep stopped", |w| {
        state(w, "keep").as_deref() == Some("stopped")
    });
    let table = a.cli_ok(&["workers"]);
    assert!(table.contains("stopped (by operator)"), "{table}");
    assert!(a.data_dir.join("intent").exists());

    // The same text again, then a change to another worker: keep stays stopped.
    push(&a, tmp.path(), &config("3600", "3600"));
    let before = pid(&a.workers(), "other");
    push(&a, tmp.path(), &config("3600", "3601"));
    a.wait_workers("other replaced", |w| {
        running(w, "a", "other") && pid(w, "other") != before
    });
    assert_eq!(state(&a.workers(), "keep").as_deref(), Some("stopped"));

    // A restart of the agent on its data dir: still stopped, listed as the operator's.
    a.kill();
    let a = spec.start();
    let w = a.wait_workers("other back after the restart", |w| running(w, "a", "other"));
    assert_eq!(state(&w, "keep").as_deref(), Some("stopped"), "{w:?}");
    let table = a.cli_ok(&["workers"]);
    assert!(table.contains("stopped (by operator)"), "{table}");

    // Started by the operator: the intent ends, and a restart keeps it running.
    a.cli_ok(&["start", "keep"]);
    a.wait_workers("keep running", |w| running(w, "a", "keep"));
    a.kill();
    let a = spec.start();
    a.wait_workers("keep running after a restart", |w| running(w, "a", "keep"));

    // Stopped again, then a push that changes keep itself: a new instruction, it runs.
    a.cli_ok(&["stop", "keep"]);
    a.wait_workers("keep stopped again", |w| {
        state(w, "keep").as_deref() == Some("stopped")
    });
    push(&a, tmp.path(), &config("3602", "3601"));
    a.wait_workers("keep running its new spec", |w| running(w, "a", "keep"));
    assert!(a.log_contains("had stopped or deleted here"));
}

#[test]
fn a_delete_outlasts_unrelated_pushes_and_restarts_until_the_worker_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = Spec::new("a", tmp.path(), "intent-delete");
    let a = spec.start();
    push(&a, tmp.path(), &config("3600", "3600"));
    a.wait_workers("both running", |w| {
        running(w, "a", "keep") && running(w, "a", "other")
    });

    a.cli_ok(&["delete", "other"]);
    a.wait_workers("other gone", |w| state(w, "other").is_none());
    push(&a, tmp.path(), &config("3601", "3600"));
    a.wait_workers("keep replaced", |w| running(w, "a", "keep"));
    assert_eq!(state(&a.workers(), "other"), None);

    a.kill();
    let a = spec.start();
    a.wait_workers("keep back after the restart", |w| running(w, "a", "keep"));
    assert_eq!(state(&a.workers(), "other"), None);

    push(&a, tmp.path(), &config("3601", "3603"));
    a.wait_workers("other running its new spec", |w| running(w, "a", "other"));
}
