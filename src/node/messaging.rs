//! Member-to-member messages on a [`Node`]: `call`, `cast`, `multi_call`, and the crate's own
//! requests to another node's herd handler (`system_call`). The member's address comes from its
//! gossip state; the bytes never reach the user.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Node;
use crate::rpc::client::Failure;
use crate::rpc::frame::{Kind, Outcome};
use crate::rpc::server::SystemHandler;
use crate::Error;

/// How long a cast may wait for a connection.
const CAST_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Node {
    /// Calls member `to` with `request` and waits up to `timeout` for its reply, decoded as
    /// `Resp`. The member answers from its [`handle_call`](crate::ClusterMember::handle_call).
    ///
    /// # Errors
    /// [`Error::UnknownMember`] at once for an id that is not a live member;
    /// [`Error::Unreachable`] (also as soon as the member leaves or is declared failed before
    /// answering), [`Error::CallTimeout`], [`Error::Remote`] (the member's error),
    /// [`Error::Overloaded`] (the connection's queue is full), [`Error::FrameTooLarge`],
    /// [`Error::Codec`].
    pub async fn call<Req, Resp>(
        &self,
        to: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, Error>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let bytes = self.start_call(to, request, timeout)?.await?;
        crate::member::decode_reply(to, &bytes)
    }

    /// Sends `message` to member `to` without waiting for an answer; done once it is on its way.
    /// The member gets it in its [`handle_cast`](crate::ClusterMember::handle_cast).
    ///
    /// # Errors
    /// [`Error::UnknownMember`], [`Error::Unreachable`], [`Error::Overloaded`],
    /// [`Error::FrameTooLarge`], [`Error::Codec`].
    pub async fn cast<Msg: Serialize + ?Sized>(
        &self,
        to: &str,
        message: &Msg,
    ) -> Result<(), Error> {
        let started = std::time::Instant::now();
        let payload = encode(message)?;
        let addr = self.rpc_addr_of(to)?;
        let result = self
            .inner
            .client
            .cast(to, addr, payload, CAST_CONNECT_TIMEOUT)
            .await
            .map_err(|failure| failure_error(to, addr, CAST_CONNECT_TIMEOUT, failure));
        observe(self.observer().as_ref(), "cast", &result, started);
        result
    }

    /// Calls every live member (this one included) at once and returns each one's result, by
    /// member id, sorted. The whole call takes at most `timeout`.
    ///
    /// A member calling `multi_call` from inside its own callback waits for itself: its own entry
    /// then ends in [`Error::CallTimeout`].
    pub async fn multi_call<Req, Resp>(
        &self,
        request: &Req,
        timeout: Duration,
    ) -> Vec<(String, Result<Resp, Error>)>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let calls = self.members().into_iter().map(|member| async move {
            let result = self.call(member.id(), request, timeout).await;
            (member.id().to_string(), result)
        });
        futures::future::join_all(calls).await
    }

    /// Sends herd's own request to node `to`'s system handler and returns its answer's bytes.
    pub(crate) async fn system_call(
        &self,
        to: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        self.request(to, Kind::System, payload, timeout).await
    }

    /// Sets the handler of herd's own requests to this node (the agent's remote actions).
    pub(crate) fn set_system_handler(&self, handler: Arc<dyn SystemHandler>) {
        *self.inner.rpc.system.write().expect("system handler lock") = Some(handler);
    }

    async fn request(
        &self,
        to: &str,
        kind: Kind,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        self.start_request(to, kind, payload, timeout)?.await
    }

    /// Encodes `request` for member `to` and returns the call, ready to be awaited: a future
    /// that holds no handle to the node (so it can outlive a callback without keeping the node
    /// running) and ends when the node stops.
    ///
    /// # Errors
    /// [`Error::UnknownMember`], [`Error::Stopped`], [`Error::Codec`]: at once.
    pub(crate) fn start_call<Req: Serialize + ?Sized>(
        &self,
        to: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<impl std::future::Future<Output = Result<Vec<u8>, Error>> + Send + 'static, Error>
    {
        self.start_request(to, Kind::Call, encode(request)?, timeout)
    }

    fn start_request(
        &self,
        to: &str,
        kind: Kind,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<impl std::future::Future<Output = Result<Vec<u8>, Error>> + Send + 'static, Error>
    {
        let started = std::time::Instant::now();
        let addr = self.rpc_addr_of(to)?;
        let client = self.inner.client.clone();
        let observer = self.observer();
        let cancel = self.inner.cancel.clone();
        let mut members = self.inner.members.clone();
        let to = to.to_string();
        Ok(async move {
            let request = client.request(&to, addr, kind, payload, timeout);
            // The member leaving (or declared failed) ends the call at once, even when its
            // connection is still being opened or its socket says nothing (a frozen process).
            let gone = async {
                let left = members
                    .wait_for(|ms| {
                        !ms.iter()
                            .any(|m| m.id() == to && m.rpc_addr() == Some(addr))
                    })
                    .await
                    .is_err();
                if left {
                    // The node is stopping: the cancellation below answers.
                    std::future::pending::<()>().await;
                }
            };
            let result = tokio::select! {
                biased;
                _ = gone => Err(Error::Unreachable {
                    member: to.clone(),
                    addr,
                    reason: "it left the cluster (or was declared failed) before answering".into(),
                }),
                result = request => match result {
                    Ok(Outcome::Ok(bytes)) => Ok(bytes),
                    Ok(Outcome::Err(refusal)) => Err(Error::Remote {
                        member: to.clone(),
                        message: refusal.to_string(),
                    }),
                    Err(failure) => Err(failure_error(&to, addr, timeout, failure)),
                },
                _ = cancel.cancelled() => Err(Error::Stopped { node: client.node_id().to_string() }),
            };
            observe(observer.as_ref(), "call", &result, started);
            result
        })
    }

    /// Sets who is told of every call and cast (the agent's metrics).
    pub(crate) fn set_rpc_observer(&self, observer: super::RpcObserver) {
        *self.inner.rpc_observer.write().expect("observer lock") = Some(observer);
    }

    fn observer(&self) -> Option<super::RpcObserver> {
        self.inner
            .rpc_observer
            .read()
            .expect("observer lock")
            .clone()
    }

    /// The RPC address of live member `id`.
    fn rpc_addr_of(&self, id: &str) -> Result<SocketAddr, Error> {
        self.running()?;
        self.inner
            .members
            .borrow()
            .iter()
            .find(|m| m.id() == id)
            .and_then(|m| m.rpc_addr())
            .ok_or_else(|| Error::UnknownMember {
                member: id.to_string(),
            })
    }
}

fn observe<T>(
    observer: Option<&super::RpcObserver>,
    kind: &str,
    result: &Result<T, Error>,
    started: std::time::Instant,
) {
    if let Some(observer) = observer {
        let outcome = match result {
            Ok(_) => "ok",
            Err(Error::CallTimeout { .. }) => "timeout",
            Err(_) => "error",
        };
        observer(kind, outcome, started.elapsed());
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    bincode::serialize(value).map_err(|err| Error::Codec {
        what: "a request".into(),
        reason: err.to_string(),
    })
}

fn failure_error(member: &str, addr: SocketAddr, timeout: Duration, failure: Failure) -> Error {
    match failure {
        Failure::Unreachable(reason) => Error::Unreachable {
            member: member.to_string(),
            addr,
            reason,
        },
        Failure::Timeout => Error::CallTimeout {
            member: member.to_string(),
            timeout,
        },
        Failure::TooLarge { size, limit } => Error::FrameTooLarge { size, limit },
        Failure::Overloaded { queued, limit } => Error::Overloaded {
            member: member.to_string(),
            queued,
            limit,
        },
        Failure::Refused(reason) => Error::Refused {
            member: member.to_string(),
            addr,
            reason,
        },
    }
}

/// Closes the client's connections to members that are no longer live, whenever the member list
/// changes, until `cancel` fires.
pub(super) async fn forget_departed(
    client: Arc<crate::rpc::client::Client>,
    mut members: tokio::sync::watch::Receiver<Arc<[crate::Member]>>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let live: std::collections::HashSet<SocketAddr> = members
            .borrow_and_update()
            .iter()
            .filter_map(|m| m.rpc_addr())
            .collect();
        client.retain(&live);
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = members.changed() => if changed.is_err() { return },
        }
    }
}
