//! See `fuzz/checks/portmap.rs`: the same check runs on stable over the
//! committed inputs in warren-node's tests. The agent's parsers are built
//! as they are; what they take from their parent module is at the root.
#![no_main]

#[allow(dead_code)]
#[path = "../../node/src/portmap/natpmp.rs"]
pub mod natpmp;
#[allow(dead_code)]
#[path = "../../node/src/portmap/pcp.rs"]
pub mod pcp;
#[path = "../../node/src/portmap/reply.rs"]
mod reply;
pub use reply::{Granted, ReplyError};

/// Where the agent has them.
mod portmap {
    pub use crate::{natpmp, pcp};
}

#[path = "../checks/portmap.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
