//! `herd config push FILE --wait [--timeout 30s]`: after the push was accepted, follows the
//! config every live node gossips (`GET /v1/members`: `config_version`, `config_checksum`,
//! `config_workers`) until every live node holds the pushed one and runs its workers (exit 0; a
//! member whose head has not arrived yet, that holds no config, or whose workers are still
//! `starting` or `failed`, counts as behind), a config accepted
//! elsewhere without knowing it wins (exit 1, naming its version and the node it was pushed
//! through, from `GET /v1/config` once the agent asked holds it), or the timeout passes (exit 3,
//! partial, naming the nodes still behind). A later push built on the pushed one counts as
//! arrived.
//! Progress goes to stderr: on a terminal a bar redrawn in place, otherwise one line whenever
//! the nodes behind change.

use std::time::{Duration, Instant};

use anyhow::bail;
use herd::config::ConfigId;
use serde_json::Value;

use crate::client::Client;

/// How often the heads are read.
const POLL: Duration = Duration::from_millis(100);

/// One live node's config, as `/v1/members` lists it: `None` while it holds none (or its head
/// has not reached the agent asked yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub node: String,
    pub id: Option<ConfigId>,
    /// Its workers with that config: `running`, `starting`, `failed`; `None` from an agent
    /// that does not say (taken as running).
    pub workers: Option<String>,
}

impl Head {
    /// Whether its workers run its config.
    fn running(&self) -> bool {
        self.workers.as_deref().is_none_or(|w| w == "running")
    }
}

/// What the heads say about the pushed config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every node holds the pushed one; how many.
    Everywhere(usize),
    /// A node holds another config at the pushed version or above: the highest such.
    Replaced(ConfigId),
    /// Nodes below the pushed version or without a config, with theirs; and how many hold it.
    Behind { holding: usize, behind: Vec<Head> },
}

/// The members' heads in a `/v1/members` answer.
pub fn heads(members: &Value) -> Vec<Head> {
    members
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            Some(Head {
                node: m.get("id")?.as_str()?.to_string(),
                id: config_of(m),
                workers: m
                    .get("config_workers")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })
        })
        .collect()
}

/// The config a `/v1/members` entry says its node holds.
fn config_of(member: &Value) -> Option<ConfigId> {
    Some(ConfigId {
        version: member.get("config_version")?.as_u64()?,
        checksum: u32::try_from(member.get("config_checksum")?.as_u64()?).ok()?,
    })
}

/// Where pushed config `pushed` stands among `heads`.
pub fn progress(pushed: ConfigId, heads: &[Head]) -> Progress {
    let replaced = heads
        .iter()
        .filter_map(|h| h.id)
        .filter(|id| *id != pushed && id.version >= pushed.version)
        .max();
    if let Some(id) = replaced {
        return Progress::Replaced(id);
    }
    let behind: Vec<Head> = heads
        .iter()
        .filter(|h| h.id.is_none_or(|id| id.version < pushed.version) || !h.running())
        .cloned()
        .collect();
    if behind.is_empty() {
        return Progress::Everywhere(heads.len());
    }
    Progress::Behind {
        holding: heads.len() - behind.len(),
        behind,
    }
}

/// The config an agent holds, from its `/v1/config` answer, with its pusher and parent.
fn held(config: &Value) -> Option<(ConfigId, String, Option<ConfigId>)> {
    let id = ConfigId {
        version: config.get("version")?.as_u64()?,
        checksum: u32::try_from(config.get("checksum")?.as_u64()?).ok()?,
    };
    let pushed_by = config.get("pushed_by")?.as_str()?.to_string();
    let parent = config
        .get("parent")
        .and_then(|p| serde_json::from_value(p.clone()).ok());
    Some((id, pushed_by, parent))
}

fn names(heads: &[Head]) -> String {
    heads
        .iter()
        .map(|h| match (h.id, h.workers.as_deref()) {
            (Some(id), Some(workers)) if workers != "running" => {
                format!("{} (version {}, workers {workers})", h.node, id.version)
            }
            (Some(id), _) => format!("{} (at version {})", h.node, id.version),
            (None, _) => format!("{} (no config yet)", h.node),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Waits as the module docs say; `Ok` with the line to print on success.
pub fn wait(client: &Client, pushed: ConfigId, timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    let mut shown: Option<Vec<Head>> = None;
    let mut progress_bar = Bar::new(pushed.version);
    loop {
        let heads = heads(&client.get("/v1/members")?);
        match progress(pushed, &heads) {
            Progress::Everywhere(nodes) => {
                progress_bar.finish(nodes, nodes);
                return Ok(format!(
                    "version {} runs on every node ({nodes})",
                    pushed.version
                ));
            }
            Progress::Replaced(winner) => {
                // Who pushed it, and on what, is in the config itself: wait until the agent
                // asked holds it (gossip brings it within moments).
                let config = client.get("/v1/config")?;
                if let Some((id, pushed_by, parent)) = held(&config).filter(|h| h.0 == winner) {
                    if pushed.unknown_to(id, parent) {
                        bail!(
                            "version {} (checksum {}) was superseded: the cluster runs version {} (checksum {}), pushed through {pushed_by} without knowing it",
                            pushed.version, pushed.checksum, id.version, id.checksum
                        );
                    }
                    return Ok(format!(
                        "version {} took effect; a later push built on it is at version {} (through {pushed_by})",
                        pushed.version, id.version
                    ));
                }
            }
            Progress::Behind { holding, behind } => {
                if progress_bar.tty {
                    progress_bar.draw(holding, heads.len(), &names(&behind));
                } else if shown.as_ref() != Some(&behind) {
                    eprintln!(
                        "waiting: {holding} of {} nodes run version {}; behind: {}",
                        heads.len(),
                        pushed.version,
                        names(&behind)
                    );
                }
                if Instant::now() >= deadline {
                    progress_bar.finish(holding, heads.len());
                    // Some nodes hold it (the one that accepted it, at least): partial.
                    return Err(crate::output::Partial(format!(
                        "timed out after {}: {} of {} nodes run version {}; still behind: {}",
                        humantime::format_duration(timeout),
                        holding,
                        heads.len(),
                        pushed.version,
                        names(&behind)
                    ))
                    .into());
                }
                shown = Some(behind);
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {} waiting for the config that replaced version {} to reach the agent",
                humantime::format_duration(timeout),
                pushed.version
            );
        }
        std::thread::sleep(POLL);
    }
}

/// The progress bar `--wait` draws on a terminal (stderr), redrawn in place.
struct Bar {
    tty: bool,
    version: u64,
    drawn: bool,
}

impl Bar {
    fn new(version: u64) -> Bar {
        use std::io::IsTerminal as _;
        Bar {
            tty: std::io::stderr().is_terminal(),
            version,
            drawn: false,
        }
    }

    fn draw(&mut self, done: usize, of: usize, behind: &str) {
        const WIDTH: usize = 30;
        let filled = (done * WIDTH).checked_div(of).unwrap_or(0);
        let mut behind = behind.to_string();
        if behind.chars().count() > 60 {
            behind = behind.chars().take(57).collect::<String>() + "...";
        }
        eprint!(
            "\r\x1b[2K[{}{}] {done}/{of} nodes run version {}; waiting for {behind}",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            self.version
        );
        self.drawn = true;
    }

    /// Ends the bar's line, if one was drawn.
    fn finish(&mut self, done: usize, of: usize) {
        if self.drawn {
            self.draw(done, of, "nothing");
            eprintln!();
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(version: u64, checksum: u32) -> ConfigId {
        ConfigId { version, checksum }
    }

    fn head(node: &str, version: u64, checksum: u32) -> Head {
        Head {
            node: node.into(),
            id: Some(id(version, checksum)),
            workers: None,
        }
    }

    fn headless(node: &str) -> Head {
        Head {
            node: node.into(),
            id: None,
            workers: None,
        }
    }

    #[test]
    fn members_without_a_config_are_listed_without_one() {
        let members = json!([
            {"id": "a", "config_version": 3, "config_checksum": 7},
            {"id": "b"},
            {"id": "c", "config_version": 2, "config_checksum": 4294967295u64},
        ]);
        assert_eq!(
            heads(&members),
            [head("a", 3, 7), headless("b"), head("c", 2, u32::MAX)]
        );
    }

    #[test]
    fn a_member_without_a_config_is_behind() {
        assert_eq!(
            progress(id(5, 1), &[head("a", 5, 1), headless("b")]),
            Progress::Behind {
                holding: 1,
                behind: vec![headless("b")]
            }
        );
        assert_eq!(names(&[headless("b")]), "b (no config yet)");
    }

    #[test]
    fn the_pushed_config_is_everywhere_behind_somewhere_or_replaced() {
        let pushed = id(5, 1);
        assert_eq!(
            progress(pushed, &[head("a", 5, 1), head("b", 5, 1)]),
            Progress::Everywhere(2)
        );
        assert_eq!(
            progress(pushed, &[head("a", 5, 1), head("b", 4, 9)]),
            Progress::Behind {
                holding: 1,
                behind: vec![head("b", 4, 9)]
            }
        );
        assert_eq!(
            progress(pushed, &[head("a", 5, 2), head("b", 4, 9)]),
            Progress::Replaced(id(5, 2)),
            "another config at the same version"
        );
        assert_eq!(
            progress(pushed, &[head("a", 5, 1), head("b", 7, 3), head("c", 6, 3)]),
            Progress::Replaced(id(7, 3)),
            "the highest replacement"
        );
    }

    #[test]
    fn a_node_holding_the_config_whose_workers_do_not_run_it_yet_is_behind() {
        let pushed = id(5, 1);
        let mut starting = head("b", 5, 1);
        starting.workers = Some("starting".into());
        let mut running = head("a", 5, 1);
        running.workers = Some("running".into());
        assert_eq!(
            progress(pushed, &[running.clone(), starting.clone()]),
            Progress::Behind {
                holding: 1,
                behind: vec![starting.clone()]
            }
        );
        assert_eq!(names(&[starting]), "b (version 5, workers starting)");
        let members = json!([{"id": "a", "config_version": 5, "config_checksum": 1, "config_workers": "running"}]);
        assert_eq!(heads(&members), [running]);
    }

    #[test]
    fn the_held_config_names_its_pusher_and_parent() {
        let config = json!({"version": 6, "checksum": 3, "pushed_by": "b", "parent": {"version": 5, "checksum": 1}});
        assert_eq!(
            held(&config),
            Some((id(6, 3), "b".to_string(), Some(id(5, 1))))
        );
        let old = json!({"version": 6, "checksum": 3, "pushed_by": "b"});
        assert_eq!(held(&old), Some((id(6, 3), "b".to_string(), None)));
    }
}
