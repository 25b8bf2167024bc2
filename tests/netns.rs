//! Across a real network boundary: five hosts in network namespaces this test makes itself (one
//! veth pair each, on a bridge in a namespace of its own; addresses in 10.77.0.0/24, which exists
//! only inside those namespaces), a real `herd agent` in each, encrypted gossip, and partitions
//! made and healed by moving bridge ports: a split is two bridges, a host cut off is a port taken
//! off the bridge (no FIN, no error to the sender: its packets go nowhere).
//!
//! Needs root and iproute2 (`bash scripts/test.sh` installs it; CI runs as root). Without them the
//! tests fail saying so; they do not skip.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const HERD: &str = env!("CARGO_BIN_EXE_herd");
/// Generous: five agents and their gossip share two noisy cores with the rest of the suite.
const WAIT: Duration = Duration::from_secs(40);
const GOSSIP_PORT: u16 = 7946;

fn run(what: &str, cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|err| panic!("{what}: cannot run {cmd:?}: {err} (the multi-host tests need iproute2: bash scripts/test.sh installs it)"));
    assert!(
        out.status.success(),
        "{what}: {cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        if is_root() {
            ""
        } else {
            " (the multi-host tests make network namespaces and need root)"
        }
    );
    out
}

/// `line` without its terminal colour codes (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn ip(what: &str, args: &[&str]) {
    run(what, Command::new("ip").args(args));
}

/// The namespaces of one test: a bridge namespace and one per host.
struct Bed {
    bridge_ns: String,
    hosts: Vec<Host>,
    dir: tempfile::TempDir,
}

struct Host {
    ns: String,
    ip: String,
    /// The host's veth end inside the bridge namespace.
    port: String,
    agent: Option<Child>,
}

impl Bed {
    /// Makes `n` hosts on bridge `br0`; a second bridge `br1` waits for splits.
    fn new(name: &str, n: usize) -> Bed {
        assert!(
            is_root(),
            "the multi-host tests make network namespaces and need root (CI runs as root)"
        );
        let tag = format!("{name}{}", std::process::id() % 100_000);
        let bridge_ns = format!("herd-{tag}-br");
        let mut bed = Bed {
            bridge_ns: bridge_ns.clone(),
            hosts: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        ip("make the bridge namespace", &["netns", "add", &bridge_ns]);
        for br in ["br0", "br1"] {
            ip(
                "make a bridge",
                &["-n", &bridge_ns, "link", "add", br, "type", "bridge"],
            );
            ip("bridge up", &["-n", &bridge_ns, "link", "set", br, "up"]);
        }
        for i in 0..n {
            let ns = format!("herd-{tag}-h{i}");
            let port = format!("p{i}");
            ip("make a host namespace", &["netns", "add", &ns]);
            bed.hosts.push(Host {
                ns: ns.clone(),
                ip: format!("10.77.0.{}", 10 + i),
                port: port.clone(),
                agent: None,
            });
            ip(
                "make a veth pair",
                &[
                    "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                    "netns", &bridge_ns,
                ],
            );
            ip(
                "attach to the bridge",
                &[
                    "-n", &bridge_ns, "link", "set", &port, "master", "br0", "up",
                ],
            );
            let cidr = format!("10.77.0.{}/24", 10 + i);
            ip(
                "address the host",
                &["-n", &ns, "addr", "add", &cidr, "dev", "eth0"],
            );
            ip("host link up", &["-n", &ns, "link", "set", "eth0", "up"]);
            ip("loopback up", &["-n", &ns, "link", "set", "lo", "up"]);
        }
        bed
    }

    fn key_file(&self) -> PathBuf {
        let path = self.dir.path().join("gossip.key");
        if !path.exists() {
            let out = run("herd keygen", Command::new(HERD).arg("keygen"));
            std::fs::write(&path, &out.stdout).unwrap();
        }
        path
    }

    /// Starts `herd agent` in host `i`, seeded at host 0, gossiping on its own address with the
    /// cluster key, its API on the namespace's loopback.
    fn start(&mut self, i: usize) {
        let key = self.key_file();
        let data = self.dir.path().join(format!("data-{i}"));
        let log = std::fs::File::create(self.dir.path().join(format!("agent-{i}.log"))).unwrap();
        let host = &self.hosts[i];
        let listen = format!("{}:{GOSSIP_PORT}", host.ip);
        let seed = format!("{}:{GOSSIP_PORT}", self.hosts[0].ip);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &host.ns, HERD, "agent"])
            .args(["--node-id", &format!("h{i}"), "--listen", &listen])
            .args(["--api", "127.0.0.1:7947", "--cluster-id", "netns"])
            .arg("--data-dir")
            .arg(&data)
            .arg("--encrypt-key-file")
            .arg(&key)
            .args(["--tag", &format!("host=h{i}")])
            .env("HERD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if i != 0 {
            cmd.args(["--seed", &seed]);
        }
        // `ip netns exec` enters the namespace and execs herd: the pid is the agent's.
        self.hosts[i].agent = Some(cmd.spawn().expect("start herd agent in its namespace"));
    }

    /// Runs a CLI verb against host `i`'s agent, inside its namespace.
    fn cli(&self, i: usize, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns, HERD])
            .args(args)
            .env("HERD_API", "127.0.0.1:7947")
            .stdin(Stdio::null())
            .output()
            .expect("run the herd CLI in a namespace")
    }

    fn json(&self, i: usize, args: &[&str]) -> Option<Value> {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.cli(i, &args);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The member ids host `i`'s agent lists, sorted; `None` while its API does not answer.
    fn members(&self, i: usize) -> Option<Vec<String>> {
        let members = self.json(i, &["members"])?;
        let mut ids: Vec<String> = members
            .as_array()?
            .iter()
            .filter_map(|m| m["id"].as_str().map(String::from))
            .collect();
        ids.sort();
        Some(ids)
    }

    /// Waits until each host in `hosts` lists exactly `ids`.
    fn wait_members(&self, what: &str, hosts: &[usize], ids: &[&str]) -> Duration {
        let started = Instant::now();
        let want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        loop {
            let seen: Vec<_> = hosts.iter().map(|&i| (i, self.members(i))).collect();
            if seen.iter().all(|(_, m)| m.as_ref() == Some(&want)) {
                return started.elapsed();
            }
            if started.elapsed() > WAIT {
                panic!(
                    "{what}: timed out waiting for {hosts:?} to list {want:?}; they list {seen:?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Host `i`'s config: (version, text).
    fn config(&self, i: usize) -> Option<(u64, String)> {
        let config = self.json(i, &["config", "show"])?;
        Some((
            config["version"].as_u64()?,
            config["toml"].as_str().unwrap_or_default().to_string(),
        ))
    }

    fn push(&self, i: usize, toml: &str, name: &str) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, toml).unwrap();
        let out = self.cli(i, &["config", "push", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "push through h{i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Moves the ports of `hosts` to the other bridge: they reach each other, not the rest.
    fn split(&self, hosts: &[usize]) {
        for &i in hosts {
            let port = &self.hosts[i].port;
            ip(
                "split",
                &["-n", &self.bridge_ns, "link", "set", port, "master", "br1"],
            );
        }
    }

    /// Every port back on the first bridge.
    fn heal(&self) {
        for host in &self.hosts {
            ip(
                "heal",
                &[
                    "-n",
                    &self.bridge_ns,
                    "link",
                    "set",
                    &host.port,
                    "master",
                    "br0",
                ],
            );
        }
    }

    /// Takes host `i`'s port off every bridge: its packets go nowhere, nobody gets a FIN.
    fn cut(&self, i: usize) {
        ip(
            "cut",
            &[
                "-n",
                &self.bridge_ns,
                "link",
                "set",
                &self.hosts[i].port,
                "nomaster",
            ],
        );
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for i in 0..self.hosts.len() {
            let path = self.dir.path().join(format!("agent-{i}.log"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            all.push_str(&format!("--- h{i} (last lines)\n"));
            for line in tail.into_iter().rev() {
                all.push_str(line);
                all.push('\n');
            }
        }
        all
    }

    /// The membership callbacks host `i`'s agent logged (`member joined`, `member left`), in
    /// order, as `(member, "joined" | "left <reason>")`, from log line `from` on.
    fn events(&self, i: usize, from: usize) -> Vec<(String, String)> {
        let field = |line: &str, name: &str| {
            line.split(&format!("{name}="))
                .nth(1)
                .map(|rest| rest.split(' ').next().unwrap_or("").to_string())
        };
        self.log(i)
            .lines()
            .skip(from)
            .map(strip_ansi)
            .filter_map(|line| {
                let line = line.as_str();
                let member = field(line, "member")?;
                if line.contains("member joined") {
                    Some((member, "joined".to_string()))
                } else if line.contains("member left") {
                    Some((member, format!("left {}", field(line, "reason")?)))
                } else {
                    None
                }
            })
            .collect()
    }

    /// Lines in host `i`'s log so far: a mark for [`events`](Bed::events).
    fn mark(&self, i: usize) -> usize {
        self.log(i).lines().count()
    }

    /// Waits until each host's callbacks since its `marks` are exactly `expected(host, member)`
    /// for every other host's member, in order per member (the documented rule for a member
    /// declared failed that comes back: one `left failed`, then one `joined`).
    fn wait_events(
        &self,
        what: &str,
        marks: &[usize],
        expected: impl Fn(usize, usize) -> Vec<&'static str>,
    ) {
        let n = self.hosts.len();
        let deadline = Instant::now() + WAIT;
        loop {
            let mut wrong = Vec::new();
            for (i, mark) in marks.iter().enumerate() {
                let events = self.events(i, *mark);
                for j in (0..n).filter(|&j| j != i) {
                    let member = format!("h{j}");
                    let seen: Vec<&str> = events
                        .iter()
                        .filter(|(m, _)| *m == member)
                        .map(|(_, e)| e.as_str())
                        .collect();
                    if seen != expected(i, j) {
                        wrong.push(format!(
                            "h{i} about {member}: {seen:?}, want {:?}",
                            expected(i, j)
                        ));
                    }
                }
            }
            if wrong.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the callbacks differ from the documented rule:\n{}\n{}",
                wrong.join("\n"),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("agent-{i}.log"))).unwrap_or_default()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            if let Some(mut child) = host.agent.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for host in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", &host.ns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.bridge_ns])
            .status();
    }
}

const ALL: [&str; 5] = ["h0", "h1", "h2", "h3", "h4"];

fn config(worker: &str) -> String {
    format!("[[worker]]\nname = \"{worker}\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n")
}

#[test]
fn a_split_is_seen_as_failures_on_both_sides_and_a_heal_converges_members_and_config() {
    let mut bed = Bed::new("split", 5);
    for i in 0..5 {
        bed.start(i);
    }
    bed.wait_members("the five hosts meet", &[0, 1, 2, 3, 4], &ALL);
    bed.push(0, &config("before"), "before.toml");
    let deadline = Instant::now() + WAIT;
    while (0..5).any(|i| bed.config(i).map(|c| c.0) != Some(1)) {
        assert!(
            Instant::now() < deadline,
            "config 1 everywhere\n{}",
            bed.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // 2 | 3: each side declares the other failed.
    let marks: Vec<usize> = (0..5).map(|i| bed.mark(i)).collect();
    bed.split(&[0, 1]);
    let took = bed.wait_members("side a sees only itself", &[0, 1], &["h0", "h1"]);
    bed.wait_members("side b sees only itself", &[2, 3, 4], &["h2", "h3", "h4"]);
    eprintln!("split detected in {took:?}");

    // A config pushed on each side while split.
    bed.push(1, &config("side-a"), "a.toml");
    bed.push(3, &config("side-b"), "b.toml");
    let deadline = Instant::now() + WAIT;
    while (0..5).any(|i| bed.config(i).map(|c| c.0) != Some(2)) {
        assert!(
            Instant::now() < deadline,
            "each side adopts its own version 2: {:?}\n{}",
            (0..5).map(|i| bed.config(i)).collect::<Vec<_>>(),
            bed.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Heal: everyone sees everyone, and every node runs the same config, the winner of the two.
    bed.heal();
    bed.wait_members("the heal reunites everyone", &[0, 1, 2, 3, 4], &ALL);
    // Across the split and the heal, each host saw each member of the other side leave (failed)
    // and join again, once each, and nothing about its own side.
    let side = |i: usize| i < 2;
    bed.wait_events("split and heal", &marks, |i, j| {
        if side(i) == side(j) {
            vec![]
        } else {
            vec!["left failed", "joined"]
        }
    });
    let deadline = Instant::now() + WAIT;
    loop {
        let configs: Vec<_> = (0..5).map(|i| bed.config(i)).collect();
        let first = configs[0].clone();
        if let Some((version, text)) = first
            .clone()
            .filter(|_| configs.iter().all(|c| *c == first))
        {
            assert!(version >= 2, "{version}");
            assert!(
                text.contains("side-a") || text.contains("side-b"),
                "a config from the split won: {text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "one config everywhere after the heal: {configs:?}\n{}",
            bed.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_host_cut_off_without_a_fin_is_detected_and_rejoins_when_restored() {
    let mut bed = Bed::new("cut", 5);
    for i in 0..5 {
        bed.start(i);
    }
    bed.wait_members("the five hosts meet", &[0, 1, 2, 3, 4], &ALL);

    let marks: Vec<usize> = (0..5).map(|i| bed.mark(i)).collect();
    bed.cut(4);
    let took = bed.wait_members(
        "the others declare h4 failed",
        &[0, 1, 2, 3],
        &["h0", "h1", "h2", "h3"],
    );
    eprintln!("a cut-off host detected in {took:?}");
    bed.wait_members("h4 declares the others failed", &[4], &["h4"]);
    assert!(
        took < Duration::from_secs(20),
        "within the detection time (about 2 s at the defaults, generous here): {took:?}"
    );
    assert!(
        !bed.log(4).contains("fatal"),
        "h4's gossip loop kept running:\n{}",
        bed.log(4)
    );

    bed.heal();
    bed.wait_members("h4 is back", &[0, 1, 2, 3, 4], &ALL);
    bed.wait_events("cut and restore", &marks, |i, j| {
        if i == 4 || j == 4 {
            vec!["left failed", "joined"]
        } else {
            vec![]
        }
    });
}
