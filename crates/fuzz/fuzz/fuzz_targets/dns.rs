#![no_main]
//! libFuzzer entry for flotilla_fuzz::dns (see crates/fuzz and docs/FUZZING.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla_fuzz::dns(data));
