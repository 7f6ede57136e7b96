//! See `fuzz/checks/netmap.rs`: the same check runs on stable over the
//! committed inputs in warren-node's tests. The agent's own files are
//! built as they are, at the paths the check names them by.
#![no_main]

#[allow(dead_code)]
#[path = "../../node/src/daemon/managed/endpoints.rs"]
pub mod endpoints;
#[allow(dead_code)]
#[path = "../../node/src/daemon/managed/validate.rs"]
pub mod validate;
#[allow(dead_code)]
#[path = "../../node/src/dns/zone.rs"]
pub mod zone;

/// Where the agent has them.
mod daemon {
    pub mod managed {
        pub use crate::{endpoints, validate};
    }
}
mod dns {
    pub use crate::zone;
}

#[path = "../checks/netmap.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
