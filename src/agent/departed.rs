//! The members this agent has seen go: when, why, and what they were, for
//! `GET /v1/members?all=true` and `herd members --all`.
//!
//! A member that fails or leaves is recorded (`failed`, or `left` with the reason `graceful`)
//! as this node saw it; one that joins again (a new incarnation, or back after a partition) is
//! live again and its record goes. A record is forgotten [`FORGET_AFTER`] after the member went,
//! the time after which gossip forgets a dead member's state too, and at most [`MAX_DEPARTED`]
//! are kept (the oldest go first).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::{LeaveReason, Member};

/// How long a departed member is remembered: the gossip layer's dead-node grace period.
pub const FORGET_AFTER: Duration = crate::node::DEFAULT_DEAD_NODE_GRACE_PERIOD;
/// Most departed members remembered.
pub const MAX_DEPARTED: usize = 1024;

/// One member that went, as `GET /v1/members?all=true` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Departed {
    /// Its node id.
    pub id: String,
    /// Its gossip address.
    pub addr: String,
    /// Its incarnation.
    pub generation: u64,
    /// Its tags when it went.
    pub tags: BTreeMap<String, String>,
    /// `failed` or `left`.
    pub status: &'static str,
    /// Why: `failed` (the failure detector), `graceful` (it said goodbye), `forced` (an
    /// operator's `herd force-leave` after it failed).
    pub reason: String,
    /// When this node saw it go, in milliseconds since the Unix epoch.
    pub since_ms: u64,
}

/// The departed members, by id.
#[derive(Debug, Default)]
pub(crate) struct DepartedLog {
    gone: Mutex<BTreeMap<String, Departed>>,
}

impl DepartedLog {
    /// Records that `member` went, for `reason`. A restart (a new incarnation took its place)
    /// is not a departure: the new one is live.
    pub(crate) fn left(&self, member: &Member, reason: LeaveReason) {
        let status = match reason {
            LeaveReason::Failed => "failed",
            LeaveReason::Graceful => "left",
            _ => return,
        };
        let departed = Departed {
            id: member.id().to_string(),
            addr: member.addr().to_string(),
            generation: member.generation(),
            tags: member.tags().clone(),
            status,
            reason: reason.to_string(),
            since_ms: super::status::unix_ms(std::time::SystemTime::now()),
        };
        let mut gone = self.gone.lock().expect("departed lock");
        gone.insert(departed.id.clone(), departed);
        while gone.len() > MAX_DEPARTED {
            let oldest = gone
                .values()
                .min_by_key(|d| d.since_ms)
                .map(|d| d.id.clone());
            match oldest {
                Some(id) => gone.remove(&id),
                None => break,
            };
        }
    }

    /// Marks `id` as made to leave by an operator (`herd force-leave`): a record this node holds
    /// becomes `left` with the reason `forced`. Returns whether there was one.
    pub(crate) fn forced(&self, id: &str) -> bool {
        let mut gone = self.gone.lock().expect("departed lock");
        match gone.get_mut(id) {
            Some(departed) => {
                departed.status = "left";
                departed.reason = "forced".to_string();
                true
            }
            None => false,
        }
    }

    /// `member` is live again.
    pub(crate) fn joined(&self, member: &Member) {
        self.gone.lock().expect("departed lock").remove(member.id());
    }

    /// The departed members not yet forgotten, most recent first.
    pub(crate) fn list(&self) -> Vec<Departed> {
        let now = super::status::unix_ms(std::time::SystemTime::now());
        let forget = FORGET_AFTER.as_millis() as u64;
        let mut gone = self.gone.lock().expect("departed lock");
        gone.retain(|_, d| now.saturating_sub(d.since_ms) < forget);
        let mut list: Vec<Departed> = gone.values().cloned().collect();
        list.sort_by(|a, b| b.since_ms.cmp(&a.since_ms).then(a.id.cmp(&b.id)));
        list
    }
}
