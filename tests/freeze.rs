//! A member process frozen and resumed (SIGSTOP, SIGCONT): a real `herd agent` and an in-process
//! node watching it on 127.0.0.1. The watcher must see exactly what `MembershipEvent` documents
//! for a false failure: `Joined`, `Left(Failed)` while it is frozen, and one `Joined` again for
//! the same generation when it resumes; nothing more.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/membership.rs"]
mod membership;

use std::time::Duration;

use herd::LeaveReason;
use membership::{node, recorder, Seen};

fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).expect("signal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_member_that_resumes_is_left_failed_then_joined_once() {
    let dir = tempfile::tempdir().unwrap();
    let frozen = agent::Spec::new("p", dir.path(), "freeze").start();
    let pid = frozen.child.id();
    let (recorder, mut probe) = recorder();
    let watcher = node("w", "freeze")
        .seed(frozen.gossip.to_string())
        .start(recorder)
        .await
        .unwrap();
    let joined = probe.joined_cluster().await;
    assert_eq!(joined, vec!["p".to_string(), "w".to_string()]);
    let generation = watcher
        .members()
        .iter()
        .find(|m| m.id() == "p")
        .unwrap()
        .generation();

    signal(pid, nix::sys::signal::Signal::SIGSTOP);
    let reason = probe.left("p").await;
    assert_eq!(reason, LeaveReason::Failed);
    signal(pid, nix::sys::signal::Signal::SIGCONT);
    probe.saw_join_of("p").await;

    // Let a few seconds of gossip pass (bounded), then check the whole sequence.
    let settle = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = probe.seen();
    }
    let about_p: Vec<Seen> = probe
        .seen()
        .iter()
        .filter(|s| !matches!(s, Seen::Join(_) | Seen::Updated(..)))
        .cloned()
        .collect();
    assert_eq!(
        about_p,
        vec![
            Seen::Left("p".into(), generation, LeaveReason::Failed),
            Seen::Joined("p".into(), generation),
        ],
        "a false failure is one Left(Failed) and one Joined again, same generation"
    );
    assert!(watcher.members().iter().any(|m| m.id() == "p"));
    watcher.shutdown().await.unwrap();
    frozen.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_frozen_member_ends_when_it_is_declared_failed() {
    let dir = tempfile::tempdir().unwrap();
    let frozen = agent::Spec::new("p", dir.path(), "freeze-call").start();
    let pid = frozen.child.id();
    let (recorder, mut probe) = recorder();
    let caller = node("w", "freeze-call")
        .seed(frozen.gossip.to_string())
        .start(recorder)
        .await
        .unwrap();
    probe.joined_cluster().await;
    signal(pid, nix::sys::signal::Signal::SIGSTOP);
    let started = std::time::Instant::now();
    let result = caller
        .call::<_, u32>("p", &1u32, Duration::from_secs(60))
        .await;
    let took = started.elapsed();
    signal(pid, nix::sys::signal::Signal::SIGCONT);
    eprintln!("call ended after {took:?}: {result:?}");
    assert!(
        matches!(result, Err(herd::Error::Unreachable { .. })),
        "the call fails as unreachable once p is declared failed: {result:?}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    caller.shutdown().await.unwrap();
    frozen.kill();
}
