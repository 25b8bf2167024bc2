//! A worker whose program cannot be started, on a live `herd agent`: listed as failed with the
//! reason, deletable, and started again by `herd start` once its program is fixed.

#[path = "support/agent.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;

use support::*;

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn state_of(workers: &[(String, String, String, Option<u64>)], name: &str) -> Option<String> {
    find(workers, "a", name).map(|(state, _)| state)
}

#[test]
fn a_worker_that_cannot_start_is_listed_failed_can_be_deleted_and_starts_once_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let program = tmp.path().join("worker.sh");
    std::fs::write(&program, "#!/bin/sh\nexec sleep 3600\n").unwrap();
    chmod(&program, 0o644);
    let config = format!(
        "[[worker]]\nname = \"fixme\"\ncommand = \"{}\"\n",
        program.display()
    );
    let file = tmp.path().join("cluster.toml");
    std::fs::write(&file, config).unwrap();
    let a = Spec::new("a", tmp.path(), "failed-start").start();
    a.cli_ok(&["config", "push", file.to_str().unwrap()]);

    let reason = format!(
        "spawn failed: EACCES (Permission denied): {}",
        program.display()
    );
    a.wait_workers("fixme failed", |w| {
        state_of(w, "fixme").as_deref() == Some("failed")
    });
    let listed = a.get("/v1/workers");
    let fixme = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "fixme")
        .unwrap();
    assert_eq!(fixme["detail"], reason.as_str());
    let table = a.cli_ok(&["workers"]);
    assert!(table.contains("EACCES"), "{table}");

    // Still not executable: `herd start` fails and says why; the worker stays failed.
    let out = a.cli(&["start", "fixme"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );

    a.cli_ok(&["delete", "fixme"]);
    a.wait_workers("fixme deleted", |w| state_of(w, "fixme").is_none());

    chmod(&program, 0o755);
    a.cli_ok(&["start", "fixme"]);
    a.wait_workers("fixme running", |w| running(w, "a", "fixme"));

    // Failed again by a stop and a broken program, then fixed: `herd start` brings it back.
    a.cli_ok(&["stop", "fixme"]);
    a.wait_workers("fixme stopped", |w| {
        state_of(w, "fixme").as_deref() == Some("stopped")
    });
    chmod(&program, 0o644);
    assert!(!a.cli(&["start", "fixme"]).status.success());
    a.wait_workers("fixme failed again", |w| {
        state_of(w, "fixme").as_deref() == Some("failed")
    });
    chmod(&program, 0o755);
    a.cli_ok(&["start", "fixme"]);
    a.wait_workers("fixme running again", |w| running(w, "a", "fixme"));

    // Failed once more; a push that changes its spec replaces it, and it runs.
    a.cli_ok(&["stop", "fixme"]);
    chmod(&program, 0o644);
    assert!(!a.cli(&["start", "fixme"]).status.success());
    chmod(&program, 0o755);
    let changed = format!(
        "[[worker]]\nname = \"fixme\"\ncommand = \"{}\"\nargs = [\"changed\"]\n",
        program.display()
    );
    std::fs::write(&file, changed).unwrap();
    a.cli_ok(&["config", "push", file.to_str().unwrap()]);
    a.wait_workers("fixme running after the push", |w| running(w, "a", "fixme"));
}
