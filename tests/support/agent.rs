//! Shared by the agent tests: real `herd agent` processes on loopback with temp data dirs, the
//! CLI run as a process, and HTTP calls to the API. Every wait polls a condition with a deadline.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous: the machine is small, shared and noisy.
pub const WAIT: Duration = Duration::from_secs(30);

pub const HERD: &str = env!("CARGO_BIN_EXE_herd");

/// A cluster config of one worker, `sleeper`, on every node.
pub const ONE_SLEEPER: &str = r#"
[[worker]]
name = "sleeper"
command = "sleep"
args = ["3600"]
"#;

/// A running `herd agent`, SIGKILLed (by pid) when dropped; its workers die with it.
pub struct AgentProc {
    pub id: String,
    pub child: Child,
    pub gossip: SocketAddr,
    /// The TCP address member-to-member messages arrive on.
    pub rpc: SocketAddr,
    pub api: SocketAddr,
    pub data_dir: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
    /// The API token, read from the spec's token file once the agent runs.
    pub token: Option<String>,
    /// With [`Spec::stderr_unread`]: the agent's stderr, held open and never read again.
    pub unread_stderr: Option<BufReader<std::process::ChildStderr>>,
}

/// How to start an agent.
#[derive(Clone, Default)]
pub struct Spec {
    pub id: String,
    pub seeds: Vec<String>,
    pub tags: Vec<String>,
    pub data_dir: PathBuf,
    pub cluster: String,
    pub api: Option<String>,
    pub listen: Option<String>,
    /// More flags for `herd agent`.
    pub args: Vec<String>,
    /// `--api-token-file`: the agent creates it when missing.
    pub token_file: Option<PathBuf>,
    /// `--api-host`s.
    pub api_hosts: Vec<String>,
    /// Stop reading the agent's stderr once it runs, keeping the pipe open: a pipe nobody reads.
    pub stderr_unread: bool,
}

impl Spec {
    pub fn new(id: &str, data_root: &Path, cluster: &str) -> Spec {
        Spec {
            id: id.into(),
            data_dir: data_root.join(id),
            cluster: cluster.into(),
            ..Spec::default()
        }
    }

    pub fn seed(mut self, agent: &AgentProc) -> Spec {
        self.seeds.push(agent.gossip.to_string());
        self
    }

    pub fn seed_addr(mut self, addr: &str) -> Spec {
        self.seeds.push(addr.into());
        self
    }

    /// Adds flags to the agent's command line.
    pub fn args(mut self, args: &[&str]) -> Spec {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn tag(mut self, tag: &str) -> Spec {
        self.tags.push(tag.into());
        self
    }

    /// Protects the API with the token in `path` (created by the agent when missing).
    pub fn token_file(mut self, path: &Path) -> Spec {
        self.token_file = Some(path.into());
        self
    }

    /// After its "running" line, the agent's stderr is a pipe nobody reads (it fills and
    /// blocks); `AgentProc::log` then ends there.
    pub fn stderr_unread(mut self) -> Spec {
        self.stderr_unread = true;
        self
    }

    pub fn api_host(mut self, name: &str) -> Spec {
        self.api_hosts.push(name.into());
        self
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(HERD);
        cmd.arg("agent")
            .args(["--node-id", &self.id])
            .args(["--listen", self.listen.as_deref().unwrap_or("127.0.0.1:0")])
            .args(["--api", self.api.as_deref().unwrap_or("127.0.0.1:0")])
            .args(["--cluster-id", &self.cluster])
            .arg("--data-dir")
            .arg(&self.data_dir);
        for seed in &self.seeds {
            cmd.args(["--seed", seed]);
        }
        for tag in &self.tags {
            cmd.args(["--tag", tag]);
        }
        cmd.args(&self.args);
        if let Some(path) = &self.token_file {
            cmd.arg("--api-token-file").arg(path);
        }
        for name in &self.api_hosts {
            cmd.args(["--api-host", name]);
        }
        cmd.env("HERD_LOG", "herd=info").env_remove("HERD_API");
        cmd
    }

    /// Starts the agent and waits for its "running" line, which names its addresses.
    pub fn start(&self) -> AgentProc {
        let mut child = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herd agent");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        let unread = self.stderr_unread;
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let line = line.trim_end_matches('\n').to_string();
                sink.lock().unwrap().push(line.clone());
                if line.contains(" running: gossip ") {
                    if unread {
                        let _ = tx.send((line, Some(reader)));
                        return;
                    }
                    let _ = tx.send((line, None));
                }
            }
        });
        let (line, unread_stderr) = match rx.recv_timeout(WAIT) {
            Ok(got) => got,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "agent {} did not start; its log: {:#?}",
                    self.id,
                    log.lock().unwrap()
                );
            }
        };
        let word_after = |marker: &str| {
            line.split(marker)
                .nth(1)
                .unwrap()
                .split([',', ' '])
                .next()
                .unwrap()
                .to_string()
        };
        AgentProc {
            id: self.id.clone(),
            child,
            gossip: word_after("gossip ").parse().unwrap(),
            rpc: word_after("messages ").parse().unwrap(),
            api: word_after("API http://").parse().unwrap(),
            data_dir: self.data_dir.clone(),
            log,
            unread_stderr,
            token: self.token_file.as_ref().map(|path| {
                std::fs::read_to_string(path)
                    .expect("the agent wrote its token file")
                    .trim()
                    .to_string()
            }),
        }
    }
}

/// Makes a signing key pair with `herd keygen --signing --out`; returns (key file, public key).
pub fn keypair(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(name).display().to_string();
    let out = std::process::Command::new(HERD)
        .args(["keygen", "--signing", "--out", &path])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    (path, public)
}

/// Waits (bounded) for a process to exit; returns its output.
pub fn exit_of(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit: {:?}", child.wait_with_output());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

impl AgentProc {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// A request to this agent's API with its token, if it has one.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        http_with(method, &self.url(path), body, &headers)
    }

    /// GET, expecting success.
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, None);
        assert!(status < 300, "GET {path} on {}: {status} {body}", self.id);
        body
    }

    /// The CLI as a command against this agent, with its token in `HERD_API_TOKEN`.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(HERD);
        cmd.args(args)
            .env("HERD_API", self.api.to_string())
            .env_remove("HERD_API_TOKEN");
        if let Some(token) = &self.token {
            cmd.env("HERD_API_TOKEN", token);
        }
        cmd
    }

    /// Runs the CLI against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().expect("run herd")
    }

    /// Runs the CLI and expects success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "herd {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The cluster's workers as this agent lists them: (node, name) -> (state, pid).
    pub fn workers(&self) -> Vec<(String, String, String, Option<u64>)> {
        self.get("/v1/workers")
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["node"].as_str().unwrap().to_string(),
                    w["name"].as_str().unwrap().to_string(),
                    w["state"].as_str().unwrap().to_string(),
                    w["pid"].as_u64(),
                )
            })
            .collect()
    }

    /// Waits until `pred` holds for this agent's worker listing; returns the listing.
    pub fn wait_workers(
        &self,
        what: &str,
        pred: impl Fn(&[(String, String, String, Option<u64>)]) -> bool,
    ) -> Vec<(String, String, String, Option<u64>)> {
        let deadline = Instant::now() + WAIT;
        loop {
            let workers = self.workers();
            if pred(&workers) {
                return workers;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} never saw {what}; it lists {workers:?}\nlog: {:#?}",
                    self.id,
                    self.log.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until this agent lists `n` members.
    pub fn wait_members(&self, n: usize) {
        wait_until(&format!("{} to list {n} members", self.id), || {
            self.get("/v1/members").as_array().map(Vec::len) == Some(n)
        });
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the agent's log has a line with `needle`, waiting up to 2 s for it: the agent's
    /// log is written by a thread of its own, a moment after what it reports.
    pub fn log_contains(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERMs the agent (by pid) and waits (bounded) for it to leave and exit.
    pub fn terminate(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{} did not stop", self.id);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value of the metric line that starts with `series` (name and labels), 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (status, body) = self.request("GET", "/metrics", None);
        assert_eq!(status, 200, "GET /metrics on {}", self.id);
        let text = body.as_str().unwrap_or_default().to_string();
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{series} ")))
            .map_or(0.0, |v| v.parse().unwrap())
    }

    /// The (version, checksum) of the config this agent holds; (0, 0) for none.
    pub fn config_id(&self) -> (u64, u64) {
        let config = self.get("/v1/config");
        (
            config["version"].as_u64().unwrap(),
            config["checksum"].as_u64().unwrap_or(0),
        )
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The (state, pid) of `name` on `node` in a listing.
pub fn find(
    workers: &[(String, String, String, Option<u64>)],
    node: &str,
    name: &str,
) -> Option<(String, Option<u64>)> {
    workers
        .iter()
        .find(|w| w.0 == node && w.1 == name)
        .map(|w| (w.2.clone(), w.3))
}

/// Whether `name` runs on `node` in a listing.
pub fn running(workers: &[(String, String, String, Option<u64>)], node: &str, name: &str) -> bool {
    find(workers, node, name).is_some_and(|(state, pid)| state == "running" && pid.is_some())
}

/// Polls `cond` every 50 ms until it holds, for at most [`WAIT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An HTTP request (a POST, PUT or DELETE says `Content-Type: application/json`, as the API
/// asks); returns the status and the JSON body.
pub fn http(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    http_with(method, url, body, &[])
}

/// [`http`] with more headers.
pub fn http_with(
    method: &str,
    url: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let json = ("content-type", "application/json");
    let response = match (method, body) {
        ("GET", _) => with_headers(agent.get(url), headers).call(),
        ("DELETE", _) => with_headers(agent.delete(url), headers)
            .header(json.0, json.1)
            .call(),
        ("POST", None) => with_headers(agent.post(url), headers)
            .header(json.0, json.1)
            .send_empty(),
        ("POST", Some(b)) => with_headers(agent.post(url), headers)
            .header(json.0, json.1)
            .send(b),
        ("PUT", Some(b)) => with_headers(agent.put(url), headers)
            .header(json.0, json.1)
            .send(b),
        _ => panic!("unsupported {method}"),
    };
    let mut response = response.expect("the API answers");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn with_headers<B>(
    mut request: ureq::RequestBuilder<B>,
    headers: &[(&str, &str)],
) -> ureq::RequestBuilder<B> {
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
}

/// A request written by hand to `addr` (any Host, any headers, a body of any size), with
/// `Connection: close`; returns the status line's code and the whole answer. Writing stops at
/// the first error (the server may answer and close before reading everything).
pub fn raw_http(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the API");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let head = format!("{}\r\nConnection: close\r\n\r\n", head.trim_end());
    stream
        .write_all(head.as_bytes())
        .expect("write the request head");
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    (status, answer)
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}
