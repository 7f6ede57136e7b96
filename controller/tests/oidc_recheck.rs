//! Re-checking a person at an OpenID provider, against a stand-in for its
//! discovery document and token endpoint on 127.0.0.1: the refresh grant's
//! answers map to still there, gone, or could not tell. A refreshed ID
//! token (signed, so beyond a stand-in without keys) is covered by the
//! end-to-end suite against a real provider.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::json;
use warren_controller::identity::{OidcSettings, Provider, ProviderSettings, Recheck};

/// What the token endpoint answers a refresh grant with.
#[derive(Clone, Copy)]
enum Answer {
    /// A new access token and this refresh token.
    Refreshed(&'static str),
    InvalidGrant,
    InvalidClient,
    Unavailable,
}

#[derive(Clone)]
struct Idp {
    issuer: String,
    offers_offline_access: bool,
    answer: Arc<Mutex<Answer>>,
    asked: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

async fn discovery(State(idp): State<Idp>) -> Response {
    let mut doc = json!({
        "issuer": idp.issuer,
        "authorization_endpoint": format!("{}/auth", idp.issuer),
        "token_endpoint": format!("{}/token", idp.issuer),
        "jwks_uri": format!("{}/jwks", idp.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    if idp.offers_offline_access {
        doc["scopes_supported"] = json!(["openid", "email", "profile", "offline_access"]);
    }
    Json(doc).into_response()
}

async fn token(State(idp): State<Idp>, Form(form): Form<HashMap<String, String>>) -> Response {
    idp.asked.lock().unwrap().push(form);
    let answer = *idp.answer.lock().unwrap();
    match answer {
        Answer::Refreshed(refresh) => Json(json!({
            "access_token": "at-2",
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": refresh,
        }))
        .into_response(),
        Answer::InvalidGrant => (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error": "invalid_grant", "error_description": "grant request is invalid"}),
            ),
        )
            .into_response(),
        Answer::InvalidClient => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response(),
        Answer::Unavailable => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn stand_in(offers_offline_access: bool) -> (Idp, Provider) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let idp = Idp {
        issuer: issuer.clone(),
        offers_offline_access,
        answer: Arc::new(Mutex::new(Answer::InvalidGrant)),
        asked: Arc::default(),
    };
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(|| async { Json(json!({"keys": []})) }))
        .route("/token", post(token))
        .with_state(idp.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (idp, provider(&issuer))
}

fn provider(issuer: &str) -> Provider {
    let settings = OidcSettings {
        issuer: issuer.into(),
        client_id: "warren".into(),
        client_secret: Some("s3cret".into()),
        groups_claim: "groups".into(),
        allowed_domains: Vec::new(),
    };
    Provider::new(
        &ProviderSettings::Oidc(settings),
        "https://warren.test:7482",
    )
    .unwrap()
}

#[tokio::test]
async fn a_refresh_token_is_asked_for_only_where_the_provider_offers_it() {
    for (offered, wanted) in [(true, true), (false, false)] {
        let (_idp, p) = stand_in(offered).await;
        assert_eq!(p.callback_path(), "/oidc/callback");
        let begin = p.begin().await.unwrap();
        let url = reqwest::Url::parse(&begin.url).unwrap();
        let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
        let scopes: Vec<&str> = query["scope"].split(' ').collect();
        assert!(scopes.contains(&"openid"), "{scopes:?}");
        assert_eq!(scopes.contains(&"offline_access"), wanted, "{scopes:?}");
        assert_eq!(
            query.get("prompt").map(String::as_str),
            wanted.then_some("consent"),
            "OpenID Connect wants consent for offline access"
        );
        assert!(!begin.nonce.is_empty());
    }
}

#[tokio::test]
async fn the_refresh_grant_says_still_there_gone_or_could_not_tell() {
    let (idp, p) = stand_in(true).await;
    let set = |answer| *idp.answer.lock().unwrap() = answer;

    set(Answer::Refreshed("rt-2"));
    assert_eq!(
        p.recheck("ana", "rt-1").await,
        Recheck::Still {
            person: None,
            kept: Some("rt-2".into())
        },
        "a rotated refresh token is handed back; no ID token, no claims"
    );
    let asked = idp.asked.lock().unwrap().last().cloned().unwrap();
    assert_eq!(asked["grant_type"], "refresh_token");
    assert_eq!(asked["refresh_token"], "rt-1");

    set(Answer::Refreshed("rt-1"));
    assert_eq!(
        p.recheck("ana", "rt-1").await,
        Recheck::Still {
            person: None,
            kept: None
        },
        "the same refresh token: nothing new to keep"
    );

    set(Answer::InvalidGrant);
    let Recheck::Gone { reason } = p.recheck("ana", "rt-1").await else {
        panic!("invalid_grant: the person is gone");
    };
    assert!(reason.contains("invalid_grant"), "{reason}");
    assert!(!reason.contains("rt-1"), "no token in messages: {reason}");

    for answer in [Answer::Unavailable, Answer::InvalidClient] {
        set(answer);
        let Recheck::Unknown { error } = p.recheck("ana", "rt-1").await else {
            panic!("an outage or our own client's trouble cuts nobody off");
        };
        assert!(!error.contains("rt-1"), "no token in messages: {error}");
    }
}

#[tokio::test]
async fn an_unreachable_provider_is_an_outage() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        addr
    };
    let p = provider(&format!("http://{closed}"));
    let Recheck::Unknown { error } = p.recheck("ana", "rt-1").await else {
        panic!("unknown");
    };
    assert!(error.contains("could not be reached"), "{error}");
}
