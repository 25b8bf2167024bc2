//! Operator commands, status, environment and output with real processes.

#[path = "support/supervisor.rs"]
mod support;

use std::time::{Duration, SystemTime};

use herd::supervisor::{Supervisor, WorkerEvent, WorkerState, MAX_LINE_BYTES, TAIL_LINES};
use support::*;

#[tokio::test]
async fn a_stopped_worker_stays_stopped_until_started_again() {
    let sup = Supervisor::builder().start();
    let mut events = sup.subscribe();
    let pid = sup.start_worker(sleeper("w")).await.unwrap();
    sup.stop_worker("w").await.unwrap();
    let s = sup.worker_status("w").await.unwrap();
    assert_eq!(
        (s.state.clone(), s.pid, s.restarts),
        (WorkerState::Stopped, None, 0)
    );
    assert!(proc_state(pid).is_none());
    wait_event(&mut events, |e| matches!(e, WorkerEvent::Stopped { .. })).await;
    // Stopping a stopped worker is fine.
    sup.stop_worker("w").await.unwrap();
    let pid2 = sup.start_existing("w").await.unwrap();
    assert_ne!(pid2, pid);
    assert_eq!(
        sup.start_existing("w").await.unwrap(),
        pid2,
        "already running"
    );
    let s = sup.worker_status("w").await.unwrap();
    assert_eq!(s.state, WorkerState::Running { pid: pid2 });
    sup.shutdown().await;
}

#[tokio::test]
async fn restart_worker_replaces_the_process_without_counting_a_restart() {
    let sup = Supervisor::builder().start();
    let pid = sup.start_worker(sleeper("w")).await.unwrap();
    let pid2 = sup.restart_worker("w").await.unwrap();
    assert_ne!(pid, pid2);
    assert!(proc_state(pid).is_none());
    let s = sup.worker_status("w").await.unwrap();
    assert_eq!((s.pid, s.restarts), (Some(pid2), 0));
    sup.shutdown().await;
}

#[tokio::test]
async fn a_deleted_worker_is_stopped_and_forgotten() {
    let sup = Supervisor::builder().start();
    let mut events = sup.subscribe();
    let pid = sup.start_worker(sleeper("gone")).await.unwrap();
    sup.start_worker(sleeper("kept")).await.unwrap();
    sup.delete_worker("gone").await.unwrap();
    assert!(proc_state(pid).is_none());
    let names: Vec<String> = sup.status().await.into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["kept"]);
    wait_event(
        &mut events,
        |e| matches!(e, WorkerEvent::Deleted { name } if name == "gone"),
    )
    .await;
    // The name is free again.
    sup.start_worker(sleeper("gone")).await.unwrap();
    sup.shutdown().await;
}

#[tokio::test]
async fn status_reports_name_state_pid_restarts_last_exit_and_since() {
    let before = SystemTime::now();
    let sup = Supervisor::builder().start();
    let pid = sup.start_worker(sleeper("w")).await.unwrap();
    let s = sup.worker_status("w").await.unwrap();
    assert_eq!(s.name, "w");
    assert_eq!(s.state, WorkerState::Running { pid });
    assert_eq!((s.pid, s.restarts, s.last_exit), (Some(pid), 0, None));
    assert!(s.since >= before - Duration::from_secs(1));
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["state"]["state"], "running");
    assert_eq!(json["pid"], pid);
    assert!(json["since"].as_u64().unwrap() > 1_600_000_000_000);
    sup.shutdown().await;
}

#[tokio::test]
async fn a_worker_gets_its_args_env_and_working_directory_without_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::builder().start();
    let spec = script(
        "env",
        r#"echo "$HERD_WORKER|$GREETING|$(pwd)|$0|$1"; exec sleep 3600"#,
    )
    .args(["$not-expanded"])
    .env("GREETING", "hello world")
    .current_dir(dir.path());
    sup.start_worker(spec).await.unwrap();
    let want = format!(
        "env|hello world|{}|$not-expanded|",
        dir.path().canonicalize().unwrap().display()
    );
    eventually("the env line", || async {
        let tail = sup.tail("env").await.ok()?;
        tail.stdout.first().cloned()
    })
    .await;
    let line = sup.tail("env").await.unwrap().stdout[0].clone();
    assert_eq!(line, want);
    sup.shutdown().await;
}

#[tokio::test]
async fn the_tail_keeps_the_last_lines_of_stdout_and_stderr() {
    let sup = Supervisor::builder().start();
    let chatty = "i=0; while [ $i -lt 500 ]; do echo out $i; i=$((i+1)); done; echo oops >&2; exec sleep 3600";
    sup.start_worker(script("chatty", chatty)).await.unwrap();
    let tail = eventually("500 lines", || async {
        let t = sup.tail("chatty").await.ok()?;
        (t.stdout.last().map(String::as_str) == Some("out 499") && !t.stderr.is_empty())
            .then_some(t)
    })
    .await;
    assert_eq!(tail.stdout.len(), TAIL_LINES);
    assert_eq!(tail.stdout[0], format!("out {}", 500 - TAIL_LINES));
    assert_eq!(tail.stderr, ["oops"]);
    sup.shutdown().await;
}

#[tokio::test]
async fn a_huge_write_without_newline_is_cut_and_memory_stays_bounded() {
    let sup = Supervisor::builder().start();
    // 16 MiB without a newline, then a normal line.
    let flood = "head -c 16777216 /dev/zero | tr '\\0' a; echo; echo after; exec sleep 3600";
    sup.start_worker(script("flood", flood)).await.unwrap();
    let tail = eventually("the line after the flood", || async {
        let t = sup.tail("flood").await.ok()?;
        (t.stdout.last().map(String::as_str) == Some("after")).then_some(t)
    })
    .await;
    assert_eq!(tail.stdout.len(), 2, "one cut line, then the next");
    let cut = &tail.stdout[0];
    assert!(cut.ends_with("[truncated]"));
    assert!(cut.len() <= MAX_LINE_BYTES + 32, "{}", cut.len());
    sup.shutdown().await;
}
