//! Access policy through the API: the default of a new network, setting a
//! policy (checked, versioned, audited with a diff), dry runs, explain,
//! history, member tags, grants, read-only auditors, and hostile documents.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{error_code, Harness};
use ipnet::IpNet;
use serde_json::{json, Value};
use warren_controller::store::{JoinRequest, RouteChecks, RouteStore, Store};
use warren_proto::{NodeId, NodePrivateKey};

const ISSUE_EXAMPLE: &str = r#"[groups]
ops = ["laptop-ana", "tag:ci"]
dev = ["laptop-bo"]

[[allow]]
from = ["group:ops"]
to = ["10.96.0.0/12"]
ports = ["tcp:6379"]

[[allow]]
from = ["group:dev"]
to = ["master"]
ports = ["tcp:3000", "icmp"]

[[test]]
from = "laptop-bo"
to = "10.96.0.10"
port = "tcp:6379"
expect = "deny"
"#;

/// A member joined straight through the store, authorized by a key.
async fn member(h: &Harness, net: &str, name: &str) -> NodeId {
    let (status, made) = h
        .admin(
            Method::POST,
            &format!("/api/v1/networks/{net}/keys"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let node_key = NodePrivateKey::generate().public_key();
    h.store
        .join(JoinRequest {
            network_id: net.parse().unwrap(),
            node_key,
            name: name.into(),
            preauth_key: made["key"].as_str().map(str::to_string),
            agent_version: "0.1.0".into(),
            endpoints: vec!["192.0.2.10:41641".parse().unwrap()],
        })
        .await
        .unwrap();
    NodeId::from_key(&node_key)
}

/// The issue's cluster: two laptops, a CI runner tagged `ci`, and a master
/// serving 10.96.0.0/12.
async fn cluster(h: &Harness) -> String {
    let net = h.network("prod").await;
    member(h, &net, "laptop-ana").await;
    member(h, &net, "laptop-bo").await;
    let ci = member(h, &net, "ci-runner").await;
    let master = member(h, &net, "master").await;
    let (status, body) = tag(h, &net, ci, "tag:ci").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let prefix: IpNet = "10.96.0.0/12".parse().unwrap();
    let master_key = h
        .store
        .get_member(net.parse().unwrap(), master)
        .await
        .unwrap()
        .public_key;
    h.store
        .set_advertised_routes(
            net.parse().unwrap(),
            &master_key,
            &[prefix],
            &RouteChecks::default(),
        )
        .await
        .unwrap();
    let (status, body) = h
        .admin(
            Method::POST,
            &format!("/api/v1/networks/{net}/routes"),
            Some(json!({ "node": master, "prefix": "10.96.0.0/12" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    net
}

async fn tag(h: &Harness, net: &str, node: NodeId, tag: &str) -> (StatusCode, Value) {
    h.admin(
        Method::POST,
        &format!("/api/v1/networks/{net}/members/{node}/tags"),
        Some(json!({ "tag": tag })),
    )
    .await
}

async fn set_policy(h: &Harness, net: &str, text: &str) -> (StatusCode, Value) {
    h.admin(
        Method::PUT,
        &format!("/api/v1/networks/{net}/policy"),
        Some(json!({ "text": text })),
    )
    .await
}

async fn current(h: &Harness, net: &str) -> Value {
    let (status, body) = h
        .admin(Method::GET, &format!("/api/v1/networks/{net}/policy"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn explain(h: &Harness, net: &str, from: &str, to: &str, port: &str) -> Value {
    let (status, body) = h
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{net}/policy/explain?from={from}&to={to}&port={port}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn audit(h: &Harness, action: &str) -> Vec<Value> {
    let (_, page) = h.admin(Method::GET, "/api/v1/audit?limit=1000", None).await;
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_new_network_starts_with_the_visible_default_as_version_1() {
    let h = Harness::new().await;
    let net = h.network("prod").await;
    let policy = current(&h, &net).await;
    assert_eq!(policy["version"], 1);
    let text = policy["text"].as_str().unwrap();
    assert!(
        text.contains("from = [\"*\"]") && text.contains("to = [\"*\"]"),
        "{text}"
    );
    assert!(
        text.contains("# "),
        "the default explains itself in comments"
    );
    let (_, history) = h
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{net}/policy/history"),
            None,
        )
        .await;
    assert_eq!(history["versions"].as_array().unwrap().len(), 1);
    member(&h, &net, "laptop-ana").await;
    member(&h, &net, "laptop-bo").await;
    let d = explain(&h, &net, "laptop-ana", "laptop-bo", "tcp:22").await;
    assert_eq!(d["allowed"], true, "{d}");
    assert_eq!(d["rule"], "allow[0]");
}

#[tokio::test]
async fn the_issue_example_is_stored_versioned_audited_and_explained() {
    let h = Harness::new().await;
    let net = cluster(&h).await;
    let (status, set) = set_policy(&h, &net, ISSUE_EXAMPLE).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["version"], 2);
    assert_eq!(set["changed"], true);
    assert_eq!(set["tests"][0]["passed"], true, "{set}");
    assert_eq!(current(&h, &net).await["text"], ISSUE_EXAMPLE);

    let redis = explain(&h, &net, "laptop-ana", "10.96.0.10", "tcp:6379").await;
    assert_eq!(redis["allowed"], true, "{redis}");
    assert_eq!(redis["rule"], "allow[0]");
    assert_eq!(redis["policy_version"], 2);
    let https = explain(&h, &net, "laptop-ana", "10.96.0.20", "tcp:443").await;
    assert_eq!(https["allowed"], false, "{https}");
    assert_eq!(https["rule"], Value::Null);
    let ci = explain(&h, &net, "ci-runner", "10.96.0.10", "tcp:6379").await;
    assert_eq!(ci["allowed"], true, "tag:ci is in group:ops: {ci}");
    let web = explain(&h, &net, "laptop-bo", "master", "tcp:3000").await;
    assert_eq!(web["rule"], "allow[1]");
    let (status, _) = h
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{net}/policy/explain?from=laptop-bo&to=master&port=tcp:1-9"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

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
        1,
        "only master: {ana}"
    );
    assert_eq!(ana["filter"]["outbound"][0]["ports"][0], "tcp:6379");

    let (_, history) = h
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{net}/policy/history"),
            None,
        )
        .await;
    let versions: Vec<_> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![2, 1]);
    assert_eq!(history["versions"][0]["created_by"], "token:admin");

    let entries = audit(&h, "policy.set").await;
    let last = entries.last().unwrap();
    assert_eq!(last["actor"], "token:admin");
    assert_eq!(last["before"]["version"], 1);
    let diff = last["after"]["diff"].as_str().unwrap();
    assert!(diff.contains("+from = [\"group:ops\"]"), "{diff}");
    assert!(diff.contains("-from = [\"*\"]"), "{diff}");

    // The same text again makes no new version.
    let (status, again) = set_policy(&h, &net, ISSUE_EXAMPLE).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["changed"], false);
    assert_eq!(again["version"], 2);
}

#[tokio::test]
async fn a_policy_whose_tests_fail_is_refused_and_the_old_one_stays() {
    let h = Harness::new().await;
    let net = cluster(&h).await;
    let failing = ISSUE_EXAMPLE.replace("expect = \"deny\"", "expect = \"allow\"");
    let (status, body) = set_policy(&h, &net, &failing).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "policy_test_failed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("test[0]") && message.contains("laptop-bo"),
        "{message}"
    );
    assert_eq!(current(&h, &net).await["version"], 1);
    assert!(audit(&h, "policy.set").await.is_empty());

    // The dry run refuses it the same way, and a good one stores nothing.
    let (status, body) = h
        .admin(
            Method::POST,
            &format!("/api/v1/networks/{net}/policy/test"),
            Some(json!({ "text": failing })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&body), "policy_test_failed");
    let (status, body) = h
        .admin(
            Method::POST,
            &format!("/api/v1/networks/{net}/policy/test"),
            Some(json!({ "text": ISSUE_EXAMPLE })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tests"][0]["passed"], true);
    assert_eq!(current(&h, &net).await["version"], 1);
}

#[tokio::test]
async fn unknown_names_and_bad_syntax_are_refused_with_where() {
    let h = Harness::new().await;
    let net = cluster(&h).await;
    let cases = [
        (
            "[[allow]]\nfrom = [\"laptop-zed\"]\nto = [\"*\"]\nports = [\"*\"]\n",
            "policy_unknown_name",
            "line 2",
        ),
        (
            "[[allow]]\nfrom = [\"*\"]\nto = [\"tag:db\"]\nports = [\"*\"]\n",
            "policy_unknown_name",
            "tag:db",
        ),
        (
            "[[allow]]\nfrom = [\"group:x\"]\nto = [\"*\"]\nports = [\"*\"]\n",
            "policy_unknown_name",
            "group:x",
        ),
        (
            "[[allow]]\nfrom = [\"*\"]\nto = [\"*\"]\nports = [\"tcp:0\"]\n",
            "policy_syntax",
            "line 4",
        ),
        (
            "[[allow]]\nfrom = [\"*\"]\nto = [\"*\"]\nports = [\"*\"]\ncolor = 1\n",
            "policy_syntax",
            "color",
        ),
    ];
    for (text, code, needle) in cases {
        let (status, body) = set_policy(&h, &net, text).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}: {body}");
        assert_eq!(error_code(&body), code, "{text}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{text}: {message}");
    }
    assert_eq!(current(&h, &net).await["version"], 1);
}

#[tokio::test]
async fn hostile_bodies_get_a_clear_4xx() {
    let h = Harness::new().await;
    let net = h.network("prod").await;
    let huge = format!("# {}\n", "x".repeat(300 * 1024));
    let (status, body) = set_policy(&h, &net, &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(error_code(&body), "policy_too_large");
    let deep = format!("x = {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, body) = set_policy(&h, &net, &deep).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "policy_syntax");
    let (status, body) = h
        .admin(
            Method::PUT,
            &format!("/api/v1/networks/{net}/policy"),
            Some(json!({ "text": "", "extra": 1 })),
        )
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    let request = Request::builder()
        .method(Method::PUT)
        .uri(format!("/api/v1/networks/{net}/policy"))
        .header("authorization", format!("Bearer {}", h.admin))
        .header("content-type", "application/json")
        .body(Body::from("{\"text\": \"\\ud800"))
        .unwrap();
    let (status, _) = h.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // An empty document is valid: it denies everything.
    let (status, body) = set_policy(&h, &net, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(current(&h, &net).await["version"], 2);
}

#[tokio::test]
async fn auditors_read_the_policy_and_change_nothing() {
    let h = Harness::new().await;
    let net = cluster(&h).await;
    let auditor = h.auditor.clone();
    let (status, _) = h
        .call(
            Method::GET,
            &format!("/api/v1/networks/{net}/policy"),
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .call(
            Method::GET,
            &format!("/api/v1/networks/{net}/policy/explain?from=laptop-ana&to=master&port=icmp"),
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .call(
            Method::PUT,
            &format!("/api/v1/networks/{net}/policy"),
            Some(&auditor),
            Some(json!({ "text": "" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let ana = h.store.list_members(net.parse().unwrap()).await.unwrap()[0].node_id;
    let (status, _) = h
        .call(
            Method::POST,
            &format!("/api/v1/networks/{net}/members/{ana}/tags"),
            Some(&auditor),
            Some(json!({ "tag": "tag:db" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(current(&h, &net).await["version"], 1);
}

#[tokio::test]
async fn tags_are_validated_listed_removed_and_audited() {
    let h = Harness::new().await;
    let net = h.network("prod").await;
    let node = member(&h, &net, "db-1").await;
    let path = format!("/api/v1/networks/{net}/members/{node}/tags");
    let (status, body) = tag(&h, &net, node, "tag:db").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = tag(&h, &net, node, "tag:backup").await;
    assert_eq!(body["tags"], json!(["tag:backup", "tag:db"]));
    for bad in ["db", "tag:", "tag:DB", "tag:a b"] {
        let (status, body) = tag(&h, &net, node, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (_, listed) = h.admin(Method::GET, &path, None).await;
    assert_eq!(listed["tags"], json!(["tag:backup", "tag:db"]));
    let (status, body) = h
        .admin(Method::DELETE, &format!("{path}/tag:backup"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tags"], json!(["tag:db"]));
    let (status, _) = h
        .admin(Method::DELETE, &format!("{path}/tag:backup"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let other = NodePrivateKey::generate().public_key();
    let (status, _) = tag(&h, &net, NodeId::from_key(&other), "tag:db").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let tagged = audit(&h, "member.tag").await;
    assert_eq!(tagged.len(), 2);
    assert_eq!(tagged[1]["after"]["tags"], json!(["tag:backup", "tag:db"]));
    assert_eq!(audit(&h, "member.untag").await.len(), 1);

    // A policy may now name the tag.
    let text = "[[allow]]\nfrom = [\"*\"]\nto = [\"tag:db\"]\nports = [\"tcp:5432\"]\n";
    let (status, body) = set_policy(&h, &net, text).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_network_can_start_with_a_policy_of_its_own() {
    let h = Harness::new().await;
    let text = "tags = [\"tag:db\"]\n[[allow]]\nfrom = [\"*\"]\nto = [\"tag:db\"]\nports = [\"tcp:5432\"]\n";
    let (status, made) = h
        .admin(
            Method::POST,
            "/api/v1/networks",
            Some(json!({ "name": "lab", "policy": text })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let net = made["id"].as_str().unwrap();
    let policy = current(&h, net).await;
    assert_eq!(policy["version"], 1);
    assert_eq!(policy["text"], text);
    let entries = audit(&h, "policy.set").await;
    assert_eq!(
        entries.len(),
        1,
        "a policy other than the default is audited"
    );
    assert_eq!(entries[0]["after"]["text"], text);

    let (status, body) = h
        .admin(
            Method::POST,
            "/api/v1/networks",
            Some(json!({ "name": "lab2", "policy": "[[allow]]\nfrom = [\"ana\"]\nto = [\"*\"]\nports = [\"*\"]\n" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "policy_unknown_name");
    let (_, list) = h.admin(Method::GET, "/api/v1/networks", None).await;
    assert_eq!(
        list["networks"].as_array().unwrap().len(),
        1,
        "lab2 was not made"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_the_policy_api() {
    let h = Harness::new().await;
    let (status, doc) = h
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for (path, method) in [
        ("/api/v1/networks/{id}/policy", "get"),
        ("/api/v1/networks/{id}/policy", "put"),
        ("/api/v1/networks/{id}/policy/test", "post"),
        ("/api/v1/networks/{id}/policy/explain", "get"),
        ("/api/v1/networks/{id}/policy/history", "get"),
        ("/api/v1/networks/{id}/policy/compiled", "get"),
        ("/api/v1/networks/{id}/members/{node}/tags", "get"),
        ("/api/v1/networks/{id}/members/{node}/tags", "post"),
        ("/api/v1/networks/{id}/members/{node}/tags/{tag}", "delete"),
        ("/api/v1/networks/{id}/grants", "get"),
        ("/api/v1/networks/{id}/grants", "post"),
        ("/api/v1/networks/{id}/grants/{grant}", "delete"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    for schema in [
        "PolicyText",
        "PolicyVersion",
        "PolicySet",
        "PolicyExplanation",
        "NewTag",
        "NewGrant",
        "Grant",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    assert!(doc["components"]["schemas"]["CreateNetwork"]["properties"]["policy"].is_object());
}

async fn add_grant(h: &Harness, net: &str, body: Value) -> (StatusCode, Value) {
    h.admin(
        Method::POST,
        &format!("/api/v1/networks/{net}/grants"),
        Some(body),
    )
    .await
}

async fn grants(h: &Harness, net: &str, all: bool) -> Vec<Value> {
    let (status, body) = h
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{net}/grants?all={all}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["grants"].as_array().unwrap().clone()
}

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
        json!({ "from": "laptop-bo", "to": "10.96.0.10", "ports": ["tcp:6379"], "for": "1s", "reason": "short" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    assert_eq!(
        explain(&h, &net, "laptop-bo", "10.96.0.10", "tcp:6379").await["allowed"],
        true
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
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
