//! What nodes do to their own memberships: join, presence, endpoints.

use std::net::SocketAddr;

use sqlx::sqlite::SqliteConnection;

use super::audit::{append, NewEntry};
use super::keys::consume;
use super::members::{get as get_member, taken_names};
use super::networks::{bump_version, get as get_network};
use super::{now, rows, SqliteStore};
use crate::store::*;
use crate::{ipam, names};

const AGENT_VERSION_MAX: usize = 64;

fn endpoints_json(endpoints: &[SocketAddr]) -> String {
    serde_json::to_string(endpoints).unwrap_or_else(|_| "[]".to_string())
}

fn refused(reason: &str) -> JoinResult {
    JoinResult {
        decision: JoinDecision::Refused(reason.to_string()),
        changed: false,
    }
}

pub(super) async fn join(store: &SqliteStore, req: JoinRequest) -> Result<JoinResult, StoreError> {
    let node = NodeId::from_key(&req.node_key);
    let actor = Actor::node(&node);
    let version: String = req.agent_version.chars().take(AGENT_VERSION_MAX).collect();
    let net = req.network_id;
    // One write transaction from the first read to the last write: the key's
    // use, the address, the name and the audit entries commit together.
    let mut tx = store.begin_write().await?;
    let Some(network) = get_network(&mut *tx, net).await? else {
        return Ok(refused("unknown network"));
    };
    let result = match get_member(&mut *tx, net, node).await? {
        Some(member) => rejoin(&mut tx, &actor, member, &req, &version).await?,
        None => {
            let Some(result) = first_join(&mut tx, &actor, &network, &req, &version).await? else {
                return Ok(refused("pre-auth key is invalid, used up or expired"));
            };
            result
        }
    };
    if let JoinDecision::Refused(_) = result.decision {
        // Roll back: a refused join leaves no trace, not even a key's use.
        return Ok(result);
    }
    if result.changed {
        bump_version(&mut tx, net).await?;
    }
    tx.commit().await?;
    Ok(result)
}

async fn rejoin(
    conn: &mut SqliteConnection,
    actor: &Actor,
    member: Member,
    req: &JoinRequest,
    version: &str,
) -> Result<JoinResult, StoreError> {
    let net = member.network_id;
    let node = member.node_id;
    if member.public_key != req.node_key {
        // Two keys whose IDs share 40 bits: never let one act as the other.
        return Ok(refused("node ID collision with another key"));
    }
    if member.state == MemberState::Revoked {
        return Ok(refused("revoked"));
    }
    if member.agent_version != version {
        sqlx::query("UPDATE members SET agent_version = ? WHERE network_id = ? AND node_id = ?")
            .bind(version)
            .bind(net.to_string())
            .bind(node.to_string())
            .execute(&mut *conn)
            .await?;
    }
    let mut changed = false;
    if !req.endpoints.is_empty() && req.endpoints != member.endpoints {
        update_endpoints(conn, actor, &member, &req.endpoints).await?;
        changed = true;
    }
    if member.state == MemberState::Authorized {
        return Ok(JoinResult {
            decision: JoinDecision::Authorized,
            changed,
        });
    }
    // Pending: a valid key given now authorizes it.
    let key_id = match &req.preauth_key {
        Some(secret) => consume(conn, net, secret).await?,
        None => None,
    };
    let Some(key_id) = key_id else {
        return Ok(JoinResult {
            decision: JoinDecision::Pending,
            changed,
        });
    };
    sqlx::query("UPDATE members SET state = ? WHERE network_id = ? AND node_id = ?")
        .bind(MemberState::Authorized.as_int())
        .bind(net.to_string())
        .bind(node.to_string())
        .execute(&mut *conn)
        .await?;
    let mut after = member.clone();
    after.state = MemberState::Authorized;
    after.authorized = true;
    audit_key_use(conn, actor, net, &key_id, node).await?;
    append(
        conn,
        NewEntry {
            actor,
            action: "member.authorize",
            network_id: Some(net),
            target: Some(node.to_string()),
            before: Some(rows::member_json(&member)),
            after: Some(rows::member_json(&after)),
        },
    )
    .await?;
    Ok(JoinResult {
        decision: JoinDecision::Authorized,
        changed: true,
    })
}

/// Creates the member. `None` if a key was given and is not valid: a wrong
/// key creates nothing, so a spray of joins with a used key leaves no trace
/// but the refusals.
async fn first_join(
    conn: &mut SqliteConnection,
    actor: &Actor,
    network: &Network,
    req: &JoinRequest,
    version: &str,
) -> Result<Option<JoinResult>, StoreError> {
    let net = network.id;
    let node = NodeId::from_key(&req.node_key);
    let key_id = match &req.preauth_key {
        Some(secret) => match consume(conn, net, secret).await? {
            Some(id) => Some(id),
            None => return Ok(None),
        },
        None => None,
    };
    let used: Vec<(i64,)> =
        sqlx::query_as("SELECT ipv4 FROM members WHERE network_id = ? ORDER BY ipv4")
            .bind(net.to_string())
            .fetch_all(&mut *conn)
            .await?;
    let used: Vec<u32> = used
        .into_iter()
        .filter_map(|(a,)| u32::try_from(a).ok())
        .collect();
    let Some(ipv4) = ipam::lowest_free(network.pool, &used) else {
        return Ok(Some(refused("address pool exhausted")));
    };
    let base = names::sanitize_label(&req.name, &node);
    let name = names::unique_label(&base, &taken_names(&mut *conn, net).await?);
    let state = if key_id.is_some() {
        MemberState::Authorized
    } else {
        MemberState::Pending
    };
    let (created_at, _) = now();
    sqlx::query(
        "INSERT INTO members (network_id, node_id, public_key, name, ipv4, state, online, \
         endpoints, agent_version, last_seen, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, NULL, ?)",
    )
    .bind(net.to_string())
    .bind(node.to_string())
    .bind(req.node_key.to_base64())
    .bind(&name)
    .bind(i64::from(u32::from(ipv4)))
    .bind(state.as_int())
    .bind(endpoints_json(&req.endpoints))
    .bind(version)
    .bind(&created_at)
    .execute(&mut *conn)
    .await?;
    let member = get_member(&mut *conn, net, node)
        .await?
        .ok_or(StoreError::NotFound("member"))?;
    if let Some(key_id) = &key_id {
        audit_key_use(conn, actor, net, key_id, node).await?;
    }
    append(
        conn,
        NewEntry {
            actor,
            action: "member.join",
            network_id: Some(net),
            target: Some(node.to_string()),
            before: None,
            after: Some(rows::member_json(&member)),
        },
    )
    .await?;
    let decision = if key_id.is_some() {
        JoinDecision::Authorized
    } else {
        JoinDecision::Pending
    };
    Ok(Some(JoinResult {
        decision,
        changed: true,
    }))
}

async fn audit_key_use(
    conn: &mut SqliteConnection,
    actor: &Actor,
    net: NetworkId,
    key_id: &str,
    node: NodeId,
) -> Result<(), StoreError> {
    append(
        conn,
        NewEntry {
            actor,
            action: "key.use",
            network_id: Some(net),
            target: Some(key_id.to_string()),
            before: None,
            after: Some(serde_json::json!({ "node_id": node })),
        },
    )
    .await
}

async fn update_endpoints(
    conn: &mut SqliteConnection,
    actor: &Actor,
    member: &Member,
    endpoints: &[SocketAddr],
) -> Result<(), StoreError> {
    sqlx::query("UPDATE members SET endpoints = ? WHERE network_id = ? AND node_id = ?")
        .bind(endpoints_json(endpoints))
        .bind(member.network_id.to_string())
        .bind(member.node_id.to_string())
        .execute(&mut *conn)
        .await?;
    append(
        conn,
        NewEntry {
            actor,
            action: "member.endpoints",
            network_id: Some(member.network_id),
            target: Some(member.node_id.to_string()),
            before: Some(serde_json::json!({ "endpoints": member.endpoints })),
            after: Some(serde_json::json!({ "endpoints": endpoints })),
        },
    )
    .await
}

pub(super) async fn set_presence(
    store: &SqliteStore,
    net: NetworkId,
    node: NodeId,
    online: bool,
) -> Result<bool, StoreError> {
    let actor = Actor::node(&node);
    let mut tx = store.begin_write().await?;
    let changed = write_presence(&mut tx, &actor, net, node, online).await?;
    tx.commit().await?;
    Ok(changed)
}

async fn write_presence(
    conn: &mut SqliteConnection,
    actor: &Actor,
    net: NetworkId,
    node: NodeId,
    online: bool,
) -> Result<bool, StoreError> {
    let (at, _) = now();
    let updated = sqlx::query(
        "UPDATE members SET online = ?, last_seen = ? \
         WHERE network_id = ? AND node_id = ? AND online != ?",
    )
    .bind(i64::from(online))
    .bind(&at)
    .bind(net.to_string())
    .bind(node.to_string())
    .bind(i64::from(online))
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(false);
    }
    bump_version(conn, net).await?;
    append(
        conn,
        NewEntry {
            actor,
            action: if online {
                "member.online"
            } else {
                "member.offline"
            },
            network_id: Some(net),
            target: Some(node.to_string()),
            before: None,
            after: Some(serde_json::json!({ "online": online, "last_seen": at })),
        },
    )
    .await?;
    Ok(true)
}

pub(super) async fn set_endpoints(
    store: &SqliteStore,
    net: NetworkId,
    node_key: &NodePublicKey,
    endpoints: &[SocketAddr],
) -> Result<bool, StoreError> {
    let node = NodeId::from_key(node_key);
    let mut tx = store.begin_write().await?;
    let Some(member) = get_member(&mut *tx, net, node).await? else {
        return Ok(false);
    };
    if member.public_key != *node_key || member.endpoints == endpoints {
        return Ok(false);
    }
    update_endpoints(&mut tx, &Actor::node(&node), &member, endpoints).await?;
    bump_version(&mut tx, net).await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn reset_presence(store: &SqliteStore) -> Result<Vec<NetworkId>, StoreError> {
    let mut tx = store.begin_write().await?;
    let online: Vec<(String, String)> =
        sqlx::query_as("SELECT network_id, node_id FROM members WHERE online = 1")
            .fetch_all(&mut *tx)
            .await?;
    let mut changed = Vec::new();
    for (net, node) in online {
        let net: NetworkId = super::parse_stored("network id", &net)?;
        let node: NodeId = super::parse_stored("node id", &node)?;
        write_presence(&mut tx, &Actor::system(), net, node, false).await?;
        if !changed.contains(&net) {
            changed.push(net);
        }
    }
    tx.commit().await?;
    Ok(changed)
}
