//! Sites: routers advertising one prefix for different sites are different
//! destinations (each its own primary, each with a mapped prefix from the
//! controller's range, stable while the route exists); for one site they
//! fail over. Netmaps list the sites and route mapped prefixes; bad sites
//! are refused; `site:NAME` in policy reaches a site's real and mapped
//! prefixes. On SQLite and, with `WARREN_TEST_DATABASE=postgres`, on
//! PostgreSQL.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::policy::{member, set_policy};
use common::routes::{advertise, advertise_with, approve, key_of, p, routes};
use common::Harness;
use ipnet::{IpNet, Ipv4Net};
use serde_json::{json, Value};
use warren_controller::store::{RouteChecks, RouteStore, SqlStore, Store, StoreError};
use warren_proto::control::NodeMessage;
use warren_proto::netmap::Netmap;
use warren_proto::site::{SiteDns, SiteSpec};
use warren_proto::{NetworkId, NodeId};

fn v4(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn site(name: &str) -> SiteSpec {
    SiteSpec {
        name: name.into(),
        dns: None,
    }
}

fn site_with_dns(name: &str, domain: &str, server: &str) -> SiteSpec {
    SiteSpec {
        name: name.into(),
        dns: Some(SiteDns {
            domain: domain.into(),
            server: server.parse().unwrap(),
        }),
    }
}

/// The route row of `node` for `prefix` in the API's list.
async fn route_of(h: &Harness, net: &str, node: NodeId, prefix: &str) -> Value {
    routes(h, net)
        .await
        .into_iter()
        .find(|r| r["node_id"] == json!(node) && r["prefix"] == json!(prefix))
        .unwrap_or_else(|| panic!("no route {prefix} of {node}"))
}

async fn netmap(store: &SqlStore, net: &str, node: NodeId) -> Netmap {
    let net: NetworkId = net.parse().unwrap();
    let snapshot = store.network_snapshot(net).await.unwrap().unwrap();
    warren_controller::netmaps::build(&snapshot, node, &[]).unwrap()
}

fn mapped_of(route: &Value) -> Option<Ipv4Net> {
    route["mapped_prefix"].as_str().map(v4)
}

/// Two clusters, m and w, whose masters both advertise 10.96.0.0/12, and
/// a laptop.
struct TwoSites {
    h: Harness,
    net: String,
    m: NodeId,
    w: NodeId,
    laptop: NodeId,
}

async fn two_sites() -> TwoSites {
    let h = Harness::new().await;
    let net = h.network("prod").await;
    let m = member(&h, &net, "master-m").await;
    let w = member(&h, &net, "master-w").await;
    let laptop = member(&h, &net, "laptop").await;
    let m_site = site_with_dns("m", "cluster.local", "10.96.0.10");
    advertise(
        &h,
        &net,
        m,
        &["10.96.0.0/12", "10.244.0.0/16"],
        Some(&m_site),
    )
    .await;
    advertise(&h, &net, w, &["10.96.0.0/12"], Some(&site("w"))).await;
    for (node, prefix) in [
        (m, "10.96.0.0/12"),
        (m, "10.244.0.0/16"),
        (w, "10.96.0.0/12"),
    ] {
        let (status, body) = approve(&h, &net, node, prefix).await;
        assert_eq!(status, StatusCode::OK, "{prefix}: {body}");
    }
    TwoSites {
        h,
        net,
        m,
        w,
        laptop,
    }
}

#[tokio::test]
async fn one_prefix_of_two_sites_is_two_destinations_with_mapped_prefixes() {
    let TwoSites {
        h,
        net,
        m,
        w,
        laptop,
    } = two_sites().await;

    // Both are primary, each for its own site, and each has a mapped
    // prefix of the same length from the default range; the route that
    // overlaps no other site's keeps its own prefix.
    let m_route = route_of(&h, &net, m, "10.96.0.0/12").await;
    let w_route = route_of(&h, &net, w, "10.96.0.0/12").await;
    assert_eq!(m_route["site"], "m");
    assert_eq!(w_route["site"], "w");
    assert_eq!(m_route["primary"], true, "{m_route}");
    assert_eq!(w_route["primary"], true, "{w_route}");
    let (m_mapped, w_mapped) = (mapped_of(&m_route).unwrap(), mapped_of(&w_route).unwrap());
    assert_ne!(m_mapped, w_mapped);
    for mapped in [m_mapped, w_mapped] {
        assert_eq!(mapped.prefix_len(), 12);
        assert!(v4("100.64.0.0/10").contains(&mapped), "{mapped}");
    }
    let pods = route_of(&h, &net, m, "10.244.0.0/16").await;
    assert_eq!(pods["mapped_prefix"], Value::Null, "{pods}");
    assert_eq!(pods["mapping_exhausted"], false);

    // The laptop routes each mapped prefix to its site's master, and the
    // unmapped one as it is.
    let map = netmap(&h.store, &net, laptop).await;
    let peer = |id: NodeId| map.peers.iter().find(|p| p.node_id == id).unwrap();
    assert_eq!(
        peer(m).routes,
        vec![p("10.244.0.0/16"), IpNet::V4(m_mapped)]
    );
    assert_eq!(peer(w).routes, vec![IpNet::V4(w_mapped)]);
    // Every member's settings list both sites.
    let sites = &map.settings.sites;
    assert_eq!(
        sites.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["m", "w"]
    );
    assert_eq!(sites[0].routers, vec![m]);
    assert_eq!(
        sites[0].dns,
        Some(SiteDns {
            domain: "cluster.local".into(),
            server: "10.96.0.10".parse().unwrap()
        })
    );
    assert_eq!(sites[0].mapped.len(), 1);
    assert_eq!(sites[0].mapped[0].real, v4("10.96.0.0/12"));
    assert_eq!(sites[0].mapped[0].mapped, m_mapped);
    assert_eq!(sites[1].routers, vec![w]);
    assert_eq!(sites[1].dns, None);
    assert_eq!(sites[1].mapped[0].mapped, w_mapped);
    // A router's own map keeps its real prefixes, primary.
    let m_map = netmap(&h.store, &net, m).await;
    assert!(m_map
        .self_node
        .routes
        .iter()
        .all(|r| r.approved && r.primary));
    assert!(m_map
        .self_node
        .routes
        .iter()
        .any(|r| r.prefix == p("10.96.0.0/12")));
    assert_eq!(m_map.settings.sites, map.settings.sites);
}

#[tokio::test]
async fn routers_of_one_site_fail_over_and_overlaps_follow_the_site_rules() {
    let h = Harness::new().await;
    let net = h.network("prod").await;
    let a = member(&h, &net, "master-a").await;
    let b = member(&h, &net, "master-b").await;
    let c = member(&h, &net, "router-c").await;
    let d = member(&h, &net, "router-d").await;
    advertise(&h, &net, a, &["10.96.0.0/12"], Some(&site("m"))).await;
    advertise(
        &h,
        &net,
        b,
        &["10.96.0.0/12", "10.96.0.0/16"],
        Some(&site("m")),
    )
    .await;
    advertise(&h, &net, c, &["10.96.0.0/12", "fd00:96::/64"], None).await;
    advertise(&h, &net, d, &["fd00:96::/64"], Some(&site("w"))).await;
    for node in [a, b] {
        let (status, body) = approve(&h, &net, node, "10.96.0.0/12").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Inside a route of the same site: refused as today.
    let (status, body) = approve(&h, &net, b, "10.96.0.0/16").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // The same prefix without a site next to a site's: refused.
    let (status, body) = approve(&h, &net, c, "10.96.0.0/12").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body.to_string().contains("advertise both for a site"),
        "{body}"
    );
    // IPv6 prefixes of different sites cannot be mapped: refused.
    let (status, body) = approve(&h, &net, c, "fd00:96::/64").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = approve(&h, &net, d, "fd00:96::/64").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // One site: one primary, and no mapped prefix (nothing to tell apart).
    let net_id: NetworkId = net.parse().unwrap();
    for node in [a, b] {
        let key = key_of(&h.store, &net, node).await;
        h.store.set_presence(net_id, &key, true).await.unwrap();
    }
    let primary_of = |rows: &[Value]| -> Vec<NodeId> {
        rows.iter()
            .filter(|r| r["prefix"] == "10.96.0.0/12" && r["primary"] == true)
            .map(|r| r["node_id"].as_str().unwrap().parse().unwrap())
            .collect()
    };
    let rows = routes(&h, &net).await;
    let first = primary_of(&rows);
    assert_eq!(first.len(), 1, "{rows:?}");
    assert!(
        rows.iter().all(|r| r["mapped_prefix"].is_null()),
        "{rows:?}"
    );
    // The primary goes offline: the other takes over.
    let key = key_of(&h.store, &net, first[0]).await;
    h.store.set_presence(net_id, &key, false).await.unwrap();
    let standby = if first[0] == a { b } else { a };
    assert_eq!(primary_of(&routes(&h, &net).await), vec![standby]);
}

#[tokio::test]
async fn mapped_prefixes_stay_across_a_restart_and_go_with_their_routes() {
    let TwoSites { h, net, m, w, .. } = two_sites().await;
    let m_mapped = mapped_of(&route_of(&h, &net, m, "10.96.0.0/12").await).unwrap();
    let w_mapped = mapped_of(&route_of(&h, &net, w, "10.96.0.0/12").await).unwrap();

    // Another controller process on the same database: the same mapped
    // prefixes, also after its routers advertise again.
    let restarted = h.second_store().await;
    for (node, spec) in [(m, site("m")), (w, site("w"))] {
        let routes: &[&str] = if node == m {
            &["10.96.0.0/12", "10.244.0.0/16"]
        } else {
            &["10.96.0.0/12"]
        };
        advertise_with(
            &restarted,
            &net,
            node,
            routes,
            Some(&spec),
            &RouteChecks::default(),
        )
        .await
        .unwrap();
    }
    let map = netmap(&restarted, &net, m).await;
    let pairs: Vec<(Ipv4Net, Ipv4Net)> = map
        .settings
        .sites
        .iter()
        .flat_map(|s| s.mapped.iter().map(|p| (p.real, p.mapped)))
        .collect();
    assert_eq!(
        pairs,
        vec![
            (v4("10.96.0.0/12"), m_mapped),
            (v4("10.96.0.0/12"), w_mapped)
        ]
    );
    // The site DNS m declared went when it advertised without it.
    assert!(map.settings.sites.iter().all(|s| s.dns.is_none()));

    // w's route goes: its mapped prefix is freed; m's stays while m's
    // route exists (no address moves under its members).
    let (status, _) = h
        .admin(
            Method::DELETE,
            &format!("/api/v1/networks/{net}/routes?node={w}&prefix=10.96.0.0%2F12"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let w_route = route_of(&h, &net, w, "10.96.0.0/12").await;
    assert_eq!(w_route["mapped_prefix"], Value::Null, "{w_route}");
    assert_eq!(
        mapped_of(&route_of(&h, &net, m, "10.96.0.0/12").await),
        Some(m_mapped)
    );
    // m's member goes: so do its routes and the last mapped prefix.
    let (status, _) = h
        .admin(
            Method::DELETE,
            &format!("/api/v1/networks/{net}/members/{m}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let pool = h.raw_pool().await;
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM site_mappings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_full_range_leaves_the_route_unmapped_and_unrouted_and_says_so() {
    let h = Harness::new().await;
    let net = h.network("prod").await;
    let m = member(&h, &net, "master-m").await;
    let w = member(&h, &net, "master-w").await;
    let laptop = member(&h, &net, "laptop").await;
    // Room for one /12 only.
    let checks = RouteChecks {
        site_mapped_range: v4("100.64.0.0/12"),
        ..RouteChecks::default()
    };
    advertise_with(
        &h.store,
        &net,
        m,
        &["10.96.0.0/12"],
        Some(&site("m")),
        &checks,
    )
    .await
    .unwrap();
    advertise_with(
        &h.store,
        &net,
        w,
        &["10.96.0.0/12"],
        Some(&site("w")),
        &checks,
    )
    .await
    .unwrap();
    let net_id: NetworkId = net.parse().unwrap();
    let actor = warren_controller::store::Actor::system();
    for node in [m, w] {
        h.store
            .approve_route(&actor, net_id, node, p("10.96.0.0/12"), &checks)
            .await
            .unwrap();
    }
    let rows = routes(&h, &net).await;
    let mapped: Vec<&Value> = rows
        .iter()
        .filter(|r| !r["mapped_prefix"].is_null())
        .collect();
    let waiting: Vec<&Value> = rows
        .iter()
        .filter(|r| r["mapping_exhausted"] == true)
        .collect();
    assert_eq!(mapped.len(), 1, "{rows:?}");
    assert_eq!(mapped[0]["mapped_prefix"], "100.64.0.0/12");
    assert_eq!(waiting.len(), 1, "{rows:?}");
    assert!(waiting[0]["mapped_prefix"].is_null());
    // The laptop routes the mapped one, and the other not at all (never
    // the real prefix, which would reach the wrong cluster).
    let map = netmap(&h.store, &net, laptop).await;
    let all: Vec<IpNet> = map.peers.iter().flat_map(|p| p.routes.clone()).collect();
    assert_eq!(all, vec![p("100.64.0.0/12")]);
}

#[tokio::test]
async fn bad_sites_are_refused_by_the_store_and_over_the_control_session() {
    let h = Harness::new().await;
    let net = h.network("prod").await;
    let m = member(&h, &net, "master-m").await;
    for spec in [
        site("M"),
        site(""),
        site("a.b"),
        site(&"a".repeat(64)),
        site_with_dns("m", "Cluster.Local", "10.96.0.10"),
        site_with_dns("m", "cluster..local", "10.96.0.10"),
        site_with_dns("m", "cluster.local", "0.0.0.0"),
    ] {
        let err = advertise_with(
            &h.store,
            &net,
            m,
            &["10.96.0.0/12"],
            Some(&spec),
            &RouteChecks::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{spec:?}: {err}");
    }
    assert!(routes(&h, &net).await.is_empty());

    // Over QUIC: an error the node reads, and the session goes on.
    let lab = common::served().await;
    let (mut node, mut map) = lab.joined("master").await;
    node.write(&NodeMessage::Routes {
        network_id: lab.net,
        routes: vec![p("10.96.0.0/12")],
        site: Some(site("Not A Label")),
    })
    .await;
    let (code, message, fatal) = node.next_error(&mut map).await;
    assert_eq!(code, "bad_route");
    assert!(message.contains("site name"), "{message}");
    assert!(!fatal);
    // A good site next: stored, and the node's own map shows the route.
    node.write(&NodeMessage::Routes {
        network_id: lab.net,
        routes: vec![p("10.96.0.0/12")],
        site: Some(site_with_dns("m", "cluster.local", "10.96.0.10")),
    })
    .await;
    node.wait_for(&mut map, |m| m.self_node.routes.len() == 1)
        .await;
    let (status, list) = lab
        .api
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{}/routes", lab.net),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["routes"][0]["site"], "m", "{list}");
}

#[tokio::test]
async fn site_policy_reaches_real_and_mapped_prefixes() {
    let TwoSites {
        h,
        net,
        m,
        w,
        laptop,
    } = two_sites().await;
    let m_mapped = mapped_of(&route_of(&h, &net, m, "10.96.0.0/12").await).unwrap();
    let w_mapped = mapped_of(&route_of(&h, &net, w, "10.96.0.0/12").await).unwrap();
    let (status, body) = set_policy(
        &h,
        &net,
        "[[allow]]\nfrom = [\"laptop\"]\nto = [\"site:m\"]\nports = [\"tcp:443\"]\n\n\
         [[allow]]\nfrom = [\"laptop\"]\nto = [\"10.96.0.10\"]\nports = [\"udp:53\"]\n",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = set_policy(
        &h,
        &net,
        "[[allow]]\nfrom = [\"laptop\"]\nto = [\"site:nowhere\"]\nports = [\"*\"]\n",
    )
    .await;
    assert!(status.is_client_error(), "{body}");
    assert_eq!(body["error"]["code"], "policy_unknown_name", "{body}");
    assert!(body.to_string().contains("site:nowhere"), "{body}");

    let dsts = |map: &Netmap, rule: &str, inbound: bool| -> Vec<IpNet> {
        let filter = map.filter.as_ref().unwrap();
        let rules = if inbound {
            &filter.inbound
        } else {
            &filter.outbound
        };
        let mut nets: Vec<IpNet> = rules
            .iter()
            .filter(|r| r.rule == rule)
            .flat_map(|r| r.dst.clone())
            .collect();
        nets.sort();
        nets
    };
    let at_10 = |prefix: Ipv4Net| {
        IpNet::V4(Ipv4Net::from(std::net::Ipv4Addr::from(
            u32::from(prefix.network()) + 10,
        )))
    };
    let (m_dns, w_dns) = (at_10(m_mapped), at_10(w_mapped));
    // site:m is m's prefixes, and the mapped prefix that stands for one.
    let laptop_map = netmap(&h.store, &net, laptop).await;
    assert_eq!(
        dsts(&laptop_map, "allow[0]", false),
        vec![p("10.96.0.0/12"), p("10.244.0.0/16"), IpNet::V4(m_mapped)]
    );
    let m_map = netmap(&h.store, &net, m).await;
    assert_eq!(
        dsts(&m_map, "allow[0]", true),
        vec![p("10.96.0.0/12"), p("10.244.0.0/16"), IpNet::V4(m_mapped)]
    );
    // w serves nothing of site m.
    let w_map = netmap(&h.store, &net, w).await;
    assert!(dsts(&w_map, "allow[0]", true).is_empty());
    // An address inside both sites' route: its mapped address at each.
    assert_eq!(
        dsts(&m_map, "allow[1]", true),
        vec![p("10.96.0.10/32"), m_dns]
    );
    assert_eq!(
        dsts(&w_map, "allow[1]", true),
        vec![p("10.96.0.10/32"), w_dns]
    );
}

/// The network's audit entries whose action contains `action`, oldest
/// first.
async fn audited(h: &Harness, net: &str, action: &str) -> Vec<Value> {
    let (status, page) = h
        .admin(
            Method::GET,
            &format!("/api/v1/audit?network={net}&action={action}&limit=1000"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["entries"].as_array().unwrap().clone()
}

/// What an audit entry says of a mapped prefix.
fn mapping_of(net: &str, site: &str, nodes: &[NodeId], mapped: Ipv4Net) -> Value {
    json!({
        "network_id": net,
        "site": site,
        "node_ids": nodes,
        "prefix": "10.96.0.0/12",
        "mapped_prefix": mapped,
    })
}

#[tokio::test]
async fn mapped_prefixes_are_audited_as_approvals_allocate_and_revocations_free_them() {
    let TwoSites { h, net, m, w, .. } = two_sites().await;
    let m_mapped = mapped_of(&route_of(&h, &net, m, "10.96.0.0/12").await).unwrap();
    let w_mapped = mapped_of(&route_of(&h, &net, w, "10.96.0.0/12").await).unwrap();

    // Approving w's route made both sites' routes overlap: one allocation
    // each, by the admin who approved, after that approval.
    let allocated = audited(&h, &net, "site.mapping.allocate").await;
    assert_eq!(allocated.len(), 2, "{allocated:?}");
    let approved_w = audited(&h, &net, "route.approve")
        .await
        .into_iter()
        .find(|e| e["target"] == format!("{w} 10.96.0.0/12"))
        .unwrap();
    for (entry, site, node, mapped) in [
        (&allocated[0], "m", m, m_mapped),
        (&allocated[1], "w", w, w_mapped),
    ] {
        assert_eq!(entry["actor"], "token:admin", "{entry}");
        assert_eq!(entry["target"], format!("{site} 10.96.0.0/12"), "{entry}");
        assert_eq!(entry["before"], Value::Null, "{entry}");
        assert_eq!(entry["after"], mapping_of(&net, site, &[node], mapped));
        assert!(entry["id"].as_i64() > approved_w["id"].as_i64(), "{entry}");
    }
    assert!(audited(&h, &net, "site.mapping.release").await.is_empty());

    // Revoking w's approval frees w's mapped prefix (m keeps its own).
    let (status, body) = h
        .admin(
            Method::DELETE,
            &format!("/api/v1/networks/{net}/routes?node={w}&prefix=10.96.0.0%2F12"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let released = audited(&h, &net, "site.mapping.release").await;
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(released[0]["actor"], "token:admin");
    assert_eq!(released[0]["target"], "w 10.96.0.0/12");
    assert_eq!(released[0]["before"], mapping_of(&net, "w", &[w], w_mapped));
    assert_eq!(released[0]["after"], Value::Null);
    assert_eq!(
        mapped_of(&route_of(&h, &net, m, "10.96.0.0/12").await),
        Some(m_mapped)
    );

    // A member filter on w finds both of its mapping entries.
    let (status, page) = h
        .admin(
            Method::GET,
            &format!("/api/v1/audit?network={net}&action=site.mapping&member={w}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let actions: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["site.mapping.allocate", "site.mapping.release"]);
    let (_, verified) = h.admin(Method::GET, "/api/v1/audit/verify", None).await;
    assert_eq!(verified["ok"], true, "{verified}");
}

#[tokio::test]
async fn a_router_that_moves_site_frees_its_mapping_as_the_node() {
    let TwoSites { h, net, m, w, .. } = two_sites().await;
    let m_mapped = mapped_of(&route_of(&h, &net, m, "10.96.0.0/12").await).unwrap();
    // m's master now says it is in site w: one site, no overlap left, so
    // site m's mapped prefix goes; site w keeps its own while it still
    // has the route approved.
    advertise(
        &h,
        &net,
        m,
        &["10.96.0.0/12", "10.244.0.0/16"],
        Some(&site("w")),
    )
    .await;
    let released = audited(&h, &net, "site.mapping.release").await;
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(released[0]["actor"], format!("node:{m}"));
    assert_eq!(released[0]["before"], mapping_of(&net, "m", &[m], m_mapped));
    assert_eq!(audited(&h, &net, "site.mapping.allocate").await.len(), 2);
    assert!(mapped_of(&route_of(&h, &net, w, "10.96.0.0/12").await).is_some());
}

/// A router that keeps changing its site writes a release and an
/// allocation per change: as its own events, they cost its audit budget
/// (as route advertisements do), so it cannot flood the log.
#[tokio::test]
async fn a_router_flapping_between_sites_cannot_flood_the_audit_log() {
    let TwoSites { h, net, m, w, .. } = two_sites().await;
    let routes = ["10.96.0.0/12", "10.244.0.0/16"];
    for i in 0..60 {
        let to = if i % 2 == 0 { "w" } else { "m" };
        advertise(&h, &net, m, &routes, Some(&site(to))).await;
    }
    let by_node = |entries: Vec<Value>| {
        entries
            .iter()
            .filter(|e| e["actor"] == format!("node:{m}"))
            .count()
    };
    let released = by_node(audited(&h, &net, "site.mapping.release").await);
    let allocated = by_node(audited(&h, &net, "site.mapping.allocate").await);
    assert!((20..=21).contains(&released), "{released} releases");
    assert!((20..=21).contains(&allocated), "{allocated} allocations");
    // The last change (back to site m) holds even where entries folded.
    assert!(mapped_of(&route_of(&h, &net, m, "10.96.0.0/12").await).is_some());
    assert!(mapped_of(&route_of(&h, &net, w, "10.96.0.0/12").await).is_some());
}
