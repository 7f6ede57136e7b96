//! See `fuzz/checks/control.rs`: the same check runs on stable over the
//! committed inputs in warren-controller's tests.
#![no_main]

#[path = "../checks/control.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
