//! `warren join` and `warren leave`: membership of networks run by a controller.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use warren_proto::text::printable;

use anyhow::{bail, Context};

use clap::Args;
use warren_cli_assets::outln;
use warren_proto::invite::{Invite, InviteError, PREFIX};
use warren_proto::local_api::{JoinReply, JoinRequest, NetworkState, NetworkStatus, Status};
use warren_proto::NetworkId;

use super::exit::{self, Exit};
use super::progress::{self, Step};
use super::Cli;
use crate::client;

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// An invite code, as `warren-controller network invite` prints it
    /// (it carries the controller's addresses, its certificate
    /// fingerprint, the network and maybe a pre-auth key: nothing else is
    /// needed); or a 16-hex-digit network ID, with --controller.
    #[arg(value_name = "CODE|NETWORK-ID")]
    target: String,
    /// With a network ID: the controller's QUIC address, HOST:PORT.
    #[arg(long)]
    controller: Option<String>,
    /// With a network ID: the SHA-256 fingerprint of the controller's
    /// certificate, as `warren-controller fingerprint` prints it on the
    /// controller. Required unless --trust-first-use.
    #[arg(long)]
    fingerprint: Option<String>,
    /// Without --fingerprint: trust the certificate the controller shows
    /// first and pin it (printed once seen). Anyone on the path at that
    /// moment could pose as the controller.
    #[arg(long, conflicts_with = "fingerprint")]
    trust_first_use: bool,
    /// A pre-auth key: join without waiting for approval (instead of the
    /// invite code's, if it has one). Other local users can read a command
    /// line (`ps`): prefer --key-file, or the WARREN_PREAUTH_KEY
    /// environment variable, read when neither flag is given and the code
    /// carries no key.
    #[arg(long, conflicts_with = "key_file")]
    key: Option<String>,
    /// Read the pre-auth key from FILE (its first line). The file must not
    /// be readable by group or others (chmod 600).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// The name to ask for (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Print the network's status as JSON.
    #[arg(long)]
    json: bool,
    /// Let the controller name this DNS zone (and names under it) for the
    /// network; without it only zones under warren.internal, internal and
    /// home.arpa are accepted. Repeat for more zones.
    #[arg(long = "allow-zone", value_name = "ZONE")]
    allow_zones: Vec<String>,
    #[command(flatten)]
    wait: WaitArgs,
    /// On a network where people sign devices in (no pre-auth key given):
    /// how long to wait for the sign-in in a browser.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    sign_in_wait: Duration,
}

/// How long `join` and `up` wait for the network to settle.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// How long to wait for the network to come up, be pending or be
    /// refused.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// Return as soon as the agent has taken the request.
    #[arg(long, conflicts_with = "wait")]
    no_wait: bool,
}

#[derive(Debug, Args)]
pub struct LeaveArgs {
    network_id: NetworkId,
}

/// What a join names: from an invite code, or from a network ID and flags.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    network_id: NetworkId,
    controller: String,
    /// An invite code's addresses, `controller` first; empty without one.
    controllers: Vec<String>,
    fingerprint: Option<String>,
    /// The invite code's pre-auth key.
    preauth_key: Option<String>,
}

/// Reads the positional argument: a network ID needs --controller and a
/// fingerprint (or --trust-first-use); an invite code carries them, so
/// they may not be given with it. Anything else is a usage error.
fn target(args: &JoinArgs) -> anyhow::Result<Target> {
    if let Ok(network_id) = args.target.parse::<NetworkId>() {
        let Some(controller) = args.controller.clone() else {
            return Err(Exit::error(
                exit::USAGE,
                "joining by network ID needs the controller's address: add --controller HOST:PORT, or join with the invite code `warren-controller network invite` prints",
            ));
        };
        if args.fingerprint.is_none() && !args.trust_first_use {
            return Err(Exit::error(
                exit::USAGE,
                "no --fingerprint given: pass the one `warren-controller fingerprint` prints on the controller, or --trust-first-use to trust and pin the first certificate the controller shows",
            ));
        }
        return Ok(Target {
            network_id,
            controller,
            controllers: Vec::new(),
            fingerprint: args.fingerprint.clone(),
            preauth_key: None,
        });
    }
    let invite = Invite::decode(&args.target).map_err(|e| {
        let message = match e {
            InviteError::NotACode { got } => format!(
                "{:?} is neither an invite code (they start with {PREFIX}) nor a network ID (16 hex digits)",
                printable(&got)
            ),
            other => other.to_string(),
        };
        Exit::error(exit::USAGE, message)
    })?;
    let given: Vec<&str> = [
        (args.controller.is_some(), "--controller"),
        (args.fingerprint.is_some(), "--fingerprint"),
        (args.trust_first_use, "--trust-first-use"),
    ]
    .into_iter()
    .filter_map(|(given, flag)| given.then_some(flag))
    .collect();
    if !given.is_empty() {
        return Err(Exit::error(
            exit::USAGE,
            format!(
                "an invite code carries the controller's addresses and certificate fingerprint: drop {}",
                given.join(" and ")
            ),
        ));
    }
    let controllers: Vec<String> = invite.controllers.iter().map(|c| c.to_string()).collect();
    Ok(Target {
        network_id: invite.network_id,
        controller: controllers.first().cloned().unwrap_or_default(),
        fingerprint: Some(invite.fingerprint_hex()),
        controllers,
        preauth_key: invite.preauth_key,
    })
}

pub fn join(cli: &Cli, args: &JoinArgs) -> anyhow::Result<()> {
    let target = target(args)?;
    let socket = cli.socket_or(None);
    // A key flag wins over the code's key, which wins over the environment.
    let flagged = preauth_key(args.key.as_deref(), args.key_file.as_deref(), None)?;
    let preauth_key = match (flagged, target.preauth_key) {
        (Some(key), _) | (None, Some(key)) => Some(key),
        (None, None) => preauth_key(None, None, std::env::var("WARREN_PREAUTH_KEY").ok())?,
    };
    let first_use = target.fingerprint.is_none();
    let request = JoinRequest {
        network_id: target.network_id,
        controller: target.controller,
        controllers: target.controllers,
        fingerprint: target.fingerprint,
        preauth_key,
        name: args.name.clone(),
        allow_zones: args.allow_zones.clone(),
        trust_first_use: args.trust_first_use,
    };
    let runtime = super::runtime()?;
    let reply: JoinReply = runtime.block_on(client::post(&socket, "/v1/networks", &request))?;
    let id = target.network_id.to_string();
    for change in &reply.updated {
        warren_cli_assets::errln!("{id}: {}", printable(change));
    }
    settle(
        &runtime,
        &socket,
        reply.network,
        &args.wait,
        args.json,
        first_use,
        || sign_in(&runtime, &socket, &id, args.sign_in_wait),
    )
}

/// Waits (unless `--no-wait`) until network `network` settles, and says
/// how it did: on stdout, as text or JSON; a failure is an error with its
/// exit code. `first_use`: no fingerprint was given, so say which
/// certificate was pinned. `sign_in` waits for a person to sign the
/// device in.
pub fn settle(
    runtime: &tokio::runtime::Runtime,
    socket: &Path,
    network: NetworkStatus,
    wait: &WaitArgs,
    json: bool,
    first_use: bool,
    sign_in: impl FnOnce() -> anyhow::Result<NetworkStatus>,
) -> anyhow::Result<()> {
    let id = network.id.clone();
    let (mut network, mut step) = if wait.no_wait {
        (network, Step::Wait(String::new()))
    } else {
        progress::wait_for(runtime, socket, &id, wait.wait)?
    };
    if let Step::SignIn = step {
        network = sign_in()?;
        step = Step::Up;
    }
    let node: Status = runtime.block_on(client::get(socket, "/v1/status"))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&network)?);
    }
    let text = match step {
        Step::Fail(code, message) => {
            return Err(Exit::error(
                code,
                format!("{message}\n(the network stays joined and the agent keeps trying: run `warren join` again with corrected flags, or `warren leave {id}`)"),
            ))
        }
        Step::Wait(_) => format!(
            "joining {id}: {}; `warren status` shows how it goes",
            network.state.as_str()
        ),
        Step::Up | Step::SignIn => joined_line(&network),
        Step::Pending => pending_text(&id, &node.node_id.to_string()),
    };
    if !json {
        outln!("{text}");
    }
    if first_use {
        match &network.fingerprint {
            Some(fp) => warren_cli_assets::errln!(
                "trusted the controller's certificate on first use and pinned it:\n    {fp}\ncompare it with what `warren-controller fingerprint` prints on the controller"
            ),
            None => warren_cli_assets::errln!(
                "no certificate trusted yet: the first one the controller shows will be pinned (`warren status -v` shows it)"
            ),
        }
    }
    Ok(())
}

fn joined_line(network: &NetworkStatus) -> String {
    let addresses: Vec<String> = network.addresses.iter().map(|a| a.to_string()).collect();
    let fqdn = network.fqdn.as_deref().unwrap_or("?");
    let owner = network
        .owner
        .as_deref()
        .map(|o| format!(", owned by {}", printable(o)))
        .unwrap_or_default();
    format!(
        "joined {} as {} ({}){owner}",
        network.id,
        printable(fqdn),
        addresses.join(", ")
    )
}

/// What a pending join prints: the node ID and the admin's command.
fn pending_text(id: &str, node: &str) -> String {
    format!(
        "joined {id}: waiting for an admin to authorize this node (node ID {node})\n\
         an admin approves it on the controller with:\n\n    \
         warren-controller member authorize {id} {node}\n"
    )
}

/// A network where people sign devices in: shows the page, waits for it.
fn sign_in(
    runtime: &tokio::runtime::Runtime,
    socket: &Path,
    id: &str,
    wait: Duration,
) -> anyhow::Result<NetworkStatus> {
    let mut network = network_status(runtime, socket, id)?;
    if let Some(url) = &network.sign_in_url {
        warren_cli_assets::errln!(
            "To connect this device, open this page and sign in:\n\n    {}\n",
            printable(url)
        );
    }
    warren_cli_assets::errln!(
        "waiting for the sign-in (up to {})...",
        humantime::format_duration(wait)
    );
    let deadline = Instant::now() + wait;
    while network.state == NetworkState::Pending
        && network.sign_in_refused.is_none()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
        network = network_status(runtime, socket, id)?;
    }
    if let Some(reason) = &network.sign_in_refused {
        return Err(Exit::error(
            exit::JOIN_REFUSED,
            format!(
                "joining {id}: the sign-in was refused: {}; `warren join` again shows a new page",
                printable(reason)
            ),
        ));
    }
    match network.state {
        NetworkState::Authorized => Ok(network),
        NetworkState::Pending => Err(Exit::error(
            exit::JOIN_TIMEOUT,
            format!(
                "joining {id}: nobody signed this device in within {}; the page stays open until it expires, and `warren join` again shows a new one",
                humantime::format_duration(wait)
            ),
        )),
        _ => Err(Exit::error(
            exit::JOIN_REFUSED,
            format!(
                "joining {id}: {}",
                network.message.as_deref().map(printable).unwrap_or_default()
            ),
        )),
    }
}

fn network_status(
    runtime: &tokio::runtime::Runtime,
    socket: &Path,
    id: &str,
) -> anyhow::Result<NetworkStatus> {
    let status: Status = runtime.block_on(client::get(socket, "/v1/status"))?;
    status
        .networks
        .into_iter()
        .find(|n| n.id == id)
        .ok_or_else(|| anyhow::anyhow!("network {id} is no longer joined"))
}

pub fn leave(cli: &Cli, args: &LeaveArgs) -> anyhow::Result<()> {
    let socket = cli.socket_or(None);
    let path = format!("/v1/networks/{}", args.network_id);
    super::runtime()?.block_on(client::delete(&socket, &path))?;
    outln!("left {}", args.network_id);
    Ok(())
}

/// The pre-auth key: `--key`, else `--key-file`, else `WARREN_PREAUTH_KEY`
/// (empty means none), else none.
fn preauth_key(
    flag: Option<&str>,
    file: Option<&Path>,
    env: Option<String>,
) -> anyhow::Result<Option<String>> {
    if let Some(key) = flag {
        return Ok(Some(key.to_owned()));
    }
    if let Some(file) = file {
        return read_key_file(file).map(Some);
    }
    Ok(env.map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()))
}

/// A key file's first line; a file that others could read is refused, as
/// its key may have leaked already.
fn read_key_file(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).with_context(|| format!("reading key file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        bail!(
            "key file {} is readable by group or others (mode {mode:04o}): chmod 600 it, and consider the key leaked",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading key file {}", path.display()))?;
    let key = text.lines().next().unwrap_or("").trim();
    if key.is_empty() {
        bail!("key file {} is empty", path.display());
    }
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key_file(dir: &Path, mode: u32, text: &str) -> PathBuf {
        let path = dir.join(format!("key-{mode:o}"));
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[derive(clap::Parser)]
    struct Line {
        #[command(flatten)]
        join: JoinArgs,
    }

    fn args(line: &[&str]) -> JoinArgs {
        use clap::Parser;
        Line::parse_from(std::iter::once("join").chain(line.iter().copied())).join
    }

    fn code(key: Option<&str>) -> String {
        Invite {
            network_id: "8056c2e21c000001".parse().unwrap(),
            fingerprint: [0xab; 32],
            controllers: vec![
                "192.0.2.10:7443".parse().unwrap(),
                "ctl.example.org:7443".parse().unwrap(),
            ],
            preauth_key: key.map(str::to_owned),
        }
        .encode()
        .unwrap()
    }

    /// The usage error (exit 2) a join line gets, as its message.
    fn usage_error(line: &[&str]) -> String {
        let error = target(&args(line)).unwrap_err();
        assert_eq!(exit::code_of(&error), exit::USAGE, "{error}");
        error.to_string()
    }

    #[test]
    fn an_invite_code_names_everything() {
        let found = target(&args(&[&code(Some("wk_k"))])).unwrap();
        assert_eq!(
            found,
            Target {
                network_id: "8056c2e21c000001".parse().unwrap(),
                controller: "192.0.2.10:7443".into(),
                controllers: vec!["192.0.2.10:7443".into(), "ctl.example.org:7443".into()],
                fingerprint: Some("ab".repeat(32)),
                preauth_key: Some("wk_k".into()),
            }
        );
        // With a name, zones and its own key flag, as with a network ID.
        let line = args(&[&code(None), "--name", "desk", "--key", "wk_flag"]);
        assert_eq!(target(&line).unwrap().preauth_key, None);
        assert_eq!(line.key.as_deref(), Some("wk_flag"));
    }

    #[test]
    fn a_code_that_does_not_read_is_a_usage_error_that_says_why() {
        let good = code(None);
        let mut typo: Vec<char> = good.chars().collect();
        let at = typo.len() / 2;
        typo[at] = if typo[at] == 'x' { 'y' } else { 'x' };
        let typo: String = typo.into_iter().collect();
        assert!(usage_error(&[&typo]).contains("checksum does not match: check for a typo"));
        assert!(usage_error(&[&good[..good.len() - 5]]).contains("checksum"));
        assert!(usage_error(&["office"]).contains("neither an invite code"));
        for flag in [
            &["--controller", "192.0.2.1:7443"][..],
            &["--fingerprint", &"cd".repeat(32)],
            &["--trust-first-use"],
        ] {
            let mut line = vec![good.as_str()];
            line.extend_from_slice(flag);
            assert!(usage_error(&line).contains(&format!("drop {}", flag[0])));
        }
    }

    #[test]
    fn a_network_id_still_joins_with_flags() {
        let id = "8056c2e21c000001";
        assert!(usage_error(&[id]).contains("--controller HOST:PORT"));
        assert!(usage_error(&[id, "--controller", "192.0.2.1:7443"]).contains("--trust-first-use"));
        let found = target(&args(&[
            id,
            "--controller",
            "192.0.2.1:7443",
            "--trust-first-use",
        ]))
        .unwrap();
        assert_eq!(found.controller, "192.0.2.1:7443");
        assert!(found.controllers.is_empty() && found.fingerprint.is_none());
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let private = key_file(dir.path(), 0o600, "wpk_secret\n");
        assert_eq!(read_key_file(&private).unwrap(), "wpk_secret");
        for mode in [0o640, 0o604, 0o644] {
            let open = key_file(dir.path(), mode, "wpk_secret\n");
            let error = read_key_file(&open).unwrap_err().to_string();
            assert!(
                error.contains("readable by group or others"),
                "{mode:o}: {error}"
            );
        }
        let empty = key_file(dir.path(), 0o400, "\n");
        assert!(read_key_file(&empty).is_err());
        assert!(read_key_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn the_key_comes_from_the_flag_the_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = key_file(dir.path(), 0o600, "from-file\n");
        let env = || Some("from-env".to_owned());
        assert_eq!(
            preauth_key(Some("from-flag"), None, env())
                .unwrap()
                .as_deref(),
            Some("from-flag")
        );
        assert_eq!(
            preauth_key(None, Some(&file), env()).unwrap().as_deref(),
            Some("from-file")
        );
        assert_eq!(
            preauth_key(None, None, env()).unwrap().as_deref(),
            Some("from-env")
        );
        assert_eq!(preauth_key(None, None, Some(" ".into())).unwrap(), None);
        assert_eq!(preauth_key(None, None, None).unwrap(), None);
    }
}
