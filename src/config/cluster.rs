//! The cluster config file: which workers run, how, and on which groups of nodes.
//!
//! [`ClusterConfig::parse`] turns the TOML text into validated [`WorkerConfig`]s
//! or a [`ConfigError`] naming the line, column, worker and field at fault.
//! [`WorkerConfig::runs_on`] decides from a node's tags whether it runs a worker.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::de::DeValue;

use super::error::{ConfigError, Scope};
use super::toml_read::{Source, Table};
use crate::supervisor::{user, Readiness, Restart, WorkerSpec};

/// Restarts allowed within [`DEFAULT_PERIOD`] before a worker is given up on.
pub const DEFAULT_MAX_RESTARTS: u32 = 3;
/// Period over which restarts are counted.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(5);
/// Time a worker gets between the stop signal and SIGKILL.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = crate::supervisor::DEFAULT_SHUTDOWN_TIMEOUT;
/// Time a worker with `ready` gets to become ready.
pub const DEFAULT_READY_TIMEOUT: Duration = crate::supervisor::DEFAULT_READY_TIMEOUT;
/// Longest worker (and group) name.
pub const MAX_NAME_LEN: usize = 64;
/// The node tag that lists the groups a node belongs to, comma-separated.
pub const GROUP_TAG: &str = "group";

const TOP_KEYS: &[&str] = &["worker"];
const WORKER_KEYS: &[&str] = &[
    "name",
    "command",
    "args",
    "group",
    "restart",
    "max_restarts",
    "period",
    "shutdown_timeout",
    "protocol",
    "env",
    "cwd",
    "user",
    "log",
    "ready",
    "ready_timeout",
    "placement",
    "quorum",
    "events",
];
const PLACEMENT_KEYS: &[&str] = &["instances"];
/// Most instances a worker may be placed on.
pub const MAX_INSTANCES: u32 = 1000;
const LOG_KEYS: &[&str] = &["max_size", "keep"];
/// Most rotated log files a worker may keep.
pub const MAX_LOG_KEEP: u32 = 1000;
const READY_KEYS: &[&str] = &["tcp", "jsonl", "after"];

/// The whole cluster's workers, as validated from the cluster config file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Every worker, in file order; names are unique.
    pub workers: Vec<WorkerConfig>,
}

/// One `[[worker]]` of the cluster config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// Unique name: 1 to 64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
    pub name: String,
    /// Program to execute (a path, or a name looked up in `PATH`); never a shell line.
    pub command: String,
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// The group whose nodes run the worker; every node when `None`.
    pub group: Option<String>,
    /// When the worker is restarted after it ends.
    pub restart: Restart,
    /// Restarts tolerated within [`period`](Self::period).
    pub max_restarts: u32,
    /// Period over which restarts are counted; never zero.
    #[serde(with = "human_duration")]
    pub period: Duration,
    /// Time between the stop signal and SIGKILL.
    #[serde(with = "human_duration")]
    pub shutdown_timeout: Duration,
    /// The call protocol the worker speaks on stdin/stdout, if any.
    pub protocol: Option<Protocol>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Working directory; the agent's own when `None`.
    pub cwd: Option<PathBuf>,
    /// The user the worker runs as (a name, looked up on each node when the
    /// worker starts); the agent's own when `None`. Another user than the
    /// agent's needs the agent to run as root (see
    /// [`WorkerSpec::user`](crate::supervisor::WorkerSpec::user)).
    #[serde(default)]
    pub user: Option<String>,
    /// How its log file is rotated, when the agent has a `log_dir`.
    #[serde(default)]
    pub log: LogConfig,
    /// How the worker shows it is ready: `ready = { tcp = "127.0.0.1:8080" }`
    /// (the port accepts a connection), `ready = { jsonl = true }` (it writes
    /// `{"ready": true}` on stdout; only with `protocol = "jsonl"`) or
    /// `ready = { after = "2s" }` (it is still running after that long);
    /// ready at exec when `None` (see
    /// [`WorkerSpec::ready`](crate::supervisor::WorkerSpec::ready)).
    #[serde(default)]
    pub ready: Option<Readiness>,
    /// How long the worker gets to become ready (`ready_timeout = "30s"`,
    /// the default; only with `ready`; never zero, and longer than `after`).
    /// Not ready in time: its group is killed and the start counts as a crash.
    #[serde(with = "human_duration", default = "default_ready_timeout")]
    pub ready_timeout: Duration,
    /// Where in the cluster the worker runs: on every node of its group (`"each"`, the
    /// default), on one of them (`"one"`), or on `k` of them (`{ instances = k }`).
    #[serde(default)]
    pub placement: Placement,
    /// With `placement = "one"`: the singleton runs only on a node that sees a majority of the
    /// agents' `expected_nodes` (see [`crate::names`]).
    #[serde(default)]
    pub quorum: bool,
    /// With `protocol = "jsonl"`: the worker gets each event of its agent
    /// ([`crate::agent::events`]) on stdin as the line `{"event": {...}}`.
    #[serde(default)]
    pub events: bool,
}

/// A worker's `placement`: which of the nodes of its group run it. The nodes are chosen by
/// rendezvous hashing of (worker name, node id) over the group's live agents
/// ([`crate::placement`]), so a join or a leave moves only the workers it must.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Every node of the group runs it.
    #[default]
    Each,
    /// One node of the group runs it: the one that holds the global name
    /// `herd.placed/<worker>`, claimed by the node of highest weight.
    One,
    /// The `k` nodes of the group with the highest weights run it.
    Instances(u32),
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::Each => f.write_str("each"),
            Placement::One => f.write_str("one"),
            Placement::Instances(k) => write!(f, "instances={k}"),
        }
    }
}

/// A worker's `log = { max_size = "10MB", keep = 5 }`: used when the agent has a `log_dir`,
/// where the worker's output goes to `<log_dir>/<name>.log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// Bytes the file may reach before it is rotated ("10MB", "512KB", "1GB" with 1 KB = 1024
    /// bytes, or a plain number of bytes); more than zero. Default 10 MB.
    pub max_size: u64,
    /// Rotated files kept (`<name>.log.1` is the newest), 0 to [`MAX_LOG_KEEP`]. Default 5.
    pub keep: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_size: crate::supervisor::DEFAULT_LOG_MAX_SIZE,
            keep: crate::supervisor::DEFAULT_LOG_KEEP,
        }
    }
}

/// Parses a size: digits, then optionally `B`, `KB`, `MB` or `GB` (or `KiB`, `MiB`, `GiB`;
/// powers of 1024 either way, any case, spaces allowed before the unit).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kb" | "kib" | "k" => 10,
        "mb" | "mib" | "m" => 20,
        "gb" | "gib" | "g" => 30,
        other => return Err(format!("unknown unit {other:?}; expected B, KB, MB or GB")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

fn default_ready_timeout() -> Duration {
    DEFAULT_READY_TIMEOUT
}

/// A call protocol a worker can speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// One JSON object per line on stdin and stdout.
    Jsonl,
}

impl ClusterConfig {
    /// Parses and validates a cluster config; `origin` names the text in errors
    /// (a file path, or "pushed config"). A text without workers is valid.
    pub fn parse(text: &str, origin: &str) -> Result<ClusterConfig, ConfigError> {
        let src = Source::new(text, origin);
        let root = src.parse()?;
        let top = Table::new(src, &root, 0, Scope::File);
        top.deny_unknown(TOP_KEYS)?;
        let Some(list) = top.get("worker") else {
            return Ok(ClusterConfig::default());
        };
        let Some(items) = list.get_ref().as_array() else {
            return Err(top.invalid("worker", "expected [[worker]] tables"));
        };
        let mut workers = Vec::with_capacity(items.len());
        let mut first_use: HashMap<String, usize> = HashMap::new();
        for (index, item) in items.iter().enumerate() {
            let number = index + 1;
            let DeValue::Table(entries) = item.get_ref() else {
                let table = Table::new(src, &root, item.span().start, Scope::WorkerNumber(number));
                return Err(table.invalid("worker", "expected a table for each worker"));
            };
            let mut table =
                Table::new(src, entries, item.span().start, Scope::WorkerNumber(number));
            let worker = read_worker(&mut table)?;
            let name_at = table
                .get("name")
                .map_or(item.span().start, |v| v.span().start);
            if let Some(first_at) = first_use.insert(worker.name.clone(), name_at) {
                let (line, column) = src.line_column(name_at);
                return Err(ConfigError::DuplicateWorker {
                    origin: src.origin(),
                    line,
                    column,
                    name: worker.name,
                    first_line: src.line_column(first_at).0,
                });
            }
            workers.push(worker);
        }
        Ok(ClusterConfig { workers })
    }

    /// The workers a node with these tags runs, in file order.
    pub fn workers_for<'a>(
        &'a self,
        tags: &BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a WorkerConfig> + 'a {
        let node_groups: Vec<String> = groups_of(tags).map(str::to_owned).collect();
        self.workers.iter().filter(move |worker| {
            selects(
                worker.group.as_deref(),
                node_groups.iter().map(String::as_str),
            )
        })
    }

    /// The worker with this name.
    pub fn worker(&self, name: &str) -> Option<&WorkerConfig> {
        self.workers.iter().find(|worker| worker.name == name)
    }
}

impl WorkerConfig {
    /// Whether a node with these tags runs this worker: always without a group,
    /// otherwise when the node's `group` tag lists the group.
    pub fn runs_on(&self, tags: &BTreeMap<String, String>) -> bool {
        selects(self.group.as_deref(), groups_of(tags))
    }

    /// The supervisor's spec: name, program, args, env, working directory,
    /// user, restart type, shutdown timeout, protocol, readiness and ready
    /// timeout. Restart intensity (`max_restarts` within `period`) is left
    /// to the caller.
    pub fn to_spec(&self) -> WorkerSpec {
        let mut spec = WorkerSpec::new(&self.name, &self.command)
            .args(self.args.iter().cloned())
            .restart(self.restart)
            .shutdown_timeout(self.shutdown_timeout)
            .ready_timeout(self.ready_timeout);
        if let Some(ready) = self.ready {
            spec = spec.ready(ready);
        }
        for (key, value) in &self.env {
            spec = spec.env(key, value);
        }
        if let Some(dir) = &self.cwd {
            spec = spec.current_dir(dir);
        }
        if let Some(user) = &self.user {
            spec = spec.user(user);
        }
        match self.protocol {
            Some(Protocol::Jsonl) => spec.jsonl(),
            None => spec,
        }
    }
}

/// The groups a node belongs to: its `group` tag split on commas, trimmed, blanks dropped.
pub fn groups_of(tags: &BTreeMap<String, String>) -> impl Iterator<Item = &str> {
    tags.get(GROUP_TAG)
        .into_iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|group| !group.is_empty())
}

/// Whether a worker of `group` runs on a node of `node_groups`.
fn selects<'g>(group: Option<&str>, mut node_groups: impl Iterator<Item = &'g str>) -> bool {
    group.is_none_or(|group| node_groups.any(|g| g == group))
}

/// Whether `name` can name a worker or group: 1 to 64 of `A-Z a-z 0-9 . _ -`,
/// starting with a letter or digit (so it is safe in a URL path and is never
/// taken for a command-line flag).
pub fn is_valid_name(name: &str) -> bool {
    name_problem(name).is_none()
}

pub(super) fn name_problem(name: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() {
        Some("must not be empty".into())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!(
            "{name:?} is {} characters long; at most {MAX_NAME_LEN} are allowed",
            name.chars().count()
        ))
    } else if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
        Some(format!(
            "{name:?} contains {bad:?}; only letters, digits, '.', '_' and '-' are allowed"
        ))
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some(format!("{name:?} must start with a letter or a digit"))
    } else {
        None
    }
}

fn no_nul(table: &Table<'_, '_>, field: &str, value: &str) -> Result<(), ConfigError> {
    if value.contains('\0') {
        return Err(table.invalid(field, format!("{value:?} contains a NUL character")));
    }
    Ok(())
}

/// Reads `command` (required, not blank) and `args`, neither holding a NUL.
pub(super) fn read_argv(t: &Table<'_, '_>) -> Result<(String, Vec<String>), ConfigError> {
    let command = t.required_string("command")?;
    if command.trim().is_empty() {
        return Err(t.invalid("command", "must not be empty"));
    }
    no_nul(t, "command", &command)?;
    let args = t.strings("args")?;
    for arg in &args {
        no_nul(t, "args", arg)?;
    }
    Ok((command, args))
}

/// Reads one `[[worker]]` table, naming it in errors once its name is known.
fn read_worker(t: &mut Table<'_, '_>) -> Result<WorkerConfig, ConfigError> {
    let name = t.required_string("name")?;
    if let Some(problem) = name_problem(&name) {
        return Err(t.invalid("name", problem));
    }
    t.set_scope(Scope::Worker(name.clone()));
    t.deny_unknown(WORKER_KEYS)?;

    let (command, args) = read_argv(t)?;
    let group = t.string("group")?;
    if let Some(problem) = group.as_deref().and_then(name_problem) {
        return Err(t.invalid("group", problem));
    }
    let restart = match t.string("restart")?.as_deref() {
        None | Some("permanent") => Restart::Permanent,
        Some("transient") => Restart::Transient,
        Some("temporary") => Restart::Temporary,
        Some(other) => {
            let message =
                format!("unknown restart {other:?}; expected permanent, transient or temporary");
            return Err(t.invalid("restart", message));
        }
    };
    let max_restarts = t.u32("max_restarts")?.unwrap_or(DEFAULT_MAX_RESTARTS);
    let period = t.duration("period")?.unwrap_or(DEFAULT_PERIOD);
    if period.is_zero() {
        return Err(t.invalid("period", "must be longer than zero"));
    }
    let shutdown_timeout = t
        .duration("shutdown_timeout")?
        .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);
    let protocol = match t.string("protocol")?.as_deref() {
        None => None,
        Some("jsonl") => Some(Protocol::Jsonl),
        Some(other) => {
            let message = format!("unknown protocol {other:?}; expected jsonl");
            return Err(t.invalid("protocol", message));
        }
    };
    let env = t.string_map("env")?;
    for (key, value) in &env {
        if key.is_empty() || key.contains(['=', '\0']) {
            let message = format!("invalid variable name {key:?} (empty, or contains '=' or NUL)");
            return Err(t.invalid("env", message));
        }
        no_nul(t, &format!("env.{key}"), value)?;
    }
    let cwd = t.string("cwd")?;
    if cwd.as_deref().is_some_and(|dir| dir.trim().is_empty()) {
        return Err(t.invalid("cwd", "must not be empty"));
    }
    let user = t.string("user")?;
    if let Some(problem) = user.as_deref().and_then(user::name_problem) {
        return Err(t.invalid("user", problem));
    }
    let log = t
        .table("log")?
        .map_or(Ok(LogConfig::default()), |log| read_log(&log))?;
    let (ready, ready_timeout) = read_ready(t, protocol)?;
    let placement = read_placement(t)?;
    let quorum = t.bool("quorum")?.unwrap_or(false);
    if quorum && placement != Placement::One {
        return Err(t.invalid("quorum", r#"needs placement = "one""#));
    }
    let events = t.bool("events")?.unwrap_or(false);
    if events && protocol != Some(Protocol::Jsonl) {
        return Err(t.invalid("events", r#"needs protocol = "jsonl""#));
    }
    Ok(WorkerConfig {
        placement,
        quorum,
        events,
        log,
        name,
        command,
        args,
        group,
        restart,
        max_restarts,
        period,
        shutdown_timeout,
        protocol,
        env,
        cwd: cwd.map(PathBuf::from),
        user,
        ready,
        ready_timeout,
    })
}

/// Reads `placement = "each" | "one" | { instances = k }`.
fn read_placement(t: &Table<'_, '_>) -> Result<Placement, ConfigError> {
    const EXPECTED: &str = r#"expected "each", "one" or { instances = k }"#;
    let Some(value) = t.get("placement") else {
        return Ok(Placement::Each);
    };
    if let DeValue::String(text) = value.get_ref() {
        return match text.as_ref() {
            "each" => Ok(Placement::Each),
            "one" => Ok(Placement::One),
            other => Err(t.invalid(
                "placement",
                format!("unknown placement {other:?}; {EXPECTED}"),
            )),
        };
    }
    let Some(p) = t.table("placement")? else {
        return Ok(Placement::Each);
    };
    p.deny_unknown(PLACEMENT_KEYS)?;
    match p.u32("instances")? {
        Some(k) if (1..=MAX_INSTANCES).contains(&k) => Ok(Placement::Instances(k)),
        Some(_) => Err(p.invalid("instances", format!("must be 1 to {MAX_INSTANCES}"))),
        None => Err(t.invalid("placement", EXPECTED)),
    }
}

/// Reads a worker's `log` table.
fn read_log(t: &Table<'_, '_>) -> Result<LogConfig, ConfigError> {
    t.deny_unknown(LOG_KEYS)?;
    let mut log = LogConfig::default();
    if let Some(value) = t.get("max_size") {
        let expected = "a size like \"10MB\", \"512KB\" or a number of bytes";
        let size = match value.get_ref() {
            DeValue::String(text) => parse_size(text),
            DeValue::Integer(int) => u64::from_str_radix(int.as_str(), int.radix())
                .map_err(|_| format!("{} is not a number of bytes", int.as_str())),
            _ => Err(format!("expected {expected}")),
        };
        log.max_size = size.map_err(|message| t.invalid("max_size", message))?;
        if log.max_size == 0 {
            return Err(t.invalid("max_size", "must be more than zero"));
        }
    }
    if let Some(keep) = t.u32("keep")? {
        if keep > MAX_LOG_KEEP {
            return Err(t.invalid("keep", format!("at most {MAX_LOG_KEEP} files may be kept")));
        }
        log.keep = keep;
    }
    Ok(log)
}

/// Reads `ready = { tcp = "ADDR" | jsonl = true | after = "DURATION" }` and
/// `ready_timeout`.
fn read_ready(
    t: &Table<'_, '_>,
    protocol: Option<Protocol>,
) -> Result<(Option<Readiness>, Duration), ConfigError> {
    let timeout = t.duration("ready_timeout")?;
    if timeout.is_some_and(|d| d.is_zero()) {
        return Err(t.invalid("ready_timeout", "must be longer than zero"));
    }
    let Some(r) = t.table("ready")? else {
        if timeout.is_some() {
            return Err(t.invalid("ready_timeout", "needs ready (a readiness check to time)"));
        }
        return Ok((None, DEFAULT_READY_TIMEOUT));
    };
    let timeout = timeout.unwrap_or(DEFAULT_READY_TIMEOUT);
    r.deny_unknown(READY_KEYS)?;
    let keys = r.keys();
    let [key] = keys.as_slice() else {
        return Err(t.invalid(
            "ready",
            r#"expected exactly one of tcp, jsonl or after, like ready = { tcp = "127.0.0.1:8080" }, { jsonl = true } or { after = "2s" }"#,
        ));
    };
    let ready = match key.as_str() {
        "tcp" => {
            let addr = r.parsed::<SocketAddr>(
                "tcp",
                "address (an IP address and port, like 127.0.0.1:8080)",
            )?;
            Readiness::Tcp(addr.expect("the key is present"))
        }
        "jsonl" => {
            if r.bool("jsonl")? != Some(true) {
                return Err(r.invalid("jsonl", "must be true (or leave ready out)"));
            }
            if protocol != Some(Protocol::Jsonl) {
                return Err(r.invalid(
                    "jsonl",
                    r#"needs protocol = "jsonl": the worker says it is ready with {"ready": true} on stdout"#,
                ));
            }
            Readiness::Jsonl
        }
        _ => {
            let after = r.duration("after")?.expect("the key is present");
            if after.is_zero() {
                return Err(r.invalid("after", "must be longer than zero"));
            }
            if after >= timeout {
                let message = format!(
                    "must be shorter than ready_timeout ({})",
                    humantime::format_duration(timeout)
                );
                return Err(r.invalid("after", message));
            }
            Readiness::After(after)
        }
    };
    Ok((Some(ready), timeout))
}

/// Durations as humantime strings ("10s", "1m 30s") in JSON.
mod human_duration {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
