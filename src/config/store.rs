//! [`ConfigStore`]: the last cluster config, kept in the data dir so that a node
//! restarted alone runs its workers at once.
//!
//! One file, [`STORE_FILE`], in [`VersionedConfig`]'s encoding (header with
//! length and CRC-32, then the text). Saving is atomic: the new content goes to
//! a temporary file in the same dir, which is fsynced, renamed over the old
//! file, and the dir is fsynced; a crash leaves either the old or the new
//! config, never a mix. A file that is corrupt or truncated anyway is renamed
//! aside (`cluster-config.corrupt-<unix_ms>`), never deleted, and reported as
//! [`Loaded::Corrupt`] so the caller can log it and take the config from peers.
//!
//! The config may name users and carry workers' environments, so only herd's
//! own user reads it: the data dir is created with mode 0700 ([`DIR_MODE`]; a
//! dir that already exists keeps its mode, so an operator's choice, or a
//! shared parent like `/tmp`, is never changed) and every file the store
//! writes, the set-aside one included, has mode 0600 ([`FILE_MODE`]),
//! whatever the umask allows beyond that.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::versioned::VersionedConfig;

/// Name of the config file inside the data dir.
pub const STORE_FILE: &str = "cluster-config.herd";
/// Mode of a data dir the store creates: herd's user only.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the store writes: read and write for herd's user only.
pub const FILE_MODE: u32 = 0o600;
const TEMP_PREFIX: &str = ".cluster-config.herd.tmp-";
const CORRUPT_PREFIX: &str = "cluster-config.corrupt-";

/// Distinguishes the temporary files of concurrent saves in one process.
static SAVES: AtomicU64 = AtomicU64::new(0);

/// The cluster config file in one data dir.
#[derive(Clone, Debug)]
pub struct ConfigStore {
    dir: PathBuf,
    file: PathBuf,
}

/// What [`ConfigStore::load`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loaded {
    /// No config has been saved yet.
    Empty,
    /// The last config saved.
    Config(VersionedConfig),
    /// The file was unusable; it has been renamed aside and the store is now empty.
    Corrupt {
        /// Where the file was.
        path: PathBuf,
        /// Where it is now.
        set_aside_as: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// A file-system operation of the store that failed, with the path involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data dir could not be created.
    #[error("cannot create data dir {}: {source}", .path.display())]
    CreateDir {
        /// The data dir.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The config file exists but could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The config could not be written (the old one, if any, is intact).
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A corrupt config file could not be renamed aside.
    #[error("cannot set aside corrupt {} as {}: {source}", .path.display(), .to.display())]
    SetAside {
        /// The corrupt file.
        path: PathBuf,
        /// The name it was to get.
        to: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl ConfigStore {
    /// Opens the store in `data_dir`, creating the dir if needed (mode
    /// [`DIR_MODE`]; missing parents get the usual mode) and removing
    /// temporary files left by an interrupted save.
    pub fn open(data_dir: impl Into<PathBuf>) -> Result<ConfigStore, StoreError> {
        let dir = data_dir.into();
        create_private_dir(&dir).map_err(|source| StoreError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        if !dir.is_dir() {
            let source = io::Error::new(io::ErrorKind::AlreadyExists, "not a directory");
            return Err(StoreError::CreateDir { path: dir, source });
        }
        remove_stale_temp_files(&dir);
        Ok(ConfigStore {
            file: dir.join(STORE_FILE),
            dir,
        })
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The config file.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Reads the last saved config; a corrupt file is renamed aside and reported.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let bytes = match fs::read(&self.file) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Empty),
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.file.clone(),
                    source,
                })
            }
        };
        let reason = match String::from_utf8(bytes) {
            Err(err) => format!("not UTF-8 text ({})", err.utf8_error()),
            Ok(text) => match VersionedConfig::decode(&text) {
                Ok(config) => return Ok(Loaded::Config(config)),
                Err(err) => err.to_string(),
            },
        };
        let set_aside_as = self.set_aside()?;
        Ok(Loaded::Corrupt {
            path: self.file.clone(),
            set_aside_as,
            reason,
        })
    }

    /// Replaces the saved config atomically (temp file, fsync, rename, fsync dir).
    pub fn save(&self, config: &VersionedConfig) -> Result<(), StoreError> {
        let n = SAVES.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        replace_file(&self.dir, &temp, &self.file, config.encode().as_bytes()).map_err(|source| {
            StoreError::Write {
                path: self.file.clone(),
                source,
            }
        })
    }

    /// Renames the config file to an unused `cluster-config.corrupt-<unix_ms>[-n]`.
    fn set_aside(&self) -> Result<PathBuf, StoreError> {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut to = self.dir.join(format!("{CORRUPT_PREFIX}{ms}"));
        let mut n = 1;
        while to.exists() {
            to = self.dir.join(format!("{CORRUPT_PREFIX}{ms}-{n}"));
            n += 1;
        }
        fs::rename(&self.file, &to)
            .and_then(|()| fs::set_permissions(&to, fs::Permissions::from_mode(FILE_MODE)))
            .and_then(|()| sync_dir(&self.dir))
            .map_err(|source| StoreError::SetAside {
                path: self.file.clone(),
                to: to.clone(),
                source,
            })?;
        Ok(to)
    }
}

/// Creates `dir` with [`DIR_MODE`] (its missing parents as `create_dir_all`
/// does); an existing dir is left as it is.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Replaces `file` in `dir` with `bytes` atomically: a new `temp` file in `dir` of mode
/// [`FILE_MODE`] is written and fsynced, renamed over `file`, and `dir` is fsynced; a crash leaves
/// the old content or the new, never a mix. On an error the temp file is removed.
pub(crate) fn replace_file(dir: &Path, temp: &Path, file: &Path, bytes: &[u8]) -> io::Result<()> {
    let result = write_synced(temp, bytes)
        .and_then(|()| fs::rename(temp, file))
        .and_then(|()| sync_dir(dir));
    if result.is_err() {
        let _ = fs::remove_file(temp);
    }
    result
}

/// Writes a new file of mode [`FILE_MODE`] and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Best effort: a temp file that cannot be removed does no harm.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
