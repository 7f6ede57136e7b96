//! The configuration of people's sign-in: `listen-https`, `public-url`,
//! `https-cert`/`https-key` and the `[oidc]` or `[github]` table of
//! `controller.toml` (one provider: never both).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use warren_controller::identity::github::{DEFAULT_API_URL, DEFAULT_TIMEOUT, DEFAULT_URL};
use warren_controller::identity::{
    GithubSettings, OidcSettings, ProviderSettings, SignInNetworks, SignInSettings,
};
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
    recheck_every: Option<String>,
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
    /// How often people are checked at the provider, e.g. `1h`.
    pub recheck_every: String,
    #[serde(skip)]
    client_secret: Option<String>,
}

/// The default groups claim, as Keycloak, Dex and Authentik name it.
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";

const OIDC: &str = "[oidc]";
const GITHUB: &str = "[github]";

/// `[github]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GithubFile {
    url: Option<String>,
    api_url: Option<String>,
    client_id: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    allowed_organizations: Option<Vec<String>>,
    networks: Option<Vec<String>>,
    recheck_every: Option<String>,
}

/// `[github]` as `serve` runs with it (printed by `check-config`, without
/// the secret).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct EffectiveGithub {
    pub url: String,
    pub api_url: String,
    pub client_id: String,
    pub client_secret_file: PathBuf,
    pub allowed_organizations: Vec<String>,
    pub networks: Vec<String>,
    /// How often people are checked at GitHub, e.g. `1h`.
    pub recheck_every: String,
    #[serde(skip)]
    client_secret: String,
}

/// `recheck-every`: a duration from a second to 30 days (default an hour),
/// written back in humantime's form.
fn recheck_every(table: &str, value: Option<String>) -> anyhow::Result<String> {
    let every = match value {
        Some(text) => humantime::parse_duration(text.trim()).with_context(|| {
            format!("{table} recheck-every {text:?} is not a duration such as 1h")
        })?,
        None => warren_controller::identity::DEFAULT_RECHECK,
    };
    if every < std::time::Duration::from_secs(1)
        || every > std::time::Duration::from_secs(30 * 86_400)
    {
        bail!("{table} recheck-every must be from 1s to 30d");
    }
    Ok(humantime::format_duration(every).to_string())
}

/// `url` and `api-url`: http(s), no trailing slash, nothing after the path.
fn github_url(key: &str, url: Option<String>, default: &str) -> anyhow::Result<String> {
    let url = url.unwrap_or_else(|| default.to_owned());
    let trimmed = url.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed)
        .with_context(|| format!("{GITHUB} {key} {url:?} is not a URL"))?;
    if !matches!(parsed.scheme(), "https" | "http")
        || parsed.host().is_none()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
    {
        bail!("{GITHUB} {key} must be an http(s) URL with no query, got {url:?}");
    }
    Ok(trimmed.to_owned())
}

pub fn resolve_github(file: GithubFile) -> anyhow::Result<EffectiveGithub> {
    let url = github_url("url", file.url, DEFAULT_URL)?;
    let api_url = github_url("api-url", file.api_url, DEFAULT_API_URL)?;
    let client_id = file
        .client_id
        .filter(|c| !c.trim().is_empty())
        .context("[github] needs client-id: the OAuth app's client ID")?;
    let client_secret_file = file
        .client_secret_file
        .context("[github] needs client-secret-file: a file with the OAuth app's client secret")?;
    let client_secret = read_secret(GITHUB, &client_secret_file)?;
    let mut allowed_organizations: Vec<String> = file
        .allowed_organizations
        .unwrap_or_default()
        .into_iter()
        .map(|o| o.trim().to_ascii_lowercase())
        .collect();
    if let Some(bad) = allowed_organizations
        .iter()
        .find(|o| o.is_empty() || !o.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        bail!("[github] allowed-organizations: {bad:?} is not an organization login");
    }
    allowed_organizations.sort();
    allowed_organizations.dedup();
    let networks = file.networks.unwrap_or_else(|| vec!["*".into()]);
    parse_networks(GITHUB, &networks)?;
    Ok(EffectiveGithub {
        url,
        api_url,
        client_id,
        client_secret_file,
        allowed_organizations,
        networks,
        recheck_every: recheck_every(GITHUB, file.recheck_every)?,
        client_secret,
    })
}

/// What `check-config` says about the sign-in settings besides printing
/// them.
pub fn notes(github: Option<&EffectiveGithub>) -> Vec<String> {
    match github {
        Some(g) if g.allowed_organizations.is_empty() => vec![format!(
            "[github] allowed-organizations is empty: any account at {} may sign devices in",
            g.url
        )],
        _ => Vec::new(),
    }
}

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
        Some(path) => Some(read_secret(OIDC, path)?),
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
    parse_networks(OIDC, &networks)?;
    Ok(EffectiveOidc {
        issuer,
        client_id,
        client_secret_file: file.client_secret_file,
        groups_claim: file
            .groups_claim
            .unwrap_or_else(|| DEFAULT_GROUPS_CLAIM.into()),
        allowed_domains,
        networks,
        recheck_every: recheck_every(OIDC, file.recheck_every)?,
        client_secret,
    })
}

/// `["*"]`, or network IDs; `table` names the table for errors.
fn parse_networks(table: &str, list: &[String]) -> anyhow::Result<SignInNetworks> {
    if list.iter().any(|n| n == "*") {
        if list.len() > 1 {
            bail!("{table} networks: \"*\" (every network) stands alone");
        }
        return Ok(SignInNetworks::All);
    }
    let ids = list
        .iter()
        .map(|n| {
            n.parse::<NetworkId>()
                .map_err(|_| anyhow::anyhow!("{table} networks: {n:?} is not a network ID"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(SignInNetworks::Only(ids))
}

/// The client secret: the file's first line. Refused if others may read it.
fn read_secret(table: &str, path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{table} client-secret-file {}", path.display()))?;
    if meta.permissions().mode() & 0o007 != 0 {
        bail!(
            "{table} client-secret-file {} may be read by others: chmod o-rwx it",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{table} client-secret-file {}", path.display()))?;
    let secret = text.lines().next().unwrap_or("").trim().to_owned();
    if secret.is_empty() {
        bail!("{table} client-secret-file {} is empty", path.display());
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

/// What `serve` gives the server, from the resolved settings: sign-in
/// with the one provider configured, if any.
pub fn settings(
    public_url: Option<&str>,
    listen_https: Option<SocketAddr>,
    oidc: Option<&EffectiveOidc>,
    github: Option<&EffectiveGithub>,
) -> anyhow::Result<Option<SignInSettings>> {
    let (table, provider, networks, every) = match (oidc, github) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => bail!(
            "[oidc] and [github] are both set: people sign in with one provider, remove one table"
        ),
        (Some(oidc), None) => (
            OIDC,
            ProviderSettings::Oidc(OidcSettings {
                issuer: oidc.issuer.clone(),
                client_id: oidc.client_id.clone(),
                client_secret: oidc.client_secret.clone(),
                groups_claim: oidc.groups_claim.clone(),
                allowed_domains: oidc.allowed_domains.clone(),
            }),
            &oidc.networks,
            &oidc.recheck_every,
        ),
        (None, Some(github)) => (
            GITHUB,
            ProviderSettings::Github(GithubSettings {
                url: github.url.clone(),
                api_url: github.api_url.clone(),
                client_id: github.client_id.clone(),
                client_secret: github.client_secret.clone(),
                allowed_organizations: github.allowed_organizations.clone(),
                timeout: DEFAULT_TIMEOUT,
            }),
            &github.networks,
            &github.recheck_every,
        ),
    };
    if listen_https.is_none() {
        bail!("{table} needs listen-https: people sign in on the controller's HTTPS pages");
    }
    let public_url = public_url.with_context(|| {
        format!(
            "{table} needs public-url: the https:// address people's browsers reach listen-https at"
        )
    })?;
    Ok(Some(SignInSettings {
        public_url: public_url.to_owned(),
        provider,
        networks: parse_networks(table, networks)?,
        recheck_every: humantime::parse_duration(every)
            .with_context(|| format!("{table} recheck-every {every:?}"))?,
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
        assert_eq!(
            parse_networks(OIDC, &["*".into()]).unwrap(),
            SignInNetworks::All
        );
        let id = "8056c2e21c000001";
        assert_eq!(
            parse_networks(OIDC, &[id.into()]).unwrap(),
            SignInNetworks::Only(vec![id.parse().unwrap()])
        );
        assert!(parse_networks(OIDC, &["*".into(), id.into()]).is_err());
        let e = parse_networks(GITHUB, &["prod".into()]).unwrap_err();
        assert!(e.to_string().starts_with("[github] networks"), "{e}");
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
    fn private_secret(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let secret = dir.join("github-secret");
        std::fs::write(&secret, "gh-s3cret\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
        secret
    }

    #[test]
    fn a_github_table_parses_with_defaults_and_never_prints_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "client-id = \"Ov23liwarren\"\nclient-secret-file = {:?}\n\
             allowed-organizations = [\"Acme\", \"acme\", \"widgets-inc\"]\n",
            private_secret(dir.path())
        );
        let file: GithubFile = toml::from_str(&text).unwrap();
        let ok = resolve_github(file).unwrap();
        assert_eq!(ok.url, "https://github.com");
        assert_eq!(ok.api_url, "https://api.github.com");
        assert_eq!(ok.allowed_organizations, vec!["acme", "widgets-inc"]);
        assert_eq!(ok.networks, vec!["*"]);
        assert_eq!(ok.client_secret, "gh-s3cret");
        assert!(notes(Some(&ok)).is_empty());
        let printed = toml::to_string(&ok).unwrap();
        assert!(!printed.contains("gh-s3cret"), "{printed}");
        assert!(printed.contains("allowed-organizations"), "{printed}");
        let typo: Result<GithubFile, _> = toml::from_str("allowed-orgs = [\"acme\"]\n");
        assert!(typo.is_err(), "unknown keys are refused");
    }

    #[test]
    fn a_github_table_for_an_enterprise_server_and_without_organizations() {
        let dir = tempfile::tempdir().unwrap();
        let file = GithubFile {
            url: Some("https://ghe.example.org/".into()),
            api_url: Some("https://ghe.example.org/api/v3/".into()),
            client_id: Some("warren".into()),
            client_secret_file: Some(private_secret(dir.path())),
            ..GithubFile::default()
        };
        let ok = resolve_github(file).unwrap();
        assert_eq!(ok.url, "https://ghe.example.org");
        assert_eq!(ok.api_url, "https://ghe.example.org/api/v3");
        assert!(ok.allowed_organizations.is_empty());
        let notes = notes(Some(&ok));
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("any account"), "{notes:?}");
    }

    #[test]
    fn a_github_table_refuses_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let secret = private_secret(dir.path());
        let file = || GithubFile {
            client_id: Some("warren".into()),
            client_secret_file: Some(secret.clone()),
            ..GithubFile::default()
        };
        let error = |f: GithubFile| resolve_github(f).unwrap_err().to_string();
        let e = error(GithubFile {
            client_id: None,
            ..file()
        });
        assert!(e.contains("client-id"), "{e}");
        let e = error(GithubFile {
            client_secret_file: None,
            ..file()
        });
        assert!(e.contains("client-secret-file"), "{e}");
        let e = error(GithubFile {
            url: Some("ftp://github.com".into()),
            ..file()
        });
        assert!(e.contains("[github] url"), "{e}");
        let e = error(GithubFile {
            api_url: Some("https://api.github.com?x=1".into()),
            ..file()
        });
        assert!(e.contains("[github] api-url"), "{e}");
        let e = error(GithubFile {
            allowed_organizations: Some(vec!["acme corp".into()]),
            ..file()
        });
        assert!(e.contains("not an organization login"), "{e}");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o604)).unwrap();
        let e = error(file());
        assert!(e.contains("[github] client-secret-file"), "{e}");
        assert!(e.contains("read by others"), "{e}");
    }

    #[test]
    fn one_provider_and_it_needs_the_https_listener() {
        let dir = tempfile::tempdir().unwrap();
        let github = resolve_github(GithubFile {
            client_id: Some("warren".into()),
            client_secret_file: Some(private_secret(dir.path())),
            networks: Some(vec!["8056c2e21c000001".into()]),
            ..GithubFile::default()
        })
        .unwrap();
        let oidc = resolve_oidc(OidcFile {
            issuer: Some("https://idp.example".into()),
            client_id: Some("warren".into()),
            ..OidcFile::default()
        })
        .unwrap();
        let https: SocketAddr = "[::]:7482".parse().unwrap();
        let url = Some("https://warren.example.org:7482");
        assert!(settings(url, Some(https), None, None).unwrap().is_none());
        let e = settings(url, Some(https), Some(&oidc), Some(&github)).unwrap_err();
        assert!(e.to_string().contains("both"), "{e}");
        let e = settings(url, None, None, Some(&github)).unwrap_err();
        assert!(e.to_string().contains("[github] needs listen-https"), "{e}");
        let e = settings(None, Some(https), None, Some(&github)).unwrap_err();
        assert!(e.to_string().contains("[github] needs public-url"), "{e}");
        let ok = settings(url, Some(https), None, Some(&github))
            .unwrap()
            .unwrap();
        let ProviderSettings::Github(g) = &ok.provider else {
            panic!("not GitHub: {:?}", ok.provider);
        };
        assert_eq!(g.client_secret, "gh-s3cret");
        assert_eq!(
            ok.networks,
            SignInNetworks::Only(vec!["8056c2e21c000001".parse().unwrap()])
        );
        let ok = settings(url, Some(https), Some(&oidc), None)
            .unwrap()
            .unwrap();
        assert!(matches!(ok.provider, ProviderSettings::Oidc(_)));
    }
}
