#![no_main]
//! libFuzzer entry for flotilla_fuzz::spec (see crates/fuzz and docs/FUZZING.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla_fuzz::spec(data));
