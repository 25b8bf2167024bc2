//! Cluster keys on real `herd agent` processes: strangers without the key (or with another) stay
//! out, a rotation with `herd keys` keeps every member, a plain cluster migrates to encryption
//! without a failure, a plain RPC frame is refused, and plain gossip off loopback does not start.

#[path = "support/agent.rs"]
mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

use support::*;

/// A new key from `herd keygen`, written to `dir/name`; returns the path and the key.
fn key_file(dir: &Path, name: &str) -> (PathBuf, String) {
    let out = std::process::Command::new(HERD)
        .arg("keygen")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let path = dir.join(name);
    std::fs::write(&path, format!("{key}\n")).unwrap();
    (path, key)
}

fn keyed(spec: Spec, key: &Path) -> Spec {
    spec.args(&["--encrypt-key-file", key.to_str().unwrap()])
}

/// The sum of every series of metric `name` whose labels contain `labels` ("" for all).
fn metric(agent: &AgentProc, name: &str, labels: &str) -> f64 {
    let (status, body) = http("GET", &agent.url("/metrics"), None);
    assert_eq!(status, 200);
    body.as_str()
        .unwrap()
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn member_ids(agent: &AgentProc) -> Vec<String> {
    agent
        .get("/v1/members")
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

fn push(agent: &AgentProc, toml: &str) -> u64 {
    let (status, body) = http(
        "PUT",
        &agent.url("/v1/config"),
        Some(&json!({ "toml": toml }).to_string()),
    );
    assert_eq!(status, 200, "{body}");
    body["version"].as_u64().unwrap()
}

fn config_version(agent: &AgentProc) -> u64 {
    agent.get("/v1/health")["config_version"].as_u64().unwrap()
}

/// SIGTERMs the agent (by pid) and waits for it to leave and exit.
fn stop(mut agent: AgentProc) {
    kill(Pid::from_raw(agent.child.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + WAIT;
    while agent.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{} did not stop", agent.id);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn all_see(agents: &[&AgentProc], n: usize) {
    for agent in agents {
        agent.wait_members(n);
    }
}

fn sleeper_everywhere(agent: &AgentProc, nodes: &[&str]) {
    agent.wait_workers("a sleeper on every node", |w| {
        nodes.iter().all(|n| running(w, n, "sleeper"))
    });
}

#[test]
fn agents_without_the_key_or_with_another_stay_out_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = key_file(tmp.path(), "key");
    let (other, _) = key_file(tmp.path(), "other");
    let a = keyed(Spec::new("a", tmp.path(), "keys"), &key).start();
    let plain = Spec::new("plain", tmp.path(), "keys").seed(&a).start();
    let stranger = keyed(Spec::new("stranger", tmp.path(), "keys"), &other)
        .seed(&a)
        .start();
    // b also has the strangers as seeds, so they hear from the keyed side too.
    let b = keyed(Spec::new("b", tmp.path(), "keys"), &key)
        .seed(&a)
        .seed(&plain)
        .seed(&stranger)
        .start();
    all_see(&[&a, &b], 2);
    wait_until("a to drop plain and foreign-key gossip", || {
        metric(&a, "herd_gossip_rejected_total", "reason=\"plaintext\"") > 0.0
            && metric(&a, "herd_gossip_rejected_total", "reason=\"unknown_key\"") > 0.0
    });
    wait_until("the stranger to drop the keyed side's gossip", || {
        stranger.log_contains("which this node does not hold")
    });

    // A config pushed through the plain agent: it takes it, the keyed agents never do.
    assert_eq!(push(&plain, ONE_SLEEPER), 1);
    let dropped = metric(&a, "herd_gossip_rejected_total", "reason=\"plaintext\"");
    wait_until("a to drop more of the plain agent's gossip", || {
        metric(&a, "herd_gossip_rejected_total", "reason=\"plaintext\"") >= dropped + 3.0
    });
    for agent in [&a, &b] {
        assert_eq!(member_ids(agent), ["a", "b"], "{}", agent.id);
        assert_eq!(config_version(agent), 0, "{}", agent.id);
        assert!(agent.workers().is_empty(), "{}", agent.id);
    }
    // An agent without a keyring answers key requests with a clear error.
    let (status, body) = plain.request("GET", "/v1/keys", None);
    assert_eq!(status, 409);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("--encrypt-key-file"),
        "{body}"
    );
    // The data dir holds the keyring, owner-only.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(a.data_dir.join("keyring"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_rotation_with_herd_keys_keeps_every_member_and_locks_out_the_old_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, old_key) = key_file(tmp.path(), "old");
    // An agent that ran with the old key alone and stopped before the rotation.
    let mut late_spec = keyed(Spec::new("late", tmp.path(), "rot"), &old);
    let late = late_spec.start();
    let late_addr = late.gossip.to_string();
    stop(late);
    // Restarted on the same address later, where e keeps looking for its seed.
    late_spec.listen = Some(late_addr.clone());

    let a = keyed(Spec::new("a", tmp.path(), "rot"), &old).start();
    let mut agents = vec![a];
    for id in ["b", "c", "d", "e"] {
        let mut spec = keyed(Spec::new(id, tmp.path(), "rot"), &old).seed(&agents[0]);
        if id == "e" {
            spec = spec.seed_addr(&late_addr);
        }
        agents.push(spec.start());
    }
    let all: Vec<&AgentProc> = agents.iter().collect();
    all_see(&all, 5);
    let a = &agents[0];

    let (_, new_key) = key_file(tmp.path(), "new");
    let installed = a.cli_ok(&["keys", "install", &new_key]);
    assert!(installed.contains("installed on 5/5 nodes"), "{installed}");
    let listed = a.cli_ok(&["keys", "list"]);
    assert!(
        !listed.contains(&new_key) && !listed.contains(&old_key),
        "{listed}"
    );
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(
        lines.iter().any(|l| l.ends_with("5/5 nodes  5/5 nodes")),
        "{listed}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with("5/5 nodes  0/5 nodes")),
        "{listed}"
    );

    // The old key is still every node's primary: removing it is refused, and nothing changes.
    let refused = a.cli(&["keys", "remove", &old_key]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("still the primary key of a, b, c, d, e"),
        "{stderr}"
    );
    let keys = a.get("/v1/keys");
    assert!(keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["nodes"] == 5));

    let used = a.cli_ok(&["keys", "use", &new_key]);
    assert!(used.contains("used on 5/5 nodes"), "{used}");
    all_see(&all, 5);
    let removed = agents[2].cli_ok(&["keys", "remove", &old_key]);
    assert!(removed.contains("removed on 5/5 nodes"), "{removed}");
    all_see(&all, 5);
    for agent in &agents {
        assert_eq!(
            metric(agent, "herd_member_leaves_total", ""),
            0.0,
            "{}",
            agent.id
        );
        let saved = std::fs::read_to_string(agent.data_dir.join("keyring")).unwrap();
        assert!(saved.contains(&new_key) && !saved.contains(&old_key));
    }
    push(a, ONE_SLEEPER);
    sleeper_everywhere(a, &["a", "b", "c", "d", "e"]);

    // The agent that slept through it holds only the old key.
    let late = late_spec.seed(a).start();
    wait_until(
        "the late agent to see datagrams sealed with a key it lacks",
        || late.log_contains("which this node does not hold"),
    );
    wait_until("a to drop the late agent's old-key gossip", || {
        metric(a, "herd_gossip_rejected_total", "reason=\"unknown_key\"") > 0.0
    });
    for agent in &agents {
        assert!(!member_ids(agent).contains(&"late".to_string()));
    }
}

#[test]
fn a_plain_cluster_migrates_to_encryption_without_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = key_file(tmp.path(), "key");
    let ids = ["a", "b", "c"];
    let mut agents: Vec<AgentProc> = Vec::new();
    for id in ids {
        let mut spec = Spec::new(id, tmp.path(), "migrate");
        if let Some(first) = agents.first() {
            spec = spec.seed(first);
        }
        agents.push(spec.start());
    }
    all_see(&agents.iter().collect::<Vec<_>>(), 3);
    for step in [
        vec!["--encrypt-verify-incoming=false"],
        vec!["--encrypt-verify-incoming=true"],
    ] {
        for (i, id) in ids.iter().enumerate() {
            let old = agents.remove(i);
            stop(old);
            let mut spec = keyed(Spec::new(id, tmp.path(), "migrate"), &key).args(&step);
            for other in &agents {
                spec = spec.seed(other);
            }
            agents.insert(i, spec.start());
            all_see(&agents.iter().collect::<Vec<_>>(), 3);
            for agent in &agents {
                assert_eq!(
                    metric(agent, "herd_member_leaves_total", "reason=\"failed\""),
                    0.0,
                    "{} after restarting {} with {step:?}",
                    agent.id,
                    id
                );
            }
        }
    }
    push(&agents[1], ONE_SLEEPER);
    sleeper_everywhere(&agents[0], &ids);
    for agent in &agents {
        assert_eq!(
            metric(agent, "herd_member_leaves_total", "reason=\"failed\""),
            0.0
        );
    }
}

#[test]
fn a_plain_rpc_frame_is_refused_and_not_acted_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = key_file(tmp.path(), "key");
    let a = keyed(Spec::new("a", tmp.path(), "rpc"), &key).start();
    push(&a, ONE_SLEEPER);
    let workers = a.wait_workers("the sleeper", |w| running(w, "a", "sleeper"));
    let pid = find(&workers, "a", "sleeper").unwrap().1;

    // An old-style plain System frame asking for a restart: u32 len | u8 kind | u64 id | body.
    let body = json!({ "Action": { "worker": "sleeper", "action": "restart" } }).to_string();
    let mut frame = ((9 + body.len()) as u32).to_be_bytes().to_vec();
    frame.push(3);
    frame.extend_from_slice(&7u64.to_be_bytes());
    frame.extend_from_slice(body.as_bytes());
    let mut conn = TcpStream::connect(a.rpc).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    conn.write_all(&frame).unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer); // EOF or reset: closed either way
    assert!(answer.len() < 200, "an answer to a plain frame: {answer:?}");
    wait_until("the refusal to be counted", || {
        metric(&a, "herd_rpc_rejected_total", "") > 0.0
    });
    let workers = a.workers();
    assert_eq!(find(&workers, "a", "sleeper").unwrap().1, pid);
}

#[test]
fn plain_gossip_off_loopback_does_not_start() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = Spec::new("open", tmp.path(), "open");
    spec.listen = Some("0.0.0.0:0".into());
    let mut child = spec
        .command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent started gossiping in plaintext on 0.0.0.0");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("--encrypt-key-file") && stderr.contains("--allow-plaintext"),
        "{stderr}"
    );
    assert!(!tmp.path().join("open").exists(), "it wrote its data dir");
}
