//! The OpenID provider, through the `openidconnect` crate: discovery, the
//! authorization code flow with PKCE (S256), and the ID token's checks
//! (signature against the provider's current keys, issuer, audience,
//! expiry, nonce). We write none of the protocol's cryptography.
//!
//! The provider's metadata and keys are fetched again for every sign-in
//! step, so a key the provider rotates in is used at once. Sign-ins are
//! rare; this is two small requests each.

use std::time::Duration;

use base64::Engine as _;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};

use crate::store::Person;

/// The redirect path on the controller's HTTPS listener.
pub const CALLBACK_PATH: &str = "/oidc/callback";
/// A request to the provider that takes longer than this fails.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// The `[oidc]` table of the controller's configuration, resolved.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    /// Read from `client-secret-file`; `None` for a public client.
    pub client_secret: Option<String>,
    /// The ID token claim that lists the person's groups.
    pub groups_claim: String,
    /// E-mail domains allowed to sign in (lowercase); empty allows any.
    pub allowed_domains: Vec<String>,
}

/// Why a sign-in step with the provider failed. The texts are shown to
/// the person signing in, so they say what happened without secrets.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the sign-in settings are wrong: {0}")]
    Settings(String),
    #[error("the identity provider could not be reached or described itself wrongly: {0}")]
    Discovery(String),
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
}

/// Where a browser is sent to sign in, and what the callback must check.
pub struct Begin {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

pub struct Provider {
    settings: OidcSettings,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    http: openidconnect::reqwest::Client,
}

impl Provider {
    pub fn new(settings: &OidcSettings, public_url: &str) -> Result<Self, OidcError> {
        let issuer = IssuerUrl::new(settings.issuer.clone())
            .map_err(|e| OidcError::Settings(format!("issuer {:?}: {e}", settings.issuer)))?;
        let redirect = RedirectUrl::new(format!("{public_url}{CALLBACK_PATH}"))
            .map_err(|e| OidcError::Settings(format!("public-url {public_url:?}: {e}")))?;
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects would let a provider's answer send us anywhere.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .map_err(|e| OidcError::Settings(format!("HTTP client: {e}")))?;
        Ok(Self {
            settings: settings.clone(),
            issuer,
            redirect,
            http,
        })
    }

    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    async fn metadata(&self) -> Result<CoreProviderMetadata, OidcError> {
        CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| OidcError::Discovery(error_chain(&e)))
    }

    fn client(
        &self,
        metadata: CoreProviderMetadata,
    ) -> openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            self.settings.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(self.redirect.clone())
    }

    /// A fresh round trip: the provider's authorization URL with a new
    /// state, nonce and PKCE challenge.
    pub async fn begin(&self) -> Result<Begin, OidcError> {
        let client = self.client(self.metadata().await?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("groups".into()))
            .set_pkce_challenge(challenge)
            .url();
        Ok(Begin {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the callback's code and checks the ID token; the person it
    /// names, if they may sign in here.
    pub async fn finish(
        &self,
        code: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<Person, OidcError> {
        let client = self.client(self.metadata().await?);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(error_chain(&e)))?;
        let id_token = response.id_token().ok_or(OidcError::NoIdToken)?;
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &Nonce::new(nonce.to_owned()))
            .map_err(|e| OidcError::IdToken(error_chain(&e)))?;
        // Verified above; read the claims the core types do not carry.
        let extra = payload(&id_token.to_string());
        let email = claims
            .email()
            .map(|e| e.as_str().to_owned())
            .ok_or(OidcError::NoEmail)?;
        if claims.email_verified() == Some(false) {
            return Err(OidcError::EmailNotVerified);
        }
        self.check_domain(&email)?;
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        Ok(Person {
            issuer: self.issuer.as_str().to_owned(),
            subject: claims.subject().as_str().to_owned(),
            email,
            name,
            groups: groups(&extra, &self.settings.groups_claim),
        })
    }

    fn check_domain(&self, email: &str) -> Result<(), OidcError> {
        let allowed = &self.settings.allowed_domains;
        if allowed.is_empty() {
            return Ok(());
        }
        let domain = email
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        if allowed.contains(&domain) {
            Ok(())
        } else {
            Err(OidcError::DomainNotAllowed(
                email.to_owned(),
                allowed.join(", "),
            ))
        }
    }
}

/// The JSON payload of a compact JWT, or `Null`.
fn payload(jwt: &str) -> serde_json::Value {
    jwt.split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The groups a claim lists: strings only, at most 256, each at most 256
/// bytes; anything else in the claim is ignored.
fn groups(payload: &serde_json::Value, claim: &str) -> Vec<String> {
    let mut out: Vec<String> = payload
        .get(claim)
        .and_then(|v| v.as_array())
        .map(|list| {
            list.iter()
                .filter_map(|g| g.as_str())
                .filter(|g| !g.is_empty() && g.len() <= 256)
                .take(256)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_strings_from_the_named_claim() {
        let claims = serde_json::json!({
            "groups": ["ops", "ops", 7, "", "data-team"],
            "roles": ["admin"],
        });
        assert_eq!(groups(&claims, "groups"), vec!["data-team", "ops"]);
        assert_eq!(groups(&claims, "roles"), vec!["admin"]);
        assert!(groups(&claims, "missing").is_empty());
        assert!(groups(&serde_json::json!({"groups": "ops"}), "groups").is_empty());
    }

    #[test]
    fn a_jwt_payload_is_read_and_garbage_is_null() {
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"groups":["a"]}"#);
        assert_eq!(payload(&format!("h.{body}.s"))["groups"][0], "a");
        assert!(payload("no dots").is_null());
        assert!(payload("h.!!!.s").is_null());
    }

    #[test]
    fn only_allowed_domains_sign_in() {
        let settings = OidcSettings {
            issuer: "http://idp.test".into(),
            client_id: "warren".into(),
            client_secret: None,
            groups_claim: "groups".into(),
            allowed_domains: vec!["example.com".into()],
        };
        let p = Provider::new(&settings, "https://warren.test").unwrap();
        assert!(p.check_domain("ana@EXAMPLE.com").is_ok());
        assert!(matches!(
            p.check_domain("eve@example.com.evil"),
            Err(OidcError::DomainNotAllowed(..))
        ));
        assert!(p.check_domain("no-at-sign").is_err());
    }
}
