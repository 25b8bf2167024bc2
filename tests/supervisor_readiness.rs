//! Readiness with real processes: a TCP port that accepts, a `{"ready": true}`
//! line, a time the worker must stay up; ordered strategies waiting for it;
//! failed starts when a worker exits early or is not ready in time.

#[path = "support/supervisor.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use herd::supervisor::{
    Backoff, Readiness, Strategy, Supervisor, WorkerEvent, WorkerSpec, WorkerState,
};
use support::*;

/// A loopback address nothing listens on (the port was free a moment ago).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A worker that prints the wall clock (ns), then sleeps `delay`, then
/// prints the clock again just before it listens on `addr`, and accepts
/// forever.
fn late_listener(name: &str, addr: SocketAddr, delay: &str) -> WorkerSpec {
    let program = format!(
        "import socket, time\n\
         print('start', time.time_ns(), flush=True)\n\
         time.sleep({delay})\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{}', {}))\n\
         print('listen', time.time_ns(), flush=True)\n\
         s.listen(16)\n\
         while True:\n    s.accept()[0].close()\n",
        addr.ip(),
        addr.port()
    );
    WorkerSpec::new(name, "python3")
        .args(["-c", &program])
        .ready(Readiness::Tcp(addr))
        .ready_timeout(PATIENCE)
}

/// A worker that prints the wall clock (ns) as it starts, then sleeps.
fn stamper(name: &str) -> WorkerSpec {
    script(name, "echo start $(date +%s%N); exec sleep 3600")
}

/// The numbers after `prefix` in the worker's stdout, oldest first.
async fn stamps(sup: &Supervisor, name: &str, prefix: &str) -> Vec<u128> {
    sup.tail(name)
        .await
        .unwrap()
        .stdout
        .iter()
        .filter_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
        .collect()
}

/// Waits until the worker has printed `n` stamps after `prefix`.
async fn wait_stamps(sup: &Supervisor, name: &str, prefix: &str, n: usize) -> Vec<u128> {
    eventually(&format!("{n} {prefix}stamps of {name}"), || async {
        let s = stamps(sup, name, prefix).await;
        (s.len() >= n).then_some(s)
    })
    .await
}

#[tokio::test]
async fn rest_for_one_starts_the_next_worker_only_once_the_one_before_accepts_connections() {
    let sup = Supervisor::builder()
        .strategy(Strategy::RestForOne)
        .max_restarts(10, Duration::from_secs(60))
        .start();
    let mut events = sup.subscribe();
    let addr = free_addr();
    let a = sup
        .start_worker(late_listener("a", addr, "0.5"))
        .await
        .unwrap();
    assert_eq!(
        sup.worker_status("a").await.unwrap().state,
        WorkerState::Starting { pid: Some(a) },
        "not ready before its port accepts"
    );
    // Held until a is ready: registered, without a pid.
    let b_start = tokio::spawn({
        let sup = sup.clone();
        async move { sup.start_worker(stamper("b")).await }
    });
    let b = b_start.await.unwrap().unwrap();
    let listened = wait_stamps(&sup, "a", "listen ", 1).await[0];
    let b_started = wait_stamps(&sup, "b", "start ", 1).await[0];
    assert!(
        b_started > listened,
        "b started {} ms before a listened",
        (listened - b_started) / 1_000_000
    );
    let seen = wait_event(
        &mut events,
        |e| matches!(e, WorkerEvent::Started { name, .. } if name == "b"),
    )
    .await;
    let ready_at = seen
        .iter()
        .position(|e| matches!(e, WorkerEvent::Ready { name, pid } if name == "a" && *pid == a));
    assert!(
        ready_at.is_some(),
        "a's Ready comes before b's Started: {seen:?}"
    );
    assert_eq!(
        sup.worker_status("a").await.unwrap().state,
        WorkerState::Running { pid: a }
    );

    // A crash of a restarts a, then b only once a accepts again.
    sigkill(a);
    let b2 = wait_new_pid(&sup, "b", b).await;
    let listened2 = wait_stamps(&sup, "a", "listen ", 2).await[1];
    let b_started2 = wait_stamps(&sup, "b", "start ", 2).await[1];
    assert!(
        b_started2 > listened2,
        "b restarted {} ms before a listened again",
        (listened2 - b_started2) / 1_000_000
    );
    assert_ne!(b2, b);
    sup.shutdown().await;
}

#[tokio::test]
async fn one_for_one_starts_do_not_wait_for_readiness() {
    let sup = Supervisor::builder().start();
    let a = sup
        .start_worker(
            sleeper("a")
                .ready(Readiness::Tcp(free_addr()))
                .ready_timeout(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let b = sup.start_worker(sleeper("b")).await.unwrap();
    let status = sup.status().await;
    assert_eq!(status[0].state, WorkerState::Starting { pid: Some(a) });
    assert_eq!(status[0].pid, Some(a));
    assert_eq!(status[1].state, WorkerState::Running { pid: b });
    sup.shutdown().await;
}

#[tokio::test]
async fn a_jsonl_worker_is_ready_when_it_says_so_and_the_line_is_not_output() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let body = format!(
        "while [ ! -e {} ]; do sleep 0.02; done; echo '{{\"ready\": true}}'; echo after; exec sleep 3600",
        go.display()
    );
    let sup = Supervisor::builder().start();
    let mut events = sup.subscribe();
    let pid = sup
        .start_worker(
            script("j", &body)
                .jsonl()
                .ready(Readiness::Jsonl)
                .ready_timeout(PATIENCE),
        )
        .await
        .unwrap();
    assert_eq!(
        sup.worker_status("j").await.unwrap().state,
        WorkerState::Starting { pid: Some(pid) }
    );
    std::fs::write(&go, "").unwrap();
    let seen = wait_event(&mut events, |e| matches!(e, WorkerEvent::Ready { .. })).await;
    assert_eq!(
        seen,
        vec![
            WorkerEvent::Started {
                name: "j".into(),
                pid
            },
            WorkerEvent::Ready {
                name: "j".into(),
                pid
            },
        ]
    );
    assert_eq!(
        sup.worker_status("j").await.unwrap().state,
        WorkerState::Running { pid }
    );
    eventually("the line after the ready line", || async {
        let tail = sup.tail("j").await.ok()?;
        tail.stdout.iter().any(|l| l == "after").then_some(())
    })
    .await;
    let tail = sup.tail("j").await.unwrap();
    assert!(!tail.stdout.iter().any(|l| l.contains("ready")), "{tail:?}");
    sup.shutdown().await;
}

#[tokio::test]
async fn jsonl_readiness_needs_the_call_protocol() {
    let sup = Supervisor::builder().start();
    let err = sup
        .start_worker(sleeper("j").ready(Readiness::Jsonl))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("jsonl readiness needs the call protocol"),
        "{err}"
    );
    assert!(
        sup.status().await.is_empty(),
        "an invalid spec registers nothing"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn after_makes_a_worker_ready_once_it_has_run_that_long() {
    let sup = Supervisor::builder().start();
    let mut events = sup.subscribe();
    let asked = Instant::now();
    let pid = sup
        .start_worker(sleeper("a").ready(Readiness::After(Duration::from_millis(300))))
        .await
        .unwrap();
    wait_event(
        &mut events,
        |e| matches!(e, WorkerEvent::Ready { pid: p, .. } if *p == pid),
    )
    .await;
    assert!(asked.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        sup.worker_status("a").await.unwrap().state,
        WorkerState::Running { pid }
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_worker_that_exits_before_it_is_ready_has_failed_to_start() {
    let sup = Supervisor::builder().start();
    let mut events = sup.subscribe();
    sup.start_worker(
        script("early", "exit 3")
            .ready(Readiness::After(Duration::from_secs(5)))
            .ready_timeout(Duration::from_secs(10))
            .max_restarts(1, Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    let seen = wait_event(&mut events, |e| matches!(e, WorkerEvent::Failed { .. })).await;
    let restarting: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            WorkerEvent::Restarting { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(restarting, ["exited before ready: exit code 3"], "{seen:?}");
    assert!(
        !seen.iter().any(|e| matches!(e, WorkerEvent::Ready { .. })),
        "{seen:?}"
    );
    let state = sup.worker_status("early").await.unwrap().state;
    assert!(
        matches!(&state, WorkerState::Failed { reason }
            if reason.contains("more than 1 restarts") && reason.contains("exited before ready: exit code 3")),
        "{state:?}"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_worker_not_ready_within_ready_timeout_is_killed_with_its_group_and_retried() {
    let sup = Supervisor::builder().start();
    let mut events = sup.subscribe();
    let body = "sleep 3600 & echo child $!; wait";
    let asked = Instant::now();
    let pid = sup
        .start_worker(
            script("deaf", body)
                .ready(Readiness::Tcp(free_addr()))
                .ready_timeout(Duration::from_millis(400))
                .backoff(
                    Backoff::exponential(Duration::from_secs(3600), Duration::from_secs(3600))
                        .jitter(0.0),
                ),
        )
        .await
        .unwrap();
    let child = eventually("the child's pid", || async {
        let tail = sup.tail("deaf").await.ok()?;
        tail.stdout
            .iter()
            .find_map(|l| l.strip_prefix("child ")?.parse::<u32>().ok())
    })
    .await;
    let seen = wait_event(&mut events, |e| matches!(e, WorkerEvent::Restarting { .. })).await;
    assert!(asked.elapsed() >= Duration::from_millis(400));
    assert!(
        seen.contains(&WorkerEvent::Exited {
            name: "deaf".into(),
            pid,
            exit: herd::supervisor::Exit::Signal(9)
        }),
        "killed: {seen:?}"
    );
    assert!(
        matches!(seen.last(), Some(WorkerEvent::Restarting { reason, .. }) if reason == "not ready within 400ms"),
        "{seen:?}"
    );
    wait_dead(child).await;
    let state = sup.worker_status("deaf").await.unwrap().state;
    assert!(
        matches!(&state, WorkerState::Backoff { reason: Some(r), .. } if r == "not ready within 400ms"),
        "{state:?}"
    );
    sup.shutdown().await;
}
