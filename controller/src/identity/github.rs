//! GitHub (or GitHub Enterprise Server) as the identity provider, through
//! an OAuth app: the authorization code flow with state and PKCE (S256),
//! then GitHub's REST API with the person's token for who they are
//! (`/user`), their verified primary e-mail address (`/user/emails`),
//! their organizations (`/user/memberships/orgs`) and teams
//! (`/user/teams`).
//!
//! Groups: each allowed organization the person is an active member of
//! (every organization when none are listed), by its login, and each of
//! their teams in those organizations, by its slug; lowercased, and only
//! when that is a DNS label (policy group names are), with `_` and `.`
//! read as `-`.
//!
//! Every request has a timeout, follows no redirect, and reads at most
//! [`MAX_BODY`] bytes; an answer that is not what GitHub sends is an
//! error, never a panic. No code or token is logged or put in an error.

use std::time::Duration;

use base64::Engine as _;
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::provider::{error_chain, Begin, ProviderError, Recheck, SignedIn};
use super::random_secret;
use crate::store::Person;

/// The redirect path on the controller's HTTPS listener.
pub const CALLBACK_PATH: &str = "/github/callback";
/// github.com's web and API addresses, the defaults.
pub const DEFAULT_URL: &str = "https://github.com";
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// A request to GitHub that takes longer than this fails (the default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Who the person is, their e-mail addresses, their organizations and teams.
const SCOPES: &str = "read:user user:email read:org";
/// The most of one answer we read.
pub const MAX_BODY: usize = 1024 * 1024;
/// Lists are read 100 at a time, at most this many pages.
const PAGE_SIZE: usize = 100;
const MAX_PAGES: usize = 10;
/// At most this many groups per person.
const MAX_GROUPS: usize = 256;

/// The `[github]` table of the controller's configuration, resolved.
#[derive(Debug, Clone)]
pub struct GithubSettings {
    /// The web address (authorization and token endpoints), without a
    /// trailing slash: `https://github.com`, or a GitHub Enterprise
    /// Server's. Users are stored with it as their issuer.
    pub url: String,
    /// The REST API's base, without a trailing slash:
    /// `https://api.github.com`, or `https://HOST/api/v3`.
    pub api_url: String,
    pub client_id: String,
    /// Read from `client-secret-file`.
    pub client_secret: String,
    /// Organization logins (lowercase) whose members may sign in; empty
    /// allows any GitHub account.
    pub allowed_organizations: Vec<String>,
    /// Each request to GitHub, answer included.
    pub timeout: Duration,
}

/// GitHub, as [`super::Provider::Github`].
pub struct GithubProvider {
    settings: GithubSettings,
    redirect: String,
    authorize: Url,
    token: Url,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct UserAnswer {
    id: u64,
    login: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct EmailAnswer {
    email: String,
    primary: bool,
    verified: bool,
}

#[derive(Deserialize)]
struct OrgAnswer {
    login: String,
}

#[derive(Deserialize)]
struct MembershipAnswer {
    state: String,
    organization: OrgAnswer,
}

#[derive(Deserialize)]
struct TeamAnswer {
    slug: String,
    organization: OrgAnswer,
}

impl GithubProvider {
    pub fn new(settings: &GithubSettings, public_url: &str) -> Result<Self, ProviderError> {
        let base = |what: &str, url: &str| {
            Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
                .ok_or_else(|| ProviderError::Settings(format!("{what} {url:?} is not a URL")))
        };
        base("url", &settings.url)?;
        base("api-url", &settings.api_url)?;
        let authorize = base("url", &format!("{}/login/oauth/authorize", settings.url))?;
        let token = base("url", &format!("{}/login/oauth/access_token", settings.url))?;
        let http = reqwest::Client::builder()
            // Following redirects would let an answer send the token anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .user_agent(concat!("warren-controller/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Settings(format!("HTTP client: {e}")))?;
        Ok(Self {
            settings: settings.clone(),
            redirect: format!("{public_url}{CALLBACK_PATH}"),
            authorize,
            token,
            http,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.settings.url
    }

    /// "GitHub", or "GitHub (HOST)" for a GitHub Enterprise Server.
    pub fn display_name(&self) -> String {
        if self.settings.url == DEFAULT_URL {
            return "GitHub".into();
        }
        let host = Url::parse(&self.settings.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        format!("GitHub ({host})")
    }

    /// The authorization URL with a new state and PKCE challenge. Needs no
    /// request to GitHub.
    pub fn begin(&self) -> Result<Begin, ProviderError> {
        let state = random_secret();
        let verifier = random_secret();
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        let mut url = self.authorize.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.redirect)
            .append_pair("scope", SCOPES)
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("allow_signup", "false");
        Ok(Begin {
            url: url.into(),
            state,
            nonce: String::new(),
            verifier,
        })
    }

    /// Exchanges the callback's code for the person's token, then asks the
    /// API who they are. Keeps the token to re-check them.
    pub async fn finish(&self, code: &str, verifier: &str) -> Result<SignedIn, ProviderError> {
        let token = self.exchange(code, verifier).await?;
        let person = self.person(&token).await?;
        Ok(SignedIn {
            person,
            kept: Some(token),
        })
    }

    /// Asks the API again with the token kept at sign-in.
    pub async fn recheck(&self, subject: &str, kept: &str) -> Recheck {
        match self.person(kept).await {
            Ok(person) if person.subject == subject => Recheck::Still {
                person: Some(person),
                kept: None,
            },
            Ok(_) => Recheck::Gone {
                reason: "the token now belongs to another GitHub account".into(),
            },
            Err(e) if e.is_refusal() => Recheck::Gone {
                reason: e.to_string(),
            },
            Err(e) => Recheck::Unknown {
                error: e.to_string(),
            },
        }
    }

    async fn exchange(&self, code: &str, verifier: &str) -> Result<String, ProviderError> {
        let form = [
            ("client_id", self.settings.client_id.as_str()),
            ("client_secret", self.settings.client_secret.as_str()),
            ("code", code),
            ("redirect_uri", self.redirect.as_str()),
            ("code_verifier", verifier),
        ];
        let request = self
            .http
            .post(self.token.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        let what = "the token exchange";
        let response = request
            .send()
            .await
            .map_err(|e| ProviderError::Exchange(error_chain(&e.without_url())))?;
        let status = response.status();
        let body = read_capped(response, what)
            .await
            .map_err(ProviderError::Exchange)?;
        if !status.is_success() {
            return Err(ProviderError::Exchange(format!("HTTP {status}")));
        }
        let answer: TokenAnswer = parse(&body, what).map_err(ProviderError::Exchange)?;
        // GitHub reports a bad code with 200 and an `error` field.
        if let Some(error) = answer.error {
            let description = answer
                .error_description
                .map(|d| format!(": {}", clip(&d)))
                .unwrap_or_default();
            return Err(ProviderError::Exchange(format!(
                "{}{description}",
                clip(&error)
            )));
        }
        answer
            .access_token
            .filter(|t| !t.is_empty() && t.len() <= 4096)
            .ok_or_else(|| ProviderError::Exchange("GitHub sent no access token".into()))
    }

    /// Who `token` belongs to, if they may sign in here.
    async fn person(&self, token: &str) -> Result<Person, ProviderError> {
        let user: UserAnswer = self.get(token, "/user").await?;
        let emails: Vec<EmailAnswer> = self.get_pages(token, "/user/emails").await?;
        let primary = emails
            .iter()
            .find(|e| e.primary)
            .ok_or(ProviderError::NoEmail)?;
        if !primary.verified {
            return Err(ProviderError::EmailNotVerified);
        }
        if !primary.email.contains('@') || primary.email.len() > 320 {
            return Err(ProviderError::Unavailable(
                "GitHub's primary e-mail address is not an address".into(),
            ));
        }
        let memberships: Vec<MembershipAnswer> = self
            .get_pages(token, "/user/memberships/orgs?state=active")
            .await?;
        let allowed = &self.settings.allowed_organizations;
        let orgs: Vec<String> = memberships
            .into_iter()
            .filter(|m| m.state == "active")
            .map(|m| m.organization.login.to_ascii_lowercase())
            .filter(|login| allowed.is_empty() || allowed.contains(login))
            .collect();
        if !allowed.is_empty() && orgs.is_empty() {
            return Err(ProviderError::NotInOrganization {
                login: clip(&user.login),
                allowed: allowed.join(", "),
            });
        }
        let teams: Vec<TeamAnswer> = self.get_pages(token, "/user/teams").await?;
        let team_slugs = teams
            .into_iter()
            .filter(|t| orgs.contains(&t.organization.login.to_ascii_lowercase()))
            .map(|t| t.slug);
        let mut groups: Vec<String> = orgs
            .iter()
            .cloned()
            .chain(team_slugs)
            .filter_map(|name| group_name(&name))
            .collect();
        groups.sort();
        groups.dedup();
        groups.truncate(MAX_GROUPS);
        let name = user
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or(user.login);
        Ok(Person {
            issuer: self.settings.url.clone(),
            subject: user.id.to_string(),
            email: primary.email.clone(),
            name: clip(&name),
            groups,
        })
    }

    /// A list, page by page, until a page is not full.
    async fn get_pages<T: DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
    ) -> Result<Vec<T>, ProviderError> {
        let join = if path.contains('?') { '&' } else { '?' };
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let items: Vec<T> = self
                .get(
                    token,
                    &format!("{path}{join}per_page={PAGE_SIZE}&page={page}"),
                )
                .await?;
            let full = items.len() >= PAGE_SIZE;
            all.extend(items);
            if !full {
                break;
            }
        }
        Ok(all)
    }

    /// One API request with the person's token.
    async fn get<T: DeserializeOwned>(&self, token: &str, path: &str) -> Result<T, ProviderError> {
        let url = format!("{}{path}", self.settings.api_url);
        let what = format!("GitHub's {}", path.split('?').next().unwrap_or(path));
        let response = self
            .http
            .get(url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("{what}: {}", error_chain(&e))))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => return Err(ProviderError::TokenRevoked),
            status => {
                return Err(ProviderError::Unavailable(format!(
                    "{what} answered HTTP {status}"
                )))
            }
        }
        let body = read_capped(response, &what)
            .await
            .map_err(ProviderError::Unavailable)?;
        parse(&body, &what).map_err(ProviderError::Unavailable)
    }
}

/// The answer's body, at most [`MAX_BODY`] bytes.
async fn read_capped(mut response: reqwest::Response, what: &str) -> Result<Vec<u8>, String> {
    let too_large = || format!("{what}: the answer is larger than {MAX_BODY} bytes");
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("{what}: {}", error_chain(&e.without_url())))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn parse<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(body)
        .map_err(|e| format!("{what}: the answer is not what GitHub sends ({e})"))
}

/// At most 200 characters of GitHub's text, for messages.
fn clip(text: &str) -> String {
    text.chars().take(200).collect()
}

/// A GitHub organization login or team slug as a policy group name: lower
/// case, `_` and `.` as `-`; `None` unless that is a DNS label.
pub fn group_name(github: &str) -> Option<String> {
    let name: String = github
        .chars()
        .map(|c| match c {
            '_' | '.' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    crate::names::is_label(&name).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GithubSettings {
        GithubSettings {
            url: "http://github.test".into(),
            api_url: "http://api.github.test".into(),
            client_id: "Iv1.warren".into(),
            client_secret: "secret".into(),
            allowed_organizations: vec!["acme".into()],
            timeout: DEFAULT_TIMEOUT,
        }
    }

    #[test]
    fn logins_and_slugs_become_dns_labels_or_nothing() {
        assert_eq!(group_name("Acme-Corp").as_deref(), Some("acme-corp"));
        assert_eq!(group_name("data_team").as_deref(), Some("data-team"));
        assert_eq!(group_name("v1.2").as_deref(), Some("v1-2"));
        assert_eq!(group_name("-edge"), None);
        assert_eq!(group_name("ünïcode"), None);
        assert_eq!(group_name(""), None);
        assert_eq!(group_name(&"a".repeat(64)), None);
    }

    #[test]
    fn the_authorization_url_asks_for_the_scopes_with_state_and_pkce() {
        let p = GithubProvider::new(&settings(), "https://warren.test:7482").unwrap();
        let begin = p.begin().unwrap();
        let url = Url::parse(&begin.url).unwrap();
        assert_eq!(url.path(), "/login/oauth/authorize");
        let query: std::collections::HashMap<_, _> = url.query_pairs().collect();
        assert_eq!(query["client_id"], "Iv1.warren");
        assert_eq!(
            query["redirect_uri"],
            "https://warren.test:7482/github/callback"
        );
        assert_eq!(query["scope"], "read:user user:email read:org");
        assert_eq!(query["state"], begin.state.as_str());
        assert_eq!(query["code_challenge_method"], "S256");
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(begin.verifier.as_bytes()));
        assert_eq!(query["code_challenge"], challenge.as_str());
        assert!(begin.verifier.len() >= 43, "RFC 7636 wants 43 to 128");
        assert_ne!(p.begin().unwrap().state, begin.state);
        assert_eq!(p.display_name(), "GitHub (github.test)");
    }

    #[test]
    fn bad_urls_are_settings_errors() {
        let mut s = settings();
        s.api_url = "not a url".into();
        assert!(matches!(
            GithubProvider::new(&s, "https://warren.test"),
            Err(ProviderError::Settings(_))
        ));
    }
}
