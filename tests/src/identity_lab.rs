//! The sign-in lab: a controller with its HTTPS pages and an OpenID client
//! registered at a real provider ([`OidcProvider`], spoke "idp"), managed
//! agents on a [`Star`], and `warren join` without a key as a person runs
//! it.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::browser::Browser;
use crate::controller::{self, Controller};
use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::managed::ManagedAgent;
use crate::mesh::{Mesh, CONTROLLER_ROLE};
use crate::oidc::{self, OidcClient, OidcProvider, OidcUser};
use crate::process::Process;
use crate::star::Star;
use crate::wait::{self, Poll};

pub const POOL: &str = "10.147.0.0/16";
pub const IDP_ROLE: &str = "idp";
pub const IDP_PORT: u16 = 9000;
pub const HTTPS_PORT: u16 = 7482;
pub const CLIENT_ID: &str = "warren-lab";
pub const CLIENT_SECRET: &str = "lab-client-secret";
/// The only e-mail domain the controller lets sign in.
pub const ALLOWED_DOMAIN: &str = "example.com";

/// How long `warren join` gets to show its page, and a page to answer.
pub const PAGE_WAIT: Duration = Duration::from_secs(15);

/// Fields drop in order: the provider stops before the mesh's star takes
/// its namespace away.
#[derive(Debug)]
pub struct IdentityLab {
    pub provider: OidcProvider,
    pub mesh: Mesh,
    /// A network where people sign devices in (every network is).
    pub net: String,
    /// `https://ADDR:PORT` of the controller's pages.
    pub public_url: String,
}

/// ana (ops) and bo (data-team), in the allowed domain, and eve (outside it).
pub fn lab_users() -> Vec<OidcUser> {
    vec![
        OidcUser {
            login: "ana".into(),
            email: format!("ana@{ALLOWED_DOMAIN}"),
            name: "Ana".into(),
            groups: vec!["ops".into()],
        },
        OidcUser {
            login: "bo".into(),
            email: format!("bo@{ALLOWED_DOMAIN}"),
            name: "Bo".into(),
            groups: vec!["data-team".into()],
        },
        OidcUser {
            login: "eve".into(),
            email: "eve@elsewhere.test".into(),
            name: "Eve".into(),
            groups: vec![],
        },
    ]
}

impl IdentityLab {
    /// The star (controller, "idp" and `agents`), the provider with
    /// [`lab_users`], the controller signing in through it, one managed
    /// agent per name, and network "corp".
    pub fn build(lab: &Lab, agents: &[&str]) -> Result<IdentityLab> {
        Self::build_with(lab, agents, "")
    }

    /// [`IdentityLab::build`] with `more` at the end of the controller's
    /// TOML: keys there land in `[oidc]` (e.g. `recheck-every`), or start
    /// tables of their own (`[roles]`).
    pub fn build_with(lab: &Lab, agents: &[&str], more: &str) -> Result<IdentityLab> {
        let mut roles = vec![CONTROLLER_ROLE, IDP_ROLE];
        roles.extend_from_slice(agents);
        let star = Star::build(lab, &roles)?;
        let idp = star.spoke(IDP_ROLE)?;
        let ctl = star.spoke(CONTROLLER_ROLE)?;
        let https = SocketAddr::new(ctl.addr.into(), HTTPS_PORT);
        let public_url = format!("https://{https}");
        let provider = OidcProvider::start(
            lab,
            &idp.ns,
            SocketAddr::new(idp.addr.into(), IDP_PORT),
            &[OidcClient {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                redirect_uris: vec![format!("{public_url}/oidc/callback")],
            }],
            &lab_users(),
        )?;
        let dir = lab.subdir("controller-config")?;
        let secret = dir.join("client-secret");
        write(&secret, &format!("{CLIENT_SECRET}\n"))?;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| LabError::io(format!("chmod {}", secret.display()), e))?;
        let config = dir.join("controller.toml");
        write(
            &config,
            &format!(
                "listen-https = \"{https}\"\npublic-url = \"{public_url}\"\n\n[oidc]\n\
                 issuer = \"{issuer}\"\nclient-id = \"{CLIENT_ID}\"\n\
                 client-secret-file = \"{secret}\"\nallowed-domains = [\"{ALLOWED_DOMAIN}\"]\n{more}",
                issuer = provider.issuer(),
                secret = secret.display(),
            ),
        )?;
        let config = config
            .to_str()
            .ok_or_else(|| LabError::Invalid(format!("{} is not UTF-8", config.display())))?
            .to_owned();
        let controller = Controller::start_with(
            lab,
            &ctl.ns,
            SocketAddr::new(ctl.addr.into(), controller::QUIC_PORT),
            &["--config", &config],
        )?;
        let agents = agents
            .iter()
            .map(|name| ManagedAgent::start(lab, &star.spoke(name)?.ns, name, None))
            .collect::<Result<Vec<_>>>()?;
        let net = controller.network_create("corp", POOL)?;
        Ok(IdentityLab {
            provider,
            mesh: Mesh {
                agents,
                controller,
                star,
            },
            net,
            public_url,
        })
    }

    /// `warren join NET` on agent `name` without a key, in the background,
    /// waiting up to `sign_in_wait` (a `--sign-in-wait` value) for a person.
    pub fn join_without_key(&self, lab: &Lab, name: &str, sign_in_wait: &str) -> Result<Process> {
        join_without_key(lab, &self.mesh, &self.net, name, sign_in_wait)
    }

    /// The sign-in page `warren join` printed, once it has.
    pub fn printed_sign_in_url(&self, join: &mut Process) -> Result<String> {
        printed_sign_in_url(join, &self.public_url)
    }
}

/// `warren join NET` on agent `name` of `mesh` without a key, in the
/// background, waiting up to `sign_in_wait` for a person.
pub fn join_without_key(
    lab: &Lab,
    mesh: &Mesh,
    net: &str,
    name: &str,
    sign_in_wait: &str,
) -> Result<Process> {
    let agent = mesh.agent(name)?;
    let quic = mesh.controller.quic_addr().to_string();
    let cmd = agent.command([
        "join",
        net,
        "--controller",
        &quic,
        "--fingerprint",
        mesh.controller.fingerprint(),
        "--name",
        name,
        "--sign-in-wait",
        sign_in_wait,
    ]);
    Process::spawn(lab.dir(), &format!("join-{name}"), cmd)
}

/// The sign-in page under `public_url` that `process` (`warren join` or
/// `warren login`) printed, once it has.
pub fn printed_sign_in_url(process: &mut Process, public_url: &str) -> Result<String> {
    let prefix = format!("{public_url}/signin/");
    wait::until("a sign-in page to be printed", PAGE_WAIT, || {
        let err = process.stderr();
        if let Some(url) = err.split_whitespace().find(|w| w.starts_with(&prefix)) {
            return Ok(Poll::Ready(url.to_owned()));
        }
        if let Some(status) = process.exit_status()? {
            return Err(LabError::Invalid(format!(
                "{} exited ({status}) before showing a page: {err}",
                process.command_line()
            )));
        }
        Ok(Poll::Pending(err))
    })
}

/// Opens a device's sign-in page in `browser`, follows "Sign in with" to
/// the provider and, if the provider shows its login form (no session at
/// the provider yet), signs in as `login`. Returns once the browser is
/// back at the controller.
pub fn sign_in_from_device_page(
    browser: &Browser,
    page: &str,
    public_url: &str,
    login: &str,
) -> Result<()> {
    browser.goto(page)?;
    browser.click("#sign-in")?;
    let start = format!("{page}/start");
    let at_form = wait::until(
        "the provider's login form or the way back to the controller",
        PAGE_WAIT,
        || {
            let url = browser.current_url()?;
            if url.starts_with(public_url) && url != page && !url.starts_with(&start) {
                return Ok(Poll::Ready(false));
            }
            if browser.find_now(oidc::LOGIN_FORM)?.is_some() {
                return Ok(Poll::Ready(true));
            }
            Ok(Poll::Pending(browser.whereabouts()))
        },
    )?;
    if at_form {
        oidc::sign_in(browser, login, "any password")?;
    }
    Ok(())
}

fn write(path: &std::path::Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| LabError::io(format!("writing {}", path.display()), e))
}
