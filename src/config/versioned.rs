//! [`VersionedConfig`]: a cluster config with its version, author, time and
//! checksum; its text encoding, used on disk and in gossip; which of two wins.
//!
//! The encoding is one line of JSON header, a newline, then the config text
//! exactly as pushed:
//!
//! ```text
//! {"herd_config":1,"version":7,"pushed_by":"node-a","pushed_at_ms":1700000000000,"checksum":305419896,"len":412}
//! [[worker]]
//! name = "thumbnailer"
//! ...
//! ```
//!
//! A config accepted by a build that records it has `"parent":{"version":N,"checksum":C}`,
//! the config the accepting node held then (version 0, checksum 0: none); it tells a push that
//! built on another from one made without knowing it ([`VersionedConfig::parent`]).
//!
//! A signed config (see [`super::signature`]) has one more header field,
//! `"signature":{"key":"<base64>","sig":"<base64>"}`; an unsigned one has none,
//! so unsigned encodings are byte for byte what they were before signatures, and
//! a build that does not know the field reads the rest of the header as before.
//!
//! Decoding checks the format, the length (a cut payload is "truncated"), the
//! CRC-32 of the text, that a signature (if any) is readable, and parses the
//! config again. Whether the signature verifies, and whether its key is trusted,
//! is the agent's check ([`super::signature::Signers::check`]), not decoding's.

use serde::{Deserialize, Serialize};

use super::cluster::ClusterConfig;
use super::error::ConfigError;
use super::signature::{ConfigSignature, KeyError, SignatureText};

/// The origin named in errors about a config that arrived by push or gossip.
pub const PUSHED_ORIGIN: &str = "pushed config";
/// The encoding's format number, written in every header.
pub const ENCODING_FORMAT: u32 = 1;

/// A validated cluster config with the version it was pushed as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionedConfig {
    /// Version; a higher one supersedes a lower one everywhere.
    pub version: u64,
    /// Id of the node whose API accepted the push.
    pub pushed_by: String,
    /// When the push was accepted, in milliseconds since the Unix epoch.
    pub pushed_at_ms: u64,
    /// The config text exactly as pushed.
    pub text: String,
    /// CRC-32 (IEEE) of `text`.
    pub checksum: u32,
    /// The signer's signature of this version of `text`, if the push was signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<ConfigSignature>,
    /// The config the accepting node held when it accepted the push ([`ConfigId::NONE`]: none);
    /// `None` when the encoding does not say (written by a build that did not record it).
    /// Not signed, and not part of the checksum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<ConfigId>,
    config: ClusterConfig,
}

/// Names one config: its version and the checksum of its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConfigId {
    /// The config's version.
    pub version: u64,
    /// CRC-32 (IEEE) of its text.
    pub checksum: u32,
}

impl ConfigId {
    /// No config at all: the parent of a push accepted by a node that held none.
    pub const NONE: ConfigId = ConfigId {
        version: 0,
        checksum: 0,
    };

    /// Whether config `winner` (which supersedes this one), accepted by a node that held
    /// `parent` then, was accepted without knowing this config: at the same version (two pushes
    /// both took it), or with a parent older than this config or another config at its version.
    /// A winner built on this config or a newer one was not; nor is one whose parent is unknown,
    /// unless the versions are equal.
    pub fn unknown_to(self, winner: ConfigId, parent: Option<ConfigId>) -> bool {
        if winner.version == self.version {
            return true;
        }
        parent.is_some_and(|parent| {
            parent.version < self.version
                || (parent.version == self.version && parent.checksum != self.checksum)
        })
    }
}

/// Why an encoded config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No newline: there is no complete header line.
    #[error("no header line (the payload is empty or cut inside its header)")]
    MissingHeader,
    /// The header line is not the expected JSON.
    #[error("unreadable header {header:?}: {reason}")]
    Header {
        /// The header line (shortened).
        header: String,
        /// What the JSON reader said.
        reason: String,
    },
    /// The header declares a format this build does not read.
    #[error("unsupported format {found} (this build reads format {ENCODING_FORMAT})")]
    Format {
        /// The declared format.
        found: u32,
    },
    /// Fewer bytes of text than the header announces.
    #[error(
        "truncated: the header announces {expected} bytes of config text, only {found} follow"
    )]
    Truncated {
        /// Bytes announced.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// More bytes of text than the header announces.
    #[error("{found} bytes of config text follow the header, which announces {expected}")]
    TrailingBytes {
        /// Bytes announced.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The text does not hash to the checksum in the header.
    #[error("checksum mismatch: the header says {expected:08x}, the text hashes to {found:08x}")]
    Checksum {
        /// Checksum in the header.
        expected: u32,
        /// Checksum of the text present.
        found: u32,
    },
    /// The text is intact but is not a valid cluster config.
    #[error("the config text is invalid: {0}")]
    Invalid(#[from] ConfigError),
    /// The header's signature cannot be read (whether it verifies is not checked here).
    #[error("unreadable signature in the header: {0}")]
    Signature(#[from] KeyError),
}

#[derive(Serialize, Deserialize)]
struct Header {
    herd_config: u32,
    version: u64,
    pushed_by: String,
    pushed_at_ms: u64,
    checksum: u32,
    len: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<SignatureText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<ConfigId>,
}

impl VersionedConfig {
    /// Validates `text` (errors name [`PUSHED_ORIGIN`]) and stamps it with a version.
    pub fn new(
        version: u64,
        text: impl Into<String>,
        pushed_by: impl Into<String>,
        pushed_at_ms: u64,
    ) -> Result<VersionedConfig, ConfigError> {
        let text = text.into();
        let config = ClusterConfig::parse(&text, PUSHED_ORIGIN)?;
        Ok(VersionedConfig {
            version,
            pushed_by: pushed_by.into(),
            pushed_at_ms,
            checksum: crc32fast::hash(text.as_bytes()),
            text,
            signature: None,
            parent: None,
            config,
        })
    }

    /// This config carrying `signature` (made with [`super::signature::sign`] over this
    /// version and text; whether it verifies is checked where the config is adopted).
    pub fn with_signature(mut self, signature: ConfigSignature) -> VersionedConfig {
        self.signature = Some(signature);
        self
    }

    /// This config recording `parent` as the config its accepting node held.
    pub fn with_parent(mut self, parent: ConfigId) -> VersionedConfig {
        self.parent = Some(parent);
        self
    }

    /// This config's version and checksum.
    pub fn id(&self) -> ConfigId {
        ConfigId {
            version: self.version,
            checksum: self.checksum,
        }
    }

    /// Whether this config, which supersedes `other`, was accepted without knowing `other`
    /// ([`ConfigId::unknown_to`], with this config's [`parent`](Self::parent)).
    pub fn made_without(&self, other: &VersionedConfig) -> bool {
        other.id().unknown_to(self.id(), self.parent)
    }

    /// The parsed config.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Whether this config should replace `other`: the higher version wins; at
    /// equal versions the higher checksum, then the accepting node's id (`pushed_by`), time,
    /// text and parent decide, so every node picks the same winner. A config never supersedes
    /// an equal one.
    pub fn supersedes(&self, other: &VersionedConfig) -> bool {
        self.rank() > other.rank()
    }

    fn rank(&self) -> (u64, u32, &str, u64, &str, Option<ConfigId>) {
        (
            self.version,
            self.checksum,
            &self.pushed_by,
            self.pushed_at_ms,
            &self.text,
            self.parent,
        )
    }

    /// The header line, a newline, then the text.
    pub fn encode(&self) -> String {
        let header = Header {
            herd_config: ENCODING_FORMAT,
            version: self.version,
            pushed_by: self.pushed_by.clone(),
            pushed_at_ms: self.pushed_at_ms,
            checksum: self.checksum,
            len: self.text.len(),
            signature: self.signature.as_ref().map(ConfigSignature::to_text),
            parent: self.parent,
        };
        // A struct of strings and integers always serializes.
        let header = serde_json::to_string(&header).unwrap_or_default();
        let mut out = String::with_capacity(header.len() + 1 + self.text.len());
        out.push_str(&header);
        out.push('\n');
        out.push_str(&self.text);
        out
    }

    /// Reads what [`encode`](Self::encode) wrote, checking length, checksum and config.
    pub fn decode(encoded: &str) -> Result<VersionedConfig, DecodeError> {
        let (line, text) = encoded.split_once('\n').ok_or(DecodeError::MissingHeader)?;
        let header: Header = serde_json::from_str(line).map_err(|err| DecodeError::Header {
            header: shorten(line),
            reason: err.to_string(),
        })?;
        if header.herd_config != ENCODING_FORMAT {
            return Err(DecodeError::Format {
                found: header.herd_config,
            });
        }
        let (expected, found) = (header.len, text.len());
        if found < expected {
            return Err(DecodeError::Truncated { expected, found });
        }
        if found > expected {
            return Err(DecodeError::TrailingBytes { expected, found });
        }
        let checksum = crc32fast::hash(text.as_bytes());
        if checksum != header.checksum {
            return Err(DecodeError::Checksum {
                expected: header.checksum,
                found: checksum,
            });
        }
        let signature = header
            .signature
            .as_ref()
            .map(ConfigSignature::parse)
            .transpose()?;
        let mut config =
            VersionedConfig::new(header.version, text, header.pushed_by, header.pushed_at_ms)?;
        config.signature = signature;
        config.parent = header.parent;
        Ok(config)
    }
}

fn shorten(line: &str) -> String {
    match line.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
#[path = "versioned_tests.rs"]
mod tests;
