//! Sites as stored: the site DNS members declare, and the mapped prefixes
//! of overlapping sites' routes, allocated and freed with the routes.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::{IpNet, Ipv4Net};
use sqlx::AnyExecutor;
use sqlx::Row;
use warren_proto::routes::is_exit;
use warren_proto::site::SiteDns;

use super::audit::{append, NewEntry};
use super::{now, parse_stored, query, WriteTx};
use crate::routes::sites::{allocate, mapping_audit_json, needing_mapping};
use crate::store::*;

/// Every mapping of `net`, by site then real prefix.
pub(super) async fn mappings_in<'e>(
    exec: impl AnyExecutor<'e>,
    net: NetworkId,
) -> Result<Vec<SiteMapping>, StoreError> {
    let rows =
        query("SELECT site, real_prefix, mapped_prefix FROM site_mappings WHERE network_id = ?")
            .bind(net.to_string())
            .fetch_all(exec)
            .await?;
    let mut found = rows
        .iter()
        .map(|row| {
            Ok(SiteMapping {
                site: row.try_get("site")?,
                real: parse_stored("prefix", &row.try_get::<String, _>("real_prefix")?)?,
                mapped: parse_stored("prefix", &row.try_get::<String, _>("mapped_prefix")?)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    found.sort_by(|a, b| (&a.site, a.real).cmp(&(&b.site, b.real)));
    Ok(found)
}

/// The site DNS each member of `net` declared.
pub(super) async fn dns_in<'e>(
    exec: impl AnyExecutor<'e>,
    net: NetworkId,
) -> Result<BTreeMap<NodeId, SiteDns>, StoreError> {
    let rows = query(
        "SELECT node_id, site_dns_domain, site_dns_server FROM members \
         WHERE network_id = ? AND site_dns_domain IS NOT NULL AND site_dns_server IS NOT NULL",
    )
    .bind(net.to_string())
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                parse_stored("node id", &row.try_get::<String, _>("node_id")?)?,
                SiteDns {
                    domain: row.try_get("site_dns_domain")?,
                    server: parse_stored("address", &row.try_get::<String, _>("site_dns_server")?)?,
                },
            ))
        })
        .collect()
}

/// Both, for a snapshot.
pub(super) async fn state_in(
    conn: &mut sqlx::AnyConnection,
    net: NetworkId,
) -> Result<SiteState, StoreError> {
    Ok(SiteState {
        dns: dns_in(&mut *conn, net).await?,
        mappings: mappings_in(&mut *conn, net).await?,
    })
}

/// Stores the site DNS `node` declared (or that it declares none); true
/// if it changed.
pub(super) async fn set_dns(
    tx: &mut WriteTx,
    net: NetworkId,
    node: NodeId,
    dns: Option<&SiteDns>,
) -> Result<bool, StoreError> {
    let before = dns_in(&mut **tx, net).await?.remove(&node);
    if before.as_ref() == dns {
        return Ok(false);
    }
    query(
        "UPDATE members SET site_dns_domain = ?, site_dns_server = ? \
         WHERE network_id = ? AND node_id = ?",
    )
    .bind(dns.map(|d| d.domain.clone()))
    .bind(dns.map(|d| d.server.to_string()))
    .bind(net.to_string())
    .bind(node.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// Frees the mappings whose site no longer has the route approved and,
/// given the range, gives a mapped prefix to each approved route that
/// overlaps another site's and has none. A full range leaves the route
/// without one (logged; `routes list` shows it). Each allocation and
/// release is audited as `actor`'s, whose change made it; `before` are the
/// network's routes before that change, for the routers a freed mapping
/// had. True if anything changed.
pub(super) async fn reconcile(
    tx: &mut WriteTx,
    actor: &Actor,
    net: NetworkId,
    range: Option<Ipv4Net>,
    before: &[Route],
) -> Result<bool, StoreError> {
    let routes = super::routes::list_in(&mut **tx, net).await?;
    let approved: BTreeSet<(&str, IpNet)> = routes
        .iter()
        .filter(|r| r.approved)
        .filter_map(|r| r.site.as_deref().map(|s| (s, r.prefix)))
        .collect();
    let mut changed = false;
    let mut kept = BTreeSet::new();
    for m in mappings_in(&mut **tx, net).await? {
        if approved.contains(&(m.site.as_str(), IpNet::V4(m.real))) {
            kept.insert((m.site, m.real));
            continue;
        }
        query("DELETE FROM site_mappings WHERE network_id = ? AND site = ? AND real_prefix = ?")
            .bind(net.to_string())
            .bind(&m.site)
            .bind(m.real.to_string())
            .execute(&mut **tx)
            .await?;
        tracing::info!(network = %net, site = %m.site, real = %m.real, mapped = %m.mapped,
            "mapped prefix freed");
        append(
            tx,
            NewEntry {
                actor,
                action: AuditAction::SiteMappingRelease,
                network_id: Some(net),
                target: Some(format!("{} {}", m.site, m.real)),
                before: Some(mapping_audit_json(net, &m, before)),
                after: None,
            },
        )
        .await?;
        changed = true;
    }
    let Some(range) = range else {
        return Ok(changed);
    };
    let wanted: Vec<(String, Ipv4Net)> = needing_mapping(&routes)
        .into_iter()
        .filter(|k| !kept.contains(k))
        .collect();
    if wanted.is_empty() {
        return Ok(changed);
    }
    let mut taken = taken_in(tx).await?;
    taken.extend(routes.iter().filter_map(|r| match r.prefix {
        IpNet::V4(p) if r.approved && !is_exit(&r.prefix) => Some(p),
        _ => None,
    }));
    let (at, _) = now();
    for (site, real) in wanted {
        let Some(mapped) = allocate(range, real.prefix_len(), &taken) else {
            tracing::warn!(network = %net, %site, %real, %range,
                "no room in the site mapped range: the route stays unmapped and unrouted");
            continue;
        };
        query(
            "INSERT INTO site_mappings (network_id, site, real_prefix, mapped_prefix, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(net.to_string())
        .bind(&site)
        .bind(real.to_string())
        .bind(mapped.to_string())
        .bind(&at)
        .execute(&mut **tx)
        .await?;
        tracing::info!(network = %net, %site, %real, %mapped, "mapped prefix allocated");
        let target = format!("{site} {real}");
        let mapping = SiteMapping { site, real, mapped };
        append(
            tx,
            NewEntry {
                actor,
                action: AuditAction::SiteMappingAllocate,
                network_id: Some(net),
                target: Some(target),
                before: None,
                after: Some(mapping_audit_json(net, &mapping, &routes)),
            },
        )
        .await?;
        taken.push(mapped);
        changed = true;
    }
    Ok(changed)
}

/// What a new mapped prefix may not overlap outside its network: every
/// mapped prefix and every network's address pool.
async fn taken_in(tx: &mut WriteTx) -> Result<Vec<Ipv4Net>, StoreError> {
    let mut taken = Vec::new();
    for row in query("SELECT mapped_prefix FROM site_mappings")
        .fetch_all(&mut **tx)
        .await?
    {
        taken.push(parse_stored(
            "prefix",
            &row.try_get::<String, _>("mapped_prefix")?,
        )?);
    }
    for row in query("SELECT pool FROM networks")
        .fetch_all(&mut **tx)
        .await?
    {
        let pool: Ipv4Net = parse_stored("pool", &row.try_get::<String, _>("pool")?)?;
        taken.push(pool.trunc());
    }
    Ok(taken)
}
