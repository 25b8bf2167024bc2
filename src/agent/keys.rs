//! The agent's cluster keys: where its keyring comes from at start ([`open_keyring`]), the
//! refusal to gossip in plaintext off loopback ([`check_plaintext`]), and the key changes an
//! operator makes through any agent ([`KeyStore::apply`]), which that agent fans out to every
//! live member as herd's own requests (`remote.rs`).
//!
//! The keyring lives in `<data_dir>/keyring` (mode 0600): it survives restarts and rotations,
//! so once it exists it wins over `--encrypt-key-file`. Keys are never logged; only their ids.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{AgentError, AgentSettings};
use crate::trust::{KeyId, Keyring, KeyringError, SecretKey};

/// The keyring's file name in the data dir.
pub const KEYRING_FILE: &str = "keyring";

/// Refuses plain gossip on a listen or advertise address that is not loopback, unless
/// `allow_plaintext`. Pure: the agent calls it before it binds anything.
///
/// # Errors
/// [`AgentError::Plaintext`] naming the address.
pub(crate) fn check_plaintext(
    listen: SocketAddr,
    advertise: Option<SocketAddr>,
    has_keyring: bool,
    allow_plaintext: bool,
) -> Result<(), AgentError> {
    if has_keyring || allow_plaintext {
        return Ok(());
    }
    match std::iter::once(listen)
        .chain(advertise)
        .find(|addr| !addr.ip().is_loopback())
    {
        Some(addr) => Err(AgentError::Plaintext { addr }),
        None => Ok(()),
    }
}

/// The agent's keyring: `<data_dir>/keyring` if it exists, else the key file's key (saved to
/// `<data_dir>/keyring` by [`save_new`]), else none. The second value is true when the keyring
/// is new and still has to be saved.
///
/// # Errors
/// A file that cannot be read or holds something that is not a key, naming the file.
pub(crate) fn open_keyring(
    settings: &AgentSettings,
) -> Result<Option<(Keyring, bool)>, AgentError> {
    let stored = settings.data_dir.join(KEYRING_FILE);
    let from_file = match &settings.encrypt_key_file {
        Some(path) => Some(Keyring::load(path).map_err(|source| AgentError::Keyring {
            what: format!("--encrypt-key-file {}", path.display()),
            source,
        })?),
        None => None,
    };
    if stored.exists() {
        let ring = Keyring::load(&stored).map_err(|source| AgentError::Keyring {
            what: format!("the data dir's keyring {}", stored.display()),
            source,
        })?;
        if let (Some(file), Some(path)) = (&from_file, &settings.encrypt_key_file) {
            let missing: Vec<String> = file
                .ids()
                .into_iter()
                .filter(|id| ring.get(*id).is_none())
                .map(|id| id.to_string())
                .collect();
            if !missing.is_empty() {
                warn!(key_file = %path.display(), keyring = %stored.display(), missing = %missing.join(","), "the key file's key is not in the data dir's keyring; the data dir's keyring wins (it holds the keys of past rotations)");
            }
        }
        info!(keyring = %stored.display(), primary = %ring.primary().id(), keys = ring.ids().len(), "read the keyring");
        return Ok(Some((ring, false)));
    }
    Ok(from_file.map(|ring| (ring, true)))
}

/// Saves a keyring made from the key file to the data dir (mode 0600).
pub(crate) fn save_new(ring: &Keyring, data_dir: &Path) -> Result<(), AgentError> {
    let path = data_dir.join(KEYRING_FILE);
    ring.save(&path).map_err(|source| AgentError::Keyring {
        what: "cannot save the keyring in the data dir".into(),
        source,
    })?;
    info!(keyring = %path.display(), primary = %ring.primary().id(), "saved the key file's key as the data dir's keyring");
    Ok(())
}

/// A key change (or a look) asked of one node. Keys travel only over sealed messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum KeyOp {
    List,
    Install(String),
    Use(String),
    Remove(String),
}

impl KeyOp {
    /// `install`, `use` or `remove` with its key text.
    pub(crate) fn parse(op: &str, key: String) -> Option<KeyOp> {
        match op {
            "install" => Some(KeyOp::Install(key)),
            "use" => Some(KeyOp::Use(key)),
            "remove" => Some(KeyOp::Remove(key)),
            _ => None,
        }
    }
}

/// A node's keys, as ids: the primary and every installed key (the primary first).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeyState {
    pub(crate) primary: String,
    pub(crate) keys: Vec<String>,
}

/// The id a key text names: the id of a base64 key, or an 8-hex-digit id itself. `install`
/// takes only a key.
///
/// # Errors
/// A text that is neither, with what was expected.
pub(crate) fn key_id(op: &KeyOp) -> Result<KeyId, AgentError> {
    let (text, id_allowed) = match op {
        KeyOp::List => return Err(AgentError::Key("a list names no key".into())),
        KeyOp::Install(text) => (text, false),
        KeyOp::Use(text) | KeyOp::Remove(text) => (text, true),
    };
    let text = text.trim();
    if id_allowed {
        if let Some(id) = KeyId::from_hex(text) {
            return Ok(id);
        }
    }
    SecretKey::from_base64(text)
        .map(|key| key.id())
        .map_err(|err| match id_allowed {
            true => AgentError::Key(format!("\"key\" is neither a key (base64, as `herd keygen` prints it) nor a key id (8 hex digits): {err}")),
            false => AgentError::Key(format!("\"key\" is not a key (base64, as `herd keygen` prints it): {err}")),
        })
}

/// A node's keyring and the file it is kept in.
#[derive(Clone)]
pub(crate) struct KeyStore {
    pub(crate) ring: Keyring,
    pub(crate) path: PathBuf,
}

impl KeyStore {
    /// The keys as ids.
    pub(crate) fn state(&self) -> KeyState {
        KeyState {
            primary: self.ring.primary().id().to_string(),
            keys: self.ring.ids().iter().map(KeyId::to_string).collect(),
        }
    }

    /// Applies `op` to this node's keyring and saves it; returns the keys after. Removing a key
    /// that is not installed changes nothing and succeeds, so a remove can be repeated.
    ///
    /// # Errors
    /// A text that is not a key, a key that is not installed (use), this node's primary key
    /// (remove), a full keyring, or a keyring file that cannot be written (the change is then
    /// undone).
    pub(crate) fn apply(&self, op: &KeyOp) -> Result<KeyState, AgentError> {
        let refused = |err: KeyringError| AgentError::Key(err.to_string());
        let before = self.ring.keys();
        let changed = match op {
            KeyOp::List => false,
            KeyOp::Install(text) => {
                let key = SecretKey::from_base64(text.trim())
                    .map_err(|err| AgentError::Key(format!("\"key\" is not a key: {err}")))?;
                let id = key.id();
                let added = self.ring.install(key).map_err(refused)?;
                if added {
                    info!(key = %id, "installed a cluster key");
                }
                added
            }
            KeyOp::Use(text) => {
                let key = self.ring.resolve(text.trim()).map_err(refused)?;
                let changed = self.ring.primary() != key;
                self.ring.use_key(&key).map_err(refused)?;
                if changed {
                    info!(key = %key.id(), "sealing with a new primary cluster key");
                }
                changed
            }
            KeyOp::Remove(text) => match self.ring.resolve(text.trim()) {
                Ok(key) => {
                    self.ring.remove(&key).map_err(refused)?;
                    info!(key = %key.id(), "removed a cluster key");
                    true
                }
                Err(KeyringError::NotInstalled(_) | KeyringError::UnknownId(_)) => false,
                Err(err) => return Err(refused(err)),
            },
        };
        if changed {
            if let Err(source) = self.ring.save(&self.path) {
                self.restore(before);
                return Err(AgentError::Keyring {
                    what: "the change was undone: cannot save the keyring".into(),
                    source,
                });
            }
        }
        Ok(self.state())
    }

    /// Puts `keys` back (after a save failed).
    fn restore(&self, keys: Vec<SecretKey>) {
        for key in &keys {
            let _ = self.ring.install(key.clone());
        }
        if let Some(primary) = keys.first() {
            let _ = self.ring.use_key(primary);
        }
        for key in self.ring.keys() {
            if !keys.contains(&key) {
                let _ = self.ring.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn plain_gossip_off_loopback_is_refused_naming_both_flags() {
        let err = check_plaintext(addr("0.0.0.0:7946"), None, false, false).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("0.0.0.0:7946"), "{text}");
        assert!(text.contains("--encrypt-key-file"), "{text}");
        assert!(text.contains("--allow-plaintext"), "{text}");
        let err = check_plaintext(
            addr("127.0.0.1:7946"),
            Some(addr("10.0.0.5:7946")),
            false,
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("10.0.0.5:7946"), "{err}");
    }

    #[test]
    fn loopback_a_keyring_or_allow_plaintext_may_start() {
        assert!(check_plaintext(addr("127.0.0.1:7946"), None, false, false).is_ok());
        assert!(
            check_plaintext(addr("[::1]:7946"), Some(addr("127.0.0.2:1")), false, false).is_ok()
        );
        assert!(check_plaintext(addr("0.0.0.0:7946"), None, true, false).is_ok());
        assert!(check_plaintext(addr("0.0.0.0:7946"), None, false, true).is_ok());
    }

    #[test]
    fn key_texts_name_ids_and_install_takes_only_keys() {
        let key = SecretKey::generate();
        let id = key.id();
        assert_eq!(key_id(&KeyOp::Install(key.to_base64())).unwrap(), id);
        assert_eq!(key_id(&KeyOp::Use(id.to_string())).unwrap(), id);
        assert!(key_id(&KeyOp::Install(id.to_string())).is_err());
        assert!(key_id(&KeyOp::Remove("nope".into())).is_err());
    }

    #[test]
    fn changes_are_saved_and_the_primary_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (SecretKey::generate(), SecretKey::generate());
        let store = KeyStore {
            ring: Keyring::new(old.clone()),
            path: dir.path().join(KEYRING_FILE),
        };
        store.apply(&KeyOp::Install(new.to_base64())).unwrap();
        store.apply(&KeyOp::Use(new.id().to_string())).unwrap();
        let err = store.apply(&KeyOp::Remove(new.to_base64())).unwrap_err();
        assert!(err.to_string().contains("primary"), "{err}");
        let state = store.apply(&KeyOp::Remove(old.id().to_string())).unwrap();
        assert_eq!(state.keys, [new.id().to_string()]);
        // Repeating a remove changes nothing and succeeds.
        store.apply(&KeyOp::Remove(old.to_base64())).unwrap();
        let saved = Keyring::load(&store.path).unwrap();
        assert_eq!(saved.keys(), [new]);
    }
}
