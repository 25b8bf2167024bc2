#![no_main]
//! Fuzz target: `herd::fuzzing::rpc_handshake` (see src/fuzzing.rs). Run with `bash scripts/fuzz.sh 600 rpc_handshake`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| herd::fuzzing::rpc_handshake(data));
