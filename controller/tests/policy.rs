//! Access policy through the API: the default of a new network, setting a
//! policy (checked, versioned, audited with a diff), dry runs, explain,
//! history, member tags, read-only auditors, and hostile documents. Grants
//! are in `grants.rs`.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::policy::*;
use common::{error_code, Harness};
use serde_json::{json, Value};
use warren_controller::store::Store;
use warren_proto::{NodeId, NodePrivateKey};

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
