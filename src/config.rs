//! The cluster config and the agent's own file: texts turned into validated settings.
//!
//! - [`ClusterConfig`] (cluster.rs): the cluster-wide TOML file of workers, and
//!   which of them a node runs given its tags.
//! - [`VersionedConfig`] (versioned.rs): a cluster config with its version,
//!   author, time and checksum; its text encoding for disk and gossip; which of
//!   two versions wins.
//! - [`signature`] (signature.rs): ed25519 config signers, what a signature
//!   binds (text, version, cluster id), and the check before a config is adopted.
//! - [`ConfigStore`] (store.rs): the last config on disk, written atomically;
//!   a corrupt file is set aside, never lost; the dir is private (0700, files 0600).
//! - [`AgentFile`] (agent_file.rs): the settings of one `herd agent`; its `[[handler]]`
//!   tables are [`HandlerConfig`]s (handler.rs).
//! - [`diff`] (diff.rs): what pushing a config would start, stop or replace on which nodes.
//! - [`ConfigError`] (error.rs): why a text was rejected, with its line and column.
//!
//! Everything here is pure parsing and validation, except the store and
//! [`AgentFile::load`], which read and write files.
//!
//! A cluster config (defaults shown where a key is optional):
//!
//! ```toml
//! [[worker]]
//! name = "thumbnailer"             # unique; letters, digits, . _ - (at most 64)
//! command = "python3"              # program to run, never through a shell
//! args = ["workers/thumbnailer.py"]
//! group = "media"                  # runs on nodes tagged group=media; omitted: every node
//! restart = "permanent"            # permanent | transient | temporary
//! max_restarts = 3                 # restarts tolerated within the period...
//! period = "5s"                    # ...before the worker is given up on
//! shutdown_timeout = "5s"          # between the stop signal and SIGKILL
//! protocol = "jsonl"               # optional; JSON-lines calls on stdin/stdout
//! events = true                    # optional, with jsonl: the agent's events on stdin
//! env = { LOG_LEVEL = "info" }
//! cwd = "/srv/app"                 # optional working directory
//! user = "media"                   # optional; run as this user (the agent must be root)
//! ```
//!
//! ```
//! use std::collections::BTreeMap;
//! use herd::config::ClusterConfig;
//!
//! let text = "[[worker]]\nname = \"resizer\"\ncommand = \"python3\"\ngroup = \"media\"\n";
//! let config = ClusterConfig::parse(text, "cluster.toml")?;
//! let tags = BTreeMap::from([("group".to_string(), "media,gpu".to_string())]);
//! assert_eq!(config.workers_for(&tags).count(), 1);
//!
//! let err = ClusterConfig::parse("[[worker]]\nname = \"resizer\"\n", "cluster.toml").unwrap_err();
//! assert_eq!(err.to_string(), "cluster.toml:1:1: worker \"resizer\": missing field \"command\"");
//! # Ok::<(), herd::config::ConfigError>(())
//! ```

mod agent_file;
mod cluster;
mod diff;
mod error;
mod handler;
pub mod signature;
pub(crate) mod store;
mod toml_read;
mod versioned;

pub use agent_file::{AgentFile, OnGiveUp, EXIT_GAVE_UP};
pub use cluster::{
    groups_of, is_valid_name, ClusterConfig, Placement, Protocol, WorkerConfig,
    DEFAULT_MAX_RESTARTS, DEFAULT_PERIOD, DEFAULT_SHUTDOWN_TIMEOUT, GROUP_TAG, MAX_INSTANCES,
    MAX_NAME_LEN,
};
pub use cluster::{parse_size, LogConfig, MAX_LOG_KEEP};
pub use diff::{diff, Change, ChangeKind};
pub use error::{ConfigError, Scope};
pub use handler::{HandlerConfig, HandlerFormat, DEFAULT_HANDLER_TIMEOUT, MAX_HANDLERS};
pub use signature::{ConfigSignature, PublicKey, Refusal, SecretKey, Signers};
pub(crate) use store::replace_file;
pub use store::{ConfigStore, Loaded, StoreError, DIR_MODE, FILE_MODE, STORE_FILE};
pub use versioned::{ConfigId, DecodeError, VersionedConfig, ENCODING_FORMAT, PUSHED_ORIGIN};
