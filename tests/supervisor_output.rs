//! Worker output off the restart path, with real processes: when the log the output goes to
//! blocks for good, a flood of output is dropped and counted per worker, kept in memory, and a
//! sibling's restart goes on; a worker's log file gets both streams, in order.

#[path = "support/supervisor.rs"]
mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use herd::supervisor::{LogQuery, LogSource, Supervisor, WorkerSpec};
use support::*;

/// A log writer that never returns: a pipe nobody reads.
struct Stuck;

impl Write for Stuck {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        loop {
            std::thread::park();
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_blocked_log_drops_and_counts_output_and_never_delays_a_restart() {
    // Only worker output is logged, and its writer blocks forever at the first line.
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "herd::supervisor::output=info",
        ))
        .with_writer(|| Stuck)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let sup = Supervisor::builder()
        .max_restarts(100, Duration::from_secs(1))
        .start();
    // 833,333 lines of "hello", then silence (the pipe stays open).
    sup.start_worker(script(
        "flood",
        "yes hello | head -c 5000000; exec sleep 3600",
    ))
    .await
    .unwrap();
    let pid = sup.start_worker(sleeper("quiet")).await.unwrap();

    let stats = eventually("the whole flood to be read", || async {
        let stats = sup.output_stats();
        let flood = stats.into_iter().find(|s| s.worker == "flood")?;
        (flood.lines == 833_333).then_some(flood)
    })
    .await;
    assert!(stats.dropped > 800_000, "{stats:?}");
    assert_eq!(stats.write_errors, 0);
    let tail = sup.tail("flood").await.unwrap();
    assert_eq!(tail.stdout.len(), herd::supervisor::TAIL_LINES);
    assert!(tail.stdout.iter().all(|l| l == "hello"));

    let started = Instant::now();
    sigkill(pid);
    wait_new_pid(&sup, "quiet", pid).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "restart took {took:?}");
    // The supervisor's thread still answers.
    assert_eq!(sup.status().await.len(), 2);
    sup.shutdown().await;
}

#[tokio::test]
async fn a_log_file_gets_both_streams_in_order_and_logs_read_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("both.log");
    let sup = Supervisor::builder().start();
    let spec = WorkerSpec::new("both", "sh")
        .args([
            "-c",
            "for i in $(seq 1 300); do echo out $i; echo err $i >&2; done; exec sleep 3600",
        ])
        .log_file(&path, 1 << 20, 1);
    sup.start_worker(spec).await.unwrap();
    let text = eventually("both streams in the file", || async {
        let text = std::fs::read_to_string(&path).ok()?;
        (text.contains(" stdout out 300\n") && text.contains(" stderr err 300\n")).then_some(text)
    })
    .await;
    let outs: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split_once(" stdout out "))
        .map(|(_, n)| n.parse().unwrap())
        .collect();
    assert_eq!(outs, (1..=300).collect::<Vec<_>>());
    assert_eq!(text.lines().count(), 600);

    // Memory keeps 200 lines per stream; 500 lines come from the file.
    let batch = sup
        .logs(
            "both",
            &LogQuery {
                tail: 500,
                since: None,
            },
        )
        .unwrap();
    assert_eq!(batch.source, LogSource::File);
    assert_eq!(batch.lines.len(), 500);
    assert_eq!(batch.next, 601);
    let recent = sup
        .logs(
            "both",
            &LogQuery {
                tail: 0,
                since: Some(599),
            },
        )
        .unwrap();
    assert_eq!(recent.lines.len(), 2);
    assert_eq!(recent.source, LogSource::Memory);
    assert!(sup.logs("nobody", &LogQuery::default()).is_err());
    sup.shutdown().await;
}
