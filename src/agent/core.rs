//! The agent's core task: the one owner of the config this node holds and of the workers the
//! agent started. One `select!` loop over operator commands, config news from peers, membership
//! changes (own tags, the republishing duty), supervisor events (to publish worker status), and
//! the cancellation token. Decisions are the plain functions of [`sync`](super::sync) and
//! [`reconcile`](super::reconcile); which configs may be adopted at all is
//! [`trust`](super::trust)'s check, made before [`Core::adopt`]; this file only applies them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::metrics::Metrics;
use super::push;
use super::reconcile::{self, Action};
use super::status::{self, WorkerInfo};
use super::sync;
use super::trust::Trust;
use super::view::{SyncGate, View};
use super::AgentError;
use crate::config::{ConfigId, ConfigSignature, ConfigStore, VersionedConfig};
use crate::membership::keys;
use crate::node::published::NodeKeys;
use crate::supervisor::{Supervisor, WorkerEvent, WorkerSpec};
use crate::{Member, Node};

/// Worker status is published at most this often.
const STATUS_DEBOUNCE: Duration = Duration::from_millis(50);
/// A pushed config is pushed to peers this many more times, for configs larger than a datagram.
const REPUSHES: u32 = 3;

/// Requests the API makes of the core.
pub(crate) enum Command {
    PushConfig {
        toml: String,
        base_version: Option<u64>,
        /// The version the push is signed for, and the signature.
        signed: Option<(u64, ConfigSignature)>,
        reply: oneshot::Sender<Result<Arc<VersionedConfig>, AgentError>>,
    },
    Start {
        name: String,
        reply: oneshot::Sender<Result<(), AgentError>>,
    },
    Delete {
        name: String,
        reply: oneshot::Sender<Result<(), AgentError>>,
    },
}

pub(crate) struct Core {
    pub(crate) node: Node,
    pub(crate) sup: Supervisor,
    pub(crate) store: ConfigStore,
    pub(crate) current: watch::Sender<Option<Arc<VersionedConfig>>>,
    pub(crate) publishing: bool,
    pub(crate) running: BTreeMap<String, WorkerSpec>,
    pub(crate) start_errors: BTreeMap<String, String>,
    pub(crate) deleted: BTreeSet<String>,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) repushes: u32,
    pub(crate) trust: Trust,
    /// Counts pushes of this node that a concurrent push superseded.
    pub(crate) metrics: Arc<Metrics>,
}

impl Core {
    fn config(&self) -> Option<Arc<VersionedConfig>> {
        self.current.borrow().clone()
    }

    /// Runs until `cancel` fires.
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        cancel: CancellationToken,
    ) {
        let config_news = self.node.watch_prefix(keys::CONFIG_PREFIX).await;
        let mut members = self.node.members_watch();
        let mut events = self.sup.subscribe();
        let mut status_due: Option<Instant> = Some(Instant::now());
        let mut repush_at: Option<Instant> = None;
        self.sync_from_peers().await;
        loop {
            if self.repushes > 0 && repush_at.is_none() {
                repush_at = Some(Instant::now() + Duration::from_millis(100));
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                _ = config_news.changed() => self.sync_from_peers().await,
                changed = members.changed() => {
                    if changed.is_err() { break }
                    let me = members.borrow_and_update().iter().find(|m| m.id() == self.node.id()).map(Member::tags).cloned();
                    if let Some(tags) = me.filter(|t| *t != self.tags) {
                        info!(node = %self.node.id(), ?tags, "own tags changed; reconciling");
                        self.tags = tags;
                        self.reconcile().await;
                    }
                    self.sync_from_peers().await;
                }
                event = events.recv() => match event {
                    Ok(WorkerEvent::Failed { name, reason }) => {
                        warn!(node = %self.node.id(), worker = %name, %reason, "worker failed; it stays down until an operator starts it");
                        status_due.get_or_insert_with(|| Instant::now() + STATUS_DEBOUNCE);
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        status_due.get_or_insert_with(|| Instant::now() + STATUS_DEBOUNCE);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = sleep_until(status_due) => {
                    status_due = None;
                    self.publish_status().await;
                }
                _ = sleep_until(repush_at) => {
                    repush_at = None;
                    self.repushes = self.repushes.saturating_sub(1);
                    self.node.push().await;
                }
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::PushConfig {
                toml,
                base_version,
                signed,
                reply,
            } => {
                let _ = reply.send(self.push_config(toml, base_version, signed).await);
            }
            Command::Start { name, reply } => {
                // A worker deleted here, or one that could not start, is started by reconciling.
                let retry = self.start_errors.contains_key(&name);
                let result = if self.deleted.remove(&name) || retry {
                    self.reconcile().await;
                    match self.start_errors.get(&name) {
                        Some(err) => Err(AgentError::StartFailed {
                            worker: name,
                            reason: err.clone(),
                        }),
                        None => Ok(()),
                    }
                } else {
                    self.sup
                        .start_existing(&name)
                        .await
                        .map(drop)
                        .map_err(AgentError::from)
                };
                let _ = reply.send(result);
            }
            Command::Delete { name, reply } => {
                let result = match self.sup.delete_worker(&name).await {
                    Ok(()) => {
                        if self.running.remove(&name).is_some() {
                            self.deleted.insert(name);
                        }
                        Ok(())
                    }
                    Err(err) => Err(err.into()),
                };
                let _ = reply.send(result);
            }
        }
    }

    /// Validates and adopts a config pushed to this node: unsigned, with a version above any
    /// seen (an overflow is refused); signed, at the version it is signed for, which must be
    /// above any seen. The config records the one this node held as its parent.
    async fn push_config(
        &mut self,
        toml: String,
        base_version: Option<u64>,
        signed: Option<(u64, ConfigSignature)>,
    ) -> Result<Arc<VersionedConfig>, AgentError> {
        let nodes = self.node.keys_with_prefix(keys::CONFIG_PREFIX, true).await;
        let highest = self.highest_version(&nodes);
        let version = push::next_version(highest, signed.as_ref().map(|(version, _)| *version))?;
        let signature = signed.map(|(_, signature)| signature);
        self.trust.check_push(signature.as_ref(), version, &toml)?;
        if version <= highest {
            return Err(AgentError::SignedVersion {
                version,
                current: highest,
            });
        }
        if let Some(base) = base_version {
            if base < highest {
                return Err(AgentError::StaleVersion {
                    base,
                    current: highest,
                });
            }
        }
        let now = status::unix_ms(SystemTime::now());
        let parent = self.config().map_or(ConfigId::NONE, |held| held.id());
        let mut config = VersionedConfig::new(version, toml, self.node.id().to_string(), now)?
            .with_parent(parent);
        config.signature = signature;
        info!(node = %self.node.id(), version = config.version, workers = config.config().workers.len(), signed_by = ?config.signature.as_ref().map(|s| s.key.to_string()), "config pushed");
        let config = Arc::new(config);
        self.adopt(config.clone(), true, true).await;
        // Only the pusher pushes: every peer hears within a round trip, and a config larger
        // than one datagram follows with the repushes.
        self.node.push().await;
        self.repushes = REPUSHES;
        Ok(config)
    }

    /// The highest config version this node knows of: any head in gossip, or, when configs
    /// must be signed, only those of configs that pass the signer check.
    fn highest_version(&mut self, nodes: &[NodeKeys]) -> u64 {
        let held = self.config();
        if self.trust.required() {
            let trust = &mut self.trust;
            return sync::highest_admitted(held.as_deref(), nodes, |n, e| trust.read_offer(n, e));
        }
        sync::highest_version(nodes).max(held.map_or(0, |c| c.version))
    }

    /// Adopts a config from a peer if one supersedes ours (and passes the signer check), and
    /// settles who republishes it.
    async fn sync_from_peers(&mut self) {
        let nodes = self.node.keys_with_prefix(keys::CONFIG_PREFIX, true).await;
        let current = self.config();
        let trust = &mut self.trust;
        if let Some(offer) =
            sync::newest_offer(current.as_deref(), &nodes, |n, e| trust.read_offer(n, e))
        {
            info!(node = %self.node.id(), version = offer.version, from = %offer.pushed_by, "adopting the cluster config from gossip");
            self.report_if_lost(current.as_deref(), &offer);
            self.adopt(Arc::new(offer), true, false).await;
            return;
        }
        self.settle_publishing(&nodes).await;
    }

    /// Reports (log and metric) when adopting `winner` in place of `held` means a push this node
    /// accepted was lost to a concurrent one.
    fn report_if_lost(&self, held: Option<&VersionedConfig>, winner: &VersionedConfig) {
        if let Some(ours) = held.filter(|held| push::lost_to(self.node.id(), held, winner)) {
            push::report_superseded(self.node.id(), ours, winner, &self.metrics);
        }
    }

    /// Runs the config restored from the data dir, once this node's view is decided: synced
    /// with a peer, the cluster's config if it supersedes the stored one (the stored one's
    /// workers never start); alone or behind, the stored one. Until then no worker starts.
    /// Returns early, running nothing, when `cancel` fires.
    pub(crate) async fn restore(
        &mut self,
        stored: Option<Arc<VersionedConfig>>,
        gate: &SyncGate,
        cancel: &CancellationToken,
    ) {
        let Some(stored) = stored else { return };
        let (view, waited) = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            decided = gate.wait() => decided,
        };
        let nodes = self.node.keys_with_prefix(keys::CONFIG_PREFIX, true).await;
        let trust = &mut self.trust;
        let offer = sync::newest_offer(Some(&stored), &nodes, |n, e| trust.read_offer(n, e));
        let (me, waited_ms) = (self.node.id().to_string(), waited.as_millis() as u64);
        match offer {
            Some(offer) => {
                info!(node = %me, stored = stored.version, version = offer.version, from = %offer.pushed_by, view = view.as_str(), waited_ms, "the cluster's config supersedes the one on disk; running the cluster's");
                self.report_if_lost(Some(&stored), &offer);
                self.adopt(Arc::new(offer), true, false).await;
            }
            None if view == View::Behind => {
                warn!(node = %me, version = stored.version, waited_ms, "peers answer but this node has not caught up with any; running the config on disk until a newer one arrives");
                self.adopt(stored, false, true).await;
            }
            None => {
                info!(node = %me, version = stored.version, view = view.as_str(), waited_ms, "running the config restored from disk");
                self.adopt(stored, false, true).await;
            }
        }
    }

    /// Makes `config` the one this node holds: persists it, publishes it (in full when asked),
    /// and reconciles the workers.
    pub(crate) async fn adopt(&mut self, config: Arc<VersionedConfig>, persist: bool, full: bool) {
        if persist {
            // On the blocking pool: the agent's runtime has one thread, and its fsyncs can take
            // seconds on a busy disk, long enough for peers to think this node failed.
            let (store, saving) = (self.store.clone(), config.clone());
            let saved = tokio::task::spawn_blocking(move || store.save(&saving))
                .await
                .map_err(|err| err.to_string())
                .and_then(|saved| saved.map_err(|err| err.to_string()));
            if let Err(err) = saved {
                error!(node = %self.node.id(), version = config.version, error = %err, "cannot persist the cluster config; running it anyway");
            }
        }
        self.deleted.clear();
        self.current.send_replace(Some(config.clone()));
        self.publish_config(&config, full).await;
        self.reconcile().await;
    }

    async fn publish_config(&mut self, config: &VersionedConfig, full: bool) {
        let own = self.own_config_keys().await;
        let (set, keep) = if full {
            (sync::full_keys(config), Some(config.version))
        } else {
            let head = sync::head_for(config);
            (vec![(keys::CONFIG_HEAD.to_string(), head.encode())], None)
        };
        let delete = sync::stale_chunk_keys(&own, keep);
        self.publishing = full;
        if let Err(err) = self.node.publish(set, delete).await {
            warn!(node = %self.node.id(), error = %err, "cannot publish the cluster config");
        }
    }

    async fn own_config_keys(&self) -> BTreeMap<String, String> {
        self.node
            .keys_with_prefix(keys::CONFIG_PREFIX, true)
            .await
            .into_iter()
            .find(|n| n.id == self.node.id())
            .map(|n| n.keys)
            .unwrap_or_default()
    }

    async fn settle_publishing(&mut self, nodes: &[NodeKeys]) {
        let Some(config) = self.config() else { return };
        let head = sync::head_for(&config);
        let should = sync::should_publish(self.node.id(), &head, self.publishing, nodes);
        if should != self.publishing {
            info!(node = %self.node.id(), version = config.version, publishing = should, "config republishing duty changed");
            self.publish_config(&config, should).await;
        }
    }

    /// Starts, stops and replaces workers until they match the config and this node's tags.
    async fn reconcile(&mut self) {
        let desired = match self.config() {
            Some(config) => {
                reconcile::desired(config.config(), self.node.id(), &self.tags, &self.deleted)
            }
            None => BTreeMap::new(),
        };
        self.start_errors
            .retain(|name, _| desired.contains_key(name));
        for action in reconcile::plan(&desired, &self.running) {
            match action {
                Action::Remove(name) => {
                    info!(node = %self.node.id(), worker = %name, "worker no longer wanted here; stopping it");
                    self.remove(&name).await;
                }
                Action::Replace(spec) => {
                    info!(node = %self.node.id(), worker = %spec.name, "worker spec changed; replacing it");
                    self.remove(&spec.name).await;
                    self.start(spec).await;
                }
                Action::Start(spec) => self.start(spec).await,
            }
        }
        // Workers that could not start are retried at the next reconcile.
        self.publish_status().await;
    }

    async fn remove(&mut self, name: &str) {
        if let Err(err) = self.sup.delete_worker(name).await {
            warn!(node = %self.node.id(), worker = %name, error = %err, "cannot delete worker");
        }
        self.running.remove(name);
    }

    async fn start(&mut self, spec: WorkerSpec) {
        let name = spec.name.clone();
        match self.sup.start_worker(spec.clone()).await {
            Ok(pid) => {
                info!(node = %self.node.id(), worker = %name, pid, "worker started");
                self.start_errors.remove(&name);
                self.running.insert(name, spec);
            }
            Err(err) => {
                error!(node = %self.node.id(), worker = %name, error = %err, "worker could not start");
                self.start_errors.insert(name, err.to_string());
            }
        }
    }

    async fn publish_status(&mut self) {
        let mut workers: Vec<WorkerInfo> = self
            .sup
            .status()
            .await
            .iter()
            .map(WorkerInfo::from_status)
            .collect();
        workers.extend(
            self.start_errors
                .iter()
                .map(|(name, err)| WorkerInfo::not_started(name, err)),
        );
        workers.sort_by(|a, b| a.name.cmp(&b.name));
        let value = status::encode(&workers);
        let _ = self
            .node
            .publish(vec![(keys::WORKERS.to_string(), value)], Vec::new())
            .await;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
