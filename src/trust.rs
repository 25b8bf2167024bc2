//! Trust: who may gossip with a node and talk to it.
//!
//! A cluster shares one or more 32-byte secret keys, held in a [`Keyring`]: the primary key seals
//! what this node sends, every installed key opens what it receives. Holding a key of the ring is
//! what makes a peer a member:
//!
//! - **Gossip** (`seal.rs`): every UDP datagram is sealed with XChaCha20-Poly1305 under the
//!   primary key (random 192-bit nonce, the key's id and the header authenticated with it).
//!   herd's gossip transport (`membership/transport.rs`) opens each datagram before chitchat sees
//!   it; one that does not open is dropped and counted.
//! - **Messages** (`handshake.rs`): a TCP connection starts with a handshake in which both ends
//!   prove they hold the same key, bound to fresh nonces from both sides and to both node ids;
//!   every frame after it is sealed with AES-256-GCM under session keys derived from it (one per
//!   direction, counter nonces). The sender of a request is the id the handshake
//!   authenticated, never a field of the frame.
//!
//! Without a keyring, gossip and messages are plain, as on a loopback test cluster.
//!
//! Rotation, as Serf and Consul do it: install the new key everywhere (every node can open it),
//! use it everywhere (nodes seal with it; the others still open it), then remove the old one. At
//! no step can two live nodes not read each other.

pub(crate) mod handshake;
mod key;
mod keyring;
pub(crate) mod seal;

pub use key::{KeyError, KeyId, SecretKey, KEY_LEN};
pub use keyring::{Keyring, KeyringError, MAX_KEYS};
