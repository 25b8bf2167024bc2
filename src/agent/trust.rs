//! Which configs this agent adopts: the signer check ([`Signers::check`]) applied where configs
//! come in, before anything is adopted, persisted or reconciled. Owned by the core task.
//!
//! - **Pushes** (`PUT /v1/config`): a refused push is answered with the refusal and changes
//!   nothing; it is counted in `herd_config_push_refused_total{reason}`. A signed push to an
//!   agent without signers is still verified against the key it names.
//! - **Gossip**: an offer that is refused is ignored and counted once in
//!   `herd_config_rejected_total{reason}`; the refusal is remembered per (node, version,
//!   encoding), so a peer that keeps offering it costs neither a decode nor a count again.
//! - **The data dir**: a stored config that is refused (its signer was removed from the list,
//!   say) is not run; the node waits for a config signed by a current signer.
//!
//! Refusals are logged at most once per [`LOG_EVERY`], with the number left unlogged since.
//! Without signers, gossip and the data dir are taken as before signed configs existed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use super::metrics::Metrics;
use crate::config::signature::verify;
use crate::config::{ConfigSignature, Refusal, Signers, VersionedConfig};
use crate::node::published::NodeKeys;

/// At most one refusal is logged per this long.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);
/// Refused offers remembered; past this many the memory starts over.
const REMEMBERED: usize = 1024;

/// The signer check and its bookkeeping: see the module docs.
pub(crate) struct Trust {
    signers: Signers,
    cluster_id: String,
    node_id: String,
    metrics: Arc<Metrics>,
    /// Refused offers: (node id, version in its head, CRC-32 of its whole encoding).
    refused: BTreeSet<(String, u64, u32)>,
    log: LogLimit,
}

impl Trust {
    pub(crate) fn new(
        signers: Signers,
        cluster_id: String,
        node_id: String,
        metrics: Arc<Metrics>,
    ) -> Trust {
        Trust {
            signers,
            cluster_id,
            node_id,
            metrics,
            refused: BTreeSet::new(),
            log: LogLimit::default(),
        }
    }

    /// Whether configs must be signed by one of this agent's signers.
    pub(crate) fn required(&self) -> bool {
        self.signers.required()
    }

    /// Checks a push of version `version` of `text`, signed or not.
    pub(crate) fn check_push(
        &mut self,
        signature: Option<&ConfigSignature>,
        version: u64,
        text: &str,
    ) -> Result<(), Refusal> {
        let result = match (self.signers.required(), signature) {
            (false, Some(signature)) => verify(signature, &self.cluster_id, version, text),
            _ => self
                .signers
                .check(signature, &self.cluster_id, version, text),
        };
        if let Err(refusal) = &result {
            self.metrics.config_push_refused(refusal);
            if let Some(unlogged) = self.log.allow(Instant::now()) {
                warn!(node = %self.node_id, version, reason = refusal.reason(), error = %refusal, unlogged, "config push refused");
            }
        }
        result
    }

    /// The config `node` offers in gossip (`encoded`, assembled from its chunks), if it decodes
    /// and passes the check. One that does not decode is skipped quietly (it may be mid-flight).
    pub(crate) fn read_offer(&mut self, node: &NodeKeys, encoded: &str) -> Option<VersionedConfig> {
        if !self.required() {
            return VersionedConfig::decode(encoded).ok();
        }
        let head_version = super::sync::head_of(node).map_or(0, |h| h.version);
        let memo = (
            node.id.clone(),
            head_version,
            crc32fast::hash(encoded.as_bytes()),
        );
        if self.refused.contains(&memo) {
            return None;
        }
        let offer = VersionedConfig::decode(encoded).ok()?;
        match self.check(&offer) {
            Ok(()) => Some(offer),
            Err(refusal) => {
                self.metrics.config_rejected(&refusal);
                if let Some(unlogged) = self.log.allow(Instant::now()) {
                    warn!(node = %self.node_id, from = %node.id, version = offer.version, reason = refusal.reason(), error = %refusal, unlogged, "ignoring a config from gossip");
                }
                if self.refused.len() >= REMEMBERED {
                    self.refused.clear();
                }
                self.refused.insert(memo);
                None
            }
        }
    }

    /// Whether the config restored from the data dir may run; logs why not.
    pub(crate) fn admit_stored(&mut self, config: &VersionedConfig) -> bool {
        match self.check(config) {
            Ok(()) => true,
            Err(refusal) => {
                self.metrics.config_rejected(&refusal);
                warn!(node = %self.node_id, version = config.version, reason = refusal.reason(), error = %refusal, "not running the cluster config stored in the data dir; waiting for a config signed by a current signer");
                false
            }
        }
    }

    fn check(&self, config: &VersionedConfig) -> Result<(), Refusal> {
        self.signers.check(
            config.signature.as_ref(),
            &self.cluster_id,
            config.version,
            &config.text,
        )
    }
}

/// One log line per [`LOG_EVERY`]; counts the lines it held back.
#[derive(Default)]
struct LogLimit {
    next: Option<Instant>,
    unlogged: u64,
}

impl LogLimit {
    /// `Some(lines held back since the last one)` if a line may be logged at `now`.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|next| now < next) {
            self.unlogged += 1;
            return None;
        }
        self.next = Some(now + LOG_EVERY);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_is_logged_per_period_and_the_rest_are_counted() {
        let mut log = LogLimit::default();
        let t0 = Instant::now();
        assert_eq!(log.allow(t0), Some(0));
        assert_eq!(log.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(log.allow(t0 + LOG_EVERY - Duration::from_millis(1)), None);
        assert_eq!(log.allow(t0 + LOG_EVERY), Some(2));
        assert_eq!(log.allow(t0 + LOG_EVERY), None);
    }
}
