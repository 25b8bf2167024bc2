//! Soak benchmark: N real `herd agent` processes on loopback (encrypted gossip, one key file; the
//! API behind one token file), disturbed at random for a given time.
//!
//!     cargo bench --bench soak -- --agents 20 --minutes 10
//!     cargo bench --bench soak -- --agents 6 --minutes 1 --seed 42
//!     cargo bench --bench soak -- --agents 20 --minutes 2 --actions push   # only some actions
//!
//! The first `--survivors` agents (default 3; `a00` is everyone's seed) are never disturbed. Until
//! the time is up, the bench waits 2–8 s, then does one of (seeded `rand`, the seed is printed;
//! `--seed` repeats a run's choices):
//!
//! - **kill**: SIGKILLs a non-survivor, restarts it on the same data dir 0–5 s later, and waits
//!   (at most 90 s) for every survivor to list its new generation;
//! - **term**: SIGTERMs one (a graceful leave), waits at most 30 s for it to exit, restarts it
//!   0–3 s later and waits for the survivors to list it as above;
//! - **partition**: cuts 1–3 non-survivors off from the rest for 8–25 s with nftables rules on
//!   the loopback interface, in a table of the bench's own (`table inet herd_soak`: its rules
//!   flushed at the heal, the table deleted at exit and on panic; a run killed by a signal leaves
//!   it, and the next run deletes it first): UDP between the two sides' gossip ports is dropped, and
//!   TCP to and from the cut agents' message ports (this also cuts their RPC among themselves;
//!   their outgoing connections to the rest come from ephemeral ports and are not cut). After the
//!   heal it waits (at most 90 s) for every live agent to list all N. Where `nft` cannot install
//!   a table, the cut agents are frozen instead (SIGSTOP, then SIGCONT), and the output says so;
//! - **push**: `PUT /v1/config` on a random agent: a new version of three workers per agent, each
//!   `sh -c 'while :; do sleep 3; done' <marker> v<version>`, the marker unique to the run.
//!
//! Then it reports, as Markdown tables:
//!
//! - **`PUT /v1/config` latency** (median and max of the answered pushes; a push not answered
//!   within the client's 10 s timeout is counted and listed as an anomaly);
//! - **fds, RSS and tokio tasks** of each survivor (`/proc/<pid>/fd`, `VmRSS`, the
//!   `herd_runtime_tasks` gauge of `/metrics`), once all N list each other and run the first
//!   config (start) and once the last change settled (end), each after 10 quiet seconds;
//! - **orphan workers**: processes whose command line holds the run's marker and whose parent is
//!   not a live agent of this run. The scan runs every second; a process counts once it has been
//!   an orphan for 5 s (the grace a SIGKILLed agent's workers get to receive their death signal).
//!   Reported: the most seen at once during the run, the count at the end, and the marker
//!   processes left 10 s after the bench SIGKILLed every agent;
//! - **false failure events**: a `member left` line (any reason: failed, graceful, restarted) in a
//!   survivor's log naming member M at time t, where M was not being disturbed at t. M is being
//!   disturbed from the moment the bench starts killing, stopping or cutting it off until 30 s
//!   after it was seen back (every survivor listing its new generation, or every agent listing all
//!   N after a heal). A survivor naming another survivor is always false;
//! - **config convergence**: after the last action, whether every live agent reports the same
//!   config version, the highest any of them holds and at least the last push's, within 120 s,
//!   and how long after the later of the last push and the last heal; then whether each agent
//!   runs exactly its three workers of that version (checked in `/proc`, at most 60 s).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const HERD: &str = env!("CARGO_BIN_EXE_herd");
/// Workers per agent in every pushed config.
const WORKERS: usize = 3;
/// How long after a disturbance ended a survivor may still report it.
const EVENT_GRACE: Duration = Duration::from_secs(30);
/// How long a worker may be parentless before it counts as an orphan.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);
/// Waits for a restarted agent, or a healed partition, to be listed again.
const REJOIN_WAIT: Duration = Duration::from_secs(90);
const CONVERGE_WAIT: Duration = Duration::from_secs(120);
/// Quiet time before each resource sample.
const QUIET: Duration = Duration::from_secs(10);
/// Log lines kept per agent incarnation (member-left, warnings and errors only).
const LOG_CAP: usize = 10_000;
const NFT_TABLE: &str = "herd_soak";

/// What the bench shares with one agent incarnation's log reader.
#[derive(Default)]
struct Log {
    /// (arrival, line) of the `member left`, WARN and ERROR lines.
    lines: Vec<(Instant, String)>,
    dropped: usize,
}

struct Agent {
    id: String,
    child: Child,
    gossip_port: u16,
    rpc_port: u16,
    api: String,
    log: Arc<Mutex<Log>>,
}

impl Agent {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The run: where agents live and how they are started and asked.
struct Run {
    root: tempfile::TempDir,
    key: PathBuf,
    token_file: PathBuf,
    token: Option<String>,
    cluster: String,
    marker: String,
    seed_addr: Option<String>,
    http: ureq::Agent,
    /// Pids of this run's live agents, read by the orphan scanner.
    live: Arc<Mutex<HashSet<u32>>>,
}

impl Run {
    fn start(&mut self, id: &str) -> Agent {
        let mut cmd = Command::new(HERD);
        cmd.args(["agent", "--node-id", id])
            .args(["--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"])
            .args(["--cluster-id", &self.cluster])
            .arg("--data-dir")
            .arg(self.root.path().join(id))
            .arg("--encrypt-key-file")
            .arg(&self.key)
            .arg("--api-token-file")
            .arg(&self.token_file)
            .env("HERD_LOG", "herd=info")
            .env("NO_COLOR", "1")
            .env_remove("HERD_API")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(seed) = &self.seed_addr {
            cmd.args(["--seed", seed]);
        }
        let mut child = cmd.spawn().expect("spawn herd agent");
        self.live.lock().unwrap().insert(child.id());
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = strip_ansi(&line);
                if line.contains(" running: gossip ") {
                    let _ = tx.send(line);
                } else if line.contains("member left")
                    || line.contains(" WARN ")
                    || line.contains(" ERROR ")
                {
                    let mut log = sink.lock().unwrap();
                    if log.lines.len() < LOG_CAP {
                        log.lines.push((Instant::now(), line));
                    } else {
                        log.dropped += 1;
                    }
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("agent {id} did not start within 60 s"));
        let after = |marker: &str| {
            line.split(marker)
                .nth(1)
                .unwrap()
                .split([',', ' '])
                .next()
                .unwrap()
                .to_string()
        };
        let port = |addr: String| addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        let agent = Agent {
            id: id.to_string(),
            child,
            gossip_port: port(after("gossip ")),
            rpc_port: port(after("messages ")),
            api: after("API http://"),
            log,
        };
        if self.seed_addr.is_none() {
            self.seed_addr = Some(format!("127.0.0.1:{}", agent.gossip_port));
        }
        if self.token.is_none() {
            let token = std::fs::read_to_string(&self.token_file).expect("the API token file");
            self.token = Some(token.trim().to_string());
        }
        agent
    }

    /// Reaps an agent that exited or was killed, and forgets its pid.
    fn reaped(&self, mut agent: Agent) -> Arc<Mutex<Log>> {
        let _ = agent.child.wait();
        self.live.lock().unwrap().remove(&agent.pid());
        agent.log.clone()
    }

    fn request(
        &self,
        method: &str,
        agent: &Agent,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let url = format!("http://{}{path}", agent.api);
        let auth = format!("Bearer {}", self.token.as_deref().unwrap_or(""));
        let response = match (method, body) {
            ("GET", _) => self.http.get(&url).header("authorization", &auth).call(),
            ("PUT", Some(body)) => self
                .http
                .put(&url)
                .header("authorization", &auth)
                .send_json(body),
            _ => unreachable!("{method}"),
        };
        let mut response = response.map_err(|e| format!("{method} {path} on {}: {e}", agent.id))?;
        let status = response.status();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{method} {path} on {}: {status} {text}", agent.id));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// (id, generation) of the members `agent` lists.
    fn members(&self, agent: &Agent) -> Option<Vec<(String, u64)>> {
        let list = self.request("GET", agent, "/v1/members", None).ok()?;
        Some(
            list.as_array()?
                .iter()
                .map(|m| {
                    (
                        m["id"].as_str().unwrap_or("").to_string(),
                        m["generation"].as_u64().unwrap_or(0),
                    )
                })
                .collect(),
        )
    }

    fn config_version(&self, agent: &Agent) -> Option<(u64, String)> {
        let config = self.request("GET", agent, "/v1/config", None).ok()?;
        Some((
            config["version"].as_u64()?,
            config["checksum"].as_str().unwrap_or("").to_string(),
        ))
    }

    fn tasks(&self, agent: &Agent) -> Option<u64> {
        let text = self.request("GET", agent, "/metrics", None).ok()?;
        text.as_str()?
            .lines()
            .find_map(|l| l.strip_prefix("herd_runtime_tasks "))?
            .parse()
            .ok()
    }

    fn push(&self, agent: &Agent, version: u64) -> Result<u64, String> {
        let body = serde_json::json!({ "toml": worker_config(&self.marker, version) });
        let answer = self.request("PUT", agent, "/v1/config", Some(&body))?;
        answer["version"]
            .as_u64()
            .ok_or_else(|| format!("no version in {answer}"))
    }
}

/// Three workers, the run's marker and `version` in each one's arguments.
fn worker_config(marker: &str, version: u64) -> String {
    (0..WORKERS)
        .map(|i| {
            format!(
                "[[worker]]\nname = \"w{i}\"\ncommand = \"sh\"\nargs = [\"-c\", \"while :; do sleep 3; done\", \"{marker}\", \"v{version}\"]\n"
            )
        })
        .collect()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `key=` in a log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Polls `cond` every 200 ms for at most `limit`; returns how long it took, or `None`.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    proc_status(pid, "VmRSS:").unwrap_or(0)
}

fn proc_status(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// (pid, parent pid, arguments) of every process whose command line holds `marker`.
fn marked(marker: &str) -> Vec<(u32, u32, Vec<String>)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if !args.iter().any(|a| a == marker) {
                return None;
            }
            let ppid = proc_status(pid, "PPid:")? as u32;
            Some((pid, ppid, args))
        })
        .collect()
}

/// Counts orphan workers every second until stopped.
struct OrphanScan {
    max: Arc<Mutex<(usize, Vec<String>)>>,
    now: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OrphanScan {
    fn start(marker: String, live: Arc<Mutex<HashSet<u32>>>) -> OrphanScan {
        let max = Arc::new(Mutex::new((0, Vec::new())));
        let now = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (max2, now2, stop2) = (max.clone(), now.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut since: HashMap<u32, Instant> = HashMap::new();
            while !stop2.load(Ordering::Relaxed) {
                let live = live.lock().unwrap().clone();
                let procs = marked(&marker);
                let parentless: Vec<_> = procs.iter().filter(|p| !live.contains(&p.1)).collect();
                since.retain(|pid, _| parentless.iter().any(|p| p.0 == *pid));
                let mut orphans = Vec::new();
                for p in &parentless {
                    let first = *since.entry(p.0).or_insert_with(Instant::now);
                    if first.elapsed() >= ORPHAN_GRACE {
                        orphans.push(format!("pid {} parent {} {:?}", p.0, p.1, p.2));
                    }
                }
                *now2.lock().unwrap() = orphans.len();
                let mut max = max2.lock().unwrap();
                if orphans.len() > max.0 {
                    *max = (orphans.len(), orphans);
                }
                drop(max);
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        OrphanScan {
            max,
            now,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for OrphanScan {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The bench's nftables table; deleted when dropped (also on panic).
struct Firewall {
    nft: bool,
}

impl Firewall {
    fn nft(script: &str) -> Result<(), String> {
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run nft: {e}"))?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The table with an empty output chain, or a firewall that freezes instead.
    fn new() -> Firewall {
        let _ = Firewall::nft(&format!("delete table inet {NFT_TABLE}\n"));
        let created = Firewall::nft(&format!(
            "table inet {NFT_TABLE} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n  }}\n}}\n"
        ));
        if let Err(err) = &created {
            println!(
                "nftables unavailable ({}): partitions are SIGSTOP/SIGCONT freezes",
                err.trim()
            );
        }
        Firewall {
            nft: created.is_ok(),
        }
    }

    fn cut(&self, cut: &[&Agent], rest: &[&Agent]) {
        let set = |ports: Vec<u16>| {
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            format!("{{ {} }}", ports.join(", "))
        };
        let a = set(cut.iter().map(|a| a.gossip_port).collect());
        let b = set(rest.iter().map(|a| a.gossip_port).collect());
        let rpc = set(cut.iter().map(|a| a.rpc_port).collect());
        let t = format!("inet {NFT_TABLE} output");
        Firewall::nft(&format!(
            "add rule {t} oif lo udp sport {a} udp dport {b} drop\n\
             add rule {t} oif lo udp sport {b} udp dport {a} drop\n\
             add rule {t} oif lo tcp dport {rpc} drop\n\
             add rule {t} oif lo tcp sport {rpc} drop\n"
        ))
        .expect("install the partition rules");
    }

    fn heal(&self) {
        Firewall::nft(&format!("flush chain inet {NFT_TABLE} output\n"))
            .expect("flush the partition rules");
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        if self.nft {
            let _ = Firewall::nft(&format!("delete table inet {NFT_TABLE}\n"));
        }
    }
}

/// One survivor's resources at one time.
#[derive(Clone, Copy)]
struct Sample {
    fds: usize,
    rss_kib: u64,
    tasks: Option<u64>,
}

/// A member being disturbed from `start` until `end` (+ [`EVENT_GRACE`]).
struct Window {
    id: String,
    start: Instant,
    end: Option<Instant>,
}

struct Soak {
    run: Run,
    agents: Vec<Option<Agent>>,
    survivors: usize,
    rng: StdRng,
    windows: Vec<Window>,
    /// Logs of survivors (they are never restarted) are read from their agents at the end.
    anomalies: Vec<String>,
    version: u64,
    last_push: Option<Instant>,
    last_heal: Option<Instant>,
    counts: HashMap<&'static str, usize>,
    /// When each action began, for placing false events.
    timeline: Vec<(Instant, &'static str)>,
    rejoin_times: Vec<f64>,
    /// How long each answered `PUT /v1/config` took.
    push_times: Vec<f64>,
    heal_times: Vec<f64>,
    partitions_seen: usize,
    firewall: Firewall,
}

impl Soak {
    fn live(&self) -> Vec<&Agent> {
        self.agents.iter().flatten().collect()
    }

    fn sample(&self) -> Vec<Sample> {
        self.agents[..self.survivors]
            .iter()
            .flatten()
            .map(|a| Sample {
                fds: fds(a.pid()),
                rss_kib: rss_kib(a.pid()),
                tasks: self.run.tasks(a),
            })
            .collect()
    }

    /// Every live agent lists all N members.
    fn all_listed(&self) -> bool {
        let n = self.agents.len();
        self.live()
            .iter()
            .all(|a| self.run.members(a).is_some_and(|m| m.len() == n))
    }

    /// Every live agent runs exactly its workers of `version`, and no other marked process.
    fn workers_settled(&self, version: u64) -> bool {
        let procs = marked(&self.run.marker);
        let want = format!("v{version}");
        self.live().iter().all(|a| {
            let mine: Vec<_> = procs.iter().filter(|p| p.1 == a.pid()).collect();
            mine.len() == WORKERS && mine.iter().all(|p| p.2.last() == Some(&want))
        })
    }

    /// Prints, for each agent not running exactly its workers of `version`, the marked
    /// processes it parents and what its API says of its workers.
    fn unsettled_workers(&self, version: u64) {
        let procs = marked(&self.run.marker);
        let want = format!("v{version}");
        for a in self.live() {
            let mine: Vec<String> = procs
                .iter()
                .filter(|p| p.1 == a.pid())
                .map(|p| format!("{} {}", p.0, p.2.last().map_or("", String::as_str)))
                .collect();
            if mine.len() == WORKERS && mine.iter().all(|p| p.ends_with(&want)) {
                continue;
            }
            let listed: Vec<String> = self
                .run
                .request("GET", a, "/v1/workers", None)
                .ok()
                .and_then(|w| w.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter(|w| w["node"] == a.id.as_str())
                .map(|w| format!("{} {} {}", w["name"], w["state"], w["pid"]))
                .collect();
            println!(
                "unsettled: {} runs {mine:?}; its API lists {listed:?}",
                a.id
            );
        }
    }

    fn pick_others(&mut self, k: usize) -> Vec<usize> {
        let mut pool: Vec<usize> = (self.survivors..self.agents.len()).collect();
        let mut picked = Vec::new();
        for _ in 0..k.min(pool.len()) {
            picked.push(pool.swap_remove(self.rng.gen_range(0..pool.len())));
        }
        picked
    }

    fn open_window(&mut self, i: usize) -> usize {
        let id = self.agents[i].as_ref().unwrap().id.clone();
        self.windows.push(Window {
            id,
            start: Instant::now(),
            end: None,
        });
        self.windows.len() - 1
    }

    /// Restarts agent `i` and waits for every survivor to list its new generation.
    fn restart(&mut self, i: usize, id: &str, window: usize) {
        let agent = self.run.start(id);
        let generation = self
            .run
            .members(&agent)
            .and_then(|m| m.into_iter().find(|(m, _)| m == id).map(|(_, g)| g))
            .unwrap_or(0);
        self.agents[i] = Some(agent);
        let survivors: Vec<&Agent> = self.agents[..self.survivors].iter().flatten().collect();
        let took = wait_for(REJOIN_WAIT, || {
            survivors.iter().all(|s| {
                self.run
                    .members(s)
                    .is_some_and(|m| m.iter().any(|(m, g)| m == id && *g == generation))
            })
        });
        match took {
            Some(t) => self.rejoin_times.push(t.as_secs_f64()),
            None => self.anomalies.push(format!(
                "{id} (generation {generation}) not listed by every survivor within {REJOIN_WAIT:?} of its restart"
            )),
        }
        self.windows[window].end = Some(Instant::now());
    }

    fn kill(&mut self) {
        let i = self.pick_others(1)[0];
        let window = self.open_window(i);
        let mut agent = self.agents[i].take().unwrap();
        let id = agent.id.clone();
        let _ = agent.child.kill();
        self.run.reaped(agent);
        std::thread::sleep(Duration::from_millis(self.rng.gen_range(0..5_000)));
        self.restart(i, &id, window);
    }

    fn term(&mut self) {
        let i = self.pick_others(1)[0];
        let window = self.open_window(i);
        let mut agent = self.agents[i].take().unwrap();
        let id = agent.id.clone();
        kill(Pid::from_raw(agent.pid() as i32), Signal::SIGTERM).expect("SIGTERM our agent");
        let exited = wait_for(Duration::from_secs(30), || {
            matches!(agent.child.try_wait(), Ok(Some(_)))
        });
        match agent.child.try_wait() {
            Ok(Some(status)) if status.success() => {}
            Ok(Some(status)) => self
                .anomalies
                .push(format!("{id} exited with {status} after SIGTERM")),
            _ => {}
        }
        if exited.is_none() {
            self.anomalies.push(format!(
                "{id} did not exit within 30 s of SIGTERM; SIGKILLed"
            ));
            let _ = agent.child.kill();
        }
        self.run.reaped(agent);
        std::thread::sleep(Duration::from_millis(self.rng.gen_range(0..3_000)));
        self.restart(i, &id, window);
    }

    fn partition(&mut self) {
        let others = self.agents.len() - self.survivors;
        let k = self.rng.gen_range(1..=3).min(others.div_ceil(2)).max(1);
        let cut = self.pick_others(k);
        let windows: Vec<usize> = cut.iter().map(|&i| self.open_window(i)).collect();
        let hold = Duration::from_millis(self.rng.gen_range(8_000..25_000));
        let cut_ids: Vec<String> = cut
            .iter()
            .map(|&i| self.agents[i].as_ref().unwrap().id.clone())
            .collect();
        {
            #[allow(clippy::type_complexity)]
            let (inside, outside): (Vec<(usize, &Agent)>, Vec<(usize, &Agent)>) = self
                .agents
                .iter()
                .enumerate()
                .filter_map(|(i, a)| Some((i, a.as_ref()?)))
                .partition(|(i, _)| cut.contains(i));
            let inside: Vec<&Agent> = inside.into_iter().map(|(_, a)| a).collect();
            let outside: Vec<&Agent> = outside.into_iter().map(|(_, a)| a).collect();
            if self.firewall.nft {
                self.firewall.cut(&inside, &outside);
            } else {
                for a in &inside {
                    let _ = kill(Pid::from_raw(a.pid() as i32), Signal::SIGSTOP);
                }
            }
        }
        // Whether the cut took: a survivor stops listing a cut agent during the hold.
        let until = Instant::now() + hold;
        let mut seen = false;
        while Instant::now() < until {
            if !seen {
                let s = self.agents[0].as_ref().unwrap();
                seen = self
                    .run
                    .members(s)
                    .is_some_and(|m| cut_ids.iter().any(|id| !m.iter().any(|(x, _)| x == id)));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if self.firewall.nft {
            self.firewall.heal();
        } else {
            for &i in &cut {
                let pid = self.agents[i].as_ref().unwrap().pid();
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
            }
        }
        self.last_heal = Some(Instant::now());
        if seen {
            self.partitions_seen += 1;
        }
        match wait_for(REJOIN_WAIT, || self.all_listed()) {
            Some(t) => self.heal_times.push(t.as_secs_f64()),
            None => self.anomalies.push(format!(
                "after healing {cut_ids:?}, not every agent listed all {} within {REJOIN_WAIT:?}",
                self.agents.len()
            )),
        }
        let now = Instant::now();
        for w in windows {
            self.windows[w].end = Some(now);
        }
    }

    fn push(&mut self) {
        let live: Vec<usize> = (0..self.agents.len())
            .filter(|&i| self.agents[i].is_some())
            .collect();
        let i = live[self.rng.gen_range(0..live.len())];
        let next = self.version + 1;
        let started = Instant::now();
        match self.run.push(self.agents[i].as_ref().unwrap(), next) {
            Ok(v) => {
                self.push_times.push(started.elapsed().as_secs_f64());
                self.version = self.version.max(v);
                self.last_push = Some(Instant::now());
            }
            Err(err) => self.anomalies.push(format!("push refused: {err}")),
        }
    }

    /// The survivors' distinct WARN/ERROR lines (without their time stamps), and a note of
    /// lines not kept.
    fn warnings(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for s in self.agents[..self.survivors].iter().flatten() {
            let log = s.log.lock().unwrap();
            for (_, line) in &log.lines {
                let text = line
                    .split_once(' ')
                    .map_or(line.as_str(), |(_, t)| t)
                    .to_string();
                if !line.contains("member left") && !seen.contains(&text) {
                    seen.push(text);
                }
            }
            if log.dropped > 0 {
                seen.push(format!("{}: {} more log lines not kept", s.id, log.dropped));
            }
        }
        seen
    }

    /// `member left` lines in survivors' logs for members not being disturbed then.
    fn false_events(&self) -> (Vec<String>, usize, usize) {
        let survivor_ids: Vec<&str> = self.agents[..self.survivors]
            .iter()
            .flatten()
            .map(|a| a.id.as_str())
            .collect();
        let mut false_events = Vec::new();
        let mut expected = 0;
        let mut warnings = 0;
        for s in self.agents[..self.survivors].iter().flatten() {
            let log = s.log.lock().unwrap();
            for (at, line) in &log.lines {
                if !line.contains("member left") {
                    warnings += 1;
                    continue;
                }
                let Some(member) = field(line, "member") else {
                    continue;
                };
                let covered = !survivor_ids.contains(&member)
                    && self.windows.iter().any(|w| {
                        w.id == member
                            && *at >= w.start
                            && w.end.is_none_or(|end| *at <= end + EVENT_GRACE)
                    });
                if covered {
                    expected += 1;
                } else {
                    let context = match self.timeline.iter().rev().find(|(t, _)| t <= at) {
                        Some((t, action)) => format!(
                            "{:.1} s after a {action} began",
                            at.duration_since(*t).as_secs_f64()
                        ),
                        None => "before the first action".to_string(),
                    };
                    false_events.push(format!("{}: {line} [{context}]", s.id));
                }
            }
        }
        (false_events, expected, warnings)
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn key_file(dir: &Path) -> PathBuf {
    let out = Command::new(HERD)
        .arg("keygen")
        .output()
        .expect("herd keygen");
    assert!(out.status.success());
    let path = dir.join("gossip.key");
    std::fs::write(&path, out.stdout).unwrap();
    path
}

fn main() {
    let (mut n, mut minutes, mut survivors, mut seed) = (20usize, 10.0f64, 3usize, None);
    // Each action and its weight.
    let mut actions = vec![("push", 35), ("kill", 25), ("term", 20), ("partition", 20)];
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--agents" => n = value().parse().expect("--agents N"),
            "--minutes" => minutes = value().parse().expect("--minutes M"),
            "--survivors" => survivors = value().parse().expect("--survivors K"),
            "--seed" => seed = Some(value().parse::<u64>().expect("--seed S")),
            "--actions" => {
                let list = value();
                actions.retain(|(a, _)| list.split(',').any(|x| x == *a));
                assert!(
                    !actions.is_empty(),
                    "--actions: some of push,kill,term,partition"
                );
            }
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        survivors >= 1 && n > survivors,
        "need more agents than survivors"
    );
    let seed = seed.unwrap_or_else(|| rand::random::<u32>() as u64);
    let marker = format!("herd-soak-{}-{seed}", std::process::id());
    println!("soak: {n} agents ({survivors} survivors), {minutes} min, seed {seed}, worker marker {marker}");

    let root = tempfile::tempdir().unwrap();
    let key = key_file(root.path());
    let live = Arc::new(Mutex::new(HashSet::new()));
    let run = Run {
        token_file: root.path().join("api-token"),
        key,
        root,
        token: None,
        cluster: format!("soak-{seed}"),
        marker: marker.clone(),
        seed_addr: None,
        http: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into(),
        live: live.clone(),
    };
    let mut soak = Soak {
        run,
        agents: Vec::new(),
        survivors,
        rng: StdRng::seed_from_u64(seed),
        windows: Vec::new(),
        anomalies: Vec::new(),
        version: 0,
        last_push: None,
        last_heal: None,
        counts: HashMap::new(),
        timeline: Vec::new(),
        rejoin_times: Vec::new(),
        push_times: Vec::new(),
        heal_times: Vec::new(),
        partitions_seen: 0,
        firewall: Firewall::new(),
    };
    let scan = OrphanScan::start(marker.clone(), live.clone());

    let t0 = Instant::now();
    for i in 0..n {
        let agent = soak.run.start(&format!("a{i:02}"));
        soak.agents.push(Some(agent));
    }
    let Some(converged) = wait_for(Duration::from_secs(180), || soak.all_listed()) else {
        let counts: Vec<usize> = soak
            .live()
            .iter()
            .map(|a| soak.run.members(a).map_or(0, |m| m.len()))
            .collect();
        panic!("{n} agents did not all list each other within 180 s: {counts:?}");
    };
    println!(
        "all {n} list each other {:.1} s after the first start ({:.1} s after the last)",
        t0.elapsed().as_secs_f64(),
        converged.as_secs_f64()
    );
    soak.push();
    let first = soak.version;
    wait_for(CONVERGE_WAIT, || soak.workers_settled(first)).unwrap_or_else(|| {
        panic!("config v{first} not running on all {n} agents within {CONVERGE_WAIT:?}")
    });
    std::thread::sleep(QUIET);
    let start_sample = soak.sample();

    let deadline = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(soak.rng.gen_range(2_000..8_000)));
        let total: u32 = actions.iter().map(|a| a.1).sum();
        let mut roll = soak.rng.gen_range(0..total);
        let &(action, _) = actions
            .iter()
            .find(|a| {
                let hit = roll < a.1;
                roll = roll.saturating_sub(a.1);
                hit
            })
            .unwrap();
        let started = Instant::now();
        soak.timeline.push((started, action));
        match action {
            "push" => soak.push(),
            "kill" => soak.kill(),
            "term" => soak.term(),
            _ => soak.partition(),
        }
        *soak.counts.entry(action).or_default() += 1;
        eprintln!(
            "  [{:>5.0} s] {action} ({:.1} s), config v{}",
            t0.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64(),
            soak.version
        );
    }
    // The last push and the last heal, then convergence.
    soak.push();
    let settled_from = soak
        .last_push
        .max(soak.last_heal)
        .unwrap_or_else(Instant::now);
    let listed = wait_for(REJOIN_WAIT, || soak.all_listed()).is_some();
    let wanted = soak.version;
    let mut versions = Vec::new();
    let converged = wait_for(CONVERGE_WAIT, || {
        versions = soak
            .live()
            .iter()
            .map(|a| soak.run.config_version(a))
            .collect();
        let highest = versions.iter().flatten().map(|v| v.0).max().unwrap_or(0);
        versions.iter().all(|v| v.as_ref() == versions[0].as_ref())
            && versions[0]
                .as_ref()
                .is_some_and(|v| v.0 == highest && v.0 >= wanted)
    })
    .map(|_| settled_from.elapsed());
    let final_version = versions.first().and_then(|v| v.as_ref()).map_or(0, |v| v.0);
    let workers_ok = converged.is_some()
        && wait_for(Duration::from_secs(60), || {
            soak.workers_settled(final_version)
        })
        .is_some();
    if !workers_ok {
        soak.unsettled_workers(final_version);
    }
    std::thread::sleep(QUIET);
    let end_sample = soak.sample();
    let orphans_end = *scan.now.lock().unwrap();
    let (max_orphans, orphan_examples) = scan.max.lock().unwrap().clone();
    let (false_events, expected_events, warnings) = soak.false_events();
    let warning_examples = soak.warnings();
    drop(scan);

    // Every agent SIGKILLed: their workers must follow.
    let marker_run = soak.run.marker.clone();
    for slot in soak.agents.iter_mut() {
        if let Some(mut agent) = slot.take() {
            let _ = agent.child.kill();
            soak.run.reaped(agent);
        }
    }
    let left = wait_for(Duration::from_secs(10), || marked(&marker_run).is_empty())
        .map_or_else(|| marked(&marker_run).len(), |_| 0);

    let c = |k: &str| soak.counts.get(k).copied().unwrap_or(0);
    let mode = if soak.firewall.nft {
        "nftables"
    } else {
        "SIGSTOP freeze"
    };
    println!();
    println!("| survivor | fds start | fds end | RSS start (MiB) | RSS end (MiB) | tasks start | tasks end |");
    println!("|---|---|---|---|---|---|---|");
    let tasks = |t: Option<u64>| t.map_or("?".to_string(), |t| t.to_string());
    for (i, (s, e)) in start_sample.iter().zip(&end_sample).enumerate() {
        println!(
            "| a{i:02} | {} | {} | {:.1} | {:.1} | {} | {} |",
            s.fds,
            e.fds,
            s.rss_kib as f64 / 1024.0,
            e.rss_kib as f64 / 1024.0,
            tasks(s.tasks),
            tasks(e.tasks)
        );
    }
    println!();
    println!("| soak: {n} agents, {minutes} min, seed {seed} | |");
    println!("|---|---|");
    println!(
        "| disturbances | {} SIGKILL + restart, {} SIGTERM + restart, {} partitions ({mode}; {} seen by a survivor), {} config pushes |",
        c("kill"),
        c("term"),
        c("partition"),
        soak.partitions_seen,
        c("push") + 2
    );
    println!(
        "| `PUT /v1/config` answered (10 s timeout) | median {:.2} s, max {:.2} s; {} of {} not answered or refused |",
        median(&soak.push_times),
        soak.push_times.iter().cloned().fold(0.0, f64::max),
        c("push") + 2 - soak.push_times.len(),
        c("push") + 2
    );
    println!(
        "| restarted agent listed again by every survivor | median {:.1} s, max {:.1} s |",
        median(&soak.rejoin_times),
        soak.rejoin_times.iter().cloned().fold(0.0, f64::max)
    );
    println!(
        "| all N listed again after a heal | median {:.1} s, max {:.1} s |",
        median(&soak.heal_times),
        soak.heal_times.iter().cloned().fold(0.0, f64::max)
    );
    println!("| orphan workers (parentless > 5 s): most at once / at the end | {max_orphans} / {orphans_end} |");
    println!("| marker processes 10 s after every agent was SIGKILLed | {left} |");
    println!(
        "| false failure events (survivors' `member left` outside a disturbance) | {} ({expected_events} expected ones) |",
        false_events.len()
    );
    println!(
        "| config convergence after the last push and heal | {} |",
        match converged {
            Some(t) => format!(
                "yes: v{final_version} on all {n} within {:.1} s; workers of v{final_version} on every agent: {}",
                t.as_secs_f64(),
                if workers_ok { "yes" } else { "no" }
            ),
            None => format!("no within {CONVERGE_WAIT:?} (all listed: {listed}): {versions:?}"),
        }
    );
    println!("| WARN/ERROR lines in survivors' logs | {warnings} |");
    let flat = start_sample.iter().zip(&end_sample).all(|(s, e)| {
        e.fds <= s.fds + 2
            && e.rss_kib as f64 <= s.rss_kib as f64 * 1.25 + 1024.0
            && match (s.tasks, e.tasks) {
                (Some(a), Some(b)) => b <= a + 3,
                _ => false,
            }
    });
    println!(
        "| survivors flat (fds +2, RSS +25 % + 1 MiB, tasks +3 at most) | {} |",
        if flat { "yes" } else { "no" }
    );
    for line in orphan_examples.iter().take(5) {
        println!("orphan: {line}");
    }
    for line in false_events.iter().take(100) {
        println!("false event: {line}");
    }
    for line in soak.anomalies.iter().take(20) {
        println!("anomaly: {line}");
    }
    for line in warning_examples.iter().take(10) {
        println!("survivor log: {line}");
    }
}
