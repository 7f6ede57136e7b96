//! Subnet and exit routes: advertised by nodes over QUIC, approved through
//! the API (or by auto-approval rules), refused when they conflict, and
//! carried in netmaps by the primary advertiser only; every change audited.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::policy::member_at as member;
use common::routes::{advertise, approve, key_of, p, routes};
use common::{error_code, Harness};
use ipnet::IpNet;
use serde_json::json;
use warren_controller::store::Store;
use warren_proto::control::{ControllerMessage, NodeMessage};
use warren_proto::{NodeId, NodePrivateKey};

async fn audit_actions(h: &Harness) -> Vec<(String, String)> {
    let (_, page) = h.admin(Method::GET, "/api/v1/audit?limit=1000", None).await;
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn approve_refuse_unapprove_and_audit_through_the_api() {
    let h = Harness::new().await;
    let net = h.network("prod").await;
    let a = member(&h, &net, "master-a", "198.51.100.7:41641").await;
    let b = member(&h, &net, "master-b", "203.0.113.9:41641").await;
    advertise(&h, &net, a, &["10.96.0.0/12", "0.0.0.0/0"], None).await;

    let listed = routes(&h, &net).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed
        .iter()
        .all(|r| r["advertised"] == true && r["approved"] == false));
    assert!(listed.iter().all(|r| r["name"] == "master-a"));

    // Auditors read but never approve.
    let auditor = h.auditor.clone();
    let (status, _) = h
        .call(
            Method::POST,
            &format!("/api/v1/networks/{net}/routes"),
            Some(&auditor),
            Some(json!({ "node": a, "prefix": "10.96.0.0/12" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // a comes online first, then b: a is the primary of what both serve.
    for node in [a, b] {
        let key = key_of(&h.store, &net, node).await;
        h.store
            .set_presence(net.parse().unwrap(), &key, true)
            .await
            .unwrap();
    }
    let (status, view) = approve(&h, &net, a, "10.96.0.0/12").await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["approved"], true);
    assert_eq!(view["primary"], true);
    assert_eq!(view["approved_by"], "token:admin");

    // Conflicts get 409 with a message that names the clash.
    let (status, body) = approve(&h, &net, b, "10.96.0.0/16").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "conflict");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("overlaps 10.96.0.0/12") && message.contains("master-a"),
        "{message}"
    );
    // A route that would capture a member's endpoint.
    let (status, body) = approve(&h, &net, a, "203.0.113.0/24").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("203.0.113.9:41641"));
    // The overlay pool, and prefixes with host bits: bad requests.
    let (status, body) = approve(&h, &net, a, "10.147.0.0/24").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("overlay prefix 10.147.0.0/16"));
    let (status, body) = approve(&h, &net, a, "10.96.0.1/12").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("did you mean 10.96.0.0/12"));
    // Unknown member.
    let (status, _) = approve(
        &h,
        &net,
        NodeId::from_key(&NodePrivateKey::generate().public_key()),
        "10.200.0.0/16",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The identical prefix from another router stands by.
    advertise(&h, &net, b, &["10.96.0.0/12"], None).await;
    let (status, view) = approve(&h, &net, b, "10.96.0.0/12").await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["primary"], false);

    // The exit route.
    let (status, view) = approve(&h, &net, a, "0.0.0.0/0").await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["exit"], true);

    let (status, _) = h
        .admin(
            Method::DELETE,
            &format!("/api/v1/networks/{net}/routes?node={a}&prefix=10.96.0.0%2F12"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Now b serves it.
    let listed = routes(&h, &net).await;
    let b_route = listed
        .iter()
        .find(|r| r["node_id"] == b.to_string() && r["prefix"] == "10.96.0.0/12")
        .unwrap();
    assert_eq!(b_route["primary"], true, "{listed:?}");
    let (status, _) = h
        .admin(
            Method::DELETE,
            &format!("/api/v1/networks/{net}/routes?node={a}&prefix=10.96.0.0%2F12"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let actions = audit_actions(&h).await;
    let find = |action: &str, actor: &str| {
        actions
            .iter()
            .any(|(a, b)| a == action && b.starts_with(actor))
    };
    assert!(find("route.advertise", "node:"), "{actions:?}");
    assert!(find("route.approve", "token:admin"), "{actions:?}");
    assert!(find("route.unapprove", "token:admin"), "{actions:?}");
    let (_, verified) = h.admin(Method::GET, "/api/v1/audit/verify", None).await;
    assert_eq!(verified["ok"], true);
}

#[tokio::test]
async fn auto_approval_rules_approve_chosen_members_only() {
    let h = Harness::new().await;
    let net = h.network("prod").await;
    let a = member(&h, &net, "master-a", "198.51.100.7:41641").await;
    let b = member(&h, &net, "laptop", "203.0.113.9:41641").await;
    advertise(&h, &net, a, &["10.96.0.0/12"], None).await;

    // A rule for a's service range approves what a already advertises.
    let (status, made) = h
        .admin(
            Method::POST,
            &format!("/api/v1/networks/{net}/routes/auto-approvers"),
            Some(json!({ "prefix": "10.96.0.0/11", "node": a.to_string() })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["approved"].as_array().unwrap().len(), 1, "{made}");
    // New advertisements inside it are approved at once; b's are not.
    advertise(&h, &net, b, &["10.112.0.0/12"], None).await;
    let listed = routes(&h, &net).await;
    let b_route = listed
        .iter()
        .find(|r| r["node_id"] == b.to_string())
        .unwrap();
    assert_eq!(b_route["approved"], false, "{listed:?}");
    // An overlapping prefix from a is not auto-approved over a conflict.
    advertise(&h, &net, a, &["10.96.0.0/12", "10.96.0.0/16"], None).await;
    let listed = routes(&h, &net).await;
    let inner = listed
        .iter()
        .find(|r| r["prefix"] == "10.96.0.0/16")
        .unwrap();
    assert_eq!(inner["approved"], false, "{listed:?}");

    // Any member: `*`.
    let (status, _) = h
        .admin(
            Method::POST,
            &format!("/api/v1/networks/{net}/routes/auto-approvers"),
            Some(json!({ "prefix": "10.112.0.0/12", "node": "*" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let listed = routes(&h, &net).await;
    let b_route = listed
        .iter()
        .find(|r| r["node_id"] == b.to_string())
        .unwrap();
    assert_eq!(b_route["approved"], true, "{listed:?}");
    assert_eq!(b_route["approved_by"], "system");

    let (_, rules) = h
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{net}/routes/auto-approvers"),
            None,
        )
        .await;
    assert_eq!(
        rules["auto_approvers"].as_array().unwrap().len(),
        2,
        "{rules}"
    );
    let (status, _) = h
        .admin(
            Method::DELETE,
            &format!("/api/v1/networks/{net}/routes/auto-approvers?prefix=10.112.0.0%2F12&node=*"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = h
        .admin(
            Method::POST,
            &format!("/api/v1/networks/{net}/routes/auto-approvers"),
            Some(json!({ "prefix": "10.96.0.0/11", "node": "nope" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let actions = audit_actions(&h).await;
    assert!(actions
        .iter()
        .any(|(a, actor)| a == "route.approve" && actor == "system"));
    assert!(actions.iter().any(|(a, _)| a == "route.auto_approver.add"));
    assert!(actions
        .iter()
        .any(|(a, _)| a == "route.auto_approver.remove"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertised_routes_reach_peers_only_when_approved_and_fail_over() {
    let lab = common::served().await;
    let (mut a, mut a_map) = lab.joined("router-a").await;
    let (mut b, mut b_map) = lab.joined("router-b").await;
    let (mut laptop, mut l_map) = lab.joined("laptop").await;
    let net = lab.net;

    // A bad prefix is refused to the node, without closing the connection.
    a.write(&NodeMessage::Routes {
        network_id: net,
        routes: vec![p("127.0.0.0/8")],
        site: None,
    })
    .await;
    let (code, message, fatal) = a.next_error(&mut a_map).await;
    assert_eq!(code, "bad_route");
    assert!(message.contains("loopback"), "{message}");
    assert!(!fatal);

    for (node, map) in [(&mut a, &mut a_map), (&mut b, &mut b_map)] {
        node.write(&NodeMessage::Routes {
            network_id: net,
            routes: vec![p("10.96.0.0/12")],
            site: None,
        })
        .await;
        node.wait_for(map, |m| m.self_node.routes.len() == 1).await;
        assert!(!map.self_node.routes[0].approved);
    }
    // Not approved: the laptop's peers carry no routes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Some(ControllerMessage::NetmapDelta(d)) =
        laptop.try_next(Duration::from_millis(100)).await
    {
        l_map.apply(&d).unwrap();
    }
    assert!(
        l_map.peers.iter().all(|p| p.routes.is_empty()),
        "{:?}",
        l_map.peers
    );

    for node in [a.node_id(), b.node_id()] {
        let (status, body) = lab
            .api
            .admin(
                Method::POST,
                &format!("/api/v1/networks/{net}/routes"),
                Some(json!({ "node": node, "prefix": "10.96.0.0/12" })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // One primary: a, online first. The laptop routes the prefix to a only.
    let (a_id, b_id) = (a.node_id(), b.node_id());
    laptop
        .wait_for(&mut l_map, |m| {
            m.peers
                .iter()
                .any(|p| p.node_id == a_id && p.routes == [p_("10.96.0.0/12")])
                && m.peers
                    .iter()
                    .any(|p| p.node_id == b_id && p.routes.is_empty())
        })
        .await;
    a.wait_for(&mut a_map, |m| {
        m.self_node.routes.iter().all(|r| r.approved && r.primary)
    })
    .await;
    b.wait_for(&mut b_map, |m| {
        m.self_node.routes.iter().all(|r| r.approved && !r.primary)
    })
    .await;

    // a goes away: b takes over, in the laptop's map and its own.
    drop(a);
    laptop
        .wait_for(&mut l_map, |m| {
            m.peers
                .iter()
                .any(|p| p.node_id == b_id && p.routes == [p_("10.96.0.0/12")])
                && m.peers
                    .iter()
                    .any(|p| p.node_id == a_id && p.routes.is_empty())
        })
        .await;
    b.wait_for(&mut b_map, |m| m.self_node.routes.iter().all(|r| r.primary))
        .await;

    // Withdrawing (advertising nothing) takes it away again.
    b.write(&NodeMessage::Routes {
        network_id: net,
        routes: vec![],
        site: None,
    })
    .await;
    b.wait_for(&mut b_map, |m| m.self_node.routes.is_empty())
        .await;
}

fn p_(s: &str) -> IpNet {
    p(s)
}

#[tokio::test]
async fn the_openapi_document_describes_the_routes_api() {
    let h = Harness::new().await;
    let (status, doc) = h
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for (path, methods) in [
        ("/api/v1/networks/{id}/routes", ["get", "post", "delete"]),
        (
            "/api/v1/networks/{id}/routes/auto-approvers",
            ["get", "post", "delete"],
        ),
    ] {
        for m in methods {
            assert!(doc["paths"][path][m].is_object(), "{m} {path} missing");
        }
    }
    for schema in [
        "Route",
        "AutoApprover",
        "ApproveRoute",
        "AutoApproverRequest",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
}
