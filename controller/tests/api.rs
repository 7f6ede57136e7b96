//! The HTTP API through `oneshot`: networks, hostile input, tokens and scopes.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{error_code, Harness};
use serde_json::{json, Value};

#[tokio::test]
async fn networks_are_created_listed_changed_and_deleted() {
    let h = Harness::new().await;
    let (status, made) = h
        .admin(
            Method::POST,
            "/api/v1/networks",
            Some(json!({ "name": "prod" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 16);
    assert_eq!(made["pool"], "10.147.0.0/16");
    assert_eq!(made["zone"], "prod.warren.internal");
    assert_eq!(made["mtu"], 1420);

    let (status, list) = h.admin(Method::GET, "/api/v1/networks", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["networks"].as_array().unwrap().len(), 1);

    let path = format!("/api/v1/networks/{id}");
    let (status, changed) = h
        .admin(
            Method::PATCH,
            &path,
            Some(json!({ "name": "staging", "zone": "stg.example" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["name"], "staging");
    assert_eq!(changed["zone"], "stg.example");
    let (_, shown) = h.admin(Method::GET, &path, None).await;
    assert_eq!(shown["name"], "staging");

    let (status, _) = h.admin(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = h.admin(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn invalid_networks_are_refused_with_4xx() {
    let h = Harness::new().await;
    h.network("prod").await;
    let cases = [
        (json!({ "name": "prod" }), StatusCode::CONFLICT),
        (json!({ "name": "Prod!" }), StatusCode::BAD_REQUEST),
        (json!({ "name": "" }), StatusCode::BAD_REQUEST),
        (
            json!({ "name": "a", "pool": "10.0.0.0/31" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "name": "b", "pool": "10.0.0.0/7" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "name": "c", "pool": "fd00::/64" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "name": "d", "pool": "banana" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "name": "e", "zone": "bad zone" }),
            StatusCode::BAD_REQUEST,
        ),
        (json!({ "name": "f", "mtu": 100 }), StatusCode::BAD_REQUEST),
        (
            json!({ "name": "g", "mtu": 70000 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({ "name": 5 }), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({ "name": "h", "extra": true }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!([1, 2, 3]), StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (body, expected) in cases {
        let (status, answer) = h
            .admin(Method::POST, "/api/v1/networks", Some(body.clone()))
            .await;
        assert_eq!(status, expected, "{body} -> {answer}");
        error_code(&answer);
    }
    // Overlapping pools across networks are fine.
    let (status, _) = h
        .admin(
            Method::POST,
            "/api/v1/networks",
            Some(json!({ "name": "other" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

fn raw(
    method: Method,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn hostile_bodies_get_json_errors_never_5xx() {
    let h = Harness::new().await;
    let json_ct = Some("application/json");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge = format!("{{\"name\":\"{}\"}}", "a".repeat(2 << 20));
    let cases: Vec<(Option<&str>, Vec<u8>, StatusCode)> = vec![
        (json_ct, b"{\"name\":".to_vec(), StatusCode::BAD_REQUEST),
        (
            json_ct,
            b"not json at all".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (json_ct, vec![0xff, 0xfe, 0x00], StatusCode::BAD_REQUEST),
        (json_ct, b"".to_vec(), StatusCode::BAD_REQUEST),
        (json_ct, deep.into_bytes(), StatusCode::UNPROCESSABLE_ENTITY),
        (json_ct, huge.into_bytes(), StatusCode::PAYLOAD_TOO_LARGE),
        (json_ct, b"null".to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json_ct,
            b"{\"name\":\"x\",\"name\":\"y\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            None,
            b"{\"name\":\"x\"}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Some("text/plain"),
            b"{\"name\":\"x\"}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (ct, body, expected) in cases {
        let request = raw(Method::POST, "/api/v1/networks", &h.admin, ct, body);
        let (status, answer) = h.send(request).await;
        assert_eq!(status, expected, "{answer}");
        error_code(&answer);
    }
    let (_, list) = h.admin(Method::GET, "/api/v1/networks", None).await;
    assert_eq!(list["networks"], json!([]));
}

#[tokio::test]
async fn unknown_ids_routes_and_methods() {
    let h = Harness::new().await;
    let id = h.network("prod").await;
    let cases = [
        (
            Method::GET,
            "/api/v1/networks/0000000000000000".to_string(),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/api/v1/networks/xyz".to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/api/v1/networks/%ff%fe".to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/api/v1/networks/{id}/members/0123456789"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            format!("/api/v1/networks/{id}/members/nothex"),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("/api/v1/networks/{id}/members/0123456789/authorize"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/api/v1/networks/0000000000000000/members".to_string(),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/api/v1/networks/0000000000000000/keys".to_string(),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::DELETE,
            format!("/api/v1/networks/{id}/keys/zz"),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::DELETE,
            format!("/api/v1/networks/{id}/keys/00000000"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/api/v1/nothing".to_string(),
            StatusCode::NOT_FOUND,
        ),
        (Method::GET, "/nothing".to_string(), StatusCode::NOT_FOUND),
        (
            Method::PUT,
            "/api/v1/networks".to_string(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (method, path, expected) in cases {
        let (status, body) = h.admin(method.clone(), &path, None).await;
        assert_eq!(status, expected, "{method} {path}: {body}");
        error_code(&body);
    }
}

#[tokio::test]
async fn tokens_and_scopes_are_enforced() {
    let h = Harness::new().await;
    let id = h.network("prod").await;
    let (status, body) = h.call(Method::GET, "/api/v1/networks", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "unauthorized");
    let (status, _) = h
        .call(
            Method::GET,
            "/api/v1/networks",
            Some("wt_not-a-real-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let request = Request::builder()
        .uri("/api/v1/networks")
        .header("authorization", format!("Basic {}", h.admin))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(request).await.0, StatusCode::UNAUTHORIZED);

    // The auditor reads everything ...
    let auditor = h.auditor.clone();
    for path in [
        "/api/v1/networks".to_string(),
        format!("/api/v1/networks/{id}"),
        format!("/api/v1/networks/{id}/members"),
        format!("/api/v1/networks/{id}/keys"),
        "/api/v1/audit".to_string(),
        "/api/v1/audit/verify".to_string(),
    ] {
        let (status, body) = h.call(Method::GET, &path, Some(&auditor), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // ... and changes nothing.
    let writes = [
        (
            Method::POST,
            "/api/v1/networks".to_string(),
            Some(json!({ "name": "x" })),
        ),
        (
            Method::PATCH,
            format!("/api/v1/networks/{id}"),
            Some(json!({ "name": "y" })),
        ),
        (Method::DELETE, format!("/api/v1/networks/{id}"), None),
        (
            Method::POST,
            format!("/api/v1/networks/{id}/keys"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/api/v1/networks/{id}/members/0123456789/revoke"),
            None,
        ),
    ];
    for (method, path, body) in writes {
        let (status, answer) = h.call(method, &path, Some(&auditor), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(error_code(&answer), "forbidden");
    }
    let (_, shown) = h
        .admin(Method::GET, &format!("/api/v1/networks/{id}"), None)
        .await;
    assert_eq!(shown["name"], "prod");
}

#[tokio::test]
async fn browser_requests_and_foreign_hosts_are_refused() {
    let h = Harness::new().await;
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("referer", "https://evil.example/page"),
        ("host", "evil.example:7480"),
    ] {
        let request = Request::builder()
            .uri("/api/v1/networks")
            .header("authorization", format!("Bearer {}", h.admin))
            .header(name, value)
            .body(Body::empty())
            .unwrap();
        let (status, body) = h.send(request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}");
        error_code(&body);
    }
    let request = Request::builder()
        .uri("/api/v1/networks")
        .header("authorization", format!("Bearer {}", h.admin))
        .header("host", "127.0.0.1:7480")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(request).await.0, StatusCode::OK);
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let h = Harness::new().await;
    let (status, body) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "status": "ok" })));
    h.call(Method::GET, "/api/v1/networks", None, None).await;
    let (status, text) = h.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap().to_string();
    assert!(
        text.contains("warren_api_requests_total{class=\"4xx\"} 1"),
        "{text}"
    );
    assert!(text.contains("warren_connected_nodes 0"));
    assert!(text.contains("warren_netmap_pushes_total 0"));

    let (status, doc) = h
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let routes: [(&str, &[&str]); 16] = [
        ("/api/v1/networks", &["get", "post"]),
        ("/api/v1/networks/{id}", &["get", "patch", "delete"]),
        ("/api/v1/networks/{id}/members", &["get"]),
        (
            "/api/v1/networks/{id}/members/{node}",
            &["get", "patch", "delete"],
        ),
        ("/api/v1/networks/{id}/members/{node}/authorize", &["post"]),
        ("/api/v1/networks/{id}/members/{node}/revoke", &["post"]),
        ("/api/v1/networks/{id}/keys", &["get", "post"]),
        ("/api/v1/networks/{id}/keys/{key}", &["delete"]),
        ("/api/v1/info", &["get"]),
        ("/api/v1/audit", &["get"]),
        ("/api/v1/audit/verify", &["get"]),
        ("/api/v1/audit/head", &["get"]),
        ("/api/v1/tokens", &["get", "post"]),
        ("/api/v1/tokens/{id}", &["delete"]),
        ("/healthz", &["get"]),
        ("/metrics", &["get"]),
    ];
    for (path, methods) in routes {
        let item: &Value = paths.get(path).unwrap_or_else(|| panic!("{path} missing"));
        for m in methods {
            assert!(item.get(*m).is_some(), "{m} {path} missing");
        }
    }
    assert!(paths.contains_key("/api/v1/openapi.json"));
}
