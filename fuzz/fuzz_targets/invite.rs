//! See `fuzz/checks/invite.rs`: the same check runs on stable over the
//! committed inputs in warren-proto's tests.
#![no_main]

#[path = "../checks/invite.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
