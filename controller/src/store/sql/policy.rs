//! Policy versions and member tags: read with the members they compile
//! against, and checked inside the transaction that stores them.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;

use super::audit::{append, NewEntry};
use super::networks::bump_version;
use super::query;
use super::WriteTx;
use super::{members, now, parse_stored, SqlStore};
use crate::policy::{self, NetworkView, PolicyError, MAX_POLICY_BYTES};
use crate::store::*;

/// Stores version 1 of a new network's policy; one other than the
/// default gets an audit entry of its own beside `network.create`.
pub(super) async fn insert_first(
    conn: &mut WriteTx,
    net: NetworkId,
    actor: &Actor,
    text: &str,
) -> Result<(), StoreError> {
    let (created_at, _) = now();
    insert(conn, net, 1, text, actor, &created_at).await?;
    if text == policy::DEFAULT_POLICY {
        return Ok(());
    }
    append(
        conn,
        NewEntry {
            actor,
            action: AuditAction::PolicySet,
            network_id: Some(net),
            target: Some(net.to_string()),
            before: None,
            after: Some(serde_json::json!({ "version": 1, "text": text })),
        },
    )
    .await
}

async fn insert(
    conn: &mut AnyConnection,
    net: NetworkId,
    version: u64,
    text: &str,
    actor: &Actor,
    created_at: &str,
) -> Result<(), StoreError> {
    query(
        "INSERT INTO policies (network_id, version, text, created_by, created_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(net.to_string())
    .bind(i64::try_from(version).map_err(|_| StoreError::Invalid("too many versions".into()))?)
    .bind(text)
    .bind(actor.as_str())
    .bind(created_at)
    .execute(conn)
    .await?;
    Ok(())
}

fn version_row(net: NetworkId, row: &AnyRow) -> Result<PolicyVersion, StoreError> {
    let version: i64 = row.try_get("version")?;
    Ok(PolicyVersion {
        network_id: net,
        version: u64::try_from(version)
            .map_err(|_| StoreError::Corrupt(format!("bad policy version {version}")))?,
        text: row.try_get("text")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The built-in default, for a network made before policies were stored.
fn implicit_default(network: &Network) -> PolicyVersion {
    PolicyVersion {
        network_id: network.id,
        version: 1,
        text: policy::DEFAULT_POLICY.to_string(),
        created_by: Actor::system().as_str().to_string(),
        created_at: network.created_at.clone(),
    }
}

pub(super) async fn current_in(
    conn: &mut AnyConnection,
    network: &Network,
) -> Result<PolicyVersion, StoreError> {
    let row = query(
        "SELECT version, text, created_by, created_at FROM policies \
         WHERE network_id = ? ORDER BY version DESC LIMIT 1",
    )
    .bind(network.id.to_string())
    .fetch_optional(conn)
    .await?;
    match row {
        Some(row) => version_row(network.id, &row),
        None => Ok(implicit_default(network)),
    }
}

async fn tags_in(
    conn: &mut AnyConnection,
    net: NetworkId,
) -> Result<BTreeMap<NodeId, BTreeSet<String>>, StoreError> {
    let rows = query("SELECT node_id, tag FROM member_tags WHERE network_id = ?")
        .bind(net.to_string())
        .fetch_all(conn)
        .await?;
    let mut tags: BTreeMap<NodeId, BTreeSet<String>> = BTreeMap::new();
    for row in &rows {
        let node: NodeId = parse_stored("node id", &row.try_get::<String, _>("node_id")?)?;
        tags.entry(node).or_default().insert(row.try_get("tag")?);
    }
    Ok(tags)
}

/// The policy in force in `network`: its stored document (if any), tags
/// and active grants.
pub(super) async fn in_force(
    conn: &mut AnyConnection,
    network: &Network,
) -> Result<PolicyInForce, StoreError> {
    let stored = current_in(&mut *conn, network).await?;
    Ok(PolicyInForce {
        current: Some(stored),
        tags: tags_in(&mut *conn, network.id).await?,
        grants: super::grants::active_in(conn, network.id).await?,
    })
}

pub(super) async fn view_in(
    conn: &mut AnyConnection,
    network: &Network,
) -> Result<NetworkView, StoreError> {
    let snapshot = NetworkSnapshot {
        network: network.clone(),
        members: members::list_in(&mut *conn, network.id).await?,
        services: super::services::list_in(&mut *conn, network.id).await?,
        routes: super::routes::list_in(&mut *conn, network.id).await?,
        policy: PolicyInForce::default(),
        sites: super::sites::state_in(&mut *conn, network.id).await?,
    };
    let tags = tags_in(conn, network.id).await?;
    Ok(NetworkView::from_snapshot(&snapshot, &tags))
}

pub(super) async fn network_in(
    conn: &mut AnyConnection,
    net: NetworkId,
) -> Result<Network, StoreError> {
    super::networks::get(conn, net)
        .await?
        .ok_or(StoreError::NotFound("network"))
}

fn too_large(text: &str) -> Result<(), StoreError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge {
            size: text.len(),
            limit: MAX_POLICY_BYTES,
        }
        .into());
    }
    Ok(())
}

async fn set(
    store: &SqlStore,
    actor: &Actor,
    net: NetworkId,
    text: &str,
) -> Result<PolicySet, StoreError> {
    too_large(text)?;
    let mut tx = store.begin_write().await?;
    let network = network_in(&mut tx, net).await?;
    let current = current_in(&mut tx, &network).await?;
    let view = view_in(&mut tx, &network).await?;
    let next = current.version + 1;
    // Refused here, the transaction rolls back and the current version stays.
    let checked = policy::check(text, &view, next, &[])?;
    if text == current.text {
        return Ok(PolicySet {
            policy: current,
            changed: false,
            tests: checked.tests,
        });
    }
    let (created_at, _) = now();
    insert(&mut tx, net, next, text, actor, &created_at).await?;
    bump_version(&mut tx, net).await?;
    let diff = similar::TextDiff::from_lines(current.text.as_str(), text)
        .unified_diff()
        .header(
            &format!("policy v{}", current.version),
            &format!("policy v{next}"),
        )
        .to_string();
    append(
        &mut tx,
        NewEntry {
            actor,
            action: AuditAction::PolicySet,
            network_id: Some(net),
            target: Some(net.to_string()),
            before: Some(serde_json::json!({ "version": current.version, "text": current.text })),
            after: Some(serde_json::json!({ "version": next, "text": text, "diff": diff })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(PolicySet {
        policy: PolicyVersion {
            network_id: net,
            version: next,
            text: text.to_string(),
            created_by: actor.as_str().to_string(),
            created_at,
        },
        changed: true,
        tests: checked.tests,
    })
}

async fn history(store: &SqlStore, net: NetworkId) -> Result<Vec<PolicyVersion>, StoreError> {
    let mut tx = store.begin_read().await?;
    let network = network_in(&mut tx, net).await?;
    let rows = query(
        "SELECT version, text, created_by, created_at FROM policies \
         WHERE network_id = ? ORDER BY version DESC",
    )
    .bind(net.to_string())
    .fetch_all(&mut *tx)
    .await?;
    let mut versions: Vec<PolicyVersion> = rows
        .iter()
        .map(|r| version_row(net, r))
        .collect::<Result<_, _>>()?;
    if versions.last().is_none_or(|v| v.version != 1) {
        versions.push(implicit_default(&network));
    }
    tx.commit().await?;
    Ok(versions)
}

async fn tags_of(
    conn: &mut AnyConnection,
    net: NetworkId,
    node: NodeId,
) -> Result<Vec<String>, StoreError> {
    members::get(&mut *conn, net, node)
        .await?
        .ok_or(StoreError::NotFound("member"))?;
    let rows =
        query("SELECT tag FROM member_tags WHERE network_id = ? AND node_id = ? ORDER BY tag")
            .bind(net.to_string())
            .bind(node.to_string())
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|r| Ok(format!("tag:{}", r.try_get::<String, _>("tag")?)))
        .collect()
}

/// Adds (`add`) or removes a tag, audited, in one transaction.
async fn change_tag(
    store: &SqlStore,
    actor: &Actor,
    net: NetworkId,
    node: NodeId,
    tag: &str,
    add: bool,
) -> Result<Vec<String>, StoreError> {
    let name = tag_name(tag)?;
    let mut tx = store.begin_write().await?;
    let before = tags_of(&mut tx, net, node).await?;
    let held = before.iter().any(|t| t == tag);
    if add && held {
        return Ok(before);
    }
    if !add && !held {
        return Err(StoreError::NotFound("tag"));
    }
    if add {
        if before.len() >= MAX_TAGS_PER_MEMBER {
            return Err(StoreError::Invalid(format!(
                "a member holds at most {MAX_TAGS_PER_MEMBER} tags"
            )));
        }
        let (created_at, _) = now();
        query(
            "INSERT INTO member_tags (network_id, node_id, tag, created_by, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(net.to_string())
        .bind(node.to_string())
        .bind(name)
        .bind(actor.as_str())
        .bind(&created_at)
        .execute(&mut *tx)
        .await?;
    } else {
        query("DELETE FROM member_tags WHERE network_id = ? AND node_id = ? AND tag = ?")
            .bind(net.to_string())
            .bind(node.to_string())
            .bind(name)
            .execute(&mut *tx)
            .await?;
    }
    let after = tags_of(&mut tx, net, node).await?;
    bump_version(&mut tx, net).await?;
    append(
        &mut tx,
        NewEntry {
            actor,
            action: if add {
                AuditAction::MemberTag
            } else {
                AuditAction::MemberUntag
            },
            network_id: Some(net),
            target: Some(node.to_string()),
            before: Some(serde_json::json!({ "tags": before })),
            after: Some(serde_json::json!({ "tags": after })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

#[async_trait]
impl PolicyStore for SqlStore {
    async fn create_network_with_policy(
        &self,
        actor: &Actor,
        new: NewNetwork,
        text: &str,
    ) -> Result<Network, StoreError> {
        too_large(text)?;
        // A new network has no members, routes or services yet.
        policy::check(text, &NetworkView::default(), 1, &[])?;
        super::networks::create(self, actor, new, text).await
    }

    async fn policy_state(&self, net: NetworkId) -> Result<PolicyState, StoreError> {
        let mut tx = self.begin_read().await?;
        let network = network_in(&mut tx, net).await?;
        let current = current_in(&mut tx, &network).await?;
        let view = view_in(&mut tx, &network).await?;
        let grants = super::grants::active_in(&mut tx, net).await?;
        tx.commit().await?;
        Ok(PolicyState {
            current,
            view,
            grants,
        })
    }

    async fn policy_history(&self, net: NetworkId) -> Result<Vec<PolicyVersion>, StoreError> {
        history(self, net).await
    }

    async fn set_policy(
        &self,
        actor: &Actor,
        net: NetworkId,
        text: &str,
    ) -> Result<PolicySet, StoreError> {
        set(self, actor, net, text).await
    }

    async fn member_tags(&self, net: NetworkId, node: NodeId) -> Result<Vec<String>, StoreError> {
        let mut conn = self.read.acquire().await?;
        tags_of(&mut conn, net, node).await
    }

    async fn tag_member(
        &self,
        actor: &Actor,
        net: NetworkId,
        node: NodeId,
        tag: &str,
    ) -> Result<Vec<String>, StoreError> {
        change_tag(self, actor, net, node, tag, true).await
    }

    async fn untag_member(
        &self,
        actor: &Actor,
        net: NetworkId,
        node: NodeId,
        tag: &str,
    ) -> Result<Vec<String>, StoreError> {
        change_tag(self, actor, net, node, tag, false).await
    }

    async fn add_grant(
        &self,
        actor: &Actor,
        net: NetworkId,
        new: NewGrant,
    ) -> Result<Grant, StoreError> {
        super::grants::add(self, actor, net, new).await
    }

    async fn end_due_grants(&self) -> Result<Vec<Grant>, StoreError> {
        super::grants::end_due(self).await
    }

    async fn list_grants(&self, net: NetworkId, all: bool) -> Result<Vec<Grant>, StoreError> {
        super::grants::list(self, net, all).await
    }

    async fn record_grant_use(
        &self,
        net: NetworkId,
        node_key: &warren_proto::NodePublicKey,
        id: &str,
    ) -> Result<bool, StoreError> {
        super::grants::record_use(self, net, node_key, id).await
    }

    async fn revoke_grant(
        &self,
        actor: &Actor,
        net: NetworkId,
        id: &str,
    ) -> Result<Grant, StoreError> {
        super::grants::revoke(self, actor, net, id).await
    }

    async fn request_grant(
        &self,
        net: NetworkId,
        new: NewGrantRequest,
    ) -> Result<GrantRequest, StoreError> {
        super::grant_requests::request(self, net, new).await
    }

    async fn list_grant_requests(
        &self,
        filter: &RequestFilter,
    ) -> Result<Vec<GrantRequest>, StoreError> {
        super::grant_requests::list(self, filter).await
    }

    async fn decide_grant_request(
        &self,
        actor: &Actor,
        net: NetworkId,
        id: &str,
        decision: Decision,
    ) -> Result<(GrantRequest, Option<Grant>), StoreError> {
        super::grant_requests::decide(self, actor, net, id, decision).await
    }
}
