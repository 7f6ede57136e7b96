//! See `fuzz/checks/resolv_conf.rs`: the same check runs on stable over the
//! committed inputs in warren-node's tests. The agent's own file is built
//! as it is, at the path the check names it by.
#![no_main]

#[allow(dead_code)]
#[path = "../../node/src/dns/resolv_conf.rs"]
pub mod resolv_conf;

/// Where the agent has it.
mod dns {
    pub use crate::resolv_conf;
}

#[path = "../checks/resolv_conf.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
