//! Fuzz target: see `switchboard_fuzz::router`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::router(data));
