//! What every API exchange gets: headers against caching, sniffing and
//! framing; a limit on failed authentications per source; and, over a real
//! socket, a header-read timeout, a request timeout and a cap on requests
//! in flight.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use common::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;
use warren_controller::api::{self, listener, ApiLimits, ApiState};

fn request(path: &str, token: &str, from: &str) -> Request<Body> {
    let peer: SocketAddr = from.parse().unwrap();
    Request::builder()
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .extension(ConnectInfo(peer))
        .body(Body::empty())
        .unwrap()
}

async fn status(router: &Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap) {
    let response = router.clone().oneshot(request).await.unwrap();
    (response.status(), response.headers().clone())
}

#[tokio::test]
async fn every_answer_says_no_store_nosniff_and_no_framing() {
    let h = Harness::new().await;
    let cases = [
        (Method::GET, "/api/v1/networks", Some(h.admin.clone())),
        (
            Method::POST,
            "/api/v1/networks/0123456789abcdef/keys",
            Some(h.admin.clone()),
        ),
        (Method::GET, "/api/v1/networks", None),
        (Method::GET, "/healthz", None),
        (Method::GET, "/api/v1/openapi.json", None),
    ];
    for (method, path, token) in cases {
        let mut builder = Request::builder().method(method.clone()).uri(path);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let (_, headers) = status(&h.router, builder.body(Body::empty()).unwrap()).await;
        for (name, value) in [
            ("cache-control", "no-store"),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
        ] {
            assert_eq!(
                headers.get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{name} on {method} {path}"
            );
        }
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
}

#[tokio::test]
async fn failed_authentications_are_limited_per_source() {
    let h = Harness::new().await;
    let limits = ApiLimits {
        auth_failures: 5,
        ..ApiLimits::default()
    };
    let router = api::router(ApiState::new(h.hub.clone(), vec![]).with_limits(limits));
    let attacker = "192.0.2.7:40000";
    for i in 0..5 {
        let guess = format!("wt_guess{i}");
        let (code, _) = status(&router, request("/api/v1/networks", &guess, attacker)).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "guess {i}");
    }
    // From now on the source is refused, even with a valid token ...
    let (code, headers) = status(&router, request("/api/v1/networks", &h.admin, attacker)).await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "retry-after {wait}");
    // ... while another source is served.
    let (code, _) = status(
        &router,
        request("/api/v1/networks", &h.admin, "198.51.100.1:40000"),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    // The refusal needs no database: with the store closed it still holds
    // (and is no 500).
    h.store.close().await;
    let (code, _) = status(&router, request("/api/v1/networks", "wt_more", attacker)).await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
}

/// Serves the harness's API on loopback with `limits`.
async fn serve(h: &Harness, limits: ApiLimits) -> SocketAddr {
    let router = api::router(ApiState::new(h.hub.clone(), vec![]).with_limits(limits));
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(listener::serve(
        socket,
        router,
        limits,
        std::future::pending(),
    ));
    addr
}

/// Everything the server sends until it closes, or None if it keeps the
/// connection open past `wait`.
async fn read_to_close(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut out = Vec::new();
    match tokio::time::timeout(wait, stream.read_to_end(&mut out)).await {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_client_that_sends_its_headers_slowly_is_cut_off() {
    let h = Harness::new().await;
    let limits = ApiLimits {
        header_read_timeout: Duration::from_millis(400),
        ..ApiLimits::default()
    };
    let addr = serve(&h, limits).await;

    // A prompt client is served.
    let mut prompt = TcpStream::connect(addr).await.unwrap();
    prompt
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut prompt, Duration::from_secs(5)).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
        "{answer:?}"
    );

    // A slow one, one header byte every 100 ms, never finishes its head.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let trickle = async {
        for byte in b"x-slow: ".iter().cycle() {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let cut = tokio::time::timeout(Duration::from_secs(3), trickle).await;
    assert!(cut.is_ok(), "still connected after 3 s of slow headers");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(350),
        "cut after {elapsed:?}"
    );
    let rest = read_to_close(&mut slow, Duration::from_secs(1)).await;
    assert!(
        !rest.as_deref().unwrap_or("").contains("200 OK"),
        "served anyway: {rest:?}"
    );
}

/// One `GET /healthz` on a new connection: the whole answer.
async fn healthz(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    read_to_close(&mut stream, Duration::from_secs(3))
        .await
        .expect("no answer to /healthz")
}

#[tokio::test]
async fn slow_bodies_time_out_and_requests_in_flight_are_capped() {
    let h = Harness::new().await;
    let limits = ApiLimits {
        request_timeout: Duration::from_secs(2),
        max_in_flight: 1,
        ..ApiLimits::default()
    };
    let addr = serve(&h, limits).await;

    // Headers promise a body that never comes; the request holds the one slot.
    let mut stuck = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/networks HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 64\r\nconnection: close\r\n\r\n{{",
        h.admin
    );
    let started = Instant::now();
    stuck.write_all(head.as_bytes()).await.unwrap();

    // Once the stuck request holds the slot, others are refused at once
    // (until then they are served: poll, after giving it a head start so
    // that a probe does not take the slot first).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = loop {
        let answer = healthz(addr).await;
        if !answer.starts_with("HTTP/1.1 200") || started.elapsed() > Duration::from_millis(1500) {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    assert!(
        busy.to_ascii_lowercase().contains("retry-after: 1"),
        "{busy}"
    );

    let timed_out = read_to_close(&mut stuck, Duration::from_secs(5)).await;
    let timed_out = timed_out.expect("the stuck request was never answered");
    assert!(timed_out.starts_with("HTTP/1.1 408"), "{timed_out}");
    assert!(started.elapsed() >= Duration::from_millis(1900));

    // The slot is free again.
    let ok = healthz(addr).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}
