//! The CLI's manners against real agents: a closed stdout ends it quietly with status 0, exit
//! status 2 for a usage error and 3 for a partial outcome (a rolling restart that stopped at a
//! node whose worker did not come back, naming it), shell completions, and the exit codes in
//! `herd --help`.

#[path = "support/agent.rs"]
mod support;

use std::process::Stdio;

use serde_json::json;
use support::*;

#[test]
fn a_closed_stdout_ends_the_cli_quietly_and_usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "manners").start();
    for verb in [
        &["status"][..],
        &["members"],
        &["workers"],
        &["config", "show"],
    ] {
        // The reading end is closed before the CLI starts: its first write fails with EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = a
            .cli_command(verb)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "herd {verb:?}: {stderr}");
        assert!(stderr.is_empty(), "herd {verb:?}: {stderr}");
    }
    let out = a.cli(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = a.cli(&["restart", "x", "--rolling", "--node", "a"]);
    assert_eq!(out.status.code(), Some(2), "--rolling with --node");
    let help = a.cli_ok(&["--help"]);
    assert!(
        help.contains("Exit status: 0 all done; 1 an error"),
        "{help}"
    );
    assert!(help.contains("3 partial"), "{help}");
    for shell in ["bash", "zsh", "fish"] {
        let script = a.cli_ok(&["completions", shell]);
        assert!(
            script.contains("herd") && script.contains("restart") && script.contains("rolling"),
            "{shell}: {script}"
        );
    }
}

#[test]
fn a_rolling_restart_stops_at_the_first_node_whose_worker_does_not_come_back_and_exits_3() {
    let tmp = tempfile::tempdir().unwrap();
    // Ready (a JSON line on stdout) everywhere but on b.
    let script = tmp.path().join("ready_but_b.py");
    std::fs::write(
        &script,
        "import os, sys\nif os.environ.get('HERD_NODE_ID') != 'b':\n    print('{\"ready\": true}', flush=True)\nfor line in sys.stdin:\n    pass\n",
    )
    .unwrap();
    let a = Spec::new("a", tmp.path(), "rolling").start();
    let b = Spec::new("b", tmp.path(), "rolling").seed(&a).start();
    let c = Spec::new("c", tmp.path(), "rolling").seed(&a).start();
    for agent in [&a, &b, &c] {
        agent.wait_members(3);
    }
    let config = format!(
        "[[worker]]\nname = \"svc\"\ncommand = \"python3\"\nargs = [\"{}\"]\nprotocol = \"jsonl\"\nready = {{ jsonl = true }}\nready_timeout = \"5m\"\n",
        script.display()
    );
    let (status, body) = http(
        "PUT",
        &a.url("/v1/config"),
        Some(&json!({ "toml": config }).to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let before = a.wait_workers("svc on every node (starting on b)", |w| {
        running(w, "a", "svc")
            && running(w, "c", "svc")
            && find(w, "b", "svc").is_some_and(|(state, pid)| state == "starting" && pid.is_some())
    });
    let out = c.cli(&["restart", "svc", "--rolling", "--ready-timeout", "2s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("restarted svc on a: running (pid ") && stdout.lines().count() == 1,
        "{stdout}"
    );
    assert!(
        stderr.contains("b's svc did not come back within 2s (starting")
            && stderr.contains("restarted 1 of 3 node(s) (a)"),
        "{stderr}"
    );
    // c was never restarted: the same process.
    let after = a.workers();
    assert_eq!(find(&after, "c", "svc"), find(&before, "c", "svc"));
    assert_ne!(find(&after, "a", "svc"), find(&before, "a", "svc"));
}
