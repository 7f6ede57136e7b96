//! Giving a member its name and address when it is authorized, and not before.

use sqlx::AnyConnection;

use super::members::{get as get_member, taken_names};
use super::{query, query_as};
use crate::store::*;
use crate::{ipam, names};

/// Makes sure `member` holds a name and an IPv4 address, inside the write
/// transaction that authorizes it: the lowest free address of the pool and
/// a unique name from the one it asked for. A member that already holds
/// them (authorized before, then revoked) keeps them. `Conflict` if the
/// pool is exhausted.
pub(super) async fn assign(
    conn: &mut AnyConnection,
    network: &Network,
    member: &Member,
) -> Result<Member, StoreError> {
    if member.assigned().is_some() {
        return Ok(member.clone());
    }
    let net = network.id;
    let used: Vec<(i64,)> = query_as(
        "SELECT ipv4 FROM members WHERE network_id = ? AND ipv4 IS NOT NULL ORDER BY ipv4",
    )
    .bind(net.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let used: Vec<u32> = used
        .into_iter()
        .filter_map(|(a,)| u32::try_from(a).ok())
        .collect();
    let ipv4 = match member.ipv4 {
        Some(a) => a,
        None => ipam::lowest_free(network.pool, &used)
            .ok_or_else(|| StoreError::Conflict("address pool exhausted".into()))?,
    };
    let name = match &member.name {
        Some(n) => n.clone(),
        None => {
            let base = names::sanitize_label(&member.requested_name, &member.node_id);
            names::unique_label(&base, &taken_names(&mut *conn, net).await?)
        }
    };
    query("UPDATE members SET name = ?, ipv4 = ? WHERE network_id = ? AND node_id = ?")
        .bind(&name)
        .bind(i64::from(u32::from(ipv4)))
        .bind(net.to_string())
        .bind(member.node_id.to_string())
        .execute(&mut *conn)
        .await?;
    get_member(&mut *conn, net, member.node_id)
        .await?
        .ok_or(StoreError::NotFound("member"))
}
