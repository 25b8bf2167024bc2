//! What an operator asked of this node's workers and that must outlast a push or a restart:
//! `herd stop` and `herd delete`.
//!
//! Kept in `<data-dir>/intent` ([`INTENT_FILE`]): JSON, `{"workers": {NAME: {"intent":
//! "stopped" | "deleted", "spec": SPEC}}}`, where `SPEC` is the worker's spec (as this node
//! derived it from the cluster config) when the operator asked. Written like the config (temp file,
//! fsync, rename, fsync of the dir; mode 0600) on the blocking pool. A worker's intent ends when
//! the operator starts it again, or when the config gives it a spec other than the recorded one
//! (a push that changes the worker is a new instruction). A file that does not parse is logged,
//! renamed aside (`intent.corrupt`) and taken as empty: the workers then run as the config says.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{error, warn};

use crate::supervisor::WorkerSpec;

/// The file in the data dir holding operator intent.
pub const INTENT_FILE: &str = "intent";
const TEMP_FILE: &str = "intent.tmp";
const ASIDE_FILE: &str = "intent.corrupt";
/// Longest intent file read; larger is taken as corrupt.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// What the operator asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// `herd stop`: registered, not running, until started.
    Stopped,
    /// `herd delete`: not run here until started or changed by the config.
    Deleted,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Entry {
    intent: Kind,
    spec: Value,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    workers: BTreeMap<String, Entry>,
}

/// This node's operator intent, in memory and on disk.
pub(crate) struct Intents {
    dir: PathBuf,
    workers: BTreeMap<String, Entry>,
}

impl Intents {
    /// Reads `<dir>/intent`; missing: none; corrupt: logged, set aside, none.
    pub(crate) fn load(dir: &Path) -> Intents {
        let path = dir.join(INTENT_FILE);
        let workers = match read(&path) {
            Ok(Some(stored)) => stored.workers,
            Ok(None) => BTreeMap::new(),
            Err(reason) => {
                let aside = dir.join(ASIDE_FILE);
                let moved = std::fs::rename(&path, &aside);
                warn!(path = %path.display(), %reason, set_aside_as = %aside.display(), renamed = moved.is_ok(), "the operator intent file is corrupt; workers run as the config says");
                BTreeMap::new()
            }
        };
        Intents {
            dir: dir.to_path_buf(),
            workers,
        }
    }

    /// The operator's intent for `name`, if any.
    pub(crate) fn get(&self, name: &str) -> Option<Kind> {
        self.workers.get(name).map(|e| e.intent)
    }

    /// Every worker with an intent.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, Kind)> {
        self.workers.iter().map(|(n, e)| (n.as_str(), e.intent))
    }

    /// The names of the workers deleted here.
    pub(crate) fn deleted(&self) -> std::collections::BTreeSet<String> {
        self.iter()
            .filter(|(_, k)| *k == Kind::Deleted)
            .map(|(n, _)| n.to_string())
            .collect()
    }

    /// Records `kind` for `name` with its current spec; true if that changed anything.
    pub(crate) fn set(&mut self, name: &str, kind: Kind, spec: &WorkerSpec) -> bool {
        let entry = Entry {
            intent: kind,
            spec: spec_value(spec),
        };
        self.workers.insert(name.to_string(), entry.clone()) != Some(entry)
    }

    /// Ends the intent for `name`; true if there was one.
    pub(crate) fn clear(&mut self, name: &str) -> bool {
        self.workers.remove(name).is_some()
    }

    /// Ends the intent of every worker the config now gives another spec than the one recorded
    /// (`desired` maps names to the specs this node should run, intent aside). A worker the
    /// config no longer has keeps its intent (it comes back with the same spec as asked).
    /// Returns the names whose intent ended.
    pub(crate) fn settle(&mut self, desired: &BTreeMap<String, WorkerSpec>) -> Vec<String> {
        let ended: Vec<String> = self
            .workers
            .iter()
            .filter(|(name, entry)| {
                desired
                    .get(*name)
                    .is_some_and(|spec| spec_value(spec) != entry.spec)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &ended {
            self.workers.remove(name);
        }
        ended
    }

    /// Writes the file (on the blocking pool); an error is logged, the intent holds in memory.
    pub(crate) async fn save(&self) {
        let bytes = serde_json::to_vec(&Stored {
            workers: self.workers.clone(),
        })
        .expect("intent serializes");
        let dir = self.dir.clone();
        let saved = tokio::task::spawn_blocking(move || {
            crate::config::store::replace_file(
                &dir,
                &dir.join(TEMP_FILE),
                &dir.join(INTENT_FILE),
                &bytes,
            )
        })
        .await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                error!(dir = %self.dir.display(), error = %err, "cannot save the operator intent; it holds until the agent stops")
            }
            Err(err) => error!(error = %err, "saving the operator intent did not finish"),
        }
    }
}

fn spec_value(spec: &WorkerSpec) -> Value {
    serde_json::to_value(spec).unwrap_or(Value::Null)
}

fn read(path: &Path) -> Result<Option<Stored>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err.to_string()),
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes, more than the {MAX_FILE_BYTES} allowed",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|err| err.to_string())?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(arg: &str) -> WorkerSpec {
        WorkerSpec::new("w", "sleep").args([arg])
    }

    #[test]
    fn intent_survives_a_reload_and_ends_when_the_spec_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut intents = Intents::load(dir.path());
        assert!(intents.set("w", Kind::Stopped, &spec("10")));
        assert!(!intents.set("w", Kind::Stopped, &spec("10")));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(intents.save());
        let mut again = Intents::load(dir.path());
        assert_eq!(again.get("w"), Some(Kind::Stopped));
        let same: BTreeMap<_, _> = [("w".to_string(), spec("10"))].into();
        assert!(again.settle(&same).is_empty());
        assert!(
            again.settle(&BTreeMap::new()).is_empty(),
            "gone from the config: kept"
        );
        let changed: BTreeMap<_, _> = [("w".to_string(), spec("20"))].into();
        assert_eq!(again.settle(&changed), vec!["w".to_string()]);
        assert_eq!(again.get("w"), None);
    }

    #[test]
    fn a_corrupt_file_is_set_aside_and_taken_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(INTENT_FILE), b"{not json").unwrap();
        let intents = Intents::load(dir.path());
        assert_eq!(intents.iter().count(), 0);
        assert!(dir.path().join(ASIDE_FILE).exists());
        assert!(!dir.path().join(INTENT_FILE).exists());
    }
}
