//! The API over TLS on the HTTPS listener, as the admin CLI reaches it:
//! the controller's own certificate pinned by fingerprint (a wrong one is
//! refused), an operator's CA-signed certificate verified against its CA,
//! clear errors for http:// to the HTTPS port and https:// to the plain
//! one, `GET /api/v1/info`, and the Origin guard over TLS. The real
//! binary serves, and the real binary is the client.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_warren-controller");

/// `serve` on loopback with the HTTPS listener, and an admin token.
struct Served {
    child: Child,
    /// What `serve` printed: `api`, `https`, `fingerprint`, ... (last value).
    lines: BTreeMap<String, String>,
    token: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn start(dir: &Path, config: Option<&Path>) -> Served {
        let out = Command::new(BIN)
            .args(["token", "create", "--scope", "admin", "--name", "ops"])
            .arg("--data-dir")
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let mut serve = Command::new(BIN);
        serve
            .args(["serve", "--listen-quic", "127.0.0.1:0"])
            .args(["--listen-api", "127.0.0.1:0"])
            .args(["--listen-stun", "127.0.0.1:0"])
            .args(["--listen-https", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir);
        if let Some(config) = config {
            serve.arg("--config").arg(config);
        }
        let mut child = serve
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some((key, value)) = line.split_once(": ") {
                    let _ = tx.send((key.to_string(), value.to_string()));
                }
            }
        });
        let mut lines = BTreeMap::new();
        while !lines.contains_key("stun") {
            let (key, value) = rx
                .recv_timeout(Duration::from_secs(15))
                .expect("serve printed its addresses");
            lines.insert(key, value);
        }
        Served {
            child,
            lines,
            token,
        }
    }

    fn line(&self, key: &str) -> &str {
        self.lines
            .get(key)
            .unwrap_or_else(|| panic!("serve printed no {key}: line: {:?}", self.lines))
    }

    /// The admin CLI with `--api API`, the token, and `args`.
    fn cli(&self, api: &str, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .args(["--api", api])
            .env("WARREN_TOKEN", &self.token)
            .env_remove("WARREN_API_FINGERPRINT")
            .env_remove("WARREN_API_CA")
            .output()
            .unwrap()
    }

    fn json(&self, api: &str, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.cli(api, &args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A command that must fail (exit 1) saying `why`.
    fn refused(&self, api: &str, args: &[&str], why: &str) {
        let out = self.cli(api, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(1) && stderr.contains(why),
            "{api} {args:?} should fail saying {why:?}: {}",
            text(&out)
        );
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_cli_pins_the_controllers_own_certificate_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), None);
    let fingerprint = s.line("fingerprint").to_string();
    let https = s.line("https").to_string();
    let plain = s.line("api").to_string();
    // Without https-cert the HTTPS listener serves the certificate nodes pin.
    assert_eq!(s.line("https-fingerprint"), fingerprint);

    let info = s.json(&https, &["info", "--api-fingerprint", &fingerprint]);
    assert_eq!(info["fingerprints"]["controller"], fingerprint.as_str());
    assert_eq!(info["fingerprints"]["https"], fingerprint.as_str());
    assert_eq!(info["listen"]["https"], https.as_str());
    assert_eq!(info["listen"]["api"], plain.as_str());
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    let features: Vec<&str> = info["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(features, ["api-https", "audit-filters", "relay", "stun"]);
    // Written as people paste it: colons, capitals.
    let pasted = fingerprint
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let out = s.cli(&https, &["info", "--api-fingerprint", &pasted]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&fingerprint));

    // The audit log over TLS, filtered as a person types it: a timeline.
    let out = s.cli(
        &https,
        &[
            "audit",
            "--since",
            "1h",
            "--action",
            "token.",
            "--api-fingerprint",
            &fingerprint,
        ],
    );
    let timeline = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<&str> = timeline.lines().collect();
    assert_eq!(lines.len(), 1, "one token was made: {timeline}");
    // Time (date and clock), actor, action, subject (name and ID), summary.
    let words: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(words[2..5], ["system", "token.create", "ops"], "{timeline}");
    assert!(lines[0].ends_with("scope=admin"), "{timeline}");

    // A certificate other than the pinned one is refused, saying which.
    let wrong = "ab".repeat(32);
    s.refused(
        &https,
        &["info", "--api-fingerprint", &wrong],
        &format!("fingerprint {fingerprint}, not the pinned {wrong}"),
    );
    s.refused(
        &https,
        &["info", "--api-fingerprint", "abc"],
        "must be 64 hex digits",
    );
    // Without a pin the self-signed certificate is not trusted.
    s.refused(&https, &["info"], "--api-fingerprint");
    // http:// to the HTTPS port, https:// to the plain one.
    let wrong_scheme = https.replace("https://", "http://");
    s.refused(&wrong_scheme, &["info"], "this port speaks HTTPS");
    let tls_to_plain = plain.replace("http://", "https://");
    s.refused(
        &tls_to_plain,
        &["info", "--api-fingerprint", &fingerprint],
        "TLS handshake with the API",
    );
    s.refused(
        &plain,
        &["info", "--api-fingerprint", &fingerprint],
        "are for an https:// API",
    );
    // Plain HTTP on loopback works as before.
    assert_eq!(
        s.json(&plain, &["info"])["fingerprints"]["controller"],
        fingerprint.as_str()
    );
}

#[tokio::test]
async fn the_token_api_over_tls_refuses_requests_from_web_pages() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), None);
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let url = format!("{}/api/v1/info", s.line("https"));
    let get = |origin: Option<&str>| {
        let mut request = client.get(&url).bearer_auth(&s.token);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    assert_eq!(get(None).await.unwrap().status(), 200);
    for origin in ["https://evil.example", "null", s.line("https")] {
        let answer = get(Some(origin)).await.unwrap();
        assert_eq!(answer.status(), 403, "Origin {origin}");
        let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "forbidden");
    }
    let answer = client.get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 401, "no token, no info");
}

/// A CA and a certificate it signed for 127.0.0.1, as PEM files in `dir`:
/// (CA file, certificate file, key file, the certificate's fingerprint).
fn operator_certificate(dir: &Path, name: &str) -> (String, String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let path = |file: &str| dir.join(format!("{name}-{file}")).display().to_string();
    std::fs::write(path("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(path("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(path("key.pem"), key.serialize_pem()).unwrap();
    let fingerprint = warren_controller::data_dir::fingerprint(leaf.der());
    (
        path("ca.pem"),
        path("cert.pem"),
        path("key.pem"),
        fingerprint,
    )
}

#[test]
fn an_operators_certificate_is_verified_against_its_ca_or_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key, leaf) = operator_certificate(dir.path(), "operator");
    let (other_ca, ..) = operator_certificate(dir.path(), "other");
    let config = dir.path().join("controller.toml");
    std::fs::write(
        &config,
        format!("https-cert = {cert:?}\nhttps-key = {key:?}\n"),
    )
    .unwrap();
    let data = dir.path().join("data");
    let s = Served::start(&data, Some(&config));
    let https = s.line("https").to_string();
    let own = s.line("fingerprint").to_string();
    assert_eq!(s.line("https-fingerprint"), leaf);
    assert_ne!(leaf, own);

    let info = s.json(&https, &["info", "--api-ca", &ca]);
    assert_eq!(info["fingerprints"]["https"], leaf.as_str());
    assert_eq!(info["fingerprints"]["controller"], own.as_str());
    s.json(&https, &["info", "--api-fingerprint", &leaf]);
    // The fingerprint nodes pin is not the HTTPS listener's here.
    s.refused(
        &https,
        &["info", "--api-fingerprint", &own],
        &format!("not the pinned {own}"),
    );
    s.refused(
        &https,
        &["info", "--api-ca", &other_ca],
        "not trusted by the CA in",
    );
    s.refused(
        &https,
        &["info", "--api-ca", &ca, "--api-fingerprint", &leaf],
        "not both",
    );
}
