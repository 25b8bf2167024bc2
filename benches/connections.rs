//! Connection churn against one `herd agent`: N TCP connect/close cycles on its messaging port
//! (as a port scanner or a health check would make), then its open descriptors and resident
//! memory, at the start, right after the last close, and once they settle (at most 5 s later).
//!
//!     cargo bench --bench connections                   # 100,000 cycles
//!     cargo bench --bench connections -- --cycles 20000
//!
//! Half the connections close at once; the other half first send a partial handshake (the
//! server is then waiting inside the handshake when the peer goes).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HERD: &str = env!("CARGO_BIN_EXE_herd");

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut cycles = 100_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--cycles" => cycles = args.next().unwrap().parse().unwrap(),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(HERD)
        .args(["agent", "--node-id", "churn", "--listen", "127.0.0.1:0"])
        .args(["--api", "127.0.0.1:0", "--cluster-id", "bench-churn"])
        .arg("--data-dir")
        .arg(data.path().join("d"))
        .env("HERD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start herd agent");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains(" running: gossip "))
        .expect("agent starts");
    std::thread::spawn(move || for _ in lines {});
    let rpc: SocketAddr = line
        .split("messages ")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ']).next())
        .and_then(|addr| addr.parse().ok())
        .expect("the running line names the messages address");
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(1));
    let (fd0, rss0) = (fds(pid), rss_kib(pid));

    let started = Instant::now();
    for n in 0..cycles {
        let mut conn = TcpStream::connect(rpc).expect("connect");
        if n % 2 == 1 {
            let _ = conn.write_all(b"herd\x01");
        }
        drop(conn);
    }
    let churn = started.elapsed();
    let (fd1, rss1) = (fds(pid), rss_kib(pid));
    let settle = Instant::now();
    while fds(pid) > fd0 && settle.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let settled = settle.elapsed();
    let (fd2, rss2) = (fds(pid), rss_kib(pid));
    println!(
        "{cycles} connect/close cycles in {:.1} s ({:.0}/s) | fds: start {fd0}, after {fd1}, settled {fd2} ({:.2} s) | RSS: start {:.1} MiB, after {:.1} MiB, settled {:.1} MiB",
        churn.as_secs_f64(),
        cycles as f64 / churn.as_secs_f64(),
        settled.as_secs_f64(),
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        rss2 as f64 / 1024.0,
    );
    let _ = child.kill();
    let _ = child.wait();
}
