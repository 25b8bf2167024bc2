#![no_main]
//! Fuzz target: `herd::fuzzing::cluster_config` (see src/fuzzing.rs). Run with `bash scripts/fuzz.sh 600 cluster_config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| herd::fuzzing::cluster_config(data));
