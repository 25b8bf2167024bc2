//! Signed cluster configs: ed25519 keys, their text forms, what is signed, and the check an
//! agent with config signers makes before it adopts a config. Pure functions; the only I/O is
//! the caller's (reading a key file, writing one).
//!
//! A cluster config is code: every node runs the commands in it. Holding the gossip key lets a
//! node speak in the cluster; holding a signing key is what lets it say which commands run.
//!
//! **Text forms.** A public key is the standard base64 (with padding) of its 32 bytes, 44
//! characters on one line. A secret key file is one line, [`SECRET_KEY_PREFIX`] followed by the
//! standard base64 of the 32-byte ed25519 seed:
//!
//! ```text
//! herd-signing-key:q0Jb0w0qCzq9e8o3uQk3hQ5l8Ue1lGk1l0mAq4rS9dM=
//! ```
//!
//! **What is signed** ([`signed_bytes`]): three lines, then the config text exactly as pushed
//! (the `toml` of `PUT /v1/config`, byte for byte, not re-encoded):
//!
//! ```text
//! herd config signature v1
//! cluster "<cluster id, as a JSON string>"
//! version <the config version, in decimal>
//! <config text>
//! ```
//!
//! Each line ends with a single `\n`. The cluster id is written as a JSON string (in quotes;
//! `"`, `\` and control characters escaped), so an id cannot reach into the next line. Binding
//! the version means a signed config cannot be replayed as a newer one; binding the cluster id
//! means a config signed for one cluster does not run in another.
//!
//! ```
//! use herd::config::signature::{sign, verify, SecretKey};
//!
//! let key = SecretKey::generate();
//! let text = "[[worker]]\nname = \"a\"\ncommand = \"true\"\n";
//! let signature = sign(&key, "prod", 7, text);
//! assert!(verify(&signature, "prod", 7, text).is_ok());
//! assert!(verify(&signature, "prod", 8, text).is_err(), "another version");
//! assert!(verify(&signature, "staging", 7, text).is_err(), "another cluster");
//! ```

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize, Serializer};

/// The first bytes of a secret key file.
pub const SECRET_KEY_PREFIX: &str = "herd-signing-key:";
/// The first line of the bytes that are signed.
pub const SIGNED_PREAMBLE: &str = "herd config signature v1";

/// Why a key or signature text cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not standard base64.
    #[error("{what} {text:?} is not standard base64: {reason}")]
    Base64 {
        /// "public key", "signature" or "secret key".
        what: &'static str,
        /// The text (a secret key is not quoted back).
        text: String,
        /// What the decoder said.
        reason: String,
    },
    /// Base64 of the wrong number of bytes.
    #[error("{what} {text:?} is {found} bytes, expected {expected}")]
    Length {
        /// "public key", "signature" or "secret key".
        what: &'static str,
        /// The text (a secret key is not quoted back).
        text: String,
        /// Bytes expected.
        expected: usize,
        /// Bytes decoded.
        found: usize,
    },
    /// 32 bytes that are not a usable ed25519 public key.
    #[error("public key {text:?} is not a valid ed25519 point")]
    NotAPoint {
        /// The text.
        text: String,
    },
    /// A secret key file without the [`SECRET_KEY_PREFIX`].
    #[error("not a herd signing key: it must be one line starting with {SECRET_KEY_PREFIX:?}")]
    Prefix,
}

fn decode_fixed<const N: usize>(
    what: &'static str,
    text: &str,
    quoted: &str,
) -> Result<[u8; N], KeyError> {
    let bytes = STANDARD.decode(text).map_err(|err| KeyError::Base64 {
        what,
        text: quoted.to_string(),
        reason: err.to_string(),
    })?;
    let found = bytes.len();
    bytes.try_into().map_err(|_| KeyError::Length {
        what,
        text: quoted.to_string(),
        expected: N,
        found,
    })
}

/// An ed25519 public key: a config signer. Displays (and serializes) as base64. Holds the 32
/// bytes, checked to be a point on the curve when read.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Reads the base64 text form (surrounding whitespace ignored).
    ///
    /// # Errors
    /// Not base64, not 32 bytes, or not a point on the curve; the error quotes the text.
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        let text = text.trim();
        let bytes: [u8; 32] = decode_fixed("public key", text, text)?;
        VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::NotAPoint {
            text: text.to_string(),
        })?;
        Ok(PublicKey(bytes))
    }

    fn verifying_key(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.0).ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// An ed25519 secret key. Its `Debug` does not show the key; the bytes are zeroed on drop.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> SecretKey {
        SecretKey(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// The key file's content: [`SECRET_KEY_PREFIX`], the base64 seed, a newline.
    pub fn to_file_text(&self) -> String {
        format!(
            "{SECRET_KEY_PREFIX}{}\n",
            STANDARD.encode(self.0.to_bytes())
        )
    }

    /// Reads what [`to_file_text`](Self::to_file_text) wrote (surrounding whitespace ignored).
    ///
    /// # Errors
    /// No prefix, not base64, not 32 bytes; the error never quotes the secret.
    pub fn from_file_text(text: &str) -> Result<SecretKey, KeyError> {
        let b64 = text
            .trim()
            .strip_prefix(SECRET_KEY_PREFIX)
            .ok_or(KeyError::Prefix)?;
        let seed: [u8; 32] = decode_fixed("secret key", b64.trim(), "(not shown)")?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public())
    }
}

/// A signature over a config, with the key that made it. In JSON (the `signature` of
/// `PUT /v1/config`, and the encoding's header): `{"key": "<base64>", "sig": "<base64>"}`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigSignature {
    /// Who signed.
    pub key: PublicKey,
    sig: Box<ed25519_dalek::Signature>,
}

/// The JSON form of a [`ConfigSignature`], before its texts are checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureText {
    /// The signer's public key, base64.
    pub key: String,
    /// The 64-byte ed25519 signature, base64.
    pub sig: String,
}

impl ConfigSignature {
    /// Reads the JSON form's texts.
    ///
    /// # Errors
    /// The key or the signature is not readable; the error says which.
    pub fn parse(text: &SignatureText) -> Result<ConfigSignature, KeyError> {
        let key = PublicKey::parse(&text.key)?;
        let sig = text.sig.trim();
        let bytes: [u8; 64] = decode_fixed("signature", sig, sig)?;
        Ok(ConfigSignature {
            key,
            sig: Box::new(ed25519_dalek::Signature::from_bytes(&bytes)),
        })
    }

    /// The JSON form.
    pub fn to_text(&self) -> SignatureText {
        SignatureText {
            key: self.key.to_string(),
            sig: STANDARD.encode(self.sig.to_bytes()),
        }
    }
}

impl fmt::Debug for ConfigSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConfigSignature(key {})", self.key)
    }
}

impl Serialize for ConfigSignature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_text().serialize(serializer)
    }
}

/// The bytes a signature covers: see the module docs.
pub fn signed_bytes(cluster_id: &str, version: u64, text: &str) -> Vec<u8> {
    // A string always serializes.
    let cluster = serde_json::to_string(cluster_id).unwrap_or_default();
    let head = format!("{SIGNED_PREAMBLE}\ncluster {cluster}\nversion {version}\n");
    let mut bytes = Vec::with_capacity(head.len() + text.len());
    bytes.extend_from_slice(head.as_bytes());
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

/// Signs version `version` of config `text` for cluster `cluster_id`.
pub fn sign(key: &SecretKey, cluster_id: &str, version: u64, text: &str) -> ConfigSignature {
    ConfigSignature {
        key: key.public(),
        sig: Box::new(key.0.sign(&signed_bytes(cluster_id, version, text))),
    }
}

/// Whether `signature` is its key's signature of version `version` of `text` for `cluster_id`
/// (strict ed25519 verification: no malleable or weak-key signatures).
///
/// # Errors
/// [`Refusal::BadSignature`], naming the key.
pub fn verify(
    signature: &ConfigSignature,
    cluster_id: &str,
    version: u64,
    text: &str,
) -> Result<(), Refusal> {
    let bytes = signed_bytes(cluster_id, version, text);
    let verified = signature
        .key
        .verifying_key()
        .is_some_and(|key| key.verify_strict(&bytes, &signature.sig).is_ok());
    verified.then_some(()).ok_or_else(|| Refusal::BadSignature {
        key: signature.key,
        version,
        cluster_id: cluster_id.to_string(),
    })
}

/// Why a config is not adopted by an agent with config signers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The config carries no signature.
    #[error("unsigned: this agent adopts only configs signed by one of its config signers ({})", list(.signers))]
    Unsigned {
        /// The agent's signers.
        signers: Vec<PublicKey>,
    },
    /// The signature is not its key's signature of this text, version and cluster.
    #[error("signature does not verify: key {key} did not sign version {version} of this config text for cluster {cluster_id:?}")]
    BadSignature {
        /// The key the signature names.
        key: PublicKey,
        /// The version checked.
        version: u64,
        /// The cluster id checked.
        cluster_id: String,
    },
    /// A valid signature, by a key that is not one of the agent's signers.
    #[error("signed by key {key}, which is not one of this agent's config signers ({})", list(.signers))]
    UnknownSigner {
        /// The key that signed.
        key: PublicKey,
        /// The agent's signers.
        signers: Vec<PublicKey>,
    },
}

impl Refusal {
    /// The `reason` label of `herd_config_rejected_total`: `unsigned`, `bad_signature` or
    /// `unknown_signer`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Unsigned { .. } => "unsigned",
            Refusal::BadSignature { .. } => "bad_signature",
            Refusal::UnknownSigner { .. } => "unknown_signer",
        }
    }

    /// Every [`reason`](Self::reason) there is.
    pub const REASONS: [&'static str; 3] = ["unsigned", "bad_signature", "unknown_signer"];
}

fn list(keys: &[PublicKey]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The keys whose configs an agent adopts. Empty: every config (an unsigned cluster).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signers(Vec<PublicKey>);

impl Signers {
    /// Signers from a list of keys (duplicates dropped, order kept).
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Signers {
        let mut list: Vec<PublicKey> = Vec::new();
        for key in keys {
            if !list.contains(&key) {
                list.push(key);
            }
        }
        Signers(list)
    }

    /// Whether any signer is configured (configs must then be signed).
    pub fn required(&self) -> bool {
        !self.0.is_empty()
    }

    /// The keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.0
    }

    /// Whether an agent with these signers may adopt version `version` of `text` carrying
    /// `signature`, in cluster `cluster_id`. With no signers every config passes.
    ///
    /// # Errors
    /// Why not: unsigned, a signature that does not verify, a key that is not a signer.
    pub fn check(
        &self,
        signature: Option<&ConfigSignature>,
        cluster_id: &str,
        version: u64,
        text: &str,
    ) -> Result<(), Refusal> {
        if !self.required() {
            return Ok(());
        }
        let signature = signature.ok_or_else(|| Refusal::Unsigned {
            signers: self.0.clone(),
        })?;
        verify(signature, cluster_id, version, text)?;
        if !self.0.contains(&signature.key) {
            return Err(Refusal::UnknownSigner {
                key: signature.key,
                signers: self.0.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "signature_tests.rs"]
mod tests;
