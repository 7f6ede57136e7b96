//! Networks: create, read, rename, re-zone, delete, and consistent snapshots.

use rand_core::RngCore;
use sqlx::AnyExecutor;

use super::audit::{append, NewEntry};
use super::query;
use super::{is_unique_violation, now, rows, SqlStore, WriteTx};
use crate::store::*;

/// Bumps the network's netmap version; every change a netmap shows calls it
/// inside its transaction, so versions only grow and never repeat.
pub(super) async fn bump_version(tx: &mut WriteTx, id: NetworkId) -> Result<(), StoreError> {
    query("UPDATE networks SET netmap_version = netmap_version + 1 WHERE id = ?")
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    tx.changed(id, ChangeKind::Netmap);
    Ok(())
}

pub(super) async fn get<'e>(
    exec: impl AnyExecutor<'e>,
    id: NetworkId,
) -> Result<Option<Network>, StoreError> {
    let sql = format!(
        "SELECT {} FROM networks WHERE id = ?",
        rows::NETWORK_COLUMNS
    );
    let row = query(sql).bind(id.to_string()).fetch_optional(exec).await?;
    row.as_ref().map(rows::network).transpose()
}

fn name_conflict(err: sqlx::Error, name: &str) -> StoreError {
    if is_unique_violation(&err) {
        StoreError::Conflict(format!("a network named {name:?} exists"))
    } else {
        err.into()
    }
}

/// Creates a network whose policy version 1 is `policy` (checked by the caller).
pub(super) async fn create(
    store: &SqlStore,
    actor: &Actor,
    new: NewNetwork,
    policy: &str,
) -> Result<Network, StoreError> {
    let mut bytes = [0u8; 8];
    rand_core::OsRng.fill_bytes(&mut bytes);
    let id = NetworkId::from_bytes(bytes);
    let (created_at, _) = now();
    let network = Network {
        id,
        name: new.name,
        pool: new.pool,
        ipv6_prefix: id.ula_prefix(),
        zone: new.zone,
        mtu: new.mtu,
        netmap_version: 1,
        created_at,
        device_expiry_secs: DEFAULT_DEVICE_EXPIRY_SECS,
    };
    let mut tx = store.begin_write().await?;
    query(
        "INSERT INTO networks (id, name, pool, zone, mtu, netmap_version, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id.to_string())
    .bind(&network.name)
    .bind(network.pool.to_string())
    .bind(&network.zone)
    .bind(i64::from(network.mtu))
    .bind(1i64)
    .bind(&network.created_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| name_conflict(e, &network.name))?;
    append(
        &mut tx,
        NewEntry {
            actor,
            action: AuditAction::NetworkCreate,
            network_id: Some(id),
            target: Some(id.to_string()),
            before: None,
            after: serde_json::to_value(&network).ok(),
        },
    )
    .await?;
    super::policy::insert_first(&mut tx, id, actor, policy).await?;
    tx.commit().await?;
    Ok(network)
}

pub(super) async fn list(store: &SqlStore) -> Result<Vec<Network>, StoreError> {
    let sql = format!(
        "SELECT {} FROM networks ORDER BY name",
        rows::NETWORK_COLUMNS
    );
    let found = query(sql).fetch_all(&store.read).await?;
    found.iter().map(rows::network).collect()
}

pub(super) async fn update(
    store: &SqlStore,
    actor: &Actor,
    id: NetworkId,
    patch: NetworkPatch,
) -> Result<Network, StoreError> {
    let mut tx = store.begin_write().await?;
    let before = get(&mut *tx, id)
        .await?
        .ok_or(StoreError::NotFound("network"))?;
    let mut after = before.clone();
    if let Some(name) = patch.name {
        after.name = name;
    }
    if let Some(zone) = patch.zone {
        after.zone = zone;
    }
    if let Some(secs) = patch.device_expiry_secs {
        after.device_expiry_secs = secs;
    }
    if after == before {
        return Ok(before);
    }
    let expiry = i64::try_from(after.device_expiry_secs)
        .map_err(|_| StoreError::Conflict("device expiry out of range".into()))?;
    query("UPDATE networks SET name = ?, zone = ?, device_expiry_secs = ? WHERE id = ?")
        .bind(&after.name)
        .bind(&after.zone)
        .bind(expiry)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| name_conflict(e, &after.name))?;
    bump_version(&mut tx, id).await?;
    after.netmap_version += 1;
    append(
        &mut tx,
        NewEntry {
            actor,
            action: AuditAction::NetworkUpdate,
            network_id: Some(id),
            target: Some(id.to_string()),
            before: serde_json::to_value(&before).ok(),
            after: serde_json::to_value(&after).ok(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

pub(super) async fn delete(
    store: &SqlStore,
    actor: &Actor,
    id: NetworkId,
) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    let before = get(&mut *tx, id)
        .await?
        .ok_or(StoreError::NotFound("network"))?;
    // Members and keys go with it (ON DELETE CASCADE).
    query("DELETE FROM networks WHERE id = ?")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    append(
        &mut tx,
        NewEntry {
            actor,
            action: AuditAction::NetworkDelete,
            network_id: Some(id),
            target: Some(id.to_string()),
            before: serde_json::to_value(&before).ok(),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn snapshot(
    store: &SqlStore,
    id: NetworkId,
) -> Result<Option<NetworkSnapshot>, StoreError> {
    // One read transaction: the network row (with its version) and the
    // members come from the same database state.
    let mut tx = store.begin_read().await?;
    let Some(network) = get(&mut *tx, id).await? else {
        return Ok(None);
    };
    let members = super::members::list_in(&mut *tx, id).await?;
    let services = super::services::list_in(&mut *tx, id).await?;
    let routes = super::routes::list_in(&mut *tx, id).await?;
    let policy = super::policy::in_force(&mut tx, &network).await?;
    let sites = super::sites::state_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Some(NetworkSnapshot {
        network,
        members,
        services,
        routes,
        policy,
        sites,
    }))
}
