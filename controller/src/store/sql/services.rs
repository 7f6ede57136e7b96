//! Services members publish: read with the snapshot, replaced whole per member.

use sqlx::AnyExecutor;
use sqlx::Row;
use warren_proto::service::ServiceSpec;

use super::audit::{append, NewEntry};
use super::networks::bump_version;
use super::query;
use super::{members, parse_stored, SqlStore};
use crate::store::*;

pub(super) async fn list_in<'e>(
    exec: impl AnyExecutor<'e>,
    net: NetworkId,
) -> Result<Vec<Service>, StoreError> {
    let rows = query(
        "SELECT node_id, name, proto, port, txt FROM services WHERE network_id = ? \
         ORDER BY node_id, name, proto",
    )
    .bind(net.to_string())
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|row| {
            let node_id: NodeId = parse_stored("node id", &row.try_get::<String, _>("node_id")?)?;
            let port: i64 = row.try_get("port")?;
            let txt: String = row.try_get("txt")?;
            Ok(Service {
                node_id,
                spec: ServiceSpec {
                    name: row.try_get("name")?,
                    proto: parse_stored("service proto", &row.try_get::<String, _>("proto")?)?,
                    port: u16::try_from(port)
                        .map_err(|_| StoreError::Corrupt(format!("bad port {port}")))?,
                    txt: serde_json::from_str(&txt)
                        .map_err(|_| StoreError::Corrupt(format!("bad txt {txt:?}")))?,
                },
            })
        })
        .collect()
}

fn of_node(all: Vec<Service>, node: NodeId) -> Vec<ServiceSpec> {
    let mut specs: Vec<ServiceSpec> = all
        .into_iter()
        .filter(|s| s.node_id == node)
        .map(|s| s.spec)
        .collect();
    specs.sort();
    specs
}

/// Replaces what `node` publishes in `net`; true if that changed anything.
/// An unchanged list costs one read and no write, so nodes may resend
/// theirs after every reconnect.
pub(super) async fn set(
    store: &SqlStore,
    net: NetworkId,
    key: &NodePublicKey,
    services: &[ServiceSpec],
) -> Result<bool, StoreError> {
    let node = NodeId::from_key(key);
    let mut wanted = services.to_vec();
    wanted.sort();
    // Checked on the read pool first: a pending node's list never queues
    // for the writer.
    members::get_self(&store.read, net, key).await?;
    if of_node(list_in(&store.read, net).await?, node) == wanted {
        return Ok(false);
    }
    let mut tx = store.begin_write().await?;
    members::get_self(&mut *tx, net, key).await?;
    let before = of_node(list_in(&mut *tx, net).await?, node);
    if before == wanted {
        return Ok(false);
    }
    query("DELETE FROM services WHERE network_id = ? AND node_id = ?")
        .bind(net.to_string())
        .bind(node.to_string())
        .execute(&mut *tx)
        .await?;
    for s in &wanted {
        query(
            "INSERT INTO services (network_id, node_id, name, proto, port, txt) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(net.to_string())
        .bind(node.to_string())
        .bind(&s.name)
        .bind(s.proto.as_str())
        .bind(i64::from(s.port))
        .bind(serde_json::to_string(&s.txt).unwrap_or_else(|_| "[]".to_owned()))
        .execute(&mut *tx)
        .await?;
    }
    bump_version(&mut tx, net).await?;
    append(
        &mut tx,
        NewEntry {
            actor: &Actor::node(&node),
            action: AuditAction::MemberServices,
            network_id: Some(net),
            target: Some(node.to_string()),
            before: serde_json::to_value(&before).ok(),
            after: serde_json::to_value(&wanted).ok(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
