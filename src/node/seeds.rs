//! Seed addresses: checked at start so that a typo is an error naming the seed, not a node that
//! waits forever. Host names are resolved once here to prove they resolve; chitchat resolves them
//! again every minute, so a seed behind DNS (a Kubernetes headless service) can move.
//!
//! chitchat stops gossiping with seeds as soon as one of them answers, so a node given the seeds
//! of two clusters that do not know each other would join only one. [`contact_every_seed`] makes
//! a node joining through several seeds reach every one of them, as `serf join a b` does: it
//! starts an exchange with each seed address that is not yet a live member's, every gossip
//! round, until all are or [`SEED_CONTACT_WINDOW`] has passed.

use std::net::SocketAddr;

use std::time::Duration;

use tokio::net::lookup_host;
use tokio_util::sync::CancellationToken;

use super::WeakNode;
use crate::Error;

/// How long a starting node keeps reaching for seeds that are not yet live members.
pub(crate) const SEED_CONTACT_WINDOW: Duration = Duration::from_secs(30);

/// A seed that passed the check: as given (for chitchat) and what it resolved to.
#[derive(Clone, Debug)]
pub(crate) struct Seed {
    pub(crate) given: String,
    pub(crate) addrs: Vec<SocketAddr>,
}

/// Checks the form `ip:port` or `host:port` without touching the network.
pub(crate) fn check_form(seed: &str) -> Result<Option<SocketAddr>, Error> {
    let invalid = |reason: &str| Error::InvalidSeed {
        seed: seed.to_string(),
        reason: reason.to_string(),
    };
    if let Ok(addr) = seed.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(invalid("port 0 cannot be a seed's port"));
        }
        return Ok(Some(addr));
    }
    let (host, port) = seed
        .rsplit_once(':')
        .ok_or_else(|| invalid("expected host:port or ip:port"))?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(invalid("the host is empty or contains spaces"));
    }
    match port.parse::<u16>() {
        Ok(0) => Err(invalid("port 0 cannot be a seed's port")),
        Ok(_) => Ok(None),
        Err(_) => Err(invalid("the port is not a number from 1 to 65535")),
    }
}

/// Checks and resolves every seed.
pub(crate) async fn resolve(seeds: &[String]) -> Result<Vec<Seed>, Error> {
    let mut resolved = Vec::with_capacity(seeds.len());
    for given in seeds {
        let addrs = match check_form(given)? {
            Some(addr) => vec![addr],
            None => lookup_host(given.as_str())
                .await
                .map_err(|err| Error::InvalidSeed {
                    seed: given.clone(),
                    reason: format!("the host name does not resolve: {err}"),
                })?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(Error::InvalidSeed {
                seed: given.clone(),
                reason: "the host name resolves to no address".into(),
            });
        }
        resolved.push(Seed {
            given: given.clone(),
            addrs,
        });
    }
    Ok(resolved)
}

/// Starts an exchange with every address in `addrs` that is not the gossip address of a live
/// node, once per `interval`, until each is or [`SEED_CONTACT_WINDOW`] has passed (at most
/// `SEED_CONTACT_WINDOW / interval` rounds), the node stops, or `cancel` fires.
pub(crate) async fn contact_every_seed(
    node: WeakNode,
    addrs: Vec<SocketAddr>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let interval = interval.max(Duration::from_millis(10));
    let rounds = (SEED_CONTACT_WINDOW.as_millis() / interval.as_millis()).max(1);
    for _ in 0..rounds {
        let Some(node) = node.upgrade() else { return };
        if node.inner.gossip_with_unreached(&addrs).await == 0 {
            return;
        }
        drop(node);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_and_host_forms_are_accepted() {
        assert_eq!(
            check_form("127.0.0.1:7000").unwrap(),
            Some("127.0.0.1:7000".parse().unwrap())
        );
        assert_eq!(
            check_form("[::1]:7000").unwrap(),
            Some("[::1]:7000".parse().unwrap())
        );
        assert_eq!(check_form("herd-0.herd.default.svc:7946").unwrap(), None);
    }

    #[test]
    fn malformed_seeds_are_errors_that_name_the_seed() {
        for bad in [
            "127.0.0.1",
            "localhost:http",
            ":7000",
            "127.0.0.1:0",
            "a b:1",
            "host:99999",
        ] {
            let err = check_form(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[tokio::test]
    async fn an_unresolvable_host_is_an_error_naming_it() {
        let err = resolve(&["no-such-host.invalid:7000".into()])
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("no-such-host.invalid:7000"),
            "{err}"
        );
    }
}
