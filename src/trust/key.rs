//! [`SecretKey`]: 32 random bytes, written as standard base64 (with padding) in files and flags,
//! and its short public [`KeyId`].

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroize as _;

/// Length of a key in bytes.
pub const KEY_LEN: usize = 32;

/// A cluster key: 32 secret bytes (and their [`KeyId`], computed once). `Debug` shows only the id.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey {
    bytes: [u8; KEY_LEN],
    id: KeyId,
}

/// Why a text is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is empty.
    #[error("the key is empty (expected 32 bytes in base64; `herd keygen` makes one)")]
    Empty,
    /// The text is not base64.
    #[error("the key is not base64: {0} (expected 32 bytes in base64; `herd keygen` makes one)")]
    Base64(String),
    /// The text decodes to the wrong number of bytes.
    #[error(
        "the key is {0} bytes long, not 32 (expected 32 bytes in base64; `herd keygen` makes one)"
    )]
    Length(usize),
}

impl SecretKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> SecretKey {
        let mut bytes = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        SecretKey::from_bytes(bytes)
    }

    /// The key of these bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SecretKey {
        let digest = Sha256::new()
            .chain_update(b"herd key id v1")
            .chain_update(bytes)
            .finalize();
        let id = KeyId([digest[0], digest[1], digest[2], digest[3]]);
        SecretKey { bytes, id }
    }

    /// Parses standard base64 (surrounding whitespace ignored).
    ///
    /// # Errors
    /// Empty text, text that is not base64, or bytes that are not 32.
    pub fn from_base64(text: &str) -> Result<SecretKey, KeyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        let mut bytes = STANDARD
            .decode(text)
            .map_err(|err| KeyError::Base64(err.to_string()))?;
        if bytes.len() != KEY_LEN {
            let len = bytes.len();
            bytes.zeroize();
            return Err(KeyError::Length(len));
        }
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&bytes);
        bytes.zeroize();
        let key = SecretKey::from_bytes(key);
        Ok(key)
    }

    /// The key in standard base64, as `herd keygen` prints it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    /// The key's public id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id())
    }
}

/// A key's public id: 4 bytes of a hash of the key, written as 8 hex digits. Sealed datagrams
/// carry it so the receiver knows which key opens them; `herd keys list` shows it. It tells
/// nothing about the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub(crate) [u8; 4]);

impl KeyId {
    /// Parses 8 hex digits.
    pub fn from_hex(text: &str) -> Option<KeyId> {
        let text = text.trim();
        if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let value = u32::from_str_radix(text, 16).ok()?;
        Some(KeyId(value.to_be_bytes()))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", u32::from_be_bytes(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_base64_and_hides_in_debug() {
        let key = SecretKey::generate();
        let text = key.to_base64();
        assert_eq!(text.len(), 44);
        assert_eq!(SecretKey::from_base64(&format!(" {text}\n")).unwrap(), key);
        let debug = format!("{key:?}");
        assert!(!debug.contains(&text), "{debug}");
        assert!(debug.contains(&key.id().to_string()));
    }

    #[test]
    fn bad_keys_say_what_is_wrong() {
        assert_eq!(SecretKey::from_base64("  "), Err(KeyError::Empty));
        assert!(matches!(
            SecretKey::from_base64("not base64!"),
            Err(KeyError::Base64(_))
        ));
        assert_eq!(
            SecretKey::from_base64("AAAA").unwrap_err(),
            KeyError::Length(3)
        );
        assert!(KeyError::Length(3).to_string().contains("herd keygen"));
    }

    #[test]
    fn key_ids_differ_and_parse_back() {
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        assert_ne!(a.id(), b.id());
        assert_eq!(KeyId::from_hex(&a.id().to_string()), Some(a.id()));
        assert_eq!(KeyId::from_hex("xyz"), None);
        assert_eq!(KeyId::from_hex("0123456789"), None);
    }
}
