//! `herd events [--since N] [--once] [--json]`: the agent's event stream (member joined, left,
//! failed; worker started, exited, restarting; config adopted; ...), followed live until
//! interrupted. Each event prints as one line: its time, number, name and fields
//! (`--json`: the API's JSON object per line). `--since N` starts after event N, so a reader
//! that stopped at N resumes without a gap (0: every event the agent still holds); `--once`
//! prints what the agent holds and exits. A closed stdout ends the command quietly with 0.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

use crate::client::{ApiArgs, Client};

/// Options of `herd events`.
#[derive(clap::Args)]
pub struct Args {
    /// Start after event number N (0: every event the agent still holds) [default: from now;
    /// with --once, 0].
    #[arg(long, value_name = "N")]
    since: Option<u64>,
    /// Print the events the agent holds and exit instead of following.
    #[arg(long)]
    once: bool,
}

pub fn run(args: Args, api: &ApiArgs) -> anyhow::Result<()> {
    let client = Client::new(api)?;
    let mut out = std::io::stdout().lock();
    if args.once {
        let answer = client.get(&format!("/v1/events?since={}", args.since.unwrap_or(0)))?;
        missed(&answer, api.json);
        for event in answer["events"].as_array().into_iter().flatten() {
            if print(&mut out, event, api.json).is_err() {
                return Ok(());
            }
        }
        return Ok(());
    }
    let mut path = "/v1/events?follow=1".to_string();
    if let Some(since) = args.since {
        path.push_str(&format!("&since={since}"));
    }
    for value in client.follow(&path)? {
        let value = value?;
        if value.get("event").is_none() {
            missed(&value, api.json);
            if !api.json {
                continue;
            }
        }
        if print(&mut out, &value, api.json).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Tells of events the agent no longer held (on stderr; in `--json` the line itself is printed).
fn missed(value: &Value, json: bool) {
    match value.get("missed").and_then(Value::as_u64) {
        Some(missed) if missed > 0 && !json => {
            eprintln!("herd: {missed} events went by before they could be read")
        }
        _ => {}
    }
}

/// Prints one event; an error means stdout is closed.
fn print(out: &mut impl Write, event: &Value, json: bool) -> std::io::Result<()> {
    if json {
        writeln!(out, "{event}")?;
    } else {
        writeln!(out, "{}", line(event))?;
    }
    out.flush()
}

/// An event as one text line: `TIME  #SEQ  EVENT  key=value ...`.
fn line(event: &Value) -> String {
    let time = event["time_ms"]
        .as_u64()
        .map(|ms| humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)));
    let mut text = format!(
        "{}  #{}  {}",
        time.map(|t| t.to_string()).unwrap_or_default(),
        event["seq"],
        event["event"].as_str().unwrap_or("?"),
    );
    if let Value::Object(fields) = event {
        for (key, value) in fields {
            if matches!(key.as_str(), "seq" | "time_ms" | "event" | "node") {
                continue;
            }
            match value {
                Value::String(s) => text.push_str(&format!(" {key}={s}")),
                // Tags as k=v,k=v; none: left out.
                Value::Object(map) if map.is_empty() => {}
                Value::Object(map) if map.values().all(Value::is_string) => {
                    let pairs: Vec<String> = map
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect();
                    text.push_str(&format!(" {key}={}", pairs.join(",")));
                }
                other => text.push_str(&format!(" {key}={other}")),
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_prints_as_time_number_name_and_its_fields() {
        let event = serde_json::json!({
            "seq": 7, "time_ms": 0, "event": "member-failed", "node": "a",
            "member": "b", "reason": "failed", "pid": 12,
        });
        assert_eq!(
            line(&event),
            "1970-01-01T00:00:00.000Z  #7  member-failed member=b pid=12 reason=failed"
        );
        let join = serde_json::json!({
            "seq": 8, "time_ms": 0, "event": "member-join", "node": "a",
            "member": "b", "tags": {"group": "web", "zone": "z"},
        });
        assert!(line(&join).ends_with("member-join member=b tags=group=web,zone=z"));
        let bare = serde_json::json!({"seq": 9, "time_ms": 0, "event": "member-join", "tags": {}});
        assert!(line(&bare).ends_with("#9  member-join"), "{}", line(&bare));
    }
}
