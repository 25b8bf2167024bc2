//! Pushes, as plain functions and one report: the version a push takes, and what a node says
//! when a config it accepted loses to one accepted elsewhere without knowing it.
//!
//! The model: the cluster config is available, not linearizable. Any agent accepts a push once
//! its view is fresh ([`super::view`]) and gives it the next version after the highest it knows;
//! two agents may accept pushes at the same time, and the one that wins everywhere is the one
//! [`VersionedConfig::supersedes`] picks (the higher version; at equal versions the higher
//! checksum, then the accepting node's id). The other is not lost silently: the node that
//! accepted it logs a warning and counts it in `herd_config_superseded_total`, and
//! `herd config push --wait` names the winner.

use tracing::warn;

use super::metrics::Metrics;
use super::AgentError;
use crate::config::VersionedConfig;

/// The version a push takes when the highest this node knows is `highest`: the one it is signed
/// for (which must be above `highest`; checked after the signature), else `highest + 1`.
///
/// # Errors
/// [`AgentError::VersionOverflow`] when no version is above `highest`; nothing changes.
pub(crate) fn next_version(highest: u64, signed: Option<u64>) -> Result<u64, AgentError> {
    if highest == u64::MAX {
        return Err(AgentError::VersionOverflow { current: highest });
    }
    match signed {
        Some(version) => Ok(version),
        None => highest
            .checked_add(1)
            .ok_or(AgentError::VersionOverflow { current: highest }),
    }
}

/// Whether adopting `winner` in place of `held` means a push node `me` accepted was lost: `held`
/// was accepted here and `winner` was accepted elsewhere without knowing it
/// ([`VersionedConfig::made_without`]). A later push built on ours is not a loss.
pub(crate) fn lost_to(me: &str, held: &VersionedConfig, winner: &VersionedConfig) -> bool {
    held.pushed_by == me && winner.supersedes(held) && winner.made_without(held)
}

/// Logs and counts a push of this node that `winner` superseded.
pub(crate) fn report_superseded(
    me: &str,
    ours: &VersionedConfig,
    winner: &VersionedConfig,
    metrics: &Metrics,
) {
    metrics.config_superseded();
    warn!(
        node = %me,
        version = ours.version,
        checksum = ours.checksum,
        winner_version = winner.version,
        winner_checksum = winner.checksum,
        winner_pushed_by = %winner.pushed_by,
        "a config pushed through this node was superseded by a concurrent push; the cluster runs the winner"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigId;

    fn config(version: u64, text: &str, by: &str) -> VersionedConfig {
        VersionedConfig::new(version, text, by, 0).unwrap()
    }

    #[test]
    fn the_next_version_is_one_up_and_an_overflow_is_an_error() {
        assert_eq!(next_version(0, None).unwrap(), 1);
        assert_eq!(next_version(41, None).unwrap(), 42);
        assert_eq!(next_version(41, Some(50)).unwrap(), 50);
        for signed in [None, Some(u64::MAX)] {
            let err = next_version(u64::MAX, signed).unwrap_err();
            assert!(
                matches!(err, AgentError::VersionOverflow { current: u64::MAX }),
                "{err}"
            );
            assert!(err.to_string().contains("18446744073709551615"), "{err}");
        }
    }

    #[test]
    fn only_a_push_of_ours_beaten_by_one_made_without_it_is_lost() {
        let a_text = "[[worker]]\nname = \"a\"\ncommand = \"true\"\n";
        let ours = config(5, a_text, "a").with_parent(ConfigId::NONE);
        let rival = config(5, "", "b").with_parent(ConfigId::NONE);
        let (ours, rival) = if rival.supersedes(&ours) {
            (ours, rival)
        } else {
            (
                config(5, "", "a").with_parent(ConfigId::NONE),
                config(5, a_text, "b").with_parent(ConfigId::NONE),
            )
        };
        assert!(lost_to("a", &ours, &rival));
        assert!(!lost_to("b", &ours, &rival), "not pushed here");
        assert!(!lost_to("b", &rival, &ours), "ours does not beat theirs");
        let successor = config(6, "", "b").with_parent(ours.id());
        assert!(!lost_to("a", &ours, &successor), "built on ours");
    }
}
