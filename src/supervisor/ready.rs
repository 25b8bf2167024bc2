//! Readiness: how a started worker tells the supervisor it is ready (see
//! [`Readiness`](super::Readiness)).
//!
//! A [`ReadySignal`] is the one-shot message a check sends to the owning task
//! (runner.rs) on its readiness channel, naming the process it is about. The
//! TCP check is a task of its own, [`probe_tcp`], spawned by the runner on the
//! supervisor's runtime (tracked by its `TaskTracker`): it tries to connect
//! every [`PROBE_INTERVAL`] until it succeeds, its token is cancelled (the
//! process ended, or the supervisor shut down), or the signal's receiver is
//! gone. The JSON-lines check is a line on stdout that jsonl.rs recognises;
//! the `after` check and the timeout are deadlines of the runner itself.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Time between two connection attempts of a TCP readiness check.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(25);
/// Longest a single connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Which process became ready: the worker's key and the process's generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadyNote {
    pub key: u64,
    pub generation: u64,
}

/// Sends its note to the owning task, once. The channel is unbounded but holds at most one
/// note per started process: `fire` consumes the signal, and one signal is made per start.
#[derive(Debug)]
pub(crate) struct ReadySignal {
    pub note: ReadyNote,
    pub tx: mpsc::UnboundedSender<ReadyNote>,
}

impl ReadySignal {
    /// Tells the owning task the process is ready.
    pub(crate) fn fire(self) {
        let _ = self.tx.send(self.note);
    }
}

/// Connects to `addr` every [`PROBE_INTERVAL`] (each attempt bounded by 1 s)
/// until a connection succeeds, then fires `signal`; ends early when `cancel`
/// fires. The connection is dropped at once. The runner bounds the whole
/// check with the worker's `ready_timeout`, cancelling the token when the
/// process ends.
pub(crate) async fn probe_tcp(addr: SocketAddr, signal: ReadySignal, cancel: CancellationToken) {
    loop {
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr));
        let connected = tokio::select! {
            _ = cancel.cancelled() => return,
            r = attempt => matches!(r, Ok(Ok(_))),
        };
        if connected {
            signal.fire();
            return;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Probe = (
        SocketAddr,
        mpsc::UnboundedReceiver<ReadyNote>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    );

    /// A probe of a loopback port that was free a moment ago.
    fn probe_free_port() -> Probe {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let note = ReadyNote {
            key: 1,
            generation: 2,
        };
        let cancel = CancellationToken::new();
        let probe = tokio::spawn(probe_tcp(addr, ReadySignal { note, tx }, cancel.clone()));
        (addr, rx, cancel, probe)
    }

    #[tokio::test]
    async fn the_tcp_check_fires_once_the_port_accepts() {
        let (addr, mut rx, _cancel, probe) = probe_free_port();
        // A few attempts fail before anything listens.
        tokio::time::sleep(PROBE_INTERVAL * 3).await;
        assert!(rx.try_recv().is_err(), "ready before anything listens");
        let _listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
        let expected = ReadyNote {
            key: 1,
            generation: 2,
        };
        assert_eq!(got.unwrap(), Some(expected));
        probe.await.unwrap();
    }

    #[tokio::test]
    async fn a_cancelled_check_ends_without_firing() {
        let (_addr, mut rx, cancel, probe) = probe_free_port();
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(20), probe)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rx.recv().await, None, "the signal was dropped unfired");
    }
}
