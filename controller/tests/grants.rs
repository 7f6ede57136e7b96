//! Grants through the API: temporary access that admits what it names
//! until it ends or is revoked, is audited when made and when it ends, and
//! is refused when malformed or asked for by an auditor.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::policy::*;
use common::{error_code, Harness};
use serde_json::json;

#[tokio::test]
async fn a_grant_admits_what_it_names_until_it_is_revoked() {
    let h = Harness::new().await;
    let net = cluster(&h).await;
    let (status, _) = set_policy(&h, &net, ISSUE_EXAMPLE).await;
    assert_eq!(status, StatusCode::OK);
    let ssh = || explain(&h, &net, "laptop-bo", "master", "tcp:22");
    assert_eq!(ssh().await["allowed"], false);

    let (status, grant) = add_grant(
        &h,
        &net,
        json!({ "from": "laptop-bo", "to": "master", "ports": ["tcp:22"], "for": "2h", "reason": "incident 42" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    let id = grant["id"].as_str().unwrap().to_string();
    assert_eq!(grant["active"], true);
    let d = ssh().await;
    assert_eq!(d["allowed"], true, "{d}");
    assert_eq!(d["rule"], format!("grant:{id}"));
    assert_eq!(
        explain(&h, &net, "laptop-bo", "master", "tcp:23").await["allowed"],
        false
    );

    // A grant between members that had nothing to do with each other
    // makes them peers while it lasts.
    let (status, _) = add_grant(
        &h,
        &net,
        json!({ "from": "laptop-bo", "to": "laptop-ana", "for": "2h", "reason": "pairing" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, compiled) = h
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{net}/policy/compiled"),
            None,
        )
        .await;
    let ana = compiled["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "laptop-ana")
        .unwrap();
    assert_eq!(
        ana["peers"].as_array().unwrap().len(),
        2,
        "master and laptop-bo: {ana}"
    );
    assert_eq!(grants(&h, &net, false).await.len(), 2);

    // The document's own tests judge the document, not the grants.
    let (status, body) = set_policy(&h, &net, &format!(
        "{ISSUE_EXAMPLE}\n[[test]]\nfrom = \"laptop-bo\"\nto = \"master\"\nport = \"tcp:22\"\nexpect = \"deny\"\n"
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, revoked) = h
        .admin(
            Method::DELETE,
            &format!("/api/v1/networks/{net}/grants/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["active"], false);
    assert_eq!(revoked["revoked_by"], "token:admin");
    assert_eq!(ssh().await["allowed"], false);
    let (status, _) = h
        .admin(
            Method::DELETE,
            &format!("/api/v1/networks/{net}/grants/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(grants(&h, &net, false).await.len(), 1);
    assert_eq!(grants(&h, &net, true).await.len(), 2);

    let added = audit(&h, "grant.add").await;
    assert_eq!(added.len(), 2);
    assert_eq!(added[0]["after"]["reason"], "incident 42");
    assert_eq!(added[0]["actor"], "token:admin");
    let revokes = audit(&h, "grant.revoke").await;
    assert_eq!(revokes.len(), 1);
    assert_eq!(revokes[0]["target"], format!("grant:{id}"));
}

#[tokio::test]
async fn a_grant_ends_by_itself() {
    let h = Harness::new().await;
    let net = cluster(&h).await;
    let (status, _) = set_policy(&h, &net, ISSUE_EXAMPLE).await;
    assert_eq!(status, StatusCode::OK);
    let (status, grant) = add_grant(
        &h,
        &net,
        // Ends are kept in whole seconds: a 1 s grant may be over a few
        // milliseconds after it is made, before the first look.
        json!({ "from": "laptop-bo", "to": "10.96.0.10", "ports": ["tcp:6379"], "for": "3s", "reason": "short" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    assert_eq!(
        explain(&h, &net, "laptop-bo", "10.96.0.10", "tcp:6379").await["allowed"],
        true
    );
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let d = explain(&h, &net, "laptop-bo", "10.96.0.10", "tcp:6379").await;
    assert_eq!(d["allowed"], false, "the grant ended: {d}");
    assert!(grants(&h, &net, false).await.is_empty());
    assert_eq!(grants(&h, &net, true).await[0]["active"], false);
    let (status, _) = h
        .admin(
            Method::DELETE,
            &format!(
                "/api/v1/networks/{net}/grants/{}",
                grant["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an ended grant cannot be revoked"
    );
}

#[tokio::test]
async fn bad_grants_are_refused_and_auditors_cannot_grant() {
    let h = Harness::new().await;
    let net = cluster(&h).await;
    let (status, _) = set_policy(&h, &net, ISSUE_EXAMPLE).await;
    assert_eq!(status, StatusCode::OK);
    let good = json!({ "from": "group:dev", "to": "tag:ci", "ports": ["tcp:22"], "for": "2h", "reason": "why" });
    for (field, value, status, code) in [
        (
            "from",
            json!("laptop-zed"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy_unknown_name",
        ),
        (
            "from",
            json!("group:nope"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy_unknown_name",
        ),
        (
            "to",
            json!("service:redis"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy_unknown_name",
        ),
        (
            "from",
            json!("10.0.0.0/8"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy_invalid",
        ),
        (
            "ports",
            json!(["tcp:0"]),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        ("ports", json!([]), StatusCode::BAD_REQUEST, "bad_request"),
        ("for", json!("0s"), StatusCode::BAD_REQUEST, "bad_request"),
        (
            "for",
            json!("31days"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        ("for", json!("soon"), StatusCode::BAD_REQUEST, "bad_request"),
        (
            "reason",
            json!("  "),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ] {
        let mut body = good.clone();
        body[field] = value.clone();
        let (got, answer) = add_grant(&h, &net, body).await;
        assert_eq!(got, status, "{field} = {value}: {answer}");
        assert_eq!(error_code(&answer), code, "{field} = {value}");
    }
    let auditor = h.auditor.clone();
    let (status, _) = h
        .call(
            Method::POST,
            &format!("/api/v1/networks/{net}/grants"),
            Some(&auditor),
            Some(good.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h
        .call(
            Method::GET,
            &format!("/api/v1/networks/{net}/grants"),
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(grants(&h, &net, true).await.is_empty());
    let (status, made) = add_grant(&h, &net, good).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
}

#[tokio::test]
async fn the_controller_records_a_grants_end_within_5_s() {
    let served = common::served().await;
    let net = served.net;
    let store = served.running.hub.store().clone();
    let version_before = store.get_network(net).await.unwrap().netmap_version;
    let (status, grant) = served
        .api
        .admin(
            Method::POST,
            &format!("/api/v1/networks/{net}/grants"),
            Some(json!({ "from": "*", "to": "10.96.0.0/12", "ports": ["tcp:6379"], "for": "1s", "reason": "short" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    let target = format!("grant:{}", grant["id"].as_str().unwrap());
    // The grant ends within a second; its end must be recorded 5 s after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(6);
    let ended = loop {
        let (_, page) = served
            .api
            .admin(Method::GET, "/api/v1/audit?limit=1000", None)
            .await;
        let found = page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "grant.end")
            .cloned();
        if let Some(entry) = found {
            break entry;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no grant.end within 5 s of the grant's end"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(ended["actor"], "system");
    assert_eq!(ended["target"], target);
    let version_after = store.get_network(net).await.unwrap().netmap_version;
    assert_eq!(
        version_after,
        version_before + 2,
        "one bump when made, one when ended"
    );
    assert_eq!(
        store.end_due_grants().await.unwrap(),
        vec![],
        "recorded once"
    );
    served.running.shutdown().await;
}
