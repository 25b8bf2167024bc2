//! Sealed gossip datagrams: what herd's gossip transport sends instead of chitchat's bytes when
//! the node has a keyring.
//!
//! ```text
//! "hS" | u8 version (1) | key id (4) | nonce (24, random) | ciphertext | tag (16)
//! ```
//!
//! XChaCha20-Poly1305 under the keyring's primary key; the first seven bytes (magic, version, key
//! id) are authenticated with the payload. A random 192-bit nonce never repeats in practice, so
//! every node can seal with the shared key without coordinating counters. chitchat's own
//! datagrams start with its magic number (`0xB053`, little endian), never with `hS`, so a
//! receiver tells sealed from plain by the first two bytes. A datagram is authenticated before it
//! is decoded; nothing in it is trusted before that.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand::RngCore as _;

use super::key::{KeyId, SecretKey};
use super::keyring::Keyring;

const MAGIC: [u8; 2] = *b"hS";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 2 + 1 + 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Bytes a seal adds to a datagram.
pub(crate) const SEAL_OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// What [`open`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    /// The datagram was sealed with an installed key and is authentic; its payload is in `out`.
    Sealed(KeyId),
    /// The datagram is not sealed (`out` is untouched).
    Plain,
    /// Sealed, but too short to hold a header, a nonce and a tag.
    Truncated,
    /// Sealed with a key this node does not hold.
    UnknownKey(KeyId),
    /// Sealed under an installed key id, but it does not authenticate: another key with a
    /// colliding id, or tampered bytes.
    Forged(KeyId),
}

/// Seals `payload` with `key` into `out` (cleared first).
pub(crate) fn seal(key: &SecretKey, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(payload.len() + SEAL_OVERHEAD);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&key.id().0);
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(payload);
    let (header, rest) = out.split_at_mut(HEADER_LEN);
    let body = &mut rest[NONCE_LEN..];
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), header, body)
        .expect("a gossip datagram is far below the cipher's length limit");
    debug_assert_eq!(start, HEADER_LEN + NONCE_LEN);
    out.extend_from_slice(&tag);
}

/// Whether `datagram` is sealed (by its first bytes; not whether it is authentic).
pub(crate) fn is_sealed(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && datagram[..2] == MAGIC
}

/// Opens `datagram` with the key of `ring` it names, writing the payload to `out`.
pub(crate) fn open(ring: &Keyring, datagram: &[u8], out: &mut Vec<u8>) -> Opened {
    if !is_sealed(datagram) {
        return Opened::Plain;
    }
    if datagram.len() < SEAL_OVERHEAD || datagram[2] != VERSION {
        return Opened::Truncated;
    }
    let id = KeyId(datagram[3..7].try_into().expect("4 bytes"));
    let Some(key) = ring.get(id) else {
        return Opened::UnknownKey(id);
    };
    let header = &datagram[..HEADER_LEN];
    let nonce = XNonce::from_slice(&datagram[HEADER_LEN..HEADER_LEN + NONCE_LEN]);
    let (body, tag) = datagram[HEADER_LEN + NONCE_LEN..].split_at(datagram.len() - SEAL_OVERHEAD);
    out.clear();
    out.extend_from_slice(body);
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    match cipher.decrypt_in_place_detached(nonce, header, out, Tag::from_slice(tag)) {
        Ok(()) => Opened::Sealed(id),
        Err(_) => {
            out.clear();
            Opened::Forged(id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_datagram_opens_with_any_installed_key_and_hides_its_payload() {
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let ring = Keyring::new(a.clone());
        ring.install(b.clone()).unwrap();
        for key in [&a, &b] {
            let mut sealed = Vec::new();
            seal(key, b"gossip payload", &mut sealed);
            assert_eq!(sealed.len(), 14 + SEAL_OVERHEAD);
            assert!(!sealed.windows(6).any(|w| w == b"gossip"));
            let mut out = Vec::new();
            assert_eq!(open(&ring, &sealed, &mut out), Opened::Sealed(key.id()));
            assert_eq!(out, b"gossip payload");
        }
    }

    #[test]
    fn the_same_payload_seals_differently_each_time() {
        let key = SecretKey::generate();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        seal(&key, b"same", &mut x);
        seal(&key, b"same", &mut y);
        assert_ne!(x, y);
    }

    #[test]
    fn what_does_not_open_says_why() {
        let (a, other) = (SecretKey::generate(), SecretKey::generate());
        let ring = Keyring::new(a.clone());
        let mut out = Vec::new();
        let mut sealed = Vec::new();
        seal(&a, b"payload", &mut sealed);

        assert_eq!(open(&ring, &[0x53, 0xB0, 0, 0], &mut out), Opened::Plain);
        assert_eq!(open(&ring, b"", &mut out), Opened::Plain);
        assert_eq!(open(&ring, &sealed[..20], &mut out), Opened::Truncated);

        let mut foreign = Vec::new();
        seal(&other, b"payload", &mut foreign);
        assert_eq!(
            open(&ring, &foreign, &mut out),
            Opened::UnknownKey(other.id())
        );

        for at in [3, 10, HEADER_LEN + NONCE_LEN, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[at] ^= 1;
            let opened = open(&ring, &tampered, &mut out);
            assert!(
                matches!(opened, Opened::Forged(_) | Opened::UnknownKey(_)),
                "byte {at}: {opened:?}"
            );
            assert!(out.is_empty());
        }
        // A key id spoofed onto a datagram sealed with another key does not authenticate.
        let mut spoofed = foreign.clone();
        spoofed[3..7].copy_from_slice(&a.id().0);
        assert_eq!(open(&ring, &spoofed, &mut out), Opened::Forged(a.id()));
    }
}
