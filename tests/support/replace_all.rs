//! The "replace every worker" scenario shared by tests/agent_reconcile.rs and
//! benches/reconcile.rs: one agent runs `n` workers that ignore SIGTERM, each with
//! `shutdown_timeout`; a push changes all of them; measured: how long the push took to be
//! answered, how long until every worker runs its new spec (a new pid), and how long
//! `GET /v1/health` took meanwhile (sampled every 50 ms from another thread).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::agent::{http, AgentProc, Spec};

/// What one replace-all took.
pub struct Measured {
    pub push_answered: Duration,
    pub all_replaced: Duration,
    /// Every `/v1/health` answer's time during the reconcile, sorted.
    pub health: Vec<Duration>,
}

fn config(n: usize, shutdown_timeout: &str, generation: u32) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[worker]]\nname = \"w{i}\"\ncommand = \"sh\"\n\
                 args = [\"-c\", \"trap '' TERM; exec sleep {}\"]\n\
                 shutdown_timeout = \"{shutdown_timeout}\"\n\n",
                3600 + generation
            )
        })
        .collect()
}

fn pids(a: &AgentProc, n: usize) -> Option<Vec<u64>> {
    let listed = a.get("/v1/workers");
    let workers = listed.as_array()?;
    let pids: Vec<u64> = (0..n)
        .filter_map(|i| {
            let name = format!("w{i}");
            workers
                .iter()
                .find(|w| w["name"] == name.as_str() && w["state"] == "running")
                .and_then(|w| w["pid"].as_u64())
        })
        .collect();
    (pids.len() == n).then_some(pids)
}

fn push(a: &AgentProc, dir: &Path, text: &str) -> Duration {
    let file = dir.join("cluster.toml");
    std::fs::write(&file, text).unwrap();
    let started = Instant::now();
    a.cli_ok(&["config", "push", file.to_str().unwrap()]);
    started.elapsed()
}

/// Waits (at most `bound`) until all `n` run with pids none of which is in `old`.
fn wait_replaced(a: &AgentProc, n: usize, old: &[u64], bound: Duration) -> Vec<u64> {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(pids) = pids(a, n) {
            if pids.iter().all(|p| !old.contains(p)) {
                return pids;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not every worker was replaced within {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts an agent in `dir`, runs `n` workers, and measures `runs` replace-alls.
pub fn run(
    dir: &Path,
    n: usize,
    shutdown_timeout: &str,
    runs: u32,
    bound: Duration,
) -> Vec<Measured> {
    let a = Spec::new("a", dir, "replace-all").start();
    push(&a, dir, &config(n, shutdown_timeout, 0));
    let mut old = wait_replaced(&a, n, &[], bound);
    let mut measured = Vec::new();
    for generation in 1..=runs {
        let stop = Arc::new(AtomicBool::new(false));
        let health_url = a.url("/v1/health");
        let sampler = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut times = Vec::new();
                // Bounded: at most `bound` of samples, one every 50 ms.
                let deadline = Instant::now() + bound;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let started = Instant::now();
                    let (status, _) = http("GET", &health_url, None);
                    times.push(started.elapsed());
                    assert_eq!(status, 200, "health during the reconcile");
                    std::thread::sleep(Duration::from_millis(50));
                }
                times
            })
        };
        let started = Instant::now();
        let push_answered = push(&a, dir, &config(n, shutdown_timeout, generation));
        old = wait_replaced(&a, n, &old, bound);
        let all_replaced = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let mut health = sampler.join().expect("the health sampler");
        health.sort();
        measured.push(Measured {
            push_answered,
            all_replaced,
            health,
        });
    }
    measured
}
