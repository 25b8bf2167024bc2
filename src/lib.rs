//! herd: gossip membership and OTP-style supervision of external workers.
#![warn(missing_docs)]

pub mod supervisor;
