//! [`HostRules`]: which `Host` headers and `Origin`s name this API. Pure functions, no I/O.
//!
//! A browser fetching from `http://evil.example:7947/` after the attacker's DNS has rebound
//! that name to 127.0.0.1 reaches the API with `Host: evil.example:7947`; a page of another
//! site posting to the API sends its own `Origin`. Both are refused by checking the header
//! against the names this API answers to:
//!
//! - the bound address itself, `ip:port` (`[ip]:port` for IPv6);
//! - `localhost`, with the bound port or none;
//! - a loopback address (`127.0.0.1`, `[::1]`, ...), with the bound port or none, when the
//!   API is bound to a loopback or the unspecified address (it then listens on loopback);
//! - each name listed with `--api-host`: `NAME` with any port or none, or exactly `NAME:PORT`.
//!
//! Names compare without regard to ASCII case. An `Origin` is allowed when it is `http://` or
//! `https://` followed by an allowed host (a TLS proxy in front of the API serves it as
//! `https`); `null` and anything else are refused.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The hosts one API answers to; see the module docs.
#[derive(Clone, Debug)]
pub struct HostRules {
    bound: SocketAddr,
    names: Vec<(String, Option<u16>)>,
}

impl HostRules {
    /// The rules of an API bound to `bound`, also answering to `names` (`NAME` or
    /// `NAME:PORT`, from `--api-host`). Refuses a name that is not a host or host:port,
    /// saying which.
    pub fn new(bound: SocketAddr, names: &[String]) -> Result<HostRules, String> {
        let names = names
            .iter()
            .map(|name| {
                split_authority(name).ok_or_else(|| {
                    format!(
                        "{name:?} is not a host name or host:port (like herd.example.com or \
                         10.0.0.5:7947)"
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(HostRules { bound, names })
    }

    /// Whether a `Host` header (or a URI's authority) names this API.
    pub fn allows_host(&self, authority: &str) -> bool {
        let Some((host, port)) = split_authority(authority) else {
            return false;
        };
        let bound_port = self.bound.port();
        let any_or_bound_port = port.is_none_or(|p| p == bound_port);
        let ip = host.parse::<IpAddr>().ok();
        if ip == Some(self.bound.ip()) && port == Some(bound_port) {
            return true;
        }
        if host == "localhost" && any_or_bound_port {
            return true;
        }
        let on_loopback = self.bound.ip().is_loopback() || self.bound.ip().is_unspecified();
        if on_loopback && ip.is_some_and(|ip| ip.is_loopback()) && any_or_bound_port {
            return true;
        }
        self.names
            .iter()
            .any(|(name, name_port)| *name == host && name_port.is_none_or(|p| port == Some(p)))
    }

    /// Whether an `Origin` header is this API's own origin: `http://` or `https://` and an
    /// allowed host.
    pub fn allows_origin(&self, origin: &str) -> bool {
        origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|authority| self.allows_host(authority))
    }
}

/// Splits `host[:port]` or `[ipv6][:port]` into the lower-cased host and the port. `None` for
/// anything else: an empty host, a bad port, a character no host name has (`/`, `@`, a space),
/// an IPv6 address without brackets.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            host.parse::<Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                after => Some(after.strip_prefix(':')?),
            };
            (host, port)
        }
        None => {
            let (host, port) = match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            if host.contains(':') {
                return None;
            }
            (host, port)
        }
    };
    let port = match port {
        None => None,
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            Some(port.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    let valid = |b: u8| b.is_ascii_alphanumeric() || b"-._:".contains(&b);
    if host.is_empty() || !host.bytes().all(valid) {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(bound: &str, names: &[&str]) -> HostRules {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        HostRules::new(bound.parse().unwrap(), &names).unwrap()
    }

    #[test]
    fn a_loopback_api_answers_to_its_address_localhost_and_loopback() {
        let r = rules("127.0.0.1:7947", &[]);
        for host in [
            "127.0.0.1:7947",
            "localhost:7947",
            "LOCALHOST",
            "localhost",
            "127.0.0.1",
            "[::1]:7947",
            "[::1]",
        ] {
            assert!(r.allows_host(host), "{host}");
        }
        for host in [
            "evil.example:7947",
            "evil.example",
            "localhost:80",
            "127.0.0.1:7948",
            "localhost.evil.example:7947",
            "127.0.0.1.evil.example",
            "10.0.0.5:7947",
            "",
            ":7947",
            "localhost:",
            "localhost:99999",
            "user@localhost:7947",
            "localhost:7947/x",
            "::1",
            "[::1]x",
            "[evil]:7947",
        ] {
            assert!(!r.allows_host(host), "{host}");
        }
    }

    #[test]
    fn a_public_api_answers_to_its_address_and_listed_names_only() {
        let r = rules("10.0.0.5:7947", &["herd.example.com", "proxy:443"]);
        for host in [
            "10.0.0.5:7947",
            "localhost:7947",
            "herd.example.com",
            "HERD.example.com:8080",
            "proxy:443",
        ] {
            assert!(r.allows_host(host), "{host}");
        }
        for host in [
            "10.0.0.5",
            "127.0.0.1:7947",
            "[::1]:7947",
            "proxy",
            "proxy:80",
        ] {
            assert!(!r.allows_host(host), "{host}");
        }
    }

    #[test]
    fn an_api_on_every_interface_also_answers_on_loopback() {
        let r = rules("0.0.0.0:7947", &[]);
        assert!(r.allows_host("127.0.0.1:7947"));
        assert!(r.allows_host("localhost:7947"));
        assert!(!r.allows_host("0.0.0.0:7948"));
        assert!(!r.allows_host("10.0.0.5:7947"), "list it with --api-host");
        let v6 = rules("[::1]:7947", &[]);
        assert!(v6.allows_host("[::1]:7947"));
        assert!(v6.allows_host("[0:0:0:0:0:0:0:1]:7947"));
    }

    #[test]
    fn only_the_apis_own_origins_are_allowed() {
        let r = rules("127.0.0.1:7947", &["herd.example.com"]);
        for origin in [
            "http://127.0.0.1:7947",
            "http://localhost:7947",
            "https://herd.example.com",
        ] {
            assert!(r.allows_origin(origin), "{origin}");
        }
        for origin in [
            "null",
            "http://evil.example",
            "http://evil.example:7947",
            "ftp://localhost:7947",
            "http://localhost:7947/",
            "127.0.0.1:7947",
            "",
        ] {
            assert!(!r.allows_origin(origin), "{origin}");
        }
    }

    #[test]
    fn a_listed_name_that_is_not_a_host_is_refused_naming_it() {
        let bound = "127.0.0.1:7947".parse().unwrap();
        for bad in ["", "http://herd", "herd/x", "herd:port", "two words"] {
            let err = HostRules::new(bound, &[bad.to_string()]).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        assert!(HostRules::new(bound, &["[fd00::1]:7947".into()]).is_ok());
    }
}
