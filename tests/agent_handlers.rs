//! Event handlers against real agents: each `[[handler]]` of the agent file runs once per
//! event it asks for, in the log's order, with the event on stdin (JSON, or Serf's line) and in
//! its environment, a crash included; a slow handler is killed at its timeout, with what it
//! left running, and delays neither another handler nor the agent; a JSON-lines worker with
//! `events = true` hears the events on stdin.

#[path = "support/agent.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use support::*;

/// Writes the agent file `herd.toml` holding `handlers` into `dir`; returns its path.
fn agent_file(dir: &Path, handlers: &str) -> String {
    let path = dir.join("herd.toml");
    std::fs::write(&path, handlers).unwrap();
    path.display().to_string()
}

/// A TOML string for `text` (quotes and backslashes escaped).
fn toml_str(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// The `KEY=VALUE` lines of an `env` dump.
fn env_of(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn wait_file(path: &Path) -> String {
    wait_until(&format!("{}", path.display()), || path.exists());
    let mut text = String::new();
    wait_until(&format!("{} to be written", path.display()), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.ends_with('\n')
    });
    text
}

#[test]
fn handlers_run_once_per_event_in_order_with_the_event_on_stdin_and_in_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let dir = out.display();
    // Records stdin and the HERD_/SERF_ environment by sequence number, then appends the number
    // to `order` (one run at a time: the appends are the runs' order).
    let record = format!(
        "cat > {dir}/$HERD_EVENT_SEQ.json; env | grep -E '^(HERD|SERF)_' > {dir}/$HERD_EVENT_SEQ.env; echo $HERD_EVENT_SEQ >> {dir}/order"
    );
    let serf = format!(
        "cat > {dir}/serf-$HERD_EVENT_SEQ; env | grep -E '^SERF_' > {dir}/serf-$HERD_EVENT_SEQ.env"
    );
    let file = agent_file(
        tmp.path(),
        &format!(
            "[[handler]]\nname = \"record\"\nevents = [\"member-join\", \"member-failed\", \"member-leave\", \"config-adopted\"]\ncommand = \"sh\"\nargs = [\"-c\", {}]\n\n\
             [[handler]]\nname = \"serf\"\nevents = [\"member-join\"]\ncommand = \"sh\"\nargs = [\"-c\", {}]\nformat = \"serf\"\n",
            toml_str(&record),
            toml_str(&serf)
        ),
    );
    let a = Spec::new("a", tmp.path(), "handlers")
        .args(&["--config", &file])
        .start();
    let b = Spec::new("b", tmp.path(), "handlers")
        .seed(&a)
        .tag("role=web")
        .start();
    let c = Spec::new("c", tmp.path(), "handlers").seed(&a).start();
    a.wait_members(3);

    // A JSON-lines worker that hears events: it appends each stdin line to a file.
    let heard = out.join("heard");
    let worker = format!(
        "[[worker]]\nname = \"listener\"\ncommand = \"sh\"\nargs = [\"-c\", {}]\nprotocol = \"jsonl\"\nevents = true\n",
        toml_str(&format!(
            "while read -r line; do echo \"$line\" >> {}; done",
            heard.display()
        ))
    );
    let (status, body) = a.request(
        "PUT",
        "/v1/config",
        Some(&json!({ "toml": worker }).to_string()),
    );
    assert_eq!(status, 200, "{body}");
    wait_until("the listener to run on a", || {
        running(&a.workers(), "a", "listener")
    });

    c.kill();
    let log_has = |event: &str, member: &str| {
        let events = a.get("/v1/events?since=0")["events"]
            .as_array()
            .unwrap()
            .clone();
        events
            .into_iter()
            .find(|e| e["event"] == event && e["member"] == member)
    };
    let mut failed = None;
    wait_until("a to see c fail", || {
        failed = log_has("member-failed", "c");
        failed.is_some()
    });
    let failed = failed.unwrap();
    b.terminate();
    let mut left = None;
    wait_until("a to see b leave", || {
        left = log_has("member-leave", "b");
        left.is_some()
    });
    let left = left.unwrap();

    // The handler's stdin is the event's JSON line and its environment names it.
    for event in [&failed, &left] {
        let seq = event["seq"].as_u64().unwrap();
        let stdin = wait_file(&out.join(format!("{seq}.json")));
        let seen: Value = serde_json::from_str(stdin.trim()).unwrap();
        assert_eq!(&seen, event);
        let env = env_of(&out.join(format!("{seq}.env")));
        assert_eq!(env["HERD_EVENT"], event["event"].as_str().unwrap());
        assert_eq!(env["HERD_NODE_ID"], "a");
        assert_eq!(env["HERD_EVENT_SEQ"], seq.to_string());
        assert_eq!(env["HERD_EVENT_TIME_MS"], event["time_ms"].to_string());
        assert_eq!(env["HERD_MEMBER"], event["member"].as_str().unwrap());
        assert_eq!(env["HERD_MEMBER_ADDR"], event["addr"].as_str().unwrap());
        assert_eq!(env["HERD_REASON"], event["reason"].as_str().unwrap());
        assert!(!env.contains_key("SERF_EVENT"), "{env:?}");
    }
    assert_eq!(failed["reason"], "failed");
    assert_eq!(left["reason"], "graceful");

    // Once per event it asks for, in the log's order: the runs are exactly the matching events.
    let wanted: Vec<u64> = a.get("/v1/events?since=0")["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            [
                "member-join",
                "member-failed",
                "member-leave",
                "config-adopted",
            ]
            .contains(&e["event"].as_str().unwrap())
        })
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let mut runs = Vec::new();
    wait_until("the handler to run for every event it asks for", || {
        runs = std::fs::read_to_string(out.join("order"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.parse::<u64>().unwrap())
            .collect::<Vec<_>>();
        runs.len() >= wanted.len()
    });
    assert_eq!(runs, wanted);
    assert_eq!(
        a.metric(r#"herd_handler_runs_total{handler="record",outcome="ok"}"#),
        wanted.len() as f64
    );

    // Serf's format: NAME\tIP\tROLE\tTAGS, and SERF_EVENT.
    let join_b = a.get("/v1/events?since=0")["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "member-join" && e["member"] == "b")
        .unwrap()
        .clone();
    let seq = join_b["seq"].as_u64().unwrap();
    let line = wait_file(&out.join(format!("serf-{seq}")));
    let tags = join_b["tags"].as_object().unwrap();
    let tags: Vec<String> = tags
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
        .collect();
    assert_eq!(line, format!("b\t127.0.0.1\tweb\t{}\n", tags.join(",")));
    let serf_env = env_of(&out.join(format!("serf-{seq}.env")));
    assert_eq!(serf_env["SERF_EVENT"], "member-join");
    assert_eq!(serf_env["SERF_SELF_NAME"], "a");

    // The events = true worker heard the crash and the leave as {"event": ...} lines (the
    // listeners of b and c write to the same file: a's are a's events).
    let mut lines = Vec::new();
    wait_until("the listener to hear b leave", || {
        lines = std::fs::read_to_string(&heard)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|l| l["event"]["node"] == "a")
            .collect();
        lines.iter().any(|l| l["event"] == left)
    });
    assert!(lines.iter().any(|l| l["event"] == failed), "{lines:?}");
    let seqs: Vec<u64> = lines
        .iter()
        .map(|l| l["event"]["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[test]
fn a_slow_handler_is_killed_at_its_timeout_and_delays_neither_other_handlers_nor_the_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let dir = out.display();
    // Notes when it started and the pid of a child it leaves behind, then hangs.
    let slow = format!(
        "date +%s%N > {dir}/slow-$HERD_EVENT_SEQ.start; sleep 1000 & echo $! > {dir}/slow-$HERD_EVENT_SEQ.bg; sleep 1000"
    );
    // Leaves a child behind and exits at once.
    let fast = format!(
        "sleep 1000 & echo $! > {dir}/fast-$HERD_EVENT_SEQ.bg; echo $HERD_MEMBER > {dir}/fast-$HERD_EVENT_SEQ"
    );
    let file = agent_file(
        tmp.path(),
        &format!(
            "[[handler]]\nname = \"slow\"\nevents = [\"member-join\"]\ncommand = \"sh\"\nargs = [\"-c\", {}]\ntimeout = \"1s\"\n\n\
             [[handler]]\nname = \"fast\"\nevents = [\"member-join\"]\ncommand = \"sh\"\nargs = [\"-c\", {}]\n",
            toml_str(&slow),
            toml_str(&fast)
        ),
    );
    let a = Spec::new("a", tmp.path(), "slow-handlers")
        .args(&["--config", &file])
        .start();
    let b = Spec::new("b", tmp.path(), "slow-handlers").seed(&a).start();
    let c = Spec::new("c", tmp.path(), "slow-handlers").seed(&a).start();
    a.wait_members(3);
    let joins: Vec<u64> = a.get("/v1/events?since=0")["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "member-join")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(joins.len(), 2);

    // The fast handler ran for both joins while the slow one still hung on the first; what it
    // left running was killed when it exited.
    for seq in &joins {
        let member = wait_file(&out.join(format!("fast-{seq}")));
        assert!(["b\n", "c\n"].contains(&member.as_str()), "{member}");
        let bg: u64 = wait_file(&out.join(format!("fast-{seq}.bg")))
            .trim()
            .parse()
            .unwrap();
        wait_until("the fast handler's leftover to be killed", || !alive(bg));
    }
    // The agent answers while a handler hangs.
    assert_eq!(a.request("GET", "/v1/health", None).0, 200);

    // Each slow run was killed at its timeout, its background child with it, and the second
    // ran after the first, not after the 1000 s it asked for.
    let mut starts = Vec::new();
    for seq in &joins {
        let start: u128 = wait_file(&out.join(format!("slow-{seq}.start")))
            .trim()
            .parse()
            .unwrap();
        starts.push(start);
        let bg: u64 = wait_file(&out.join(format!("slow-{seq}.bg")))
            .trim()
            .parse()
            .unwrap();
        wait_until("the slow handler's group to be killed", || !alive(bg));
    }
    let gap_ms = (starts[1] - starts[0]) / 1_000_000;
    assert!(
        (900..20_000).contains(&gap_ms),
        "the second slow run started {gap_ms} ms after the first"
    );
    wait_until("both slow runs to count as timeouts", || {
        a.metric(r#"herd_handler_runs_total{handler="slow",outcome="timeout"}"#) == 2.0
    });
    assert_eq!(
        a.metric(r#"herd_handler_runs_total{handler="fast",outcome="ok"}"#),
        2.0
    );
    assert!(a.log_contains("the handler timed out"));
    drop((b, c));
}

#[test]
fn sighup_replaces_the_handlers_for_the_events_that_follow() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let handler = |name: &str| {
        format!(
            "[[handler]]\nname = \"{name}\"\nevents = [\"member-join\"]\ncommand = \"sh\"\nargs = [\"-c\", {}]\n",
            toml_str(&format!("echo $HERD_MEMBER > {}/{name}-$HERD_MEMBER", out.display()))
        )
    };
    let file = agent_file(tmp.path(), &handler("one"));
    let a = Spec::new("a", tmp.path(), "handlers-hup")
        .args(&["--config", &file])
        .start();
    let _b = Spec::new("b", tmp.path(), "handlers-hup").seed(&a).start();
    wait_file(&out.join("one-b"));

    std::fs::write(&file, handler("two")).unwrap();
    let pid = nix::unistd::Pid::from_raw(a.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(
        a.log_contains("event handlers replaced"),
        "no SIGHUP line in the log"
    );
    let _c = Spec::new("c", tmp.path(), "handlers-hup").seed(&a).start();
    assert_eq!(wait_file(&out.join("two-c")), "c\n");
    // The new handler runs for the events after the SIGHUP only, the old one no more.
    assert!(!out.join("two-b").exists());
    assert!(!out.join("one-c").exists());
    assert!(!a.log_contains("need a restart"));
}

#[test]
fn a_user_event_reaches_every_members_handlers_with_its_name_and_payload() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let dir = out.display();
    let json =
        format!("cat > {dir}/$HERD_NODE_ID.json; env | grep -E '^HERD_' > {dir}/$HERD_NODE_ID.env");
    let serf = format!(
        "cat > {dir}/$SERF_SELF_NAME.serf; env | grep -E '^SERF_' > {dir}/$SERF_SELF_NAME.serf-env"
    );
    let file = agent_file(
        tmp.path(),
        &format!(
            "[[handler]]\nevents = [\"user\"]\ncommand = \"sh\"\nargs = [\"-c\", {}]\n\n\
             [[handler]]\nevents = [\"user\"]\ncommand = \"sh\"\nargs = [\"-c\", {}]\nformat = \"serf\"\n",
            toml_str(&json),
            toml_str(&serf)
        ),
    );
    let a = Spec::new("a", tmp.path(), "user-events")
        .args(&["--config", &file])
        .start();
    let b = Spec::new("b", tmp.path(), "user-events")
        .seed(&a)
        .args(&["--config", &file])
        .start();
    a.wait_members(2);
    b.wait_members(2);

    let sent = b.cli_ok(&["event", "deploy", "v1.2 to canary"]);
    assert!(
        sent.contains("user event deploy sent on 2/2 nodes"),
        "{sent}"
    );
    for node in ["a", "b"] {
        let line: Value =
            serde_json::from_str(wait_file(&out.join(format!("{node}.json"))).trim()).unwrap();
        assert_eq!(
            (
                line["event"].as_str(),
                line["name"].as_str(),
                line["payload"].as_str(),
                line["from"].as_str()
            ),
            (
                Some("user"),
                Some("deploy"),
                Some("v1.2 to canary"),
                Some("b")
            ),
            "{line}"
        );
        wait_file(&out.join(format!("{node}.env")));
        let env = env_of(&out.join(format!("{node}.env")));
        assert_eq!(
            (env["HERD_NAME"].as_str(), env["HERD_PAYLOAD"].as_str()),
            ("deploy", "v1.2 to canary")
        );
        // Serf's form: the payload on stdin, the name in SERF_USER_EVENT.
        let serf_env = out.join(format!("{node}.serf-env"));
        wait_file(&serf_env);
        let serf_env = env_of(&serf_env);
        assert_eq!(
            (
                serf_env["SERF_EVENT"].as_str(),
                serf_env["SERF_USER_EVENT"].as_str()
            ),
            ("user", "deploy")
        );
        assert_eq!(
            std::fs::read_to_string(out.join(format!("{node}.serf"))).unwrap(),
            "v1.2 to canary"
        );
    }

    // Refused before anyone records it: a bad name, an oversized payload.
    let out = a.cli(&["event", "two words"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HTTP 400"),
        "{out:?}"
    );
    let out = a.cli(&["event", "big", &"x".repeat(513)]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("513 bytes; at most 512"),
        "{out:?}"
    );
    let users = a.get("/v1/events?since=0")["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "user")
        .count();
    assert_eq!(users, 1);
}
