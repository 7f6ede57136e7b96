//! Audit queries people can use: a time range (RFC 3339 or `2h`), actor,
//! action, member and free-text filters, paging by `after` within a
//! filter, and clear 400s for hostile input.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use warren_proto::NodeId;

use common::{error_code, Harness};

/// A network "prod" with "laptop" (authorized by the admin) and "phone"
/// (pending), and a network "lab" with a key.
struct World {
    h: Harness,
    prod: String,
    lab: String,
    laptop: NodeId,
    phone: NodeId,
}

/// An admin call that must answer `expected`; its body.
async fn expect(
    h: &Harness,
    method: Method,
    path: &str,
    body: Option<Value>,
    expected: StatusCode,
) -> Value {
    let (status, body) = h.admin(method, path, body).await;
    assert_eq!(status, expected, "{path}: {body}");
    body
}

async fn world() -> World {
    let h = Harness::new().await;
    let prod = h.network("prod").await;
    let lab = h.network("lab").await;
    let laptop = h.join(&prod, "laptop", None).await;
    let phone = h.join(&prod, "phone", None).await;
    let authorize = format!("/api/v1/networks/{prod}/members/{laptop}/authorize");
    expect(&h, Method::POST, &authorize, None, StatusCode::OK).await;
    let keys = format!("/api/v1/networks/{lab}/keys");
    expect(
        &h,
        Method::POST,
        &keys,
        Some(json!({})),
        StatusCode::CREATED,
    )
    .await;
    World {
        h,
        prod,
        lab,
        laptop,
        phone,
    }
}

/// The entries a query finds, as `action target` pairs, oldest first.
async fn found(h: &Harness, query: &str) -> Vec<(String, String)> {
    let (status, body) = h
        .admin(Method::GET, &format!("/api/v1/audit?{query}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

fn actions(found: &[(String, String)]) -> Vec<&str> {
    found.iter().map(|(a, _)| a.as_str()).collect()
}

async fn refused(h: &Harness, query: &str) -> String {
    let (status, body) = h
        .admin(Method::GET, &format!("/api/v1/audit?{query}"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
    assert_eq!(error_code(&body), "bad_request");
    body["error"]["message"].as_str().unwrap().to_string()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap().replace('+', "%2B")
}

#[tokio::test]
async fn actor_action_member_and_text_narrow_the_log() {
    let w = world().await;
    let h = &w.h;
    let (laptop, phone) = (w.laptop.to_string(), w.phone.to_string());

    // The admin's token made both networks, authorized the laptop and
    // made a key; the nodes joined by themselves.
    assert_eq!(
        actions(&found(h, "actor=token:admin").await),
        [
            "network.create",
            "network.create",
            "member.authorize",
            "key.create"
        ]
    );
    assert_eq!(
        actions(&found(h, "actor=node:").await),
        ["member.join", "member.join"]
    );
    assert!(found(h, "actor=token:auditor").await.is_empty());

    // Actions: any part, any case; LIKE's wildcards are plain characters.
    assert_eq!(
        found(h, "action=member.authorize").await,
        [("member.authorize".to_string(), laptop.clone())]
    );
    assert_eq!(found(h, "action=MEMBER.Auth").await.len(), 1);
    assert_eq!(found(h, "action=member.").await.len(), 3);
    for wildcard in ["member_join", "%25", "_"] {
        assert!(
            found(h, &format!("action={wildcard}")).await.is_empty(),
            "{wildcard} is not a wildcard"
        );
    }

    // A member by node ID or by name: the name is in the member's JSON.
    let by_id = found(h, &format!("member={laptop}")).await;
    assert_eq!(actions(&by_id), ["member.join", "member.authorize"]);
    assert_eq!(found(h, "member=laptop").await, by_id);
    assert_eq!(
        found(h, "member=phone").await,
        [("member.join".to_string(), phone.clone())]
    );
    // "lap" is part of a name, not a name.
    assert!(found(h, "member=lap").await.is_empty());
    // A new name finds the member's entries from before the rename too.
    let member = format!("/api/v1/networks/{}/members/{laptop}", w.prod);
    let rename = Some(json!({"name": "notebook"}));
    expect(h, Method::PATCH, &member, rename, StatusCode::OK).await;
    assert_eq!(
        actions(&found(h, "member=Notebook").await),
        ["member.join", "member.authorize", "member.rename"]
    );

    // Free text finds a value anywhere; filters combine.
    assert_eq!(
        actions(&found(h, "text=phone").await),
        ["member.join"],
        "the phone's name is in its join entry only"
    );
    assert_eq!(
        actions(&found(h, &format!("text={}", w.lab)).await),
        ["network.create", "key.create"]
    );
    assert_eq!(
        actions(&found(h, &format!("network={}&action=key", w.lab)).await),
        ["key.create"]
    );
    assert!(found(h, &format!("network={}&action=key", w.prod))
        .await
        .is_empty());
    assert_eq!(
        actions(&found(h, "actor=admin&member=laptop").await),
        ["member.authorize", "member.rename"]
    );
}

#[tokio::test]
async fn times_are_rfc3339_or_durations_before_now() {
    let w = world().await;
    let h = &w.h;
    let all = found(h, "").await;
    assert_eq!(
        all.len(),
        8,
        "two tokens, two networks, two joins, one authorization, one key: {all:?}"
    );
    assert_eq!(found(h, "since=1h").await, all);
    assert_eq!(found(h, "since=2h&until=0s").await, all);
    assert!(found(h, "until=1h").await.is_empty());
    let later = OffsetDateTime::now_utc() + time::Duration::minutes(5);
    assert!(found(h, &format!("since={}", rfc3339(later)))
        .await
        .is_empty());
    assert_eq!(found(h, &format!("until={}", rfc3339(later))).await, all);

    // The answer says which window `2h` meant, for the next pages.
    let (_, page) = h.admin(Method::GET, "/api/v1/audit?since=2h", None).await;
    let since = OffsetDateTime::parse(page["since"].as_str().unwrap(), &Rfc3339).unwrap();
    let ago = OffsetDateTime::now_utc() - since;
    assert!(
        (ago - time::Duration::hours(2)).abs() < time::Duration::seconds(5),
        "since=2h resolved to {since}"
    );
    assert_eq!(page["until"], Value::Null);
}

#[tokio::test]
async fn paging_by_after_keeps_the_filter() {
    let w = world().await;
    let h = &w.h;
    let whole = found(h, "action=member.").await;
    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = h
            .admin(
                Method::GET,
                &format!("/api/v1/audit?action=member.&limit=1{after}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for e in page["entries"].as_array().unwrap() {
            paged.push((
                e["action"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap().to_string(),
            ));
        }
        match page["next_after"].as_i64() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
        assert!(paged.len() <= whole.len(), "paging does not end");
    }
    assert_eq!(paged, whole);
}

#[tokio::test]
async fn hostile_filters_get_clear_400s() {
    let h = Harness::new().await;
    let long = "a".repeat(201);
    for (query, says) in [
        (
            format!("actor={long}"),
            "actor is longer than 200 characters",
        ),
        (
            format!("text={}", "%25".repeat(5000)),
            "text is longer than 200",
        ),
        ("member=a%1B%5B2J".to_string(), "control characters"),
        (
            "since=yesterday".to_string(),
            "since: \"yesterday\" is neither",
        ),
        ("until=2026-02-30T00:00:00Z".to_string(), "until:"),
        ("since=99999999999y".to_string(), "before 1970"),
        ("since=1h&until=2h".to_string(), "is after until"),
        (format!("since={}", "1".repeat(100)), "longer than 64"),
        ("network=prod".to_string(), ""),
        ("limit=0".to_string(), "limit must be between 1 and 1000"),
        ("after=x".to_string(), ""),
        ("color=red".to_string(), "unknown field"),
    ] {
        let message = refused(&h, &query).await;
        assert!(
            message.contains(says),
            "{}: {message}",
            query.chars().take(60).collect::<String>()
        );
    }
}

#[tokio::test]
async fn a_network_scoped_token_filters_only_its_network() {
    let w = world().await;
    let h = &w.h;
    let made = json!({"scope": "auditor", "name": "lab-only", "network_id": w.lab});
    let body = expect(
        h,
        Method::POST,
        "/api/v1/tokens",
        Some(made),
        StatusCode::CREATED,
    )
    .await;
    let token = body["token"].as_str().unwrap().to_string();
    let (status, page) = h
        .call(
            Method::GET,
            "/api/v1/audit?actor=token:admin",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let seen: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    // The admin made the network, its key and this very token.
    assert_eq!(seen, ["network.create", "key.create", "token.create"]);
    let (status, _) = h
        .call(
            Method::GET,
            &format!("/api/v1/audit?member=laptop&network={}", w.prod),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
