//! `herd agent`: a daemon that joins the cluster and runs the workers its groups are assigned.
//!
//! The agent is glue, wired from one [`AgentSettings`]:
//!
//! - a [`Node`] for membership, tagged with the node's groups;
//! - a [`Supervisor`] (one-for-one) for this node's workers;
//! - the core task (`core.rs`): holds the cluster config, takes it from disk at start (once its
//!   view of the cluster is fresh: [`view`]) and from gossip after (`sync.rs`), adopting only configs that pass the signer check when config
//!   signers are set (`trust.rs`), persists it (`config::ConfigStore`), reconciles the workers to it
//!   (`reconcile.rs`) and publishes their status (`status.rs`);
//! - the HTTP API ([`crate::api`]);
//! - the metrics recorder ([`metrics`]): counts membership and worker events for `GET /metrics`.
//!
//! Stopping ([`Agent::leave`]) goes in one order: stop the core, announce the leave and let it
//! spread, stop the workers, stop the API.

mod across;
mod core;
pub mod departed;
mod error;
pub mod events;
pub mod handlers;
pub mod health;
pub(crate) mod intent;
pub(crate) mod keys;
mod log_writer;
mod logs;
pub mod metrics;
mod placed;
mod push;
pub(crate) mod reconcile;
pub(crate) mod remote;
mod settings;
pub mod status;
pub(crate) mod sync;
pub(crate) mod trust;
pub mod view;
pub(crate) mod workers;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use across::PerNode;
pub use error::AgentError;
pub use log_writer::{EventWriter, LogWriter};
pub use logs::{FOLLOW_INTERVAL, MAX_FOLLOWERS};
pub use remote::WorkerAction;
pub use settings::{
    AgentSettings, DEFAULT_AGENT_LISTEN, DEFAULT_API, DEFAULT_DATA_DIR, DEFAULT_NODE_MAX_RESTARTS,
    DEFAULT_NODE_PERIOD,
};
pub use status::WorkerInfo;

/// How long an action on another node may take, on top of a worker call's own timeout.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(10);
/// The file in the data dir where the agent's node keeps its last generation (one decimal
/// number, mode 0600), so a restarted agent's generation is higher even when the clock went
/// back; see [`NodeBuilder::generation_file`](crate::NodeBuilder::generation_file).
pub const GENERATION_FILE: &str = "generation";

use self::core::{Command, Core};
use self::keys::KeyStore;
use self::metrics::Metrics;
use self::remote::Local;
use crate::api::{ApiToken, HostRules};
use crate::config::{ConfigSignature, ConfigStore, Loaded, VersionedConfig};
use crate::supervisor::{Strategy, Supervisor};
use crate::{async_trait, ClusterMember, Context, LeaveReason, Member, Node};

/// A running agent. Cheap to clone; the API holds one.
///
/// Dropping every handle does not stop the agent's tasks cleanly: call [`leave`](Agent::leave).
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

struct Inner {
    node: Node,
    sup: Supervisor,
    local: Local,
    current: watch::Receiver<Option<Arc<VersionedConfig>>>,
    api_addr: SocketAddr,
    metrics: Arc<Metrics>,
    /// Pushes wait here until this node's view of the cluster is fresh.
    gate: view::SyncGate,
    core_cancel: CancellationToken,
    api_cancel: CancellationToken,
    tracker: TaskTracker,
    /// Permits of the API's log followers (`logs.rs`).
    followers: Arc<tokio::sync::Semaphore>,
    /// Why the supervisor gave up, once it has.
    gave_up: watch::Receiver<Option<String>>,
    /// What happened on and around this node (`events.rs`).
    events: Arc<events::EventLog>,
    /// The members this node saw go (`departed.rs`).
    departed: Arc<departed::DepartedLog>,
    /// The event handlers running (`handlers.rs`).
    handlers: Arc<handlers::Handlers>,
    /// Since when a live member has held a newer config than this node (`health.rs`).
    lag: health::LagCell,
    /// How long that may last before this node is unhealthy.
    health_config_lag: Duration,
}

/// The API's token, from `settings.api_token_file` (created when missing); refuses a
/// non-loopback API address without one, and host names that are not hosts. Runs first in
/// [`Agent::start`], so a refused start has bound and written nothing.
fn api_token(settings: &AgentSettings) -> Result<Option<ApiToken>, AgentError> {
    HostRules::new(settings.api, &settings.api_hosts).map_err(AgentError::ApiHost)?;
    let Some(path) = &settings.api_token_file else {
        if !settings.api.ip().is_loopback() {
            return Err(AgentError::ApiUnprotected { addr: settings.api });
        }
        return Ok(None);
    };
    let loaded = ApiToken::load_or_create(path)?;
    if loaded.created {
        info!(path = %path.display(), "generated a new API token");
    } else {
        info!(path = %path.display(), "read the API token");
    }
    if loaded.too_open {
        warn!(path = %path.display(), "the API token file can be read by its group or others; chmod 600 it");
    }
    Ok(Some(loaded.token))
}

/// Logs membership changes and records them in the event log; the agent's own reactions come
/// from gossip state, not callbacks.
struct AgentMember {
    events: Arc<events::EventLog>,
    departed: Arc<departed::DepartedLog>,
}

#[async_trait]
impl ClusterMember for AgentMember {
    async fn on_join(&mut self, cx: &Context, members: &[Member]) {
        info!(node = %cx.node_id(), members = members.len(), "joined the cluster");
        for member in members.iter().filter(|m| m.id() != cx.node_id()) {
            self.departed.joined(member);
            self.events.member("member-join", member, None);
        }
    }
    async fn on_node_joined(&mut self, cx: &Context, member: &Member) {
        info!(node = %cx.node_id(), member = %member.id(), addr = %member.addr(), "member joined");
        self.departed.joined(member);
        self.events.member("member-join", member, None);
    }
    async fn on_node_left(&mut self, cx: &Context, member: &Member, reason: LeaveReason) {
        info!(node = %cx.node_id(), member = %member.id(), %reason, "member left");
        self.departed.left(member, reason);
        let event = match reason {
            LeaveReason::Failed => "member-failed",
            _ => "member-leave",
        };
        let reason = serde_json::json!({ "reason": reason.to_string() });
        self.events.member(event, member, Some(reason));
    }
    async fn on_member_updated(&mut self, _cx: &Context, member: &Member) {
        self.events.member("member-update", member, None);
    }
    async fn on_name_owner_changed(&mut self, _cx: &Context, name: &str, owner: Option<&Member>) {
        self.events.push(
            "name-owner-changed",
            serde_json::json!({ "name": name, "owner": owner.map(|m| m.id()) }),
        );
    }
}

impl Agent {
    /// Starts an agent: binds the API, joins the cluster, runs the config from the data dir
    /// once its view of the cluster is fresh (the cluster's instead, if that supersedes it:
    /// see [`view`]), and takes newer configs from gossip.
    ///
    /// # Errors
    /// The data dir cannot be created, the API or gossip address cannot be bound, a seed is
    /// invalid, the API address is not loopback and there is no token file, the token file
    /// cannot be read or created, an API host name is not a host, the key file or the data dir's
    /// keyring cannot be read, the data dir's [`GENERATION_FILE`] cannot be read or written or
    /// holds no generation, gossip would be plain on an address other than loopback without
    /// `allow_plaintext`, the `log_dir` cannot be created.
    pub async fn start(settings: AgentSettings) -> Result<Agent, AgentError> {
        let token = api_token(&settings)?;
        let keyring = keys::open_keyring(&settings)?;
        keys::check_plaintext(
            settings.listen,
            settings.advertise,
            keyring.is_some(),
            settings.allow_plaintext,
        )?;
        let store = ConfigStore::open(&settings.data_dir)
            .map_err(|err| AgentError::Store(err.to_string()))?;
        if let Some(dir) = &settings.log_dir {
            std::fs::create_dir_all(dir).map_err(|source| AgentError::LogDir {
                path: dir.clone(),
                source,
            })?;
        }
        let restored = match store.load() {
            Ok(Loaded::Config(config)) => {
                info!(version = config.version, path = %settings.data_dir.display(), "restored the cluster config from disk");
                Some(Arc::new(config))
            }
            Ok(Loaded::Empty) => None,
            Ok(Loaded::Corrupt {
                path,
                set_aside_as,
                reason,
            }) => {
                warn!(path = %path.display(), set_aside_as = %set_aside_as.display(), %reason, "the persisted cluster config is corrupt; set it aside, taking the config from peers");
                None
            }
            Err(err) => return Err(AgentError::Store(err.to_string())),
        };
        let keyring = match keyring {
            Some((ring, true)) => {
                keys::save_new(&ring, &settings.data_dir)?;
                Some(ring)
            }
            Some((ring, false)) => Some(ring),
            None => None,
        };
        let listener =
            TcpListener::bind(settings.api)
                .await
                .map_err(|source| AgentError::ApiBind {
                    addr: settings.api,
                    source,
                })?;
        let api_addr = listener
            .local_addr()
            .map_err(|source| AgentError::ApiBind {
                addr: settings.api,
                source,
            })?;

        let mut builder = Node::builder(settings.node_id.clone())
            .listen(settings.listen)
            .seeds(settings.seeds.clone())
            .cluster_id(settings.cluster_id.clone())
            .gossip_interval(settings.gossip_interval)
            .phi_threshold(settings.phi_threshold)
            .verify_incoming(settings.encrypt_verify_incoming)
            .generation_file(settings.data_dir.join(GENERATION_FILE))
            .agent_marker();
        if let Some(expected) = settings.expected_nodes {
            builder = builder.expected_members(expected);
        }
        if let Some(ring) = &keyring {
            builder = builder.keyring(ring.clone());
        }
        if let Some(advertise) = settings.advertise {
            builder = builder.advertise(advertise);
        }
        for (key, value) in &settings.tags {
            builder = builder.tag(key.clone(), value.clone());
        }
        let started = tokio::time::Instant::now();
        let events = events::EventLog::new(&settings.node_id);
        let departed = Arc::new(departed::DepartedLog::default());
        let node = builder
            .start(AgentMember {
                events: events.clone(),
                departed: departed.clone(),
            })
            .await?;
        let gate = view::SyncGate::new(node.clone(), started);
        // Each worker carries its own restart intensity (from the config), judged first; every
        // restart also counts against the node's, over which the supervisor gives up.
        let sup = Supervisor::builder()
            .strategy(Strategy::OneForOne)
            .max_restarts(settings.max_restarts, settings.period)
            .count_every_restart(true)
            .start();
        let worker_events = sup.subscribe(); // before any worker starts

        let handlers = handlers::Handlers::new(&settings.handlers);
        let (current_tx, current) = watch::channel(None);
        let (gave_up_tx, gave_up) = watch::channel(None);
        let metrics = Metrics::new(
            node.clone(),
            sup.clone(),
            current.clone(),
            settings.log_writer.clone(),
            handlers.collector(),
        );
        let recorder = metrics.recorder(); // subscribed before any worker starts
        let observed = Arc::downgrade(&metrics);
        node.set_rpc_observer(Arc::new(move |kind, outcome, elapsed| {
            if let Some(metrics) = observed.upgrade() {
                metrics.rpc_call(kind, outcome, elapsed);
            }
        }));
        let mut core = Core {
            node: node.clone(),
            sup: sup.clone(),
            store,
            current: current_tx,
            publishing: false,
            running: BTreeMap::new(),
            start_errors: BTreeMap::new(),
            intents: intent::Intents::load(&settings.data_dir),
            tags: settings.tags.clone(),
            repushes: 0,
            log_dir: settings.log_dir.clone(),
            ops: workers::WorkerOps::new(sup.clone()),
            gave_up: gave_up_tx,
            trust: trust::Trust::new(
                settings.config_signers.clone(),
                settings.cluster_id.clone(),
                node.id().to_string(),
                metrics.clone(),
            ),
            metrics: metrics.clone(),
            placed: placed::Placed::default(),
            events: events.clone(),
        };
        let restored = restored.filter(|config| core.trust.admit_stored(config));
        let (commands, commands_rx) = mpsc::channel(64);
        let local = Local {
            sup: sup.clone(),
            node: node.downgrade(),
            departed: departed.clone(),
            events: events.clone(),
            commands,
            keys: keyring.map(|ring| KeyStore {
                ring,
                path: settings.data_dir.join(keys::KEYRING_FILE),
            }),
        };
        node.set_system_handler(remote::handler(local.clone()));
        let core_cancel = CancellationToken::new();
        let api_cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (core_gate, cancel) = (gate.clone(), core_cancel.clone());
        tracker.spawn(async move {
            core.restore(restored, &core_gate, &cancel).await;
            core.run(commands_rx, cancel).await;
        });
        tracker.spawn(recorder.run(api_cancel.clone()));
        tracker.spawn(
            events
                .clone()
                .record_workers(worker_events, api_cancel.clone()),
        );
        let lag = health::LagCell::default();
        tracker.spawn(health::watch_lag(
            node.clone(),
            current.clone(),
            lag.clone(),
            api_cancel.clone(),
        ));
        handlers.spawn(
            &events,
            &settings.node_id,
            (sup.clone(), current.clone()),
            &tracker,
            &api_cancel,
        );
        let agent = Agent {
            inner: Arc::new(Inner {
                gave_up,
                node,
                sup,
                local,
                current,
                api_addr,
                metrics,
                gate,
                core_cancel,
                api_cancel: api_cancel.clone(),
                tracker: tracker.clone(),
                followers: logs::followers(),
                events: events.clone(),
                lag,
                departed,
                handlers,
                health_config_lag: settings.health_config_lag,
            }),
        };
        let access = crate::api::Access {
            hosts: HostRules::new(api_addr, &settings.api_hosts).map_err(AgentError::ApiHost)?,
            token,
        };
        let app = crate::api::router(agent.clone(), access)
            .into_make_service_with_connect_info::<SocketAddr>();
        tracker.spawn(async move {
            let serve =
                axum::serve(listener, app).with_graceful_shutdown(api_cancel.cancelled_owned());
            if let Err(err) = serve.await {
                warn!(error = %err, "the HTTP API stopped with an error");
            }
        });
        tracker.close();
        info!(node = %agent.node().id(), gossip = %agent.node().addr(), api = %api_addr, "agent started");
        match &settings.api_token_file {
            Some(path) => info!(
                url = %format!("http://{api_addr}/#token=<token>"),
                token_file = %path.display(),
                "dashboard: open the url with the token from the token file"
            ),
            None => info!(url = %format!("http://{api_addr}/"), "dashboard"),
        }
        Ok(agent)
    }

    /// Replaces this agent's event handlers (SIGHUP): the running ones end, a run under way is
    /// killed, and `configs` run for the events recorded from now on. Returns whether they
    /// differed from the running ones.
    pub fn set_handlers(&self, configs: Vec<crate::config::HandlerConfig>) -> bool {
        self.inner.handlers.replace(configs)
    }

    /// The members this node saw fail or leave and has not forgotten, most recent first
    /// ([`departed`]).
    pub fn departed(&self) -> Vec<departed::Departed> {
        self.inner.departed.list()
    }

    /// The agent's event log: what happened on and around this node.
    pub fn events(&self) -> &Arc<events::EventLog> {
        &self.inner.events
    }

    /// The agent's node.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// The agent's supervisor.
    pub fn supervisor(&self) -> &Supervisor {
        &self.inner.sup
    }

    /// The agent's metrics, rendered by `GET /metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The address the HTTP API listens on.
    pub fn api_addr(&self) -> SocketAddr {
        self.inner.api_addr
    }

    /// The cluster config this node holds, if any.
    pub fn config(&self) -> Option<Arc<VersionedConfig>> {
        self.inner.current.borrow().clone()
    }

    /// Every live node's workers, from gossip state (no calls to other nodes).
    pub async fn cluster_workers(&self) -> Vec<WorkerInfo> {
        let nodes = self
            .inner
            .node
            .keys_with_prefix(crate::membership::keys::WORKERS, false)
            .await;
        status::cluster_workers(&nodes)
    }

    /// The config each node says it holds (its gossiped head), by node id: every member (the
    /// incarnation the membership lists, even while the failure detector doubts it), and nodes
    /// declared dead whose state is still kept. A node that holds none is absent.
    pub async fn config_heads(&self) -> BTreeMap<String, crate::config::ConfigId> {
        let nodes = self
            .inner
            .node
            .keys_with_prefix(crate::membership::keys::CONFIG_PREFIX, true)
            .await;
        nodes
            .iter()
            .filter_map(|node| Some((node.id.clone(), sync::config_id_of(node)?)))
            .collect()
    }

    /// How far each live node's workers are with the config it holds, by node id: that
    /// config and `running`, `starting` or `failed` (see [`crate::agent::status`]). A node
    /// that holds none, or whose agent does not say, is absent.
    pub async fn config_applied(&self) -> BTreeMap<String, (crate::config::ConfigId, String)> {
        let nodes = self
            .inner
            .node
            .keys_with_prefix(crate::membership::keys::APPLIED, false)
            .await;
        nodes
            .iter()
            .filter_map(|node| {
                let text = node.keys.get(crate::membership::keys::APPLIED)?;
                Some((node.id.clone(), status::parse_applied(text)?))
            })
            .collect()
    }

    /// Validates `toml` and makes it the cluster config, with a version above any seen. With
    /// `base_version`, refuses if the cluster has moved past it. Waits first until this node's
    /// view of the cluster is fresh ([`view`]: at most [`view::CATCH_UP_LIMIT`] after the
    /// start, or [`view::ALONE_AFTER`] after the call).
    ///
    /// # Errors
    /// [`AgentError::Config`] (nothing changed), [`AgentError::StaleVersion`],
    /// [`AgentError::Refused`] if this agent has config signers (an unsigned push),
    /// [`AgentError::NotSynced`], [`AgentError::VersionOverflow`].
    pub async fn push_config(
        &self,
        toml: String,
        base_version: Option<u64>,
    ) -> Result<Arc<VersionedConfig>, AgentError> {
        self.ready_to_push().await?;
        self.inner
            .local
            .ask(|reply| Command::PushConfig {
                toml,
                base_version,
                signed: None,
                reply,
            })
            .await?
    }

    /// Validates `toml` and makes it the cluster config at `version`, the version `signature`
    /// signed ([`crate::config::signature`] says what is signed). The signature must verify
    /// against its key and, if this agent has config signers, be by one of them; `version`
    /// must be above any this node knows. With `base_version`, refuses if the cluster has moved
    /// past it.
    ///
    /// Waits for a fresh view first, as [`push_config`](Self::push_config) does.
    ///
    /// # Errors
    /// [`AgentError::Refused`], [`AgentError::SignedVersion`], [`AgentError::Config`],
    /// [`AgentError::StaleVersion`], [`AgentError::NotSynced`],
    /// [`AgentError::VersionOverflow`]; nothing changed.
    pub async fn push_signed_config(
        &self,
        toml: String,
        base_version: Option<u64>,
        version: u64,
        signature: ConfigSignature,
    ) -> Result<Arc<VersionedConfig>, AgentError> {
        self.ready_to_push().await?;
        self.inner
            .local
            .ask(|reply| Command::PushConfig {
                toml,
                base_version,
                signed: Some((version, signature)),
                reply,
            })
            .await?
    }

    /// Waits until this node's view is decided; refuses a push when it is behind.
    async fn ready_to_push(&self) -> Result<(), AgentError> {
        let (view, waited) = self.inner.gate.wait().await;
        let seeded = self.inner.node.peer_contact().seeded;
        match view {
            view::View::Behind => Err(AgentError::NotSynced { waited }),
            view::View::Alone if seeded => {
                info!(node = %self.node().id(), waited_ms = waited.as_millis() as u64, "no peer answered: judging the push alone");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Waits until this node's supervisor gives up (restarts of its workers over
    /// `max_restarts` within `period`), and returns why. `herd agent` with
    /// `on_give_up = "exit"` then leaves and exits with [`EXIT_GAVE_UP`](crate::config::EXIT_GAVE_UP).
    pub async fn gave_up(&self) -> String {
        let mut gave_up = self.inner.gave_up.clone();
        let reason = match gave_up.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            // The core ended (the agent is stopping): nothing more to wait for.
            None => std::future::pending().await,
        }
    }

    /// Leaves gracefully: stops the core, stops the `placement = "one"` workers running here
    /// (so the node that takes one over starts it only after it stopped here), announces the
    /// leave and lets it spread, stops every other worker, then stops the API. Idempotent.
    pub async fn leave(&self) {
        self.inner.core_cancel.cancel();
        let singletons: Vec<String> = self
            .inner
            .current
            .borrow()
            .as_ref()
            .map(|config| {
                config
                    .config()
                    .workers
                    .iter()
                    .filter(|w| w.placement == crate::config::Placement::One)
                    .map(|w| w.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let sup = &self.inner.sup;
        futures::future::join_all(singletons.iter().map(|name| sup.delete_worker(name))).await;
        if let Err(err) = self.inner.node.leave().await {
            warn!(error = %err, "leave failed");
        }
        self.inner.sup.shutdown().await;
        self.inner.api_cancel.cancel();
        self.inner.tracker.wait().await;
        info!(node = %self.inner.node.id(), "agent stopped");
    }
}
