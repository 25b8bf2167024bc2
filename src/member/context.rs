//! The [`Context`] handed to every [`ClusterMember`](crate::ClusterMember) callback: who this node
//! is and who is in the cluster right now.

use std::sync::Arc;

use tokio::sync::watch;

use crate::Member;

/// What a callback can ask of its node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Context {
    node_id: Arc<str>,
    members: watch::Receiver<Arc<[Member]>>,
}

impl Context {
    pub(crate) fn new(node_id: Arc<str>, members: watch::Receiver<Arc<[Member]>>) -> Self {
        Context { node_id, members }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The live members as this node knows them now (which may be ahead of the event being
    /// delivered), itself included, sorted by id.
    pub fn members(&self) -> Vec<Member> {
        self.members.borrow().to_vec()
    }
}
