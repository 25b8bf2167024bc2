//! Benchmark of the supervisor: restart latency and the cost of idle workers.
//!
//! ```text
//! cargo run --release --example bench_restart -- [KILLS] [IDLE_WORKERS] [IDLE_SECS] [--current-thread] [--chatty]
//! ```
//! (defaults: 500 kills, 1000 idle workers, 10 s idle interval)
//!
//! With `--chatty`, the restart latency is measured twice in the same run: quiet, then with a
//! worker printing 10 MB/s (1,000 lines of 100 bytes every 10 ms, a C program compiled here)
//! beside the one being killed, its output going to a log file rotated at 10 MB (keep 2) in a
//! temp dir; p50/p90/p99 of both are printed.
//!
//! 1. Restart latency: a worker whose first instruction writes
//!    `CLOCK_REALTIME` nanoseconds to a FIFO (a tiny C program compiled here
//!    with `cc`; without `cc`, a clearly labelled `sh` + `date +%s%N`
//!    fallback, which measures the shell's start-up too). The benchmark reads
//!    the clock, SIGKILLs the worker, and reads the replacement's stamp:
//!    latency = stamp - clock before the kill. p50/p90/p95/p99/max over KILLS kills.
//! 2. Baseline, same method: a bare C loop that SIGKILLs its child, waits
//!    for it with `waitpid` and forks/execs the same stamp program.
//! 3. Idle cost: KILLS aside, IDLE_WORKERS `sleep 3600` workers in one
//!    supervisor; this process's CPU (utime+stime from /proc/self/stat) over
//!    an idle interval of IDLE_SECS, and its RSS (VmRSS).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use herd::supervisor::{Supervisor, WorkerEvent, WorkerSpec};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::mpsc;

const STAMP_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    int fd = open(argv[1], O_WRONLY);
    if (write(fd, buf, n) != n) return 1;
    close(fd);
    for (;;) pause();
}
"#;

const BARE_C: &str = r#"
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static long long now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
static pid_t start(char *prog, char *fifo) {
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = {prog, fifo, NULL};
        execv(prog, argv);
        _exit(127);
    }
    return pid;
}
/* bare N PROG FIFO: prints N restart latencies in ns */
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    FILE *in = fopen(argv[3], "r+");
    long long stamp;
    pid_t pid = start(argv[2], argv[3]);
    if (fscanf(in, "%lld", &stamp) != 1) return 1;
    for (int i = 0; i < n; i++) {
        long long t0 = now();
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        pid = start(argv[2], argv[3]);
        if (fscanf(in, "%lld", &stamp) != 1) return 1;
        printf("%lld\n", stamp - t0);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 0;
}
"#;

/// Prints 10 MB/s: 1,000 lines of 100 bytes every 10 ms, on an absolute schedule.
const CHATTY_C: &str = r#"
#include <string.h>
#include <time.h>
#include <unistd.h>
static char block[100 * 1000];
int main(void) {
    for (int i = 0; i < 1000; i++) {
        memset(block + i * 100, 'x', 99);
        block[i * 100 + 99] = '\n';
    }
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        size_t off = 0;
        while (off < sizeof block) {
            ssize_t n = write(1, block + off, sizeof block - off);
            if (n <= 0) return 1;
            off += (size_t)n;
        }
        next.tv_nsec += 10000000;
        if (next.tv_nsec >= 1000000000) { next.tv_sec++; next.tv_nsec -= 1000000000; }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
}
"#;

fn realtime_ns() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    d.as_nanos() as i64
}

fn compile(dir: &Path, name: &str, source: &str) -> Option<PathBuf> {
    let src = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    std::fs::write(&src, source).ok()?;
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .ok()?
        .success();
    ok.then_some(bin)
}

fn summary(label: &str, mut ns: Vec<i64>) {
    ns.sort_unstable();
    let ms = |v: i64| v as f64 / 1e6;
    let pct = |p: usize| ns[(ns.len() * p / 100).min(ns.len() - 1)];
    println!(
        "{label}: n={} p50={:.3} ms p90={:.3} ms p95={:.3} ms p99={:.3} ms max={:.3} ms min={:.3} ms",
        ns.len(),
        ms(pct(50)),
        ms(pct(90)),
        ms(pct(95)),
        ms(pct(99)),
        ms(*ns.last().unwrap()),
        ms(ns[0])
    );
}

/// Reads stamps from the FIFO on a thread; keeps the FIFO open read-write so
/// it never reports end of file between workers.
fn stamps(fifo: &Path) -> mpsc::UnboundedReceiver<i64> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(fifo)
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            if let Ok(v) = line.trim().parse() {
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    rx
}

async fn next_stamp(rx: &mut mpsc::UnboundedReceiver<i64>) -> i64 {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no stamp within 10 s")
        .expect("stamp reader gone")
}

async fn restart_latency(
    spec: WorkerSpec,
    rx: &mut mpsc::UnboundedReceiver<i64>,
    kills: usize,
    beside: Option<WorkerSpec>,
) -> Vec<i64> {
    let sup = Supervisor::builder()
        .max_restarts(u32::MAX, Duration::from_secs(1))
        .start();
    if let Some(chatty) = beside {
        sup.start_worker(chatty).await.unwrap();
        // Let its output reach full speed first.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut events = sup.subscribe();
    let mut pid = sup.start_worker(spec).await.unwrap();
    next_stamp(rx).await;
    let mut out = Vec::with_capacity(kills);
    for _ in 0..kills {
        let t0 = realtime_ns();
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        let stamp = next_stamp(rx).await;
        out.push(stamp - t0);
        pid = loop {
            match events.recv().await.unwrap() {
                WorkerEvent::Started { pid: new, .. } if new != pid => break new,
                _ => {}
            }
        };
    }
    for stats in sup.output_stats() {
        if stats.lines > 0 {
            println!(
                "  output of {}: {} lines read, {} dropped by the full sink, {} write errors",
                stats.worker, stats.lines, stats.dropped, stats.write_errors
            );
        }
    }
    sup.shutdown().await;
    out
}

fn proc_self(field: &str) -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_owned())
        .unwrap_or_default()
}

fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the comm.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

async fn idle_cost(workers: usize, secs: u64) {
    // SAFETY: sysconf has no preconditions.
    let tick = match unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) } {
        t if t > 0 => t as f64,
        _ => 100.0,
    };
    println!("rss before idle workers: {}", proc_self("VmRSS:"));
    let sup = Supervisor::builder().start();
    let started = Instant::now();
    for i in 0..workers {
        let spec = WorkerSpec::new(format!("idle-{i}"), "sleep").args(["3600"]);
        sup.start_worker(spec).await.unwrap();
    }
    println!(
        "started {workers} idle workers in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (c0, t0) = (cpu_ticks(), Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (c1, wall) = (cpu_ticks(), t0.elapsed().as_secs_f64());
    let cpu = (c1 - c0) as f64 / tick;
    println!(
        "{workers} idle workers: supervisor cpu {:.3} s over {:.1} s = {:.2} %; rss {}; threads {}",
        cpu,
        wall,
        100.0 * cpu / wall,
        proc_self("VmRSS:"),
        proc_self("Threads:")
    );
    let st = sup.status().await;
    let t = Instant::now();
    let status_again = sup.status().await;
    println!(
        "status() of {} workers: {:.2} ms",
        status_again.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(st);
    let t = Instant::now();
    sup.shutdown().await;
    println!(
        "shutdown of {workers} workers: {:.2} s",
        t.elapsed().as_secs_f64()
    );
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let current_thread = args.iter().any(|a| a == "--current-thread");
    let chatty = args.iter().any(|a| a == "--chatty");
    args.retain(|a| a != "--current-thread" && a != "--chatty");
    let args: Vec<usize> = args
        .iter()
        .map(|a| a.parse().expect("numeric arguments"))
        .collect();
    let mut rt = if current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let rt = rt.enable_all().build().unwrap();
    println!(
        "runtime: {}",
        if current_thread {
            "current-thread"
        } else {
            "multi-thread (one worker per core)"
        }
    );
    rt.block_on(run(args, chatty));
}

async fn run(args: Vec<usize>, chatty: bool) {
    let kills = args.first().copied().unwrap_or(500);
    let idle = args.get(1).copied().unwrap_or(1000);
    let idle_secs = args.get(2).copied().unwrap_or(10) as u64;

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stamps");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut rx = stamps(&fifo);
    let fifo_str = fifo.to_str().unwrap().to_owned();

    let stamp = compile(dir.path(), "stamp", STAMP_C);
    let spec = match &stamp {
        Some(bin) => WorkerSpec::new("stamp", bin).args([fifo_str.clone()]),
        None => {
            println!("cc not found: FALLBACK worker sh + date +%s%N (includes shell start-up)");
            let script = format!("date +%s%N > {fifo_str}; exec sleep 3600");
            WorkerSpec::new("stamp", "sh").args(["-c".to_owned(), script])
        }
    };
    let lat = restart_latency(spec.clone(), &mut rx, kills, None).await;
    if chatty {
        summary("quiet: herd restart latency", lat.clone());
        match compile(dir.path(), "chatty", CHATTY_C) {
            Some(bin) => {
                let beside = WorkerSpec::new("chatty", bin).log_file(
                    dir.path().join("chatty.log"),
                    10 << 20,
                    2,
                );
                let loud = restart_latency(spec, &mut rx, kills, Some(beside)).await;
                summary("chatty (10 MB/s beside): herd restart latency", loud);
            }
            None => println!("cc not found: no chatty run"),
        }
    }
    summary("herd restart latency (SIGKILL -> first instruction)", lat);

    if let (Some(stamp), Some(bare)) = (&stamp, compile(dir.path(), "bare", BARE_C)) {
        // The bare loop reads a FIFO of its own.
        let fifo2 = dir.path().join("bare-stamps");
        nix::unistd::mkfifo(&fifo2, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let out = Command::new(bare)
            .arg(kills.to_string())
            .arg(stamp)
            .arg(&fifo2)
            .output()
            .unwrap();
        let ns: Vec<i64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
        if ns.is_empty() {
            println!("bare loop failed: {}", String::from_utf8_lossy(&out.stderr));
        } else {
            summary("bare C kill/waitpid/fork/exec loop (same method)", ns);
        }
    }

    if idle > 0 {
        idle_cost(idle, idle_secs).await;
    }
}
