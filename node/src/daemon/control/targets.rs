//! Where a controller connection dials: the controller's replicas in turn.

use std::time::Duration;

use super::{Liveness, CONTROLLER_LIVENESS};

/// The controller link when the controller has several replicas: a replica
/// that dies is noticed within seconds and the node moves to another.
pub(super) const REPLICA_LIVENESS: Liveness = Liveness {
    keep_alive: Duration::from_millis(800),
    idle_timeout: Duration::from_millis(2500),
};

/// Replicas of one controller a node remembers.
pub(super) const MAX_REPLICAS: usize = 16;

/// Where a controller connection dials: the address the network was joined
/// through (which names the connection), the other addresses it was
/// joined with (an invite's), and the replicas the controller last named,
/// tried in turn.
pub(super) struct Targets {
    pub(super) controller: String,
    /// The joined address and the invite's, always kept.
    given: Vec<String>,
    list: Vec<String>,
    next: usize,
    /// Where the current round of tries began.
    round: usize,
}

impl Targets {
    pub(super) fn new(controller: String, given: Vec<String>) -> Self {
        let mut all = vec![controller.clone()];
        all.extend(given);
        let mut targets = Self {
            controller,
            given: Vec::new(),
            list: Vec::new(),
            next: 0,
            round: 0,
        };
        targets.given = dedup(all);
        targets.list = targets.given.clone();
        targets
    }

    /// [`Targets::new`], starting at a replica picked at random, so that
    /// agents joined with one invite spread over the replicas.
    pub(super) fn spread(controller: String, given: Vec<String>) -> Self {
        let mut targets = Self::new(controller, given);
        let len = targets.list.len().max(1);
        targets.next =
            usize::try_from(rand_core::RngCore::next_u32(&mut rand_core::OsRng)).unwrap_or(0) % len;
        targets.round = targets.next;
        targets
    }

    /// Adds the replicas a `Welcome` named to the addresses given, in
    /// place of those an earlier `Welcome` named.
    pub(super) fn learn(&mut self, replicas: Vec<String>) {
        let current = self.list.get(self.next).cloned();
        let list = dedup(self.given.iter().cloned().chain(replicas));
        self.next = current
            .and_then(|c| list.iter().position(|t| *t == c))
            .unwrap_or(0);
        self.round = self.next;
        self.list = list;
    }

    /// The replica in use answered: a later failure starts a new round
    /// from it.
    pub(super) fn connected(&mut self) {
        self.round = self.next;
    }

    /// Every address tried, in order.
    pub(super) fn all(&self) -> &[String] {
        &self.list
    }

    pub(super) fn current(&self) -> &str {
        self.list.get(self.next).unwrap_or(&self.controller)
    }

    /// Moves on to the next replica; true when that starts another round
    /// (every one was tried since the last that answered), after which the
    /// caller backs off.
    pub(super) fn advance(&mut self) -> bool {
        self.next = (self.next + 1) % self.list.len().max(1);
        self.next == self.round
    }

    pub(super) fn liveness(&self) -> Liveness {
        if self.list.len() > 1 {
            REPLICA_LIVENESS
        } else {
            CONTROLLER_LIVENESS
        }
    }
}

/// `addresses` in order, each once, at most [`MAX_REPLICAS`].
fn dedup(addresses: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for address in addresses {
        if out.len() < MAX_REPLICAS && !out.contains(&address) {
            out.push(address);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(targets: &Targets) -> Vec<&str> {
        targets.list.iter().map(String::as_str).collect()
    }

    #[test]
    fn the_joined_address_comes_first_and_each_replica_once() {
        let t = Targets::new("a:1".into(), vec!["a:1".into(), "b:1".into()]);
        assert_eq!(names(&t), ["a:1", "b:1"]);
        assert_eq!(t.current(), "a:1");
        assert_eq!(t.liveness().idle_timeout, REPLICA_LIVENESS.idle_timeout);
        let alone = Targets::new("a:1".into(), vec![]);
        assert_eq!(
            alone.liveness().idle_timeout,
            CONTROLLER_LIVENESS.idle_timeout
        );
    }

    #[test]
    fn agents_spread_over_the_replicas() {
        let given = vec!["b:1".to_owned(), "c:1".to_owned()];
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            seen.insert(
                Targets::spread("a:1".into(), given.clone())
                    .current()
                    .to_owned(),
            );
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(Targets::spread("a:1".into(), vec![]).current(), "a:1");
    }

    #[test]
    fn a_failed_replica_moves_on_and_a_round_ends_at_the_first() {
        let mut t = Targets::new("a:1".into(), vec!["b:1".into(), "c:1".into()]);
        assert!(!t.advance());
        assert_eq!(t.current(), "b:1");
        assert!(!t.advance());
        assert_eq!(t.current(), "c:1");
        assert!(t.advance(), "every one tried");
        assert_eq!(t.current(), "a:1");
        // Connected to c: a round is c, a, b.
        t.advance();
        t.advance();
        t.connected();
        assert_eq!(t.current(), "c:1");
        assert!(!t.advance());
        assert!(!t.advance());
        assert!(t.advance());
        assert_eq!(t.current(), "c:1");
    }

    #[test]
    fn welcome_adds_replicas_without_dropping_the_given_ones() {
        let mut t = Targets::new("a:1".into(), vec!["b:1".into()]);
        t.advance();
        t.learn(vec!["c:1".into(), "b:1".into()]);
        assert_eq!(names(&t), ["a:1", "b:1", "c:1"]);
        assert_eq!(t.current(), "b:1", "still on the one in use");
        // A later Welcome names other replicas: those learnt before go.
        t.learn(vec!["d:1".into()]);
        assert_eq!(names(&t), ["a:1", "b:1", "d:1"]);
        // Hostile lists are bounded.
        t.learn((0..100).map(|i| format!("r{i}:1")).collect());
        assert_eq!(t.list.len(), MAX_REPLICAS);
    }
}
