//! The host's interface addresses, as endpoint candidates.

use std::net::IpAddr;

pub fn addresses() -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(list) => list.into_iter().map(|i| i.ip()).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list interface addresses");
            Vec::new()
        }
    }
}
