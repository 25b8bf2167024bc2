//! `GET /v1/workers/{name}/logs?node=ID&tail=N&since=SEQ&follow=1`: a worker's output, on
//! any node.
//!
//! - `node`: the node whose worker is read; without it, this node if it has the worker, else
//!   the first node whose gossiped status lists it running (else listing it at all); 404 when
//!   none does.
//! - `tail`: the last N lines (default 100, at most
//!   [`MAX_LOG_LINES`](crate::supervisor::MAX_LOG_LINES); more is a 400).
//! - `since`: the lines from number SEQ on (a previous answer's `next`) instead of a tail.
//! - `follow=1`: after the first lines, new lines as they come.
//!
//! Without `follow` the answer is one JSON object: `{"node", "worker", "lines": [{"seq"?,
//! "stream", "time_ms", "text"}], "next", "missed", "source"}` (see
//! [`LogBatch`](crate::supervisor::LogBatch)). With `follow=1` it is newline-delimited JSON
//! (`application/x-ndjson`), one object per line: each output line as `{"seq"?, "stream",
//! "time_ms", "text"}`; `{"missed": N}` when N lines went by before they could be read;
//! `{"error": "..."}` as the last line when the worker's node stops answering; an empty line
//! as a keep-alive after 5 s without output. New lines are asked for every
//! [`FOLLOW_INTERVAL`] (from another node: a `Logs` request with the cursor each time); the
//! stream ends when the client goes away or the API stops. At most
//! [`MAX_FOLLOWERS`](crate::agent::MAX_FOLLOWERS) follow at once (503 beyond).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::{query, ApiError};
use crate::agent::{Agent, FOLLOW_INTERVAL};
use crate::supervisor::{LogBatch, LogQuery, MAX_LOG_LINES};

/// Lines of a tail when `tail` is not given.
pub const DEFAULT_TAIL: usize = 100;
/// Polls without output before a keep-alive line (5 s).
const KEEPALIVE_POLLS: u32 = 25;

/// A `0|1|true|false` query flag, absent meaning false.
pub(super) fn flag(params: &HashMap<String, String>, key: &str) -> Result<bool, ApiError> {
    match params.get(key).map(String::as_str) {
        None | Some("0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key}={other:?}: expected 1 or 0"
        ))),
    }
}

/// The query of a logs request, checked.
fn log_query(params: &HashMap<String, String>) -> Result<LogQuery, ApiError> {
    let tail = match params.get("tail") {
        None => DEFAULT_TAIL,
        Some(text) => text.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!(
                "tail={text:?}: expected a number of lines, 0 to {MAX_LOG_LINES}"
            ))
        })?,
    };
    if tail > MAX_LOG_LINES {
        return Err(ApiError::bad_request(format!(
            "tail={tail} is more than the {MAX_LOG_LINES} lines one request may ask for"
        )));
    }
    let since = match params.get("since") {
        None => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "since={text:?}: expected a line number (a previous answer's \"next\")"
            ))
        })?),
    };
    Ok(LogQuery { tail, since })
}

pub(super) async fn logs(
    State(agent): State<Agent>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    query(&params, &["node", "tail", "since", "follow"])?;
    let log_query = log_query(&params)?;
    let follow = flag(&params, "follow")?;
    let node = match params.get("node") {
        Some(node) => node.clone(),
        None => agent
            .logs_node(&name)
            .await
            .map_err(|(code, message)| ApiError::with_status(code, message))?,
    };
    let permit = match follow {
        true => Some(follow_permit(&agent, "logs")?),
        false => None,
    };
    let batch = agent
        .logs_on(&node, &name, log_query)
        .await
        .map_err(|(code, message)| ApiError::with_status(code, message))?;
    let Some(permit) = permit else {
        return Ok(Json(json!({
            "node": node,
            "worker": name,
            "lines": batch.lines,
            "next": batch.next,
            "missed": batch.missed,
            "source": batch.source,
        }))
        .into_response());
    };
    let stop = agent.api_stopping();
    let mut follower = Follower {
        agent,
        node,
        worker: name,
        next: batch.next,
        pending: VecDeque::new(),
        done: false,
        quiet: 0,
        stop,
        _permit: permit,
    };
    follower.queue(batch);
    Ok(ndjson(follower, |mut f| async move {
        f.next_chunk().await.map(|chunk| (chunk, f))
    }))
}

/// A newline-delimited JSON answer whose chunks `step` makes from `state`, until it gives `None`.
pub(super) fn ndjson<T, F, Fut>(state: T, step: F) -> Response
where
    T: Send + 'static,
    F: FnMut(T) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<(Bytes, T)>> + Send + 'static,
{
    use futures::StreamExt as _;
    let stream = futures::stream::unfold(state, step).map(Ok::<_, Infallible>);
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `{"missed": N}` (when N > 0) and each item, one JSON line each; `None` when that is nothing.
pub(super) fn ndjson_chunk<T: serde::Serialize>(missed: u64, items: &[T]) -> Option<Bytes> {
    let mut chunk = Vec::new();
    if missed > 0 {
        chunk.extend_from_slice(json!({ "missed": missed }).to_string().as_bytes());
        chunk.push(b'\n');
    }
    for item in items {
        if serde_json::to_writer(&mut chunk, item).is_ok() {
            chunk.push(b'\n');
        }
    }
    (!chunk.is_empty()).then(|| chunk.into())
}

/// A permit to follow a stream, or the 503 that says all are taken.
pub(super) fn follow_permit(agent: &Agent, what: &str) -> Result<OwnedSemaphorePermit, ApiError> {
    agent.follow_permit().ok_or_else(|| {
        ApiError::with_status(
            503,
            format!(
                "{} {what} are followed through this agent already; try again later",
                crate::agent::MAX_FOLLOWERS
            ),
        )
    })
}

/// One follow stream's state; dropping it (the client went away) gives its permit back.
struct Follower {
    agent: Agent,
    node: String,
    worker: String,
    next: u64,
    pending: VecDeque<Bytes>,
    done: bool,
    quiet: u32,
    stop: CancellationToken,
    _permit: OwnedSemaphorePermit,
}

impl Follower {
    fn queue(&mut self, batch: LogBatch) {
        self.next = batch.next;
        if let Some(chunk) = ndjson_chunk(batch.missed, &batch.lines) {
            self.quiet = 0;
            self.pending.push_back(chunk);
        }
    }

    /// The next bytes to send; `None` ends the stream.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some(chunk);
            }
            if self.done {
                return None;
            }
            tokio::select! {
                _ = self.stop.cancelled() => return None,
                _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
            }
            let since = LogQuery {
                tail: 0,
                since: Some(self.next),
            };
            match self.agent.logs_on(&self.node, &self.worker, since).await {
                Ok(batch) => self.queue(batch),
                Err((_, message)) => {
                    let mut line = json!({ "error": message }).to_string();
                    line.push('\n');
                    self.pending.push_back(line.into());
                    self.done = true;
                }
            }
            self.quiet += 1;
            if self.quiet >= KEEPALIVE_POLLS && self.pending.is_empty() {
                self.quiet = 0;
                return Some(Bytes::from_static(b"\n"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_tail_over_the_limit_or_not_a_number_is_refused_naming_it() {
        let err = log_query(&params(&[("tail", "10001")])).unwrap_err();
        assert_eq!(err.status(), 400);
        let err = log_query(&params(&[("tail", "many")])).unwrap_err();
        assert_eq!(err.status(), 400);
        let q = log_query(&params(&[])).unwrap();
        assert_eq!((q.tail, q.since), (DEFAULT_TAIL, None));
        let q = log_query(&params(&[("tail", "5"), ("since", "7")])).unwrap();
        assert_eq!((q.tail, q.since), (5, Some(7)));
        assert!(flag(&params(&[("follow", "yes")]), "follow").is_err());
    }
}
