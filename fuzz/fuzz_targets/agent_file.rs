#![no_main]
//! Fuzz target: `herd::fuzzing::agent_file` (see src/fuzzing.rs). Run with `bash scripts/fuzz.sh 600 agent_file`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| herd::fuzzing::agent_file(data));
