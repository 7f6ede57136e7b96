//! Connection tracking: the flows a rule admitted, so that their later packets and replies pass with one hash lookup, with timeouts and a bounded table.
//!
//! Entries live in a slab. Each timeout class (TCP established, TCP opening
//! or closing, UDP and other protocols, ICMP echo) keeps its entries in a
//! list ordered by last use, so that the head of each list is the next of
//! its class to expire: expiry and eviction look at four heads, never scan.

use std::collections::HashMap;
use std::hash::{BuildHasher, DefaultHasher, Hasher};
use std::time::Instant;

use warren_proto::filter::Direction;

use super::flow::FlowKey;
use super::timeouts::{idle, State, CLASSES};

/// The most flows tracked at once, per network. At about 200 bytes each
/// (see `docs/benchmarks.md`) a full table costs about 13 MB.
pub const FLOW_LIMIT: usize = 65_536;

const NIL: u32 = u32::MAX;

/// One tracked flow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flow {
    pub key: FlowKey,
    /// Which way its first packet went.
    pub origin: Direction,
    /// Whether the first packet came from the key's low end.
    pub initiator_low: bool,
    pub state: State,
    last_seen: Instant,
    prev: u32,
    next: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct List {
    head: u32,
    tail: u32,
}

/// A keyed SipHash: the keys come from the engine's injected randomness,
/// so that peers cannot aim their ports at one bucket and runs replay.
/// The keys are absorbed once; each hash starts from a copy of that state.
#[derive(Debug, Clone)]
pub(crate) struct SeededHasher(DefaultHasher);

impl SeededHasher {
    pub fn new(k0: u64, k1: u64) -> Self {
        let mut h = DefaultHasher::new();
        h.write_u64(k0);
        h.write_u64(k1);
        SeededHasher(h)
    }
}

impl BuildHasher for SeededHasher {
    type Hasher = DefaultHasher;

    fn build_hasher(&self) -> DefaultHasher {
        self.0.clone()
    }
}

/// What became of the flows on the way to an answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Removed {
    pub expired: u64,
    pub evicted: u64,
}

/// The table of tracked flows.
#[derive(Debug)]
pub(crate) struct Table {
    map: HashMap<FlowKey, u32, SeededHasher>,
    slots: Vec<Option<Flow>>,
    free: Vec<u32>,
    lists: [List; CLASSES],
    limit: usize,
    /// The latest `now` seen: lists stay ordered even if time is handed in out of order.
    clock: Option<Instant>,
    pub removed: Removed,
}

impl Table {
    pub fn new(limit: usize, hasher: SeededHasher) -> Self {
        Table {
            map: HashMap::with_hasher(hasher),
            slots: Vec::new(),
            free: Vec::new(),
            lists: [List {
                head: NIL,
                tail: NIL,
            }; CLASSES],
            limit: limit.max(1),
            clock: None,
            removed: Removed::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes the table holds now: slab, hash map (buckets and control
    /// bytes) and free list, by their capacities.
    pub fn memory(&self) -> usize {
        use std::mem::size_of;
        self.slots.capacity() * size_of::<Option<Flow>>()
            + self.map.capacity() * (size_of::<(FlowKey, u32)>() + 1) * 8 / 7
            + self.free.capacity() * size_of::<u32>()
    }

    fn tick(&mut self, now: Instant) -> Instant {
        let now = self.clock.map_or(now, |c| c.max(now));
        self.clock = Some(now);
        now
    }

    fn flow(&self, slot: u32) -> Option<&Flow> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    fn flow_mut(&mut self, slot: u32) -> Option<&mut Flow> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    fn deadline(flow: &Flow) -> Instant {
        flow.last_seen + idle(flow.state.class())
    }

    /// Uses a tracked flow: `update` gets its state and whether the packet
    /// came from the initiator's side (`src_low` says if the packet's source
    /// is the key's low end) and returns the new state. False if the flow
    /// is not tracked (or had expired).
    pub fn touch(
        &mut self,
        key: &FlowKey,
        src_low: bool,
        now: Instant,
        update: impl FnOnce(State, bool) -> State,
    ) -> bool {
        let now = self.tick(now);
        let Some(&slot) = self.map.get(key) else {
            return false;
        };
        let Some(flow) = self.flow(slot) else {
            return false;
        };
        if Self::deadline(flow) <= now {
            self.remove(slot);
            self.removed.expired += 1;
            return false;
        }
        let class = flow.state.class();
        let state = update(flow.state, flow.initiator_low == src_low);
        if state.class() == class && self.lists[class].tail == slot {
            // The busiest flow is already last: no list to touch.
            if let Some(flow) = self.flow_mut(slot) {
                flow.state = state;
                flow.last_seen = now;
            }
            return true;
        }
        self.unlink(slot, class);
        if let Some(flow) = self.flow_mut(slot) {
            flow.state = state;
            flow.last_seen = now;
        }
        self.link_tail(slot, state.class());
        true
    }

    /// True if the flow is tracked and alive; nothing changes.
    pub fn contains(&self, key: &FlowKey, now: Instant) -> bool {
        self.map
            .get(key)
            .and_then(|&s| self.flow(s))
            .is_some_and(|f| Self::deadline(f) > now)
    }

    /// Tracks a new flow, evicting the flow nearest its expiry if full.
    pub fn insert(
        &mut self,
        key: FlowKey,
        origin: Direction,
        initiator_low: bool,
        state: State,
        now: Instant,
    ) {
        let now = self.tick(now);
        if let Some(&slot) = self.map.get(&key) {
            // An expired entry that nobody collected yet.
            self.remove(slot);
            self.removed.expired += 1;
        }
        if self.map.len() >= self.limit {
            if let Some(victim) = self.nearest_expiry() {
                self.remove(victim);
                self.removed.evicted += 1;
            }
        }
        let flow = Flow {
            key,
            origin,
            initiator_low,
            state,
            last_seen: now,
            prev: NIL,
            next: NIL,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(flow);
                s
            }
            None => {
                self.slots.push(Some(flow));
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(key, slot);
        self.link_tail(slot, state.class());
    }

    /// The head of the class list whose head expires first.
    fn nearest_expiry(&self) -> Option<u32> {
        self.lists
            .iter()
            .filter_map(|l| self.flow(l.head).map(|f| (Self::deadline(f), l.head)))
            .min()
            .map(|(_, slot)| slot)
    }

    /// When the next flow expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.lists
            .iter()
            .filter_map(|l| self.flow(l.head).map(Self::deadline))
            .min()
    }

    /// Removes every flow whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.tick(now);
        for class in 0..CLASSES {
            while let Some(flow) = self.flow(self.lists[class].head) {
                if Self::deadline(flow) > now {
                    break;
                }
                self.remove(self.lists[class].head);
                self.removed.expired += 1;
            }
        }
    }

    /// Removes the flows `keep` refuses, in slot order; returns how many.
    pub fn retain(&mut self, mut keep: impl FnMut(&Flow) -> bool) -> u64 {
        let mut cut = 0;
        for slot in 0..self.slots.len() as u32 {
            if self.flow(slot).is_some_and(|f| !keep(f)) {
                self.remove(slot);
                cut += 1;
            }
        }
        cut
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.slots.clear();
        self.free.clear();
        for l in &mut self.lists {
            *l = List {
                head: NIL,
                tail: NIL,
            };
        }
    }

    fn remove(&mut self, slot: u32) {
        let Some(flow) = self.flow(slot).copied() else {
            return;
        };
        self.unlink(slot, flow.state.class());
        self.map.remove(&flow.key);
        self.slots[slot as usize] = None;
        self.free.push(slot);
    }

    fn unlink(&mut self, slot: u32, class: usize) {
        let Some(&Flow { prev, next, .. }) = self.flow(slot) else {
            return;
        };
        match self.flow_mut(prev) {
            Some(p) => p.next = next,
            None => self.lists[class].head = next,
        }
        match self.flow_mut(next) {
            Some(n) => n.prev = prev,
            None => self.lists[class].tail = prev,
        }
    }

    fn link_tail(&mut self, slot: u32, class: usize) {
        let tail = self.lists[class].tail;
        if let Some(flow) = self.flow_mut(slot) {
            flow.prev = tail;
            flow.next = NIL;
        }
        match self.flow_mut(tail) {
            Some(t) => t.next = slot,
            None => self.lists[class].head = slot,
        }
        self.lists[class].tail = slot;
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use super::super::flow::{Endpoint, TCP};
    use super::super::timeouts::{ICMP_IDLE, TCP_ESTABLISHED_IDLE, TCP_TRANSITORY_IDLE, UDP_IDLE};
    use super::*;

    fn key(port: u16) -> FlowKey {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        FlowKey::new(
            TCP,
            Endpoint { addr: a, port },
            Endpoint { addr: b, port: 80 },
        )
        .0
    }

    fn table(limit: usize) -> Table {
        Table::new(limit, SeededHasher::new(1, 2))
    }

    #[test]
    fn flows_expire_by_class_and_poll_timeout_says_when() {
        let t0 = Instant::now();
        let mut t = table(16);
        t.insert(key(1), Direction::Inbound, true, State::TcpEstablished, t0);
        t.insert(key(2), Direction::Inbound, true, State::Datagram, t0);
        t.insert(key(3), Direction::Inbound, true, State::IcmpEcho, t0);
        assert_eq!(t.poll_timeout(), Some(t0 + ICMP_IDLE));
        t.handle_timeout(t0 + ICMP_IDLE);
        assert_eq!((t.len(), t.removed.expired), (2, 1));
        assert_eq!(t.poll_timeout(), Some(t0 + UDP_IDLE));
        // Use keeps a flow alive.
        assert!(t.touch(&key(2), true, t0 + secs(100), |s, _| s));
        t.handle_timeout(t0 + secs(200));
        assert!(t.contains(&key(2), t0 + secs(200)));
        t.handle_timeout(t0 + secs(220));
        assert!(!t.contains(&key(2), t0 + secs(220)));
        assert!(t.contains(&key(1), t0 + secs(3599)));
        assert_eq!(t.poll_timeout(), Some(t0 + TCP_ESTABLISHED_IDLE));
    }

    #[test]
    fn an_expired_flow_is_not_used_even_before_the_timer_runs() {
        let t0 = Instant::now();
        let mut t = table(16);
        t.insert(key(1), Direction::Outbound, true, State::TcpOpening, t0);
        assert!(!t.touch(&key(1), false, t0 + TCP_TRANSITORY_IDLE, |s, _| s));
        assert_eq!((t.len(), t.removed.expired), (0, 1));
    }

    #[test]
    fn a_full_table_evicts_the_flow_nearest_its_expiry() {
        let t0 = Instant::now();
        let mut t = table(3);
        t.insert(key(1), Direction::Inbound, true, State::TcpEstablished, t0);
        t.insert(
            key(2),
            Direction::Inbound,
            true,
            State::Datagram,
            t0 + secs(1),
        );
        t.insert(
            key(3),
            Direction::Inbound,
            true,
            State::Datagram,
            t0 + secs(2),
        );
        t.insert(
            key(4),
            Direction::Inbound,
            true,
            State::Datagram,
            t0 + secs(3),
        );
        assert_eq!((t.len(), t.removed.evicted), (3, 1));
        assert!(
            !t.contains(&key(2), t0 + secs(3)),
            "the oldest UDP flow went"
        );
        assert!(
            t.contains(&key(1), t0 + secs(3)),
            "the established TCP flow stayed"
        );
        // Slots are reused: the table never grows past its limit.
        for port in 5..100 {
            t.insert(
                key(port),
                Direction::Inbound,
                true,
                State::Datagram,
                t0 + secs(4),
            );
        }
        assert_eq!(t.len(), 3);
        assert!(t.slots.len() <= 4);
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }
}
