//! See `fuzz/checks/engine.rs`: the same check runs on stable over the
//! committed inputs in warren-engine's tests.
#![no_main]

#[path = "../checks/engine.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
