//! The admin socket: the API on a Unix socket that needs no token. Root
//! (and the controller's own user) get in, and the audit log names them
//! `local:root` / `local:uid:N`; another user is refused with 403 (and,
//! at the socket's own mode, by the kernel); hostile requests get the
//! same answers as on the TCP listener, since it is the same router; the
//! file is 0600, a stale one is replaced, a live one or a plain file is
//! not (where the socket was asked for, the start fails; at its default
//! place, the controller starts without one), and a clean stop removes it. The real CLI is the client where a
//! user would use it.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use warren_controller::api::local_socket::AdminSocketPlace;
use warren_controller::server::{self, Running, ServerOptions};
use warren_controller::store::{Actor, Scope, TokenSpec};

const BIN: &str = env!("CARGO_BIN_EXE_warren-controller");
/// The user `nobody`, which no test process runs as.
const NOBODY: u32 = 65534;

struct Lab {
    dir: tempfile::TempDir,
    socket: PathBuf,
    running: Running,
}

async fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let running = server::start(with_socket(dir.path().join("data"), &socket, true))
        .await
        .unwrap();
    Lab {
        dir,
        socket,
        running,
    }
}

/// A controller on loopback with its data in `data` and the admin socket at `socket`.
fn with_socket(data: PathBuf, socket: &Path, required: bool) -> ServerOptions {
    ServerOptions {
        admin_socket: Some(AdminSocketPlace {
            path: socket.to_path_buf(),
            required,
        }),
        ..ServerOptions::loopback(data)
    }
}

fn own_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// One request over `stream`: status and JSON body (`Null` if empty).
async fn exchange(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    request: Request<Full<Bytes>>,
) -> (StatusCode, Value) {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body)
}

/// Sends `bytes` (ignoring a write the server cut short) and returns the
/// status code of the answer.
async fn status_of_raw(stream: tokio::net::UnixStream, bytes: Vec<u8>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut reader, mut writer) = stream.into_split();
    tokio::spawn(async move {
        let _ = writer.write_all(&bytes).await;
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), reader.read(&mut buf));
        match read.await.unwrap().unwrap() {
            0 => break,
            n => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(name, _)| *name == "host") {
        builder = builder.header("host", "localhost");
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    if !body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    builder.body(Full::new(Bytes::from(body.to_vec()))).unwrap()
}

async fn on_socket(path: &Path, request: Request<Full<Bytes>>) -> (StatusCode, Value) {
    exchange(
        tokio::net::UnixStream::connect(path).await.unwrap(),
        request,
    )
    .await
}

async fn on_tcp(addr: SocketAddr, request: Request<Full<Bytes>>) -> (StatusCode, Value) {
    exchange(tokio::net::TcpStream::connect(addr).await.unwrap(), request).await
}

/// The CLI with nothing in its environment that would pick the API for it.
fn cli(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("WARREN_TOKEN")
        .env_remove("WARREN_API")
        .env_remove("WARREN_ADMIN_SOCKET")
        .env("RUST_LOG", "error");
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_own_user_gets_in_without_a_token_and_the_audit_log_names_it() {
    let lab = lab().await;
    let meta = std::fs::symlink_metadata(&lab.socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "the socket's mode");
    assert_eq!(meta.uid(), own_uid(), "the socket's owner");
    assert_eq!(
        lab.running.admin_socket.as_deref(),
        Some(lab.socket.as_path())
    );

    // The CLI, given the socket and no token, creates a network.
    let socket = lab.socket.to_str().unwrap();
    let out = cli(&["network", "create", "office", "--admin-socket", socket])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let net = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(net.len(), 16, "{}", text(&out));
    let out = cli(&["network", "list", "--json"])
        .env("WARREN_ADMIN_SOCKET", socket)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("office"),
        "{}",
        text(&out)
    );

    let expected = match own_uid() {
        0 => "local:root".to_string(),
        uid => format!("local:uid:{uid}"),
    };
    let (status, page) = on_socket(&lab.socket, request("GET", "/api/v1/audit", &[], b"")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let created = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "network.create")
        .unwrap_or_else(|| panic!("no network.create in {page}"));
    assert_eq!(created["actor"], expected.as_str(), "{created}");
    assert_eq!(created["network_id"], net.as_str(), "{created}");

    // Peer credentials decide: a bearer header is not looked at.
    let bogus = [("authorization", "Bearer wt_not_a_token")];
    let (status, _) = on_socket(&lab.socket, request("GET", "/api/v1/networks", &bogus, b"")).await;
    assert_eq!(status, StatusCode::OK);
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_is_refused_by_the_socket_s_mode_and_by_the_controller() {
    if own_uid() != 0 {
        println!("skipped: switching to another user needs root");
        return;
    }
    let lab = lab().await;
    let socket = lab.socket.to_str().unwrap().to_string();
    let as_nobody = |args: &[&str]| {
        let mut cmd = cli(args);
        // As root, std also drops the supplementary groups.
        cmd.uid(NOBODY).gid(NOBODY);
        cmd.output().unwrap()
    };
    // The temporary directory is 0700: open it, so only the socket's own
    // mode (0600) stands in the way.
    std::fs::set_permissions(lab.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = as_nobody(&["network", "create", "evil", "--admin-socket", &socket]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("permission denied") && stderr.contains("root"),
        "{}",
        text(&out)
    );

    // With the socket opened to everyone, the controller itself refuses.
    std::fs::set_permissions(&lab.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(&["network", "create", "evil", "--admin-socket", &socket]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("uid {NOBODY} is neither")) && stderr.contains("403 forbidden"),
        "{}",
        text(&out)
    );
    let out = as_nobody(&["network", "list", "--admin-socket", &socket]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403 forbidden"),
        "reads are refused too: {}",
        text(&out)
    );
    let (_, networks) = on_socket(&lab.socket, request("GET", "/api/v1/networks", &[], b"")).await;
    assert!(!networks.to_string().contains("evil"), "{networks}");
    lab.running.shutdown().await;
}

/// Method, path, headers, body.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_the_same_answers_on_the_socket_as_on_tcp() {
    let lab = lab().await;
    let token = lab
        .running
        .hub
        .store()
        .create_token(&Actor::system(), TokenSpec::new(Scope::Admin, Some("tcp")))
        .await
        .unwrap()
        .secret;
    let bearer = format!("Bearer {token}");
    let api = lab.running.api_addr.unwrap();
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<Case> = vec![
        ("POST", "/api/v1/networks", vec![], b"{".to_vec()),
        (
            "POST",
            "/api/v1/networks",
            vec![],
            br#"{"name": 7}"#.to_vec(),
        ),
        (
            "POST",
            "/api/v1/networks",
            vec![],
            br#"{"name": "x", "admin": true}"#.to_vec(),
        ),
        (
            "POST",
            "/api/v1/networks",
            vec![],
            br#"{"name": "a b/../c"}"#.to_vec(),
        ),
        (
            "POST",
            "/api/v1/networks",
            vec![],
            br#"{"name": "x", "pool": "10.0.0.0/33"}"#.to_vec(),
        ),
        ("POST", "/api/v1/networks", vec![], nested.into_bytes()),
        (
            "GET",
            "/api/v1/networks/..%2Ftokens/members",
            vec![],
            vec![],
        ),
        ("GET", "/api/v1/networks/zzzz/members", vec![], vec![]),
        ("DELETE", "/api/v1/info", vec![], vec![]),
        ("GET", "/api/v1/nothing", vec![], vec![]),
        (
            "GET",
            "/api/v1/networks",
            vec![("origin", "https://evil.example")],
            vec![],
        ),
        (
            "GET",
            "/api/v1/networks",
            vec![("referer", "https://evil.example/x")],
            vec![],
        ),
        (
            "GET",
            "/api/v1/networks",
            vec![("host", "evil.example")],
            vec![],
        ),
    ];
    for (method, path, headers, body) in cases {
        let (local_status, local) =
            on_socket(&lab.socket, request(method, path, &headers, &body)).await;
        let mut with_token = headers.clone();
        with_token.push(("authorization", bearer.as_str()));
        let (tcp_status, tcp) = on_tcp(api, request(method, path, &with_token, &body)).await;
        assert!(
            local_status.is_client_error(),
            "{method} {path}: {local_status} {local}"
        );
        assert_eq!(
            (local_status, &local["error"]["code"]),
            (tcp_status, &tcp["error"]["code"]),
            "{method} {path}: socket {local}, TCP {tcp}"
        );
    }
    // A body over the limit (1 MiB) is refused with 413, as the router
    // does wherever it is served (the API suite checks it). Sent raw: a
    // client still writing the body may see the close before the answer.
    let mut huge = b"POST /api/v1/networks HTTP/1.1\r\nhost: localhost\r\n\
                     content-type: application/json\r\ncontent-length: 2097152\r\n\r\n"
        .to_vec();
    huge.resize(huge.len() + (2 << 20), b' ');
    let stream = tokio::net::UnixStream::connect(&lab.socket).await.unwrap();
    assert_eq!(status_of_raw(stream, huge).await, 413, "an oversized body");
    // Nothing was made by any of them.
    let (_, networks) = on_socket(&lab.socket, request("GET", "/api/v1/networks", &[], b"")).await;
    assert_eq!(networks["networks"], json!([]), "{networks}");
    lab.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_is_replaced_a_live_one_or_a_file_is_not_and_a_stop_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let options = |data: &str| with_socket(dir.path().join(data), &socket, true);

    // What a crashed controller leaves: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let running = server::start(options("one")).await.unwrap();
    let (status, _) = on_socket(&socket, request("GET", "/api/v1/info", &[], b"")).await;
    assert_eq!(status, StatusCode::OK);

    // A second controller on the same socket is refused, and the first
    // keeps its socket.
    let refused = server::start(options("two"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        refused.contains("another process answers on it"),
        "{refused}"
    );
    let (status, _) = on_socket(&socket, request("GET", "/api/v1/info", &[], b"")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the first controller's socket survives"
    );

    running.shutdown().await;
    assert!(!socket.exists(), "a clean stop removes the socket");

    // A file that is not a socket is left alone.
    std::fs::write(&socket, b"not a socket").unwrap();
    let refused = server::start(options("three"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(refused.contains("is not a socket"), "{refused}");
    assert_eq!(std::fs::read(&socket).unwrap(), b"not a socket");

    // The default place (admin-socket not set) is not worth failing for:
    // the controller starts without a socket, as before there was one.
    let running = server::start(with_socket(dir.path().join("four"), &socket, false))
        .await
        .unwrap();
    assert_eq!(running.admin_socket, None);
    running.shutdown().await;
    assert_eq!(std::fs::read(&socket).unwrap(), b"not a socket");
}
