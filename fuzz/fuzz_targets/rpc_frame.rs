#![no_main]
//! Fuzz target: `herd::fuzzing::rpc_frame` (see src/fuzzing.rs). Run with `bash scripts/fuzz.sh 600 rpc_frame`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| herd::fuzzing::rpc_frame(data));
