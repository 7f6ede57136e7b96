//! Members as the admin manages them: list, authorize, revoke, rename, delete.

use std::collections::BTreeSet;

use sqlx::AnyExecutor;

use super::assign::assign;
use super::audit::{append, NewEntry};
use super::networks::{bump_version, get as get_network};
use super::WriteTx;
use super::{is_unique_violation, rows, SqlStore};
use super::{query, query_as};
use crate::names;
use crate::store::*;

pub(super) async fn list_in<'e>(
    exec: impl AnyExecutor<'e>,
    net: NetworkId,
) -> Result<Vec<Member>, StoreError> {
    let sql = format!(
        "SELECT {} FROM {} WHERE members.network_id = ? ORDER BY members.node_id",
        rows::MEMBER_COLUMNS,
        rows::MEMBERS_WITH_OWNERS
    );
    let found = query(sql).bind(net.to_string()).fetch_all(exec).await?;
    found.iter().map(rows::member).collect()
}

pub(super) async fn list(store: &SqlStore, net: NetworkId) -> Result<Vec<Member>, StoreError> {
    let mut tx = store.begin_read().await?;
    if get_network(&mut *tx, net).await?.is_none() {
        return Err(StoreError::NotFound("network"));
    }
    let members = list_in(&mut *tx, net).await?;
    tx.commit().await?;
    Ok(members)
}

pub(super) async fn get<'e>(
    exec: impl AnyExecutor<'e>,
    net: NetworkId,
    node: NodeId,
) -> Result<Option<Member>, StoreError> {
    let sql = format!(
        "SELECT {} FROM {} WHERE members.network_id = ? AND members.node_id = ?",
        rows::MEMBER_COLUMNS,
        rows::MEMBERS_WITH_OWNERS
    );
    let row = query(sql)
        .bind(net.to_string())
        .bind(node.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(rows::member).transpose()
}

/// The names taken in a network, for collision suffixes.
pub(super) async fn taken_names<'e>(
    exec: impl AnyExecutor<'e>,
    net: NetworkId,
) -> Result<BTreeSet<String>, StoreError> {
    let names: Vec<(String,)> =
        query_as("SELECT name FROM members WHERE network_id = ? AND name IS NOT NULL")
            .bind(net.to_string())
            .fetch_all(exec)
            .await?;
    Ok(names.into_iter().map(|(n,)| n).collect())
}

/// Audits a change to one member (its rows before and after), in the
/// change's transaction.
pub(super) async fn audit_change(
    conn: &mut WriteTx,
    actor: &Actor,
    action: AuditAction,
    before: &Member,
    after: &Member,
) -> Result<(), StoreError> {
    append(
        conn,
        NewEntry {
            actor,
            action,
            network_id: Some(before.network_id),
            target: Some(before.node_id.to_string()),
            before: Some(rows::member_json(before)),
            after: Some(rows::member_json(after)),
        },
    )
    .await
}

pub(super) async fn set_state(
    store: &SqlStore,
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
    // Authorization is when a member gets its name and address.
    let mut after = if state == MemberState::Authorized {
        let network = get_network(&mut *tx, net)
            .await?
            .ok_or(StoreError::NotFound("network"))?;
        assign(&mut tx, &network, &before).await?
    } else {
        before.clone()
    };
    // An admin who authorizes an expired device lifts its expiry: it stays
    // on until revoked, like a device joined with a key.
    let lift = if state == MemberState::Authorized {
        ", expires_unix = NULL, expiry_noted = 0"
    } else {
        ""
    };
    query(format!(
        "UPDATE members SET state = ?{lift} WHERE network_id = ? AND node_id = ?"
    ))
    .bind(state.as_int())
    .bind(net.to_string())
    .bind(node.to_string())
    .execute(&mut *tx)
    .await?;
    bump_version(&mut tx, net).await?;
    after.state = state;
    after.authorized = state == MemberState::Authorized;
    if after.authorized {
        after.expires_at = None;
        after.expired = false;
    }
    let action = match state {
        MemberState::Authorized => AuditAction::MemberAuthorize,
        MemberState::Revoked => AuditAction::MemberRevoke,
        MemberState::Pending => AuditAction::MemberPending,
    };
    audit_change(&mut tx, actor, action, &before, &after).await?;
    tx.commit().await?;
    Ok(after)
}

pub(super) async fn rename(
    store: &SqlStore,
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
    if before.name.as_deref() == Some(name.as_str()) {
        return Ok(before);
    }
    query("UPDATE members SET name = ? WHERE network_id = ? AND node_id = ?")
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
    after.name = Some(name);
    audit_change(&mut tx, actor, AuditAction::MemberRename, &before, &after).await?;
    tx.commit().await?;
    Ok(after)
}

pub(super) async fn delete(
    store: &SqlStore,
    actor: &Actor,
    action: AuditAction,
    net: NetworkId,
    node: NodeId,
) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    let before = get(&mut *tx, net, node)
        .await?
        .ok_or(StoreError::NotFound("member"))?;
    remove(&mut tx, actor, action, &before).await?;
    tx.commit().await?;
    Ok(())
}

async fn remove(
    conn: &mut WriteTx,
    actor: &Actor,
    action: AuditAction,
    before: &Member,
) -> Result<(), StoreError> {
    let net = before.network_id;
    let routes = super::routes::list_in(&mut **conn, net).await?;
    query("DELETE FROM members WHERE network_id = ? AND node_id = ?")
        .bind(net.to_string())
        .bind(before.node_id.to_string())
        .execute(&mut **conn)
        .await?;
    bump_version(conn, net).await?;
    append(
        conn,
        NewEntry {
            actor,
            action,
            network_id: Some(net),
            target: Some(before.node_id.to_string()),
            before: Some(rows::member_json(before)),
            after: None,
        },
    )
    .await?;
    // Its routes went with it (ON DELETE CASCADE), and so do the mapped
    // prefixes no other router of their site keeps.
    super::sites::reconcile(conn, actor, net, None, &routes).await?;
    Ok(())
}

/// The member whose node writes for itself: found by its full key, not by
/// the 40-bit ID alone, and authorized. A pending or revoked member writes
/// nothing (`NotAuthorized`).
pub(super) async fn get_self<'e>(
    exec: impl AnyExecutor<'e>,
    net: NetworkId,
    key: &NodePublicKey,
) -> Result<Member, StoreError> {
    let member = get(exec, net, NodeId::from_key(key))
        .await?
        .filter(|m| m.public_key == *key)
        .ok_or(StoreError::NotFound("member"))?;
    if member.state != MemberState::Authorized {
        return Err(StoreError::NotAuthorized(
            "only an authorized member can do this",
        ));
    }
    Ok(member)
}

/// A node leaves `net`. Its row goes, unless it is revoked: a revocation
/// stays until an admin deletes the member.
pub(super) async fn leave(
    store: &SqlStore,
    net: NetworkId,
    key: &NodePublicKey,
) -> Result<(), StoreError> {
    let node = NodeId::from_key(key);
    let mut tx = store.begin_write().await?;
    let member = get(&mut *tx, net, node)
        .await?
        .filter(|m| m.public_key == *key)
        .ok_or(StoreError::NotFound("member"))?;
    if member.state == MemberState::Revoked {
        return Err(StoreError::Conflict(
            "this membership is revoked; only an admin can remove it".into(),
        ));
    }
    remove(
        &mut tx,
        &Actor::node(&node),
        AuditAction::MemberLeave,
        &member,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
