use tokio::net::TcpListener;

use super::*;

fn parsed(url: &str) -> Proxy {
    Proxy::parse(url).unwrap_or_else(|e| panic!("{url}: {e:#}"))
}

#[test]
fn proxy_urls_as_curl_and_go_take_them() {
    assert_eq!(parsed("http://10.0.1.1:8888").address, "10.0.1.1:8888");
    assert_eq!(parsed("http://proxy.corp:3128/").address, "proxy.corp:3128");
    assert_eq!(parsed("proxy.corp:3128").address, "proxy.corp:3128");
    assert_eq!(parsed("HTTP://proxy.corp").address, "proxy.corp:80");
    assert_eq!(parsed("http://[fd00::1]:8080").address, "[fd00::1]:8080");
    assert_eq!(parsed("http://[fd00::1]").address, "[fd00::1]:80");
    let with_user = parsed("http://ann:p%40ss:w@proxy:3128");
    assert_eq!(with_user.credentials.as_deref(), Some("ann:p@ss:w"));
    assert_eq!(
        with_user.shown(),
        "http://ann@proxy:3128",
        "no password shown"
    );
    for bad in [
        "https://proxy:443",
        "socks5://proxy:1080",
        "http://proxy:3128/path",
        "http://proxy:99999",
        "http://fd00::1:8080",
        "http://",
        "http://a b:80",
        "http://ann:%zz@proxy:80",
        "http://ann:%0a@proxy:80",
        "http://[fd00::1",
    ] {
        assert!(Proxy::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(
        shown("http://ann:secret@proxy:3128"),
        "http://ann@proxy:3128"
    );
}

#[test]
fn no_proxy_excepts_addresses_prefixes_and_everything() {
    let ip: IpAddr = "192.0.2.10".parse().unwrap();
    let by_ip = |list: &str| excepted(list, "192.0.2.10", ip);
    assert!(by_ip("*"));
    assert!(by_ip("example.com, 192.0.2.10"));
    assert!(by_ip("10.0.0.0/8,192.0.2.0/24"));
    assert!(!by_ip("example.com,192.0.2.11,198.51.100.0/24"));
    let v6: IpAddr = "fd00::1".parse().unwrap();
    assert!(excepted("[fd00::1]", "fd00::1", v6));
    assert!(excepted("fd00::/64", "fd00::1", v6));
    assert!(!by_ip(""));
}

#[test]
fn no_proxy_excepts_a_name_and_the_names_under_it() {
    let ip: IpAddr = "192.0.2.10".parse().unwrap();
    let host = |host: &str, list: &str| excepted(list, host, ip);
    for list in [
        "ctl.example.com",
        "example.com",
        ".example.com",
        "*.example.com",
        "EXAMPLE.com.",
        "example.com:7443",
        "other.net, example.com",
    ] {
        assert!(host("ctl.example.com", list), "{list}");
        assert!(host("CTL.Example.Com.", list), "{list}");
    }
    // Only on a label boundary, and never upwards.
    assert!(!host("ctl.badexample.com", "example.com"));
    assert!(!host("example.com", "ctl.example.com"));
    assert!(!host("ctl.example.com", "."));
    assert!(!host("ctl.example.com", "com.example"));
    // The address a name resolved to counts too.
    assert!(host("ctl.example.com", "192.0.2.0/24"));
}

#[test]
fn the_host_of_a_target_is_what_was_given() {
    assert_eq!(host_of("ctl.example.com:7443"), "ctl.example.com");
    assert_eq!(host_of("192.0.2.1:7443"), "192.0.2.1");
    assert_eq!(host_of("[fd00::1]:7443"), "fd00::1");
    assert_eq!(host_of("ctl"), "ctl");
}

#[test]
fn only_a_2xx_answer_grants_the_tunnel() {
    assert!(granted(b"HTTP/1.1 200 Connection established\r\n\r\n").is_ok());
    assert!(granted(b"HTTP/1.0 200 OK\r\nVia: x\r\n\r\n").is_ok());
    let refused = granted(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").unwrap_err();
    assert_eq!(
        refused.to_string(),
        "refused: HTTP/1.1 407 Proxy Authentication Required"
    );
    for junk in [
        &b"SSH-2.0-x\r\n\r\n"[..],
        b"HTTP/1.1 2000 x\r\n\r\n",
        b"\r\n\r\n",
        b"",
    ] {
        assert!(granted(junk).is_err(), "{junk:?}");
    }
}

/// A proxy on loopback that reads one request and answers `answer`; the
/// request it read comes back through the handle.
async fn proxy_answering(answer: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let request = read_answer(&mut stream).await.unwrap_or_default();
        stream.write_all(answer).await.unwrap();
        // The tunnel: whatever comes next is echoed.
        let mut buf = [0u8; 5];
        if stream.read_exact(&mut buf).await.is_ok() {
            stream.write_all(&buf).await.unwrap();
        }
        request
    });
    (addr, task)
}

#[tokio::test]
async fn connect_asks_for_the_address_with_credentials_and_leaves_the_tunnel_untouched() {
    let (addr, proxy) = proxy_answering(b"HTTP/1.1 200 Connection established\r\n\r\nhello").await;
    let target: SocketAddr = "192.0.2.10:7443".parse().unwrap();
    let p = parsed(&format!("http://ann:pw@{addr}"));
    let (mut stream, via) = p.connect(target, Duration::from_secs(5)).await.unwrap();
    assert_eq!(via, addr);
    // What the proxy sent after its headers is the tunnel's, unread.
    let mut first = [0u8; 5];
    stream.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"hello");
    stream.write_all(b"again").await.unwrap();
    stream.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"again");
    let request = String::from_utf8(proxy.await.unwrap()).unwrap();
    assert!(request.starts_with("CONNECT 192.0.2.10:7443 HTTP/1.1\r\nHost: 192.0.2.10:7443\r\n"));
    // base64("ann:pw")
    assert!(
        request.contains("Proxy-Authorization: Basic YW5uOnB3\r\n"),
        "{request}"
    );
}

/// The error `connect` ends with through the proxy at `addr`, as shown.
async fn connect_error(addr: SocketAddr, within: Duration) -> String {
    let target: SocketAddr = "192.0.2.10:7443".parse().unwrap();
    let e = parsed(&format!("http://{addr}"))
        .connect(target, within)
        .await
        .unwrap_err();
    format!("{e:#}")
}

#[tokio::test]
async fn a_refusing_or_hostile_proxy_is_a_clear_error() {
    let (addr, _proxy) = proxy_answering(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
    let e = connect_error(addr, Duration::from_secs(5)).await;
    assert!(e.contains("refused: HTTP/1.1 403 Forbidden"), "{e}");

    // Headers that never end.
    static ENDLESS: [u8; MAX_ANSWER + 10] = [b'a'; MAX_ANSWER + 10];
    let (addr, _proxy) = proxy_answering(&ENDLESS).await;
    let e = connect_error(addr, Duration::from_secs(5)).await;
    assert!(e.contains("longer than"), "{e}");

    // A proxy that accepts and says nothing.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let e = connect_error(addr, Duration::from_millis(200)).await;
    assert!(e.contains("did not answer CONNECT in time"), "{e}");
}
