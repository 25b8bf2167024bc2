//! A reconcile never holds up the agent: a push that replaces 30 workers, each ignoring SIGTERM
//! for its 3 s `shutdown_timeout`, is answered at once, every worker is replaced in about one
//! timeout (not 30 of them: the stops run side by side), and `/v1/health` answers throughout.
//! The bounds are generous; benches/reconcile.rs measures the real figures.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/replace_all.rs"]
mod replace_all;

use std::time::Duration;

#[test]
fn replacing_every_worker_takes_one_shutdown_timeout_and_blocks_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let m = replace_all::run(tmp.path(), 30, "3s", 1, Duration::from_secs(60));
    let m = &m[0];
    // One after the other this would be 90 s (and the push answered only after them).
    assert!(
        m.all_replaced < Duration::from_secs(20),
        "replaced in {:?}",
        m.all_replaced
    );
    assert!(
        m.all_replaced >= Duration::from_secs(3),
        "the stops did not wait for the timeout: {:?}",
        m.all_replaced
    );
    assert!(
        m.push_answered < Duration::from_secs(3),
        "push answered in {:?}",
        m.push_answered
    );
    let worst = m.health.last().copied().unwrap_or_default();
    assert!(!m.health.is_empty());
    assert!(worst < Duration::from_secs(1), "health took {worst:?}");
}
