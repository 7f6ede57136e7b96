//! Devices whose sign-in ran out: the clock notes them (once each, with an
//! audit entry), and an admin may end a sign-in early.

use sqlx::Row;
use warren_proto::{NetworkId, NodeId};

use super::members::{audit_change, get as get_member};
use super::networks::bump_version;
use super::WriteTx;
use super::{now, SqlStore};
use super::{query, query_as};
use crate::store::*;

/// Notes what is due: each authorized member whose `expires_unix` passed
/// reads as pending (expired) from now on. A cheap read first: the write
/// lock is taken only when a sign-in has run out. Returns the members
/// noted, as they read now.
pub(super) async fn note_due(store: &SqlStore) -> Result<Vec<Member>, StoreError> {
    const DUE: &str = "FROM members WHERE expires_unix IS NOT NULL AND expiry_noted = 0 \
                       AND state = 1 AND expires_unix <= ?";
    let (_, now_unix) = now();
    let any: Option<(String,)> = query_as(format!("SELECT node_id {DUE} LIMIT 1"))
        .bind(now_unix)
        .fetch_optional(&store.read)
        .await?;
    if any.is_none() {
        return Ok(Vec::new());
    }
    let mut tx = store.begin_write().await?;
    let rows = query(format!(
        "SELECT network_id, node_id {DUE} ORDER BY expires_unix, node_id"
    ))
    .bind(now_unix)
    .fetch_all(&mut *tx)
    .await?;
    let mut noted = Vec::new();
    let mut bumped = std::collections::BTreeSet::new();
    for row in &rows {
        let net: NetworkId =
            super::parse_stored("network id", &row.try_get::<String, _>("network_id")?)?;
        let node: NodeId = super::parse_stored("node id", &row.try_get::<String, _>("node_id")?)?;
        if let Some(member) = note(&mut tx, &Actor::system(), net, node).await? {
            if bumped.insert(net) {
                bump_version(&mut tx, net).await?;
            }
            noted.push(member);
        }
    }
    tx.commit().await?;
    Ok(noted)
}

/// Ends the sign-in of `node` now (an admin's "expire"): it reads as
/// pending until its owner signs it in again. `Conflict` for a member
/// without an owner (it has no sign-in to end) or one not authorized.
pub(super) async fn expire_now(
    store: &SqlStore,
    actor: &Actor,
    net: NetworkId,
    node: NodeId,
) -> Result<Member, StoreError> {
    let mut tx = store.begin_write().await?;
    let before = get_member(&mut *tx, net, node)
        .await?
        .ok_or(StoreError::NotFound("member"))?;
    if before.owner.is_none() {
        return Err(StoreError::Conflict(
            "the member has no owner, so no sign-in to end: revoke it instead".into(),
        ));
    }
    if before.state != MemberState::Authorized {
        return Err(StoreError::Conflict(format!(
            "the member is {}, not authorized",
            if before.expired {
                "already expired"
            } else {
                "not connected"
            }
        )));
    }
    let (_, now_unix) = now();
    query("UPDATE members SET expires_unix = ? WHERE network_id = ? AND node_id = ?")
        .bind(now_unix)
        .bind(net.to_string())
        .bind(node.to_string())
        .execute(&mut *tx)
        .await?;
    let after = note(&mut tx, actor, net, node)
        .await?
        .ok_or(StoreError::NotFound("member"))?;
    bump_version(&mut tx, net).await?;
    tx.commit().await?;
    Ok(after)
}

/// Marks one member expired and audits it (`member.expire`).
async fn note(
    tx: &mut WriteTx,
    actor: &Actor,
    net: NetworkId,
    node: NodeId,
) -> Result<Option<Member>, StoreError> {
    let Some(before) = get_member(&mut **tx, net, node).await? else {
        return Ok(None);
    };
    query("UPDATE members SET expiry_noted = 1 WHERE network_id = ? AND node_id = ?")
        .bind(net.to_string())
        .bind(node.to_string())
        .execute(&mut **tx)
        .await?;
    let after = get_member(&mut **tx, net, node)
        .await?
        .ok_or(StoreError::NotFound("member"))?;
    audit_change(tx, actor, AuditAction::MemberExpire, &before, &after).await?;
    Ok(Some(after))
}
