//! Worker output under stress and on any node, with real `herd agent` processes: a worker
//! printing about 10 MB/s beside an agent whose stderr nobody reads never slows another
//! worker's restart nor the API; log files rotate and keep their order; `herd logs` reads and
//! follows a worker on another agent; bad logs requests are refused clearly.

#[path = "support/agent.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use support::*;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Prints 100-byte lines at about 10 MB/s (1,000 lines every 10 ms).
const CHATTY_PY: &str = r#"
import sys, time
block = ("x" * 99 + "\n") * 1000
out = sys.stdout
while True:
    started = time.monotonic()
    out.write(block)
    out.flush()
    left = 0.01 - (time.monotonic() - started)
    if left > 0:
        time.sleep(left)
"#;

/// The value of an unlabelled counter (or the first sample of `name`) in a scrape.
fn metric(agent: &AgentProc, name: &str) -> Option<f64> {
    let (_, body) = agent.request("GET", "/metrics", None);
    let text = body.as_str().unwrap_or_default().to_string();
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Reads pids written one per line to the FIFO at `path`, on a thread; the FIFO is held open
/// for writing too, so it never reads end of file between workers.
fn pids(path: &Path) -> mpsc::Receiver<u64> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            if let Ok(pid) = line.trim().parse() {
                if tx.send(pid).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

#[test]
fn a_chatty_worker_and_a_blocked_stderr_never_slow_a_restart_or_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("pids");
    let started = pids(&fifo);
    let chatty = write(tmp.path(), "chatty.py", CHATTY_PY);
    let agent = Spec::new("a", tmp.path(), "chatty").stderr_unread().start();
    let config = format!(
        r#"
[[worker]]
name = "chatty"
command = "python3"
args = ["{chatty}"]

[[worker]]
name = "stamp"
command = "sh"
args = ["-c", "echo $$ > {fifo}; exec sleep 3600"]
max_restarts = 1000
"#,
        fifo = fifo.display()
    );
    let file = write(tmp.path(), "cluster.toml", &config);
    agent.cli_ok(&["config", "push", &file]);
    let mut pid = started.recv_timeout(WAIT).expect("stamp started");
    // The agent's stderr is full and blocked: its own log is dropping lines.
    wait_until("the agent's log to drop lines", || {
        metric(&agent, "herd_log_dropped_total").is_some_and(|n| n > 0.0)
    });
    wait_until("the chatty worker's output to be read", || {
        metric(&agent, "herd_worker_output_lines_total{worker=\"chatty\"}")
            .is_some_and(|n| n > 100_000.0)
    });

    let mut took = Vec::new();
    for _ in 0..7 {
        let t0 = Instant::now();
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        let new = started.recv_timeout(WAIT).expect("stamp restarted");
        took.push(t0.elapsed());
        assert_ne!(new, pid);
        pid = new;
        let t = Instant::now();
        let (status, body) = agent.request("GET", "/v1/health", None);
        assert_eq!(status, 200, "{body}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "health took {:?}",
            t.elapsed()
        );
    }
    took.sort();
    let median = took[took.len() / 2];
    eprintln!("restarts beside a chatty worker, agent stderr blocked: {took:?}");
    assert!(median < Duration::from_millis(100), "{took:?}");
    // The dropped lines were counted, and the agent still answers.
    assert!(metric(&agent, "herd_log_dropped_total").unwrap() > 0.0);
    assert!(metric(
        &agent,
        "herd_worker_output_dropped_total{worker=\"chatty\"}"
    )
    .is_some());
}

#[test]
fn worker_log_files_rotate_keep_at_most_keep_plus_one_and_stay_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    let agent = Spec::new("a", tmp.path(), "rotation")
        .args(&["--log-dir", logs.to_str().unwrap()])
        .start();
    let config = r#"
[[worker]]
name = "counter"
command = "sh"
args = ["-c", "seq 1 5000; exec sleep 3600"]
log = { max_size = "16KB", keep = 2 }
"#;
    let file = write(tmp.path(), "cluster.toml", config);
    agent.cli_ok(&["config", "push", &file]);
    let files = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&logs)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let current = logs.join("counter.log");
    wait_until("the last line in the log file", || {
        assert!(
            files().len() <= 3,
            "more than keep + 1 files: {:?}",
            files()
        );
        std::fs::read_to_string(&current).is_ok_and(|t| t.ends_with(" stdout 5000\n"))
    });
    assert_eq!(files(), ["counter.log", "counter.log.1", "counter.log.2"]);
    let mut numbers = Vec::new();
    for name in ["counter.log.2", "counter.log.1", "counter.log"] {
        let text = std::fs::read_to_string(logs.join(name)).unwrap();
        assert!(text.len() <= 16 * 1024, "{name} is {} bytes", text.len());
        for line in text.lines() {
            let mut fields = line.splitn(3, ' ');
            let time = fields.next().unwrap();
            assert!(humantime::parse_rfc3339(time).is_ok(), "{line}");
            assert_eq!(fields.next(), Some("stdout"), "{line}");
            numbers.push(fields.next().unwrap().parse::<u32>().unwrap());
        }
    }
    assert_eq!(*numbers.last().unwrap(), 5000);
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "out of order");

    // More lines than memory keeps (200 per stream) come from the files, in order.
    assert!(numbers.len() > 700, "{}", numbers.len());
    let answer = agent.get("/v1/workers/counter/logs?tail=700");
    assert_eq!(answer["source"], "file");
    let lines = answer["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 700);
    assert_eq!(lines[0]["text"], "4301");
    assert_eq!(lines[699]["text"], "5000");
    let out = agent.cli_ok(&["logs", "counter", "-n", "3"]);
    assert_eq!(out, "4998\n4999\n5000\n");
}

#[test]
fn herd_logs_reads_and_follows_a_worker_on_another_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let trigger = tmp.path().join("trigger");
    let a = Spec::new("a", tmp.path(), "remote-logs").start();
    let b = Spec::new("b", tmp.path(), "remote-logs")
        .seed(&a)
        .tag("group=far")
        .start();
    a.wait_members(2);
    b.wait_members(2);
    let config = format!(
        r#"
[[worker]]
name = "far"
command = "sh"
args = ["-c", "echo ready; while [ ! -e {trigger} ]; do sleep 0.05; done; echo later; exec sleep 3600"]
group = "far"
"#,
        trigger = trigger.display()
    );
    let file = write(tmp.path(), "cluster.toml", &config);
    a.cli_ok(&["config", "push", &file]);
    a.wait_workers("far running on b", |w| running(w, "b", "far"));
    wait_until("the ready line through a", || {
        a.cli_ok(&["logs", "far"]) == "ready\n"
    });
    assert_eq!(
        a.cli_ok(&["logs", "far", "--node", "b", "-n", "1"]),
        "ready\n"
    );

    let mut follow = a
        .cli_command(&["logs", "far", "-f", "-n", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "ready");
    std::fs::write(&trigger, "").unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "later");
    let _ = follow.kill();
    let _ = follow.wait();
}

#[test]
fn a_too_large_tail_and_an_unknown_worker_are_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Spec::new("a", tmp.path(), "refusals").start();
    let file = write(tmp.path(), "cluster.toml", ONE_SLEEPER);
    agent.cli_ok(&["config", "push", &file]);
    agent.wait_workers("sleeper running", |w| running(w, "a", "sleeper"));
    let (status, body) = agent.request("GET", "/v1/workers/sleeper/logs?tail=10001", None);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("10000"), "{body}");
    let (status, body) = agent.request("GET", "/v1/workers/nope/logs", None);
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
    let (status, body) = agent.request("GET", "/v1/workers/sleeper/logs?node=a&lines=3", None);
    assert_eq!(status, 400, "{body}");
    let out = agent.cli(&["logs", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    let answer = agent.get("/v1/workers/sleeper/logs?node=a");
    assert_eq!(answer["lines"], serde_json::json!([]));
    assert_eq!(answer["next"], 1);
}
