//! The configuration of people's sign-in: `listen-https`, `public-url`,
//! `https-cert`/`https-key` and the `[oidc]` table of `controller.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use warren_controller::identity::{OidcSettings, SignInNetworks, SignInSettings};
use warren_proto::NetworkId;

/// `[oidc]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OidcFile {
    issuer: Option<String>,
    client_id: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    groups_claim: Option<String>,
    allowed_domains: Option<Vec<String>>,
    networks: Option<Vec<String>>,
}

/// `[oidc]` as `serve` runs with it (printed by `check-config`, without
/// the secret).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct EffectiveOidc {
    pub issuer: String,
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    pub groups_claim: String,
    pub allowed_domains: Vec<String>,
    pub networks: Vec<String>,
    #[serde(skip)]
    client_secret: Option<String>,
}

/// The default groups claim, as Keycloak, Dex and Authentik name it.
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";

pub fn resolve_oidc(file: OidcFile) -> anyhow::Result<EffectiveOidc> {
    let issuer = file
        .issuer
        .filter(|i| !i.trim().is_empty())
        .context("[oidc] needs issuer: the provider's issuer URL")?;
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        bail!("[oidc] issuer must be an http(s) URL, got {issuer:?}");
    }
    let client_id = file
        .client_id
        .filter(|c| !c.trim().is_empty())
        .context("[oidc] needs client-id: the client registered at the provider")?;
    let client_secret = match &file.client_secret_file {
        Some(path) => Some(read_secret(path)?),
        None => None,
    };
    let allowed_domains: Vec<String> = file
        .allowed_domains
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
        .collect();
    if let Some(bad) = allowed_domains
        .iter()
        .find(|d| d.is_empty() || d.contains(char::is_whitespace) || d.contains('@'))
    {
        bail!("[oidc] allowed-domains: {bad:?} is not a domain");
    }
    let networks = file.networks.unwrap_or_else(|| vec!["*".into()]);
    parse_networks(&networks)?;
    Ok(EffectiveOidc {
        issuer,
        client_id,
        client_secret_file: file.client_secret_file,
        groups_claim: file
            .groups_claim
            .unwrap_or_else(|| DEFAULT_GROUPS_CLAIM.into()),
        allowed_domains,
        networks,
        client_secret,
    })
}

/// `["*"]`, or network IDs.
fn parse_networks(list: &[String]) -> anyhow::Result<SignInNetworks> {
    if list.iter().any(|n| n == "*") {
        if list.len() > 1 {
            bail!("[oidc] networks: \"*\" (every network) stands alone");
        }
        return Ok(SignInNetworks::All);
    }
    let ids = list
        .iter()
        .map(|n| {
            n.parse::<NetworkId>()
                .map_err(|_| anyhow::anyhow!("[oidc] networks: {n:?} is not a network ID"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(SignInNetworks::Only(ids))
}

/// The client secret: the file's first line. Refused if others may read it.
fn read_secret(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("[oidc] client-secret-file {}", path.display()))?;
    if meta.permissions().mode() & 0o007 != 0 {
        bail!(
            "[oidc] client-secret-file {} may be read by others: chmod o-rwx it",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("[oidc] client-secret-file {}", path.display()))?;
    let secret = text.lines().next().unwrap_or("").trim().to_owned();
    if secret.is_empty() {
        bail!("[oidc] client-secret-file {} is empty", path.display());
    }
    Ok(secret)
}

/// `public-url`: `https://HOST[:PORT]`, nothing after it.
pub fn check_public_url(url: &str) -> anyhow::Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .with_context(|| format!("public-url must start with https://, got {url:?}"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace)
    {
        bail!("public-url must be https://HOST[:PORT] with nothing after it, got {url:?}");
    }
    Ok(trimmed.to_owned())
}

/// What `serve` gives the server, from the resolved settings.
pub fn settings(
    public_url: Option<&str>,
    listen_https: Option<SocketAddr>,
    oidc: Option<&EffectiveOidc>,
) -> anyhow::Result<Option<SignInSettings>> {
    let Some(oidc) = oidc else {
        return Ok(None);
    };
    if listen_https.is_none() {
        bail!("[oidc] needs listen-https: people sign in on the controller's HTTPS pages");
    }
    let public_url = public_url.context(
        "[oidc] needs public-url: the https:// address people's browsers reach listen-https at",
    )?;
    Ok(Some(SignInSettings {
        public_url: public_url.to_owned(),
        oidc: OidcSettings {
            issuer: oidc.issuer.clone(),
            client_id: oidc.client_id.clone(),
            client_secret: oidc.client_secret.clone(),
            groups_claim: oidc.groups_claim.clone(),
            allowed_domains: oidc.allowed_domains.clone(),
        },
        networks: parse_networks(&oidc.networks)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_are_https_origins() {
        assert_eq!(
            check_public_url("https://warren.example.org:7482/").unwrap(),
            "https://warren.example.org:7482"
        );
        for bad in [
            "http://warren.example.org",
            "https://",
            "https://warren.example.org/signin",
            "https://a@b",
            "warren.example.org",
        ] {
            assert!(check_public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks_are_all_or_ids() {
        assert_eq!(parse_networks(&["*".into()]).unwrap(), SignInNetworks::All);
        let id = "8056c2e21c000001";
        assert_eq!(
            parse_networks(&[id.into()]).unwrap(),
            SignInNetworks::Only(vec![id.parse().unwrap()])
        );
        assert!(parse_networks(&["*".into(), id.into()]).is_err());
        assert!(parse_networks(&["prod".into()]).is_err());
    }

    #[test]
    fn an_oidc_table_needs_issuer_and_client_and_a_private_secret() {
        let e = resolve_oidc(OidcFile::default()).unwrap_err().to_string();
        assert!(e.contains("issuer"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let file = || OidcFile {
            issuer: Some("https://idp.example".into()),
            client_id: Some("warren".into()),
            client_secret_file: Some(secret.clone()),
            allowed_domains: Some(vec!["@Example.com".into()]),
            ..OidcFile::default()
        };
        let e = resolve_oidc(file()).unwrap_err().to_string();
        assert!(e.contains("read by others"), "{e}");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ok = resolve_oidc(file()).unwrap();
        assert_eq!(ok.client_secret.as_deref(), Some("s3cret"));
        assert_eq!(ok.allowed_domains, vec!["example.com"]);
        assert_eq!(ok.networks, vec!["*"]);
        assert_eq!(ok.groups_claim, "groups");
        let printed = toml::to_string(&ok).unwrap();
        assert!(!printed.contains("s3cret"), "{printed}");
    }
}
