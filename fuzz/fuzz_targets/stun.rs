//! See `fuzz/checks/stun.rs`: the same check runs on stable over the
//! committed inputs in warren-controller's tests.
#![no_main]

#[path = "../checks/stun.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
