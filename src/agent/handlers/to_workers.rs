//! Events for JSON-lines workers: each event of the agent's log, as it is recorded, written to
//! the running `events = true` workers of the config the agent holds, as `{"event": {...}}` lines
//! on their stdin (notifications, which the worker does not answer), through
//! [`Supervisor::notify`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{Dropped, BATCH};
use crate::agent::events::EventLog;
use crate::config::VersionedConfig;
use crate::log_limit::LogLimit;
use crate::supervisor::Supervisor;

/// The agent's config, as the core publishes it.
pub(crate) type ConfigWatch = watch::Receiver<Option<Arc<VersionedConfig>>>;

/// Gives each event of `log` to the running `events = true` workers of the config `current`
/// holds, as `{"event": {...}}` lines on their stdin, until `cancel`. A worker whose stdin
/// queue is full ([`crate::supervisor::NOTIFY_QUEUE`]) misses the event, counted in `dropped`.
pub(super) async fn notify_workers(
    log: Arc<EventLog>,
    sup: Supervisor,
    current: ConfigWatch,
    dropped: Dropped,
    cancel: CancellationToken,
) {
    let mut newest = log.watch();
    let mut cursor = log.newest();
    let mut limit = LogLimit::new(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = newest.changed() => if changed.is_err() { return },
        }
        loop {
            let batch = log.since(cursor, BATCH);
            cursor = batch.next;
            if batch.events.is_empty() {
                break;
            }
            let workers: Vec<String> = current
                .borrow()
                .as_ref()
                .map(|c| {
                    let workers = c.config().workers.iter();
                    workers
                        .filter(|w| w.events)
                        .map(|w| w.name.clone())
                        .collect()
                })
                .unwrap_or_default();
            if workers.is_empty() {
                continue;
            }
            for event in &batch.events {
                let message = serde_json::json!({ "event": event });
                for worker in &workers {
                    // Not here, or not running: nothing to tell.
                    if let Ok(false) = sup.notify(worker, &message).await {
                        *dropped
                            .lock()
                            .expect("dropped lock")
                            .entry(worker.clone())
                            .or_default() += 1;
                        if limit.due(worker.clone()) {
                            warn!(%worker, "the worker does not read its stdin: events for it are dropped");
                        }
                    }
                }
            }
        }
    }
}
