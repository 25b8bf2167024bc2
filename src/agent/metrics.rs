//! The agent's Prometheus metrics, served by `GET /metrics` in the OpenMetrics text format.
//!
//! [`Metrics`] owns one `prometheus-client` [`Registry`] per agent (no global state). Two kinds
//! of values live in it:
//!
//! - **Counted events**: member joins and leaves, worker restarts, supervisor failures and
//!   give-ups. The `Recorder` task counts them from the node's membership stream and the
//!   supervisor's event channel. `Agent::start` subscribes both before any worker starts and
//!   runs the task on the agent's tracker; it stops on the agent's API token (the metrics are
//!   served as long as the API is), or keeps waiting for it once both streams have ended.
//! - **Read at scrape time** from state that already exists: live members, gossip traffic,
//!   the config version and the runtime's live tasks (a [`Collector`] over the node, the config
//!   watch and the current tokio runtime), and each worker's state (from `Supervisor::status`,
//!   in [`Metrics::render`]).
//!
//! The RPC layer records its calls with [`Metrics::rpc_call`]; the core task counts configs
//! it would not adopt (signed configs, [`crate::config::signature`]); the API's guard its
//! refusals with [`Metrics::api_rejected`].
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `herd_members_alive` | gauge | |
//! | `herd_member_joins_total` | counter | |
//! | `herd_member_leaves_total` | counter | `reason`: graceful, failed, restarted |
//! | `herd_worker_restarts_total` | counter | `worker` |
//! | `herd_worker_state` | gauge (1 for the current state, 0 for the others) | `worker`, `state` |
//! | `herd_supervisor_failures_total` | counter | `worker` |
//! | `herd_supervisor_gave_up_total` | counter | |
//! | `herd_gossip_{bytes,messages}_{sent,received}_total` | counter | |
//! | `herd_gossip_alive` | gauge: 1 while chitchat's gossip loop runs, 0 once it ended or failed | |
//! | `herd_gossip_largest_digest_bytes` | gauge: the largest digest message sent | |
//! | `herd_gossip_datagram_limit_bytes` | gauge: the largest message one datagram carries | |
//! | `herd_gossip_oversized_total` | counter: messages not sent for being larger than a datagram | |
//! | `herd_membership_delivery_stalls_total` | counter: times membership events waited for the member's callbacks | |
//! | `herd_membership_events_lagged_total` | counter: events the metrics recorder's stream lost for falling behind | |
//! | `herd_config_version` | gauge | |
//! | `herd_runtime_tasks` | gauge: tasks alive on the agent's tokio runtime (`num_alive_tasks`) | |
//! | `herd_config_rejected_total` | counter: configs from gossip or the data dir not adopted | `reason`: unsigned, bad_signature, unknown_signer |
//! | `herd_config_push_refused_total` | counter: pushes refused at the API for their signature | `reason`: as above |
//! | `herd_config_superseded_total` | counter: configs pushed through this node that a concurrent push (accepted elsewhere without knowing them) superseded | |
//! | `herd_rpc_calls_total` | counter | `kind`: call, cast; `outcome`: ok, error, timeout |
//! | `herd_rpc_call_duration_seconds` | histogram (50 µs to 5 s) | |
//! | `herd_rpc_rejected_total` | counter: connections, requests and frames the messaging layer refused | `reason`: the handshake's (closed, malformed, no_common_key, bad_proof, plaintext, timeout, forged_frame), over_cap, read_timeout, system_busy, overloaded, oversized_reply, not_member (a call or cast from a node outside this node's view), expired (a call whose deadline had passed) |
//! | `herd_api_rejected_total` | counter | `reason`: unauthorized, host, origin, content_type, too_large |
//!
//! The workers' output counters and `herd_log_dropped_total` are listed in `metrics/output.rs`,
//! the event handlers' in `handlers.rs`.

mod output;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::api::Refusal as ApiRefusal;
use crate::config::{Refusal, VersionedConfig};
use crate::supervisor::{Supervisor, WorkerEvent, WorkerState};
use crate::{EventStream, Lagged, LeaveReason, MembershipEvent, Node};

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the RPC latency buckets, in seconds: 50 µs to 5 s.
const RPC_BUCKETS: [f64; 16] = [
    50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 0.5,
    1.0, 2.5, 5.0,
];

/// Every state `herd_worker_state` reports, in the supervisor's order.
const WORKER_STATES: [&str; 7] = [
    "starting", "running", "backoff", "stopping", "stopped", "exited", "failed",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerStateLabels {
    worker: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    kind: String,
    outcome: String,
}

/// One agent's metrics: a registry, the counters its `Recorder` and the RPC layer update, and
/// what it reads at scrape time. The agent holds it; `GET /metrics` renders it.
pub struct Metrics {
    registry: Registry,
    node: Node,
    sup: Supervisor,
    joins: Counter,
    events_lagged: Counter,
    leaves: Family<ReasonLabels, Counter>,
    restarts: Family<WorkerLabels, Counter>,
    failures: Family<WorkerLabels, Counter>,
    gave_up: Counter,
    worker_state: Family<WorkerStateLabels, Gauge>,
    rpc_calls: Family<RpcLabels, Counter>,
    rpc_duration: Histogram,
    config_rejected: Family<ReasonLabels, Counter>,
    config_push_refused: Family<ReasonLabels, Counter>,
    api_rejected: Family<ReasonLabels, Counter>,
    config_superseded: Counter,
    /// Held while `worker_state` is rebuilt and encoded, so concurrent scrapes do not interleave.
    scrape: Mutex<()>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("node", &self.node.id())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates the metrics of the agent running `node` and `sup`, whose config is `config`,
    /// logging through `log`.
    pub(crate) fn new(
        node: Node,
        sup: Supervisor,
        config: watch::Receiver<Option<Arc<VersionedConfig>>>,
        log: Option<crate::agent::LogWriter>,
        handlers: crate::agent::handlers::HandlerMetrics,
    ) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("herd");
        let joins = Counter::default();
        let events_lagged = Counter::default();
        let leaves = Family::<ReasonLabels, Counter>::default();
        let restarts = Family::<WorkerLabels, Counter>::default();
        let failures = Family::<WorkerLabels, Counter>::default();
        let gave_up = Counter::default();
        let worker_state = Family::<WorkerStateLabels, Gauge>::default();
        let rpc_calls = Family::<RpcLabels, Counter>::default();
        let rpc_duration = Histogram::new(RPC_BUCKETS);
        let config_rejected = Family::<ReasonLabels, Counter>::default();
        let config_push_refused = Family::<ReasonLabels, Counter>::default();
        for reason in Refusal::REASONS {
            let label = ReasonLabels {
                reason: reason.to_string(),
            };
            let _ = config_rejected.get_or_create(&label);
            let _ = config_push_refused.get_or_create(&label);
        }
        let api_rejected = Family::<ReasonLabels, Counter>::default();
        let config_superseded = Counter::default();
        for refusal in ApiRefusal::ALL {
            let _ = api_rejected.get_or_create(&ReasonLabels {
                reason: refusal.reason().to_string(),
            });
        }
        for reason in [
            LeaveReason::Graceful,
            LeaveReason::Failed,
            LeaveReason::Restarted,
        ] {
            let _ = leaves.get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            });
        }
        registry.register(
            "membership_events_lagged",
            "Membership events the metrics recorder lost for falling behind",
            events_lagged.clone(),
        );
        registry.register(
            "member_joins",
            "Members that joined, as this node saw them",
            joins.clone(),
        );
        registry.register(
            "member_leaves",
            "Members that left, by reason (graceful, failed, restarted)",
            leaves.clone(),
        );
        registry.register(
            "worker_restarts",
            "Restarts of this node's workers by their restart policy",
            restarts.clone(),
        );
        registry.register(
            "worker_state",
            "Each of this node's workers: 1 for its current state, 0 for the others",
            worker_state.clone(),
        );
        registry.register(
            "supervisor_failures",
            "Workers the supervisor gave up on (left in the failed state)",
            failures.clone(),
        );
        registry.register(
            "supervisor_gave_up",
            "Times the supervisor's restart intensity was exceeded",
            gave_up.clone(),
        );
        registry.register(
            "rpc_calls",
            "Member-to-member messages sent, by kind (call, cast) and outcome (ok, error, timeout)",
            rpc_calls.clone(),
        );
        registry.register_with_unit(
            "rpc_call_duration",
            "Latency of member-to-member calls, from send to reply or failure",
            Unit::Seconds,
            rpc_duration.clone(),
        );
        registry.register(
            "config_rejected",
            "Configs from gossip or the data dir this node did not adopt, by reason (unsigned, bad_signature, unknown_signer)",
            config_rejected.clone(),
        );
        registry.register(
            "config_push_refused",
            "Config pushes this node's API refused for their signature, by reason",
            config_push_refused.clone(),
        );
        registry.register(
            "config_superseded",
            "Configs pushed through this node that a concurrent push superseded",
            config_superseded.clone(),
        );
        registry.register(
            "api_rejected",
            "HTTP API requests refused, by reason (unauthorized, host, origin, content_type, too_large)",
            api_rejected.clone(),
        );
        registry.register_collector(Box::new(Scraped {
            node: node.clone(),
            config,
        }));
        registry.register_collector(Box::new(handlers));
        registry.register_collector(Box::new(output::OutputMetrics {
            sup: sup.clone(),
            log,
        }));
        Arc::new(Metrics {
            registry,
            node,
            sup,
            joins,
            events_lagged,
            leaves,
            restarts,
            failures,
            gave_up,
            worker_state,
            rpc_calls,
            rpc_duration,
            config_rejected,
            config_push_refused,
            api_rejected,
            config_superseded,
            scrape: Mutex::new(()),
        })
    }

    /// Subscribes to the node's membership events and the supervisor's worker events now; the
    /// returned [`Recorder`] counts them once it runs.
    pub(crate) fn recorder(self: &Arc<Self>) -> Recorder {
        Recorder {
            metrics: self.clone(),
            members: self.node.events(),
            workers: self.sup.subscribe(),
        }
    }

    /// Records one member-to-member message: `kind` is `"call"` or `"cast"`, `outcome` is
    /// `"ok"`, `"error"` or `"timeout"`, `elapsed` the time from sending to the reply or the
    /// failure. Counts it in `herd_rpc_calls_total{kind, outcome}`; a call's `elapsed` also goes
    /// to the `herd_rpc_call_duration_seconds` histogram (a cast has no reply to wait for).
    ///
    /// Keep the label values to these few: every distinct pair is a series of its own.
    pub fn rpc_call(&self, kind: &str, outcome: &str, elapsed: Duration) {
        self.rpc_calls
            .get_or_create(&RpcLabels {
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        if kind == "call" {
            self.rpc_duration.observe(elapsed.as_secs_f64());
        }
    }

    /// Counts a config from gossip or the data dir that was not adopted, in
    /// `herd_config_rejected_total{reason}` ([`Refusal::reason`]).
    pub(crate) fn config_rejected(&self, refusal: &Refusal) {
        self.config_rejected
            .get_or_create(&ReasonLabels {
                reason: refusal.reason().to_string(),
            })
            .inc();
    }

    /// Counts a push refused at the API, in `herd_config_push_refused_total{reason}`.
    pub(crate) fn config_push_refused(&self, refusal: &Refusal) {
        self.config_push_refused
            .get_or_create(&ReasonLabels {
                reason: refusal.reason().to_string(),
            })
            .inc();
    }

    /// Counts a config pushed through this node that a concurrent push superseded, in
    /// `herd_config_superseded_total`.
    pub(crate) fn config_superseded(&self) {
        self.config_superseded.inc();
    }

    /// Counts one API request refused for `refusal` in
    /// `herd_api_rejected_total{reason}`.
    pub fn api_rejected(&self, refusal: ApiRefusal) {
        self.api_rejected
            .get_or_create(&ReasonLabels {
                reason: refusal.reason().to_string(),
            })
            .inc();
    }

    /// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]), ending with `# EOF`.
    /// Reads the workers' states from the supervisor first.
    pub async fn render(&self) -> String {
        let statuses = self.sup.status().await;
        let _scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.worker_state.clear();
        for status in &statuses {
            let current = state_name(&status.state);
            for state in WORKER_STATES {
                self.worker_state
                    .get_or_create(&WorkerStateLabels {
                        worker: status.name.clone(),
                        state,
                    })
                    .set(i64::from(state == current));
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    fn membership_event(&self, event: &MembershipEvent) {
        match event {
            MembershipEvent::Joined(_) => {
                self.joins.inc();
            }
            MembershipEvent::Left(_, reason) => {
                self.leaves
                    .get_or_create(&ReasonLabels {
                        reason: reason.to_string(),
                    })
                    .inc();
            }
            MembershipEvent::Updated(_) => {}
        }
    }

    fn worker_event(&self, event: &WorkerEvent) {
        let worker = |name: &str| WorkerLabels {
            worker: name.to_owned(),
        };
        match event {
            // A worker's counters appear at 0 when it first starts, so the first restart or
            // failure is an increase a query can see.
            WorkerEvent::Started { name, .. } => {
                let _ = self.restarts.get_or_create(&worker(name));
                let _ = self.failures.get_or_create(&worker(name));
            }
            WorkerEvent::Restarting { name, .. } => {
                self.restarts.get_or_create(&worker(name)).inc();
            }
            WorkerEvent::Failed { name, .. } => {
                self.failures.get_or_create(&worker(name)).inc();
            }
            WorkerEvent::GaveUp { .. } => {
                self.gave_up.inc();
            }
            _ => {}
        }
    }
}

/// The stable, lower-case name of a worker state (its `Display` carries details).
fn state_name(state: &WorkerState) -> &'static str {
    match state {
        WorkerState::Starting { .. } => "starting",
        WorkerState::Running { .. } => "running",
        WorkerState::Backoff { .. } => "backoff",
        WorkerState::Stopping { .. } => "stopping",
        WorkerState::Stopped => "stopped",
        WorkerState::Exited { .. } => "exited",
        WorkerState::Failed { .. } => "failed",
    }
}

/// The task that counts membership and worker events into [`Metrics`]. Its subscriptions are
/// taken by [`Metrics::recorder`], so nothing is missed between then and [`Recorder::run`].
pub(crate) struct Recorder {
    metrics: Arc<Metrics>,
    members: EventStream,
    workers: broadcast::Receiver<WorkerEvent>,
}

impl Recorder {
    /// Counts events until `stop` is cancelled. A stream that ends is no longer read; falling
    /// behind the supervisor's channel loses those events' counts, with a warning.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let (mut members_open, mut workers_open) = (true, true);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                event = self.members.next(), if members_open => match event {
                    Some(Ok(event)) => self.metrics.membership_event(&event),
                    Some(Err(Lagged(missed))) => {
                        self.metrics.events_lagged.inc_by(missed);
                        warn!(missed, "metrics fell behind the membership events; their counts are lost");
                    }
                    None => members_open = false,
                },
                event = self.workers.recv(), if workers_open => match event {
                    Ok(event) => self.metrics.worker_event(&event),
                    Err(RecvError::Lagged(missed)) => {
                        warn!(missed, "metrics fell behind the supervisor's events; their counts are lost");
                    }
                    Err(RecvError::Closed) => workers_open = false,
                },
            }
        }
    }
}

/// The values read at scrape time from the node and the config watch.
#[derive(Debug)]
struct Scraped {
    node: Node,
    config: watch::Receiver<Option<Arc<VersionedConfig>>>,
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let members = self.node.members().len();
        gauge(
            &mut encoder,
            "members_alive",
            "Live members, this node included.",
            i64::try_from(members).unwrap_or(i64::MAX),
        )?;
        let version = self.config.borrow().as_ref().map_or(0, |c| c.version);
        gauge(
            &mut encoder,
            "config_version",
            "Version of the cluster config this node holds (0: none yet).",
            i64::try_from(version).unwrap_or(i64::MAX),
        )?;
        // Scrapes run on the agent's runtime; elsewhere (no runtime) the gauge reads 0.
        let tasks = tokio::runtime::Handle::try_current()
            .map_or(0, |runtime| runtime.metrics().num_alive_tasks());
        gauge(
            &mut encoder,
            "runtime_tasks",
            "Tasks alive on this agent's tokio runtime.",
            i64::try_from(tasks).unwrap_or(i64::MAX),
        )?;
        let stats = self.node.gossip_stats();
        let health = self.node.membership_health();
        for (name, help, value) in [
            (
                "gossip_alive",
                "1 while the gossip loop runs, 0 once it ended or failed.",
                u64::from(self.node.gossip_alive()),
            ),
            (
                "gossip_largest_digest_bytes",
                "The largest gossip digest message sent, in bytes.",
                stats.largest_digest_bytes,
            ),
            (
                "gossip_datagram_limit_bytes",
                "The largest gossip message one datagram carries, in bytes.",
                stats.datagram_limit_bytes,
            ),
        ] {
            gauge(
                &mut encoder,
                name,
                help,
                i64::try_from(value).unwrap_or(i64::MAX),
            )?;
        }
        for (name, help, value) in [
            (
                "gossip_bytes_sent",
                "Bytes of gossip sent.",
                stats.bytes_sent,
            ),
            (
                "gossip_bytes_received",
                "Bytes of valid gossip received.",
                stats.bytes_received,
            ),
            (
                "gossip_messages_sent",
                "Gossip messages sent.",
                stats.messages_sent,
            ),
            (
                "gossip_messages_received",
                "Valid gossip messages received.",
                stats.messages_received,
            ),
            (
                "gossip_oversized",
                "Gossip messages not sent for being larger than one datagram.",
                stats.oversized,
            ),
            (
                "membership_delivery_stalls",
                "Times membership events waited for the member's callbacks to catch up.",
                health.delivery_stalls,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        by_reason(
            &mut encoder,
            "gossip_rejected",
            "Gossip datagrams dropped before chitchat saw them, by reason.",
            stats.rejected.by_reason().iter().copied(),
        )?;
        let rpc = self.node.rpc_stats();
        by_reason(
            &mut encoder,
            "rpc_rejected",
            "Member-to-member connections refused at the handshake (or closed for a frame that \
             did not authenticate, over the connection cap, or for a frame that stopped \
             arriving), requests refused (herd requests over the concurrency bound) and frames \
             not sent (a full connection queue, a reply over the frame limit), by reason.",
            rpc.refused.iter().copied().chain([
                ("over_cap", rpc.connections_over_cap),
                ("read_timeout", rpc.read_timeouts),
                ("system_busy", rpc.system_busy),
                ("overloaded", rpc.overloaded),
                ("not_member", rpc.not_member),
                ("expired", rpc.expired),
                ("oversized_reply", rpc.oversized_replies),
            ]),
        )?;
        Ok(())
    }
}

/// One counter family labelled by `reason`.
fn by_reason(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    counts: impl Iterator<Item = (&'static str, u64)>,
) -> Result<(), fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (reason, count) in counts {
        ConstCounter::new(count).encode(family.encode_family(&[("reason", reason)])?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::Exit;
    use crate::ClusterMember;

    struct Quiet;
    impl ClusterMember for Quiet {}

    #[test]
    fn every_worker_state_has_a_listed_name() {
        for state in [
            WorkerState::Starting { pid: None },
            WorkerState::Running { pid: 7 },
            WorkerState::Backoff {
                remaining_ms: 5,
                reason: None,
            },
            WorkerState::Stopping { pid: 7 },
            WorkerState::Stopped,
            WorkerState::Exited {
                exit: Exit::Code(1),
            },
            WorkerState::Failed { reason: "x".into() },
        ] {
            let name = state_name(&state);
            assert!(WORKER_STATES.contains(&name), "{name}");
            assert!(state.to_string().starts_with(name), "{state} vs {name}");
        }
    }

    /// A loopback node from `builder`, a supervisor, and their metrics.
    async fn started(
        builder: crate::NodeBuilder,
    ) -> (
        Node,
        Supervisor,
        Arc<Metrics>,
        watch::Sender<Option<Arc<VersionedConfig>>>,
    ) {
        let node = builder
            .listen("127.0.0.1:0".parse().unwrap())
            .start(Quiet)
            .await
            .unwrap();
        let sup = Supervisor::builder().start();
        let (config_tx, config) = watch::channel(None);
        let metrics = Metrics::new(
            node.clone(),
            sup.clone(),
            config,
            None,
            crate::agent::handlers::Handlers::default().collector(),
        );
        (node, sup, metrics, config_tx)
    }

    #[tokio::test]
    async fn events_and_rpc_calls_are_counted_and_rendered() {
        let (node, sup, metrics, _config_tx) =
            started(Node::builder("m").cluster_id("metrics-unit")).await;

        let member = node.members()[0].clone();
        metrics.membership_event(&MembershipEvent::Joined(member.clone()));
        metrics.membership_event(&MembershipEvent::Left(member, LeaveReason::Failed));
        metrics.worker_event(&WorkerEvent::Restarting {
            name: "w".into(),
            delay: Duration::ZERO,
            reason: "exit code 1".into(),
        });
        metrics.worker_event(&WorkerEvent::Failed {
            name: "w".into(),
            reason: "too many restarts".into(),
        });
        metrics.worker_event(&WorkerEvent::GaveUp {
            reason: "intensity".into(),
        });
        metrics.rpc_call("call", "ok", Duration::from_micros(80));
        metrics.rpc_call("call", "timeout", Duration::from_secs(1));
        metrics.rpc_call("cast", "ok", Duration::from_micros(10));
        metrics.config_rejected(&Refusal::Unsigned { signers: vec![] });
        metrics.api_rejected(ApiRefusal::Host);

        let text = metrics.render().await;
        for line in [
            "herd_members_alive 1",
            "herd_config_version 0",
            "herd_member_joins_total 1",
            "herd_member_leaves_total{reason=\"failed\"} 1",
            "herd_member_leaves_total{reason=\"graceful\"} 0",
            "herd_worker_restarts_total{worker=\"w\"} 1",
            "herd_supervisor_failures_total{worker=\"w\"} 1",
            "herd_supervisor_gave_up_total 1",
            "herd_rpc_calls_total{kind=\"call\",outcome=\"ok\"} 1",
            "herd_rpc_calls_total{kind=\"call\",outcome=\"timeout\"} 1",
            "herd_rpc_calls_total{kind=\"cast\",outcome=\"ok\"} 1",
            "herd_config_rejected_total{reason=\"unsigned\"} 1",
            "herd_config_rejected_total{reason=\"bad_signature\"} 0",
            "herd_config_push_refused_total{reason=\"unknown_signer\"} 0",
            "# UNIT herd_rpc_call_duration_seconds seconds",
            "herd_rpc_call_duration_seconds_count 2",
            "herd_rpc_call_duration_seconds_bucket{le=\"0.0001\"} 1",
            "herd_rpc_call_duration_seconds_bucket{le=\"5.0\"} 2",
            "herd_api_rejected_total{reason=\"host\"} 1",
            "herd_api_rejected_total{reason=\"unauthorized\"} 0",
            "herd_api_rejected_total{reason=\"too_large\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        // The node's own tasks (gossip, watcher, dispatcher) are alive on this runtime.
        let tasks: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("herd_runtime_tasks "))
            .unwrap_or_else(|| panic!("no herd_runtime_tasks in\n{text}"))
            .parse()
            .unwrap();
        assert!(tasks >= 1, "{tasks}");
        sup.shutdown().await;
        node.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn connections_over_the_rpc_cap_are_rendered_as_rejected() {
        let builder = Node::builder("m")
            .cluster_id("metrics-cap")
            .max_connections(1);
        let (node, sup, metrics, _config_tx) = started(builder).await;
        let addr = node.members()[0].rpc_addr().unwrap();
        let _held = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _refused = tokio::net::TcpStream::connect(addr).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while node.rpc_stats().connections_over_cap == 0 {
            assert!(tokio::time::Instant::now() < deadline, "not refused");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let text = metrics.render().await;
        for line in [
            "herd_rpc_rejected_total{reason=\"over_cap\"} 1",
            "herd_rpc_rejected_total{reason=\"read_timeout\"} 0",
            "herd_rpc_rejected_total{reason=\"overloaded\"} 0",
            "herd_rpc_rejected_total{reason=\"no_common_key\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        sup.shutdown().await;
        node.shutdown().await.unwrap();
    }
}
