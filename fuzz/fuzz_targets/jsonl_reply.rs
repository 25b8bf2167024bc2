#![no_main]
//! Fuzz target: `herd::fuzzing::jsonl_reply` (see src/fuzzing.rs). Run with `bash scripts/fuzz.sh 600 jsonl_reply`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| herd::fuzzing::jsonl_reply(data));
