//! Grants: rules with an end time, checked against the network's policy
//! and members when made, audited when made and revoked.

use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;

use super::audit::{append, NewEntry};
use super::networks::bump_version;
use super::policy::{current_in, network_in, view_in};
use super::WriteTx;
use super::{new_short_id, now, rfc3339, SqlStore};
use super::{query, query_as};
use crate::policy::{Policy, Rule};
use crate::store::*;

const GRANT_COLUMNS: &str = "id, network_id, source, target, ports, reason, created_by, \
     created_at, ends_at, ends_unix, revoked_by, revoked_at";

fn grant_row(net: NetworkId, row: &AnyRow, now_unix: i64) -> Result<Grant, StoreError> {
    let ports: String = row.try_get("ports")?;
    let ends_unix: i64 = row.try_get("ends_unix")?;
    let revoked_at: Option<String> = row.try_get("revoked_at")?;
    Ok(Grant {
        id: row.try_get("id")?,
        network_id: net,
        from: row.try_get("source")?,
        to: row.try_get("target")?,
        ports: serde_json::from_str(&ports)
            .map_err(|_| StoreError::Corrupt(format!("bad grant ports {ports:?}")))?,
        reason: row.try_get("reason")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        ends_at: row.try_get("ends_at")?,
        revoked_by: row.try_get("revoked_by")?,
        active: revoked_at.is_none() && ends_unix > now_unix,
        revoked_at,
    })
}

/// The grants of `net` active now.
pub(super) async fn active_in(
    conn: &mut AnyConnection,
    net: NetworkId,
) -> Result<Vec<Grant>, StoreError> {
    let (_, now_unix) = now();
    let sql = format!(
        "SELECT {GRANT_COLUMNS} FROM grants WHERE network_id = ? AND revoked_at IS NULL \
         AND ends_unix > ? ORDER BY created_at, id"
    );
    let rows = query(sql)
        .bind(net.to_string())
        .bind(now_unix)
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| grant_row(net, r, now_unix)).collect()
}

pub(super) async fn add(
    store: &SqlStore,
    actor: &Actor,
    net: NetworkId,
    new: NewGrant,
) -> Result<Grant, StoreError> {
    let mut tx = store.begin_write().await?;
    let grant = add_in(&mut tx, actor, net, new).await?;
    tx.commit().await?;
    Ok(grant)
}

/// Refuses a rule that names a group the current policy of `net` lacks,
/// or a member, tag or service the network lacks.
pub(super) async fn check_in(
    conn: &mut AnyConnection,
    net: NetworkId,
    rule: &Rule,
) -> Result<(), StoreError> {
    let network = network_in(conn, net).await?;
    let current = current_in(conn, &network).await?;
    let policy = Policy::parse(&current.text).map_err(|e| {
        StoreError::Corrupt(format!(
            "stored policy v{} does not parse: {e}",
            current.version
        ))
    })?;
    view_in(conn, &network).await?.check_rule(&policy, rule)?;
    Ok(())
}

/// Adds a grant inside the caller's write transaction.
pub(super) async fn add_in(
    tx: &mut WriteTx,
    actor: &Actor,
    net: NetworkId,
    new: NewGrant,
) -> Result<Grant, StoreError> {
    let (created_at, now_unix) = now();
    if new.ends_at.unix_timestamp() <= now_unix {
        return Err(StoreError::Invalid("a grant must end in the future".into()));
    }
    let id = new_short_id();
    let rule = Rule::from_selectors(format!("grant:{id}"), &new.from, &new.to, new.ports.clone())?;
    check_in(tx, net, &rule).await?;
    let ports = serde_json::to_string(&new.ports)
        .map_err(|e| StoreError::Invalid(format!("ports: {e}")))?;
    let grant = Grant {
        id,
        network_id: net,
        from: new.from,
        to: new.to,
        ports: new.ports,
        reason: new.reason,
        created_by: actor.as_str().to_string(),
        created_at,
        ends_at: rfc3339(new.ends_at),
        revoked_by: None,
        revoked_at: None,
        active: true,
    };
    query(
        "INSERT INTO grants (id, network_id, source, target, ports, reason, created_by, \
         created_at, ends_at, ends_unix) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&grant.id)
    .bind(net.to_string())
    .bind(&grant.from)
    .bind(&grant.to)
    .bind(&ports)
    .bind(&grant.reason)
    .bind(&grant.created_by)
    .bind(&grant.created_at)
    .bind(&grant.ends_at)
    .bind(new.ends_at.unix_timestamp())
    .execute(&mut **tx)
    .await?;
    bump_version(tx, net).await?;
    append(
        tx,
        NewEntry {
            actor,
            action: AuditAction::GrantAdd,
            network_id: Some(net),
            target: Some(format!("grant:{}", grant.id)),
            before: None,
            after: serde_json::to_value(&grant).ok(),
        },
    )
    .await?;
    Ok(grant)
}

pub(super) async fn list(
    store: &SqlStore,
    net: NetworkId,
    all: bool,
) -> Result<Vec<Grant>, StoreError> {
    let mut tx = store.begin_read().await?;
    network_in(&mut tx, net).await?;
    let (_, now_unix) = now();
    let sql = format!(
        "SELECT {GRANT_COLUMNS} FROM grants WHERE network_id = ? ORDER BY created_at DESC, id"
    );
    let rows = query(sql).bind(net.to_string()).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    let grants: Vec<Grant> = rows
        .iter()
        .map(|r| grant_row(net, r, now_unix))
        .collect::<Result<_, _>>()?;
    Ok(grants.into_iter().filter(|g| all || g.active).collect())
}

/// Grant `id` of `net`, if it is active at `now_unix`; else `NotFound`.
async fn active_one_in(
    conn: &mut AnyConnection,
    net: NetworkId,
    id: &str,
    now_unix: i64,
) -> Result<Grant, StoreError> {
    let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE network_id = ? AND id = ?");
    let row = query(sql)
        .bind(net.to_string())
        .bind(id)
        .fetch_optional(conn)
        .await?;
    let grant = match row {
        Some(row) => grant_row(net, &row, now_unix)?,
        None => return Err(StoreError::NotFound("grant")),
    };
    if !grant.active {
        return Err(StoreError::NotFound("active grant"));
    }
    Ok(grant)
}

pub(super) async fn revoke(
    store: &SqlStore,
    actor: &Actor,
    net: NetworkId,
    id: &str,
) -> Result<Grant, StoreError> {
    let mut tx = store.begin_write().await?;
    let (revoked_at, now_unix) = now();
    let before = active_one_in(&mut tx, net, id, now_unix).await?;
    query("UPDATE grants SET revoked_by = ?, revoked_at = ? WHERE network_id = ? AND id = ?")
        .bind(actor.as_str())
        .bind(&revoked_at)
        .bind(net.to_string())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    bump_version(&mut tx, net).await?;
    let after = Grant {
        revoked_by: Some(actor.as_str().to_string()),
        revoked_at: Some(revoked_at),
        active: false,
        ..before.clone()
    };
    append(
        &mut tx,
        NewEntry {
            actor,
            action: AuditAction::GrantRevoke,
            network_id: Some(net),
            target: Some(format!("grant:{id}")),
            before: serde_json::to_value(&before).ok(),
            after: serde_json::to_value(&after).ok(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

pub(super) async fn record_use(
    store: &SqlStore,
    net: NetworkId,
    node_key: &warren_proto::NodePublicKey,
    id: &str,
) -> Result<bool, StoreError> {
    let node = NodeId::from_key(node_key);
    let seen = |conn| async move {
        let row: Option<(i64,)> =
            query_as("SELECT 1 FROM grant_uses WHERE grant_id = ? AND node_id = ?")
                .bind(id)
                .bind(node.to_string())
                .fetch_optional(conn)
                .await?;
        Ok::<bool, StoreError>(row.is_some())
    };
    // Repeats are answered on the read pool, never queueing for the writer.
    if seen(&store.read).await? {
        return Ok(false);
    }
    let mut tx = store.begin_write().await?;
    let member = super::members::get_self(&mut *tx, net, node_key).await?;
    let (used_at, now_unix) = now();
    active_one_in(&mut tx, net, id, now_unix).await?;
    let inserted = query(
        "INSERT INTO grant_uses (grant_id, network_id, node_id, first_used_at) \
         VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(net.to_string())
    .bind(node.to_string())
    .bind(&used_at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    append(
        &mut tx,
        NewEntry {
            actor: &Actor::node(&node),
            action: AuditAction::GrantUse,
            network_id: Some(net),
            target: Some(format!("grant:{id}")),
            before: None,
            after: Some(serde_json::json!({
                "grant": id,
                "node_id": node.to_string(),
                "name": member.name,
            })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Ends what is due. A cheap read first: the write lock is taken only
/// when a grant's time is up.
pub(super) async fn end_due(store: &SqlStore) -> Result<Vec<Grant>, StoreError> {
    const DUE: &str =
        "FROM grants WHERE revoked_at IS NULL AND ended_at IS NULL AND ends_unix <= ?";
    let (_, now_unix) = now();
    let any: Option<(String,)> = query_as(format!("SELECT id {DUE} LIMIT 1"))
        .bind(now_unix)
        .fetch_optional(&store.read)
        .await?;
    if any.is_none() {
        return Ok(Vec::new());
    }
    let mut tx = store.begin_write().await?;
    let (ended_at, now_unix) = now();
    let rows = query(format!(
        "SELECT {GRANT_COLUMNS} {DUE} ORDER BY ends_unix, id"
    ))
    .bind(now_unix)
    .fetch_all(&mut *tx)
    .await?;
    let mut ended = Vec::new();
    let mut bumped = std::collections::BTreeSet::new();
    for row in &rows {
        let net: NetworkId =
            super::parse_stored("network id", &row.try_get::<String, _>("network_id")?)?;
        let grant = grant_row(net, row, now_unix)?;
        query("UPDATE grants SET ended_at = ? WHERE id = ?")
            .bind(&ended_at)
            .bind(&grant.id)
            .execute(&mut *tx)
            .await?;
        if bumped.insert(net) {
            bump_version(&mut tx, net).await?;
        }
        append(
            &mut tx,
            NewEntry {
                actor: &Actor::system(),
                action: AuditAction::GrantEnd,
                network_id: Some(net),
                target: Some(format!("grant:{}", grant.id)),
                before: None,
                after: serde_json::to_value(&grant).ok(),
            },
        )
        .await?;
        ended.push(grant);
    }
    tx.commit().await?;
    Ok(ended)
}
