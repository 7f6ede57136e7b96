//! The policy, tag and grant commands of the real binary: `serve` on
//! loopback ports, and the admin CLI against it (this also puts them in the
//! command trace that packaging/ci-check.sh reads).
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use warren_controller::store::{JoinRequest, SqlStore, Store};
use warren_proto::{NodeId, NodePrivateKey};

const BIN: &str = env!("CARGO_BIN_EXE_warren-controller");

struct Served {
    child: Child,
    api: String,
    token: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn start(dir: &Path) -> Served {
        let out = Command::new(BIN)
            .args([
                "token",
                "create",
                "--scope",
                "admin",
                "--name",
                "cli",
                "--data-dir",
            ])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--listen-quic",
                "127.0.0.1:0",
                "--listen-api",
                "127.0.0.1:0",
                "--listen-stun",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir)
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
                if let Some(addr) = line.strip_prefix("api: ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let api = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("controller started");
        Served { child, api, token }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("WARREN_API", &self.api)
            .env("WARREN_TOKEN", &self.token);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).unwrap()
    }
}

async fn join(dir: &Path, net: &str, key: &str, name: &str) -> NodeId {
    let store = SqlStore::open(&dir.join("controller.db")).await.unwrap();
    let node_key = NodePrivateKey::generate().public_key();
    store
        .join(JoinRequest {
            network_id: net.parse().unwrap(),
            node_key,
            name: name.into(),
            preauth_key: Some(key.into()),
            agent_version: "0.1.0".into(),
            endpoints: vec![],
        })
        .await
        .unwrap();
    store.close().await;
    NodeId::from_key(&node_key)
}

#[tokio::test]
async fn the_policy_tag_and_grant_commands_work_against_a_real_controller() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Served::start(dir.path());
    let first = dir.path().join("first.toml");
    std::fs::write(
        &first,
        "tags = [\"tag:db\"]\n[[allow]]\nfrom = [\"*\"]\nto = [\"tag:db\"]\nports = [\"tcp:5432\"]\n",
    )
    .unwrap();
    let first_arg = first.to_str().unwrap();
    let net = ctl
        .ok(&["network", "create", "lab", "--policy", first_arg])
        .trim()
        .to_string();
    let got = ctl.ok(&["policy", "get", &net]);
    assert_eq!(got, std::fs::read_to_string(&first).unwrap());
    assert_eq!(ctl.json(&["policy", "get", &net])["version"], 1);

    let key = ctl.json(&["key", "create", &net, "--reusable"])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let db = join(dir.path(), &net, &key, "db-1").await;
    join(dir.path(), &net, &key, "laptop-ana").await;
    let db = db.to_string();
    assert_eq!(
        ctl.ok(&["member", "tag", &net, &db, "tag:db"]).trim(),
        "tag:db"
    );
    ctl.ok(&["member", "tag", &net, &db, "tag:backup"]);
    let tags = ctl.json(&["member", "tags", &net, &db]);
    assert_eq!(tags["tags"], serde_json::json!(["tag:backup", "tag:db"]));
    assert_eq!(
        ctl.ok(&["member", "untag", &net, &db, "tag:backup"]).trim(),
        "tag:db"
    );
    assert_eq!(ctl.ok(&["member", "tags", &net, &db]).trim(), "tag:db");

    let allow = ctl.ok(&[
        "policy",
        "explain",
        &net,
        "--from",
        "laptop-ana",
        "--to",
        "db-1",
        "--port",
        "tcp:5432",
    ]);
    assert!(allow.starts_with("allow (allow[0])"), "{allow}");
    let deny = ctl.json(&[
        "policy",
        "explain",
        &net,
        "--from",
        "laptop-ana",
        "--to",
        "db-1",
        "--port",
        "tcp:22",
    ]);
    assert_eq!(deny["allowed"], false);

    let second = dir.path().join("second.toml");
    std::fs::write(
        &second,
        "[[allow]]\nfrom = [\"laptop-ana\"]\nto = [\"tag:db\"]\nports = [\"tcp:5432\", \"icmp\"]\n\n\
         [[test]]\nfrom = \"db-1\"\nto = \"laptop-ana\"\nport = \"tcp:22\"\nexpect = \"deny\"\n",
    )
    .unwrap();
    let second_arg = second.to_str().unwrap();
    let tested = ctl.json(&["policy", "test", &net, second_arg]);
    assert_eq!(tested["would_be_version"], 2);
    ctl.ok(&["policy", "test", &net, second_arg]);
    assert_eq!(
        ctl.json(&["policy", "get", &net])["version"],
        1,
        "a dry run stores nothing"
    );
    ctl.ok(&["policy", "set", &net, second_arg]);

    let failing = dir.path().join("failing.toml");
    std::fs::write(
        &failing,
        std::fs::read_to_string(&second)
            .unwrap()
            .replace("\"deny\"", "\"allow\""),
    )
    .unwrap();
    for command in ["test", "set"] {
        let out = ctl.run(&["policy", command, &net, failing.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("test[0]"), "{stderr}");
    }

    let history = ctl.ok(&["policy", "history", &net]);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 3, "{history}");
    assert!(
        lines[1].starts_with('2') && lines[2].starts_with('1'),
        "{history}"
    );
    let versions = ctl.json(&["policy", "history", &net]);
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);

    // A grant opens tcp:22 for a while, and its revocation closes it.
    let ssh = [
        "policy",
        "explain",
        &net,
        "--from",
        "laptop-ana",
        "--to",
        "db-1",
        "--port",
        "tcp:22",
    ];
    assert!(ctl.ok(&ssh).starts_with("deny"));
    let grant = ctl.json(&[
        "grant",
        "add",
        &net,
        "--from",
        "laptop-ana",
        "--to",
        "db-1",
        "--ports",
        "tcp:22",
        "--for",
        "2h",
        "--reason",
        "debugging the replica",
    ]);
    let id = grant["id"].as_str().unwrap().to_string();
    let allowed = ctl.ok(&ssh);
    assert!(
        allowed.starts_with(&format!("allow (grant:{id})")),
        "{allowed}"
    );
    let listed = ctl.ok(&["grant", "list", &net]);
    assert!(
        listed.contains(&id) && listed.contains("debugging the replica"),
        "{listed}"
    );
    ctl.ok(&["grant", "revoke", &net, &id]);
    assert!(ctl.ok(&ssh).starts_with("deny"));
    assert!(ctl.json(&["grant", "list", &net])["grants"]
        .as_array()
        .unwrap()
        .is_empty());
    let all = ctl.json(&["grant", "list", &net, "--all"]);
    assert_eq!(all["grants"][0]["active"], false);
}

/// `member list | head -1`: the reader goes away before the listing is
/// written. The command ends quietly with success, not with a panic about
/// a broken pipe.
#[tokio::test]
async fn a_listing_whose_reader_is_gone_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Served::start(dir.path());
    let net = ctl.ok(&["network", "create", "lab"]).trim().to_string();
    let key = ctl.json(&["key", "create", &net, "--reusable"])["key"]
        .as_str()
        .unwrap()
        .to_string();
    join(dir.path(), &net, &key, "db-1").await;
    join(dir.path(), &net, &key, "laptop-ana").await;
    for args in [
        vec!["member", "list", &net],
        vec!["member", "list", &net, "--json"],
        vec!["network", "list"],
    ] {
        warren_lab::command::run_without_reader(&mut ctl.command(&args)).unwrap();
    }
}
