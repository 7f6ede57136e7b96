//! `warren join` and `warren leave`: membership of networks run by a controller.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use warren_proto::text::printable;

use anyhow::{bail, Context};

use clap::Args;
use warren_proto::local_api::{JoinRequest, NetworkState, NetworkStatus, Status};
use warren_proto::NetworkId;

use super::Cli;
use crate::client;

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The 16-hex-digit network ID.
    network_id: NetworkId,
    /// The controller's QUIC address, HOST:PORT.
    #[arg(long)]
    controller: String,
    /// SHA-256 fingerprint of the controller's certificate
    /// (`warren-controller fingerprint`). Without it the first certificate
    /// seen is trusted and pinned.
    #[arg(long)]
    fingerprint: Option<String>,
    /// A pre-auth key: join without waiting for approval. Other local
    /// users can read a command line (`ps`): prefer --key-file, or the
    /// WARREN_PREAUTH_KEY environment variable, read when neither flag is given.
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
    /// How long to wait for the controller's answer.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// On a network where people sign devices in (no pre-auth key given):
    /// how long to wait for the sign-in in a browser.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    sign_in_wait: Duration,
}

#[derive(Debug, Args)]
pub struct LeaveArgs {
    network_id: NetworkId,
}

pub fn join(cli: &Cli, args: &JoinArgs) -> anyhow::Result<()> {
    let socket = cli.socket_or(None);
    let preauth_key = preauth_key(
        args.key.as_deref(),
        args.key_file.as_deref(),
        std::env::var("WARREN_PREAUTH_KEY").ok(),
    )?;
    let request = JoinRequest {
        network_id: args.network_id,
        controller: args.controller.clone(),
        fingerprint: args.fingerprint.clone(),
        preauth_key,
        name: args.name.clone(),
        allow_zones: args.allow_zones.clone(),
    };
    let runtime = super::runtime()?;
    let mut network: NetworkStatus =
        runtime.block_on(client::post(&socket, "/v1/networks", &request))?;
    let deadline = Instant::now() + args.wait;
    let id = args.network_id.to_string();
    let refresh = |network: &mut NetworkStatus| -> anyhow::Result<()> {
        std::thread::sleep(Duration::from_millis(200));
        let status: Status = runtime.block_on(client::get(&socket, "/v1/status"))?;
        if let Some(n) = status.networks.into_iter().find(|n| n.id == id) {
            *network = n;
        }
        Ok(())
    };
    while network.state == NetworkState::Connecting && Instant::now() < deadline {
        refresh(&mut network)?;
    }
    // A network where people sign devices in: show the page, wait for it.
    if let (NetworkState::Pending, Some(url)) = (network.state, network.sign_in_url.clone()) {
        eprintln!(
            "To connect this device, open this page and sign in:\n\n    {}\n",
            printable(&url)
        );
        eprintln!(
            "waiting for the sign-in (up to {})...",
            humantime::format_duration(args.sign_in_wait)
        );
        let deadline = Instant::now() + args.sign_in_wait;
        while network.state == NetworkState::Pending
            && network.sign_in_refused.is_none()
            && Instant::now() < deadline
        {
            refresh(&mut network)?;
        }
        if let Some(reason) = &network.sign_in_refused {
            bail!(
                "joining {id}: the sign-in was refused: {}; `warren join` again shows a new page",
                printable(reason)
            );
        }
        if network.state == NetworkState::Pending {
            bail!(
                "joining {id}: nobody signed this device in within {}; the page stays open until it expires, and `warren join` again shows a new one",
                humantime::format_duration(args.sign_in_wait)
            );
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&network)?);
        if matches!(
            network.state,
            NetworkState::Refused | NetworkState::Conflict
        ) {
            anyhow::bail!(
                "joining {id} failed: {}",
                network.message.as_deref().unwrap_or("refused")
            );
        }
        return Ok(());
    }
    match network.state {
        NetworkState::Authorized => {
            let addresses: Vec<String> = network.addresses.iter().map(|a| a.to_string()).collect();
            let fqdn = network.fqdn.as_deref().unwrap_or("?");
            let owner = network
                .owner
                .as_deref()
                .map(|o| format!(", owned by {}", printable(o)))
                .unwrap_or_default();
            println!(
                "joined {id} as {} ({}){owner}",
                printable(fqdn),
                addresses.join(", ")
            );
        }
        NetworkState::Pending => {
            println!("joined {id}: waiting for an admin to authorize this node")
        }
        NetworkState::Connecting | NetworkState::Stale => {
            println!("joining {id}: the controller has not answered yet; see `warren status`")
        }
        NetworkState::Expired => anyhow::bail!(
            "joined {id}, but {}",
            network.message.as_deref().unwrap_or("its sign-in ran out")
        ),
        NetworkState::Refused | NetworkState::Conflict => anyhow::bail!(
            "joining {id} failed: {}",
            network.message.as_deref().unwrap_or("refused")
        ),
        NetworkState::Static => {}
    }
    Ok(())
}

pub fn leave(cli: &Cli, args: &LeaveArgs) -> anyhow::Result<()> {
    let socket = cli.socket_or(None);
    let path = format!("/v1/networks/{}", args.network_id);
    super::runtime()?.block_on(client::delete(&socket, &path))?;
    println!("left {}", args.network_id);
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
