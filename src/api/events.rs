//! `GET /v1/events?since=SEQ&follow=1`: this agent's event stream ([`crate::agent::events`]).
//!
//! - `since`: the events numbered above SEQ (a previous answer's `next`, or the last `seq` a
//!   follower read). Without it: every event the log holds, or with `follow=1` only events
//!   from now on. A SEQ beyond the newest (from before the agent restarted) reads from the
//!   oldest.
//! - `follow=1`: after the events asked for, new ones as they happen.
//!
//! Without `follow` the answer is one JSON object `{"events": [...], "next", "missed"}`:
//! `missed` counts the events after `since` that the log (the last
//! [`EVENT_BUFFER`](crate::agent::events::EVENT_BUFFER)) no longer holds. With `follow=1` it
//! is newline-delimited JSON (`application/x-ndjson`): one event per line, as it is recorded;
//! `{"missed": N}` when N events went by before they could be sent; an empty line as a
//! keep-alive after 5 s without events. The stream ends when the client goes away or the API
//! stops. Followers of events and of logs share the agent's
//! [`MAX_FOLLOWERS`](crate::agent::MAX_FOLLOWERS) permits (503 beyond).

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::logs::{flag, follow_permit, ndjson, ndjson_chunk};
use super::{query, ApiError};
use crate::agent::events::{EventLog, EVENT_BUFFER};
use crate::agent::Agent;

/// How long a follow stream stays silent before it sends a keep-alive line.
const KEEPALIVE: Duration = Duration::from_secs(5);

pub(super) async fn events(
    State(agent): State<Agent>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    query(&params, &["since", "follow"])?;
    let since = match params.get("since") {
        None => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "since={text:?}: expected an event number (a previous answer's \"next\")"
            ))
        })?),
    };
    let log = agent.events().clone();
    if !flag(&params, "follow")? {
        let batch = log.since(since.unwrap_or(0), EVENT_BUFFER);
        return Ok(Json(json!({
            "events": batch.events,
            "next": batch.next,
            "missed": batch.missed,
        }))
        .into_response());
    }
    let permit = follow_permit(&agent, "streams")?;
    // Subscribed before reading where to start, so no event falls between the two.
    let newest = log.watch();
    let next = since.unwrap_or_else(|| log.newest());
    let follower = Follower {
        log,
        newest,
        next,
        stop: agent.api_stopping(),
        _permit: permit,
    };
    Ok(ndjson(follower, |mut f| async move {
        f.next_chunk().await.map(|chunk| (chunk, f))
    }))
}

/// One follow stream's state; dropping it (the client went away) gives its permit back.
struct Follower {
    log: std::sync::Arc<EventLog>,
    newest: watch::Receiver<u64>,
    next: u64,
    stop: CancellationToken,
    _permit: OwnedSemaphorePermit,
}

impl Follower {
    /// The next bytes to send; `None` ends the stream.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            self.newest.borrow_and_update();
            let batch = self.log.since(self.next, EVENT_BUFFER);
            self.next = batch.next;
            if let Some(chunk) = ndjson_chunk(batch.missed, &batch.events) {
                return Some(chunk);
            }
            tokio::select! {
                _ = self.stop.cancelled() => return None,
                changed = self.newest.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = tokio::time::sleep(KEEPALIVE) => return Some(Bytes::from_static(b"\n")),
            }
        }
    }
}
