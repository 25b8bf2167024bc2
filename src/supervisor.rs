//! Supervision of external worker processes by OTP's rules.
//!
//! (Being built: see the supervisor issue.)
