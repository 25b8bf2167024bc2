//! A push that replaces every worker of an agent, each ignoring SIGTERM for its whole
//! `shutdown_timeout`: how long until the push is answered, until every worker runs its new
//! spec, and what `GET /v1/health` took meanwhile (sampled every 50 ms).
//!
//! `cargo bench --bench reconcile -- [--workers 100] [--timeout 5s] [--runs 3]`

#[path = "../tests/support/agent.rs"]
mod agent;
#[path = "../tests/support/replace_all.rs"]
mod replace_all;

use std::time::Duration;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let workers: usize = arg("--workers", "100").parse().expect("--workers N");
    let timeout = arg("--timeout", "5s");
    let runs: u32 = arg("--runs", "3").parse().expect("--runs N");
    let dir = tempfile::tempdir().unwrap();
    let measured = replace_all::run(
        dir.path(),
        workers,
        &timeout,
        runs,
        Duration::from_secs(600),
    );
    println!("{workers} workers ignoring SIGTERM, shutdown_timeout {timeout}, {runs} replace-alls");
    println!("run | push answered | all replaced | health p50 | health max | health samples");
    for (i, m) in measured.iter().enumerate() {
        let p50 = m
            .health
            .get(m.health.len() / 2)
            .copied()
            .unwrap_or_default();
        let max = m.health.last().copied().unwrap_or_default();
        println!(
            "{} | {} | {:.2} s | {} | {} | {}",
            i + 1,
            ms(m.push_answered),
            m.all_replaced.as_secs_f64(),
            ms(p50),
            ms(max),
            m.health.len()
        );
    }
    let mut all: Vec<Duration> = measured.iter().map(|m| m.all_replaced).collect();
    all.sort();
    println!(
        "median all replaced: {:.2} s",
        all[all.len() / 2].as_secs_f64()
    );
}
