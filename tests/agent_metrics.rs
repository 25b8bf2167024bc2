//! `GET /metrics` of real `herd agent` processes, parsed by a Prometheus text-format parser: two
//! agents, a pushed config, a worker SIGKILLed and restarted by its supervisor; the scrape shows
//! the members, the join, the restart, the worker's state, gossip traffic and the config version.

#[path = "support/agent.rs"]
mod support;

use std::time::Instant;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use prometheus_parse::{Scrape, Value};

use support::*;

/// `GET /metrics`: checks the status and content type, and parses the body.
fn scrape(agent: &AgentProc) -> (Scrape, String) {
    let mut response = ureq::get(&agent.url("/metrics"))
        .call()
        .expect("GET /metrics");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.body_mut().read_to_string().unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    (parsed, text)
}

/// The value of the sample named `metric` whose labels include `labels`, if there is one.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            // OpenMetrics names a counter family without `_total`, so the parser sees its
            // samples as untyped.
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            ref other => panic!("{metric} is not a single value: {other:?}"),
        })
}

/// Scrapes until `pred` holds for the parsed metrics, for at most [`WAIT`].
fn wait_metrics(agent: &AgentProc, what: &str, pred: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let (parsed, text) = scrape(agent);
        if pred(&parsed) {
            return parsed;
        }
        assert!(
            Instant::now() < deadline,
            "{} never showed {what}; its metrics:\n{text}",
            agent.id
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn metrics_show_members_joins_a_restarted_worker_gossip_and_the_config_version() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "metrics").start();
    let b = Spec::new("b", tmp.path(), "metrics").seed(&a).start();
    a.wait_members(2);
    b.wait_members(2);

    let (status, body) = http(
        "PUT",
        &b.url("/v1/config"),
        Some(&serde_json::json!({ "toml": ONE_SLEEPER }).to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let workers = a.wait_workers("sleeper running on a", |w| running(w, "a", "sleeper"));
    let pid = find(&workers, "a", "sleeper").unwrap().1.unwrap();

    // The worker is a child of the agent this test started.
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    a.wait_workers("sleeper restarted on a", |w| {
        running(w, "a", "sleeper") && find(w, "a", "sleeper").unwrap().1 != Some(pid)
    });

    let restarts = |s: &Scrape| {
        value(s, "herd_worker_restarts_total", &[("worker", "sleeper")]).unwrap_or(0.0)
    };
    let running_state = |s: &Scrape| {
        value(
            s,
            "herd_worker_state",
            &[("worker", "sleeper"), ("state", "running")],
        )
    };
    let m = wait_metrics(&a, "the restart of sleeper", |s| {
        restarts(s) >= 1.0 && running_state(s) == Some(1.0)
    });
    assert_eq!(value(&m, "herd_members_alive", &[]), Some(2.0));
    assert!(value(&m, "herd_member_joins_total", &[]).unwrap() >= 1.0);
    assert_eq!(
        value(
            &m,
            "herd_worker_state",
            &[("worker", "sleeper"), ("state", "backoff")]
        ),
        Some(0.0)
    );
    for metric in [
        "herd_gossip_bytes_sent_total",
        "herd_gossip_bytes_received_total",
        "herd_gossip_messages_sent_total",
        "herd_gossip_messages_received_total",
    ] {
        assert!(value(&m, metric, &[]).unwrap() > 0.0, "{metric}");
    }
    assert_eq!(value(&m, "herd_config_version", &[]), Some(1.0));
    assert_eq!(
        value(
            &m,
            "herd_supervisor_failures_total",
            &[("worker", "sleeper")]
        ),
        Some(0.0),
        "nothing failed, and the counter exists from the worker's first start"
    );
    assert!(
        m.samples
            .iter()
            .any(|s| s.metric == "herd_rpc_call_duration_seconds"
                && matches!(s.value, Value::Histogram(_))),
        "the RPC latency histogram is exposed"
    );

    // The other agent sees the same cluster and config, and its own worker untouched.
    let m = wait_metrics(&b, "its running worker", |s| {
        running_state(s) == Some(1.0) && value(s, "herd_config_version", &[]) == Some(1.0)
    });
    assert_eq!(value(&m, "herd_members_alive", &[]), Some(2.0));
    assert_eq!(
        value(&m, "herd_worker_restarts_total", &[("worker", "sleeper")]),
        Some(0.0)
    );
    for reason in ["graceful", "failed", "restarted"] {
        assert_eq!(
            value(&m, "herd_member_leaves_total", &[("reason", reason)]),
            Some(0.0),
            "{reason}"
        );
    }
}
