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
        self.start_with(i, &[]);
    }

    /// [`start`](Bed::start) with more `herd agent` arguments.
    fn start_with(&mut self, i: usize, extra: &[&str]) {
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
        cmd.args(extra);
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

/// The global name a `placement = "one"` worker named `leader` runs under.
const LEADER: &str = "herd.placed/leader";

/// One `placement = "one"` worker, with or without quorum.
fn leader_config(quorum: bool) -> String {
    format!(
        "[[worker]]\nname = \"leader\"\ncommand = \"sleep\"\nargs = [\"3600\"]\nplacement = \"one\"\nquorum = {quorum}\n"
    )
}

/// Where host `i`'s log says it held a name: `from` (`this node holds the name`) until
/// `until` (`this node lost the name` or `released the name`; `None`: it still holds it), read
/// from the agents' own log timestamps, all on this machine's one clock.
#[derive(Clone, Debug)]
struct Held {
    host: usize,
    from: std::time::SystemTime,
    until: Option<std::time::SystemTime>,
    /// Why it ended, as logged.
    why: Option<String>,
}

impl Bed {
    /// The owner of `name` host `i`'s agent sees: `None` while its API does not answer,
    /// `Some(None)` when it sees no owner.
    fn owner(&self, i: usize, name: &str) -> Option<Option<String>> {
        let names = self.json(i, &["names"])?;
        let entry = names.as_array()?.iter().find(|n| n["name"] == name);
        Some(entry.and_then(|e| e["owner"]["id"].as_str().map(String::from)))
    }

    /// Waits until every host in `hosts` sees `owner` as the owner of `name`.
    fn wait_owner(&self, what: &str, hosts: &[usize], name: &str, owner: Option<&str>) {
        let deadline = Instant::now() + WAIT;
        loop {
            let seen: Vec<_> = hosts.iter().map(|&i| (i, self.owner(i, name))).collect();
            if seen
                .iter()
                .all(|(_, o)| o.as_ref().map(Option::as_deref) == Some(owner))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: timed out waiting for {hosts:?} to see {owner:?} own {name}; they see {seen:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every span in which a host held `name`, by the hosts' logs.
    fn held(&self, name: &str) -> Vec<Held> {
        let mut spans = Vec::new();
        for host in 0..self.hosts.len() {
            let mut open: Option<Held> = None;
            for line in self.log(host).lines().map(strip_ansi) {
                if !line.contains(&format!("name={name}")) {
                    continue;
                }
                let Some(at) = line
                    .split_whitespace()
                    .next()
                    .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                else {
                    continue;
                };
                if line.contains("this node holds the name") {
                    assert!(open.is_none(), "h{host} took {name} twice:\n{line}");
                    open = Some(Held {
                        host,
                        from: at,
                        until: None,
                        why: None,
                    });
                } else if line.contains("this node lost the name")
                    || line.contains("this node released the name")
                {
                    if let Some(mut span) = open.take() {
                        span.until = Some(at);
                        span.why = Some(line.split("why=").nth(1).unwrap_or("released").into());
                        spans.push(span);
                    }
                }
            }
            spans.extend(open);
        }
        spans
    }

    /// The hosts that held `name` at `at`, by [`held`](Bed::held).
    fn holders_at(spans: &[Held], at: std::time::SystemTime) -> Vec<usize> {
        let mut hosts: Vec<usize> = spans
            .iter()
            .filter(|s| s.from <= at && s.until.is_none_or(|u| at < u))
            .map(|s| s.host)
            .collect();
        hosts.dedup();
        hosts
    }

    /// The time host `i`'s log last says it took `name`.
    fn took(&self, i: usize, name: &str) -> Option<std::time::SystemTime> {
        self.held(name)
            .into_iter()
            .filter(|s| s.host == i)
            .map(|s| s.from)
            .max()
    }

    fn start_all(&mut self, extra: &[&str]) {
        for i in 0..self.hosts.len() {
            self.start_with(i, extra);
        }
        let ids: Vec<String> = (0..self.hosts.len()).map(|i| format!("h{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let all: Vec<usize> = (0..self.hosts.len()).collect();
        self.wait_members("every host meets every other", &all, &ids);
    }
}

/// The host that ranks highest for the `leader` worker among all five: where it runs when all
/// are up.
fn top_host() -> usize {
    let top = herd::placement::place("leader", ALL, 1)[0];
    ALL.iter().position(|h| *h == top).unwrap()
}

/// Two hosts other than `except`, starting at `from`.
fn two_others(except: usize, from: usize) -> [usize; 2] {
    let others: Vec<usize> = (0..5).filter(|&h| h != except).collect();
    [others[from % 4], others[(from + 1) % 4]]
}

fn since(t0: std::time::SystemTime, t: std::time::SystemTime) -> Duration {
    t.duration_since(t0).unwrap_or_default()
}

#[test]
fn without_quorum_both_sides_of_a_split_own_a_name_and_the_heal_keeps_the_older_claim() {
    let mut bed = Bed::new("names", 5);
    bed.start_all(&[]);
    let top = top_host();
    let owner = format!("h{top}");
    bed.push(0, &leader_config(false), "leader.toml");
    bed.wait_owner(
        "the top host owns it",
        &[0, 1, 2, 3, 4],
        LEADER,
        Some(&owner),
    );

    // 2 | 3 with the owner on the small side: the big side takes the name over once it
    // declares the owner failed; the small side keeps its owner.
    let minority = [top, two_others(top, 0)[0]];
    let majority: Vec<usize> = (0..5).filter(|h| !minority.contains(h)).collect();
    let next = herd::placement::place(
        "leader",
        majority.iter().map(|&h| ALL[h]).collect::<Vec<_>>(),
        1,
    )[0]
    .to_string();
    let split_at = std::time::SystemTime::now();
    bed.split(&minority);
    bed.wait_owner("the big side takes over", &majority, LEADER, Some(&next));
    bed.wait_owner(
        "the small side keeps its owner",
        &minority,
        LEADER,
        Some(&owner),
    );
    let taker = ALL.iter().position(|h| *h == next).unwrap();
    let took = since(
        split_at,
        bed.took(taker, LEADER).expect("the taker logged it"),
    );
    eprintln!("owner cut off from the majority (no FIN): {next} took the name after {took:?}");
    let both = Bed::holders_at(&bed.held(LEADER), std::time::SystemTime::now());
    assert_eq!(
        both,
        vec![top.min(taker), top.max(taker)],
        "both sides own it"
    );

    // Heal: the older claim (the first owner's) wins everywhere, the taker is told, and the
    // first owner never lost it.
    bed.heal();
    bed.wait_members("the heal reunites everyone", &[0, 1, 2, 3, 4], &ALL);
    bed.wait_owner(
        "one owner after the heal",
        &[0, 1, 2, 3, 4],
        LEADER,
        Some(&owner),
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let spans = bed.held(LEADER);
        let taker_span = spans
            .iter()
            .find(|s| s.host == taker)
            .expect("taker's span");
        if let Some(why) = &taker_span.why {
            assert!(
                why.contains(&format!("conflict: {owner} owns it")),
                "the taker lost it to the older claim: {why}"
            );
            let first: Vec<&Held> = spans.iter().filter(|s| s.host == top).collect();
            assert_eq!(
                first.len(),
                1,
                "the first owner held it throughout: {first:?}"
            );
            assert!(first[0].until.is_none(), "{first:?}");
            assert_eq!(spans.len(), 2, "no flip-flop: {spans:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the taker is told it lost: {spans:?}\n{}",
            bed.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The worker runs on the owner only.
    let deadline = Instant::now() + WAIT;
    loop {
        let running: Vec<String> = bed
            .json(0, &["workers"])
            .and_then(|w| w.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|w| w["name"] == "leader" && w["state"] == "running")
            .filter_map(|w| w["node"].as_str().map(String::from))
            .collect();
        if running == vec![owner.clone()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leader runs only on {owner}: {running:?}\n{}",
            bed.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Partitions for the quorum test; each heals before the next.
const PARTITIONS: usize = 20;

#[test]
fn with_quorum_a_name_has_at_most_one_owner_at_every_instant_across_twenty_partitions() {
    let mut bed = Bed::new("quorum", 5);
    bed.start_all(&["--expected-nodes", "5"]);
    let top = top_host();
    let owner = format!("h{top}");
    let started = std::time::SystemTime::now();
    bed.push(0, &leader_config(true), "leader.toml");
    bed.wait_owner(
        "the top host owns it",
        &[0, 1, 2, 3, 4],
        LEADER,
        Some(&owner),
    );

    let mut takeovers = Vec::new();
    let mut gave_up = Vec::new();
    for round in 0..PARTITIONS {
        // Even rounds cut the owner off with one other host; odd rounds cut off two others.
        let minority = if round % 2 == 0 {
            [top, two_others(top, round / 2)[0]]
        } else {
            two_others(top, round / 2)
        };
        let majority: Vec<usize> = (0..5).filter(|h| !minority.contains(h)).collect();
        let split_at = std::time::SystemTime::now();
        bed.split(&minority);
        if round % 2 == 0 {
            let next = herd::placement::place(
                "leader",
                majority.iter().map(|&h| ALL[h]).collect::<Vec<_>>(),
                1,
            )[0];
            bed.wait_owner("the majority takes over", &majority, LEADER, Some(next));
            bed.wait_owner("the minority has no owner", &minority, LEADER, None);
            let spans = bed.held(LEADER);
            let lost = spans
                .iter()
                .filter(|s| s.host == top)
                .filter_map(|s| s.until)
                .max()
                .expect("the cut-off owner gave the name up");
            let taker = ALL.iter().position(|h| *h == next).unwrap();
            let took = bed.took(taker, LEADER).expect("the taker logged it");
            gave_up.push(since(split_at, lost));
            takeovers.push(since(split_at, took));
            let left = bed
                .log(taker)
                .lines()
                .map(strip_ansi)
                .filter(|l| l.contains("member left") && l.contains(&format!("member=h{top}")))
                .filter_map(|l| humantime::parse_rfc3339_weak(l.split_whitespace().next()?).ok())
                .max();
            eprintln!(
                "round {round}: gave up {:?}, h{top} declared failed on h{taker} at {:?}, took {:?}",
                since(split_at, lost),
                left.map(|l| since(split_at, l)),
                since(split_at, took)
            );
        } else {
            bed.wait_owner("the minority has no owner", &minority, LEADER, None);
            bed.wait_owner("the majority keeps it", &majority, LEADER, Some(&owner));
        }
        bed.heal();
        bed.wait_owner(
            "the top host owns it after the heal",
            &[0, 1, 2, 3, 4],
            LEADER,
            Some(&owner),
        );
        eprintln!("partition {round}: minority {minority:?} ... healed");
    }

    // Every 10 ms from the first push to now, by the owners' own log timestamps.
    let spans = bed.held(LEADER);
    let end = std::time::SystemTime::now();
    let mut at = started;
    let (mut sampled, mut doubled) = (0, Vec::new());
    while at < end {
        let holders = Bed::holders_at(&spans, at);
        if holders.len() > 1 {
            doubled.push((at, holders));
        }
        sampled += 1;
        at += Duration::from_millis(10);
    }
    // And exactly: no two spans of different hosts overlap.
    let mut overlaps = Vec::new();
    for a in &spans {
        for b in spans.iter().filter(|b| b.host > a.host) {
            let start = a.from.max(b.from);
            let stop = match (a.until, b.until) {
                (Some(x), Some(y)) => x.min(y),
                (Some(x), None) | (None, Some(x)) => x,
                (None, None) => end,
            };
            if start < stop {
                overlaps.push((a.clone(), b.clone()));
            }
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    eprintln!(
        "{PARTITIONS} partitions, {sampled} instants sampled, {} with two owners; owner cut off: gave the name up after {:?} (median), the majority took it after {:?} (median; worst {:?})",
        doubled.len(),
        median(&mut gave_up),
        median(&mut takeovers),
        takeovers.last().unwrap(),
    );
    let show = |h: &Held| {
        format!(
            "h{} {:?}..{:?} ({})",
            h.host,
            since(started, h.from),
            h.until.map(|u| since(started, u)),
            h.why.as_deref().unwrap_or("held")
        )
    };
    assert!(
        doubled.is_empty() && overlaps.is_empty(),
        "two owners at once, at {} sampled instants; overlapping spans (from the first push):\n{}\nevery span:\n{}",
        doubled.len(),
        overlaps
            .iter()
            .map(|(a, b)| format!("{} and {}", show(a), show(b)))
            .collect::<Vec<_>>()
            .join("\n"),
        spans.iter().map(show).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(
        spans.iter().filter(|s| s.host != top).count(),
        PARTITIONS / 2,
        "the majority took over once per partition that cut the owner off: {spans:?}"
    );
}
