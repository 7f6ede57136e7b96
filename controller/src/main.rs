//! warren-controller: the control plane. Membership, IPAM, netmaps over QUIC,
//! relay, STUN, DNS and the HTTP API arrive with the controller issue; until
//! then the binary only says so.
#![forbid(unsafe_code)]

fn main() {
    eprintln!(
        "warren-controller: not implemented yet; run agents with static peers (docs/config.md)"
    );
    std::process::exit(1);
}
