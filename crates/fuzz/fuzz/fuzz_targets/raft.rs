#![no_main]
//! libFuzzer entry for flotilla_fuzz::raft (see crates/fuzz and docs/FUZZING.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla_fuzz::raft(data));
