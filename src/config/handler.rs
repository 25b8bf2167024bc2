//! [`HandlerConfig`]: one `[[handler]]` of an agent file, a program the agent runs for each
//! event it records that the handler asks for (see [`crate::agent::handlers`]).
//!
//! ```toml
//! [[handler]]
//! name = "page"                          # optional; default: the command's file name
//! events = ["member-failed", "worker-failed"]   # or ["*"] for every event
//! command = "/usr/local/bin/page-oncall"  # run as argv, never through a shell
//! args = ["--team", "infra"]
//! timeout = "30s"                        # killed (its whole process group) after this long
//! format = "json"                        # or "serf": member events as Serf's tab-separated lines
//! ```

use std::time::Duration;

use serde::Serialize;
use toml::de::DeValue;

use super::cluster::{name_problem, read_argv};
use super::error::{ConfigError, Scope};
use super::toml_read::{Source, Table};
use crate::agent::events::EVENT_KINDS;

/// How long a handler may run before its process group is killed, by default.
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(30);
/// Most handlers one agent file may declare.
pub const MAX_HANDLERS: usize = 64;

const HANDLER_KEYS: &[&str] = &["name", "events", "command", "args", "timeout", "format"];

/// What a handler reads on stdin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandlerFormat {
    /// The event as one JSON line, as `GET /v1/events` shows it.
    #[default]
    Json,
    /// Serf's: a member event as the line `NAME\tADDR\tROLE\tTAGS` (tags as `k=v,k=v`), a user
    /// event as its payload (with `SERF_USER_EVENT`), with `SERF_EVENT` and `SERF_SELF_NAME`
    /// set; other events as the JSON line.
    Serf,
}

/// One `[[handler]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HandlerConfig {
    /// Unique among the file's handlers; names it in logs and metrics.
    pub name: String,
    /// The event names it runs for; `["*"]`: every event.
    pub events: Vec<String>,
    /// The program, run as argv (a path, or a name looked up in `PATH`).
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// How long one run may take before its process group is killed.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// What it reads on stdin.
    pub format: HandlerFormat,
}

mod humantime_serde {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

impl HandlerConfig {
    /// Whether this handler runs for events named `event`.
    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == "*" || e == event)
    }
}

/// Reads the `[[handler]]` tables of an agent file's root table, if any.
pub(super) fn read_handlers(
    src: Source<'_>,
    top: &Table<'_, '_>,
) -> Result<Vec<HandlerConfig>, ConfigError> {
    let Some(list) = top.get("handler") else {
        return Ok(Vec::new());
    };
    let Some(items) = list.get_ref().as_array() else {
        return Err(top.invalid("handler", "expected [[handler]] tables"));
    };
    if items.len() > MAX_HANDLERS {
        return Err(top.invalid(
            "handler",
            format!(
                "{} handlers; at most {MAX_HANDLERS} are allowed",
                items.len()
            ),
        ));
    }
    let mut handlers: Vec<HandlerConfig> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let DeValue::Table(entries) = item.get_ref() else {
            return Err(top.invalid("handler", "expected a table for each handler"));
        };
        let t = Table::new(src, entries, item.span().start, Scope::Handler(index + 1));
        let mut handler = read_handler(&t)?;
        let named = t.get("name").is_some();
        if !named {
            // The command's file name, made unique with -2, -3, ...
            let base = handler.name.clone();
            let mut n = 1;
            while handlers.iter().any(|h| h.name == handler.name) {
                n += 1;
                handler.name = format!("{base}-{n}");
            }
        } else if handlers.iter().any(|h| h.name == handler.name) {
            let message = format!("{:?} names another handler already", handler.name);
            return Err(t.invalid("name", message));
        }
        handlers.push(handler);
    }
    Ok(handlers)
}

fn read_handler(t: &Table<'_, '_>) -> Result<HandlerConfig, ConfigError> {
    t.deny_unknown(HANDLER_KEYS)?;
    let (command, args) = read_argv(t)?;
    let name = match t.string("name")? {
        Some(name) => name,
        None => default_name(&command),
    };
    if let Some(problem) = name_problem(&name) {
        return Err(t.invalid("name", problem));
    }
    if t.get("events").is_none() {
        return Err(t.missing("events"));
    }
    let events = t.strings("events")?;
    if events.is_empty() {
        let message = r#"must name at least one event, or be ["*"] for every event"#;
        return Err(t.invalid("events", message));
    }
    if let Some(unknown) = events
        .iter()
        .find(|e| *e != "*" && !EVENT_KINDS.contains(&e.as_str()))
    {
        let message = format!(
            "unknown event {unknown:?}; expected \"*\" or some of {}",
            EVENT_KINDS.join(", ")
        );
        return Err(t.invalid("events", message));
    }
    let timeout = t.duration("timeout")?.unwrap_or(DEFAULT_HANDLER_TIMEOUT);
    if timeout.is_zero() {
        return Err(t.invalid("timeout", "must be longer than zero"));
    }
    let format = match t.string("format")?.as_deref() {
        None | Some("json") => HandlerFormat::Json,
        Some("serf") => HandlerFormat::Serf,
        Some(other) => {
            let message = format!("unknown format {other:?}; expected \"json\" or \"serf\"");
            return Err(t.invalid("format", message));
        }
    };
    Ok(HandlerConfig {
        name,
        events,
        command,
        args,
        timeout,
        format,
    })
}

/// The command's file name, cut to the characters a name allows (`handler` if none are left).
fn default_name(command: &str) -> String {
    let base = command.rsplit('/').next().unwrap_or(command);
    let name: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(48)
        .collect();
    match name.chars().next() {
        Some(c) if c.is_ascii_alphanumeric() => name,
        _ => "handler".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::AgentFile;

    use super::*;

    fn error(text: &str) -> String {
        AgentFile::parse(text, "herd.toml").unwrap_err().to_string()
    }

    #[test]
    fn handlers_are_read_with_their_defaults() {
        let file = AgentFile::parse(
            r#"
[[handler]]
events = ["member-join", "member-failed"]
command = "/usr/local/bin/notify.sh"

[[handler]]
name = "all"
events = ["*"]
command = "logger"
args = ["-t", "herd"]
timeout = "2s"
format = "serf"

[[handler]]
events = ["worker-failed"]
command = "notify.sh"
"#,
            "herd.toml",
        )
        .unwrap();
        let h = &file.handlers;
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].name, "notify.sh");
        assert_eq!(h[0].timeout, DEFAULT_HANDLER_TIMEOUT);
        assert_eq!(h[0].format, HandlerFormat::Json);
        assert!(h[0].wants("member-failed") && !h[0].wants("member-leave"));
        assert_eq!(h[1].name, "all");
        assert_eq!(h[1].args, ["-t", "herd"]);
        assert_eq!(h[1].timeout, Duration::from_secs(2));
        assert_eq!(h[1].format, HandlerFormat::Serf);
        assert!(h[1].wants("config-adopted"));
        assert_eq!(h[2].name, "notify.sh-2");
    }

    #[test]
    fn a_bad_handler_is_named_with_its_line_and_field() {
        let base = "[[handler]]\ncommand = \"x\"\n";
        assert_eq!(
            error(&format!("{base}events = [\"member-joined\"]\n")),
            "herd.toml:3:10: handler #1: field \"events\": unknown event \"member-joined\"; \
             expected \"*\" or some of member-join, member-leave, member-failed, member-update, \
             worker-started, worker-ready, worker-exited, worker-restarting, worker-stopped, \
             worker-finished, worker-failed, worker-deleted, supervisor-gave-up, config-adopted, \
             name-owner-changed, events-lost, user"
        );
        assert_eq!(
            error(base),
            "herd.toml:1:1: handler #1: missing field \"events\""
        );
        assert!(error(&format!("{base}events = []\n")).contains("at least one event"));
        assert!(error(&format!("{base}events = [\"*\"]\ntimeout = \"0s\"\n")).contains("timeout"));
        assert!(
            error(&format!("{base}events = [\"*\"]\nformat = \"xml\"\n"))
                .contains("unknown format \"xml\"")
        );
        assert!(error(&format!("{base}events = [\"*\"]\nshell = true\n"))
            .contains("handler #1: unknown field \"shell\""));
        assert!(error("[[handler]]\nevents = [\"*\"]\n").contains("missing field \"command\""));
        let twice = format!("{base}events = [\"*\"]\nname = \"a\"\n");
        assert!(error(&format!("{twice}{}", twice.replace("x", "y")))
            .contains("handler #2: field \"name\": \"a\" names another handler already"));
        assert!(error("handler = 1\n").contains("expected [[handler]] tables"));
    }

    #[test]
    fn a_default_name_is_a_valid_name() {
        assert_eq!(default_name("/bin/on-join.sh"), "on-join.sh");
        assert_eq!(default_name("./.hidden"), "handler");
        assert!(name_problem(&default_name(&"x".repeat(200))).is_none());
    }
}
