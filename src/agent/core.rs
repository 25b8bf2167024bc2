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

use super::intent::{Intents, Kind};
use super::metrics::Metrics;
use super::placed::Placed;
use super::push;
use super::reconcile::{self, Action};
use super::status::{self, WorkerInfo};
use super::sync;
use super::trust::Trust;
use super::view::{SyncGate, View};
use super::workers::{Answer, Done, Op, Reply, WorkerOps};
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
    Stop {
        name: String,
        reply: oneshot::Sender<Result<(), AgentError>>,
    },
    Restart {
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
    /// What the operator asked of workers here (stop, delete), kept in the data dir.
    pub(crate) intents: Intents,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) repushes: u32,
    pub(crate) trust: Trust,
    /// Where workers' output goes (`AgentSettings::log_dir`).
    pub(crate) log_dir: Option<std::path::PathBuf>,
    /// Starts, stops and deletes in flight, beside this loop.
    pub(crate) ops: WorkerOps,
    /// Why the supervisor gave up, once it has (`Agent::gave_up`).
    pub(crate) gave_up: watch::Sender<Option<String>>,
    /// Counts pushes of this node that a concurrent push superseded.
    pub(crate) metrics: Arc<Metrics>,
    /// Where the placed workers run ([`placed`](super::placed)).
    pub(crate) placed: Placed,
    /// The agent's event log, for `config-adopted`.
    pub(crate) events: Arc<super::events::EventLog>,
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
        let mut names = self.node.names_watch();
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
                    } else if self.places_workers() {
                        self.reconcile().await;
                    }
                    self.sync_from_peers().await;
                }
                changed = names.changed() => {
                    if changed.is_err() { break }
                    names.borrow_and_update();
                    if self.places_workers() {
                        self.reconcile().await;
                    }
                }
                done = self.ops.next() => match self.finished(done) {
                    // An operator's command is answered once this node's status shows what it did.
                    Some(answer) => {
                        status_due = None;
                        self.publish_status().await;
                        answer.send();
                    }
                    None => {
                        status_due.get_or_insert_with(|| Instant::now() + STATUS_DEBOUNCE);
                    }
                },
                event = events.recv() => match event {
                    Ok(WorkerEvent::GaveUp { reason }) => {
                        error!(node = %self.node.id(), %reason, "the supervisor gave up: every worker on this node is stopped and failed");
                        self.gave_up.send_replace(Some(reason));
                        status_due.get_or_insert_with(|| Instant::now() + STATUS_DEBOUNCE);
                    }
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
            Command::Start { name, reply } => self.operator_start(name, reply, false).await,
            Command::Restart { name, reply } => self.operator_start(name, reply, true).await,
            Command::Delete { name, reply } => {
                if let Some(spec) = self.running.remove(&name) {
                    self.intents.set(&name, Kind::Deleted, &spec);
                    self.intents.save().await;
                }
                self.ops.push(&name, Op::Delete { reply });
            }
            Command::Stop { name, reply } => {
                if let Some(spec) = self.running.get(&name) {
                    if self.intents.set(&name, Kind::Stopped, spec) {
                        self.intents.save().await;
                    }
                    self.ops.push(&name, Op::Stop { reply });
                } else if self.held(&name) {
                    let _ = reply.send(Ok(()));
                } else {
                    self.ops.push(&name, Op::Stop { reply });
                }
            }
        }
    }

    /// A worker stopped by the operator before this agent started: not registered with the
    /// supervisor, listed as stopped.
    fn held(&self, name: &str) -> bool {
        self.intents.get(name) == Some(Kind::Stopped) && !self.running.contains_key(name)
    }

    /// `herd start` (or `herd restart`): ends the operator's stop or delete of the worker. One
    /// deleted here, held stopped since the agent started, or that could not start, is started
    /// from the config; any other is started again (or restarted) by the supervisor.
    async fn operator_start(&mut self, name: String, reply: Reply, restart: bool) {
        let intent = self.intents.get(&name);
        if self.intents.clear(&name) {
            self.intents.save().await;
        }
        let registered = self.running.contains_key(&name);
        let from_config = !registered || intent == Some(Kind::Deleted);
        if from_config || self.start_errors.contains_key(&name) {
            if let Some(spec) = self.desired().remove(&name).filter(|_| !registered) {
                self.start_errors.remove(&name);
                self.running.insert(name.clone(), spec.clone());
                let reply = Some(reply);
                self.ops.push(
                    &name,
                    Op::Start {
                        spec: Box::new(spec),
                        reply,
                    },
                );
                return;
            }
        }
        // Registered with the supervisor (or unknown to this node: the supervisor says so).
        let op = if restart {
            Op::Restart { reply }
        } else {
            Op::StartExisting { reply }
        };
        self.ops.push(&name, op);
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
        self.adopt(config.clone(), true, true, "push").await;
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
            self.adopt(Arc::new(offer), true, false, "gossip").await;
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
                self.adopt(Arc::new(offer), true, false, "gossip").await;
            }
            None if view == View::Behind => {
                warn!(node = %me, version = stored.version, waited_ms, "peers answer but this node has not caught up with any; running the config on disk until a newer one arrives");
                self.adopt(stored, false, true, "disk").await;
            }
            None => {
                info!(node = %me, version = stored.version, view = view.as_str(), waited_ms, "running the config restored from disk");
                self.adopt(stored, false, true, "disk").await;
            }
        }
    }

    /// Makes `config` the one this node holds: persists it, publishes it (in full when asked),
    /// records a `config-adopted` event (`via`: push, gossip or disk) and reconciles the workers.
    pub(crate) async fn adopt(
        &mut self,
        config: Arc<VersionedConfig>,
        persist: bool,
        full: bool,
        via: &'static str,
    ) {
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
        self.settle_intents(&config).await;
        self.current.send_replace(Some(config.clone()));
        self.publish_config(&config, full).await;
        self.events.push(
            "config-adopted",
            serde_json::json!({
                "version": config.version,
                "checksum": config.checksum,
                "pushed_by": config.pushed_by,
                "via": via,
            }),
        );
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

    /// The specs of the workers this node should run, by name: the config's for this node's
    /// tags, less those deleted here by the operator.
    fn desired(&self) -> BTreeMap<String, WorkerSpec> {
        self.desired_except(&self.intents.deleted())
    }

    fn desired_except(&self, deleted: &BTreeSet<String>) -> BTreeMap<String, WorkerSpec> {
        match self.config() {
            Some(config) => reconcile::desired(
                config.config(),
                self.node.id(),
                &self.tags,
                deleted,
                self.log_dir.as_deref(),
                |worker| self.placed.runs_here(worker),
            ),
            None => BTreeMap::new(),
        }
    }

    /// A config that gives a stopped or deleted worker another spec ends the operator's intent
    /// for it: the change is a new instruction.
    async fn settle_intents(&mut self, config: &VersionedConfig) {
        let desired = reconcile::desired(
            config.config(),
            self.node.id(),
            &self.tags,
            &BTreeSet::new(),
            self.log_dir.as_deref(),
            |_| true,
        );
        let ended = self.intents.settle(&desired);
        if !ended.is_empty() {
            info!(node = %self.node.id(), workers = ?ended, version = config.version, "the config changed workers an operator had stopped or deleted here; they run as it says");
            self.intents.save().await;
        }
    }

    /// Starts, stops and replaces workers until they match the config and this node's tags:
    /// queues the operations (they run beside the core's loop, see [`WorkerOps`]) and returns.
    /// Whether the config held places any worker: then membership and name changes may move
    /// workers to or from this node.
    fn places_workers(&self) -> bool {
        self.config()
            .is_some_and(|config| Placed::any(config.config()))
    }

    /// Decides where the placed workers run, from the live members and which are agents.
    async fn place(&mut self) {
        let config = self.config();
        let agents: BTreeSet<String> = match &config {
            Some(config) if Placed::any(config.config()) => self
                .node
                .keys_with_prefix(keys::AGENT, false)
                .await
                .into_iter()
                .filter(|node| node.keys.contains_key(keys::AGENT))
                .map(|node| node.id)
                .collect(),
            _ => BTreeSet::new(),
        };
        let members = self.node.members();
        let running = &self.running;
        self.placed
            .decide(
                &self.node,
                config.as_ref().map(|c| c.config()),
                &self.tags,
                &members,
                &agents,
                |name| running.contains_key(name),
            )
            .await;
    }

    async fn reconcile(&mut self) {
        self.place().await;
        let desired = self.desired();
        self.start_errors
            .retain(|name, _| desired.contains_key(name));
        for action in reconcile::plan(&desired, &self.running) {
            match action {
                Action::Remove(name) => {
                    info!(node = %self.node.id(), worker = %name, "worker no longer wanted here; stopping it");
                    self.running.remove(&name);
                    self.placed.stop_queued(&name);
                    self.ops.push(&name, Op::Remove);
                }
                Action::Replace(spec) => {
                    info!(node = %self.node.id(), worker = %spec.name, "worker spec changed; replacing it");
                    let name = spec.name.clone();
                    self.ops.push(&name, Op::Remove);
                    self.start(spec);
                }
                // Stopped by the operator before this agent started: listed, not started.
                Action::Start(spec) if self.intents.get(&spec.name) == Some(Kind::Stopped) => {}
                Action::Start(spec) => self.start(spec),
            }
        }
        // Workers that could not start are retried at the next reconcile.
        self.publish_status().await;
    }

    fn start(&mut self, spec: WorkerSpec) {
        let name = spec.name.clone();
        self.running.insert(name.clone(), spec.clone());
        self.ops.push(
            &name,
            Op::Start {
                spec: Box::new(spec),
                reply: None,
            },
        );
    }

    /// Takes an ended operation into account; the operator's answer it carries, if any.
    fn finished(&mut self, done: Done) -> Option<Answer> {
        match done {
            Done::Started {
                name,
                result: Ok(pid),
                answer,
                ..
            } => {
                info!(node = %self.node.id(), worker = %name, pid, "worker started");
                self.start_errors.remove(&name);
                answer
            }
            Done::Started {
                name,
                result: Err(err),
                answer,
                ..
            } if err.is_start_failure() => {
                // The supervisor keeps it as failed, with the reason: status shows it, and
                // delete, `herd start` and a push that changes its spec act on it as on any worker.
                error!(node = %self.node.id(), worker = %name, error = %err, "worker could not start");
                self.start_errors.remove(&name);
                answer
            }
            Done::Started {
                name,
                spec,
                result: Err(err),
                answer,
            } => {
                error!(node = %self.node.id(), worker = %name, error = %err, "worker could not start");
                // Unless something newer was queued for it meanwhile, it does not run.
                if self.running.get(&name) == Some(&*spec) {
                    self.running.remove(&name);
                    self.start_errors.insert(name, err.to_string());
                }
                answer
            }
            Done::Removed {
                name,
                result: Err(err),
            } => {
                warn!(node = %self.node.id(), worker = %name, error = %err, "cannot delete worker");
                self.placed.stopped(&name);
                None
            }
            Done::Removed {
                name,
                result: Ok(()),
            } => {
                self.placed.stopped(&name);
                None
            }
            Done::Answered(answer) => Some(answer),
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
        for worker in &mut workers {
            if self.intents.get(&worker.name) == Some(Kind::Stopped) && worker.state == "stopped" {
                worker.intent = Some("stopped".to_string());
            }
            worker.placement = self.placed.decision(&worker.name).map(str::to_string);
        }
        let desired = self.desired();
        let held: Vec<WorkerInfo> = self
            .intents
            .iter()
            .filter(|(name, _)| self.held(name) && desired.contains_key(*name))
            .map(|(name, _)| WorkerInfo::held_stopped(name))
            .collect();
        workers.extend(held);
        workers.sort_by(|a, b| a.name.cmp(&b.name));
        let value = status::encode(&workers);
        let mut publish = vec![(keys::WORKERS.to_string(), value)];
        if let Some(config) = self.config() {
            let state = status::applied(&desired, &workers);
            let value = status::encode_applied(config.id(), state);
            publish.push((keys::APPLIED.to_string(), value));
        }
        let _ = self.node.publish(publish, Vec::new()).await;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
