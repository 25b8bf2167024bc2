//! [`AgentError`]: why an agent could not start, or refused an operator's request. Each variant
//! names the value at fault; a refused request changed nothing.

use std::net::SocketAddr;

use crate::config::ConfigError;

/// An error from the agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The node could not start (seed, gossip address, node id).
    #[error(transparent)]
    Node(#[from] crate::Error),

    /// The data directory could not be opened or written.
    #[error("data directory: {0}")]
    Store(String),

    /// The workers' log directory (`log_dir`) could not be created.
    #[error("log directory {}: {source}", path.display())]
    LogDir {
        /// The directory asked for.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The HTTP API address could not be bound.
    #[error("cannot bind the HTTP API to {addr}: {source}")]
    ApiBind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The HTTP API would serve a non-loopback address without a token.
    #[error(
        "refusing to serve the HTTP API on {addr} without a token: an address other than \
         loopback needs --api-token-file PATH (agent file: api_token_file); a missing file is \
         created with a new token"
    )]
    ApiUnprotected {
        /// The API address asked for.
        addr: SocketAddr,
    },

    /// The API token file could not be read or created.
    #[error(transparent)]
    ApiToken(#[from] crate::api::TokenError),

    /// A name given with `--api-host` (agent file: `api_hosts`) is not a host.
    #[error("--api-host (agent file: api_hosts): {0}")]
    ApiHost(String),

    /// Gossip would be plain on an address other than loopback.
    #[error(
        "refusing to gossip in plaintext on {addr}: an address other than loopback needs a \
         cluster key, --encrypt-key-file PATH (agent file: encrypt_key_file; make one with \
         `herd keygen`), or --allow-plaintext (agent file: allow_plaintext) to run unencrypted"
    )]
    Plaintext {
        /// The listen or advertise address that is not loopback.
        addr: SocketAddr,
    },

    /// The key file or the data dir's keyring could not be read or written.
    #[error("{what}: {source}")]
    Keyring {
        /// Which file, and what it is for.
        what: String,
        /// What is wrong with it.
        #[source]
        source: crate::trust::KeyringError,
    },

    /// A key request on an agent that has no keyring.
    #[error("this node has no keyring: start its agent with --encrypt-key-file PATH to use cluster keys")]
    NoKeyring,

    /// A key change was refused; nothing changed.
    #[error("{0}")]
    Key(String),

    /// A pushed config was rejected; the running config is unchanged.
    #[error("config rejected: {0}")]
    Config(#[from] ConfigError),

    /// A push was based on a config version that is no longer the newest.
    #[error("config version {base} is stale: the cluster is at version {current}")]
    StaleVersion {
        /// The version the push was based on.
        base: u64,
        /// The newest version this node knows.
        current: u64,
    },

    /// A push was refused for its signature (unsigned where signers are required, a signature
    /// that does not verify, a key that is not a signer); nothing changed.
    #[error("config refused: {0}")]
    Refused(#[from] crate::config::Refusal),

    /// A signed push names a version the cluster is already at or past.
    #[error("the push is signed for version {version}, but the cluster is at version {current}: sign version {} (base version {current}) and push again", .current + 1)]
    SignedVersion {
        /// The version the push is signed for.
        version: u64,
        /// The newest version this node knows.
        current: u64,
    },

    /// No version is above the highest the cluster has: the push cannot be versioned; nothing
    /// changed.
    #[error("the cluster is at version {current}, the largest there is: no push can supersede it (start a new cluster, or remove every node's stored config)")]
    VersionOverflow {
        /// The newest version this node knows.
        current: u64,
    },

    /// A push arrived before this node caught up with any peer that answers it; nothing changed.
    #[error("not yet synced with the cluster: peers answer, but this node has not caught up with any of them after waiting {} ms; retry", .waited.as_millis())]
    NotSynced {
        /// How long the push waited.
        waited: std::time::Duration,
    },

    /// A worker action failed in the supervisor.
    #[error(transparent)]
    Worker(#[from] crate::supervisor::Error),

    /// A worker the config wants here could not be started.
    #[error("worker {worker:?} could not start: {reason}")]
    StartFailed {
        /// The worker's name.
        worker: String,
        /// Why.
        reason: String,
    },

    /// The agent is stopping or has stopped.
    #[error("the agent is shutting down")]
    ShuttingDown,
}
