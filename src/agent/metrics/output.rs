//! The output metrics, read at scrape time: per worker, the lines the supervisor's output sink
//! dropped and the failed writes of its log file ([`Supervisor::output_stats`], no call to the
//! supervisor's thread); and the agent's own log lines dropped because stderr did not keep up
//! ([`LogWriter::dropped`]).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `herd_worker_output_lines_total` | counter: lines read from the worker's stdout and stderr | `worker` |
//! | `herd_worker_output_dropped_total` | counter: lines the full output sink dropped (kept in memory, never written to the log file or the agent's log) | `worker` |
//! | `herd_worker_log_write_errors_total` | counter: failed opens, writes and rotations of the worker's log file | `worker` |
//! | `herd_log_dropped_total` | counter: the agent's own log lines dropped because stderr blocked (absent when the agent logs through no [`LogWriter`]) | |

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

use crate::agent::LogWriter;
use crate::supervisor::{OutputStats, Supervisor};

/// A counter family: name, help, and its value in a worker's stats.
type Family = (&'static str, &'static str, fn(&OutputStats) -> u64);

/// Reads the supervisor's output counters and the log writer's at each scrape.
#[derive(Debug)]
pub(super) struct OutputMetrics {
    pub(super) sup: Supervisor,
    pub(super) log: Option<LogWriter>,
}

impl Collector for OutputMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let stats = self.sup.output_stats();
        let families: [Family; 3] = [
            (
                "worker_output_lines",
                "Lines read from the worker's stdout and stderr (protocol replies not counted).",
                |s| s.lines,
            ),
            (
                "worker_output_dropped",
                "Worker output lines the full output sink dropped: kept in memory, never written \
                 to the log file or the agent's log.",
                |s| s.dropped,
            ),
            (
                "worker_log_write_errors",
                "Failed opens, writes and rotations of the worker's log file.",
                |s| s.write_errors,
            ),
        ];
        for (name, help, value) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for s in &stats {
                ConstCounter::new(value(s))
                    .encode(family.encode_family(&[("worker", s.worker.as_str())])?)?;
            }
        }
        if let Some(log) = &self.log {
            let counter = ConstCounter::new(log.dropped());
            counter.encode(encoder.encode_descriptor(
                "log_dropped",
                "The agent's own log lines dropped because stderr did not keep up.",
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
