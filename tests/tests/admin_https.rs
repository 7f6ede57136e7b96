//! The admin CLI on another machine reaching the controller's API over
//! https://, pinned to the fingerprint `warren-controller fingerprint`
//! prints: `info`, approving a member, and the audit-log filters as a
//! person types them (`--since 10m`, `--member laptop`, `--actor`,
//! `--text`, `--until`), with the errors a person sees for a bad time, a
//! wrong fingerprint and http:// to the HTTPS port.

use std::process::Output;
use std::time::Duration;

use anyhow::{ensure, Context};
use serde_json::Value;
use warren_lab::command;
use warren_lab::controller::Controller;
use warren_lab::e2e;
use warren_lab::mesh::{Mesh, CONTROLLER_ROLE};
use warren_lab::netns::Netns;

const POOL: &str = "10.153.0.0/16";
const SETTLE: Duration = Duration::from_secs(10);
const HTTPS_PORT: u16 = 7481;

/// The admin's machine and how it reaches the API.
struct Admin<'a> {
    ctl: &'a Controller,
    ns: &'a Netns,
    https: String,
}

impl<'a> Admin<'a> {
    /// The admin on agent `host`'s machine, with the API at `https`.
    fn on(mesh: &'a Mesh, host: &str, https: &str) -> anyhow::Result<Self> {
        Ok(Admin {
            ctl: &mesh.controller,
            ns: mesh.ns(host)?,
            https: https.to_string(),
        })
    }

    /// `warren-controller ARGS` pinned to `fingerprint`, whatever its exit.
    fn run_pinned(&self, fingerprint: &str, api: &str, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = self.ctl.remote_command(self.ns, api, args);
        cmd.env("WARREN_API_FINGERPRINT", fingerprint);
        Ok(command::output(&mut cmd)?)
    }

    /// Over https, pinned to the controller's fingerprint; must succeed.
    fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run_pinned(self.ctl.fingerprint(), &self.https, args)?;
        ensure!(
            out.status.success(),
            "warren-controller {}: {}",
            args.join(" "),
            text(&out)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.ok(&args)?;
        serde_json::from_str(&out).with_context(|| format!("{args:?}: {out}"))
    }

    /// The actions of `audit ARGS --json`, oldest first.
    fn audit_actions(&self, args: &[&str]) -> anyhow::Result<Vec<String>> {
        let mut all = vec!["audit"];
        all.extend_from_slice(args);
        let json = self.json(&all)?;
        let entries = json["entries"]
            .as_array()
            .with_context(|| format!("no entries: {json}"))?;
        Ok(entries
            .iter()
            .map(|e| e["action"].as_str().unwrap_or("?").to_string())
            .collect())
    }

    /// Must exit 1 with `why` on stderr.
    fn refused(
        &self,
        fingerprint: &str,
        api: &str,
        args: &[&str],
        why: &str,
    ) -> anyhow::Result<()> {
        let out = self.run_pinned(fingerprint, api, args)?;
        ensure!(
            out.status.code() == Some(1) && String::from_utf8_lossy(&out.stderr).contains(why),
            "warren-controller {} against {api} should fail saying {why:?}: {}",
            args.join(" "),
            text(&out)
        );
        Ok(())
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
fn an_admin_on_another_machine_uses_the_api_over_https_and_queries_the_audit_log() {
    e2e("admin_https::over_https", |lab| {
        let listen = format!("0.0.0.0:{HTTPS_PORT}");
        let mut mesh = Mesh::build_with_controller(lab, &["x", "y"], &["--listen-https", &listen])?;
        let ctl_addr = mesh.star.spoke(CONTROLLER_ROLE)?.addr;
        let https = format!("https://{ctl_addr}:{HTTPS_PORT}");
        let admin = Admin::on(&mesh, "y", &https)?;

        let info = admin.json(&["info"])?;
        ensure!(
            info["fingerprints"]["https"] == admin.ctl.fingerprint()
                && info["listen"]["https"] == format!("https://{listen}")
                && info["features"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f == "api-https")),
            "info over https: {info}"
        );
        let human = admin.ok(&["info"])?;
        ensure!(
            human.contains(admin.ctl.fingerprint()),
            "info names the fingerprint: {human}"
        );

        // A member joins without a key; the admin approves it over https
        // and names it.
        let net = admin.ctl.network_create("ops", POOL)?;
        mesh.join_ok("x", &net, None)?;
        let node = mesh.agent("x")?.node_id().to_string();
        mesh.agent_mut("x")?.wait_state(&net, "pending", SETTLE)?;
        let admin = Admin::on(&mesh, "y", &https)?;
        admin.ok(&["member", "authorize", &net, &node])?;
        admin.ok(&["member", "rename", &net, &node, "laptop"])?;
        let member = admin.ctl.member(&net, &node)?;
        ensure!(member.authorized && member.name == "laptop", "{member:?}");

        // The audit filters as a person types them.
        let timeline = admin.ok(&["audit", "--since", "10m", "--action", "member.authorize"])?;
        let lines: Vec<&str> = timeline.lines().collect();
        ensure!(
            lines.len() == 1
                && lines[0].contains("token:")
                && lines[0].contains(&format!("({node})"))
                && lines[0].contains("state: pending → authorized"),
            "one approval, by the admin's token, of the node, from pending: {timeline}"
        );
        let about_laptop = admin.audit_actions(&["--member", "laptop"])?;
        ensure!(
            about_laptop.iter().any(|a| a == "member.rename")
                && about_laptop.iter().any(|a| a == "member.authorize")
                && about_laptop.iter().all(|a| a.starts_with("member.")),
            "entries about the laptop: {about_laptop:?}"
        );
        let by_node = admin.audit_actions(&["--text", &node, "--since", "1h"])?;
        ensure!(
            by_node.first().map(String::as_str) == Some("member.join"),
            "the node's first entry is its join: {by_node:?}"
        );
        let by_admin = admin.audit_actions(&["--actor", "token:", "--network", &net])?;
        ensure!(
            by_admin == ["network.create", "member.authorize", "member.rename"],
            "what the admin's token did in the network: {by_admin:?}"
        );
        let before = admin.audit_actions(&["--until", "2020-01-01T00:00:00Z"])?;
        ensure!(before.is_empty(), "nothing before 2020: {before:?}");

        // What a person sees when something is wrong.
        let fingerprint = admin.ctl.fingerprint().to_string();
        admin.refused(
            &fingerprint,
            &admin.https,
            &["audit", "--since", "yesterday"],
            "since: \"yesterday\" is neither an RFC 3339 time",
        )?;
        admin.refused(
            &"ab".repeat(32),
            &admin.https,
            &["member", "list", &net],
            &format!("fingerprint {fingerprint}, not the pinned"),
        )?;
        let plain = admin.https.replace("https://", "http://");
        admin.refused(&fingerprint, &plain, &["info"], "are for an https:// API")?;
        let out = command::output(&mut admin.ctl.remote_command(admin.ns, &plain, ["info"]))?;
        ensure!(
            out.status.code() == Some(1)
                && String::from_utf8_lossy(&out.stderr).contains("this port speaks HTTPS"),
            "http:// to the HTTPS port: {}",
            text(&out)
        );
        mesh.ensure_running()?;
        Ok(())
    });
}
