//! Which controller may speak for which network: an event about a network
//! counts only if it came from the controller that network was joined
//! through.

use std::collections::BTreeSet;

use warren_proto::NetworkId;

/// How many (network, controller) pairs are remembered as already warned
/// about; past this the memory starts afresh (and warns once more).
const WARNED_MAX: usize = 256;

/// The verdict on one event's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The network's own controller.
    Owner,
    /// Another controller: the event is dropped.
    Foreign,
    /// A network this node has not joined (or has left): nothing to act on.
    NotJoined,
}

/// Drops events from the wrong controller, warning once per network and
/// foreign controller so that a hostile controller cannot flood the log.
#[derive(Debug, Default)]
pub(super) struct SourceCheck {
    warned: BTreeSet<(NetworkId, String)>,
    /// Events dropped since the daemon started.
    dropped: u64,
}

impl SourceCheck {
    /// Judges an event about `network` that came from `from`; `owner` is
    /// the controller the network was joined through, if it is joined.
    pub(super) fn check(&mut self, network: NetworkId, from: &str, owner: Option<&str>) -> Source {
        let Some(owner) = owner else {
            return Source::NotJoined;
        };
        if owner == from {
            return Source::Owner;
        }
        self.dropped = self.dropped.saturating_add(1);
        if self.warned.len() >= WARNED_MAX {
            self.warned.clear();
        }
        if self.warned.insert((network, from.to_owned())) {
            tracing::warn!(
                %network,
                controller = %from,
                owner = %owner,
                "dropping a message about a network joined through another controller (logged once per network and controller)"
            );
        } else {
            tracing::debug!(%network, controller = %from, dropped = self.dropped, "dropped a message from a foreign controller");
        }
        Source::Foreign
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(n: u8) -> NetworkId {
        format!("00000000000000{n:02x}")
            .parse()
            .unwrap_or_else(|_| unreachable!("16 hex digits"))
    }

    #[test]
    fn only_the_owner_speaks_for_a_network() {
        let mut check = SourceCheck::default();
        let a = net(1);
        assert_eq!(
            check.check(a, "ctl-a:7000", Some("ctl-a:7000")),
            Source::Owner
        );
        assert_eq!(
            check.check(a, "ctl-b:7000", Some("ctl-a:7000")),
            Source::Foreign
        );
        assert_eq!(
            check.check(a, "ctl-b:7000", Some("ctl-a:7000")),
            Source::Foreign
        );
        assert_eq!(check.check(net(2), "ctl-b:7000", None), Source::NotJoined);
        assert_eq!(check.dropped, 2);
        assert_eq!(
            check.warned.len(),
            1,
            "warned once per network and controller"
        );
    }

    #[test]
    fn the_warned_set_stays_bounded() {
        let mut check = SourceCheck::default();
        for i in 0..(WARNED_MAX + 10) {
            check.check(net(1), &format!("evil{i}:7000"), Some("ctl:7000"));
        }
        assert!(check.warned.len() <= WARNED_MAX);
    }
}
