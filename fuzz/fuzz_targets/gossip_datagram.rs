#![no_main]
//! Fuzz target: `herd::fuzzing::gossip_datagram` (see src/fuzzing.rs). Run with `bash scripts/fuzz.sh 600 gossip_datagram`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| herd::fuzzing::gossip_datagram(data));
