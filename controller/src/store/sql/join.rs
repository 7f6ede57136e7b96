//! What nodes do to their own memberships: join, presence, endpoints.

use std::net::SocketAddr;

use warren_proto::control::refusal::{KEY as KEY_REFUSED, REVOKED, UNKNOWN_NETWORK};

use super::assign::assign;
use super::audit::{append, NewEntry};
use super::keys::{consume, usable};
use super::members::get as get_member;
use super::networks::{bump_version, get as get_network};
use super::WriteTx;
use super::{now, rows, SqlStore};
use super::{query, query_as};
use crate::names;
use crate::store::*;

const AGENT_VERSION_MAX: usize = 64;

/// Members a network keeps waiting for approval at once. Anyone who knows
/// a network ID can join as pending; past this, new nodes are refused
/// until an admin approves or deletes some.
pub const MAX_PENDING: i64 = 256;

fn endpoints_json(endpoints: &[SocketAddr]) -> String {
    serde_json::to_string(endpoints).unwrap_or_else(|_| "[]".to_string())
}

/// The agent version as shown in member lists: printable characters only,
/// so a node cannot put terminal escapes into an admin's table.
fn clean_version(version: &str) -> String {
    version
        .chars()
        .filter(|c| !c.is_control())
        .take(AGENT_VERSION_MAX)
        .collect()
}

fn refused(reason: &str) -> JoinResult {
    JoinResult {
        decision: JoinDecision::Refused(reason.to_string()),
        changed: false,
    }
}

fn unchanged(decision: JoinDecision) -> JoinResult {
    JoinResult {
        decision,
        changed: false,
    }
}

const TOO_MANY_PENDING: &str =
    "too many members are waiting for approval in this network; ask an admin";

pub(super) async fn join(store: &SqlStore, req: JoinRequest) -> Result<JoinResult, StoreError> {
    let node = NodeId::from_key(&req.node_key);
    let actor = Actor::node(&node);
    let version = clean_version(&req.agent_version);
    let net = req.network_id;
    // Most joins are reconnects that change nothing, and a join that will
    // be refused must not queue for the one write connection: decide those
    // from the read pool, and take the writer only to write.
    if let Some(result) = decide_without_writing(store, &req, &version).await? {
        return Ok(result);
    }
    // One write transaction from the first read to the last write: the key's
    // use, the address, the name and the audit entries commit together.
    let mut tx = store.begin_write().await?;
    let Some(network) = get_network(&mut *tx, net).await? else {
        return Ok(refused(UNKNOWN_NETWORK));
    };
    let result = match get_member(&mut *tx, net, node).await? {
        Some(member) => rejoin(&mut tx, &actor, &network, member, &req, &version).await?,
        None => first_join(&mut tx, &actor, &network, &req, &version).await?,
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

/// The answer to a join that needs no write, read without the writer;
/// `None` if it needs one. The write path decides again under the lock.
async fn decide_without_writing(
    store: &SqlStore,
    req: &JoinRequest,
    version: &str,
) -> Result<Option<JoinResult>, StoreError> {
    let net = req.network_id;
    let node = NodeId::from_key(&req.node_key);
    if get_network(&store.read, net).await?.is_none() {
        return Ok(Some(refused(UNKNOWN_NETWORK)));
    }
    let Some(member) = get_member(&store.read, net, node).await? else {
        return Ok(match &req.preauth_key {
            Some(secret) if !usable(&store.read, net, secret).await? => Some(refused(KEY_REFUSED)),
            Some(_) => None,
            None if pending_count(&store.read, net).await? >= MAX_PENDING => {
                Some(refused(TOO_MANY_PENDING))
            }
            None => None,
        });
    };
    if member.public_key != req.node_key {
        return Ok(Some(refused("node ID collision with another key")));
    }
    let same_version = member.agent_version == version;
    Ok(match member.state {
        MemberState::Revoked => Some(refused(REVOKED)),
        MemberState::Authorized
            if same_version && (req.endpoints.is_empty() || req.endpoints == member.endpoints) =>
        {
            Some(unchanged(JoinDecision::Authorized))
        }
        MemberState::Authorized => None,
        MemberState::Pending => match &req.preauth_key {
            Some(secret) if usable(&store.read, net, secret).await? => None,
            _ if same_version => Some(unchanged(JoinDecision::Pending)),
            _ => None,
        },
    })
}

async fn pending_count<'e>(
    exec: impl sqlx::AnyExecutor<'e>,
    net: NetworkId,
) -> Result<i64, StoreError> {
    let (count,): (i64,) =
        query_as("SELECT COUNT(*) FROM members WHERE network_id = ? AND state = ?")
            .bind(net.to_string())
            .bind(MemberState::Pending.as_int())
            .fetch_one(exec)
            .await?;
    Ok(count)
}

async fn rejoin(
    conn: &mut WriteTx,
    actor: &Actor,
    network: &Network,
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
        return Ok(refused(REVOKED));
    }
    if member.agent_version != version {
        query("UPDATE members SET agent_version = ? WHERE network_id = ? AND node_id = ?")
            .bind(version)
            .bind(net.to_string())
            .bind(node.to_string())
            .execute(&mut **conn)
            .await?;
    }
    if member.state == MemberState::Authorized {
        let mut changed = false;
        if !req.endpoints.is_empty() && req.endpoints != member.endpoints {
            update_endpoints(conn, actor, &member, &req.endpoints).await?;
            changed = true;
        }
        return Ok(JoinResult {
            decision: JoinDecision::Authorized,
            changed,
        });
    }
    // Pending: a valid key given now authorizes it. Until then it writes
    // nothing but its version (no endpoints: it has no peers to tell).
    let key_id = match &req.preauth_key {
        Some(secret) => consume(conn, net, secret).await?,
        None => None,
    };
    let Some(key_id) = key_id else {
        return Ok(unchanged(JoinDecision::Pending));
    };
    let mut after = match assign(conn, network, &member).await {
        Ok(m) => m,
        Err(StoreError::Conflict(reason)) => return Ok(refused(&reason)),
        Err(e) => return Err(e),
    };
    // A key lifts an expired sign-in: the device now stays on like any
    // device joined with a key.
    query(
        "UPDATE members SET state = ?, endpoints = ?, expires_unix = NULL, expiry_noted = 0 \
         WHERE network_id = ? AND node_id = ?",
    )
    .bind(MemberState::Authorized.as_int())
    .bind(endpoints_json(&req.endpoints))
    .bind(net.to_string())
    .bind(node.to_string())
    .execute(&mut **conn)
    .await?;
    after.state = MemberState::Authorized;
    after.authorized = true;
    after.endpoints = req.endpoints.clone();
    audit_key_use(conn, actor, net, &key_id, node).await?;
    super::keys::apply_tags(conn, net, &key_id, node).await?;
    append(
        conn,
        NewEntry {
            actor,
            action: AuditAction::MemberAuthorize,
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

/// Creates the member. A wrong key creates nothing, so a spray of joins
/// with a used key leaves no trace but the refusals. A member without a
/// key waits for approval holding no name and no address.
async fn first_join(
    conn: &mut WriteTx,
    actor: &Actor,
    network: &Network,
    req: &JoinRequest,
    version: &str,
) -> Result<JoinResult, StoreError> {
    let net = network.id;
    let node = NodeId::from_key(&req.node_key);
    let key_id = match &req.preauth_key {
        Some(secret) => match consume(conn, net, secret).await? {
            Some(id) => Some(id),
            None => return Ok(refused(KEY_REFUSED)),
        },
        None if pending_count(&mut **conn, net).await? >= MAX_PENDING => {
            return Ok(refused(TOO_MANY_PENDING))
        }
        None => None,
    };
    let requested = names::sanitize_label(&req.name, &node);
    let (state, endpoints) = match key_id {
        Some(_) => (MemberState::Authorized, endpoints_json(&req.endpoints)),
        None => (MemberState::Pending, endpoints_json(&[])),
    };
    let (created_at, _) = now();
    query(
        "INSERT INTO members (network_id, node_id, public_key, name, requested_name, ipv4, \
         state, online, endpoints, agent_version, last_seen, created_at) \
         VALUES (?, ?, ?, NULL, ?, NULL, ?, 0, ?, ?, NULL, ?)",
    )
    .bind(net.to_string())
    .bind(node.to_string())
    .bind(req.node_key.to_base64())
    .bind(&requested)
    .bind(state.as_int())
    .bind(endpoints)
    .bind(version)
    .bind(&created_at)
    .execute(&mut **conn)
    .await?;
    let mut member = get_member(&mut **conn, net, node)
        .await?
        .ok_or(StoreError::NotFound("member"))?;
    if let Some(key_id) = &key_id {
        member = match assign(conn, network, &member).await {
            Ok(m) => m,
            Err(StoreError::Conflict(reason)) => return Ok(refused(&reason)),
            Err(e) => return Err(e),
        };
        audit_key_use(conn, actor, net, key_id, node).await?;
        super::keys::apply_tags(conn, net, key_id, node).await?;
    }
    append(
        conn,
        NewEntry {
            actor,
            action: AuditAction::MemberJoin,
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
    Ok(JoinResult {
        decision,
        changed: true,
    })
}

async fn audit_key_use(
    conn: &mut WriteTx,
    actor: &Actor,
    net: NetworkId,
    key_id: &str,
    node: NodeId,
) -> Result<(), StoreError> {
    append(
        conn,
        NewEntry {
            actor,
            action: AuditAction::KeyUse,
            network_id: Some(net),
            target: Some(key_id.to_string()),
            before: None,
            after: Some(serde_json::json!({ "node_id": node })),
        },
    )
    .await
}

async fn update_endpoints(
    conn: &mut WriteTx,
    actor: &Actor,
    member: &Member,
    endpoints: &[SocketAddr],
) -> Result<(), StoreError> {
    query("UPDATE members SET endpoints = ? WHERE network_id = ? AND node_id = ?")
        .bind(endpoints_json(endpoints))
        .bind(member.network_id.to_string())
        .bind(member.node_id.to_string())
        .execute(&mut **conn)
        .await?;
    append(
        conn,
        NewEntry {
            actor,
            action: AuditAction::MemberEndpoints,
            network_id: Some(member.network_id),
            target: Some(member.node_id.to_string()),
            before: Some(serde_json::json!({ "endpoints": member.endpoints })),
            after: Some(serde_json::json!({ "endpoints": endpoints })),
        },
    )
    .await
}

pub(super) async fn set_presence(
    store: &SqlStore,
    net: NetworkId,
    key: &NodePublicKey,
    online: bool,
) -> Result<bool, StoreError> {
    let node = NodeId::from_key(key);
    let actor = Actor::node(&node);
    // Going online is a write only an authorized member makes; going
    // offline is allowed whatever the state (a member revoked while online).
    let member = match get_member(&store.read, net, node).await? {
        Some(m) if m.public_key == *key => m,
        _ => return Err(StoreError::NotFound("member")),
    };
    if online && member.state != MemberState::Authorized {
        return Ok(false);
    }
    // Online again is a write even when online already: the member may
    // have moved here from another replica.
    if !online && !member.online {
        return Ok(false);
    }
    let mut tx = store.begin_write().await?;
    let changed = write_presence(&mut tx, &actor, net, node, online, Some(&store.replica)).await?;
    tx.commit().await?;
    Ok(changed)
}

/// Records `node` online at `replica`, or offline. Offline from a replica
/// changes nothing if the member is online at another (it moved there);
/// offline with no replica (one that is gone, or a restart) always does.
/// Online at a replica when online at another moves it there, unaudited:
/// for the member's peers nothing changed.
pub(super) async fn write_presence(
    conn: &mut WriteTx,
    actor: &Actor,
    net: NetworkId,
    node: NodeId,
    online: bool,
    replica: Option<&str>,
) -> Result<bool, StoreError> {
    let (at, _) = now();
    if let (true, Some(replica)) = (online, replica) {
        let moved = query(
            "UPDATE members SET online_replica = ? WHERE network_id = ? AND node_id = ? \
             AND online = 1 AND (online_replica IS NULL OR online_replica != ?)",
        )
        .bind(replica)
        .bind(net.to_string())
        .bind(node.to_string())
        .bind(replica)
        .execute(&mut **conn)
        .await?;
        if moved.rows_affected() > 0 {
            return Ok(false);
        }
    }
    let updated = match (online, replica) {
        (false, Some(replica)) => query(
            "UPDATE members SET online = 0, online_replica = NULL, last_seen = ? \
             WHERE network_id = ? AND node_id = ? AND online != 0 \
             AND (online_replica IS NULL OR online_replica = ?)",
        )
        .bind(&at)
        .bind(net.to_string())
        .bind(node.to_string())
        .bind(replica),
        _ => query(
            "UPDATE members SET online = ?, online_replica = ?, last_seen = ? \
             WHERE network_id = ? AND node_id = ? AND online != ?",
        )
        .bind(i64::from(online))
        .bind(replica.filter(|_| online).map(str::to_owned))
        .bind(&at)
        .bind(net.to_string())
        .bind(node.to_string())
        .bind(i64::from(online)),
    }
    .execute(&mut **conn)
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
                AuditAction::MemberOnline
            } else {
                AuditAction::MemberOffline
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
    store: &SqlStore,
    net: NetworkId,
    node_key: &NodePublicKey,
    endpoints: &[SocketAddr],
) -> Result<bool, StoreError> {
    let node = NodeId::from_key(node_key);
    let mut tx = store.begin_write().await?;
    let Some(member) = get_member(&mut *tx, net, node).await? else {
        return Ok(false);
    };
    if member.public_key != *node_key
        || member.state != MemberState::Authorized
        || member.endpoints == endpoints
    {
        return Ok(false);
    }
    update_endpoints(&mut tx, &Actor::node(&node), &member, endpoints).await?;
    bump_version(&mut tx, net).await?;
    tx.commit().await?;
    Ok(true)
}
