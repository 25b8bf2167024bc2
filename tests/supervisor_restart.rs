//! Restart rules with real processes: strategies, restart types, intensity, backoff.

#[path = "support/supervisor.rs"]
mod support;

use std::time::{Duration, Instant};

use herd::supervisor::{Backoff, Exit, Restart, Strategy, Supervisor, WorkerEvent, WorkerState};
use support::*;

async fn three(strategy: Strategy) -> (Supervisor, [u32; 3]) {
    let sup = Supervisor::builder()
        .strategy(strategy)
        .max_restarts(10, Duration::from_secs(60))
        .start();
    let a = sup.start_worker(sleeper("a")).await.unwrap();
    let b = sup.start_worker(sleeper("b")).await.unwrap();
    let c = sup.start_worker(sleeper("c")).await.unwrap();
    (sup, [a, b, c])
}

/// Kills b and waits until all three run again, b with a new pid.
async fn kill_b_and_settle(sup: &Supervisor, pids: [u32; 3]) -> [u32; 3] {
    sigkill(pids[1]);
    wait_new_pid(sup, "b", pids[1]).await;
    let status = eventually("all running", || async {
        let s = sup.status().await;
        s.iter()
            .all(|w| matches!(w.state, WorkerState::Running { .. }))
            .then_some(s)
    })
    .await;
    [0, 1, 2].map(|i| status[i].pid.unwrap())
}

#[tokio::test]
async fn a_sigkilled_worker_comes_back_with_a_new_pid() {
    let sup = Supervisor::builder().start();
    let pid = sup.start_worker(sleeper("a")).await.unwrap();
    sigkill(pid);
    let new = wait_new_pid(&sup, "a", pid).await;
    assert_ne!(new, pid);
    let status = sup.worker_status("a").await.unwrap();
    assert_eq!(status.restarts, 1);
    assert_eq!(status.last_exit, Some(Exit::Signal(9)));
    wait_reaped(pid).await;
    sup.shutdown().await;
    wait_reaped(new).await;
}

#[tokio::test]
async fn one_for_one_restarts_only_the_crashed_worker() {
    let (sup, [a, b, c]) = three(Strategy::OneForOne).await;
    let [a2, b2, c2] = kill_b_and_settle(&sup, [a, b, c]).await;
    assert_eq!((a2, c2), (a, c));
    assert_ne!(b2, b);
    sup.shutdown().await;
}

#[tokio::test]
async fn one_for_all_restarts_every_worker_stopping_the_others_in_reverse_order() {
    let (sup, [a, b, c]) = three(Strategy::OneForAll).await;
    let mut events = sup.subscribe();
    let [a2, b2, c2] = kill_b_and_settle(&sup, [a, b, c]).await;
    assert!(a2 != a && b2 != b && c2 != c);
    let seen = wait_event(
        &mut events,
        |e| matches!(e, WorkerEvent::Started { name, .. } if name == "c"),
    )
    .await;
    let order: Vec<String> = seen
        .iter()
        .filter_map(|e| match e {
            WorkerEvent::Exited { name, .. } => Some(format!("exit {name}")),
            WorkerEvent::Started { name, .. } => Some(format!("start {name}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        ["exit b", "exit c", "exit a", "start a", "start b", "start c"]
    );
    for pid in [a, b, c] {
        wait_reaped(pid).await;
    }
    sup.shutdown().await;
}

#[tokio::test]
async fn rest_for_one_restarts_the_crashed_worker_and_those_started_after_it() {
    let (sup, [a, b, c]) = three(Strategy::RestForOne).await;
    let [a2, b2, c2] = kill_b_and_settle(&sup, [a, b, c]).await;
    assert_eq!(a2, a);
    assert!(b2 != b && c2 != c);
    let restarts: Vec<u32> = sup.status().await.iter().map(|s| s.restarts).collect();
    assert_eq!(restarts, [0, 1, 1]);
    sup.shutdown().await;
}

#[tokio::test]
async fn rest_for_one_leaves_workers_started_before_the_crashed_one_alone() {
    let (sup, [a, b, c]) = three(Strategy::RestForOne).await;
    sigkill(c);
    let c2 = wait_new_pid(&sup, "c", c).await;
    assert_ne!(c2, c);
    let pids: Vec<Option<u32>> = sup.status().await.iter().map(|s| s.pid).collect();
    assert_eq!(pids, [Some(a), Some(b), Some(c2)]);
    sup.shutdown().await;
}

#[tokio::test]
async fn a_transient_worker_is_restarted_after_an_abnormal_exit_only() {
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::builder().start();
    // Fails once (exit 1), then runs; killed by a signal, it is restarted too.
    let flaky = "if [ -e ran ]; then exec sleep 3600; fi; touch ran; exit 1";
    sup.start_worker(
        script("flaky", flaky)
            .current_dir(dir.path())
            .restart(Restart::Transient),
    )
    .await
    .unwrap();
    let s = wait_status(&sup, "flaky", |s| {
        matches!(s.state, WorkerState::Running { .. }) && s.restarts == 1
    })
    .await;
    assert_eq!(s.last_exit, Some(Exit::Code(1)));
    sigkill(s.pid.unwrap());
    wait_new_pid(&sup, "flaky", s.pid.unwrap()).await;

    sup.start_worker(script("done", "exit 0").restart(Restart::Transient))
        .await
        .unwrap();
    let s = wait_status(&sup, "done", |s| {
        matches!(s.state, WorkerState::Exited { .. })
    })
    .await;
    assert_eq!(
        s.state,
        WorkerState::Exited {
            exit: Exit::Code(0)
        }
    );
    assert_eq!(s.restarts, 0);
    sup.shutdown().await;
}

#[tokio::test]
async fn normal_exit_codes_are_configurable() {
    let sup = Supervisor::builder().start();
    let spec = script("three", "exit 3")
        .restart(Restart::Transient)
        .normal_exit_codes([0, 3]);
    sup.start_worker(spec).await.unwrap();
    let s = wait_status(&sup, "three", |s| {
        matches!(s.state, WorkerState::Exited { .. })
    })
    .await;
    assert_eq!(s.last_exit, Some(Exit::Code(3)));
    assert_eq!(s.restarts, 0);
    sup.shutdown().await;
}

#[tokio::test]
async fn a_temporary_worker_is_never_restarted() {
    let sup = Supervisor::builder().start();
    let mut events = sup.subscribe();
    let pid = sup
        .start_worker(sleeper("once").restart(Restart::Temporary))
        .await
        .unwrap();
    sigkill(pid);
    wait_event(&mut events, |e| matches!(e, WorkerEvent::Finished { .. })).await;
    let s = sup.worker_status("once").await.unwrap();
    assert_eq!(
        s.state,
        WorkerState::Exited {
            exit: Exit::Signal(9)
        }
    );
    assert_eq!((s.restarts, s.pid), (0, None));
    sup.shutdown().await;
}

#[tokio::test]
async fn exceeding_restart_intensity_fails_every_worker_and_stops_restarting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken"), "").unwrap();
    let sup = Supervisor::builder()
        .max_restarts(2, Duration::from_secs(60))
        .start();
    let mut events = sup.subscribe();
    let calm = sup.start_worker(sleeper("calm")).await.unwrap();
    let crasher = "if [ -e broken ]; then exit 1; fi; exec sleep 3600";
    sup.start_worker(script("crasher", crasher).current_dir(dir.path()))
        .await
        .unwrap();
    let seen = wait_event(&mut events, |e| matches!(e, WorkerEvent::GaveUp { .. })).await;
    let WorkerEvent::GaveUp { reason } = seen.last().unwrap() else {
        unreachable!()
    };
    assert!(reason.contains("more than 2 restarts"), "{reason}");
    assert!(reason.contains("crasher: exit code 1"), "{reason}");

    let status = eventually("both failed", || async {
        let s = sup.status().await;
        s.iter()
            .all(|w| matches!(w.state, WorkerState::Failed { .. }))
            .then_some(s)
    })
    .await;
    assert_eq!(status[1].restarts, 2);
    wait_reaped(calm).await;
    // No restart follows. (Absence can only be checked over some time.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(ev) = events.try_recv() {
        assert!(
            !matches!(ev, WorkerEvent::Started { .. }),
            "restarted after giving up: {ev:?}"
        );
    }

    // The operator fixes the cause and brings both back.
    std::fs::remove_file(dir.path().join("broken")).unwrap();
    let pid = sup.restart_worker("crasher").await.unwrap();
    let s = wait_status(&sup, "crasher", |s| s.state == WorkerState::Running { pid }).await;
    assert_eq!(s.pid, Some(pid));
    sup.start_existing("calm").await.unwrap();
    let s = sup.worker_status("calm").await.unwrap();
    assert!(matches!(s.state, WorkerState::Running { .. }), "{s:?}");
    sup.shutdown().await;
}

#[tokio::test]
async fn a_worker_with_backoff_waits_before_its_restart() {
    let sup = Supervisor::builder().start();
    let mut events = sup.subscribe();
    let backoff =
        Backoff::exponential(Duration::from_millis(400), Duration::from_secs(5)).jitter(0.0);
    let pid = sup
        .start_worker(sleeper("slow").backoff(backoff))
        .await
        .unwrap();
    let killed = Instant::now();
    sigkill(pid);
    let seen = wait_event(&mut events, |e| matches!(e, WorkerEvent::Restarting { .. })).await;
    assert!(
        matches!(seen.last(), Some(WorkerEvent::Restarting { delay, .. }) if *delay == Duration::from_millis(400)),
        "{seen:?}"
    );
    let s = sup.worker_status("slow").await.unwrap();
    assert!(
        matches!(
            s.state,
            WorkerState::Backoff { .. } | WorkerState::Running { .. }
        ),
        "{s:?}"
    );
    wait_new_pid(&sup, "slow", pid).await;
    assert!(killed.elapsed() >= Duration::from_millis(400));
    sup.shutdown().await;
}

/// Sh that crashes (exit 1) while `broken` exists in its directory, else sleeps.
const CRASH_WHILE_BROKEN: &str = "if [ -e broken ]; then exit 1; fi; exec sleep 3600";

fn last_pid(seen: &[WorkerEvent], worker: &str) -> Option<u32> {
    seen.iter().rev().find_map(|e| match e {
        WorkerEvent::Started { name, pid } if name == worker => Some(*pid),
        _ => None,
    })
}

#[tokio::test]
async fn a_worker_with_its_own_intensity_fails_alone_and_its_siblings_keep_running() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken"), "").unwrap();
    // The supervisor allows a single restart; the crasher's own limit is two,
    // counted apart, so the supervisor never gives up.
    let sup = Supervisor::builder()
        .strategy(Strategy::OneForAll)
        .max_restarts(1, Duration::from_secs(60))
        .start();
    let mut events = sup.subscribe();
    sup.start_worker(sleeper("a")).await.unwrap();
    sup.start_worker(sleeper("c")).await.unwrap();
    let crasher = script("crasher", CRASH_WHILE_BROKEN)
        .current_dir(dir.path())
        .max_restarts(2, Duration::from_secs(60));
    sup.start_worker(crasher).await.unwrap();

    let seen = wait_event(&mut events, |e| matches!(e, WorkerEvent::Failed { .. })).await;
    let WorkerEvent::Failed { name, reason } = seen.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(name, "crasher");
    assert!(
        reason.contains("worker crasher: more than 2 restarts"),
        "{reason}"
    );
    assert!(reason.contains("exit code 1, exit code 1"), "{reason}");
    assert!(
        !seen.iter().any(|e| matches!(e, WorkerEvent::GaveUp { .. })),
        "{seen:?}"
    );
    // Its two crashes within the limit restarted the group, as OneForAll
    // does; the one over the limit restarted no one.
    let starts_of_a = seen
        .iter()
        .filter(|e| matches!(e, WorkerEvent::Started { name, .. } if name == "a"))
        .count();
    assert_eq!(starts_of_a, 3, "{seen:?}");
    let (a, c) = (last_pid(&seen, "a").unwrap(), last_pid(&seen, "c").unwrap());
    let status = sup.status().await;
    assert_eq!(status[0].state, WorkerState::Running { pid: a });
    assert_eq!(status[1].state, WorkerState::Running { pid: c });
    assert!(
        matches!(&status[2].state, WorkerState::Failed { reason: r } if r == reason),
        "{status:?}"
    );
    assert_eq!((status[2].restarts, status[2].pid), (2, None));

    // Nothing is restarted or stopped afterwards. (Absence takes some time to show.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(ev) = events.try_recv() {
        assert!(
            !matches!(
                ev,
                WorkerEvent::Started { .. }
                    | WorkerEvent::Exited { .. }
                    | WorkerEvent::GaveUp { .. }
            ),
            "after the crasher failed: {ev:?}"
        );
    }
    let pids: Vec<Option<u32>> = sup.status().await.iter().map(|s| s.pid).collect();
    assert_eq!(pids, [Some(a), Some(c), None]);

    // The supervisor's own budget is untouched: a's crash restarts the group,
    // in which the failed crasher stays down.
    sigkill(a);
    let seen = wait_event(
        &mut events,
        |e| matches!(e, WorkerEvent::Started { name, .. } if name == "c"),
    )
    .await;
    let bad = |e: &WorkerEvent| match e {
        WorkerEvent::GaveUp { .. } => true,
        WorkerEvent::Started { name, .. } => name == "crasher",
        _ => false,
    };
    assert!(!seen.iter().any(bad), "{seen:?}");
    let s = sup.worker_status("crasher").await.unwrap();
    assert!(matches!(s.state, WorkerState::Failed { .. }), "{s:?}");

    // The operator fixes the cause and brings it back.
    std::fs::remove_file(dir.path().join("broken")).unwrap();
    let pid = sup.start_existing("crasher").await.unwrap();
    let s = sup.worker_status("crasher").await.unwrap();
    assert_eq!(s.state, WorkerState::Running { pid });
    sup.shutdown().await;
}

#[tokio::test]
async fn start_existing_brings_back_a_worker_failed_alone_with_a_fresh_history() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken"), "").unwrap();
    let sup = Supervisor::builder().start();
    let mut events = sup.subscribe();
    let crasher = script("crasher", CRASH_WHILE_BROKEN)
        .current_dir(dir.path())
        .max_restarts(1, Duration::from_secs(60));
    sup.start_worker(crasher).await.unwrap();
    wait_event(&mut events, |e| matches!(e, WorkerEvent::Failed { .. })).await;
    assert_eq!(sup.worker_status("crasher").await.unwrap().restarts, 1);

    // Still broken: with a fresh history it is restarted once more before failing again.
    sup.start_existing("crasher").await.unwrap();
    let seen = wait_event(&mut events, |e| matches!(e, WorkerEvent::Failed { .. })).await;
    let kinds: Vec<&str> = seen
        .iter()
        .map(|e| match e {
            WorkerEvent::Started { .. } => "started",
            WorkerEvent::Exited { .. } => "exited",
            WorkerEvent::Restarting { .. } => "restarting",
            WorkerEvent::Failed { .. } => "failed",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "started",
            "exited",
            "restarting",
            "started",
            "exited",
            "failed"
        ]
    );
    assert_eq!(sup.worker_status("crasher").await.unwrap().restarts, 2);

    std::fs::remove_file(dir.path().join("broken")).unwrap();
    let pid = sup.restart_worker("crasher").await.unwrap();
    let s = sup.worker_status("crasher").await.unwrap();
    assert_eq!(s.state, WorkerState::Running { pid });
    sup.shutdown().await;
}
