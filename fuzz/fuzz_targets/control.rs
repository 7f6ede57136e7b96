//! See `fuzz/checks/control.rs`: the same check runs on stable over the
//! committed inputs in warren-controller's tests.
#![no_main]

#[path = "../checks/control.rs"]
mod check;
#[allow(dead_code)]
#[path = "../../controller/src/names.rs"]
mod names;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
