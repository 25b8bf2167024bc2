//! Stops under stress, with real process groups: the whole group's grace
//! period after its leader exits, SIGKILL at the deadline, and many stops
//! (concurrent deletes, shutdown) overlapping instead of queueing.

#[path = "support/supervisor.rs"]
mod support;

use std::time::{Duration, Instant};

use herd::supervisor::{Strategy, Supervisor, WorkerSpec, WorkerState};
use support::*;

/// A worker whose leader (a shell that does not trap TERM) waits for a child
/// shell running `child`; the child prints `up` once its trap is set, and
/// the leader prints the child's pid.
fn wrapped(name: &str, child: &str) -> WorkerSpec {
    let body = format!("sh -c '{child}' & echo child $!; wait");
    script(name, &body)
}

/// Waits for the child to be up, stops the worker, and returns the child's
/// pid and how long the stop took.
async fn stop_once_up(sup: &Supervisor, name: &str) -> (u32, Duration) {
    let child_pid = child_up(sup, name).await;
    let asked = Instant::now();
    sup.stop_worker(name).await.unwrap();
    (child_pid, asked.elapsed())
}

/// Waits until `pid` has exec'd `sleep` (so a trap set before it holds).
async fn wait_exec_sleep(pid: u32) {
    eventually(&format!("{pid} to run sleep"), || async {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "sleep").then_some(())
    })
    .await;
}

/// Waits for the child's `up` line and its pid.
async fn child_up(sup: &Supervisor, name: &str) -> u32 {
    eventually(&format!("{name}'s child up"), || async {
        let tail = sup.tail(name).await.ok()?;
        let up = tail.stdout.iter().any(|l| l == "up");
        let pid = tail
            .stdout
            .iter()
            .find_map(|l| l.strip_prefix("child ")?.parse::<u32>().ok());
        pid.filter(|_| up)
    })
    .await
}

#[tokio::test]
async fn a_group_keeps_its_grace_period_after_its_leader_exits() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("cleaned-up");
    // On TERM the child takes a moment to clean up, then writes the marker.
    let child = format!(
        "trap \"sleep 0.3; echo done > {}; exit 0\" TERM; echo up; while :; do sleep 0.05; done",
        marker.display()
    );
    let sup = Supervisor::builder().start();
    let leader = sup
        .start_worker(wrapped("wrapped", &child).shutdown_timeout(Duration::from_secs(10)))
        .await
        .unwrap();
    let (child_pid, took) = stop_once_up(&sup, "wrapped").await;
    // Stopped means the group is empty: the child finished its clean-up.
    assert_eq!(
        std::fs::read_to_string(&marker).ok().as_deref(),
        Some("done\n"),
        "the child was killed before it cleaned up"
    );
    assert!(is_dead(child_pid));
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(
        took < Duration::from_secs(10),
        "the stop waited for the deadline though the group was empty: {took:?}"
    );
    let status = sup.worker_status("wrapped").await.unwrap();
    assert_eq!(status.state, WorkerState::Stopped);
    assert_eq!(status.last_exit, Some(herd::supervisor::Exit::Signal(15)));
    assert!(proc_state(leader).is_none(), "the leader is reaped");
    sup.shutdown().await;
}

#[tokio::test]
async fn a_group_member_ignoring_the_stop_signal_is_sigkilled_at_the_deadline() {
    let sup = Supervisor::builder().start();
    let child = "trap \"\" TERM; echo up; while :; do sleep 0.05; done";
    sup.start_worker(wrapped("stubborn", child).shutdown_timeout(Duration::from_millis(500)))
        .await
        .unwrap();
    let (child_pid, took) = stop_once_up(&sup, "stubborn").await;
    assert!(
        took >= Duration::from_millis(500),
        "stopped before the deadline: {took:?}"
    );
    wait_dead(child_pid).await;
    sup.shutdown().await;
}

/// `n` workers that ignore SIGTERM, each with a 1 s shutdown timeout, all
/// running `sleep` with TERM ignored; returns their pids.
async fn stubborn_workers(sup: &Supervisor, n: usize) -> Vec<u32> {
    let mut pids = Vec::new();
    for i in 0..n {
        let spec = script(&format!("w{i}"), "trap '' TERM; exec sleep 3600")
            .shutdown_timeout(Duration::from_secs(1));
        pids.push(sup.start_worker(spec).await.unwrap());
    }
    for &pid in &pids {
        // The exec has happened, so TERM is ignored for good.
        wait_exec_sleep(pid).await;
    }
    pids
}

/// Stops of workers ignoring TERM with a 1 s timeout each took at least
/// that timeout (they waited for SIGKILL) and far less than their sum.
fn assert_overlapped(took: Duration, what: &str) {
    assert!(
        took >= Duration::from_secs(1),
        "TERM was not ignored: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "{what}, 1 s each, took {took:?}"
    );
}

#[tokio::test]
async fn concurrent_deletes_overlap_instead_of_waiting_for_each_other() {
    let sup = Supervisor::builder().start();
    let pids = stubborn_workers(&sup, 20).await;
    let asked = Instant::now();
    let deletes: Vec<_> = (0..20)
        .map(|i| {
            let sup = sup.clone();
            tokio::spawn(async move { sup.delete_worker(&format!("w{i}")).await })
        })
        .collect();
    for d in deletes {
        d.await.unwrap().unwrap();
    }
    assert_overlapped(asked.elapsed(), "20 deletes");
    assert!(sup.status().await.is_empty());
    for pid in pids {
        assert!(is_dead(pid), "{pid} outlived its delete");
    }
    sup.shutdown().await;
}

#[tokio::test]
async fn a_one_for_one_shutdown_stops_every_worker_at_once() {
    let sup = Supervisor::builder().start();
    let pids = stubborn_workers(&sup, 20).await;
    let asked = Instant::now();
    sup.shutdown().await;
    assert_overlapped(asked.elapsed(), "the shutdown of 20 workers");
    for pid in pids {
        assert!(proc_state(pid).is_none(), "{pid} outlived the shutdown");
    }
}

#[tokio::test]
async fn an_ordered_shutdown_stops_one_worker_after_the_other() {
    let sup = Supervisor::builder().strategy(Strategy::RestForOne).start();
    let mut pids = Vec::new();
    for name in ["first", "second"] {
        let spec = script(name, "trap '' TERM; exec sleep 3600")
            .shutdown_timeout(Duration::from_millis(400));
        pids.push(sup.start_worker(spec).await.unwrap());
    }
    for &pid in &pids {
        wait_exec_sleep(pid).await;
    }
    let mut events = sup.subscribe();
    let asked = Instant::now();
    sup.shutdown().await;
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "the two stops overlapped: {took:?}"
    );
    let mut exited = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let herd::supervisor::WorkerEvent::Exited { name, .. } = e {
            exited.push(name);
        }
    }
    assert_eq!(exited, ["second", "first"], "reverse start order");
}
