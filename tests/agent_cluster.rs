//! One cluster from any node: worker actions and calls through one agent's API and CLI reach
//! workers on every agent (over the RPC layer), per node or everywhere, with 404 for what does
//! not exist and 503 for a node that cannot be reached.

#[path = "support/agent.rs"]
mod support;

use serde_json::json;
use support::*;

fn config() -> String {
    let resizer = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/workers/resizer.py");
    format!(
        "[[worker]]\nname = \"resizer\"\ncommand = \"python3\"\nargs = [\"{resizer}\"]\nprotocol = \"jsonl\"\n\n\
         [[worker]]\nname = \"sleeper\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n"
    )
}

fn pid(workers: &[(String, String, String, Option<u64>)], node: &str, name: &str) -> u64 {
    find(workers, node, name).and_then(|(_, pid)| pid).unwrap()
}

#[test]
fn actions_and_calls_through_one_agent_reach_workers_on_every_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "anywhere").start();
    let b = Spec::new("b", tmp.path(), "anywhere").seed(&a).start();
    let c = Spec::new("c", tmp.path(), "anywhere").seed(&a).start();
    for agent in [&a, &b, &c] {
        agent.wait_members(3);
    }
    let (status, body) = http(
        "PUT",
        &a.url("/v1/config"),
        Some(&json!({ "toml": config() }).to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let all_running = |w: &[(String, String, String, Option<u64>)]| {
        ["a", "b", "c"]
            .iter()
            .all(|n| running(w, n, "resizer") && running(w, n, "sleeper"))
    };
    let before = a.wait_workers("every worker running", all_running);

    // Restart b's sleeper from a: only b's changes.
    let out = a.cli_ok(&["restart", "sleeper", "--node", "b"]);
    assert!(out.contains("restarted sleeper on b"), "{out}");
    let after = a.wait_workers("b's new sleeper", |w| {
        all_running(w) && pid(w, "b", "sleeper") != pid(&before, "b", "sleeper")
    });
    assert_eq!(pid(&after, "a", "sleeper"), pid(&before, "a", "sleeper"));
    assert_eq!(pid(&after, "c", "sleeper"), pid(&before, "c", "sleeper"));

    // Without node= or all=: only the agent's own node (c), never the whole cluster.
    let (status, body) = http("POST", &c.url("/v1/workers/sleeper/restart"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["results"][0]["node"], "c", "{body}");
    let here = a.wait_workers("c's sleeper replaced", |w| {
        all_running(w) && pid(w, "c", "sleeper") != pid(&after, "c", "sleeper")
    });
    assert_eq!(pid(&here, "a", "sleeper"), pid(&after, "a", "sleeper"));
    assert_eq!(pid(&here, "b", "sleeper"), pid(&after, "b", "sleeper"));
    // node= and all= together, or a bad all=: 400, naming them.
    for query in ["?node=a&all=true", "?all=yes"] {
        let (status, body) = http(
            "POST",
            &c.url(&format!("/v1/workers/sleeper/restart{query}")),
            None,
        );
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"].as_str().unwrap().contains("all"), "{body}");
    }
    // all=true: every node that runs it, reported per node.
    let (status, body) = http("POST", &c.url("/v1/workers/sleeper/restart?all=true"), None);
    assert_eq!(status, 200, "{body}");
    let nodes: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["a", "b", "c"], "{body}");
    a.wait_workers("every sleeper replaced", |w| {
        all_running(w)
            && ["a", "b", "c"]
                .iter()
                .all(|n| pid(w, n, "sleeper") != pid(&here, n, "sleeper"))
    });
    // The CLI prints the state each node's own answer gave, not a gossip view.
    let out = b.cli_ok(&["stop", "sleeper"]);
    assert_eq!(out.trim(), "stopped sleeper on b: stopped", "{out}");
    let out = b.cli_ok(&["start", "sleeper"]);
    assert!(out.starts_with("started sleeper on b: "), "{out}");
    // A rolling restart, node by node: each new process running before the next.
    let before_roll = a.wait_workers("b's sleeper back", |w| running(w, "b", "sleeper"));
    let out = a.cli_ok(&["restart", "sleeper", "--rolling", "--ready-timeout", "20s"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for (i, node) in ["a", "b", "c"].iter().enumerate() {
        assert!(
            lines[i].starts_with(&format!("restarted sleeper on {node}: running (pid "))
                && lines[i].ends_with(&format!("[{}/3]", i + 1)),
            "{out}"
        );
    }
    a.wait_workers("every sleeper rolled", |w| {
        all_running(w)
            && ["a", "b", "c"]
                .iter()
                .all(|n| pid(w, n, "sleeper") != pid(&before_roll, n, "sleeper"))
    });

    // Stop and start on another node.
    a.cli_ok(&["stop", "sleeper", "--node", "c"]);
    a.wait_workers("c's sleeper stopped", |w| {
        find(w, "c", "sleeper").is_some_and(|(s, _)| s == "stopped")
    });
    a.cli_ok(&["start", "sleeper", "--node", "c"]);
    a.wait_workers("c's sleeper running", |w| running(w, "c", "sleeper"));

    // Calls: on a named node, and on any node running the worker.
    let (status, body) = http(
        "POST",
        &a.url("/v1/workers/resizer/call"),
        Some(r#"{"method": "resize", "params": {"w": 1920, "h": 1080, "max": 64}, "node": "b"}"#),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["node"].as_str(), &body["result"]),
        (Some("b"), &json!({"w": 64, "h": 36}))
    );
    let out = b.cli_ok(&[
        "call",
        "resizer",
        "resize",
        r#"{"w": 100, "h": 50, "max": 10}"#,
        "--node",
        "c",
    ]);
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result, json!({"w": 10, "h": 5}));
    let out = c.cli_ok(&["call", "resizer", "ping"]);
    assert!(out.contains("pong"), "{out}");
    let out = a.cli(&["call", "resizer", "no_such_method", "{}", "--node", "b"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_method"));

    // What does not exist: 404, naming it.
    for (method, path, body) in [
        ("POST", "/v1/workers/sleeper/restart?node=nobody", None),
        ("POST", "/v1/workers/ghost/restart?node=b", None),
        ("POST", "/v1/workers/ghost/call", Some(r#"{"method": "x"}"#)),
        (
            "POST",
            "/v1/workers/resizer/call",
            Some(r#"{"method": "ping", "node": "nobody"}"#),
        ),
    ] {
        let (status, answer) = http(method, &a.url(path), body);
        assert_eq!(status, 404, "{path}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains("nobody") || error.contains("ghost"),
            "{path}: {error}"
        );
    }
    let (status, answer) = http(
        "POST",
        &a.url("/v1/workers/resizer/call"),
        Some(r#"{"method": "ping", "colour": 1}"#),
    );
    assert_eq!(status, 400, "{answer}");

    // Those calls show in a's metrics.
    let (status, metrics) = http("GET", &a.url("/metrics"), None);
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_string();
    let ok_calls = metrics
        .lines()
        .find(|l| {
            l.starts_with("herd_rpc_calls_total{")
                && l.contains("kind=\"call\"")
                && l.contains("outcome=\"ok\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(ok_calls.is_some_and(|n| n >= 3.0), "{metrics}");

    // A node that cannot be reached (killed, not yet declared failed): 503, naming it.
    c.kill();
    let (status, answer) = http("POST", &a.url("/v1/workers/sleeper/restart?node=c"), None);
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("\"c\""),
        "{answer}"
    );
}
