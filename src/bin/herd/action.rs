//! `herd start|stop|restart|delete NAME [--node ID | --all]`: act on a worker on the agent's own
//! node (the default), on one node, or on every node that has it, through the agent at `--api`;
//! and `herd restart NAME --rolling`: node by node, each waited for until its worker runs again.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{field, print_json, ApiArgs, Client};
use crate::output::Partial;

/// How often a rolling restart reads the worker's state while it waits for it.
const POLL: Duration = Duration::from_millis(100);

/// Options of the worker actions.
#[derive(clap::Args)]
pub struct Args {
    /// The worker's name.
    name: String,
    /// On this node instead of the agent's own.
    #[arg(long, conflicts_with = "all")]
    node: Option<String>,
    /// On every node that has the worker (all at once; see --rolling for restart).
    #[arg(long)]
    all: bool,
}

/// Options of `herd restart`.
#[derive(clap::Args)]
pub struct RestartArgs {
    #[command(flatten)]
    action: Args,
    /// Restart on every node that has the worker, a few nodes at a time, waiting until each runs
    /// it again (and is ready, if it has a readiness check) before the next; stops at the first
    /// node whose worker does not come back.
    #[arg(long, conflicts_with_all = ["node", "all"])]
    rolling: bool,
    /// With --rolling: how many nodes restart at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..), requires = "rolling")]
    max_unavailable: u32,
    /// With --rolling: how long each node's worker may take to run again (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, requires = "rolling")]
    ready_timeout: Duration,
}

pub fn run(action: &str, args: Args, api: &ApiArgs) -> anyhow::Result<()> {
    let client = Client::new(api)?;
    let answer = act(&client, action, &args.name, &query(&args))?;
    if api.json {
        print_json(&answer);
    }
    report(action, &args.name, &answer, !api.json)
}

pub fn restart(args: RestartArgs, api: &ApiArgs) -> anyhow::Result<()> {
    if !args.rolling {
        return run("restart", args.action, api);
    }
    rolling(&args, api)
}

/// The query that targets the nodes the options name.
fn query(args: &Args) -> String {
    match (&args.node, args.all) {
        (Some(node), _) => format!("?node={node}"),
        (None, true) => "?all=true".to_string(),
        (None, false) => String::new(),
    }
}

fn act(client: &Client, action: &str, name: &str, query: &str) -> anyhow::Result<Value> {
    match action {
        "delete" => client.delete(&format!("/v1/workers/{name}{query}")),
        _ => client.post(&format!("/v1/workers/{name}/{action}{query}")),
    }
}

fn past(action: &str) -> &'static str {
    match action {
        "start" => "started",
        "stop" => "stopped",
        "restart" => "restarted",
        _ => "deleted",
    }
}

/// Prints each node's outcome (the state the action left, from the node's own answer) when
/// `print`; fails naming the nodes that failed: [`Partial`] when others did it.
fn report(action: &str, name: &str, answer: &Value, print: bool) -> anyhow::Result<()> {
    let results = answer
        .get("results")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut failed = Vec::new();
    for result in results {
        let node = field(result, "node");
        match result.get("error").and_then(Value::as_str) {
            Some(error) => {
                eprintln!("herd: {error}");
                failed.push(node);
            }
            None if print => {
                let status = result.get("status").cloned().unwrap_or_default();
                outln!("{} {name} on {node}: {}", past(action), state_of(&status));
            }
            None => {}
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    let message = format!(
        "{} of {} node(s) failed to {action} {name}: {}",
        failed.len(),
        results.len(),
        failed.join(", ")
    );
    if failed.len() < results.len() {
        return Err(Partial(message).into());
    }
    anyhow::bail!(message)
}

/// A worker status as `running (pid 42)`, `stopped`, or `gone` for a deleted one.
fn state_of(status: &Value) -> String {
    if status.is_null() {
        return "gone".to_string();
    }
    let state = field(status, "state");
    match status.get("pid").and_then(Value::as_u64) {
        Some(pid) => format!("{state} (pid {pid})"),
        None => state,
    }
}

/// The worker's row for `node` in a `/v1/workers` answer.
fn row<'a>(workers: &'a Value, node: &str, name: &str) -> Option<&'a Value> {
    workers
        .as_array()?
        .iter()
        .find(|w| w["node"] == node && w["name"] == name)
}

fn rolling(args: &RestartArgs, api: &ApiArgs) -> anyhow::Result<()> {
    let client = Client::new(api)?;
    let name = &args.action.name;
    let workers = client.get("/v1/workers")?;
    let mut nodes: Vec<String> = workers
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| w["name"] == name.as_str())
        .filter_map(|w| w["node"].as_str().map(String::from))
        .collect();
    nodes.sort();
    nodes.dedup();
    if nodes.is_empty() {
        anyhow::bail!("no node has worker {name:?}");
    }
    let total = nodes.len();
    let mut done: Vec<String> = Vec::new();
    for batch in nodes.chunks(args.max_unavailable as usize) {
        let mut waiting = Vec::new();
        for node in batch {
            let answer = act(&client, "restart", name, &format!("?node={node}"));
            let answer = match answer {
                Ok(answer) => answer,
                Err(err) => return Err(halt(&done, total, format!("{node}: {err:#}"))),
            };
            if let Err(err) = report("restart", name, &answer, false) {
                return Err(halt(&done, total, format!("{err:#}")));
            }
            let old = row(&workers, node, name).and_then(|w| w["pid"].as_u64());
            waiting.push((node.clone(), old));
        }
        let deadline = Instant::now() + args.ready_timeout;
        while !waiting.is_empty() {
            let workers = client.get("/v1/workers")?;
            let mut still = Vec::new();
            for (node, pid) in waiting {
                let now = row(&workers, &node, name);
                let state = now.map(|w| field(w, "state")).unwrap_or_default();
                let now_pid = now.and_then(|w| w["pid"].as_u64());
                // Back: running (which waits for a readiness check) in a new process.
                if state == "running" && now_pid.is_some() && (pid.is_none() || now_pid != pid) {
                    done.push(node.clone());
                    let line = format!(
                        "restarted {name} on {node}: running (pid {}) [{}/{total}]",
                        now_pid.map_or("-".to_string(), |p| p.to_string()),
                        done.len()
                    );
                    if api.json {
                        eprintln!("{line}");
                    } else {
                        outln!("{line}");
                    }
                } else if matches!(state.as_str(), "failed" | "exited" | "stopped")
                    || Instant::now() >= deadline
                {
                    let why = match now {
                        Some(w) => format!(
                            "{state}{}",
                            w.get("detail")
                                .and_then(Value::as_str)
                                .map(|d| format!(": {d}"))
                                .unwrap_or_default()
                        ),
                        None => "not listed".to_string(),
                    };
                    return Err(halt(
                        &done,
                        total,
                        format!(
                            "{node}'s {name} did not come back within {} ({why})",
                            humantime::format_duration(args.ready_timeout)
                        ),
                    ));
                } else {
                    still.push((node, pid));
                }
            }
            waiting = still;
            if !waiting.is_empty() {
                std::thread::sleep(POLL);
            }
        }
    }
    if api.json {
        print_json(
            &serde_json::json!({ "worker": name, "action": "restart", "rolling": true, "restarted": done }),
        );
    }
    Ok(())
}

/// The error that stops a rolling restart: [`Partial`] when some nodes were restarted.
fn halt(done: &[String], total: usize, why: String) -> anyhow::Error {
    let message = format!(
        "rolling restart stopped: {why}; restarted {} of {total} node(s){}",
        done.len(),
        if done.is_empty() {
            String::new()
        } else {
            format!(" ({})", done.join(", "))
        }
    );
    if done.is_empty() {
        anyhow::anyhow!(message)
    } else {
        Partial(message).into()
    }
}
