//! The handlers' metrics, read at scrape time from their counters (see the table in
//! [`super`]).

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

use super::{Dropped, Outcome, Stats};

/// The handlers' counters, read at scrape time.
pub(crate) struct HandlerMetrics {
    pub(super) stats: Arc<Mutex<Vec<Arc<Stats>>>>,
    pub(super) dropped: Dropped,
}

impl fmt::Debug for HandlerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerMetrics").finish_non_exhaustive()
    }
}

impl Collector for HandlerMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let stats = self.stats.lock().expect("handler stats lock").clone();
        let mut runs = encoder.encode_descriptor(
            "handler_runs",
            "Runs of each event handler, by outcome (ok, failed, timeout, spawn_error)",
            None,
            MetricType::Counter,
        )?;
        for s in &stats {
            for (outcome, count) in Outcome::ALL.iter().zip(&s.runs) {
                let labels = [("handler", s.name.as_str()), ("outcome", outcome.label())];
                ConstCounter::new(count.load(Ordering::Relaxed))
                    .encode(runs.encode_family(&labels)?)?;
            }
        }
        let mut missed = encoder.encode_descriptor(
            "handler_missed",
            "Events a handler never ran for, for falling more than the event log's length behind",
            None,
            MetricType::Counter,
        )?;
        for s in &stats {
            ConstCounter::new(s.missed.load(Ordering::Relaxed))
                .encode(missed.encode_family(&[("handler", s.name.as_str())])?)?;
        }
        let mut delay = encoder.encode_descriptor(
            "handler_delay",
            "Time from an event's recording to the start of a handler's run for it",
            Some(&prometheus_client::registry::Unit::Seconds),
            MetricType::Histogram,
        )?;
        for s in &stats {
            s.delay
                .encode(delay.encode_family(&[("handler", s.name.as_str())])?)?;
        }
        let dropped = self.dropped.lock().expect("dropped lock").clone();
        let mut family = encoder.encode_descriptor(
            "worker_events_dropped",
            "Events not given to an events = true worker because it did not read its stdin",
            None,
            MetricType::Counter,
        )?;
        for (worker, count) in &dropped {
            ConstCounter::new(*count)
                .encode(family.encode_family(&[("worker", worker.as_str())])?)?;
        }
        Ok(())
    }
}
