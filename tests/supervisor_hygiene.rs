//! Process hygiene with real processes: stop escalation, process groups, and
//! no worker outliving its supervisor or the process running it.

#[path = "support/supervisor.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use herd::supervisor::{Exit, Supervisor, WorkerEvent, WorkerState};
use support::*;

const HELPER_ENV: &str = "HERD_SUPERVISOR_TEST_HELPER";

/// Waits for a tail line starting with `prefix` and returns the number after it.
async fn number_after(sup: &Supervisor, name: &str, prefix: &str, not: u32) -> u32 {
    eventually(&format!("{prefix} in {name}'s output"), || async {
        let tail = sup.tail(name).await.ok()?;
        tail.stdout
            .iter()
            .rev()
            .filter_map(|l| l.strip_prefix(prefix)?.trim().parse::<u32>().ok())
            .find(|&n| n != not)
    })
    .await
}

#[tokio::test]
async fn a_worker_ignoring_sigterm_is_sigkilled_after_the_shutdown_timeout() {
    let sup = Supervisor::builder().start();
    let stubborn = "trap '' TERM; echo ready; while :; do sleep 1; done";
    let pid = sup
        .start_worker(script("stubborn", stubborn).shutdown_timeout(Duration::from_millis(300)))
        .await
        .unwrap();
    eventually("ready", || async {
        let t = sup.tail("stubborn").await.ok()?;
        t.stdout.iter().any(|l| l == "ready").then_some(())
    })
    .await;
    let asked = Instant::now();
    sup.stop_worker("stubborn").await.unwrap();
    assert!(asked.elapsed() >= Duration::from_millis(300));
    let s = sup.worker_status("stubborn").await.unwrap();
    assert_eq!(s.state, WorkerState::Stopped);
    assert_eq!(s.last_exit, Some(Exit::Signal(9)));
    assert!(
        proc_state(pid).is_none(),
        "stopped worker {pid} still in /proc"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_worker_that_obeys_sigterm_stops_without_waiting_for_the_timeout() {
    let sup = Supervisor::builder().start();
    sup.start_worker(sleeper("polite").shutdown_timeout(Duration::from_secs(3600)))
        .await
        .unwrap();
    sup.stop_worker("polite").await.unwrap();
    let s = sup.worker_status("polite").await.unwrap();
    assert_eq!(s.last_exit, Some(Exit::Signal(15)));
    sup.shutdown().await;
}

#[tokio::test]
async fn a_workers_own_children_die_with_its_process_group() {
    let sup = Supervisor::builder().start();
    let family = "sleep 3600 & echo child $!; wait";
    let pid = sup.start_worker(script("family", family)).await.unwrap();
    let child = number_after(&sup, "family", "child ", 0).await;
    // The worker crashes: its child goes with it.
    sigkill(pid);
    wait_dead(child).await;
    // The worker is stopped: its child goes with it.
    wait_new_pid(&sup, "family", pid).await;
    let child2 = number_after(&sup, "family", "child ", child).await;
    sup.stop_worker("family").await.unwrap();
    wait_dead(child2).await;
    sup.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_every_worker_and_reaps_them() {
    let sup = Supervisor::builder().start();
    let mut events = sup.subscribe();
    let mut pids = Vec::new();
    for name in ["a", "b", "c"] {
        pids.push(sup.start_worker(sleeper(name)).await.unwrap());
    }
    sup.shutdown().await;
    for pid in pids {
        assert!(
            proc_state(pid).is_none(),
            "worker {pid} left after shutdown"
        );
    }
    let mut exits = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if let WorkerEvent::Exited { name, .. } = ev {
            exits.push(name);
        }
    }
    // One-for-one: all are signalled at once, so they end in any order
    // (ordered strategies keep reverse start order: supervisor_stress.rs).
    exits.sort();
    assert_eq!(exits, ["a", "b", "c"]);
    assert!(sup.status().await.is_empty());
    assert!(sup.start_worker(sleeper("late")).await.is_err());
}

#[tokio::test]
async fn dropping_the_last_handle_leaves_no_worker_process() {
    let sup = Supervisor::builder().start();
    let clone = sup.clone();
    let mut pids = Vec::new();
    for name in ["a", "b", "c"] {
        pids.push(sup.start_worker(sleeper(name)).await.unwrap());
    }
    drop(sup);
    drop(clone);
    for pid in pids {
        wait_reaped(pid).await;
    }
}

#[test]
fn a_supervisor_outlives_the_runtime_that_started_it_and_stops_with_its_last_handle() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (sup, pids) = rt.block_on(async {
        let sup = Supervisor::builder().start();
        let mut pids = Vec::new();
        for name in ["a", "b"] {
            pids.push(sup.start_worker(sleeper(name)).await.unwrap());
        }
        (sup, pids)
    });
    // The thread and runtime that forked nothing are gone; the workers were
    // forked on the supervisor's own thread, so they keep running.
    drop(rt);
    let rt2 = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt2.block_on(sup.status());
    assert!(status
        .iter()
        .all(|s| matches!(s.state, WorkerState::Running { .. })));
    for &pid in &pids {
        assert!(!is_dead(pid), "worker {pid} died with an unrelated runtime");
    }
    drop(sup);
    let start = Instant::now();
    while !pids.iter().all(|&p| proc_state(p).is_none()) {
        assert!(
            start.elapsed() < PATIENCE,
            "workers outlived their supervisor"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Not a test on its own: the helper process for the next test, which runs
/// this test binary again with HERD_SUPERVISOR_TEST_HELPER set.
#[test]
fn helper_process_running_a_supervisor() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder().start();
        let mut pids = Vec::new();
        for name in ["a", "b", "c"] {
            pids.push(sup.start_worker(sleeper(name)).await.unwrap().to_string());
        }
        println!("PIDS {}", pids.join(" "));
        std::future::pending::<()>().await;
    });
}

#[test]
fn sigkilling_the_process_running_a_supervisor_kills_its_workers() {
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_process_running_a_supervisor",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = helper.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may print "test NAME ... " before it on the same line.
            if let Some(at) = line.find("PIDS ") {
                let _ = tx.send(line[at + 5..].trim().to_owned());
            }
        }
    });
    let line = rx.recv_timeout(PATIENCE).expect("helper printed no pids");
    let pids: Vec<u32> = line.split(' ').map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids.len(), 3);
    for &pid in &pids {
        assert!(!is_dead(pid), "worker {pid} not running before the kill");
    }
    helper.kill().unwrap(); // SIGKILL
    helper.wait().unwrap();
    let start = Instant::now();
    while !pids.iter().all(|&p| is_dead(p)) {
        assert!(
            start.elapsed() < PATIENCE,
            "workers outlived herd: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
