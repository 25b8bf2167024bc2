//! [`AgentSettings`]: everything an agent needs to start, with its defaults in one place. The
//! binary fills it from the agent file and flags (flags win).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{OnGiveUp, Signers};
use crate::node::{DEFAULT_CLUSTER_ID, DEFAULT_GOSSIP_INTERVAL, DEFAULT_PHI_THRESHOLD};

/// Default HTTP API address (loopback: the API can stop and start programs).
pub const DEFAULT_API: &str = "127.0.0.1:7947";
/// Default agent gossip address.
pub const DEFAULT_AGENT_LISTEN: &str = "127.0.0.1:7946";
/// Default data directory (the persisted cluster config), relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "herd-data";

/// Default restarts of all of a node's workers together allowed within [`DEFAULT_NODE_PERIOD`]
/// before the agent's supervisor gives up: well above one worker's own limit (3 in 5 s by
/// default) and a slow flapper's, a sustained crash loop across the node.
pub const DEFAULT_NODE_MAX_RESTARTS: u32 = 100;
/// Default period [`DEFAULT_NODE_MAX_RESTARTS`] counts over.
pub const DEFAULT_NODE_PERIOD: Duration = Duration::from_secs(60);

/// The settings of one agent.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// Node id, unique in the cluster (default: the host name).
    pub node_id: String,
    /// Gossip listen address (UDP).
    pub listen: SocketAddr,
    /// Address peers gossip to, when it differs from `listen`.
    pub advertise: Option<SocketAddr>,
    /// Seeds: `ip:port` or `host:port` of any member.
    pub seeds: Vec<String>,
    /// Cluster id; agents of different clusters never merge.
    pub cluster_id: String,
    /// This node's tags; `group` (a comma-separated list) selects the workers it runs.
    pub tags: BTreeMap<String, String>,
    /// Where the cluster config is persisted, and the node's last generation
    /// ([`GENERATION_FILE`](crate::agent::GENERATION_FILE)).
    pub data_dir: PathBuf,
    /// HTTP API address.
    pub api: SocketAddr,
    /// The file holding the API's bearer token, created with a new token when missing; `None`:
    /// no token is asked for, which the agent allows only on a loopback API address.
    pub api_token_file: Option<PathBuf>,
    /// More names the API answers to in `Host` headers (`NAME` or `NAME:PORT`), besides its
    /// own address and localhost.
    pub api_hosts: Vec<String>,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
    /// Failure detector threshold.
    pub phi_threshold: f64,
    /// The keys whose signed configs this agent adopts. Empty (the default): any config, as
    /// in a cluster without signed configs; otherwise only configs signed by one of them.
    pub config_signers: Signers,
    /// A file holding a cluster key (one base64 line, as `herd keygen` prints it). At the first
    /// start it becomes the keyring in the data dir (`<data_dir>/keyring`); after that the data
    /// dir's keyring wins. `None`: the data dir's keyring if there is one, else plain gossip.
    pub encrypt_key_file: Option<PathBuf>,
    /// Whether incoming gossip and messages must be sealed with a key of the keyring (default
    /// true); false during a migration from plain to encrypted ([`crate::NodeBuilder::verify_incoming`]).
    pub encrypt_verify_incoming: bool,
    /// Allows plain gossip on an address other than loopback (default false: such an agent
    /// without a keyring refuses to start).
    pub allow_plaintext: bool,
    /// Where every worker's output goes, as `<log_dir>/<worker>.log` (rotated per the worker's
    /// `log` setting; created at start if missing); `None` (the default): the agent's own log.
    pub log_dir: Option<PathBuf>,
    /// Restarts of all this node's workers together allowed within `period` before the
    /// supervisor gives up on every worker (each worker's own `max_restarts` applies first).
    pub max_restarts: u32,
    /// The period `max_restarts` counts over.
    pub period: Duration,
    /// What the agent does when its supervisor gives up.
    pub on_give_up: OnGiveUp,
    /// The cluster's expected size, for `quorum = true` singletons
    /// ([`NodeBuilder::expected_members`](crate::NodeBuilder::expected_members)); `None`: such
    /// workers do not run here, and say why.
    pub expected_nodes: Option<usize>,
    /// The writer the agent's own log goes through, if the binary set one up; its dropped
    /// lines are `herd_log_dropped_total` (absent without one).
    pub log_writer: Option<super::LogWriter>,
    /// How long a live member may hold a newer config than this node's before
    /// `GET /v1/health` reports this node unhealthy ([`super::health`]).
    pub health_config_lag: Duration,
    /// Programs run for this agent's events ([`super::handlers`]).
    pub handlers: Vec<crate::config::HandlerConfig>,
}

impl AgentSettings {
    /// Settings with every default, for node `node_id`.
    pub fn new(node_id: impl Into<String>) -> Self {
        AgentSettings {
            node_id: node_id.into(),
            listen: DEFAULT_AGENT_LISTEN.parse().expect("default listen parses"),
            advertise: None,
            seeds: Vec::new(),
            cluster_id: DEFAULT_CLUSTER_ID.to_string(),
            tags: BTreeMap::new(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            api: DEFAULT_API.parse().expect("default api parses"),
            api_token_file: None,
            api_hosts: Vec::new(),
            gossip_interval: DEFAULT_GOSSIP_INTERVAL,
            phi_threshold: DEFAULT_PHI_THRESHOLD,
            config_signers: Signers::default(),
            encrypt_key_file: None,
            encrypt_verify_incoming: true,
            allow_plaintext: false,
            log_dir: None,
            max_restarts: DEFAULT_NODE_MAX_RESTARTS,
            period: DEFAULT_NODE_PERIOD,
            on_give_up: OnGiveUp::Stay,
            expected_nodes: None,
            log_writer: None,
            handlers: Vec::new(),
            health_config_lag: super::health::DEFAULT_HEALTH_CONFIG_LAG,
        }
    }
}
