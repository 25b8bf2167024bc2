//! [`Keyring`]: the cluster keys a node holds. The primary key seals; every key opens.
//!
//! A keyring is a shared handle: clones see the same keys, and a change (install, use, remove)
//! reaches the node's gossip transport and messaging at once. The agent keeps it in its data dir
//! (`keyring`, mode 0600): one base64 key per line, the primary first, `#` comments allowed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::key::{KeyError, KeyId, SecretKey};

/// The most keys a keyring holds (a rotation needs two).
pub const MAX_KEYS: usize = 16;

/// Why a keyring change or file was refused. A refused change leaves the keyring as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The key is not installed.
    #[error("key {0} is not installed (install it first)")]
    NotInstalled(KeyId),
    /// Removing the primary key would leave the node unable to seal.
    #[error("key {0} is the primary key and cannot be removed (use another key first)")]
    RemovePrimary(KeyId),
    /// The keyring is full.
    #[error("the keyring already holds {MAX_KEYS} keys; remove one first")]
    Full,
    /// A key text is not a key, or names no installed key.
    #[error("{what}: {source}")]
    BadKey {
        /// Which key (a file and line, or the argument).
        what: String,
        /// Why it is not a key.
        #[source]
        source: KeyError,
    },
    /// A key id names no installed key.
    #[error("no installed key has id {0}")]
    UnknownId(KeyId),
    /// The keyring file holds no key.
    #[error("{}: no key in the file", .0.display())]
    EmptyFile(PathBuf),
    /// The keyring file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// The keys of a node, shared by its gossip transport, its messaging and whoever changes them.
///
/// ```
/// use herd::trust::{Keyring, SecretKey};
/// let (old, new) = (SecretKey::generate(), SecretKey::generate());
/// let ring = Keyring::new(old.clone());
/// ring.install(new.clone()).unwrap();   // opens both
/// ring.use_key(&new).unwrap();          // seals with the new one
/// ring.remove(&old).unwrap();           // forgets the old one
/// assert_eq!(ring.primary(), new);
/// ```
#[derive(Clone)]
pub struct Keyring {
    keys: Arc<RwLock<Vec<SecretKey>>>,
    changed: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary().id())
            .field("keys", &self.ids())
            .finish()
    }
}

impl Keyring {
    /// A keyring holding `primary` alone.
    pub fn new(primary: SecretKey) -> Keyring {
        Keyring {
            keys: Arc::new(RwLock::new(vec![primary])),
            changed: Arc::new(watch::channel(0).0),
        }
    }

    /// The key that seals.
    pub fn primary(&self) -> SecretKey {
        self.read()[0].clone()
    }

    /// The primary key's id.
    pub fn primary_id(&self) -> KeyId {
        self.read()[0].id()
    }

    /// Every installed key, the primary first.
    pub fn keys(&self) -> Vec<SecretKey> {
        self.read().clone()
    }

    /// The ids of every installed key, the primary first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.read().iter().map(SecretKey::id).collect()
    }

    /// The installed key with this id.
    pub fn get(&self, id: KeyId) -> Option<SecretKey> {
        self.read().iter().find(|key| key.id() == id).cloned()
    }

    /// Whether `key` is installed.
    pub fn contains(&self, key: &SecretKey) -> bool {
        self.read().contains(key)
    }

    /// Installs `key` so that what it seals opens; returns false if it was installed already.
    ///
    /// # Errors
    /// [`KeyringError::Full`].
    pub fn install(&self, key: SecretKey) -> Result<bool, KeyringError> {
        let mut keys = self.write();
        if keys.contains(&key) {
            return Ok(false);
        }
        if keys.len() >= MAX_KEYS {
            return Err(KeyringError::Full);
        }
        keys.push(key);
        drop(keys);
        self.bump();
        Ok(true)
    }

    /// Makes the installed `key` the primary: this node seals with it from now on.
    ///
    /// # Errors
    /// [`KeyringError::NotInstalled`].
    pub fn use_key(&self, key: &SecretKey) -> Result<(), KeyringError> {
        let mut keys = self.write();
        let at = keys
            .iter()
            .position(|k| k == key)
            .ok_or(KeyringError::NotInstalled(key.id()))?;
        if at != 0 {
            let key = keys.remove(at);
            keys.insert(0, key);
            drop(keys);
            self.bump();
        }
        Ok(())
    }

    /// Removes `key`: what it seals no longer opens, and a connection opened with it is closed at
    /// its next frame, which is not acted on.
    ///
    /// # Errors
    /// [`KeyringError::RemovePrimary`], [`KeyringError::NotInstalled`].
    pub fn remove(&self, key: &SecretKey) -> Result<(), KeyringError> {
        let mut keys = self.write();
        match keys.iter().position(|k| k == key) {
            Some(0) => Err(KeyringError::RemovePrimary(key.id())),
            Some(at) => {
                keys.remove(at);
                drop(keys);
                self.bump();
                Ok(())
            }
            None => Err(KeyringError::NotInstalled(key.id())),
        }
    }

    /// The installed key that `text` names: the key itself in base64, or its 8-hex-digit id.
    ///
    /// # Errors
    /// A text that is neither, an id of no installed key, or a key that is not installed.
    pub fn resolve(&self, text: &str) -> Result<SecretKey, KeyringError> {
        if let Some(id) = KeyId::from_hex(text) {
            return self.get(id).ok_or(KeyringError::UnknownId(id));
        }
        let key = SecretKey::from_base64(text).map_err(|source| KeyringError::BadKey {
            what: "the key".into(),
            source,
        })?;
        if self.contains(&key) {
            Ok(key)
        } else {
            Err(KeyringError::NotInstalled(key.id()))
        }
    }

    /// A receiver that sees a new value after every change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Reads a keyring file: one base64 key per line, the primary first; blank lines and lines
    /// starting with `#` are skipped. A file holding one key (as `herd keygen` prints it) is a
    /// keyring of that key.
    ///
    /// # Errors
    /// An unreadable file, a line that is not a key (naming the file and line), no key at all, or
    /// more than [`MAX_KEYS`] keys.
    pub fn load(path: &Path) -> Result<Keyring, KeyringError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyringError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut keys: Vec<SecretKey> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = SecretKey::from_base64(line).map_err(|source| KeyringError::BadKey {
                what: format!("{}:{}", path.display(), n + 1),
                source,
            })?;
            if !keys.contains(&key) {
                if keys.len() >= MAX_KEYS {
                    return Err(KeyringError::Full);
                }
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(KeyringError::EmptyFile(path.to_path_buf()));
        }
        Ok(Keyring {
            keys: Arc::new(RwLock::new(keys)),
            changed: Arc::new(watch::channel(0).0),
        })
    }

    /// Writes the keyring to `path` atomically (a temporary file in the same directory, fsync,
    /// rename, fsync of the directory), readable by its owner only (mode 0600).
    ///
    /// # Errors
    /// The file or its directory cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), KeyringError> {
        let io = |source| KeyringError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut text = String::from("# herd keyring: the first key seals, every key opens\n");
        for key in self.read().iter() {
            text.push_str(&key.to_base64());
            text.push('\n');
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "keyring".into()),
            std::process::id()
        ));
        let written = (|| {
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<SecretKey>> {
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<SecretKey>> {
        self.keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn rotation_installs_uses_and_removes() {
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let ring = Keyring::new(a.clone());
        let changes = ring.changes();
        assert!(ring.install(b.clone()).unwrap());
        assert!(!ring.install(b.clone()).unwrap(), "installed twice");
        assert_eq!(ring.ids(), vec![a.id(), b.id()]);
        ring.use_key(&b).unwrap();
        assert_eq!(ring.primary(), b);
        assert!(matches!(
            ring.remove(&b),
            Err(KeyringError::RemovePrimary(id)) if id == b.id()
        ));
        ring.remove(&a).unwrap();
        assert_eq!(ring.keys(), vec![b.clone()]);
        assert!(changes.has_changed().unwrap());
        let c = SecretKey::generate();
        assert!(matches!(
            ring.use_key(&c),
            Err(KeyringError::NotInstalled(_))
        ));
        assert!(matches!(
            ring.remove(&c),
            Err(KeyringError::NotInstalled(_))
        ));
    }

    #[test]
    fn a_key_is_named_by_itself_or_its_id() {
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let ring = Keyring::new(a.clone());
        assert_eq!(ring.resolve(&a.to_base64()).unwrap(), a);
        assert_eq!(ring.resolve(&a.id().to_string()).unwrap(), a);
        assert!(matches!(
            ring.resolve(&b.to_base64()),
            Err(KeyringError::NotInstalled(_))
        ));
        assert!(matches!(
            ring.resolve(&b.id().to_string()),
            Err(KeyringError::UnknownId(_))
        ));
        assert!(matches!(
            ring.resolve("nope"),
            Err(KeyringError::BadKey { .. })
        ));
    }

    #[test]
    fn the_keyring_is_full_at_its_limit() {
        let ring = Keyring::new(SecretKey::generate());
        for _ in 1..MAX_KEYS {
            ring.install(SecretKey::generate()).unwrap();
        }
        assert!(matches!(
            ring.install(SecretKey::generate()),
            Err(KeyringError::Full)
        ));
    }

    #[test]
    fn a_saved_keyring_loads_back_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let ring = Keyring::new(a.clone());
        ring.install(b.clone()).unwrap();
        ring.use_key(&b).unwrap();
        ring.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = Keyring::load(&path).unwrap();
        assert_eq!(back.keys(), vec![b, a]);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn bad_keyring_files_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let key = SecretKey::generate();
        std::fs::write(
            &path,
            format!("# a comment\n\n{}\nbogus\n", key.to_base64()),
        )
        .unwrap();
        let err = Keyring::load(&path).unwrap_err().to_string();
        assert!(err.contains("key:4"), "{err}");
        std::fs::write(&path, "# nothing\n").unwrap();
        assert!(matches!(
            Keyring::load(&path),
            Err(KeyringError::EmptyFile(_))
        ));
        std::fs::write(&path, format!("{}\n", key.to_base64())).unwrap();
        assert_eq!(Keyring::load(&path).unwrap().primary(), key);
        assert!(matches!(
            Keyring::load(&dir.path().join("missing")),
            Err(KeyringError::Io { .. })
        ));
    }
}
