//! The SQL store, one code for SQLite and PostgreSQL through sqlx's `Any`
//! driver. SQLite is one file in WAL mode with synchronous=FULL, writes
//! serialised through a one-connection pool and `BEGIN IMMEDIATE`.
//! PostgreSQL is shared by every replica: writers serialise on one
//! transaction-scoped advisory lock, so both stores see the same
//! one-writer-at-a-time history, and readers take a repeatable-read
//! snapshot. The SQL both run is the common dialect: `?` placeholders
//! become `$1`, `$2`, ... (see [`query`]), flags are integers, and nothing
//! names a function only one of them has.

mod assign;
mod audit;
mod expiry;
mod grant_requests;
mod grants;
mod join;
pub use join::MAX_PENDING;
mod keys;
mod members;
mod networks;
mod policy;
mod recheck;
mod replicas;
pub use replicas::{Follower, Forwarded, HEARTBEAT, MAX_FORWARD, REPLICA_TIMEOUT};
mod routes;
mod rows;
mod services;
mod sessions;
mod sites;
mod tokens;
mod users;

use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand_core::RngCore;
use sha2::{Digest, Sha256};
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Any, AnyConnection, AnyPool};
use sqlx::{Connection as _, Executor as _, Transaction};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use warren_proto::{NetworkId, NodeId, NodePublicKey};

use super::*;

/// How long a writer waits for another process (e.g. `token create`) to
/// release the database before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const READ_CONNECTIONS: u32 = 4;
/// Connections one replica keeps to PostgreSQL.
const POSTGRES_CONNECTIONS: u32 = 8;
/// The advisory lock every PostgreSQL write transaction holds: one writer
/// at a time across all replicas, as SQLite's `BEGIN IMMEDIATE` gives.
const WRITE_LOCK: i64 = 0x7761_7272_656e; // "warren"

/// Which database a [`SqlStore`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The SQL implementation of [`Store`].
#[derive(Clone)]
pub struct SqlStore {
    /// SQLite: exactly one connection, so writers queue here in order
    /// instead of spinning on SQLite's busy handler. PostgreSQL: the same
    /// pool as `read`.
    write: AnyPool,
    read: AnyPool,
    backend: Backend,
    /// Where committed transactions' changes go.
    feed: Arc<ChangeFeed>,
    /// This process's ID among the replicas sharing the database: which
    /// members' connections it holds, and which change-log rows it wrote.
    replica: Arc<str>,
    /// PostgreSQL's URL, for the connection that listens for the other
    /// replicas' changes.
    url: Option<Arc<str>>,
    /// Messages other replicas forwarded for nodes (PostgreSQL).
    forwarded: tokio::sync::broadcast::Sender<Forwarded>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// A write transaction that records what it changes, per network, and
/// publishes that to the change feed when it commits. Dropped without a
/// commit, it rolls back and publishes nothing.
pub(super) struct WriteTx {
    tx: Transaction<'static, Any>,
    pending: changes::Pending,
    feed: Arc<ChangeFeed>,
    /// PostgreSQL: the replica whose change-log rows this commit writes.
    log: Option<Arc<str>>,
}

impl WriteTx {
    /// Notes that this transaction changes `kind` in `net`.
    pub(super) fn changed(&mut self, net: NetworkId, kind: ChangeKind) {
        self.pending.record(net, kind);
    }

    pub(super) async fn commit(mut self) -> Result<(), StoreError> {
        if let Some(replica) = &self.log {
            replicas::log_changes(&mut self.tx, &self.pending, replica).await?;
        }
        self.tx.commit().await?;
        self.feed.publish(self.pending);
        Ok(())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

/// A statement for either database: its `?` placeholders (outside quoted
/// text) are numbered `$1`, `$2`, ..., which PostgreSQL needs and SQLite
/// reads as the same positions.
pub(super) fn query(sql: impl AsRef<str>) -> sqlx::query::Query<'static, Any, AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(numbered(sql.as_ref())))
}

/// [`query`], read into `O` (a tuple of columns).
pub(super) fn query_as<O>(
    sql: impl AsRef<str>,
) -> sqlx::query::QueryAs<'static, Any, O, AnyArguments>
where
    O: for<'r> sqlx::FromRow<'r, AnyRow>,
{
    sqlx::query_as(sqlx::AssertSqlSafe(numbered(sql.as_ref())))
}

/// `sql` with each `?` outside single-quoted text replaced by `$n`.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut quoted = false;
    let mut n = 0;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

/// A SQLite database file as a URL for the `Any` driver; `mode` is `rwc`
/// or `ro`. The path is percent-encoded, so `?`, `#` and `%` in it stay
/// part of the name.
fn sqlite_url(path: &Path, mode: &str) -> Result<String, StoreError> {
    let text = path.to_str().ok_or_else(|| {
        StoreError::Invalid(format!("the database path {} is not UTF-8", path.display()))
    })?;
    let mut url = String::from("sqlite://");
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~+".contains(&b) {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url.push_str("?mode=");
    url.push_str(mode);
    Ok(url)
}

/// Pool options for SQLite connections through `Any`: every connection
/// gets the settings a URL cannot carry.
fn sqlite_pool(max: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                     PRAGMA busy_timeout = {}",
                    BUSY_TIMEOUT.as_millis()
                )))
                .await?;
                Ok(())
            })
        })
}

impl SqlStore {
    /// Opens (creating if needed) the SQLite database at `path` and runs
    /// migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        // Migrations, WAL mode (kept in the file) and creation go through
        // SQLite's own driver, which knows every setting.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let mut setup = sqlx::SqliteConnection::connect_with(&options).await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut setup)
            .await?;
        setup.close().await?;
        let url = sqlite_url(path, "rw")?;
        let write = sqlite_pool(1).connect(&url).await?;
        let read = sqlite_pool(READ_CONNECTIONS).connect(&url).await?;
        Ok(Self {
            write,
            read,
            backend: Backend::Sqlite,
            feed: Arc::default(),
            replica: replicas::new_id(),
            url: None,
            forwarded: tokio::sync::broadcast::channel(replicas::FORWARD_BACKLOG).0,
        })
    }

    /// Connects to PostgreSQL at `url` (`postgres://...`) and runs
    /// migrations; any number of replicas may share one database.
    pub async fn connect_postgres(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let mut setup = sqlx::PgConnection::connect(url).await?;
        // The migrator holds an advisory lock: replicas starting together
        // migrate once.
        sqlx::migrate!("./migrations/postgres")
            .run(&mut setup)
            .await?;
        setup.close().await?;
        let pool = AnyPoolOptions::new()
            .max_connections(POSTGRES_CONNECTIONS)
            .connect(url)
            .await?;
        Ok(Self {
            write: pool.clone(),
            read: pool,
            backend: Backend::Postgres,
            feed: Arc::default(),
            replica: replicas::new_id(),
            url: Some(url.into()),
            forwarded: tokio::sync::broadcast::channel(replicas::FORWARD_BACKLOG).0,
        })
    }

    /// Opens an existing SQLite database for reading only, without
    /// migrations: a relay-only instance reading the membership its
    /// controller (another process, same file, WAL mode) writes. Every
    /// write fails.
    pub async fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let read = sqlite_pool(READ_CONNECTIONS)
            .connect(&sqlite_url(path, "ro")?)
            .await?;
        // Fail at start, not on the first frame, if this is not a
        // controller database (or its schema is missing).
        query("SELECT 1 FROM networks LIMIT 1")
            .fetch_optional(&read)
            .await?;
        Ok(Self {
            write: read.clone(),
            read,
            backend: Backend::Sqlite,
            feed: Arc::default(),
            replica: replicas::new_id(),
            url: None,
            forwarded: tokio::sync::broadcast::channel(replicas::FORWARD_BACKLOG).0,
        })
    }

    /// Closes both pools, waiting for connections to finish.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        let tx = match self.backend {
            // IMMEDIATE takes the write lock up front, so a transaction
            // that reads before it writes (IPAM, key use, the audit
            // chain's head) never sees a snapshot that another writer has
            // moved past.
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            // The same, across replicas: the lock is held to commit, and
            // read committed then shows every earlier writer's rows.
            Backend::Postgres => {
                let mut tx = self.write.begin().await?;
                query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(?)) AS locked")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        };
        Ok(WriteTx {
            tx,
            pending: changes::Pending::default(),
            feed: self.feed.clone(),
            log: (self.backend == Backend::Postgres).then(|| self.replica.clone()),
        })
    }

    /// A read transaction: one snapshot for all its statements.
    async fn begin_read(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.read.begin().await?,
            Backend::Postgres => {
                self.read
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await?
            }
        })
    }
}

/// Whether a `--database` value names PostgreSQL.
pub fn is_postgres_url(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

/// The current time as stored: RFC 3339 text and unix seconds.
fn now() -> (String, i64) {
    let t = OffsetDateTime::now_utc();
    (rfc3339(t), t.unix_timestamp())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// A new secret with a kind prefix: `wt_` tokens, `wk_` pre-auth keys.
fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Short random ID for tokens and keys: 8 hex digits.
fn new_short_id() -> String {
    let mut bytes = [0u8; 4];
    rand_core::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn parse_stored<T: FromStr>(what: &str, text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("bad {what}: {text:?}")))
}

#[async_trait]
impl Store for SqlStore {
    fn changes(&self) -> &Arc<ChangeFeed> {
        &self.feed
    }

    async fn create_token(&self, actor: &Actor, spec: TokenSpec) -> Result<NewToken, StoreError> {
        tokens::create(self, actor, spec).await
    }

    async fn find_token(&self, secret: &str) -> Result<Option<Token>, StoreError> {
        tokens::find(self, secret).await
    }

    async fn list_tokens(&self) -> Result<Vec<Token>, StoreError> {
        tokens::list(self).await
    }

    async fn revoke_token(&self, actor: &Actor, id: &str) -> Result<Token, StoreError> {
        tokens::revoke(self, actor, id).await
    }

    async fn touch_token(&self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        tokens::touch(self, id, at).await
    }

    async fn create_network(&self, actor: &Actor, new: NewNetwork) -> Result<Network, StoreError> {
        networks::create(self, actor, new, crate::policy::DEFAULT_POLICY).await
    }

    async fn list_networks(&self) -> Result<Vec<Network>, StoreError> {
        networks::list(self).await
    }

    async fn get_network(&self, id: NetworkId) -> Result<Network, StoreError> {
        networks::get(&self.read, id)
            .await?
            .ok_or(StoreError::NotFound("network"))
    }

    async fn update_network(
        &self,
        actor: &Actor,
        id: NetworkId,
        patch: NetworkPatch,
    ) -> Result<Network, StoreError> {
        networks::update(self, actor, id, patch).await
    }

    async fn delete_network(&self, actor: &Actor, id: NetworkId) -> Result<(), StoreError> {
        networks::delete(self, actor, id).await
    }

    async fn network_snapshot(&self, id: NetworkId) -> Result<Option<NetworkSnapshot>, StoreError> {
        networks::snapshot(self, id).await
    }

    async fn list_members(&self, net: NetworkId) -> Result<Vec<Member>, StoreError> {
        members::list(self, net).await
    }

    async fn get_member(&self, net: NetworkId, node: NodeId) -> Result<Member, StoreError> {
        members::get(&self.read, net, node)
            .await?
            .ok_or(StoreError::NotFound("member"))
    }

    async fn set_member_state(
        &self,
        actor: &Actor,
        net: NetworkId,
        node: NodeId,
        state: MemberState,
    ) -> Result<Member, StoreError> {
        members::set_state(self, actor, net, node, state).await
    }

    async fn rename_member(
        &self,
        actor: &Actor,
        net: NetworkId,
        node: NodeId,
        name: &str,
    ) -> Result<Member, StoreError> {
        members::rename(self, actor, net, node, name).await
    }

    async fn delete_member(
        &self,
        actor: &Actor,
        action: AuditAction,
        net: NetworkId,
        node: NodeId,
    ) -> Result<(), StoreError> {
        members::delete(self, actor, action, net, node).await
    }

    async fn leave(&self, net: NetworkId, node_key: &NodePublicKey) -> Result<(), StoreError> {
        members::leave(self, net, node_key).await
    }

    async fn join(&self, request: JoinRequest) -> Result<JoinResult, StoreError> {
        join::join(self, request).await
    }

    async fn set_presence(
        &self,
        net: NetworkId,
        node_key: &NodePublicKey,
        online: bool,
    ) -> Result<bool, StoreError> {
        join::set_presence(self, net, node_key, online).await
    }

    async fn set_endpoints(
        &self,
        net: NetworkId,
        node_key: &NodePublicKey,
        endpoints: &[SocketAddr],
    ) -> Result<bool, StoreError> {
        join::set_endpoints(self, net, node_key, endpoints).await
    }

    async fn reset_presence(&self) -> Result<Vec<NetworkId>, StoreError> {
        self.reap_presence().await
    }

    async fn replicas(&self) -> Result<Vec<Replica>, StoreError> {
        self.live_replicas().await
    }

    async fn forward(&self, to: &NodePublicKey, body: &str) -> Result<(), StoreError> {
        self.forward_to_replicas(to, body).await
    }

    fn forwarded(&self) -> tokio::sync::broadcast::Receiver<Forwarded> {
        self.forwarded.subscribe()
    }

    fn is_shared(&self) -> bool {
        SqlStore::is_shared(self)
    }

    async fn replica_holding(&self, key: &NodePublicKey) -> Result<Option<String>, StoreError> {
        SqlStore::replica_holding(self, key).await
    }

    async fn set_services(
        &self,
        net: NetworkId,
        node_key: &NodePublicKey,
        services: &[warren_proto::service::ServiceSpec],
    ) -> Result<bool, StoreError> {
        services::set(self, net, node_key, services).await
    }

    async fn create_preauth_key(
        &self,
        actor: &Actor,
        net: NetworkId,
        spec: PreauthKeySpec,
    ) -> Result<NewPreauthKey, StoreError> {
        keys::create(self, actor, net, spec).await
    }

    async fn list_preauth_keys(&self, net: NetworkId) -> Result<Vec<PreauthKey>, StoreError> {
        keys::list(self, net).await
    }

    async fn delete_preauth_key(
        &self,
        actor: &Actor,
        net: NetworkId,
        key_id: &str,
    ) -> Result<(), StoreError> {
        keys::delete(self, actor, net, key_id).await
    }

    async fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        audit::page(&self.read, query).await
    }

    async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        audit::head(&self.read).await
    }

    async fn audit_verify(
        &self,
        anchor: Option<&AuditHead>,
    ) -> Result<AuditVerification, StoreError> {
        audit::verify(&self.read, anchor).await
    }
}
