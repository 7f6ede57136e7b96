//! Members as the admin manages them: list, authorize, revoke, rename, delete.

use std::collections::BTreeSet;

use sqlx::sqlite::SqliteExecutor;

use super::audit::{append, NewEntry};
use super::networks::{bump_version, get as get_network};
use super::{is_unique_violation, rows, SqliteStore};
use crate::names;
use crate::store::*;

pub(super) async fn list_in<'e>(
    exec: impl SqliteExecutor<'e>,
    net: NetworkId,
) -> Result<Vec<Member>, StoreError> {
    let sql = format!(
        "SELECT {} FROM members WHERE network_id = ? ORDER BY node_id",
        rows::MEMBER_COLUMNS
    );
    let found = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(net.to_string())
        .fetch_all(exec)
        .await?;
    found.iter().map(rows::member).collect()
}

pub(super) async fn list(store: &SqliteStore, net: NetworkId) -> Result<Vec<Member>, StoreError> {
    let mut tx = store.read.begin().await?;
    if get_network(&mut *tx, net).await?.is_none() {
        return Err(StoreError::NotFound("network"));
    }
    let members = list_in(&mut *tx, net).await?;
    tx.commit().await?;
    Ok(members)
}

pub(super) async fn get<'e>(
    exec: impl SqliteExecutor<'e>,
    net: NetworkId,
    node: NodeId,
) -> Result<Option<Member>, StoreError> {
    let sql = format!(
        "SELECT {} FROM members WHERE network_id = ? AND node_id = ?",
        rows::MEMBER_COLUMNS
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(net.to_string())
        .bind(node.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(rows::member).transpose()
}

/// The names taken in a network, for collision suffixes.
pub(super) async fn taken_names<'e>(
    exec: impl SqliteExecutor<'e>,
    net: NetworkId,
) -> Result<BTreeSet<String>, StoreError> {
    let names: Vec<(String,)> = sqlx::query_as("SELECT name FROM members WHERE network_id = ?")
        .bind(net.to_string())
        .fetch_all(exec)
        .await?;
    Ok(names.into_iter().map(|(n,)| n).collect())
}

pub(super) async fn set_state(
    store: &SqliteStore,
    actor: &Actor,
    net: NetworkId,
    node: NodeId,
    state: MemberState,
) -> Result<Member, StoreError> {
    let mut tx = store.begin_write().await?;
    let before = get(&mut *tx, net, node)
        .await?
        .ok_or(StoreError::NotFound("member"))?;
    if before.state == state {
        return Ok(before);
    }
    sqlx::query("UPDATE members SET state = ? WHERE network_id = ? AND node_id = ?")
        .bind(state.as_int())
        .bind(net.to_string())
        .bind(node.to_string())
        .execute(&mut *tx)
        .await?;
    bump_version(&mut tx, net).await?;
    let mut after = before.clone();
    after.state = state;
    after.authorized = state == MemberState::Authorized;
    let action = match state {
        MemberState::Authorized => "member.authorize",
        MemberState::Revoked => "member.revoke",
        MemberState::Pending => "member.pending",
    };
    append(
        &mut tx,
        NewEntry {
            actor,
            action,
            network_id: Some(net),
            target: Some(node.to_string()),
            before: Some(rows::member_json(&before)),
            after: Some(rows::member_json(&after)),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

pub(super) async fn rename(
    store: &SqliteStore,
    actor: &Actor,
    net: NetworkId,
    node: NodeId,
    requested: &str,
) -> Result<Member, StoreError> {
    let name = names::sanitize_label(requested, &node);
    let mut tx = store.begin_write().await?;
    let before = get(&mut *tx, net, node)
        .await?
        .ok_or(StoreError::NotFound("member"))?;
    if before.name == name {
        return Ok(before);
    }
    sqlx::query("UPDATE members SET name = ? WHERE network_id = ? AND node_id = ?")
        .bind(&name)
        .bind(net.to_string())
        .bind(node.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("another member is named {name:?}"))
            } else {
                e.into()
            }
        })?;
    bump_version(&mut tx, net).await?;
    let mut after = before.clone();
    after.name = name;
    append(
        &mut tx,
        NewEntry {
            actor,
            action: "member.rename",
            network_id: Some(net),
            target: Some(node.to_string()),
            before: Some(rows::member_json(&before)),
            after: Some(rows::member_json(&after)),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

pub(super) async fn delete(
    store: &SqliteStore,
    actor: &Actor,
    action: &str,
    net: NetworkId,
    node: NodeId,
) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    let before = get(&mut *tx, net, node)
        .await?
        .ok_or(StoreError::NotFound("member"))?;
    sqlx::query("DELETE FROM members WHERE network_id = ? AND node_id = ?")
        .bind(net.to_string())
        .bind(node.to_string())
        .execute(&mut *tx)
        .await?;
    bump_version(&mut tx, net).await?;
    append(
        &mut tx,
        NewEntry {
            actor,
            action,
            network_id: Some(net),
            target: Some(node.to_string()),
            before: Some(rows::member_json(&before)),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
