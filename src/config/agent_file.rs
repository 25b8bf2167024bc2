//! [`AgentFile`]: the settings of one `herd agent`, read from `--config herd.toml`.
//!
//! `config_signers` lists the public keys (base64, from `herd keygen --signing`)
//! whose signed configs the agent adopts; a key that is not one is rejected with
//! its line and column. Every setting is optional here; the agent applies its flags over the file and
//! its defaults over both. Keys are snake_case; unknown keys are rejected with
//! their line and column.
//!
//! ```toml
//! node_id = "media-1"
//! listen = "0.0.0.0:7946"
//! advertise = "10.0.0.5:7946"
//! seeds = ["10.0.0.2:7946", "herd-0.herd:7946"]
//! cluster_id = "prod"
//! data_dir = "/var/lib/herd"
//! api = "127.0.0.1:7947"
//! config_signers = ["KWsU83rYF88mLpLoQ5E5fAbfFFJB9FqdvAzpuuQFxyU="]
//! api_token_file = "/etc/herd/api-token"
//! api_hosts = ["herd-1.example.com"]
//! encrypt_key_file = "/etc/herd/cluster-key"
//! encrypt_verify_incoming = true
//! allow_plaintext = false
//! log_dir = "/var/log/herd"
//! max_restarts = 100      # all this node's workers' restarts together, within period
//! period = "60s"
//! on_give_up = "stay"     # or "exit": leave gracefully, exit 75 for systemd/Kubernetes
//! log_level = "info"      # like HERD_LOG; applied again at SIGHUP
//! expected_nodes = 5      # the cluster's size, for quorum = true singletons
//! health_config_lag = "1m"  # /v1/health is 503 once a member's newer config waits this long
//!
//! [tags]
//! group = "media,gpu"
//!
//! [[handler]]                # run for each matching event; see HandlerConfig
//! events = ["member-failed"]
//! command = "/usr/local/bin/page-oncall"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::{ConfigError, Scope};
use super::handler::{read_handlers, HandlerConfig};
use super::signature::PublicKey;
use super::toml_read::{Source, Table};

const KEYS: &[&str] = &[
    "node_id",
    "listen",
    "advertise",
    "seeds",
    "cluster_id",
    "tags",
    "data_dir",
    "api",
    "config_signers",
    "api_token_file",
    "api_hosts",
    "encrypt_key_file",
    "encrypt_verify_incoming",
    "allow_plaintext",
    "log_dir",
    "max_restarts",
    "period",
    "on_give_up",
    "log_level",
    "expected_nodes",
    "health_config_lag",
    "handler",
];

/// The contents of an agent file; `None` or empty where the file says nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AgentFile {
    /// This node's id.
    pub node_id: Option<String>,
    /// Gossip address to bind.
    pub listen: Option<SocketAddr>,
    /// Gossip address other nodes should use to reach this one.
    pub advertise: Option<SocketAddr>,
    /// Addresses (`host:port`, host names allowed) of nodes to join through.
    pub seeds: Vec<String>,
    /// Cluster id; nodes of other clusters are ignored.
    pub cluster_id: Option<String>,
    /// This node's tags (`group` lists its groups, comma-separated).
    pub tags: BTreeMap<String, String>,
    /// Where the last cluster config is kept.
    pub data_dir: Option<PathBuf>,
    /// HTTP API address to bind.
    pub api: Option<SocketAddr>,
    /// Public keys (base64) whose signed configs the agent adopts; empty: any config.
    pub config_signers: Vec<PublicKey>,
    /// The API's bearer token file (`--api-token-file`).
    pub api_token_file: Option<PathBuf>,
    /// More names the API answers to (`--api-host`).
    pub api_hosts: Vec<String>,
    /// The cluster key file (`--encrypt-key-file`).
    pub encrypt_key_file: Option<PathBuf>,
    /// Whether incoming gossip must be sealed (`--encrypt-verify-incoming`).
    pub encrypt_verify_incoming: Option<bool>,
    /// Allows plain gossip off loopback (`--allow-plaintext`).
    pub allow_plaintext: Option<bool>,
    /// Where workers' output goes, `<log_dir>/<worker>.log` (`--log-dir`).
    pub log_dir: Option<PathBuf>,
    /// Restarts of all this node's workers together allowed within `period` before the
    /// agent's supervisor gives up (`--max-restarts`).
    pub max_restarts: Option<u32>,
    /// The period `max_restarts` counts over (`--restart-period`), like "60s".
    #[serde(with = "humantime_serde_opt")]
    pub period: Option<std::time::Duration>,
    /// What the agent does when its supervisor gives up (`--on-give-up`).
    pub on_give_up: Option<OnGiveUp>,
    /// The agent's log filter, like `HERD_LOG` ("info", "herd=debug,warn"); applied at start
    /// when `HERD_LOG` is not set, and again at each SIGHUP.
    pub log_level: Option<String>,
    /// The cluster's expected size (`--expected-nodes`): a worker with `quorum = true` runs
    /// only on a node that sees a majority of it.
    pub expected_nodes: Option<u32>,
    /// How long a live member may hold a newer config than this node's before the node's
    /// health is 503 (`--health-config-lag`), like "1m".
    #[serde(with = "humantime_serde_opt")]
    pub health_config_lag: Option<std::time::Duration>,
    /// Programs run for the agent's events (`[[handler]]`, see [`HandlerConfig`]).
    pub handlers: Vec<HandlerConfig>,
}

/// What an agent does when its supervisor gives up (restarts over `max_restarts` in `period`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnGiveUp {
    /// Stay in the cluster; the failed workers show in status, metrics and the log, and an
    /// operator's start brings each back.
    #[default]
    Stay,
    /// Leave the cluster gracefully and exit with [`EXIT_GAVE_UP`], for systemd
    /// (`Restart=on-failure`) or Kubernetes to start the agent afresh.
    Exit,
}

/// The exit code of `herd agent` after its supervisor gave up with `on_give_up = "exit"`.
pub const EXIT_GAVE_UP: u8 = 75;

impl std::str::FromStr for OnGiveUp {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "stay" => Ok(OnGiveUp::Stay),
            "exit" => Ok(OnGiveUp::Exit),
            other => Err(format!("{other:?} is not \"stay\" or \"exit\"")),
        }
    }
}

mod humantime_serde_opt {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }
}

impl AgentFile {
    /// Parses an agent file; `origin` names it in errors. An empty text is valid.
    pub fn parse(text: &str, origin: &str) -> Result<AgentFile, ConfigError> {
        let src = Source::new(text, origin);
        let root = src.parse()?;
        let t = Table::new(src, &root, 0, Scope::File);
        t.deny_unknown(KEYS)?;
        let address = "address (expected IP:PORT, like 127.0.0.1:7946)";
        let mut file = AgentFile {
            node_id: t.string("node_id")?,
            listen: t.parsed("listen", address)?,
            advertise: t.parsed("advertise", address)?,
            seeds: t.strings("seeds")?,
            cluster_id: t.string("cluster_id")?,
            tags: t.string_map("tags")?,
            data_dir: t.string("data_dir")?.map(PathBuf::from),
            api: t.parsed("api", address)?,
            config_signers: Vec::new(),
            api_token_file: t.string("api_token_file")?.map(PathBuf::from),
            api_hosts: t.strings("api_hosts")?,
            encrypt_key_file: t.string("encrypt_key_file")?.map(PathBuf::from),
            encrypt_verify_incoming: t.bool("encrypt_verify_incoming")?,
            allow_plaintext: t.bool("allow_plaintext")?,
            log_dir: t.string("log_dir")?.map(PathBuf::from),
            max_restarts: t.u32("max_restarts")?,
            period: t.duration("period")?,
            on_give_up: match t.string("on_give_up")? {
                Some(text) => Some(
                    text.parse()
                        .map_err(|e: String| t.invalid("on_give_up", e))?,
                ),
                None => None,
            },
            log_level: t.string("log_level")?,
            expected_nodes: t.u32("expected_nodes")?,
            health_config_lag: t.duration("health_config_lag")?,
            handlers: read_handlers(src, &t)?,
        };
        if file.expected_nodes == Some(0) {
            return Err(t.invalid("expected_nodes", "must be at least 1"));
        }
        if file.health_config_lag.is_some_and(|p| p.is_zero()) {
            return Err(t.invalid("health_config_lag", "must be longer than zero"));
        }
        if file.period.is_some_and(|p| p.is_zero()) {
            return Err(t.invalid("period", "must be longer than zero"));
        }
        if let Some(level) = &file.log_level {
            if let Err(err) = tracing_subscriber::EnvFilter::try_new(level) {
                return Err(t.invalid("log_level", format!("{level:?} is not a log filter: {err}")));
            }
        }
        for key in t.strings("config_signers")? {
            let key = PublicKey::parse(&key)
                .map_err(|err| t.invalid("config_signers", err.to_string()))?;
            file.config_signers.push(key);
        }
        for (field, value) in [("node_id", &file.node_id), ("cluster_id", &file.cluster_id)] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(t.invalid(field, "must not be empty"));
            }
        }
        if file.seeds.iter().any(|seed| seed.trim().is_empty()) {
            return Err(t.invalid("seeds", "a seed must not be empty"));
        }
        if file
            .data_dir
            .as_ref()
            .is_some_and(|dir| dir.as_os_str().is_empty())
        {
            return Err(t.invalid("data_dir", "must not be empty"));
        }
        if file
            .api_token_file
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return Err(t.invalid("api_token_file", "must not be empty"));
        }
        if file
            .encrypt_key_file
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return Err(t.invalid("encrypt_key_file", "must not be empty"));
        }
        if file
            .log_dir
            .as_ref()
            .is_some_and(|dir| dir.as_os_str().is_empty())
        {
            return Err(t.invalid("log_dir", "must not be empty"));
        }
        if file.api_hosts.iter().any(|host| host.trim().is_empty()) {
            return Err(t.invalid("api_hosts", "a host must not be empty"));
        }
        Ok(file)
    }

    /// Reads and parses the agent file at `path`; errors name the path.
    pub fn load(path: impl AsRef<Path>) -> Result<AgentFile, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        AgentFile::parse(&text, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
node_id = "media-1"
listen = "0.0.0.0:7946"
advertise = "10.0.0.5:7946"
seeds = ["10.0.0.2:7946", "herd-0.herd:7946"]
cluster_id = "prod"
data_dir = "/var/lib/herd"
api = "127.0.0.1:7947"
api_token_file = "/etc/herd/api-token"
api_hosts = ["herd-1.example.com", "10.0.0.5:7947"]
encrypt_key_file = "/etc/herd/cluster-key"
encrypt_verify_incoming = false
allow_plaintext = true
log_dir = "/var/log/herd"
max_restarts = 50
period = "30s"
on_give_up = "exit"
log_level = "herd=debug,warn"

[tags]
group = "media,gpu"
zone = "eu-1"
"#;

    fn error(text: &str) -> String {
        AgentFile::parse(text, "herd.toml").unwrap_err().to_string()
    }

    #[test]
    fn every_setting_is_read() {
        let file = AgentFile::parse(FULL, "herd.toml").unwrap();
        assert_eq!(file.node_id.as_deref(), Some("media-1"));
        assert_eq!(file.listen, Some("0.0.0.0:7946".parse().unwrap()));
        assert_eq!(file.advertise, Some("10.0.0.5:7946".parse().unwrap()));
        assert_eq!(file.seeds, ["10.0.0.2:7946", "herd-0.herd:7946"]);
        assert_eq!(file.cluster_id.as_deref(), Some("prod"));
        assert_eq!(file.data_dir, Some(PathBuf::from("/var/lib/herd")));
        assert_eq!(file.api, Some("127.0.0.1:7947".parse().unwrap()));
        assert_eq!(
            file.api_token_file,
            Some(PathBuf::from("/etc/herd/api-token"))
        );
        assert_eq!(file.api_hosts, ["herd-1.example.com", "10.0.0.5:7947"]);
        assert_eq!(file.tags["group"], "media,gpu");
        assert_eq!(file.tags["zone"], "eu-1");
        assert_eq!(
            file.encrypt_key_file,
            Some(PathBuf::from("/etc/herd/cluster-key"))
        );
        assert_eq!(file.encrypt_verify_incoming, Some(false));
        assert_eq!(file.allow_plaintext, Some(true));
        assert_eq!(file.log_dir, Some(PathBuf::from("/var/log/herd")));
        assert!(error("log_dir = \"\"\n").contains("log_dir"));
        assert_eq!(file.max_restarts, Some(50));
        assert_eq!(file.period, Some(std::time::Duration::from_secs(30)));
        assert_eq!(file.on_give_up, Some(OnGiveUp::Exit));
        assert_eq!(file.log_level.as_deref(), Some("herd=debug,warn"));
        assert!(error("on_give_up = \"later\"\n").contains("on_give_up"));
        assert!(error("period = \"0s\"\n").contains("period"));
        assert!(error("log_level = \"herd=loud\"\n").contains("log_level"));
        assert!(error("allow_plaintext = \"yes\"\n").contains("expected true or false"));
    }

    #[test]
    fn an_empty_file_sets_nothing() {
        assert_eq!(
            AgentFile::parse("", "herd.toml").unwrap(),
            AgentFile::default()
        );
    }

    #[test]
    fn an_unknown_key_is_rejected_with_its_line_and_column() {
        assert_eq!(
            error("node_id = \"a\"\ndata-dir = \"/x\"\n"),
            "herd.toml:2:1: unknown field \"data-dir\"; expected one of node_id, listen, \
             advertise, seeds, cluster_id, tags, data_dir, api, config_signers, api_token_file, api_hosts, \
             encrypt_key_file, encrypt_verify_incoming, allow_plaintext, log_dir, max_restarts, \
             period, on_give_up, log_level, expected_nodes, health_config_lag, handler"
        );
    }

    #[test]
    fn an_invalid_address_is_quoted() {
        let err = error("\nlisten = \"localhost\"\n");
        assert!(
            err.starts_with("herd.toml:2:10: field \"listen\": invalid address"),
            "{err}"
        );
        assert!(err.contains("\"localhost\""), "{err}");
    }

    #[test]
    fn tags_must_be_strings() {
        let err = error("[tags]\nweight = 3\n");
        assert_eq!(
            err,
            "herd.toml:2:10: field \"tags.weight\": expected a string, found integer 3"
        );
    }

    #[test]
    fn seeds_must_be_a_list_of_non_empty_strings() {
        assert!(error("seeds = \"a:1\"\n").contains("expected an array of strings"));
        assert!(error("seeds = [\"\"]\n").contains("a seed must not be empty"));
    }

    #[test]
    fn api_hosts_and_the_token_file_must_not_be_empty() {
        assert!(error("api_hosts = [\" \"]\n").contains("a host must not be empty"));
        assert!(error("api_token_file = \"\"\n").contains("api_token_file"));
    }

    #[test]
    fn a_syntax_error_has_its_line_and_column() {
        assert!(error("node_id = \n").starts_with("herd.toml:1:11: "));
    }

    #[test]
    fn config_signers_are_public_keys_and_a_bad_one_is_named() {
        let key = crate::config::SecretKey::generate().public();
        let file = AgentFile::parse(&format!("config_signers = [\"{key}\"]\n"), "herd.toml");
        assert_eq!(file.unwrap().config_signers, [key]);
        let err = error(&format!("config_signers = [\"{key}\", \"AAAA\"]\n"));
        assert_eq!(
            err,
            "herd.toml:1:18: field \"config_signers\": public key \"AAAA\" is 3 bytes, expected 32"
        );
    }

    #[test]
    fn loading_a_missing_file_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herd.toml");
        let err = AgentFile::load(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_loaded_file_names_its_path_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herd.toml");
        std::fs::write(&path, "api = 7947\n").unwrap();
        let err = AgentFile::load(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:1:7: ", path.display())),
            "{err}"
        );
        std::fs::write(&path, FULL).unwrap();
        assert_eq!(
            AgentFile::load(&path).unwrap().node_id.as_deref(),
            Some("media-1")
        );
    }
}
