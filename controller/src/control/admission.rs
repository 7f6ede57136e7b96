//! Limits on what one source address and one node key may ask of the
//! control server: connections at once, new connections and joins per
//! second. Anyone can reach the control port and make fresh keys, so these
//! are counted before a handshake costs a task or a join costs the store.
//!
//! Loopback sources are exempt from the per-source limits (not from the
//! per-key one): nothing off the machine can send from them, and local
//! fleets (the fan-out benchmark, a relay-only instance's tests) share one.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Connections one source may hold open at once.
pub const CONNECTIONS_PER_SOURCE: u32 = 64;
/// New connections per source: a burst, then this many per second.
const CONNECT_BURST: f64 = 32.0;
const CONNECT_RATE: f64 = 4.0;
/// Joins per source (a whole office behind one NAT reconnecting at once
/// fits in the burst), and per node key (a node rejoins its networks after
/// a reconnect, not in a loop).
const JOIN_BURST_PER_SOURCE: f64 = 64.0;
const JOIN_RATE_PER_SOURCE: f64 = 2.0;
const JOIN_BURST_PER_KEY: f64 = 16.0;
const JOIN_RATE_PER_KEY: f64 = 0.5;
/// QUIC handshakes in flight above which a new one must first prove its
/// source address (a Retry round trip), so spoofed Initials cannot make
/// the server hold state for addresses that never answer.
pub const RETRY_ABOVE_HANDSHAKES: usize = 64;
/// Handshakes one source may have in flight at once.
pub const HANDSHAKES_PER_SOURCE: u32 = 8;
/// Past this many tracked sources or keys, full buckets are forgotten.
const MAX_TRACKED: usize = 65_536;

/// The address a limit counts: IPv4 hosts, IPv6 /64s (one host can hold
/// a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(_) => Source(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    Source(IpAddr::V6(bits.into()))
                }
            },
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// A token bucket per key.
#[derive(Debug)]
pub(crate) struct Buckets<K> {
    burst: f64,
    rate: f64,
    buckets: HashMap<K, (f64, Instant)>,
}

impl<K: Eq + Hash + Copy> Buckets<K> {
    pub(crate) fn new(burst: f64, rate: f64) -> Self {
        Self {
            burst,
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `key`; false if its bucket is empty.
    pub(crate) fn take(&mut self, key: K, now: Instant) -> bool {
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&key) {
            let (burst, rate) = (self.burst, self.rate);
            self.buckets
                .retain(|_, (tokens, at)| refilled(*tokens, *at, now, burst, rate) < burst);
        }
        let entry = self.buckets.entry(key).or_insert((self.burst, now));
        let tokens = refilled(entry.0, entry.1, now, self.burst, self.rate);
        if tokens < 1.0 {
            *entry = (tokens, now);
            return false;
        }
        *entry = (tokens - 1.0, now);
        true
    }
}

fn refilled(tokens: f64, at: Instant, now: Instant, burst: f64, rate: f64) -> f64 {
    (tokens + now.saturating_duration_since(at).as_secs_f64() * rate).min(burst)
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many connections from this address")]
    Connections,
    #[error("too many handshakes from this address at once")]
    Handshakes,
    #[error("too many new connections from this address; slow down")]
    ConnectRate,
    #[error("too many joins from this address; slow down")]
    SourceJoins,
    #[error("too many joins from this node; slow down")]
    KeyJoins,
}

#[derive(Debug)]
struct State {
    retry_above: usize,
    handshaking: usize,
    handshaking_per_source: HashMap<Source, u32>,
    open: HashMap<Source, u32>,
    connects: Buckets<Source>,
    source_joins: Buckets<Source>,
    key_joins: Buckets<[u8; 32]>,
}

/// The control server's admission limits, shared by all connections.
#[derive(Debug, Clone)]
pub struct Admission(Arc<Mutex<State>>);

impl Default for Admission {
    fn default() -> Self {
        Self::new(RETRY_ABOVE_HANDSHAKES)
    }
}

/// What to do with a QUIC Initial.
#[derive(Debug)]
pub enum Handshake {
    /// Go on with the handshake; the guard counts it in flight.
    Accept(InFlight),
    /// Ask the client to prove its address first.
    Retry,
    Refuse(Refusal),
}

impl Admission {
    pub fn new(retry_above: usize) -> Self {
        Self(Arc::new(Mutex::new(State {
            retry_above,
            handshaking: 0,
            handshaking_per_source: HashMap::new(),
            open: HashMap::new(),
            connects: Buckets::new(CONNECT_BURST, CONNECT_RATE),
            source_joins: Buckets::new(JOIN_BURST_PER_SOURCE, JOIN_RATE_PER_SOURCE),
            key_joins: Buckets::new(JOIN_BURST_PER_KEY, JOIN_RATE_PER_KEY),
        })))
    }

    /// A QUIC Initial from `ip`, whose address is `validated` (it answered
    /// a Retry) or not.
    pub fn handshake(&self, ip: IpAddr, validated: bool) -> Handshake {
        let source = Source::of(ip);
        let mut state = self.state();
        if !validated && state.handshaking >= state.retry_above {
            return Handshake::Retry;
        }
        let mine = state
            .handshaking_per_source
            .get(&source)
            .copied()
            .unwrap_or(0);
        if !is_loopback(ip) && mine >= HANDSHAKES_PER_SOURCE {
            return Handshake::Refuse(Refusal::Handshakes);
        }
        state.handshaking += 1;
        *state.handshaking_per_source.entry(source).or_insert(0) += 1;
        Handshake::Accept(InFlight {
            admission: self.clone(),
            source,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock still holds
        // consistent counters.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection from `ip`: admitted with a guard that counts it
    /// open until dropped, or refused.
    pub fn connect(&self, ip: IpAddr, now: Instant) -> Result<OpenConnection, Refusal> {
        let source = Source::of(ip);
        let mut state = self.state();
        if !is_loopback(ip) {
            if state.open.get(&source).copied().unwrap_or(0) >= CONNECTIONS_PER_SOURCE {
                return Err(Refusal::Connections);
            }
            if !state.connects.take(source, now) {
                return Err(Refusal::ConnectRate);
            }
        }
        *state.open.entry(source).or_insert(0) += 1;
        Ok(OpenConnection {
            admission: self.clone(),
            source,
        })
    }

    /// A join by the node with `key`, connected from `ip`.
    pub fn join(&self, ip: IpAddr, key: &[u8; 32], now: Instant) -> Result<(), Refusal> {
        let mut state = self.state();
        if !state.key_joins.take(*key, now) {
            return Err(Refusal::KeyJoins);
        }
        if !is_loopback(ip) && !state.source_joins.take(Source::of(ip), now) {
            return Err(Refusal::SourceJoins);
        }
        Ok(())
    }
}

/// A handshake in flight; dropping it (done or failed) frees its place.
#[derive(Debug)]
pub struct InFlight {
    admission: Admission,
    source: Source,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.admission.state();
        state.handshaking = state.handshaking.saturating_sub(1);
        if let Some(count) = state.handshaking_per_source.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.handshaking_per_source.remove(&self.source);
            }
        }
    }
}

/// An admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct OpenConnection {
    admission: Admission,
    source: Source,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let mut state = self.admission.state();
        if let Some(count) = state.open.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.open.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ipv6_sources_count_per_64_and_mapped_v4_as_v4() {
        let a = Source::of("2001:db8:1:2::1".parse().unwrap());
        let b = Source::of("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = Source::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            Source::of("::ffff:192.0.2.1".parse().unwrap()),
            Source::of("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn connections_are_capped_while_open_and_freed_on_drop() {
        let admission = Admission::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut now = Instant::now();
        let mut open = Vec::new();
        while open.len() < CONNECTIONS_PER_SOURCE as usize {
            now += Duration::from_secs(1);
            open.push(admission.connect(ip, now).unwrap());
        }
        now += Duration::from_secs(1);
        assert_eq!(
            admission.connect(ip, now).unwrap_err(),
            Refusal::Connections
        );
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(admission.connect(other, now).is_ok());
        open.pop();
        assert!(admission.connect(ip, now).is_ok());
    }

    #[test]
    fn bursts_pass_then_the_rate_holds() {
        let admission = Admission::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        let mut kept = Vec::new();
        for _ in 0..CONNECT_BURST as usize {
            kept.push(admission.connect(ip, now).unwrap());
        }
        assert_eq!(
            admission.connect(ip, now).unwrap_err(),
            Refusal::ConnectRate
        );
        let later = now + Duration::from_secs_f64(1.0 / CONNECT_RATE);
        assert!(admission.connect(ip, later).is_ok());

        let key = [7u8; 32];
        for _ in 0..JOIN_BURST_PER_KEY as usize {
            admission.join(ip, &key, now).unwrap();
        }
        assert_eq!(admission.join(ip, &key, now), Err(Refusal::KeyJoins));
        // Other keys from the same address share the source's budget.
        let mut refused = None;
        for i in 0..=JOIN_BURST_PER_SOURCE as u8 {
            if let Err(e) = admission.join(ip, &[i + 100; 32], now) {
                refused = Some(e);
                break;
            }
        }
        assert_eq!(refused, Some(Refusal::SourceJoins));
    }

    #[test]
    fn handshakes_past_the_threshold_must_prove_their_address() {
        let admission = Admission::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = admission.handshake(a, false);
        let second = admission.handshake(b, false);
        assert!(matches!(first, Handshake::Accept(_)));
        assert!(matches!(second, Handshake::Accept(_)));
        assert!(matches!(admission.handshake(a, false), Handshake::Retry));
        assert!(matches!(admission.handshake(a, true), Handshake::Accept(_)));
        drop((first, second));
        assert!(matches!(
            admission.handshake(a, false),
            Handshake::Accept(_)
        ));

        let many = Admission::new(usize::MAX);
        let held: Vec<_> = (0..HANDSHAKES_PER_SOURCE)
            .map(|_| many.handshake(a, true))
            .collect();
        assert!(held.iter().all(|h| matches!(h, Handshake::Accept(_))));
        assert!(matches!(
            many.handshake(a, true),
            Handshake::Refuse(Refusal::Handshakes)
        ));
        assert!(matches!(many.handshake(b, true), Handshake::Accept(_)));
    }

    #[test]
    fn loopback_is_limited_per_key_only() {
        let admission = Admission::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let now = Instant::now();
        let open: Vec<_> = (0..=CONNECTIONS_PER_SOURCE)
            .map(|_| admission.connect(ip, now).unwrap())
            .collect();
        assert!(open.len() > CONNECTIONS_PER_SOURCE as usize);
        for i in 0..=JOIN_BURST_PER_SOURCE as u8 {
            admission.join(ip, &[i; 32], now).unwrap();
        }
        let key = [200u8; 32];
        for _ in 0..JOIN_BURST_PER_KEY as usize {
            admission.join(ip, &key, now).unwrap();
        }
        assert_eq!(admission.join(ip, &key, now), Err(Refusal::KeyJoins));
    }
}
