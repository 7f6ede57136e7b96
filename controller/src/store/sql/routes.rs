//! Routes and auto-approval rules: advertised by nodes, approved by admins
//! or rules, each change audited and versioned in its own transaction.

use async_trait::async_trait;
use ipnet::IpNet;
use sqlx::any::AnyRow;
use sqlx::AnyExecutor;
use sqlx::Row;
use warren_proto::routes::{check_prefix, MAX_ADVERTISED};
use warren_proto::site::SiteSpec;

use super::audit::{append, NewEntry};
use super::networks::{bump_version, get as get_network};
use super::query;
use super::WriteTx;
use super::{is_unique_violation, members, now, parse_stored, SqlStore};
use crate::routes::{audit_json, check_advertised, check_approval, RouteRefusal};
use crate::store::*;

const ROUTE_COLUMNS: &str =
    "network_id, node_id, prefix, site, advertised, approved, approved_by, approved_at, created_at";

fn route(row: &AnyRow) -> Result<Route, StoreError> {
    Ok(Route {
        network_id: parse_stored("network id", &row.try_get::<String, _>("network_id")?)?,
        node_id: parse_stored("node id", &row.try_get::<String, _>("node_id")?)?,
        prefix: parse_stored("prefix", &row.try_get::<String, _>("prefix")?)?,
        site: row.try_get("site")?,
        advertised: row.try_get::<i64, _>("advertised")? != 0,
        approved: row.try_get::<i64, _>("approved")? != 0,
        approved_by: row.try_get("approved_by")?,
        approved_at: row.try_get("approved_at")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Every route row of `net`, by node then prefix.
pub(super) async fn list_in<'e>(
    exec: impl AnyExecutor<'e>,
    net: NetworkId,
) -> Result<Vec<Route>, StoreError> {
    let sql =
        format!("SELECT {ROUTE_COLUMNS} FROM routes WHERE network_id = ? ORDER BY node_id, prefix");
    let rows = query(sql).bind(net.to_string()).fetch_all(exec).await?;
    let mut routes: Vec<Route> = rows.iter().map(route).collect::<Result<_, _>>()?;
    // Text order is not address order.
    routes.sort_by_key(|r| (r.node_id, r.prefix));
    Ok(routes)
}

async fn approvers_in<'e>(
    exec: impl AnyExecutor<'e>,
    net: NetworkId,
) -> Result<Vec<AutoApprover>, StoreError> {
    let rows = query(
        "SELECT network_id, prefix, node_id, created_by, created_at FROM route_auto_approvers \
         WHERE network_id = ? ORDER BY prefix, node_id",
    )
    .bind(net.to_string())
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AutoApprover {
                network_id: parse_stored("network id", &row.try_get::<String, _>("network_id")?)?,
                prefix: parse_stored("prefix", &row.try_get::<String, _>("prefix")?)?,
                node: parse_stored("approvee", &row.try_get::<String, _>("node_id")?)?,
                created_by: row.try_get("created_by")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect()
}

/// A refusal as the API reports it: a bad prefix is the caller's mistake
/// (400), a clash with the network's state a conflict (409).
fn refusal(e: RouteRefusal) -> StoreError {
    match e {
        RouteRefusal::Prefix(_) | RouteRefusal::OverlayPool { .. } => {
            StoreError::Invalid(e.to_string())
        }
        other => StoreError::Conflict(other.to_string()),
    }
}

/// Marks a route approved (inserting the row if needed) and audits it.
async fn write_approval(
    conn: &mut WriteTx,
    actor: &Actor,
    net: NetworkId,
    node: NodeId,
    prefix: IpNet,
    before: Option<Route>,
    rule: Option<IpNet>,
) -> Result<Route, StoreError> {
    let (at, _) = now();
    // A new row is for the node's site, as its other rows are.
    let site = match &before {
        Some(b) => b.site.clone(),
        None => list_in(&mut **conn, net)
            .await?
            .into_iter()
            .find(|r| r.node_id == node && r.site.is_some())
            .and_then(|r| r.site),
    };
    query(
        "INSERT INTO routes (network_id, node_id, prefix, site, advertised, approved, \
         approved_by, approved_at, created_at) VALUES (?, ?, ?, ?, 0, 1, ?, ?, ?) \
         ON CONFLICT (network_id, node_id, prefix) DO UPDATE SET approved = 1, \
         approved_by = excluded.approved_by, approved_at = excluded.approved_at",
    )
    .bind(net.to_string())
    .bind(node.to_string())
    .bind(prefix.to_string())
    .bind(site.clone())
    .bind(actor.as_str())
    .bind(&at)
    .bind(&at)
    .execute(&mut **conn)
    .await?;
    let after = Route {
        network_id: net,
        node_id: node,
        prefix,
        site,
        advertised: before.as_ref().is_some_and(|b| b.advertised),
        approved: true,
        approved_by: Some(actor.as_str().to_owned()),
        approved_at: Some(at.clone()),
        created_at: before
            .as_ref()
            .map_or_else(|| at.clone(), |b| b.created_at.clone()),
    };
    let mut after_json = audit_json(net, &after);
    if let Some(rule) = rule {
        after_json["auto_approved_by_rule"] = serde_json::json!(rule);
    }
    append(
        conn,
        NewEntry {
            actor,
            action: AuditAction::RouteApprove,
            network_id: Some(net),
            target: Some(format!("{node} {prefix}")),
            before: before.as_ref().map(|b| audit_json(net, b)),
            after: Some(after_json),
        },
    )
    .await?;
    Ok(after)
}

/// Approves, by the network's rules, the advertised routes they cover;
/// returns what was approved and what a rule covered but could not be.
async fn auto_approve(
    conn: &mut WriteTx,
    net: NetworkId,
    only_node: Option<NodeId>,
    checks: &RouteChecks,
) -> Result<(Vec<Route>, Vec<(IpNet, String)>), StoreError> {
    let network = get_network(&mut **conn, net)
        .await?
        .ok_or(StoreError::NotFound("network"))?;
    let rules = approvers_in(&mut **conn, net).await?;
    let mut approved = Vec::new();
    let mut refused = Vec::new();
    if rules.is_empty() {
        return Ok((approved, refused));
    }
    let members = members::list_in(&mut **conn, net).await?;
    let waiting: Vec<Route> = list_in(&mut **conn, net)
        .await?
        .into_iter()
        .filter(|r| r.advertised && !r.approved)
        .filter(|r| only_node.is_none_or(|n| n == r.node_id))
        .collect();
    for route in waiting {
        let Some(rule) = rules
            .iter()
            .find(|a| a.approves(&route.node_id, &route.prefix))
        else {
            continue;
        };
        // Each approval sees the ones before it: two routes that overlap
        // each other are never both approved.
        let current = list_in(&mut **conn, net).await?;
        match check_approval(
            route.node_id,
            &route.prefix,
            &network,
            &members,
            &current,
            checks,
        ) {
            Ok(()) => {
                let done = write_approval(
                    conn,
                    &Actor::system(),
                    net,
                    route.node_id,
                    route.prefix,
                    Some(route.clone()),
                    Some(rule.prefix),
                )
                .await?;
                approved.push(done);
            }
            Err(e) => refused.push((route.prefix, e.to_string())),
        }
    }
    Ok((approved, refused))
}

#[async_trait]
impl RouteStore for SqlStore {
    async fn list_routes(&self, net: NetworkId) -> Result<Vec<Route>, StoreError> {
        let mut tx = self.begin_read().await?;
        if get_network(&mut *tx, net).await?.is_none() {
            return Err(StoreError::NotFound("network"));
        }
        let routes = list_in(&mut *tx, net).await?;
        tx.commit().await?;
        Ok(routes)
    }

    async fn set_advertised_routes(
        &self,
        net: NetworkId,
        node_key: &NodePublicKey,
        prefixes: &[IpNet],
        site: Option<&SiteSpec>,
        checks: &RouteChecks,
    ) -> Result<Advertised, StoreError> {
        let node = NodeId::from_key(node_key);
        if let Some(spec) = site {
            crate::routes::sites::check_spec(spec).map_err(StoreError::Invalid)?;
        }
        let site_name = site.map(|s| s.name.clone());
        let mut wanted: Vec<IpNet> = prefixes.to_vec();
        wanted.sort();
        wanted.dedup();
        if wanted.len() > MAX_ADVERTISED {
            return Err(StoreError::Invalid(format!(
                "at most {MAX_ADVERTISED} routes per node"
            )));
        }
        for p in &wanted {
            check_prefix(p).map_err(|e| StoreError::Invalid(e.to_string()))?;
        }
        let mut tx = self.begin_write().await?;
        let network = get_network(&mut *tx, net)
            .await?
            .ok_or(StoreError::NotFound("network"))?;
        // By its full key, and only once authorized: a pending node
        // advertises nothing an admin would see in the queue.
        members::get_self(&mut *tx, net, node_key).await?;
        for p in &wanted {
            check_advertised(p, &network).map_err(|e| StoreError::Invalid(e.to_string()))?;
        }
        let all_before = list_in(&mut *tx, net).await?;
        let mine: Vec<&Route> = all_before.iter().filter(|r| r.node_id == node).collect();
        let before: Vec<IpNet> = mine
            .iter()
            .filter(|r| r.advertised)
            .map(|r| r.prefix)
            .collect();
        let mut changed = before != wanted;
        // One site for all of the node's routes in the network.
        if mine.iter().any(|r| r.site != site_name) {
            query("UPDATE routes SET site = ? WHERE network_id = ? AND node_id = ?")
                .bind(site_name.clone())
                .bind(net.to_string())
                .bind(node.to_string())
                .execute(&mut *tx)
                .await?;
            changed = true;
        }
        let dns = site.and_then(|s| s.dns.as_ref());
        changed |= super::sites::set_dns(&mut tx, net, node, dns).await?;
        if changed {
            for r in mine
                .iter()
                .filter(|r| r.advertised && !wanted.contains(&r.prefix))
            {
                // An approval outlives a withdrawal: advertising again needs no admin.
                let sql = if r.approved {
                    "UPDATE routes SET advertised = 0 WHERE network_id = ? AND node_id = ? AND prefix = ?"
                } else {
                    "DELETE FROM routes WHERE network_id = ? AND node_id = ? AND prefix = ?"
                };
                query(sql)
                    .bind(net.to_string())
                    .bind(node.to_string())
                    .bind(r.prefix.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            let (at, _) = now();
            for p in wanted.iter().filter(|p| !before.contains(p)) {
                query(
                    "INSERT INTO routes (network_id, node_id, prefix, site, advertised, approved, \
                     created_at) VALUES (?, ?, ?, ?, 1, 0, ?) \
                     ON CONFLICT (network_id, node_id, prefix) DO UPDATE SET advertised = 1",
                )
                .bind(net.to_string())
                .bind(node.to_string())
                .bind(p.to_string())
                .bind(site_name.clone())
                .bind(&at)
                .execute(&mut *tx)
                .await?;
            }
            append(
                &mut tx,
                NewEntry {
                    actor: &Actor::node(&node),
                    action: AuditAction::RouteAdvertise,
                    network_id: Some(net),
                    target: Some(node.to_string()),
                    before: serde_json::to_value(&before).ok(),
                    after: match &site_name {
                        None => serde_json::to_value(&wanted).ok(),
                        Some(s) => Some(serde_json::json!({ "routes": wanted, "site": s })),
                    },
                },
            )
            .await?;
        }
        let (approved, refused) = auto_approve(&mut tx, net, Some(node), checks).await?;
        changed |= !approved.is_empty();
        let range = Some(checks.site_mapped_range);
        changed |=
            super::sites::reconcile(&mut tx, &Actor::node(&node), net, range, &all_before).await?;
        if changed {
            bump_version(&mut tx, net).await?;
            tx.commit().await?;
        }
        Ok(Advertised {
            changed,
            not_auto_approved: refused,
        })
    }

    async fn approve_route(
        &self,
        actor: &Actor,
        net: NetworkId,
        node: NodeId,
        prefix: IpNet,
        checks: &RouteChecks,
    ) -> Result<Route, StoreError> {
        check_prefix(&prefix).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut tx = self.begin_write().await?;
        let network = get_network(&mut *tx, net)
            .await?
            .ok_or(StoreError::NotFound("network"))?;
        let members = members::list_in(&mut *tx, net).await?;
        if !members.iter().any(|m| m.node_id == node) {
            return Err(StoreError::NotFound("member"));
        }
        let routes = list_in(&mut *tx, net).await?;
        let before = routes
            .iter()
            .find(|r| r.node_id == node && r.prefix == prefix)
            .cloned();
        if let Some(existing) = before.as_ref().filter(|r| r.approved) {
            return Ok(existing.clone());
        }
        check_approval(node, &prefix, &network, &members, &routes, checks).map_err(refusal)?;
        let after = write_approval(&mut tx, actor, net, node, prefix, before, None).await?;
        let range = Some(checks.site_mapped_range);
        super::sites::reconcile(&mut tx, actor, net, range, &routes).await?;
        bump_version(&mut tx, net).await?;
        tx.commit().await?;
        Ok(after)
    }

    async fn unapprove_route(
        &self,
        actor: &Actor,
        net: NetworkId,
        node: NodeId,
        prefix: IpNet,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let routes = list_in(&mut *tx, net).await?;
        let before = routes
            .iter()
            .find(|r| r.node_id == node && r.prefix == prefix && r.approved)
            .cloned()
            .ok_or(StoreError::NotFound("approved route"))?;
        let sql = if before.advertised {
            "UPDATE routes SET approved = 0, approved_by = NULL, approved_at = NULL \
             WHERE network_id = ? AND node_id = ? AND prefix = ?"
        } else {
            "DELETE FROM routes WHERE network_id = ? AND node_id = ? AND prefix = ?"
        };
        query(sql)
            .bind(net.to_string())
            .bind(node.to_string())
            .bind(prefix.to_string())
            .execute(&mut *tx)
            .await?;
        let mut after = before.clone();
        after.approved = false;
        after.approved_by = None;
        after.approved_at = None;
        bump_version(&mut tx, net).await?;
        append(
            &mut tx,
            NewEntry {
                actor,
                action: AuditAction::RouteUnapprove,
                network_id: Some(net),
                target: Some(format!("{node} {prefix}")),
                before: Some(audit_json(net, &before)),
                after: before.advertised.then(|| audit_json(net, &after)),
            },
        )
        .await?;
        super::sites::reconcile(&mut tx, actor, net, None, &routes).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_auto_approvers(&self, net: NetworkId) -> Result<Vec<AutoApprover>, StoreError> {
        let mut tx = self.begin_read().await?;
        if get_network(&mut *tx, net).await?.is_none() {
            return Err(StoreError::NotFound("network"));
        }
        let rules = approvers_in(&mut *tx, net).await?;
        tx.commit().await?;
        Ok(rules)
    }

    async fn add_auto_approver(
        &self,
        actor: &Actor,
        net: NetworkId,
        prefix: IpNet,
        node: Approvee,
        checks: &RouteChecks,
    ) -> Result<(AutoApprover, Vec<Route>), StoreError> {
        check_prefix(&prefix).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut tx = self.begin_write().await?;
        if get_network(&mut *tx, net).await?.is_none() {
            return Err(StoreError::NotFound("network"));
        }
        let (at, _) = now();
        let rule = AutoApprover {
            network_id: net,
            prefix,
            node,
            created_by: actor.as_str().to_owned(),
            created_at: at,
        };
        query(
            "INSERT INTO route_auto_approvers (network_id, prefix, node_id, created_by, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(net.to_string())
        .bind(prefix.to_string())
        .bind(node.to_string())
        .bind(&rule.created_by)
        .bind(&rule.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("an auto-approval rule for {prefix} from {node} exists"))
            } else {
                e.into()
            }
        })?;
        append(
            &mut tx,
            NewEntry {
                actor,
                action: AuditAction::RouteAutoApproverAdd,
                network_id: Some(net),
                target: Some(format!("{node} {prefix}")),
                before: None,
                after: serde_json::to_value(&rule).ok(),
            },
        )
        .await?;
        let routes = list_in(&mut *tx, net).await?;
        let (approved, _) = auto_approve(&mut tx, net, None, checks).await?;
        if !approved.is_empty() {
            let range = Some(checks.site_mapped_range);
            super::sites::reconcile(&mut tx, actor, net, range, &routes).await?;
            bump_version(&mut tx, net).await?;
        }
        tx.commit().await?;
        Ok((rule, approved))
    }

    async fn remove_auto_approver(
        &self,
        actor: &Actor,
        net: NetworkId,
        prefix: IpNet,
        node: Approvee,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let before = approvers_in(&mut *tx, net)
            .await?
            .into_iter()
            .find(|a| a.prefix == prefix && a.node == node)
            .ok_or(StoreError::NotFound("auto-approval rule"))?;
        query(
            "DELETE FROM route_auto_approvers WHERE network_id = ? AND prefix = ? AND node_id = ?",
        )
        .bind(net.to_string())
        .bind(prefix.to_string())
        .bind(node.to_string())
        .execute(&mut *tx)
        .await?;
        append(
            &mut tx,
            NewEntry {
                actor,
                action: AuditAction::RouteAutoApproverRemove,
                network_id: Some(net),
                target: Some(format!("{node} {prefix}")),
                before: serde_json::to_value(&before).ok(),
                after: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
