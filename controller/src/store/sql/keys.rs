//! Pre-auth keys: made by admins, consumed by joins, stored only as hashes.

use sqlx::AnyConnection;
use time::OffsetDateTime;

use super::audit::{append, NewEntry};
use super::networks::get as get_network;
use super::{new_secret, new_short_id, now, rfc3339, rows, secret_hash, SqlStore};
use super::{query, query_as};
use crate::store::*;

/// Stored keys: the cap is `max_uses` when set; single-use keys made before
/// caps have none stored and `reusable = 0`. Both [`consume`] and
/// [`usable`] use this one condition.
const USABLE: &str = "(max_uses IS NULL OR uses < max_uses) AND (reusable = 1 OR uses = 0) \
     AND (expires_unix IS NULL OR expires_unix > ?)";

pub(super) async fn create(
    store: &SqlStore,
    actor: &Actor,
    net: NetworkId,
    spec: PreauthKeySpec,
) -> Result<NewPreauthKey, StoreError> {
    let id = new_short_id();
    let key = new_secret("wk_");
    let (created_at, _) = now();
    let expires_at = spec.expires_at(OffsetDateTime::now_utc());
    // A cap of one is a single-use key, whatever `reusable` says.
    let reusable = spec.reusable && spec.max_uses != Some(1);
    let max_uses = if reusable { spec.max_uses } else { Some(1) };
    let info = PreauthKey {
        id: id.clone(),
        network_id: net,
        reusable,
        expires_at: expires_at.map(rfc3339),
        uses: 0,
        max_uses: max_uses.map(u64::from),
        usable: true,
        created_by: actor.as_str().to_string(),
        created_at,
        tags: spec.tags.iter().map(|t| format!("tag:{t}")).collect(),
    };
    let tags = serde_json::to_string(&spec.tags).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let mut tx = store.begin_write().await?;
    if get_network(&mut *tx, net).await?.is_none() {
        return Err(StoreError::NotFound("network"));
    }
    query(
        "INSERT INTO preauth_keys (id, network_id, hash, reusable, expires_at, expires_unix, \
         uses, max_uses, created_by, created_at, tags) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(net.to_string())
    .bind(secret_hash(&key))
    .bind(i64::from(reusable))
    .bind(&info.expires_at)
    .bind(expires_at.map(|t| t.unix_timestamp()))
    .bind(max_uses.map(i64::from))
    .bind(&info.created_by)
    .bind(&info.created_at)
    .bind(&tags)
    .execute(&mut *tx)
    .await?;
    append(
        &mut tx,
        NewEntry {
            actor,
            action: AuditAction::KeyCreate,
            network_id: Some(net),
            target: Some(id),
            before: None,
            after: serde_json::to_value(&info).ok(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(NewPreauthKey { key, info })
}

pub(super) async fn list(store: &SqlStore, net: NetworkId) -> Result<Vec<PreauthKey>, StoreError> {
    let mut tx = store.begin_read().await?;
    if get_network(&mut *tx, net).await?.is_none() {
        return Err(StoreError::NotFound("network"));
    }
    let sql = format!(
        "SELECT {} FROM preauth_keys WHERE network_id = ? ORDER BY created_at, id",
        rows::KEY_COLUMNS
    );
    let found = query(sql).bind(net.to_string()).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    found.iter().map(rows::preauth_key).collect()
}

pub(super) async fn delete(
    store: &SqlStore,
    actor: &Actor,
    net: NetworkId,
    key_id: &str,
) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    let sql = format!(
        "SELECT {} FROM preauth_keys WHERE network_id = ? AND id = ?",
        rows::KEY_COLUMNS
    );
    let row = query(sql)
        .bind(net.to_string())
        .bind(key_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        return Err(StoreError::NotFound("pre-auth key"));
    };
    let before = rows::preauth_key(&row)?;
    query("DELETE FROM preauth_keys WHERE id = ?")
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
    append(
        &mut tx,
        NewEntry {
            actor,
            action: AuditAction::KeyDelete,
            network_id: Some(net),
            target: Some(key_id.to_string()),
            before: serde_json::to_value(&before).ok(),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Uses a key for a join into `net`, inside the join's write transaction:
/// the use and the member it authorizes commit together or not at all.
/// Returns the key's ID, or `None` if it is unknown, for another network,
/// used up (its cap reached) or expired. The check and the increment are
/// one statement in the writer's transaction, so concurrent joins cannot
/// both take a key's last use.
pub(super) async fn consume(
    conn: &mut AnyConnection,
    net: NetworkId,
    secret: &str,
) -> Result<Option<String>, StoreError> {
    let (_, now_unix) = now();
    let sql = format!(
        "UPDATE preauth_keys SET uses = uses + 1 \
         WHERE hash = ? AND network_id = ? AND {USABLE} RETURNING id"
    );
    let used: Option<(String,)> = query_as(sql)
        .bind(secret_hash(secret))
        .bind(net.to_string())
        .bind(now_unix)
        .fetch_optional(conn)
        .await?;
    Ok(used.map(|(id,)| id))
}

/// Whether `secret` would be accepted by [`consume`] now, read without the
/// writer: a join with a wrong key is refused before it queues for the
/// single write connection. [`consume`] decides again under the lock.
pub(super) async fn usable<'e>(
    exec: impl sqlx::AnyExecutor<'e>,
    net: NetworkId,
    secret: &str,
) -> Result<bool, StoreError> {
    let (_, now_unix) = now();
    let sql = format!("SELECT 1 FROM preauth_keys WHERE hash = ? AND network_id = ? AND {USABLE}");
    let found: Option<(i64,)> = query_as(sql)
        .bind(secret_hash(secret))
        .bind(net.to_string())
        .bind(now_unix)
        .fetch_optional(exec)
        .await?;
    Ok(found.is_some())
}

/// Puts the tags key `key_id` carries on `node`, which it just authorized.
pub(super) async fn apply_tags(
    conn: &mut sqlx::AnyConnection,
    net: NetworkId,
    key_id: &str,
    node: warren_proto::NodeId,
) -> Result<(), StoreError> {
    let (tags,): (String,) =
        query_as("SELECT tags FROM preauth_keys WHERE id = ? AND network_id = ?")
            .bind(key_id)
            .bind(net.to_string())
            .fetch_one(&mut *conn)
            .await?;
    let tags: Vec<String> = serde_json::from_str(&tags)
        .map_err(|_| StoreError::Corrupt(format!("bad key tags {tags:?}")))?;
    let (at, _) = now();
    for tag in tags {
        query(
            "INSERT INTO member_tags (network_id, node_id, tag, created_by, created_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(net.to_string())
        .bind(node.to_string())
        .bind(&tag)
        .bind(format!("key:{key_id}"))
        .bind(&at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
