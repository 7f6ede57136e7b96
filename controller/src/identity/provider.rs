//! The identity provider people sign in with, whichever it is: an OpenID
//! provider ([`super::oidc`]) or GitHub ([`super::github`]). The pages and
//! the re-check call [`Provider`] without knowing which.

use crate::store::Person;

use super::github::{GithubProvider, GithubSettings};
use super::oidc::{OidcProvider, OidcSettings};

/// Which provider the controller is configured with: exactly one.
#[derive(Debug, Clone)]
pub enum ProviderSettings {
    Oidc(OidcSettings),
    Github(GithubSettings),
}

/// Why a step with the provider failed. The texts are shown to the person
/// signing in, so they say what happened without secrets.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the sign-in settings are wrong: {0}")]
    Settings(String),
    #[error("the identity provider could not be reached or described itself wrongly: {0}")]
    Discovery(String),
    #[error("the identity provider could not be reached or answered wrongly: {0}")]
    Unavailable(String),
    #[error("the identity provider did not accept the sign-in code: {0}")]
    Exchange(String),
    #[error("the identity provider sent no ID token")]
    NoIdToken,
    #[error("the ID token was refused: {0}")]
    IdToken(String),
    #[error("the identity provider gave no e-mail address")]
    NoEmail,
    #[error("the e-mail address is not verified by the identity provider")]
    EmailNotVerified,
    #[error("{0} may not sign in here (allowed: {1})")]
    DomainNotAllowed(String, String),
    #[error(
        "the identity provider no longer accepts this person's token (revoked, or the app's access withdrawn)"
    )]
    TokenRevoked,
    #[error(
        "{login} is not an active member of an allowed GitHub organization ({allowed}); \
         an organization that restricts OAuth apps must approve this one first"
    )]
    NotInOrganization { login: String, allowed: String },
}

impl ProviderError {
    /// True when the provider answered and the answer is "no" (the person
    /// may not sign in), rather than "could not tell".
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ProviderError::NoEmail
                | ProviderError::EmailNotVerified
                | ProviderError::DomainNotAllowed(..)
                | ProviderError::TokenRevoked
                | ProviderError::NotInOrganization { .. }
        )
    }
}

/// Where a browser is sent to sign in, and what the callback must check.
pub struct Begin {
    pub url: String,
    pub state: String,
    /// The ID token's nonce (OpenID); empty for GitHub, which has none.
    pub nonce: String,
    /// The PKCE verifier (S256) for the code exchange.
    pub verifier: String,
}

/// A finished sign-in: who it is, and what re-checks them later.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub person: Person,
    /// What the controller keeps to [`Provider::recheck`] the person: the
    /// refresh token (OpenID, when the provider issued one) or the OAuth
    /// access token (GitHub). A secret: stored, never logged. `None`: this
    /// person cannot be re-checked until they sign in again.
    pub kept: Option<String>,
}

/// What the provider says about a person signed in earlier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck {
    /// Still there and allowed.
    Still {
        /// What the provider says now (e-mail, name, groups), to update
        /// the user with; `None` when its answer confirmed the person but
        /// carried no claims (an OpenID refresh without an ID token).
        person: Option<Person>,
        /// A new value to keep instead of the old one (a rotated refresh
        /// token); `None`: keep the old one.
        kept: Option<String>,
    },
    /// The provider says no: the person's access ends. The reason is for
    /// the audit log and the controller's log.
    Gone { reason: String },
    /// The provider could not be asked or answered wrongly (unreachable,
    /// HTTP 5xx, a timeout, garbage): nobody is cut off for an outage;
    /// ask again at the next check.
    Unknown { error: String },
}

/// The configured provider.
pub enum Provider {
    Oidc(OidcProvider),
    Github(GithubProvider),
}

impl Provider {
    /// Checks the settings and builds the provider's HTTP client; talks
    /// to nobody yet.
    pub fn new(settings: &ProviderSettings, public_url: &str) -> Result<Self, ProviderError> {
        Ok(match settings {
            ProviderSettings::Oidc(s) => Provider::Oidc(OidcProvider::new(s, public_url)?),
            ProviderSettings::Github(s) => Provider::Github(GithubProvider::new(s, public_url)?),
        })
    }

    /// The issuer that users from this provider are stored under: the
    /// OpenID issuer URL, or the GitHub server's URL.
    pub fn issuer(&self) -> &str {
        match self {
            Provider::Oidc(p) => p.issuer(),
            Provider::Github(p) => p.issuer(),
        }
    }

    /// What the sign-in button says: "Sign in with NAME".
    pub fn display_name(&self) -> String {
        match self {
            Provider::Oidc(p) => p.issuer().to_owned(),
            Provider::Github(p) => p.display_name(),
        }
    }

    /// The redirect path on the controller's HTTPS listener.
    pub fn callback_path(&self) -> &'static str {
        match self {
            Provider::Oidc(_) => super::oidc::CALLBACK_PATH,
            Provider::Github(_) => super::github::CALLBACK_PATH,
        }
    }

    /// A fresh round trip: the provider's authorization URL with a new
    /// state (and nonce) and PKCE challenge.
    pub async fn begin(&self) -> Result<Begin, ProviderError> {
        match self {
            Provider::Oidc(p) => p.begin().await,
            Provider::Github(p) => p.begin(),
        }
    }

    /// Exchanges the callback's `code` (with the round trip's `nonce` and
    /// PKCE `verifier`) and asks who signed in: the person, if they may
    /// sign in here, and what to keep to re-check them.
    pub async fn finish(
        &self,
        code: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<SignedIn, ProviderError> {
        match self {
            Provider::Oidc(p) => p.finish(code, nonce, verifier).await,
            Provider::Github(p) => p.finish(code, verifier).await,
        }
    }

    /// Asks the provider again about the person `subject` (the user's
    /// stored subject), with what [`SignedIn::kept`] (or an earlier
    /// [`Recheck::Still`]) gave. OpenID: a refresh token grant;
    /// `invalid_grant`, or an ID token for another subject, is
    /// [`Recheck::Gone`]. GitHub: the API with the access token; HTTP 401,
    /// or no longer in an allowed organization, is [`Recheck::Gone`].
    /// Outages are [`Recheck::Unknown`]. Never panics, logs no token.
    pub async fn recheck(&self, subject: &str, kept: &str) -> Recheck {
        match self {
            Provider::Oidc(p) => p.recheck(subject, kept).await,
            Provider::Github(p) => p.recheck(subject, kept).await,
        }
    }
}

/// An error and its sources, for the texts above.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
