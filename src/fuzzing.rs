//! Entry points for herd's fuzz targets (`fuzz/`, `scripts/fuzz.sh`): each takes arbitrary bytes
//! and pushes them through one of the decoders that meet bytes from outside, exactly as the node
//! does. They return nothing: a fuzz target fails only by panicking or hanging.
//!
//! For fuzz targets only; not a stable API.

use std::sync::OnceLock;

use crate::trust::{Keyring, SecretKey};

fn keyring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| Keyring::new(SecretKey::from_bytes([7; 32])))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// Received RPC frames: the length-prefixed reader, then the header split and a request's timing
/// prefix turned into a deadline, as a connection reads them (up to 16 frames from one input).
pub fn rpc_frame(data: &[u8]) {
    runtime().block_on(async {
        let mut reader = tokio::io::BufReader::new(data);
        let timeouts = crate::rpc::server::Timeouts {
            idle: None,
            read: std::time::Duration::from_secs(1),
        };
        let mut clock = crate::rpc::deadline::PeerClock::new(tokio::time::Instant::now());
        for _ in 0..16 {
            match crate::rpc::server::read_frame(&mut reader, 1 << 20, 0, &timeouts).await {
                Ok(crate::rpc::server::ReadFrame::Frame(bytes)) => {
                    if let Some((_, _, body)) = crate::rpc::frame::split(&bytes) {
                        if let Some((timing, _)) = crate::rpc::deadline::split(body) {
                            let now = tokio::time::Instant::now();
                            let _ = clock.deadline(timing, now);
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
}

/// The server side of the RPC handshake reading `data` as the client's bytes, with and without a
/// keyring.
pub fn rpc_handshake(data: &[u8]) {
    runtime().block_on(async {
        for ring in [None, Some(keyring())] {
            let (mut client, mut server) = tokio::io::duplex(64 * 1024);
            use tokio::io::AsyncWriteExt as _;
            let _ = client.write_all(data).await;
            drop(client);
            let _ = crate::trust::handshake::server(&mut server, ring, "fuzz").await;
        }
    });
}

/// A received gossip datagram: opened with the keyring (when sealed), then decoded as chitchat's
/// message, as the gossip transport does.
pub fn gossip_datagram(data: &[u8]) {
    let mut opened = Vec::new();
    let payload: &[u8] = match crate::trust::seal::open(keyring(), data, &mut opened) {
        crate::trust::seal::Opened::Sealed(_) => &opened,
        crate::trust::seal::Opened::Plain => data,
        _ => return,
    };
    let mut bytes = payload;
    let _ = chitchat::ChitchatEnvelope::deserialize(&mut bytes);
}

/// A cluster config text, parsed and validated as a push is.
pub fn cluster_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::ClusterConfig::parse(text, "fuzz");
    }
}

/// An agent file, parsed as `herd agent --config` reads it.
pub fn agent_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::AgentFile::parse(text, "fuzz");
    }
}

/// Lines a JSON-lines worker printed on stdout, routed as replies to calls.
pub fn jsonl_reply(data: &[u8]) {
    let (channel, _requests) = crate::supervisor::jsonl::Channel::new("fuzz".into());
    for line in String::from_utf8_lossy(data).lines() {
        let _ = channel.route(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_point_takes_garbage() {
        for data in [
            &b""[..],
            b"\x00\x00\x00\x09\x01\x00\x00\x00\x00\x00\x00\x00\x01",
            b"herd\x01",
            b"hS\x01\x00\x00\x00\x00",
            b"[[worker]]\nname = \"x\"\ncommand = \"sleep\"\n",
            b"{\"id\": 1, \"result\": 2}\n{\"id\": \"x\"}\n",
            &[0xff; 300],
        ] {
            rpc_frame(data);
            rpc_handshake(data);
            gossip_datagram(data);
            cluster_config(data);
            agent_file(data);
            jsonl_reply(data);
        }
    }
}
