//! Agent benchmark: N `herd agent` processes on loopback, at default settings.
//!
//!     cargo bench --bench agent                       # N = 10 and 30, 5 pushes each
//!     cargo bench --bench agent -- --agents 30 --runs 3
//!     cargo bench --bench agent -- --encrypt          # agents started with one key file
//!     cargo bench --bench agent -- --failover --runs 9 # placed-worker failover, 5 agents
//!
//! Prints, per N: the median time from `PUT /v1/config` on one agent to the new worker running on
//! every agent (each worker writes the time it started to a file named after its node: that is
//! "running"); then the median time from the last of those starts to the return of
//! `herd config push --wait` (negative: it returned before the last shell wrote its mark); then, with 10 idle workers per agent, each agent's resident memory and CPU over 20
//! idle seconds (the agent process alone, not its workers).
//!
//! With `--failover`: five agents and one `placement = "one"` worker that writes the time it
//! started (a shell's `date`, its first instruction, as above); per run, SIGKILL of the agent
//! running it, then the time until the next agent by weight dropped it from its members (the
//! failure detection) and until the worker's first instruction there. The killed agent is
//! started again, and the worker goes back to it, before the next run; a start on the next agent
//! before it could have seen the kill (two owners) fails the benchmark.
//!
//! `HERD_BENCH_LOG=info` (any log filter) echoes every agent's log to stderr, each line prefixed
//! with its node.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HERD: &str = env!("CARGO_BIN_EXE_herd");

struct Agent {
    child: Child,
    gossip: String,
    api: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_agent(
    id: &str,
    data: &Path,
    seed: Option<&str>,
    cluster: &str,
    key: Option<&Path>,
) -> Agent {
    let mut cmd = Command::new(HERD);
    cmd.args([
        "agent",
        "--node-id",
        id,
        "--listen",
        "127.0.0.1:0",
        "--api",
        "127.0.0.1:0",
    ])
    .args(["--cluster-id", cluster])
    .arg("--data-dir")
    .arg(data.join(id))
    .env(
        "HERD_LOG",
        std::env::var("HERD_BENCH_LOG").unwrap_or_else(|_| "warn".to_string()),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if let Some(seed) = seed {
        cmd.args(["--seed", seed]);
    }
    if let Some(key) = key {
        cmd.arg("--encrypt-key-file").arg(key);
    }
    let mut child = cmd.spawn().expect("spawn herd agent");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains(" running: gossip "))
        .expect("agent starts");
    let echo = std::env::var_os("HERD_BENCH_LOG")
        .is_some()
        .then(|| id.to_string());
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Some(id) = &echo {
                eprintln!("[{id}] {line}");
            }
        }
    });
    let after = |marker: &str| {
        line.split(marker)
            .nth(1)
            .unwrap()
            .split([',', ' '])
            .next()
            .unwrap()
            .to_string()
    };
    Agent {
        child,
        gossip: after("gossip "),
        api: after("API http://"),
    }
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn get(api: &str, path: &str) -> serde_json::Value {
    http()
        .get(format!("http://{api}{path}"))
        .call()
        .expect("api answers")
        .body_mut()
        .read_json()
        .expect("json")
}

fn push(api: &str, toml: &str) {
    let body = serde_json::json!({ "toml": toml });
    let mut response = http()
        .put(format!("http://{api}/v1/config"))
        .send_json(&body)
        .expect("push");
    assert!(
        response.status().is_success(),
        "{:?}",
        response.body_mut().read_to_string()
    );
}

fn wait(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
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

/// The worker that marks its start: a shell (the worker program here) writes the time, then
/// becomes a long sleep.
fn marker_config(run: usize, marks: &Path) -> String {
    format!(
        "[[worker]]\nname = \"mark{run}\"\ncommand = \"sh\"\nargs = [\"-c\", \"date +%s%N > {}/$HERD_NODE_ID; exec sleep 3600\"]\n",
        marks.display()
    )
}

fn idle_config() -> String {
    (0..10)
        .map(|i| {
            format!("[[worker]]\nname = \"idle{i}\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n")
        })
        .collect()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
}

/// A key file from `herd keygen` in `dir`.
fn key_file(dir: &Path) -> std::path::PathBuf {
    let out = Command::new(HERD)
        .arg("keygen")
        .output()
        .expect("herd keygen");
    assert!(out.status.success());
    let path = dir.join("gossip.key");
    std::fs::write(&path, out.stdout).unwrap();
    path
}

fn bench(n: usize, runs: usize, encrypt: bool) {
    let data = tempfile::tempdir().unwrap();
    let cluster = format!("bench-agent-{n}");
    let key = encrypt.then(|| key_file(data.path()));
    if encrypt {
        println!("agents encrypted (--encrypt-key-file)");
    }
    let key = key.as_deref();
    let mut agents = vec![start_agent("a00", data.path(), None, &cluster, key)];
    let seed = agents[0].gossip.clone();
    for i in 1..n {
        agents.push(start_agent(
            &format!("a{i:02}"),
            data.path(),
            Some(&seed),
            &cluster,
            key,
        ));
    }
    wait("every agent to see all", Duration::from_secs(60), || {
        agents
            .iter()
            .all(|a| get(&a.api, "/v1/members").as_array().map(Vec::len) == Some(n))
    });

    let mut times = Vec::new();
    for run in 0..runs {
        let marks = data.path().join(format!("marks{run}"));
        std::fs::create_dir_all(&marks).unwrap();
        let pusher = &agents[run % n].api;
        let t0 = now_ns();
        push(pusher, &marker_config(run, &marks));
        wait("the worker on every agent", Duration::from_secs(60), || {
            std::fs::read_dir(&marks).map(|d| d.count()).unwrap_or(0) == n
        });
        std::thread::sleep(Duration::from_millis(20)); // let the last writes land
        let last = std::fs::read_dir(&marks)
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .filter_map(|t| t.trim().parse::<u128>().ok())
            .max()
            .unwrap();
        let took = (last.saturating_sub(t0)) as f64 / 1e9;
        eprintln!(
            "  N={n} push {run}: running on all {n} agents after {:.3} s",
            took
        );
        times.push(took);
    }

    // herd config push --wait: from the last worker's start to the command's return.
    let mut lags = Vec::new();
    for run in 0..runs {
        let marks = data.path().join(format!("wait-marks{run}"));
        std::fs::create_dir_all(&marks).unwrap();
        let file = data.path().join(format!("wait{run}.toml"));
        let config = marker_config(runs + run, &marks);
        std::fs::write(&file, config).unwrap();
        let out = Command::new(HERD)
            .args(["config", "push", "--wait", "--timeout", "60s", "--api"])
            .arg(&agents[run % n].api)
            .arg(&file)
            .output()
            .expect("herd config push --wait");
        let returned = now_ns();
        assert!(out.status.success(), "{out:?}");
        // A worker is running once spawned; its shell writes the mark a moment later.
        wait("every agent's mark", Duration::from_secs(5), || {
            last_marks(&marks).len() == n
        });
        let last = last_marks(&marks).into_values().max().unwrap();
        let lag = (returned as f64 - last as f64) / 1e9;
        eprintln!("  N={n} push --wait {run}: returned {lag:.3} s after the last worker started");
        lags.push(lag);
    }
    println!(
        "N={n:<3} pushes={runs} | push --wait returns after the last worker started: median {:.3} s (max {:.3} s)",
        median(&mut lags.clone()),
        lags.iter().cloned().fold(0.0, f64::max)
    );

    push(&agents[0].api, &idle_config());
    wait(
        "10 idle workers on every agent",
        Duration::from_secs(60),
        || {
            get(&agents[0].api, "/v1/workers")
                .as_array()
                .map(|w| w.iter().filter(|w| w["state"] == "running").count())
                == Some(10 * n)
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let window = Duration::from_secs(20);
    let pids: Vec<u32> = agents.iter().map(|a| a.child.id()).collect();
    let before: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect();
    std::thread::sleep(window);
    let mut cpu: Vec<f64> = pids
        .iter()
        .zip(&before)
        .map(|(&p, b)| (cpu_ticks(p) - b) as f64 / 100.0 / window.as_secs_f64() * 100.0)
        .collect();
    let mut rss: Vec<f64> = pids.iter().map(|&p| rss_kib(p) as f64 / 1024.0).collect();
    let max_rss = rss.iter().cloned().fold(0.0, f64::max);
    let max_cpu = cpu.iter().cloned().fold(0.0, f64::max);
    println!(
        "N={n:<3} pushes={runs} | push -> running on every agent: median {:.3} s | idle agent with 10 workers: RSS median {:.1} MiB (max {:.1}), CPU median {:.2}% of a core (max {:.2}%)",
        median(&mut times),
        median(&mut rss),
        max_rss,
        median(&mut cpu),
        max_cpu,
    );
}

/// The latest start time each node's marker file holds.
fn last_marks(marks: &Path) -> std::collections::BTreeMap<String, u128> {
    std::fs::read_dir(marks)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| {
                    let text = std::fs::read_to_string(e.path()).ok()?;
                    let last = text.lines().filter_map(|l| l.trim().parse().ok()).max()?;
                    Some((e.file_name().to_string_lossy().into_owned(), last))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn failover(runs: usize) {
    let n = 5;
    let data = tempfile::tempdir().unwrap();
    let cluster = "bench-failover";
    let ids: Vec<String> = (0..n).map(|i| format!("f{i}")).collect();
    let mut agents: Vec<Agent> = vec![start_agent(&ids[0], data.path(), None, cluster, None)];
    let seed = agents[0].gossip.clone();
    for id in &ids[1..] {
        agents.push(start_agent(id, data.path(), Some(&seed), cluster, None));
    }
    let members = |api: &str| -> Vec<String> {
        get(api, "/v1/members")
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    wait("every agent to see all", Duration::from_secs(60), || {
        agents.iter().all(|a| members(&a.api).len() == n)
    });
    let marks = data.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    push(
        &agents[0].api,
        &format!(
            "[[worker]]\nname = \"single\"\ncommand = \"sh\"\nargs = [\"-c\", \"date +%s%N >> {}/$HERD_NODE_ID; exec sleep 3600\"]\nplacement = \"one\"\n",
            marks.display()
        ),
    );
    let top = herd::placement::place("single", ids.iter().map(String::as_str), 1)[0].to_string();
    let top_index = ids.iter().position(|id| *id == top).unwrap();
    let rest: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|id| *id != top)
        .collect();
    let next = herd::placement::place("single", rest.iter().copied(), 1)[0].to_string();
    let next_index = ids.iter().position(|id| *id == next).unwrap();
    wait(
        "the worker on its top node",
        Duration::from_secs(60),
        || last_marks(&marks).contains_key(&top),
    );
    let (mut detections, mut failovers, mut after) = (Vec::new(), Vec::new(), Vec::new());
    let mut ready = now_ns();
    for run in 0..runs {
        let t0 = now_ns();
        let _ = agents[top_index].child.kill();
        let _ = agents[top_index].child.wait();
        let mut detected = None;
        let mut started = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        while detected.is_none() || started.is_none() {
            assert!(
                Instant::now() < deadline,
                "failover run {run} timed out: detected {detected:?}, started {started:?} (t0 {t0}, marks {:?}); {next} lists members {:?}, names {}, workers {}",
                std::fs::read_to_string(marks.join(&next)),
                members(&agents[next_index].api),
                get(&agents[next_index].api, "/v1/names"),
                get(&agents[next_index].api, "/v1/workers"),
            );
            if detected.is_none() && !members(&agents[next_index].api).contains(&top) {
                detected = Some(now_ns());
            }
            if started.is_none() {
                started = last_marks(&marks)
                    .get(&next)
                    .copied()
                    .filter(|&t| t > ready);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let detection = (detected.unwrap() - t0) as f64 / 1e9;
        let failover = (started.unwrap() as f64 - t0 as f64) / 1e9;
        // Detection takes a second or more: a start before that means two nodes ran the worker.
        assert!(
            failover >= 0.05,
            "run {run}: {next} started the worker {failover:.3} s after the kill, before it could have seen {top} fail: two owners"
        );
        eprintln!(
            "  run {run}: {next} saw {top} fail after {detection:.3} s; its worker's first instruction after {failover:.3} s"
        );
        detections.push(detection);
        failovers.push(failover);
        after.push(failover - detection);
        agents[top_index] = start_agent(
            &top,
            data.path(),
            Some(&agents[next_index].gossip),
            cluster,
            None,
        );
        let t1 = now_ns();
        wait(
            "the worker back on its top node",
            Duration::from_secs(60),
            || last_marks(&marks).get(&top).is_some_and(|&t| t > t1),
        );
        wait(
            "every agent to see all again",
            Duration::from_secs(60),
            || agents.iter().all(|a| members(&a.api).len() == n),
        );
        ready = now_ns();
    }
    println!(
        "placed worker (placement one), 5 agents, {runs} SIGKILLs of the node running it | detection by the next node: median {:.3} s | first instruction on the next node: median {:.3} s (max {:.3}) | after detection: median {:.3} s (max {:.3})",
        median(&mut detections),
        median(&mut failovers.clone()),
        failovers.iter().cloned().fold(0.0, f64::max),
        median(&mut after.clone()),
        after.iter().cloned().fold(f64::MIN, f64::max),
    );
}

fn main() {
    let mut agents = vec![10, 30];
    let mut runs = 5;
    let mut encrypt = false;
    let mut failover_mode = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--agents" => {
                agents = args
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|n| n.parse().unwrap())
                    .collect()
            }
            "--runs" => runs = args.next().unwrap().parse().unwrap(),
            "--encrypt" => encrypt = true,
            "--failover" => failover_mode = true,
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    if failover_mode {
        failover(runs);
        return;
    }
    for n in agents {
        bench(n, runs, encrypt);
    }
}
