//! The checks every API request passes before a handler sees it, as one axum middleware
//! applied in [`super::router`]. In order:
//!
//! 1. **Host** ([`HostRules`]): a `Host` that does not name this API is refused (403; DNS
//!    rebinding).
//! 2. **Origin and Content-Type**, for a POST, PUT, DELETE (any method that is not GET, HEAD,
//!    OPTIONS or TRACE): an `Origin` that is not this API's own, or a `Content-Type` that is not
//!    `application/json`, is refused (403; a page of another site can send neither without
//!    the browser asking first, and the API never says yes).
//! 3. **Body size**: a `Content-Length` over [`MAX_BODY`] is refused before any of the body is
//!    read (413); a body without one is cut off at [`MAX_BODY`] as a handler reads it (413).
//! 4. **Token**, when the agent has one: every request but `GET /` (the static page) and
//!    `GET /v1/health` needs `Authorization: Bearer <token>` (401 with `WWW-Authenticate:
//!    Bearer`), compared in constant time.
//!
//! Every refusal answers `{"error": "..."}` naming what was wrong, is counted in
//! `herd_api_rejected_total{reason}` ([`Refusal::reason`]), and is logged at most once a
//! minute per reason (the line says how many went unlogged since the last one).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::warn;

use super::host::HostRules;
use super::token::ApiToken;
use super::ApiError;
use crate::agent::Agent;

/// The largest request body the API takes, in bytes (4 MiB).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// At most one log line per reason in this long.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The most characters of a refused request's header or path that go into a log line or an
/// answer.
const SHOWN: usize = 100;

/// Why a request was refused; its [`reason`](Refusal::reason) labels the counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or the wrong one (401).
    Unauthorized,
    /// A `Host` that is not this API's (403).
    Host,
    /// A state-changing request from another origin (403).
    Origin,
    /// A state-changing request that is not `application/json` (403).
    ContentType,
    /// A body over [`MAX_BODY`] (413).
    TooLarge,
}

impl Refusal {
    /// Every refusal, in the order of [`Refusal::reason`]'s labels.
    pub const ALL: [Refusal; 5] = [
        Refusal::Unauthorized,
        Refusal::Host,
        Refusal::Origin,
        Refusal::ContentType,
        Refusal::TooLarge,
    ];

    /// The `reason` label: unauthorized, host, origin, content_type, too_large.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::Host => "host",
            Refusal::Origin => "origin",
            Refusal::ContentType => "content_type",
            Refusal::TooLarge => "too_large",
        }
    }

    /// The status it answers with.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::FORBIDDEN,
        }
    }
}

/// What the API lets in: the hosts it answers to and the token it asks for (none: no token
/// is asked for).
#[derive(Clone, Debug)]
pub struct Access {
    /// The hosts the API answers to.
    pub hosts: HostRules,
    /// The bearer token every request but `GET /` and `GET /v1/health` must carry.
    pub token: Option<ApiToken>,
}

impl Access {
    /// Decides on a request from its method, path and headers, in the order of the
    /// module docs; `Err` says which check refused it and why.
    pub fn decide(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        authority: Option<&str>,
    ) -> Result<(), (Refusal, String)> {
        let host = headers
            .get(header::HOST)
            .map(|h| h.to_str().unwrap_or("(not text)"))
            .or(authority);
        match host {
            None => return Err((Refusal::Host, "the request has no Host header".into())),
            Some(host) if !self.hosts.allows_host(host) => {
                return Err((
                    Refusal::Host,
                    format!(
                        "Host {:?} is not an address of this API; it answers to its own \
                         address, localhost, and the names given with --api-host",
                        shown(host)
                    ),
                ))
            }
            Some(_) => {}
        }
        if !method.is_safe() {
            if let Some(origin) = headers.get(header::ORIGIN) {
                let origin = origin.to_str().unwrap_or("(not text)");
                if !self.hosts.allows_origin(origin) {
                    return Err((
                        Refusal::Origin,
                        format!(
                            "cross-origin request refused: Origin {:?} is not this API's own",
                            shown(origin)
                        ),
                    ));
                }
            }
            if !headers.get(header::CONTENT_TYPE).is_some_and(is_json) {
                return Err((
                    Refusal::ContentType,
                    format!("a {method} needs the header Content-Type: application/json"),
                ));
            }
        }
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if length.is_some_and(|n| n > MAX_BODY as u64) {
            return Err((Refusal::TooLarge, too_large()));
        }
        let open =
            matches!(*method, Method::GET | Method::HEAD) && matches!(path, "/" | "/v1/health");
        if let (Some(token), false) = (&self.token, open) {
            match headers.get(header::AUTHORIZATION).and_then(bearer) {
                None => {
                    return Err((
                        Refusal::Unauthorized,
                        "this API needs a token: send the header Authorization: Bearer <token>"
                            .into(),
                    ))
                }
                Some(presented) if !token.matches(presented) => {
                    return Err((Refusal::Unauthorized, "wrong API token".into()))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

fn too_large() -> String {
    format!("the request body is over {MAX_BODY} bytes (4 MiB)")
}

/// Whether a `Content-Type` is `application/json` (any parameters, any case).
fn is_json(value: &HeaderValue) -> bool {
    value.to_str().ok().is_some_and(|v| {
        v.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case("application/json")
    })
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(value: &HeaderValue) -> Option<&[u8]> {
    let value = value.as_bytes();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| rest.trim_ascii())
}

/// At most [`SHOWN`] characters of `text`.
fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// The refusals logged per reason: when the last line was, and how many went unlogged since.
#[derive(Debug, Default)]
struct Throttle {
    state: Mutex<[(Option<Instant>, u64); 5]>,
}

impl Throttle {
    /// `Some(unlogged since the last line)` when a refusal for `refusal` may be logged at
    /// `now`; `None` (and one more unlogged) when one was logged less than [`LOG_EVERY`] ago.
    fn admit(&self, refusal: Refusal, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let index = Refusal::ALL.iter().position(|r| *r == refusal).unwrap_or(0);
        let (last, unlogged) = &mut state[index];
        if last.is_none_or(|last| now.saturating_duration_since(last) >= LOG_EVERY) {
            *last = Some(now);
            Some(std::mem::take(unlogged))
        } else {
            *unlogged += 1;
            None
        }
    }
}

/// The middleware's state: the access rules, the agent whose metrics count refusals, the
/// log throttle.
pub(super) struct Guard {
    access: Access,
    agent: Agent,
    throttle: Throttle,
}

impl Guard {
    pub(super) fn new(access: Access, agent: Agent) -> Arc<Guard> {
        Arc::new(Guard {
            access,
            agent,
            throttle: Throttle::default(),
        })
    }

    fn refuse(
        &self,
        refusal: Refusal,
        message: String,
        method: &Method,
        path: &str,
        peer: Option<SocketAddr>,
    ) -> Response {
        self.agent.metrics().api_rejected(refusal);
        if let Some(unlogged) = self.throttle.admit(refusal, Instant::now()) {
            let peer = peer.map(|p| p.to_string()).unwrap_or_default();
            warn!(
                reason = refusal.reason(),
                %method,
                path = %shown(path),
                %peer,
                detail = %message,
                unlogged,
                "refused an API request (logged at most once a minute per reason)"
            );
        }
        let mut response =
            ApiError::with_status(refusal.status().as_u16(), message).into_response();
        if refusal == Refusal::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The middleware: refuses what [`Access::decide`] refuses; counts and rewrites the 413 a
/// handler's body extractor answers when a body without a length runs past [`MAX_BODY`].
pub(super) async fn check(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let decided = guard.access.decide(
        &method,
        uri.path(),
        request.headers(),
        uri.authority().map(|a| a.as_str()),
    );
    if let Err((refusal, message)) = decided {
        return guard.refuse(refusal, message, &method, uri.path(), peer);
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return guard.refuse(Refusal::TooLarge, too_large(), &method, uri.path(), peer);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef";

    fn access(token: bool) -> Access {
        Access {
            hosts: HostRules::new("127.0.0.1:7947".parse().unwrap(), &[]).unwrap(),
            token: token.then(|| ApiToken::parse(TOKEN, std::path::Path::new("t")).unwrap()),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn refusal(
        access: &Access,
        method: Method,
        path: &str,
        pairs: &[(&'static str, &str)],
    ) -> Option<Refusal> {
        access
            .decide(&method, path, &headers(pairs), None)
            .err()
            .map(|(refusal, _)| refusal)
    }

    const HOST: (&str, &str) = ("host", "127.0.0.1:7947");
    const JSON: (&str, &str) = ("content-type", "application/json");
    const AUTH: (&str, &str) = ("authorization", "Bearer 0123456789abcdef");

    #[test]
    fn the_host_is_checked_first() {
        let a = access(true);
        assert_eq!(
            refusal(
                &a,
                Method::GET,
                "/v1/health",
                &[("host", "evil.example:7947")]
            ),
            Some(Refusal::Host)
        );
        assert_eq!(refusal(&a, Method::GET, "/", &[]), Some(Refusal::Host));
        let (_, message) = a
            .decide(
                &Method::GET,
                "/",
                &headers(&[("host", "evil.example")]),
                None,
            )
            .unwrap_err();
        assert!(message.contains("\"evil.example\""), "{message}");
        // Without a Host header, the URI's authority (HTTP/2) stands in for it.
        assert!(a
            .decide(&Method::GET, "/", &HeaderMap::new(), Some("localhost:7947"))
            .is_ok());
    }

    #[test]
    fn state_changes_need_their_own_origin_and_json() {
        let a = access(false);
        let post = |pairs: &[(&'static str, &str)]| refusal(&a, Method::POST, "/v1/x", pairs);
        assert_eq!(post(&[HOST]), Some(Refusal::ContentType));
        assert_eq!(
            post(&[HOST, ("content-type", "text/plain")]),
            Some(Refusal::ContentType)
        );
        assert_eq!(
            post(&[HOST, JSON, ("origin", "http://evil.example")]),
            Some(Refusal::Origin)
        );
        assert_eq!(
            post(&[HOST, JSON, ("origin", "null")]),
            Some(Refusal::Origin)
        );
        assert_eq!(
            post(&[HOST, ("content-type", "Application/JSON; charset=utf-8")]),
            None
        );
        assert_eq!(
            post(&[HOST, JSON, ("origin", "http://127.0.0.1:7947")]),
            None
        );
        for method in [Method::PUT, Method::DELETE, Method::PATCH] {
            assert_eq!(
                refusal(&a, method, "/v1/x", &[HOST]),
                Some(Refusal::ContentType)
            );
        }
        // Reads need neither.
        assert_eq!(
            refusal(
                &a,
                Method::GET,
                "/v1/x",
                &[HOST, ("origin", "http://evil.example")]
            ),
            None
        );
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_the_token() {
        let a = access(true);
        let over = (MAX_BODY + 1).to_string();
        let at = MAX_BODY.to_string();
        let put = |length: &str, auth: bool| {
            let mut pairs = vec![HOST, JSON, ("content-length", length)];
            if auth {
                pairs.push(AUTH);
            }
            refusal(&a, Method::PUT, "/v1/config", &pairs)
        };
        assert_eq!(put(&over, false), Some(Refusal::TooLarge));
        assert_eq!(put(&over, true), Some(Refusal::TooLarge));
        assert_eq!(put(&at, false), Some(Refusal::Unauthorized));
        assert_eq!(put(&at, true), None);
    }

    #[test]
    fn the_token_is_needed_everywhere_but_the_page_and_health() {
        let a = access(true);
        for path in ["/v1/members", "/metrics", "/nowhere"] {
            assert_eq!(
                refusal(&a, Method::GET, path, &[HOST]),
                Some(Refusal::Unauthorized)
            );
        }
        for auth in [
            "Bearer wrong",
            "Basic 0123456789abcdef",
            "Bearer",
            "0123456789abcdef",
        ] {
            assert_eq!(
                refusal(
                    &a,
                    Method::GET,
                    "/v1/members",
                    &[HOST, ("authorization", auth)]
                ),
                Some(Refusal::Unauthorized),
                "{auth}"
            );
        }
        assert_eq!(refusal(&a, Method::GET, "/v1/members", &[HOST, AUTH]), None);
        assert_eq!(
            refusal(
                &a,
                Method::GET,
                "/v1/members",
                &[HOST, ("authorization", "bearer  0123456789abcdef ")]
            ),
            None
        );
        for path in ["/", "/v1/health"] {
            assert_eq!(refusal(&a, Method::GET, path, &[HOST]), None);
            assert_eq!(
                refusal(&a, Method::POST, path, &[HOST, JSON]),
                Some(Refusal::Unauthorized)
            );
        }
        assert_eq!(
            refusal(&access(false), Method::GET, "/v1/members", &[HOST]),
            None
        );
    }

    #[test]
    fn refusals_are_logged_once_a_minute_per_reason() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(throttle.admit(Refusal::Host, t0), Some(0));
        assert_eq!(
            throttle.admit(Refusal::Host, t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            throttle.admit(Refusal::Origin, t0 + Duration::from_secs(1)),
            Some(0)
        );
        assert_eq!(
            throttle.admit(Refusal::Host, t0 + Duration::from_secs(59)),
            None
        );
        assert_eq!(throttle.admit(Refusal::Host, t0 + LOG_EVERY), Some(2));
        assert_eq!(throttle.admit(Refusal::Host, t0 + LOG_EVERY), None);
    }

    #[test]
    fn long_values_are_cut_in_answers() {
        let a = access(false);
        let long = "x".repeat(500);
        let (_, message) = a
            .decide(&Method::GET, "/", &headers(&[("host", &long)]), None)
            .unwrap_err();
        assert!(message.len() < 300, "{message}");
    }
}
