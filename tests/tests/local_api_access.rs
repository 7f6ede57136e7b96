//! The local API checks who is calling, end to end: an agent whose socket
//! belongs to a group, and the CLI run as another uid (with `setpriv`, no
//! users or groups added to the host). A member of the socket's group may
//! read but not change anything; a member of `admin-group` may change
//! things; a caller outside both is refused even when the socket's mode
//! has been loosened by hand.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use anyhow::{ensure, Context};
use warren_lab::command;
use warren_lab::e2e;
use warren_lab::wait::{self, Poll};

/// The uid the CLI runs as: no such user exists, and none is needed.
const USER: u32 = 4321;
/// The socket's group.
const SOCKET_GID: u32 = 4242;
/// The agent's `admin-group`.
const ADMIN_GID: u32 = 4244;
/// A group that is neither.
const OTHER_GID: u32 = 4343;
/// A network ID nobody joined.
const NOT_JOINED: &str = "0123456789abcdef";

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `warren ARGS --socket SOCKET` in `ns` as uid [`USER`] with primary
/// group `gid` and exactly the supplementary `groups`.
fn warren_as(
    ns: &str,
    socket: &Path,
    gid: u32,
    groups: &[u32],
    args: &[&str],
) -> anyhow::Result<Output> {
    let bin = warren_lab::warren::warren_bin()?;
    let groups = groups
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = command::command("ip", ["netns", "exec", ns, "setpriv"]);
    cmd.arg(format!("--reuid={USER}"))
        .arg(format!("--regid={gid}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        cmd.arg(format!("--groups={groups}"));
    }
    cmd.arg(&bin).args(args).arg("--socket").arg(socket);
    Ok(command::output(&mut cmd)?)
}

#[test]
fn the_socket_group_reads_the_admin_group_changes_and_nobody_else_gets_in() {
    e2e("local_api_access", |lab| {
        let ns = lab.netns("n")?;
        // The lab's folders are root's (0700): let the caller reach the socket.
        std::fs::set_permissions(lab.dir(), std::fs::Permissions::from_mode(0o711))?;
        let state = lab.subdir("state")?;
        let run = lab.subdir("run")?;
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o711))?;
        let socket = run.join("warren.sock");
        let bin = warren_lab::warren::warren_bin()?;
        let admin = ADMIN_GID.to_string();
        let _agent = lab.spawn_in(
            &ns,
            "warren",
            &bin,
            [
                "daemon".as_ref(),
                "--state-dir".as_ref(),
                state.as_os_str(),
                "--socket".as_ref(),
                socket.as_os_str(),
                "--admin-group".as_ref(),
                admin.as_ref(),
            ],
            &[("WARREN_DNS_MANAGE", "off")],
        )?;
        wait::until("the agent's socket", Duration::from_secs(10), || {
            Ok(if socket.exists() {
                Poll::Ready(())
            } else {
                Poll::Pending("no socket yet".to_owned())
            })
        })?;
        std::os::unix::fs::chown(&socket, None, Some(SOCKET_GID)).context("chgrp socket")?;

        // A member of the socket's group reads...
        let out = warren_as(
            ns.name(),
            &socket,
            SOCKET_GID,
            &[SOCKET_GID],
            &["status", "--json"],
        )?;
        ensure!(
            out.status.success(),
            "status as a group member: {}",
            text(&out)
        );
        // ...but changes nothing, and is told why.
        for args in [
            &["leave", NOT_JOINED][..],
            &[
                "join",
                NOT_JOINED,
                "--controller",
                "127.0.0.1:9",
                "--trust-first-use",
            ][..],
        ] {
            let out = warren_as(ns.name(), &socket, SOCKET_GID, &[SOCKET_GID], args)?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            ensure!(
                !out.status.success() && stderr.contains("admin-group"),
                "warren {} as a mere group member must be refused for want of admin-group: {}",
                args.join(" "),
                text(&out)
            );
        }
        println!("group member: status works, join and leave refused");

        // A member of admin-group gets past the check: the agent itself answers.
        let out = warren_as(
            ns.name(),
            &socket,
            SOCKET_GID,
            &[SOCKET_GID, ADMIN_GID],
            &["leave", NOT_JOINED],
        )?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !stderr.contains("admin-group") && stderr.contains("not joined"),
            "leave as an admin should reach the agent (and find nothing to leave): {}",
            text(&out)
        );
        println!("admin: leave reaches the agent");

        // Outside the group, with the socket's mode loosened by hand to
        // 0666: the caller's own groups are checked, so still no entry.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))?;
        let out = warren_as(ns.name(), &socket, OTHER_GID, &[], &["status", "--json"])?;
        ensure!(
            !out.status.success(),
            "status from outside the socket's group must be refused: {}",
            text(&out)
        );
        println!(
            "outsider refused: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    });
}
