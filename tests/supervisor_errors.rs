//! Bad input: programs that cannot run, duplicate and unknown names.

#[path = "support/supervisor.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use herd::supervisor::{Backoff, Error, Supervisor, WorkerEvent, WorkerSpec, WorkerState};
use support::*;

#[tokio::test]
async fn a_missing_program_is_reported_at_once_naming_the_path_and_no_crash_loop_follows() {
    let sup = Supervisor::builder().start();
    let mut events = sup.subscribe();
    let err = sup
        .start_worker(WorkerSpec::new("ghost", "/nonexistent/herd-worker"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Spawn { worker, .. } if worker == "ghost"),
        "{err:?}"
    );
    assert!(err.is_start_failure());
    let text = err.to_string();
    assert!(text.contains("/nonexistent/herd-worker"), "{text}");
    assert!(text.contains("No such file or directory"), "{text}");
    // Registered as failed, with the reason, and not retried.
    let reason = "spawn failed: ENOENT (No such file or directory): /nonexistent/herd-worker";
    let status = sup.worker_status("ghost").await.unwrap();
    assert_eq!(
        status.state,
        WorkerState::Failed {
            reason: reason.into()
        }
    );
    assert_eq!((status.pid, status.restarts), (None, 0));
    // It can be deleted; nothing happened to it in between (no crash loop).
    sup.delete_worker("ghost").await.unwrap();
    let seen = wait_event(&mut events, |e| matches!(e, WorkerEvent::Deleted { .. })).await;
    assert_eq!(
        seen,
        vec![
            WorkerEvent::Failed {
                name: "ghost".into(),
                reason: reason.into()
            },
            WorkerEvent::Deleted {
                name: "ghost".into()
            },
        ]
    );
    assert!(sup.status().await.is_empty());
    sup.shutdown().await;
}

#[tokio::test]
async fn a_file_that_is_not_executable_is_reported_with_the_os_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-executable");
    std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sup = Supervisor::builder().start();
    let err = sup
        .start_worker(WorkerSpec::new("noexec", &path))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(path.to_str().unwrap()), "{text}");
    assert!(text.contains("Permission denied"), "{text}");
    let state = sup.worker_status("noexec").await.unwrap().state;
    let expected = format!(
        "spawn failed: EACCES (Permission denied): {}",
        path.display()
    );
    assert_eq!(state, WorkerState::Failed { reason: expected });
    // Made executable, it starts with start_existing.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&path, "#!/bin/sh\nexec sleep 3600\n").unwrap();
    let pid = sup.start_existing("noexec").await.unwrap();
    let status = sup.worker_status("noexec").await.unwrap();
    assert_eq!(status.state, WorkerState::Running { pid });
    sup.shutdown().await;
}

#[tokio::test]
async fn a_missing_working_directory_is_reported_at_once() {
    let sup = Supervisor::builder().start();
    let err = sup
        .start_worker(sleeper("lost").current_dir("/nonexistent/dir"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
    let state = sup.worker_status("lost").await.unwrap().state;
    assert!(
        matches!(&state, WorkerState::Failed { reason } if reason.starts_with("spawn failed: ENOENT")),
        "{state:?}"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn duplicate_worker_names_are_rejected() {
    let sup = Supervisor::builder().start();
    let pid = sup.start_worker(sleeper("twin")).await.unwrap();
    let err = sup.start_worker(sleeper("twin")).await.unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateWorker { name } if name == "twin"),
        "{err}"
    );
    let status = sup.status().await;
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].pid, Some(pid));
    sup.shutdown().await;
}

#[tokio::test]
async fn unknown_names_are_rejected_by_every_operation() {
    let sup = Supervisor::builder().start();
    let unknown = |r: Result<(), Error>| {
        assert!(
            matches!(&r, Err(Error::UnknownWorker { name }) if name == "nobody"),
            "{r:?}"
        )
    };
    unknown(sup.restart_worker("nobody").await.map(drop));
    unknown(sup.stop_worker("nobody").await);
    unknown(sup.start_existing("nobody").await.map(drop));
    unknown(sup.delete_worker("nobody").await);
    unknown(sup.tail("nobody").await.map(drop));
    unknown(sup.worker_status("nobody").await.map(drop));
    unknown(
        sup.call("nobody", "m", serde_json::Value::Null, PATIENCE)
            .await
            .map(drop),
    );
    sup.shutdown().await;
}

/// A script `sleep 3600` copied into `dir`, executable.
fn program_in(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("worker.sh");
    std::fs::write(&path, "#!/bin/sh\nexec sleep 3600\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The reasons of the `Restarting` events in `seen`.
fn restart_reasons(seen: &[WorkerEvent]) -> Vec<String> {
    seen.iter()
        .filter_map(|e| match e {
            WorkerEvent::Restarting { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// A supervisor running `path` with this backoff (no jitter) and limit,
/// whose program is made non-executable and whose process is then killed.
async fn crash_after_breaking(
    path: &std::path::Path,
    initial: Duration,
    max: Duration,
    max_restarts: u32,
) -> (
    Supervisor,
    tokio::sync::broadcast::Receiver<WorkerEvent>,
    u32,
) {
    let sup = Supervisor::builder().start();
    let events = sup.subscribe();
    let pid = sup
        .start_worker(
            WorkerSpec::new("w", path)
                .backoff(Backoff::exponential(initial, max).jitter(0.0))
                .max_restarts(max_restarts, Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    chmod(path, 0o644);
    sigkill(pid);
    (sup, events, pid)
}

#[tokio::test]
async fn a_program_made_non_executable_between_restarts_is_retried_then_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = program_in(dir.path());
    let ms300 = Duration::from_millis(300);
    let (sup, mut events, _) = crash_after_breaking(&path, ms300, ms300, 3).await;
    let spawn_failed = format!(
        "spawn failed: EACCES (Permission denied): {}",
        path.display()
    );
    // The crash, then a failed spawn: retried, the reason in the event and the state.
    let seen = wait_event(&mut events, |e| {
        matches!(e, WorkerEvent::Restarting { reason, .. } if reason.starts_with("spawn failed"))
    })
    .await;
    assert_eq!(
        restart_reasons(&seen),
        ["signal 9 (SIGKILL)".to_string(), spawn_failed.clone()]
    );
    let state = sup.worker_status("w").await.unwrap().state;
    assert!(
        matches!(&state, WorkerState::Backoff { reason: Some(r), .. } if *r == spawn_failed),
        "{state:?}"
    );
    let seen = wait_event(&mut events, |e| matches!(e, WorkerEvent::Failed { .. })).await;
    assert_eq!(
        restart_reasons(&seen),
        vec![spawn_failed.clone()],
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, WorkerEvent::Started { .. })),
        "{seen:?}"
    );
    let status = sup.worker_status("w").await.unwrap();
    let WorkerState::Failed { reason } = &status.state else {
        panic!("{status:?}")
    };
    assert!(reason.contains("more than 3 restarts"), "{reason}");
    assert!(reason.contains(&spawn_failed), "{reason}");
    assert_eq!(status.pid, None);
    sup.shutdown().await;
}

#[tokio::test]
async fn a_program_executable_again_before_the_retry_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = program_in(dir.path());
    let (initial, max) = (Duration::from_millis(200), Duration::from_secs(3600));
    let (sup, mut events, pid) = crash_after_breaking(&path, initial, max, 5).await;
    wait_event(&mut events, |e| {
        matches!(e, WorkerEvent::Restarting { reason, .. } if reason.starts_with("spawn failed"))
    })
    .await;
    // The next retry waits 400 ms; the program is fixed before it.
    chmod(&path, 0o755);
    let new = wait_new_pid(&sup, "w", pid).await;
    let status = sup.worker_status("w").await.unwrap();
    assert_eq!(status.state, WorkerState::Running { pid: new });
    assert_eq!(status.restarts, 2, "the crash and the failed spawn");
    sup.shutdown().await;
}

#[tokio::test]
async fn an_operator_start_that_cannot_spawn_returns_the_error_and_leaves_the_worker_failed() {
    let dir = tempfile::tempdir().unwrap();
    let path = program_in(dir.path());
    let sup = Supervisor::builder().start();
    sup.start_worker(WorkerSpec::new("w", &path)).await.unwrap();
    sup.stop_worker("w").await.unwrap();
    chmod(&path, 0o644);
    let spawn_failed = format!(
        "spawn failed: EACCES (Permission denied): {}",
        path.display()
    );
    let failed = WorkerState::Failed {
        reason: spawn_failed,
    };
    let err = sup.start_existing("w").await.unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
    assert_eq!(sup.worker_status("w").await.unwrap().state, failed);
    let err = sup.restart_worker("w").await.unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
    assert_eq!(sup.worker_status("w").await.unwrap().state, failed);

    // A running worker restarted by the operator: stopped, then the spawn fails.
    chmod(&path, 0o755);
    sup.start_existing("w").await.unwrap();
    chmod(&path, 0o644);
    let err = sup.restart_worker("w").await.unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
    assert_eq!(sup.worker_status("w").await.unwrap().state, failed);

    sup.delete_worker("w").await.unwrap();
    assert!(sup.status().await.is_empty());
    sup.shutdown().await;
}
