//! Pushes are never lost silently, with real `herd agent` processes on loopback: a node that just
//! started judges a push only after it caught up with a peer, so its version is above the
//! cluster's; two pushes at the same version, accepted on two sides of a partition, end with one
//! config everywhere, and the node whose push lost logs it, counts it and its `--wait` names the
//! winner; `--wait` names the nodes still behind when it times out; a node restarted on a stale
//! data dir never starts a worker the cluster removed while it was down.

#[path = "support/agent.rs"]
mod support;

use std::fs;
use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use herd::config::signature::sign;
use herd::config::{SecretKey, VersionedConfig};
use serde_json::json;
use support::*;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A config of one sleeping worker named `name`, sleeping `secs`.
fn sleeper(name: &str, secs: u32) -> String {
    format!("[[worker]]\nname = \"{name}\"\ncommand = \"sleep\"\nargs = [\"{secs}\"]\n")
}

fn checksum(text: &str) -> u64 {
    u64::from(VersionedConfig::new(1, text, "t", 0).unwrap().checksum)
}

fn push(agent: &AgentProc, text: &str) -> serde_json::Value {
    let (status, body) = http(
        "PUT",
        &agent.url("/v1/config"),
        Some(&json!({ "toml": text }).to_string()),
    );
    assert_eq!(status, 200, "push through {}: {body}", agent.id);
    body
}

/// A log line without its colour codes.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Runs `cmd` to its end (bounded); returns (success, stdout, stderr).
fn run(mut cmd: Command) -> (bool, String, String) {
    let out = exit_of({
        cmd.stdin(Stdio::null());
        cmd
    });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_node_that_just_started_pushes_above_the_cluster_version() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "fresh").start();
    for secs in [100, 101, 102] {
        push(&a, &sleeper("s", secs));
    }
    assert_eq!(a.config_id().0, 3);
    // At once, before b has heard from anyone: the push waits until b caught up with a.
    let b = Spec::new("b", tmp.path(), "fresh").seed(&a).start();
    let answer = push(&b, &sleeper("s", 103));
    assert_eq!(answer["version"], 4, "{answer}");
    wait_until("a to hold b's push", || {
        a.config_id() == (4, checksum(&sleeper("s", 103)))
    });
}

#[test]
fn a_push_that_loses_a_tie_is_reported_and_its_wait_names_the_winner() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keypair(tmp.path(), "signer");

    // One side: a, and d, which takes only signed configs, so it stays behind on unsigned ones.
    let a = Spec::new("a", tmp.path(), "lost").start();
    let d = Spec::new("d", tmp.path(), "lost")
        .seed(&a)
        .args(&["--config-signers", &public])
        .start();
    a.wait_members(2);
    let signed = write(tmp.path(), "signed.toml", &sleeper("s", 200));
    a.cli_ok(&[
        "config",
        "push",
        &signed,
        "--sign",
        &key,
        "--cluster-id",
        "lost",
    ]);
    wait_until("d to hold the signed version 1", || d.config_id().0 == 1);

    // The other side: b, alone, at version 2 too. Its config beats a's at that version.
    let b = Spec::new("b", tmp.path(), "lost").start();
    let theirs = sleeper("s", 300);
    let ours = (301..)
        .map(|secs| sleeper("s", secs))
        .find(|text| checksum(text) < checksum(&theirs))
        .unwrap();
    push(&b, &sleeper("s", 299));
    assert_eq!(push(&b, &theirs)["version"], 2);

    // a takes version 2 too and waits: d never takes an unsigned config.
    let file = write(tmp.path(), "ours.toml", &ours);
    let mut waiting = a
        .cli_command(&["config", "push", &file, "--wait", "--timeout", "120s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("a to hold its own version 2", || {
        a.config_id() == (2, checksum(&ours))
    });

    // c joins both sides: one config wins everywhere, and a says its push was superseded.
    let c = Spec::new("c", tmp.path(), "lost").seed(&a).seed(&b).start();
    for agent in [&a, &b, &c] {
        wait_until(&format!("{} to hold b's version 2", agent.id), || {
            agent.config_id() == (2, checksum(&theirs))
        });
    }
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = waiting.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "--wait did not end");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    waiting
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "a lost push must fail --wait: {stderr}");
    assert!(
        stderr.contains("superseded")
            && stderr.contains("version 2")
            && stderr.contains("through b"),
        "{stderr}"
    );
    assert!(
        stderr.contains("behind: d"),
        "it said whom it waited for: {stderr}"
    );
    wait_until("a's log to report the lost push", || {
        a.log_contains("superseded by a concurrent push")
    });
    let line = a
        .log
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("superseded by a concurrent push"))
        .map(|l| plain(l))
        .unwrap();
    for field in [
        "version=2",
        &format!("checksum={}", checksum(&ours)),
        "winner_version=2",
        "winner_pushed_by=b",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    assert_eq!(a.metric("herd_config_superseded_total"), 1.0);
    assert_eq!(b.metric("herd_config_superseded_total"), 0.0);
    assert_eq!(d.config_id().0, 1, "d still refuses unsigned configs");

    // Timing out names the nodes still behind (those the agent asked lists as members).
    c.wait_members(4);
    let later = write(tmp.path(), "later.toml", &sleeper("s", 400));
    let (ok, _, stderr) =
        run(c.cli_command(&["config", "push", &later, "--wait", "--timeout", "1s"]));
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("timed out") && stderr.contains("still behind: d (at version 1)"),
        "{stderr}"
    );

    // A push every node takes: --wait succeeds once all four hold it and run its workers.
    let last = write(tmp.path(), "last.toml", &sleeper("s", 500));
    let (ok, stdout, stderr) = run(a.cli_command(&[
        "config",
        "push",
        &last,
        "--sign",
        &key,
        "--cluster-id",
        "lost",
        "--wait",
    ]));
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("version 4 runs on every node (4)"),
        "{stdout}"
    );
    assert_eq!(d.config_id(), (4, checksum(&sleeper("s", 500))));
}

#[test]
fn at_the_largest_version_a_push_is_refused_and_nothing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = keypair(tmp.path(), "signer");
    let secret = SecretKey::from_file_text(&fs::read_to_string(&key).unwrap()).unwrap();
    let a = Spec::new("a", tmp.path(), "max").start();
    let text = sleeper("s", 600);
    let signature = sign(&secret, "max", u64::MAX, &text).to_text();
    let body = json!({ "toml": text, "version": u64::MAX, "signature": signature });
    let (status, answer) = http("PUT", &a.url("/v1/config"), Some(&body.to_string()));
    assert_eq!(status, 200, "{answer}");
    let held = a.config_id();
    assert_eq!(held.0, u64::MAX);

    let (status, answer) = http(
        "PUT",
        &a.url("/v1/config"),
        Some(&json!({ "toml": sleeper("s", 601) }).to_string()),
    );
    assert_eq!(status, 409, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("18446744073709551615"), "{error}");
    let file = write(tmp.path(), "next.toml", &sleeper("s", 602));
    let (ok, _, stderr) = run(a.cli_command(&["config", "push", &file]));
    assert!(!ok && stderr.contains("the largest there is"), "{stderr}");
    assert_eq!(a.config_id(), held, "nothing changed");
}

#[test]
fn a_node_restarted_on_a_stale_disk_never_starts_a_worker_the_cluster_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let marks = tmp.path().join("marks");
    fs::create_dir(&marks).unwrap();
    let doomed = format!(
        "[[worker]]\nname = \"doomed\"\ncommand = \"sh\"\nargs = [\"-c\", \"echo started >> {}/doomed-$HERD_NODE_ID; exec sleep 3600\"]\n",
        marks.display()
    );
    let keeper = sleeper("keeper", 3600);
    let a = Spec::new("a", tmp.path(), "stale").start();
    let b = Spec::new("b", tmp.path(), "stale").seed(&a).start();
    let c_spec = Spec::new("c", tmp.path(), "stale").seed(&a).seed(&b);
    let c = c_spec.start();
    for agent in [&a, &b, &c] {
        agent.wait_members(3);
    }
    push(&a, &format!("{doomed}\n{keeper}"));
    a.wait_workers("doomed and keeper everywhere", |w| {
        ["a", "b", "c"]
            .iter()
            .all(|n| running(w, n, "doomed") && running(w, n, "keeper"))
    });
    let mark = marks.join("doomed-c");
    assert!(mark.exists(), "the marker works");

    c.terminate();
    fs::remove_file(&mark).unwrap();
    let removed = push(&a, &keeper);
    assert_eq!(removed["version"], 2);
    b.wait_workers("doomed gone from a and b", |w| {
        find(w, "a", "doomed").is_none() && find(w, "b", "doomed").is_none()
    });

    // c comes back on its old data dir, which still holds version 1 with doomed.
    let c = c_spec.start();
    wait_until("c to adopt version 2", || c.config_id().0 == 2);
    c.wait_workers("c's keeper", |w| running(w, "c", "keeper"));
    assert!(
        !mark.exists(),
        "doomed ran on c from the stale disk: {:#?}",
        c.log.lock().unwrap()
    );
    let log = c.log.lock().unwrap().clone();
    assert!(
        !log.iter()
            .any(|l| l.contains("worker started") && l.contains("doomed")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("the cluster's config supersedes the one on disk")),
        "{log:#?}"
    );
    assert!(find(&c.workers(), "c", "doomed").is_none());
}
