//! `network invite`: one line an admin hands to whoever joins, `warren
//! join CODE`, whose code carries the controller's addresses, its
//! certificate fingerprint, the network ID and, if asked for, a pre-auth
//! key (an existing one, or one made now).

use std::net::SocketAddr;

use anyhow::{bail, Context};
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};
use warren_cli_assets::outln;
use warren_proto::invite::{ControllerAddress, Invite};
use warren_proto::NetworkId;

use super::client::ApiClient;
use super::output::{field, json as print_json};

#[derive(Debug, Args)]
pub struct InviteArgs {
    network: NetworkId,
    /// HOST:PORT agents reach the controller's QUIC listener at; repeat
    /// (or comma-separate) for each replica, in the order to try them
    /// [default: the QUIC listen address, unless it is a wildcard such as
    /// [::] or 0.0.0.0, which agents cannot dial].
    #[arg(
        long = "address",
        value_name = "HOST:PORT",
        value_delimiter = ',',
        num_args = 1
    )]
    addresses: Vec<ControllerAddress>,
    /// Put this pre-auth key (as `key create` printed it) in the code:
    /// whoever joins with the code skips approval while the key lasts.
    #[arg(long, conflicts_with = "new_key")]
    key: Option<String>,
    /// Make a pre-auth key now and put it in the code: single-use and
    /// valid for 24h unless --reusable, --max-uses or --expires say
    /// otherwise (as `key create`).
    #[arg(long)]
    new_key: bool,
    /// The new key allows more than one join.
    #[arg(long, requires = "new_key")]
    reusable: bool,
    /// The new key allows at most N joins (N above 1 makes it reusable).
    #[arg(long, value_name = "N", requires = "new_key", value_parser = clap::value_parser!(u32).range(1..))]
    max_uses: Option<u32>,
    /// The new key's lifetime, e.g. 1h, 30m, 7days, or `never`.
    #[arg(long, value_name = "DURATION", requires = "new_key")]
    expires: Option<String>,
    /// A tag (tag:NAME) every member the new key authorizes carries.
    /// Repeat for more.
    #[arg(long = "tag", value_name = "TAG", requires = "new_key")]
    tags: Vec<String>,
}

pub async fn run(client: &ApiClient, args: InviteArgs, as_json: bool) -> anyhow::Result<()> {
    let net = args.network;
    let network = client
        .call(Method::GET, &format!("/api/v1/networks/{net}"), None)
        .await
        .with_context(|| format!("reading network {net}"))?;
    let info = client
        .call(Method::GET, "/api/v1/info", None)
        .await
        .context("reading the controller's fingerprint and addresses (/api/v1/info)")?;
    let fingerprint = fingerprint(&info)?;
    let controllers = addresses(&args.addresses, &info)?;
    let (preauth_key, made) = match (&args.key, args.new_key) {
        (Some(key), _) => (Some(key.trim().to_owned()), None),
        (None, true) => {
            let made = new_key(client, &args).await?;
            (Some(field(&made, "key")), Some(made))
        }
        (None, false) => (None, None),
    };
    let invite = Invite {
        network_id: net,
        fingerprint,
        controllers,
        preauth_key,
    };
    let code = invite.encode().context("making the invite code")?;
    let command = format!("warren join {code}");
    if as_json {
        print_json(&json!({
            "command": command,
            "code": code,
            "network_id": net,
            "controllers": invite.controllers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "fingerprint": invite.fingerprint_hex(),
            "key_id": made.as_ref().map(|m| field(m, "id")),
            "has_key": invite.preauth_key.is_some(),
        }))?;
        return Ok(());
    }
    outln!("{command}");
    let through: Vec<String> = invite.controllers.iter().map(|c| c.to_string()).collect();
    warren_cli_assets::errln!(
        "an invite to network {} ({net}) through {}",
        field(&network, "name"),
        through.join(", ")
    );
    match (&made, &args.key) {
        (Some(made), _) => warren_cli_assets::errln!(
            "it carries the new pre-auth key {} ({}, expires {}): whoever has the code can join, so share it as you would a password",
            field(made, "id"),
            uses(made),
            field(made, "expires_at")
        ),
        (None, Some(_)) => warren_cli_assets::errln!(
            "it carries the pre-auth key given: whoever has the code can join while the key lasts, so share it as you would a password"
        ),
        (None, None) => warren_cli_assets::errln!(
            "it carries no key: whoever joins waits for approval (`warren-controller member authorize {net} NODE-ID`; `warren join` prints the command)"
        ),
    }
    Ok(())
}

/// The controller certificate's SHA-256 from `/api/v1/info`.
fn fingerprint(info: &Value) -> anyhow::Result<[u8; 32]> {
    let text = info
        .pointer("/fingerprints/controller")
        .and_then(Value::as_str)
        .context("the controller's /api/v1/info names no certificate fingerprint")?;
    let bytes = hex::decode(text.replace(':', ""))
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok());
    bytes.with_context(|| format!("the controller's fingerprint {text:?} is not 64 hex digits"))
}

/// The addresses given, or the QUIC listen address when an agent can dial it.
fn addresses(given: &[ControllerAddress], info: &Value) -> anyhow::Result<Vec<ControllerAddress>> {
    if let Some(bad) = given.iter().find(|a| !a.is_dialable()) {
        bail!("--address {bad} is not an address an agent can dial: give the one agents reach the controller at");
    }
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    // Several replicas: each says where agents reach it.
    let replicas: Vec<ControllerAddress> = info
        .get("replicas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|a| a.parse().ok())
        .filter(ControllerAddress::is_dialable)
        .take(warren_proto::invite::MAX_ADDRESSES)
        .collect();
    if !replicas.is_empty() {
        return Ok(replicas);
    }
    let quic: SocketAddr = info
        .pointer("/listen/quic")
        .and_then(Value::as_str)
        .and_then(|a| a.parse().ok())
        .context(
            "the controller's /api/v1/info names no QUIC listen address: give --address HOST:PORT",
        )?;
    let address = ControllerAddress::Ip(quic);
    if !address.is_dialable() {
        bail!(
            "the controller listens for agents on {quic}, every address of its host, which agents \
             cannot dial: give the address they reach it at with --address HOST:PORT (repeat it \
             for each replica)"
        );
    }
    if quic.ip().is_loopback() {
        warren_cli_assets::errln!(
            "note: the controller listens on {quic}, a loopback address: only agents on its own \
             host can use this code; give --address HOST:PORT for others"
        );
    }
    Ok(vec![address])
}

/// Makes the new key as `key create` would: the API's answer, with the secret.
async fn new_key(client: &ApiClient, args: &InviteArgs) -> anyhow::Result<Value> {
    let mut body = json!({});
    if !args.tags.is_empty() {
        body["tags"] = json!(args.tags);
    }
    if args.reusable {
        body["reusable"] = json!(true);
    }
    if let Some(n) = args.max_uses {
        body["max_uses"] = json!(n);
    }
    if let Some(expires) = &args.expires {
        body["expires"] = json!(expires);
    }
    let net = args.network;
    client
        .call(
            Method::POST,
            &format!("/api/v1/networks/{net}/keys"),
            Some(&body),
        )
        .await
        .context("making the pre-auth key for the code")
}

/// "single-use", "up to N uses" or "reusable".
fn uses(key: &Value) -> String {
    match (
        key.get("reusable").and_then(Value::as_bool),
        key.get("max_uses").and_then(Value::as_u64),
    ) {
        (Some(false), _) => "single-use".to_owned(),
        (_, Some(n)) => format!("up to {n} uses"),
        _ => "reusable".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(quic: &str) -> Value {
        json!({
            "fingerprints": { "controller": "ab".repeat(32) },
            "listen": { "quic": quic },
        })
    }

    #[test]
    fn a_wildcard_listener_needs_an_address_and_says_so() {
        for wildcard in ["[::]:7443", "0.0.0.0:7443"] {
            let error = addresses(&[], &info(wildcard)).unwrap_err().to_string();
            assert!(error.contains("--address HOST:PORT"), "{error}");
        }
        let given: Vec<ControllerAddress> = vec![
            "ctl.example.org:7443".parse().unwrap(),
            "192.0.2.11:7443".parse().unwrap(),
        ];
        assert_eq!(addresses(&given, &info("[::]:7443")).unwrap(), given);
        let any = vec!["0.0.0.0:7443".parse().unwrap()];
        assert!(addresses(&any, &info("192.0.2.10:7443")).is_err());
        assert_eq!(
            addresses(&[], &info("192.0.2.10:7443")).unwrap(),
            vec!["192.0.2.10:7443".parse().unwrap()]
        );
    }

    #[test]
    fn the_fingerprint_comes_from_info() {
        assert_eq!(fingerprint(&info("192.0.2.10:7443")).unwrap(), [0xab; 32]);
        assert!(fingerprint(&json!({})).is_err());
        assert!(fingerprint(&json!({ "fingerprints": { "controller": "abc" } })).is_err());
    }
}
