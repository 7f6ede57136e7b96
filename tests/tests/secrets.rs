//! Secrets on the node, end to end: a pre-auth key reaches `warren join`
//! from a private file (`--key-file`) or from `WARREN_PREAUTH_KEY`, never
//! only from argv; a key file that others can read is refused; the state
//! folder is made 0700 on start.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

use anyhow::ensure;
use warren_lab::command;
use warren_lab::e2e;
use warren_lab::managed::ManagedAgent;
use warren_lab::mesh::Mesh;

const POOL: &str = "10.153.0.0/16";
const SETTLE: Duration = Duration::from_secs(10);

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `warren join NET` on `agent` against the mesh's controller, with `extra`
/// flags and no `--key`.
fn join(
    mesh: &Mesh,
    agent: &ManagedAgent,
    net: &str,
    extra: &[&str],
    env: Option<&str>,
) -> anyhow::Result<Output> {
    let addr = mesh.controller.quic_addr().to_string();
    let mut args = vec![
        "join",
        net,
        "--controller",
        &addr,
        "--fingerprint",
        mesh.controller.fingerprint(),
        "--name",
        agent.name(),
        "--wait",
        "10s",
    ];
    args.extend_from_slice(extra);
    let mut cmd = agent.command(args);
    cmd.env_remove("WARREN_PREAUTH_KEY");
    if let Some(key) = env {
        cmd.env("WARREN_PREAUTH_KEY", key);
    }
    Ok(command::output(&mut cmd)?)
}

#[test]
fn a_preauth_key_comes_from_a_private_file_or_the_environment() {
    e2e("secrets", |lab| {
        let mut mesh = Mesh::build(lab, &["a", "b", "c"])?;
        let net = mesh.controller.network_create("lab", POOL)?;
        let key = mesh.controller.key_create(&net, true)?;

        // The state folder the lab made (0755) is private once the agent ran.
        let state = mesh.agent("a")?.state_dir().to_owned();
        let mode = std::fs::metadata(&state)?.permissions().mode() & 0o777;
        ensure!(
            mode == 0o700,
            "state folder {} is {mode:04o}, not 0700",
            state.display()
        );

        let keys = lab.subdir("keys")?;
        let open = keys.join("open.key");
        std::fs::write(&open, format!("{key}\n"))?;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644))?;
        let private = keys.join("private.key");
        std::fs::write(&private, format!("{key}\n"))?;
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600))?;

        // A key file anyone can read: refused before anything is joined.
        let out = join(
            &mesh,
            mesh.agent("c")?,
            &net,
            &["--key-file", &open.to_string_lossy()],
            None,
        )?;
        ensure!(
            !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("readable by group or others"),
            "a world-readable key file must be refused: {}",
            text(&out)
        );
        ensure!(
            mesh.agent("c")?.status()?.network(&net).is_err(),
            "c joined with a refused key file"
        );

        // A private file, and the environment: both authorize at once.
        let out = join(
            &mesh,
            mesh.agent("a")?,
            &net,
            &["--key-file", &private.to_string_lossy()],
            None,
        )?;
        ensure!(out.status.success(), "join --key-file: {}", text(&out));
        let out = join(&mesh, mesh.agent("b")?, &net, &[], Some(&key))?;
        ensure!(
            out.status.success(),
            "join with WARREN_PREAUTH_KEY: {}",
            text(&out)
        );
        for name in ["a", "b"] {
            mesh.agent_mut(name)?
                .wait_state(&net, "authorized", SETTLE)?;
            println!("{name} authorized");
        }
        Ok(())
    });
}
