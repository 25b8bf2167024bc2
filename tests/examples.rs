//! The examples run as their docs say: real example processes on 127.0.0.1, signalled by pid, with
//! bounded waits on the lines they print. The binaries are the ones `cargo test` builds next to
//! this test (examples are built before tests); this test builds nothing.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Generous: the machine is small, shared and noisy.
const WAIT: Duration = Duration::from_secs(30);

/// The compiled example `name`: `target/<profile>/examples/<name>`, beside this test's
/// `target/<profile>/deps/`. Refused when missing, or older than its source or the library's
/// (`cargo test --test examples` alone does not rebuild examples).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test`, which builds the examples first \
         (or `cargo build --example {name}`)",
        path.display()
    );
    let built = modified(&path);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![root.join("examples").join(format!("{name}.rs"))];
    rust_files(&root.join("src"), &mut sources);
    if let Some(newer) = sources.iter().find(|source| modified(source) > built) {
        panic!(
            "{} is older than {}: run the tests with `cargo test` (or `cargo build --example {name}` first)",
            path.display(),
            newer.display()
        );
    }
    path
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// One example process: what it printed (stdout and stderr, one line each), SIGKILLed by its pid
/// when dropped if it still runs.
#[derive(Debug)]
struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn start(name: &str, program: &PathBuf, args: &[&str]) -> Proc {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("starting {}: {err}", program.display()));
        let (tx, lines) = mpsc::channel();
        forward(child.stdout.take().expect("stdout"), tx.clone());
        forward(child.stderr.take().expect("stderr"), tx);
        Proc {
            name: name.to_string(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap_or_else(|err| panic!("{signal} to {}: {err}", self.name));
    }

    /// Waits (bounded) for a line containing `text`, printed since the start; returns it.
    fn wait_line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.seen.iter().find(|line| line.contains(text)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(err) => {
                    let why = match err {
                        mpsc::RecvTimeoutError::Timeout => format!("within {WAIT:?}"),
                        mpsc::RecvTimeoutError::Disconnected => "before its output ended".into(),
                    };
                    panic!(
                        "{} did not print {text:?} {why}; it printed:\n{}",
                        self.name,
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    /// Sends `signal` and waits (bounded) for the process to say it leaves gracefully, to say it
    /// left, and to exit with status 0.
    fn leave_on(&mut self, signal: Signal) {
        self.signal(signal);
        self.wait_line(&format!("{signal}: leaving the cluster gracefully"));
        self.wait_line("left the cluster");
        let status = self.wait_exit();
        assert!(
            status.success(),
            "{}'s exit after {signal}: {status}",
            self.name
        );
    }

    /// Waits (bounded) for the process to exit.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {WAIT:?}; it printed:\n{}",
                self.name,
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends every line read from `stream` to `tx`, on a thread of its own, until the stream ends.
fn forward(stream: impl Read + Send + 'static, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

/// The address in the example's first line, "gossiping on ADDR; ...".
fn gossip_addr(line: &str) -> String {
    line.strip_prefix("gossiping on ")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string()
}

/// Starts example `name` once per id on loopback ports chosen freely: the first founds the
/// cluster, the others join through its address.
fn cluster<const N: usize>(name: &str, ids: [&str; N]) -> [Proc; N] {
    let program = example(name);
    let listen = ["--listen", "127.0.0.1:0"];
    let mut first = Proc::start(ids[0], &program, &[&["--id", ids[0]][..], &listen].concat());
    let seed = gossip_addr(&first.wait_line("gossiping on "));
    let mut procs = vec![first];
    for id in &ids[1..] {
        let args = [&["--id", id, "--seed", seed.as_str()][..], &listen].concat();
        procs.push(Proc::start(id, &program, &args));
    }
    procs.try_into().expect("one process per id")
}

#[test]
fn leader_example_elects_the_next_leader_after_a_graceful_leave_and_a_crash() {
    let [mut a, mut b, mut c] = cluster("leader", ["a", "b", "c"]);

    // a has the smallest id: it leads, and the others' calls reach it.
    a.wait_line("leader is now a (was none): me");
    for follower in [&mut b, &mut c] {
        follower.wait_line("leader is now a (was none)");
        follower.wait_line("reply from a: leader a, calls answered:");
    }
    a.wait_line("answered b's call");
    a.wait_line("answered c's call");

    // SIGTERM: a says what it does, leaves gracefully and exits 0; b leads.
    a.leave_on(Signal::SIGTERM);
    for follower in [&mut b, &mut c] {
        follower.wait_line("- a left (graceful)");
    }
    b.wait_line("leader is now b (was a): me");
    c.wait_line("leader is now b (was a)");
    c.wait_line("reply from b: leader b, calls answered:");

    // SIGKILL: b says nothing; c's failure detector reports it, and c leads alone.
    b.signal(Signal::SIGKILL);
    b.wait_exit();
    c.wait_line("- b left (failed)");
    c.wait_line("leader is now c (was b): me");

    // SIGINT leaves gracefully too.
    c.leave_on(Signal::SIGINT);
}

#[test]
fn member_example_leaves_gracefully_on_sigterm() {
    let [mut a, mut b] = cluster("member", ["a", "b"]);
    a.wait_line("+ b joined");
    b.wait_line("b joined the cluster: a, b");

    b.leave_on(Signal::SIGTERM);
    a.wait_line("- b left (graceful)");
}
