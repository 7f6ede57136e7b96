//! The audit chain's signed head and verification against an anchor: a cut
//! tail or a rewritten history shows, even one whose hashes were recomputed.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Row;
use warren_controller::audit_anchor::{self, SignedHead};
use warren_controller::audit_chain::{entry_hash, EntryFields, GENESIS};

use common::Harness;

async fn head(h: &Harness) -> SignedHead {
    let (status, body) = h.admin(Method::GET, "/api/v1/audit/head", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_value(body).unwrap()
}

async fn verify_against(h: &Harness, anchor: &SignedHead) -> Value {
    let (status, report) = h
        .admin(
            Method::GET,
            &format!(
                "/api/v1/audit/verify?anchor_id={}&anchor_hash={}",
                anchor.id, anchor.hash
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    report
}

async fn raw_pool(h: &Harness) -> sqlx::AnyPool {
    let pool = h.raw_pool().await;
    for name in ["audit_log_no_update", "audit_log_no_delete"] {
        sqlx::query(sqlx::AssertSqlSafe(h.drop_audit_trigger(name)))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool
}

#[tokio::test]
async fn every_answer_carries_a_head_signed_by_the_pinned_certificate() {
    let h = Harness::new().await;
    h.network("prod").await;
    let signed = head(&h).await;
    // Two tokens and a network.
    assert_eq!(signed.id, 3);
    assert_eq!(audit_anchor::verify(&signed, &h.fingerprint).unwrap().id, 3);
    let (_, page) = h.admin(Method::GET, "/api/v1/audit?limit=1", None).await;
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    // The head is the chain's, not the page's last entry.
    let page_head: SignedHead = serde_json::from_value(page["head"].clone()).unwrap();
    assert_eq!((page_head.id, &page_head.hash), (3, &signed.hash));
    assert!(audit_anchor::verify(&page_head, &h.fingerprint).is_ok());
    let (_, report) = h.admin(Method::GET, "/api/v1/audit/verify", None).await;
    let verify_head: SignedHead = serde_json::from_value(report["head"].clone()).unwrap();
    assert_eq!(verify_head.hash, signed.hash);
    assert!(audit_anchor::verify(&verify_head, &h.fingerprint).is_ok());

    // An auditor reads the head too.
    let auditor = h.auditor.clone();
    let (status, _) = h
        .call(Method::GET, "/api/v1/audit/head", Some(&auditor), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for bad in [
        "anchor_id=3",
        "anchor_hash=ab",
        "anchor_id=-1&anchor_hash=ab",
    ] {
        let (status, body) = h
            .admin(Method::GET, &format!("/api/v1/audit/verify?{bad}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

#[tokio::test]
async fn an_anchor_matches_while_the_log_only_grows() {
    let h = Harness::new().await;
    let first = head(&h).await;
    h.network("prod").await;
    let anchor = head(&h).await;
    h.network("other").await;
    let report = verify_against(&h, &anchor).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["anchor"]["status"], "matches");
    assert_eq!(report["head"]["id"], anchor.id + 1);
    // The empty log's head (id 0, genesis) anchors any chain.
    assert_eq!(first.id, 2);
    let genesis = SignedHead {
        id: 0,
        hash: GENESIS.to_string(),
        ..first
    };
    assert_eq!(verify_against(&h, &genesis).await["ok"], true);
}

#[tokio::test]
async fn a_cut_tail_shows_against_an_anchor() {
    let h = Harness::new().await;
    h.network("prod").await;
    h.network("other").await;
    let anchor = head(&h).await;
    // Someone with the database removes the last entry: what is left still
    // chains, so plain verification cannot tell.
    let pool = raw_pool(&h).await;
    sqlx::query("DELETE FROM audit_log WHERE id = $1")
        .bind(anchor.id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (_, plain) = h.admin(Method::GET, "/api/v1/audit/verify", None).await;
    assert_eq!(plain["ok"], true);
    let report = verify_against(&h, &anchor).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["anchor"]["status"], "missing");
    assert_eq!(report["head"]["id"], anchor.id - 1);
}

#[tokio::test]
async fn a_rewritten_history_shows_against_an_anchor_even_with_fresh_hashes() {
    let h = Harness::new().await;
    h.network("prod").await;
    h.network("other").await;
    let anchor = head(&h).await;
    // Rewrite entry 3 and recompute every hash from there: the chain is
    // whole again, and only the anchor knows.
    let pool = raw_pool(&h).await;
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE id = 3")
        .execute(&pool)
        .await
        .unwrap();
    let rows = sqlx::query("SELECT * FROM audit_log ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut prev = GENESIS.to_string();
    for row in rows {
        let get = |c: &str| row.get::<Option<String>, _>(c);
        let (at, actor, action) = (
            get("at").unwrap(),
            get("actor").unwrap(),
            get("action").unwrap(),
        );
        let (network_id, target, before, after) = (
            get("network_id"),
            get("target"),
            get("before"),
            get("after"),
        );
        let id: i64 = row.get("id");
        let hash = entry_hash(
            &prev,
            &EntryFields {
                id,
                at: &at,
                actor: &actor,
                action: &action,
                network_id: network_id.as_deref(),
                target: target.as_deref(),
                before: before.as_deref(),
                after: after.as_deref(),
            },
        );
        sqlx::query("UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE id = $3")
            .bind(&prev)
            .bind(&hash)
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        prev = hash;
    }
    pool.close().await;
    let (_, plain) = h.admin(Method::GET, "/api/v1/audit/verify", None).await;
    assert_eq!(plain["ok"], true, "{plain}");
    let report = verify_against(&h, &anchor).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["anchor"]["status"], "differs");
    assert_eq!(report["anchor"]["hash"], json!(anchor.hash));
    assert_ne!(report["head"]["hash"], json!(anchor.hash));
}
