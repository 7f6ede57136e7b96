//! See `fuzz/checks/local_api.rs`: the same check runs on stable over the
//! committed inputs in warren-node's tests.
#![no_main]

#[path = "../checks/local_api.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
