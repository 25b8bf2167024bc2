//! The wire format of member-to-member messages: length-prefixed frames over TCP.
//!
//! ```text
//! u32 length (big endian, of everything after it) | u8 kind | u64 id | body | tag (16, sealed only)
//! ```
//!
//! A request's body (`Call`, `System`) is a timing prefix (`deadline.rs`: when it was sent and
//! its deadline, on the caller's clock) and then the caller's bincode-encoded message as it is;
//! a cast's is the message alone; a reply's is a bincode [`Outcome`]. On a connection opened with a cluster key (`trust/handshake.rs`) the body is
//! encrypted and a tag follows it that authenticates the length, kind, id and body. A request
//! carries no sender: the receiver knows the peer from the connection's handshake.
//!
//! The kind and id come before the body so that a receiver can answer a frame it refuses (too
//! large, undecodable) to the right caller, and keep the connection. Encoding checks the body
//! against the frame limit (and what the `u32` length can hold) first: a length is never
//! truncated. Pure encoding and decoding;
//! the reading and writing tasks live in `server.rs` and `client.rs`.

use serde::{Deserialize, Serialize};

/// Bytes of kind and id after the length.
pub(crate) const HEADER_LEN: usize = 1 + 8;

/// The default largest frame a node sends or accepts: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// A request to the member's `handle_call`; a `Reply` with the same id answers it.
    Call = 1,
    /// A one-way message to the member's `handle_cast`.
    Cast = 2,
    /// A request to herd's own handler on the node (the agent's remote actions).
    System = 3,
    /// The answer to a `Call` or `System` frame.
    Reply = 4,
}

impl Kind {
    pub(crate) fn from_u8(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Call),
            2 => Some(Kind::Cast),
            3 => Some(Kind::System),
            4 => Some(Kind::Reply),
            _ => None,
        }
    }
}

/// The body of a `Reply` frame.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The handler's answer, bincode-encoded.
    Ok(Vec<u8>),
    /// The receiver could not answer: why.
    Err(Refusal),
}

/// Why a receiver answered with an error instead of a reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Refusal {
    /// The handler ran and returned an error (its message).
    Handler(String),
    /// The receiver could not decode the request as the type its handler takes.
    Decode(String),
    /// The frame was larger than the receiver accepts.
    TooLarge { size: usize, limit: usize },
    /// The frame was not a request the receiver understands.
    Malformed(String),
    /// The node has no handler for this kind of request, or it is stopping.
    Unavailable(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Handler(message) => write!(f, "{message}"),
            Refusal::Decode(message) => {
                write!(f, "the receiver could not decode the request: {message}")
            }
            Refusal::TooLarge { size, limit } => {
                write!(
                    f,
                    "a frame of {size} bytes exceeds the receiver's limit of {limit}"
                )
            }
            Refusal::Malformed(message) => write!(f, "malformed frame: {message}"),
            Refusal::Unavailable(message) => write!(f, "{message}"),
        }
    }
}

/// Room left at the end of every encoded frame for a seal's tag, so sealing never reallocates.
const SEAL_ROOM: usize = crate::trust::handshake::TAG_LEN;

/// Why a frame was not encoded.
#[derive(Debug)]
pub(crate) enum EncodeError {
    /// The body is `size` bytes, over `limit` (the frame limit, or what a `u32` length holds).
    TooLarge { size: usize, limit: usize },
    /// The body could not be encoded.
    Codec(bincode::Error),
}

/// The largest body a frame's `u32` length can describe, with room for the header and a tag.
const WIRE_MAX_BODY: usize = u32::MAX as usize - HEADER_LEN - SEAL_ROOM;

/// Encodes one frame: header and bincode body, whose size must be at most `limit`.
pub(crate) fn encode<T: Serialize>(
    kind: Kind,
    id: u64,
    body: &T,
    limit: usize,
) -> Result<Vec<u8>, EncodeError> {
    let size = bincode::serialized_size(body).map_err(EncodeError::Codec)?;
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let mut frame = start(kind, id, size, limit)?;
    bincode::serialize_into(&mut frame, body).map_err(EncodeError::Codec)?;
    Ok(frame)
}

/// Encodes one frame whose body is `body` as it is (a request's payload), at most `limit` bytes.
pub(crate) fn encode_bytes(
    kind: Kind,
    id: u64,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, EncodeError> {
    let mut frame = start(kind, id, body.len(), limit)?;
    frame.extend_from_slice(body);
    Ok(frame)
}

/// Encodes one frame whose body is `parts` one after another (a request's timing prefix and
/// payload), at most `limit` bytes in all.
pub(crate) fn encode_parts(
    kind: Kind,
    id: u64,
    parts: &[&[u8]],
    limit: usize,
) -> Result<Vec<u8>, EncodeError> {
    let size = parts.iter().map(|part| part.len()).sum();
    let mut frame = start(kind, id, size, limit)?;
    for part in parts {
        frame.extend_from_slice(part);
    }
    Ok(frame)
}

/// Where a frame's body starts, counting its length prefix.
pub(crate) const BODY_OFFSET: usize = 4 + HEADER_LEN;

fn start(kind: Kind, id: u64, size: usize, limit: usize) -> Result<Vec<u8>, EncodeError> {
    let limit = limit.min(WIRE_MAX_BODY);
    if size > limit {
        return Err(EncodeError::TooLarge { size, limit });
    }
    let mut frame = Vec::with_capacity(4 + HEADER_LEN + size + SEAL_ROOM);
    let len = u32::try_from(HEADER_LEN + size).expect("checked against the wire limit");
    frame.extend_from_slice(&len.to_be_bytes());
    frame.push(kind as u8);
    frame.extend_from_slice(&id.to_be_bytes());
    Ok(frame)
}

/// Splits a frame (without its length prefix) into kind byte, id and body.
pub(crate) fn split(frame: &[u8]) -> Option<(u8, u64, &[u8])> {
    if frame.len() < HEADER_LEN {
        return None;
    }
    let id = u64::from_be_bytes(frame[1..9].try_into().ok()?);
    Some((frame[0], id, &frame[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_through_its_header() {
        let frame = encode_bytes(Kind::Call, 42, &[1, 2, 3], 16).unwrap();
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        let (kind, id, body) = split(&frame[4..]).unwrap();
        assert_eq!((Kind::from_u8(kind), id), (Some(Kind::Call), 42));
        assert_eq!(body, [1, 2, 3]);

        let reply = encode(Kind::Reply, 7, &Outcome::Ok(vec![9]), 64).unwrap();
        assert!(reply.capacity() >= reply.len() + SEAL_ROOM);
        let (_, id, body) = split(&reply[4..]).unwrap();
        let back: Outcome = bincode::deserialize(body).unwrap();
        assert!(matches!((id, back), (7, Outcome::Ok(v)) if v == [9]));
    }

    #[test]
    fn bodies_over_the_limit_are_not_encoded() {
        let refused = encode_bytes(Kind::Call, 1, &[0; 17], 16);
        assert!(matches!(
            refused,
            Err(EncodeError::TooLarge {
                size: 17,
                limit: 16
            })
        ));
        let refused = encode(Kind::Reply, 1, &Outcome::Ok(vec![0; 100]), 50);
        assert!(matches!(
            refused,
            Err(EncodeError::TooLarge { limit: 50, .. })
        ));
        // A limit beyond what the u32 length holds is capped, never truncated.
        assert!(matches!(
            start(Kind::Call, 1, u32::MAX as usize, usize::MAX),
            Err(EncodeError::TooLarge {
                limit: WIRE_MAX_BODY,
                ..
            })
        ));
    }

    #[test]
    fn short_frames_and_unknown_kinds_are_refused() {
        assert!(split(&[1, 0, 0]).is_none());
        assert_eq!(Kind::from_u8(9), None);
    }
}
