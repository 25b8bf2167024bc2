//! The JSON-lines call protocol with real Python workers using herd_worker.py.

#[path = "support/supervisor.rs"]
mod support;

use std::time::Duration;

use herd::supervisor::{Error, Exit, Supervisor, WorkerSpec};
use serde_json::json;
use support::*;

const TEST_WORKER: &str = r#"
import os, sys, time
from herd_worker import serve

def echo(params):
    return params

def slow(params):
    print("slow started", file=sys.stderr, flush=True)
    time.sleep(params.get("secs", 60))
    return "late"

def noisy(params):
    # Lines on the real stdout that are not replies: logged as output.
    sys.__stdout__.write("{not json\n")
    sys.__stdout__.write('{"id": "x", "note": "looks like JSON"}\n')
    sys.__stdout__.write("plain text\n")
    sys.__stdout__.flush()
    return "still fine"

def fail(params):
    raise RuntimeError("broken on purpose")

serve({"echo": echo, "slow": slow, "noisy": noisy, "fail": fail})
"#;

/// A supervisor with one python worker "py" running TEST_WORKER.
async fn python_worker() -> (Supervisor, tempfile::TempDir, u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test_worker.py");
    std::fs::write(&path, TEST_WORKER).unwrap();
    let sup = Supervisor::builder()
        .max_restarts(10, Duration::from_secs(60))
        .start();
    let spec = WorkerSpec::new("py", "python3")
        .args([path.to_str().unwrap()])
        .env("PYTHONPATH", workers_dir().to_str().unwrap())
        .jsonl();
    let pid = sup.start_worker(spec).await.unwrap();
    (sup, dir, pid)
}

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_call_round_trips_through_the_example_worker() {
    let sup = Supervisor::builder().start();
    let resizer = workers_dir().join("resizer.py");
    sup.start_worker(
        WorkerSpec::new("resizer", "python3")
            .args([resizer.to_str().unwrap()])
            .jsonl(),
    )
    .await
    .unwrap();
    let reply = sup
        .call(
            "resizer",
            "resize",
            json!({"w": 1920, "h": 1080, "max": 64}),
            LONG,
        )
        .await
        .unwrap();
    assert_eq!(reply, json!({"w": 64, "h": 36}));
    let err = sup
        .call("resizer", "resize", json!({"w": 0, "h": 1}), LONG)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Remote { message, .. } if message.contains("must be positive")),
        "{err}"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn concurrent_calls_are_matched_to_their_replies_by_id() {
    let (sup, _dir, _) = python_worker().await;
    let calls = (0..20).map(|i| {
        let sup = sup.clone();
        async move { (i, sup.call("py", "echo", json!({"n": i}), LONG).await) }
    });
    for (i, reply) in futures::future::join_all(calls).await {
        assert_eq!(reply.unwrap(), json!({"n": i}));
    }
    sup.shutdown().await;
}

#[tokio::test]
async fn a_call_times_out_cleanly_and_the_worker_keeps_serving() {
    let (sup, _dir, pid) = python_worker().await;
    let err = sup
        .call("py", "slow", json!({"secs": 1}), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::CallTimeout { worker, method, .. } if worker == "py" && method == "slow"),
        "{err}"
    );
    // The late reply to the timed-out call is not taken for this one.
    let reply = sup.call("py", "echo", json!("after"), LONG).await.unwrap();
    assert_eq!(reply, json!("after"));
    assert_eq!(sup.worker_status("py").await.unwrap().pid, Some(pid));
    sup.shutdown().await;
}

#[tokio::test]
async fn pending_calls_fail_at_once_when_the_worker_dies_and_it_is_restarted() {
    let (sup, _dir, pid) = python_worker().await;
    let pending = tokio::spawn({
        let sup = sup.clone();
        async move {
            sup.call(
                "py",
                "slow",
                json!({"secs": 3600}),
                Duration::from_secs(3600),
            )
            .await
        }
    });
    eventually("the worker to be inside the call", || async {
        let tail = sup.tail("py").await.ok()?;
        tail.stderr
            .iter()
            .any(|l| l == "slow started")
            .then_some(())
    })
    .await;
    sigkill(pid);
    let err = tokio::time::timeout(PATIENCE, pending)
        .await
        .expect("the pending call did not fail")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, Error::WorkerDied { worker, exit: Some(Exit::Signal(9)), .. } if worker == "py"),
        "{err}"
    );
    assert!(err.to_string().contains("died"), "{err}");
    wait_new_pid(&sup, "py", pid).await;
    let reply = sup.call("py", "echo", json!(1), LONG).await.unwrap();
    assert_eq!(reply, json!(1));
    sup.shutdown().await;
}

#[tokio::test]
async fn lines_that_are_not_replies_are_logged_and_do_not_disturb_calls() {
    let (sup, _dir, _) = python_worker().await;
    let reply = sup.call("py", "noisy", json!(null), LONG).await.unwrap();
    assert_eq!(reply, json!("still fine"));
    let reply = sup.call("py", "echo", json!([1, 2]), LONG).await.unwrap();
    assert_eq!(reply, json!([1, 2]));
    let tail = sup.tail("py").await.unwrap();
    assert!(tail.stdout.contains(&"{not json".to_owned()), "{tail:?}");
    assert!(tail.stdout.contains(&"plain text".to_owned()), "{tail:?}");
    assert!(
        !tail.stdout.iter().any(|l| l.contains("still fine")),
        "{tail:?}"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn an_error_reply_carries_the_workers_message() {
    let (sup, _dir, _) = python_worker().await;
    let err = sup.call("py", "fail", json!(null), LONG).await.unwrap_err();
    assert!(
        matches!(&err, Error::Remote { message, .. } if message.contains("broken on purpose")),
        "{err}"
    );
    let err = sup
        .call("py", "missing", json!(null), LONG)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown method"), "{err}");
    sup.shutdown().await;
}

#[tokio::test]
async fn calls_to_workers_that_cannot_answer_are_refused() {
    let sup = Supervisor::builder().start();
    sup.start_worker(sleeper("mute")).await.unwrap();
    let err = sup.call("mute", "x", json!(null), LONG).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotJsonl { worker } if worker == "mute"),
        "{err}"
    );
    let err = sup.call("ghost", "x", json!(null), LONG).await.unwrap_err();
    assert!(
        matches!(&err, Error::UnknownWorker { name } if name == "ghost"),
        "{err}"
    );
    sup.start_worker(sleeper("off").jsonl()).await.unwrap();
    sup.stop_worker("off").await.unwrap();
    let err = sup.call("off", "x", json!(null), LONG).await.unwrap_err();
    assert!(matches!(&err, Error::NotRunning { .. }), "{err}");
    sup.shutdown().await;
}
