//! The agent's event stream against real agents: members joining, failing and leaving, a
//! crashing worker's exits and restarts, a config adopted by push and by gossip, each in
//! `GET /v1/events` and `herd events`, numbered without gaps so a reader resumes from `since`.

#[path = "support/agent.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// Every event `agent` holds after number `since`.
fn events(agent: &AgentProc, since: u64) -> Vec<Value> {
    let answer = agent.get(&format!("/v1/events?since={since}"));
    assert_eq!(answer["missed"], 0, "{answer}");
    answer["events"].as_array().unwrap().clone()
}

/// Waits until `agent` holds an event named `name` whose fields match `fields`; returns it.
fn wait_event(agent: &AgentProc, name: &str, fields: &[(&str, Value)]) -> Value {
    let mut found = None;
    wait_until(&format!("{} to record {name} {fields:?}", agent.id), || {
        found = events(agent, 0)
            .into_iter()
            .find(|e| e["event"] == name && fields.iter().all(|(k, v)| e[*k] == *v));
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn members_workers_and_configs_are_recorded_in_order_and_a_reader_resumes_without_a_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "events").start();
    let b = Spec::new("b", tmp.path(), "events").seed(&a).start();
    let c = Spec::new("c", tmp.path(), "events").seed(&a).start();
    for agent in [&a, &b, &c] {
        agent.wait_members(3);
    }
    for member in ["b", "c"] {
        let join = wait_event(&a, "member-join", &[("member", json!(member))]);
        assert_eq!(join["node"], "a");
        assert!(
            join["addr"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{join}"
        );
    }

    // A follower from the start, through the CLI, in JSON.
    let mut follower = a
        .cli_command(&["events", "--json", "--since", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel::<Value>();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                return;
            }
        }
    });

    // A worker that exits with status 3 after 0.2 s: it exits and is restarted, again and again.
    let config = "[[worker]]\nname = \"flaky\"\ncommand = \"sh\"\nargs = [\"-c\", \"sleep 0.2; exit 3\"]\nmax_restarts = 1000\n";
    let (status, body) = a.request(
        "PUT",
        "/v1/config",
        Some(&json!({ "toml": config }).to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let version = body["version"].clone();
    let adopted = wait_event(&a, "config-adopted", &[("version", version.clone())]);
    assert_eq!(
        (adopted["via"].as_str(), adopted["pushed_by"].as_str()),
        (Some("push"), Some("a"))
    );
    let adopted = wait_event(&b, "config-adopted", &[("version", version.clone())]);
    assert_eq!(adopted["via"], "gossip", "{adopted}");
    let exited = wait_event(&b, "worker-exited", &[("worker", json!("flaky"))]);
    assert!(exited["exit"].as_str().unwrap().contains('3'), "{exited}");
    wait_event(&b, "worker-restarting", &[("worker", json!("flaky"))]);
    // For one run of the worker: started, then exited with its pid.
    let all = events(&a, 0);
    let started = all
        .iter()
        .find(|e| e["event"] == "worker-started" && e["worker"] == "flaky")
        .unwrap();
    let exit = all
        .iter()
        .find(|e| e["event"] == "worker-exited" && e["pid"] == started["pid"]);
    if let Some(exit) = exit {
        assert!(exit["seq"].as_u64() > started["seq"].as_u64());
    }

    // A member that crashes, then one that leaves.
    c.kill();
    let failed = wait_event(&a, "member-failed", &[("member", json!("c"))]);
    assert_eq!(failed["reason"], "failed", "{failed}");
    b.terminate();
    let left = wait_event(&a, "member-leave", &[("member", json!("b"))]);
    assert_eq!(left["reason"], "graceful", "{left}");

    // The log is numbered from 1 without a gap, in time order.
    let all = events(&a, 0);
    for (i, event) in all.iter().enumerate() {
        assert_eq!(event["seq"], json!(i as u64 + 1), "{event}");
    }
    assert!(all
        .windows(2)
        .all(|w| w[0]["time_ms"].as_u64() <= w[1]["time_ms"].as_u64()));

    // Resuming from the middle gives exactly the rest.
    let middle = all.len() as u64 / 2;
    let rest = events(&a, middle);
    assert_eq!(rest.as_slice(), &all[middle as usize..]);
    let answer = a.get(&format!("/v1/events?since={middle}"));
    assert_eq!(answer["next"], all.last().unwrap()["seq"]);

    // The follower saw the same events, in the same order.
    let newest = all.last().unwrap()["seq"].as_u64().unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < newest as usize {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(event) => seen.push(event),
            Err(_) => panic!("the follower saw {} of {newest} events", seen.len()),
        }
    }
    assert_eq!(&seen[..], &all[..]);
    let _ = follower.kill();
    let _ = follower.wait();

    // The text form: one line per event, naming it and its fields.
    let text = a.cli_ok(&["events", "--once"]);
    assert!(
        text.lines()
            .any(|l| l.contains("member-failed") && l.contains("member=c")),
        "{text}"
    );
    // A bad `since` is a 400 naming it.
    let (status, body) = a.request("GET", "/v1/events?since=x", None);
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("since"), "{body}");
}
