//! Several controller replicas on one PostgreSQL database.
//!
//! - **Changes.** Every write transaction that changes something also
//!   writes one `change_log` row per network it changed and notifies the
//!   `warren_changes` channel, in the same transaction: the rows and the
//!   notice exist exactly when the change does. Each replica's [`Follower`]
//!   wakes on the notice (or once a second, which catches up a notice
//!   lost while its listening connection was down), reads the rows after
//!   the last one it saw, and publishes the other replicas' changes on
//!   its own [`ChangeFeed`], where its sessions, DNS zones and console
//!   hear them as they hear its own. Row ids follow commit order, because
//!   writers hold one lock until they commit.
//! - **Replicas.** Each replica has a row with where agents reach it and a
//!   heartbeat. One whose heartbeat is older than [`REPLICA_TIMEOUT`] is
//!   gone.
//! - **Presence.** A member online is online *at a replica*: another
//!   replica's "offline" for it changes nothing once it has moved, and the
//!   members of a replica that is gone are taken offline by the others
//!   (unless they moved first, so a dead replica makes nobody flap).
//!
//! SQLite has one controller process: none of this runs there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::RngCore;
use sqlx::{Any, Transaction};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use warren_proto::{NetworkId, NodeId, NodePublicKey};

use super::{query, query_as, Backend, SqlStore};
use crate::store::changes::{ChangeKind, Pending};
use crate::store::{Actor, Replica, StoreError};

/// A replica whose heartbeat is older than this is gone.
pub const REPLICA_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a replica says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How often a follower reads the change log without being woken.
const CATCH_UP: Duration = Duration::from_secs(1);
/// How long change-log rows are kept for followers that were away.
const LOG_KEPT: Duration = Duration::from_secs(600);
/// Rows of replicas gone this long are deleted.
const REPLICA_KEPT: Duration = Duration::from_secs(86_400);
/// The channel replicas notify of new change-log rows.
const CHANNEL: &str = "warren_changes";
/// The channel that carries messages for nodes connected to another
/// replica (call-me-maybe, sign-in outcomes).
const FORWARD: &str = "warren_forward";
/// The largest message forwarded (PostgreSQL takes 8000 bytes a notice).
pub const MAX_FORWARD: usize = 7000;
/// Forwarded messages a slow hub may fall behind by.
pub(super) const FORWARD_BACKLOG: usize = 1024;
/// Change-log rows read at once.
const BATCH: i64 = 1000;

/// A new replica ID: 16 hex digits.
pub(super) fn new_id() -> Arc<str> {
    let mut bytes = [0u8; 8];
    rand_core::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes).into()
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Writes what `pending` changed to the change log and notifies the other
/// replicas, inside the transaction about to commit.
pub(super) async fn log_changes(
    tx: &mut Transaction<'static, Any>,
    pending: &Pending,
    replica: &str,
) -> Result<(), StoreError> {
    if pending.is_empty() {
        return Ok(());
    }
    let at = now_ms();
    for (net, kind) in pending.iter() {
        query("INSERT INTO change_log (network_id, kind, replica, at_ms) VALUES (?, ?, ?, ?)")
            .bind(net.to_string())
            .bind(kind.as_str())
            .bind(replica)
            .bind(at)
            .execute(&mut **tx)
            .await?;
    }
    // Delivered at commit, and not at all if the transaction rolls back.
    query("SELECT 1 FROM (SELECT pg_notify(?, '')) AS notified")
        .bind(CHANNEL)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A message another replica forwarded for a node connected here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub to: NodePublicKey,
    pub body: String,
}

impl Forwarded {
    /// `REPLICA\nKEY\nBODY` from a replica other than `own`; `None` for
    /// this replica's own notices and anything malformed.
    fn parse(payload: &str, own: &str) -> Option<Self> {
        let mut parts = payload.splitn(3, '\n');
        let (from, to, body) = (parts.next()?, parts.next()?, parts.next()?);
        if from == own {
            return None;
        }
        Some(Self {
            to: to.parse().ok()?,
            body: body.to_owned(),
        })
    }
}

/// The tasks that follow the other replicas' changes; they stop when this
/// is dropped.
pub struct Follower {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl SqlStore {
    /// This process's replica ID.
    pub fn replica_id(&self) -> &str {
        &self.replica
    }

    /// Whether other processes may serve the same database at once.
    pub fn is_shared(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Records this replica as running, with the address agents reach it
    /// at (`HOST:PORT`) and the one other replicas forward relayed packets
    /// to. A replica recorded at the same address is gone from now on.
    /// Nothing on SQLite.
    pub async fn register_replica(
        &self,
        control: Option<&str>,
        relay: Option<&str>,
    ) -> Result<(), StoreError> {
        if !self.is_shared() {
            return Ok(());
        }
        let now = now_ms();
        if let Some(control) = control {
            // An earlier process at this address is gone: this one took
            // its place (a restart, or a replacement on a moved address).
            query("UPDATE replicas SET heartbeat_ms = 0 WHERE control = ? AND id != ?")
                .bind(control)
                .bind(&*self.replica)
                .execute(&self.write)
                .await?;
        }
        query(
            "INSERT INTO replicas (id, control, relay, started_ms, heartbeat_ms) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&*self.replica)
        .bind(control)
        .bind(relay)
        .bind(now)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Says this replica is alive, takes the members of replicas that are
    /// gone offline, and forgets old change-log rows and replicas. Returns
    /// whether this replica had itself been taken for gone (its members
    /// may have been taken offline meanwhile: the caller says again who is
    /// connected here).
    pub async fn heartbeat(&self) -> Result<bool, StoreError> {
        if !self.is_shared() {
            return Ok(false);
        }
        let now = now_ms();
        let stale: Option<(i64,)> = query_as("SELECT heartbeat_ms FROM replicas WHERE id = ?")
            .bind(&*self.replica)
            .fetch_optional(&self.write)
            .await?;
        let was_gone = stale.is_none_or(|(beat,)| beat < now - millis(REPLICA_TIMEOUT));
        let updated = query("UPDATE replicas SET heartbeat_ms = ? WHERE id = ?")
            .bind(now)
            .bind(&*self.replica)
            .execute(&self.write)
            .await?;
        if updated.rows_affected() == 0 {
            query("INSERT INTO replicas (id, started_ms, heartbeat_ms) VALUES (?, ?, ?)")
                .bind(&*self.replica)
                .bind(now)
                .bind(now)
                .execute(&self.write)
                .await?;
        }
        self.reap_presence().await?;
        query("DELETE FROM change_log WHERE at_ms < ?")
            .bind(now - millis(LOG_KEPT))
            .execute(&self.write)
            .await?;
        query("DELETE FROM replicas WHERE heartbeat_ms < ?")
            .bind(now - millis(REPLICA_KEPT))
            .execute(&self.write)
            .await?;
        Ok(was_gone)
    }

    /// Takes offline every member online at no live replica; returns the
    /// networks that changed. On SQLite (one process, just started) that
    /// is every member online.
    pub(super) async fn reap_presence(&self) -> Result<Vec<NetworkId>, StoreError> {
        let mut tx = self.begin_write().await?;
        let online: Vec<(String, String)> = match self.backend {
            Backend::Sqlite => {
                query_as("SELECT network_id, node_id FROM members WHERE online = 1")
                    .fetch_all(&mut *tx)
                    .await?
            }
            Backend::Postgres => {
                query_as(
                    "SELECT network_id, node_id FROM members WHERE online = 1 \
                     AND (online_replica IS NULL OR online_replica NOT IN \
                     (SELECT id FROM replicas WHERE heartbeat_ms >= ?))",
                )
                .bind(now_ms() - millis(REPLICA_TIMEOUT))
                .fetch_all(&mut *tx)
                .await?
            }
        };
        let mut changed = Vec::new();
        for (net, node) in online {
            let net: NetworkId = super::parse_stored("network id", &net)?;
            let node: NodeId = super::parse_stored("node id", &node)?;
            super::join::write_presence(&mut tx, &Actor::system(), net, node, false, None).await?;
            if !changed.contains(&net) {
                changed.push(net);
            }
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Passes `body` to the replica holding `to`'s connection, if another
    /// does (every replica hears it; those without `to` drop it). Nothing
    /// on SQLite.
    pub(super) async fn forward_to_replicas(
        &self,
        to: &NodePublicKey,
        body: &str,
    ) -> Result<(), StoreError> {
        if !self.is_shared() {
            return Ok(());
        }
        if body.len() > MAX_FORWARD {
            return Err(StoreError::Invalid(format!(
                "a forwarded message of {} bytes is over {MAX_FORWARD}",
                body.len()
            )));
        }
        let payload = format!("{}\n{}\n{body}", self.replica, to);
        query("SELECT 1 FROM (SELECT pg_notify(?, ?)) AS notified")
            .bind(FORWARD)
            .bind(payload)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Where agents reach the running replica, other than this one, that
    /// holds a connection of the node with `key`; `None` if none does
    /// (or on SQLite).
    pub(super) async fn replica_holding(
        &self,
        key: &NodePublicKey,
    ) -> Result<Option<String>, StoreError> {
        if !self.is_shared() {
            return Ok(None);
        }
        let row: Option<(Option<String>,)> = query_as(
            "SELECT r.control FROM members m JOIN replicas r ON r.id = m.online_replica \
             WHERE m.public_key = ? AND m.online = 1 AND r.id != ? AND r.heartbeat_ms >= ? \
             LIMIT 1",
        )
        .bind(key.to_base64())
        .bind(&*self.replica)
        .bind(now_ms() - millis(REPLICA_TIMEOUT))
        .fetch_optional(&self.read)
        .await?;
        Ok(row.and_then(|(control,)| control))
    }

    /// The replicas running now, oldest first; empty on SQLite.
    pub(super) async fn live_replicas(&self) -> Result<Vec<Replica>, StoreError> {
        if !self.is_shared() {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, Option<String>, Option<String>)> = query_as(
            "SELECT id, control, relay FROM replicas WHERE heartbeat_ms >= ? \
             ORDER BY started_ms, id",
        )
        .bind(now_ms() - millis(REPLICA_TIMEOUT))
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, control, relay)| Replica { id, control, relay })
            .collect())
    }

    /// Starts following the other replicas' changes (PostgreSQL only):
    /// from now on, each one is published on this store's feed.
    pub async fn follow(&self) -> Result<Option<Follower>, StoreError> {
        let Some(url) = self.url.clone() else {
            return Ok(None);
        };
        let (last,): (i64,) = query_as("SELECT COALESCE(MAX(id), 0) FROM change_log")
            .fetch_one(&self.read)
            .await?;
        // Listening before this returns: nothing committed after it is missed.
        let listener = connect_listener(&url).await?;
        let wake = Arc::new(Notify::new());
        let tasks = vec![
            tokio::spawn(listen(
                url,
                Some(listener),
                wake.clone(),
                self.forwarded.clone(),
                self.replica.clone(),
            )),
            tokio::spawn(follow(self.clone(), last, wake)),
        ];
        Ok(Some(Follower { tasks }))
    }

    /// Reads the change-log rows after `last` and publishes the other
    /// replicas' ones.
    async fn catch_up(&self, last: &mut i64) -> Result<(), StoreError> {
        loop {
            let rows: Vec<(i64, String, String, String)> = query_as(
                "SELECT id, network_id, kind, replica FROM change_log \
                 WHERE id > ? ORDER BY id LIMIT ?",
            )
            .bind(*last)
            .bind(BATCH)
            .fetch_all(&self.read)
            .await?;
            let read = rows.len();
            let mut pending = Pending::default();
            for (id, net, kind, replica) in rows {
                *last = id;
                if *replica == *self.replica {
                    continue;
                }
                match (net.parse::<NetworkId>(), ChangeKind::from_name(&kind)) {
                    (Ok(net), Some(kind)) => pending.record(net, kind),
                    _ => tracing::warn!(id, %net, %kind, "change-log row not understood: skipped"),
                }
            }
            self.feed.publish(pending);
            if read < usize::try_from(BATCH).unwrap_or(usize::MAX) {
                return Ok(());
            }
        }
    }

    /// Every network as changed: for a follower that was away longer than
    /// the change log keeps rows.
    async fn everything_changed(&self) -> Result<(), StoreError> {
        let nets: Vec<(String,)> = query_as("SELECT id FROM networks")
            .fetch_all(&self.read)
            .await?;
        let mut pending = Pending::default();
        for (net,) in nets {
            if let Ok(net) = net.parse::<NetworkId>() {
                pending.record(net, ChangeKind::Netmap);
            }
        }
        self.feed.publish(pending);
        Ok(())
    }
}

/// Holds a connection listening on [`CHANNEL`] and wakes the follower on
/// every notice, and after every reconnect (notices meanwhile are lost);
/// and on [`FORWARD`], whose messages from other replicas it passes on.
async fn listen(
    url: Arc<str>,
    mut connected: Option<sqlx::postgres::PgListener>,
    wake: Arc<Notify>,
    forwarded: tokio::sync::broadcast::Sender<Forwarded>,
    replica: Arc<str>,
) {
    loop {
        let listener = match connected.take() {
            Some(listener) => Ok(listener),
            None => connect_listener(&url).await,
        };
        match listener {
            Ok(mut listener) => loop {
                wake.notify_one();
                match listener.try_recv().await {
                    Ok(Some(notice)) if notice.channel() == FORWARD => {
                        if let Some(message) = Forwarded::parse(notice.payload(), &replica) {
                            // Nobody listening: no node here to take it.
                            let _ = forwarded.send(message);
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "listening for other replicas' changes");
                        break;
                    }
                }
            },
            Err(error) => tracing::warn!(%error, "listening for other replicas' changes"),
        }
        tokio::time::sleep(CATCH_UP).await;
    }
}

/// A connection listening on [`CHANNEL`] and [`FORWARD`].
async fn connect_listener(url: &str) -> Result<sqlx::postgres::PgListener, StoreError> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.listen_all([CHANNEL, FORWARD]).await?;
    Ok(listener)
}

/// Publishes the other replicas' changes on `store`'s feed, from change-log
/// row `last` on, when woken and at least once a second.
async fn follow(store: SqlStore, mut last: i64, wake: Arc<Notify>) {
    let mut caught_up = Instant::now();
    loop {
        let _ = tokio::time::timeout(CATCH_UP, wake.notified()).await;
        match store.catch_up(&mut last).await {
            Ok(()) => {
                if caught_up.elapsed() > LOG_KEPT / 2 {
                    tracing::warn!("the change log may have dropped changes meanwhile: reading everything again");
                    if let Err(error) = store.everything_changed().await {
                        tracing::warn!(%error, "reading every network again");
                        continue;
                    }
                }
                caught_up = Instant::now();
            }
            Err(error) => tracing::warn!(%error, "reading the other replicas' changes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_messages_come_from_other_replicas_and_name_a_key() {
        let key = warren_proto::NodePrivateKey::from_bytes([7; 32]).public_key();
        let payload = format!("r2\n{key}\n{{\"type\":\"x\"}}\nmore");
        assert_eq!(
            Forwarded::parse(&payload, "r1"),
            Some(Forwarded {
                to: key,
                body: "{\"type\":\"x\"}\nmore".into()
            })
        );
        assert_eq!(Forwarded::parse(&payload, "r2"), None, "our own");
        assert_eq!(Forwarded::parse("r2\nnot-a-key\n{}", "r1"), None);
        assert_eq!(Forwarded::parse("r2", "r1"), None);
    }
}
