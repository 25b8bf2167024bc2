//! Event handler benchmark: N `herd agent` processes on loopback, at default settings, each with
//! one `[[handler]]` for `member-failed` and `member-leave`, and, with `--serf`, the same on N
//! Serf agents (`serf` in PATH) with the same script as their event handler.
//!
//!     cargo bench --bench handlers                      # 30 agents, 3 crashes, 3 leaves
//!     cargo bench --bench handlers -- --agents 30 --runs 3 --serf
//!
//! The handler is `sh -c` appending the event, the member, the event's time (herd: when the
//! agent recorded it) and the time its first instruction ran (`date +%s%N`) to a file named
//! after the agent. A run SIGKILLs one agent (a crash) or sends it the leave signal (herd:
//! SIGTERM; Serf: SIGINT, which is its graceful leave) and measures, on every other agent, the
//! time from the signal to the handler's first instruction. Prints per run the median and the
//! slowest agent, and for herd also the failure-detection time (signal to the event's
//! recording) and the handler's own delay after it (recording to first instruction).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HERD: &str = env!("CARGO_BIN_EXE_herd");

/// One agent process, SIGKILLed when dropped (if still running).
struct Proc {
    id: String,
    child: Child,
    gossip: String,
    api: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn wait(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The handler script: `EVENT MEMBER EVENT_TIME_MS NOW_NS` appended to `<marks>/<node>`.
fn herd_script(marks: &Path) -> String {
    format!(
        "echo $HERD_EVENT $HERD_MEMBER $HERD_EVENT_TIME_MS $(date +%s%N) >> {}/$HERD_NODE_ID",
        marks.display()
    )
}

fn start_herd(id: &str, dir: &Path, seed: Option<&str>, marks: &Path) -> Proc {
    let file = dir.join(format!("{id}.toml"));
    let handler = format!(
        "[[handler]]\nevents = [\"member-failed\", \"member-leave\"]\ncommand = \"sh\"\nargs = [\"-c\", {}]\n",
        serde_json::to_string(&herd_script(marks)).unwrap()
    );
    std::fs::write(&file, handler).unwrap();
    let mut cmd = Command::new(HERD);
    cmd.args(["agent", "--node-id", id, "--listen", "127.0.0.1:0"])
        .args(["--api", "127.0.0.1:0", "--cluster-id", "bench-handlers"])
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.join(id))
        .env("HERD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(seed) = seed {
        cmd.args(["--seed", seed]);
    }
    let mut child = cmd.spawn().expect("spawn herd agent");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains(" running: gossip "))
        .expect("agent starts");
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    let after = |marker: &str| {
        let rest = line.split(marker).nth(1).unwrap();
        rest.split([',', ' ']).next().unwrap().to_string()
    };
    Proc {
        id: id.to_string(),
        child,
        gossip: after("gossip "),
        api: after("API http://"),
    }
}

fn members(api: &str) -> usize {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .get(format!("http://{api}/v1/members"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_json::<serde_json::Value>().ok())
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Serf's handler: the member is the first field of its stdin line.
fn serf_script(marks: &Path) -> String {
    format!(
        "read name rest; echo $SERF_EVENT $name 0 $(date +%s%N) >> {}/$SERF_SELF_NAME",
        marks.display()
    )
}

fn start_serf(id: &str, index: usize, seed: Option<&str>, marks: &Path) -> Proc {
    let script = marks.with_file_name("serf-handler.sh");
    if !script.exists() {
        std::fs::write(&script, format!("#!/bin/sh\n{}\n", serf_script(marks))).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bind = format!("127.0.0.1:{}", 17000 + index);
    let mut cmd = Command::new("serf");
    cmd.args(["agent", &format!("-node={id}"), &format!("-bind={bind}")])
        .arg(format!("-rpc-addr=127.0.0.1:{}", 18000 + index))
        .arg(format!(
            "-event-handler=member-failed,member-leave={}",
            script.display()
        ))
        .arg("-log-level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(seed) = seed {
        cmd.arg(format!("-retry-join={seed}"));
    }
    Proc {
        id: id.to_string(),
        child: cmd.spawn().expect("spawn serf agent (is serf in PATH?)"),
        gossip: bind,
        api: String::new(),
    }
}

fn serf_members(index: usize) -> usize {
    let out = Command::new("serf")
        .args(["members", "-status=alive"])
        .arg(format!("-rpc-addr=127.0.0.1:{}", 18000 + index))
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

/// The (event time in ns, or 0, handler time in ns) of `event` about `member` on each node.
fn marks_for(marks: &Path, event: &str, member: &str) -> BTreeMap<String, (u128, u128)> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(marks).unwrap().flatten() {
        let node = entry.file_name().to_string_lossy().to_string();
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() == 4 && f[0] == event && f[1] == member {
                let event_ms: u128 = f[2].parse().unwrap_or(0);
                found.insert(node.clone(), (event_ms * 1_000_000, f[3].parse().unwrap()));
            }
        }
    }
    found
}

struct Args {
    agents: usize,
    runs: usize,
    serf: bool,
}

fn args() -> Args {
    let mut args = Args {
        agents: 30,
        runs: 3,
        serf: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--agents" => args.agents = it.next().unwrap().parse().unwrap(),
            "--runs" => args.runs = it.next().unwrap().parse().unwrap(),
            "--serf" => args.serf = true,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// Runs the crashes and leaves on one cluster; `leave` sends the graceful leave.
fn measure(
    name: &str,
    mut procs: Vec<Proc>,
    marks: &Path,
    runs: usize,
    leave: nix::sys::signal::Signal,
) {
    let limit = Duration::from_secs(120);
    for (kind, event, signal) in [
        ("crash", "member-failed", nix::sys::signal::Signal::SIGKILL),
        ("leave", "member-leave", leave),
    ] {
        let mut medians = Vec::new();
        let mut worsts = Vec::new();
        for run in 0..runs {
            let victim = procs.pop().unwrap();
            let others = procs.len();
            let sent = now_ns();
            let pid = nix::unistd::Pid::from_raw(victim.child.id() as i32);
            nix::sys::signal::kill(pid, signal).unwrap();
            let event = if name == "serf" && kind == "crash" {
                "member-failed"
            } else {
                event
            };
            let mut got = BTreeMap::new();
            wait(
                &format!("{name} {kind}: handlers of {others} agents"),
                limit,
                || {
                    got = marks_for(marks, event, &victim.id);
                    got.len() >= others
                },
            );
            let mut to_handler: Vec<f64> = got
                .values()
                .map(|(_, at)| (at - sent) as f64 / 1e9)
                .collect();
            let worst = to_handler.iter().cloned().fold(0.0, f64::max);
            let med = median(&mut to_handler);
            let mut extra = String::new();
            if name == "herd" {
                let mut detect: Vec<f64> = got
                    .values()
                    .map(|(ev, _)| (ev.saturating_sub(sent)) as f64 / 1e9)
                    .collect();
                let mut after: Vec<f64> = got
                    .values()
                    .map(|(ev, at)| at.saturating_sub(*ev) as f64 / 1e6)
                    .collect();
                let worst_after = after.iter().cloned().fold(0.0, f64::max);
                extra = format!(
                    "; event recorded {:.3} s (median), handler after it {:.1} ms median, {:.1} ms max",
                    median(&mut detect),
                    median(&mut after),
                    worst_after
                );
            }
            println!(
                "{name} {kind} run {}: signal → handler on {others} agents: median {med:.3} s, slowest {worst:.3} s{extra}",
                run + 1
            );
            medians.push(med);
            worsts.push(worst);
            drop(victim);
        }
        println!(
            "{name} {kind}: median of run medians {:.3} s, median of slowest {:.3} s",
            median(&mut medians),
            median(&mut worsts)
        );
    }
}

fn main() {
    let args = args();
    let n = args.agents;
    assert!(n > 2 * args.runs + 1, "--agents must exceed 2 × --runs + 1");
    let tmp = tempfile::tempdir().unwrap();
    let marks = tmp.path().join("herd-marks");
    std::fs::create_dir(&marks).unwrap();
    let mut procs = vec![start_herd("h0", tmp.path(), None, &marks)];
    let seed = procs[0].gossip.clone();
    for i in 1..n {
        procs.push(start_herd(
            &format!("h{i}"),
            tmp.path(),
            Some(&seed),
            &marks,
        ));
    }
    wait("herd agents to converge", Duration::from_secs(120), || {
        procs.iter().all(|p| members(&p.api) == n)
    });
    println!("herd: {n} agents converged");
    measure(
        "herd",
        procs,
        &marks,
        args.runs,
        nix::sys::signal::Signal::SIGTERM,
    );

    if args.serf {
        let marks = tmp.path().join("serf-marks");
        std::fs::create_dir(&marks).unwrap();
        let mut procs = vec![start_serf("s0", 0, None, &marks)];
        let seed = procs[0].gossip.clone();
        std::thread::sleep(Duration::from_millis(300));
        for i in 1..n {
            procs.push(start_serf(&format!("s{i}"), i, Some(&seed), &marks));
        }
        wait("serf agents to converge", Duration::from_secs(120), || {
            (0..n).all(|i| serf_members(i) == n)
        });
        println!("serf: {n} agents converged");
        measure(
            "serf",
            procs,
            &marks,
            args.runs,
            nix::sys::signal::Signal::SIGINT,
        );
    }
}
