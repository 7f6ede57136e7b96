//! The in-process hub between the API and the control server: it follows
//! the store's change feed and fans out "network N changed" notices,
//! counts which nodes are online where, keeps
//! the paths agents report, and caches one snapshot per network so a change
//! costs one read, not one per connected member.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, mpsc};
use warren_proto::control::ControllerMessage;
use warren_proto::{NetworkId, NodeId, NodePublicKey};

use crate::metrics::Metrics;
use crate::netmaps::SharedView;
use crate::paths::{PathReports, ReportedPath};
use crate::store::{Change, NetworkSnapshot, Store, StoreError};

/// Notices a slow session may fall behind by before it resyncs everything.
const CHANGE_BACKLOG: usize = 4096;
/// Messages for one session from other sessions; beyond this they are
/// dropped (call-me-maybe is best effort and retried by nodes).
const DIRECT_BACKLOG: usize = 64;
/// How long a network's sessions are left alone after a change woke them,
/// per session following it ([`fan_out_pace`]).
const PACE_PER_SESSION: std::time::Duration = std::time::Duration::from_micros(500);
/// Views kept per network ([`CacheSlot::views`]).
const VIEWS_KEPT: usize = 4;
/// The longest a change waits for its network's next fan-out.
const MAX_PACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long after one fan-out (every session of a network woken to push
/// its change) the next may start. A push costs the controller about
/// 150 µs per session (measured: the header, the copy of the shared
/// peers, the QUIC send and its acknowledgement), so at 500 µs per session
/// a stream of changes (a thousand nodes joining at once) is folded into
/// fan-outs that take under a third of the controller's time, leaving the
/// rest for the joins, instead of one fan-out per change, each waking
/// every session. A change to a quiet network goes out at once.
fn fan_out_pace(sessions: usize) -> std::time::Duration {
    PACE_PER_SESSION
        .saturating_mul(u32::try_from(sessions).unwrap_or(u32::MAX))
        .min(MAX_PACE)
}

/// When a network last woke its sessions, and whether a fan-out is due.
#[derive(Debug, Clone, Copy)]
struct Pace {
    last: std::time::Instant,
    deferred: bool,
}

impl Pace {
    fn since(last: std::time::Instant) -> Self {
        Pace {
            last,
            deferred: false,
        }
    }
}

/// When a change to a network goes out ([`next_fan_out`]).
#[derive(Debug, PartialEq, Eq)]
enum FanOut {
    Now,
    /// Put off to then: the network fanned out less than its pace ago.
    At(std::time::Instant),
    /// A fan-out already put off takes this change too.
    Pending,
}

/// When a change to `net` at `now` goes out, given each network's last
/// fan-out in `paces` (updated: a fan-out now or put off is noted).
fn next_fan_out(
    paces: &mut HashMap<NetworkId, Pace>,
    net: NetworkId,
    now: std::time::Instant,
    pace: std::time::Duration,
) -> FanOut {
    // Forget the networks that have been quiet for a while.
    paces.retain(|_, p| p.deferred || now.duration_since(p.last) < MAX_PACE);
    match paces.get_mut(&net) {
        Some(p) if p.deferred => FanOut::Pending,
        Some(p) if now.duration_since(p.last) < pace => {
            p.deferred = true;
            FanOut::At(p.last + pace)
        }
        _ => {
            paces.insert(net, Pace::since(now));
            FanOut::Now
        }
    }
}

/// A connected session's inbox for messages relayed from other nodes.
pub type Inbox = mpsc::Receiver<ControllerMessage>;
/// The sending ends of the inboxes of one node's sessions, by session ID.
type Outboxes = Vec<(u64, mpsc::Sender<ControllerMessage>)>;

struct CacheSlot {
    /// Set from the hub-wide counter by every change notice (and when the
    /// slot is made). Hub-wide, so a slot dropped and made again never
    /// repeats an old value.
    generation: u64,
    /// `generation` when the load of the latest snapshot (the last of
    /// `views`) started: it has every change up to that one, and it is
    /// current while they are equal.
    loaded_at: u64,
    /// The last few snapshots loaded, each with what all members see of
    /// it ([`SharedView`]), the latest last. Made with the load, in load
    /// order, so each view says what changed since the one before, and a
    /// reader still holding the snapshot before the latest shares its view.
    /// The latest is kept after a change: a reader that asked before the
    /// change may still take it.
    views: std::collections::VecDeque<(Arc<NetworkSnapshot>, Arc<SharedView>)>,
    /// Held while loading, so a change seen by a thousand sessions costs
    /// one database read, not a thousand.
    loading: Arc<tokio::sync::Mutex<()>>,
}

impl CacheSlot {
    /// The last snapshot loaded.
    fn latest(&self) -> Option<&Arc<NetworkSnapshot>> {
        self.views.back().map(|(snapshot, _)| snapshot)
    }

    /// The snapshot, if no change came since its load started.
    fn current(&self) -> Option<Arc<NetworkSnapshot>> {
        self.latest()
            .filter(|_| self.loaded_at == self.generation)
            .cloned()
    }
}

/// Shared state of one controller process.
pub struct Hub {
    store: Arc<dyn Store>,
    changes: broadcast::Sender<NetworkId>,
    /// Networks whose live state (reported paths) changed; see [`Hub::subscribe_live`].
    live: broadcast::Sender<NetworkId>,
    /// The sessions following each network ([`Watch`]): a change wakes
    /// only the sessions of its network.
    watchers: Mutex<HashMap<NetworkId, HashMap<u64, Arc<Dirty>>>>,
    /// The paths agents report, in memory only.
    paths: PathReports,
    /// Connections per (network, node), with the node's key; held across
    /// the database write so online/offline transitions are recorded in
    /// the order they happen.
    presence: tokio::sync::Mutex<HashMap<(NetworkId, NodeId), (usize, NodePublicKey)>>,
    /// Where agents reach each running replica of this controller (empty
    /// for a single controller), for `Welcome`.
    replicas: Mutex<Vec<String>>,
    cache: Mutex<HashMap<NetworkId, CacheSlot>>,
    /// The last generation handed to a cache slot.
    generations: std::sync::atomic::AtomicU64,
    /// Each busy network's last fan-out ([`fan_out_pace`]).
    paces: Mutex<HashMap<NetworkId, Pace>>,
    /// Authenticated sessions by node key, for relaying between nodes.
    sessions: Mutex<HashMap<NodePublicKey, Outboxes>>,
    next_session: std::sync::atomic::AtomicU64,
    metrics: Arc<Metrics>,
    /// Where nodes reach this controller: no approved route may capture it.
    pub controller_addresses: crate::routes::ControllerAddresses,
    /// `--site-mapped-range`, once set (the default until then).
    site_mapped_range: std::sync::OnceLock<ipnet::Ipv4Net>,
}

impl Hub {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<Self> {
        let (changes, _) = broadcast::channel(CHANGE_BACKLOG);
        let (live, _) = broadcast::channel(CHANGE_BACKLOG);
        let hub = Arc::new(Self {
            store,
            changes,
            live,
            watchers: Mutex::new(HashMap::new()),
            paths: PathReports::default(),
            presence: tokio::sync::Mutex::new(HashMap::new()),
            replicas: Mutex::new(Vec::new()),
            cache: Mutex::new(HashMap::new()),
            generations: std::sync::atomic::AtomicU64::new(0),
            paces: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            next_session: std::sync::atomic::AtomicU64::new(1),
            metrics,
            controller_addresses: Default::default(),
            site_mapped_range: std::sync::OnceLock::new(),
        });
        // The hub follows the store's change feed: whatever commits a
        // change, the cache drops that network's snapshot before the write
        // returns, and sessions and watchers hear of it.
        let weak = Arc::downgrade(&hub);
        hub.store.changes().listen(move |change| {
            if let Some(hub) = weak.upgrade() {
                hub.on_change(change);
            }
        });
        hub
    }

    /// Sets where mapped prefixes of overlapping sites come from; only the
    /// first call counts (the range is fixed for the process).
    pub fn set_site_mapped_range(&self, range: ipnet::Ipv4Net) {
        let _ = self.site_mapped_range.set(range);
    }

    /// What approvals and advertisements are checked against now.
    pub fn route_checks(&self) -> crate::store::RouteChecks {
        let mut checks = self.controller_addresses.checks();
        if let Some(range) = self.site_mapped_range.get() {
            checks.site_mapped_range = *range;
        }
        checks
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<NetworkId, CacheSlot>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The slot of `net`, made if missing.
    fn slot<'a>(
        &self,
        cache: &'a mut HashMap<NetworkId, CacheSlot>,
        net: NetworkId,
    ) -> &'a mut CacheSlot {
        cache.entry(net).or_insert_with(|| CacheSlot {
            generation: self.generations.load(Ordering::Relaxed),
            loaded_at: 0,
            views: Default::default(),
            loading: Arc::default(),
        })
    }

    /// A committed change from the store's feed. Members' state: the
    /// snapshot goes, and every connected member gets its new netmap. A
    /// record only people see (keys, grant requests): watchers only.
    fn on_change(self: &Arc<Self>, change: &Change) {
        if change.kind.touches_members() {
            self.invalidate(change.network);
        } else {
            // No receivers is fine: nobody is watching.
            let _ = self.live.send(change.network);
        }
    }

    fn invalidate(self: &Arc<Self>, net: NetworkId) {
        {
            let generation = self.next_generation();
            let mut cache = self.cache();
            self.slot(&mut cache, net).generation = generation;
        }
        let sessions = self
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&net)
            .map_or(0, HashMap::len);
        let due = next_fan_out(
            &mut self.paces.lock().unwrap_or_else(|p| p.into_inner()),
            net,
            std::time::Instant::now(),
            fan_out_pace(sessions),
        );
        match due {
            FanOut::Pending => {}
            FanOut::Now => self.fan_out(net),
            FanOut::At(due) => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let hub = Arc::downgrade(self);
                    runtime.spawn(async move {
                        tokio::time::sleep_until(due.into()).await;
                        if let Some(hub) = hub.upgrade() {
                            hub.fan_out_deferred(net);
                        }
                    });
                }
                // Outside a runtime nothing can wait: out it goes.
                Err(_) => self.fan_out_deferred(net),
            },
        }
    }

    /// The fan-out [`Hub::invalidate`] put off: the changes since the last
    /// one go out together.
    fn fan_out_deferred(&self, net: NetworkId) {
        let mut paces = self.paces.lock().unwrap_or_else(|p| p.into_inner());
        paces.insert(net, Pace::since(std::time::Instant::now()));
        drop(paces);
        self.fan_out(net);
    }

    /// Wakes every session and watcher of `net` to its change.
    fn fan_out(&self, net: NetworkId) {
        let watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        for dirty in watchers.get(&net).into_iter().flat_map(|w| w.values()) {
            dirty.mark(net);
        }
        drop(watchers);
        // No receivers is fine: nobody is connected.
        let _ = self.changes.send(net);
    }

    /// A follower of networks for session `session`: see [`Watch`].
    pub fn watch(self: &Arc<Self>, session: u64) -> Watch {
        Watch {
            hub: self.clone(),
            session,
            dirty: Arc::default(),
            nets: BTreeSet::new(),
        }
    }

    /// Forgets every cached snapshot without telling sessions: the next
    /// read goes to the database. A relay-only instance calls this
    /// periodically, since the changes happen in another process.
    pub fn expire_snapshots(&self) {
        let generation = self.next_generation();
        let mut cache = self.cache();
        for slot in cache.values_mut() {
            slot.generation = generation;
        }
    }

    /// The cached snapshot of `net` if no change came since it was loaded,
    /// without going to the database.
    pub fn cached_snapshot(&self, net: NetworkId) -> Option<Arc<NetworkSnapshot>> {
        self.cache().get(&net).and_then(CacheSlot::current)
    }

    /// Networks whose stored state changed (the store's change feed): members,
    /// presence, endpoints, policy, the network itself.
    pub fn subscribe(&self) -> broadcast::Receiver<NetworkId> {
        self.changes.subscribe()
    }

    /// Networks whose live state changed: a member's reported paths
    /// ([`Hub::paths_of`]) came, went, or changed kind, endpoint or peer
    /// name (not a mere handshake age), or a change only people see (a
    /// [`crate::store::ChangeKind::Record`]). Kept apart from [`Hub::subscribe`]
    /// because such a change touches nothing in the database or in any
    /// netmap: it must not make every session rebuild and diff its map. A
    /// watcher showing members subscribes to both. A receiver that lags
    /// gets `Lagged` and should read everything again.
    pub fn subscribe_live(&self) -> broadcast::Receiver<NetworkId> {
        self.live.subscribe()
    }

    /// `node`'s current paths in `net` as its agent last reported them,
    /// sorted by peer node ID; empty if it sent none (an older agent, no
    /// working path, or not connected).
    pub fn paths_of(&self, net: NetworkId, node: NodeId) -> Vec<ReportedPath> {
        self.paths.of(net, node, std::time::Instant::now())
    }

    /// Keeps what `node` reports of its paths in `net` through session
    /// `session` (already admitted: [`crate::paths::admit`]).
    pub fn record_paths(
        &self,
        net: NetworkId,
        node: NodeId,
        session: u64,
        paths: Vec<ReportedPath>,
    ) {
        if self
            .paths
            .record(net, node, session, paths, std::time::Instant::now())
        {
            // No receivers is fine: nobody is watching.
            let _ = self.live.send(net);
        }
    }

    /// Forgets `node`'s reported paths in `net`, if session `session`
    /// reported them: it left, lost its membership there, or ended.
    pub fn forget_paths(&self, net: NetworkId, node: NodeId, session: u64) {
        if self.paths.forget(net, node, session) {
            let _ = self.live.send(net);
        }
    }

    /// The network and its members with every change committed before
    /// the call, or `None` if the network does not exist. One load at a
    /// time per network, and a load serves everyone who asked before it
    /// started: while changes come faster than loads (a thousand nodes
    /// joining), the readers of a network share each load and its view
    /// instead of each loading its own.
    pub async fn snapshot(
        &self,
        net: NetworkId,
    ) -> Result<Option<Arc<NetworkSnapshot>>, StoreError> {
        let (asked_at, loading) = {
            let mut cache = self.cache();
            let slot = self.slot(&mut cache, net);
            if let Some(hit) = slot.current() {
                return Ok(Some(hit));
            }
            (slot.generation, slot.loading.clone())
        };
        let _guard = loading.lock().await;
        let generation = {
            let mut cache = self.cache();
            let slot = self.slot(&mut cache, net);
            // A load that started after the call began has what it needs.
            if let Some(loaded) = slot.latest().filter(|_| slot.loaded_at >= asked_at) {
                return Ok(Some(loaded.clone()));
            }
            slot.generation
        };
        let Some(loaded) = self.store.network_snapshot(net).await? else {
            // Keep no slot for a network that does not exist: relay frames
            // can name any ID, and must not grow the cache.
            self.cache().remove(&net);
            return Ok(None);
        };
        let loaded = Arc::new(loaded);
        let before = self
            .cache()
            .get(&net)
            .and_then(|slot| slot.views.back().map(|(_, view)| view.clone()));
        let view = Arc::new(SharedView::after(&loaded, before.as_deref()));
        let mut cache = self.cache();
        let slot = self.slot(&mut cache, net);
        // Loads run one at a time, so this one is the newest.
        slot.loaded_at = generation;
        if slot.views.len() == VIEWS_KEPT {
            slot.views.pop_front();
        }
        slot.views.push_back((loaded.clone(), view));
        Ok(Some(loaded))
    }

    /// What every member sees of `snapshot` (one this hub handed out),
    /// made with its load and shared.
    pub fn view(&self, snapshot: &Arc<NetworkSnapshot>) -> Arc<SharedView> {
        let kept = self.cache().get(&snapshot.network.id).and_then(|slot| {
            slot.views
                .iter()
                .find(|(s, _)| Arc::ptr_eq(s, snapshot))
                .map(|(_, view)| view.clone())
        });
        // One no longer kept: a view of its own, with no history.
        kept.unwrap_or_else(|| Arc::new(SharedView::of(snapshot)))
    }

    /// A connection joined `net` as `node`: on its first connection the
    /// member goes online (recorded and audited).
    pub async fn node_online(&self, net: NetworkId, key: &NodePublicKey) -> Result<(), StoreError> {
        let node = NodeId::from_key(key);
        let mut presence = self.presence.lock().await;
        let (count, _) = presence.entry((net, node)).or_insert((0, *key));
        *count += 1;
        if *count == 1 {
            self.metrics.members_online.fetch_add(1, Ordering::Relaxed);
            self.store.set_presence(net, key, true).await?;
        }
        Ok(())
    }

    /// A connection that joined `net` as `node` closed or left: when the last
    /// one goes, the member goes offline.
    pub async fn node_offline(
        &self,
        net: NetworkId,
        key: &NodePublicKey,
    ) -> Result<(), StoreError> {
        let node = NodeId::from_key(key);
        let mut presence = self.presence.lock().await;
        let Some((count, _)) = presence.get_mut(&(net, node)) else {
            return Ok(());
        };
        *count = count.saturating_sub(1);
        if *count > 0 {
            return Ok(());
        }
        presence.remove(&(net, node));
        self.metrics.members_online.fetch_sub(1, Ordering::Relaxed);
        self.store.set_presence(net, key, false).await?;
        Ok(())
    }

    /// Records again every member connected here as online here: for a
    /// replica that the others took for gone (its heartbeat late) and whose
    /// members they took offline.
    pub async fn reassert_presence(&self) -> Result<(), StoreError> {
        let presence = self.presence.lock().await;
        for ((net, _), (_, key)) in presence.iter() {
            match self.store.set_presence(*net, key, true).await {
                // Revoked or deleted meanwhile: its session ends on its own.
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// The running replicas' addresses, as last read.
    pub fn replicas(&self) -> Vec<String> {
        self.replicas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Notes the running replicas' addresses.
    pub fn set_replicas(&self, replicas: Vec<String>) {
        *self.replicas.lock().unwrap_or_else(|p| p.into_inner()) = replicas;
    }

    /// Registers an authenticated session; returns its ID and inbox.
    pub fn register_session(&self, key: NodePublicKey) -> (u64, Inbox) {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(DIRECT_BACKLOG);
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.entry(key).or_default().push((id, tx));
        (id, rx)
    }

    pub fn unregister_session(&self, key: &NodePublicKey, id: u64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = sessions.get_mut(key) {
            list.retain(|(i, _)| *i != id);
            if list.is_empty() {
                sessions.remove(key);
            }
        }
    }

    /// Hands a message to every session of `key`, or when none is here,
    /// to the other replicas (best effort: a node connected nowhere does
    /// not get it).
    pub fn deliver(&self, key: &NodePublicKey, message: &ControllerMessage) {
        if self.deliver_here(key, message) || !self.store.is_shared() {
            return;
        }
        let body = match serde_json::to_string(message) {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(%error, "encoding a message for another replica");
                return;
            }
        };
        let store = self.store.clone();
        let key = *key;
        tokio::spawn(async move {
            if let Err(error) = store.forward(&key, &body).await {
                tracing::debug!(%error, node = %key.short(), "forwarding a message to another replica");
            }
        });
    }

    /// Delivers, to the nodes connected here, what other replicas forward
    /// for them; ends with the store.
    pub async fn deliver_forwarded(self: Arc<Self>) {
        let mut forwarded = self.store.forwarded();
        loop {
            match forwarded.recv().await {
                Ok(message) => match serde_json::from_str::<ControllerMessage>(&message.body) {
                    Ok(decoded) => {
                        self.deliver_here(&message.to, &decoded);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "a message from another replica not understood")
                    }
                },
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(
                        dropped = n,
                        "messages from other replicas dropped (best effort)"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Hands a message to every session of `key` here; false if none took it.
    fn deliver_here(&self, key: &NodePublicKey, message: &ControllerMessage) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let Some(list) = sessions.get(key) else {
            return false;
        };
        list.iter()
            .filter(|(_, tx)| tx.try_send(message.clone()).is_ok())
            .count()
            > 0
    }
}

/// The networks changed since a session last looked, and its wake-up.
#[derive(Default)]
struct Dirty {
    nets: Mutex<BTreeSet<NetworkId>>,
    wake: tokio::sync::Notify,
}

impl Dirty {
    fn mark(&self, net: NetworkId) {
        self.nets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(net);
        // Kept as a permit if the session is busy: no wake-up is lost.
        self.wake.notify_one();
    }

    fn take(&self) -> BTreeSet<NetworkId> {
        std::mem::take(&mut *self.nets.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// One session's interest in networks: a change to a network it follows
/// marks that network, and [`Changes::changed`] hands the marked ones over,
/// each once however many changes came. The cost of a change is the
/// number of sessions of its network, not of the whole controller, and a
/// slow session never lags: it finds its networks marked. Dropped, it
/// stops following everything.
pub struct Watch {
    hub: Arc<Hub>,
    session: u64,
    dirty: Arc<Dirty>,
    nets: BTreeSet<NetworkId>,
}

impl Watch {
    fn watchers(&self) -> MutexGuard<'_, HashMap<NetworkId, HashMap<u64, Arc<Dirty>>>> {
        self.hub.watchers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows `net` from now on: call before reading its snapshot, so no
    /// change falls between the read and the following.
    pub fn follow(&mut self, net: NetworkId) {
        if self.nets.insert(net) {
            let dirty = self.dirty.clone();
            self.watchers()
                .entry(net)
                .or_default()
                .insert(self.session, dirty);
        }
    }

    pub fn unfollow(&mut self, net: NetworkId) {
        if self.nets.remove(&net) {
            self.leave(net);
        }
    }

    fn leave(&self, net: NetworkId) {
        let mut watchers = self.watchers();
        if let Some(sessions) = watchers.get_mut(&net) {
            sessions.remove(&self.session);
            if sessions.is_empty() {
                watchers.remove(&net);
            }
        }
    }

    /// Where the marked networks are handed over (held apart from the
    /// watch, so a session can wait on it while it changes what it follows).
    pub fn changes(&self) -> Changes {
        Changes(self.dirty.clone())
    }
}

/// The receiving end of a [`Watch`].
pub struct Changes(Arc<Dirty>);

impl Changes {
    /// The followed networks changed since the last call; waits for one.
    /// Cancel-safe: marks are only taken when this returns.
    pub async fn changed(&self) -> BTreeSet<NetworkId> {
        loop {
            let nets = self.0.take();
            if !nets.is_empty() {
                return nets;
            }
            self.0.wake.notified().await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        for net in std::mem::take(&mut self.nets) {
            self.leave(net);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_pace_grows_with_the_sessions_up_to_a_cap() {
        assert_eq!(fan_out_pace(0), Duration::ZERO);
        assert_eq!(fan_out_pace(2), Duration::from_millis(1));
        assert_eq!(fan_out_pace(1000), Duration::from_millis(500));
        assert_eq!(fan_out_pace(10_000), MAX_PACE);
        assert_eq!(fan_out_pace(usize::MAX), MAX_PACE);
    }

    #[test]
    fn changes_within_the_pace_fold_into_one_fan_out() {
        let net: NetworkId = "8056c2e21c000001".parse().unwrap();
        let other: NetworkId = "8056c2e21c000002".parse().unwrap();
        let pace = Duration::from_millis(50);
        let t0 = Instant::now();
        let mut paces = HashMap::new();
        // A quiet network goes out at once; the next change waits for the
        // end of the pace, and every change until then joins it.
        assert_eq!(next_fan_out(&mut paces, net, t0, pace), FanOut::Now);
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(
            next_fan_out(&mut paces, net, t1, pace),
            FanOut::At(t0 + pace)
        );
        let t2 = t0 + Duration::from_millis(20);
        assert_eq!(next_fan_out(&mut paces, net, t2, pace), FanOut::Pending);
        // Another network is paced on its own.
        assert_eq!(next_fan_out(&mut paces, other, t2, pace), FanOut::Now);
        // The put-off fan-out went at t0 + pace: the pace starts again.
        paces.insert(net, Pace::since(t0 + pace));
        let t3 = t0 + Duration::from_millis(60);
        assert_eq!(
            next_fan_out(&mut paces, net, t3, pace),
            FanOut::At(t0 + pace + pace)
        );
        // Long after the last fan-out, a change goes at once, and quiet
        // networks are forgotten.
        paces.insert(net, Pace::since(t0 + pace));
        let later = t0 + Duration::from_secs(5);
        assert_eq!(next_fan_out(&mut paces, net, later, pace), FanOut::Now);
        assert!(!paces.contains_key(&other));
        // A small network is not paced at all.
        assert_eq!(
            next_fan_out(&mut paces, net, later, fan_out_pace(0)),
            FanOut::Now
        );
    }
}
