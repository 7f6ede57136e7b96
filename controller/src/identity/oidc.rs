//! The OpenID provider, through the `openidconnect` crate: discovery, the
//! authorization code flow with PKCE (S256), and the ID token's checks
//! (signature against the provider's current keys, issuer, audience,
//! expiry, nonce). We write none of the protocol's cryptography.
//!
//! The provider's metadata and keys are fetched again for every sign-in
//! step, so a key the provider rotates in is used at once. Sign-ins are
//! rare; this is two small requests each.
//!
//! Re-checking a person is a refresh token grant: the provider issues a
//! refresh token when it lists `offline_access` and we ask for it.

use std::time::Duration;

use base64::Engine as _;
use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreIdTokenClaims,
    CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    TokenResponse,
};

use super::provider::{error_chain, Begin, ProviderError, Recheck, SignedIn};
use crate::store::Person;

/// The redirect path on the controller's HTTPS listener.
pub const CALLBACK_PATH: &str = "/oidc/callback";
/// A request to the provider that takes longer than this fails.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// The scope that asks for a refresh token.
const OFFLINE_ACCESS: &str = "offline_access";

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

/// An OpenID provider, as [`super::Provider::Oidc`].
pub struct OidcProvider {
    settings: OidcSettings,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    http: openidconnect::reqwest::Client,
}

impl OidcProvider {
    pub fn new(settings: &OidcSettings, public_url: &str) -> Result<Self, ProviderError> {
        let issuer = IssuerUrl::new(settings.issuer.clone())
            .map_err(|e| ProviderError::Settings(format!("issuer {:?}: {e}", settings.issuer)))?;
        let redirect = RedirectUrl::new(format!("{public_url}{CALLBACK_PATH}"))
            .map_err(|e| ProviderError::Settings(format!("public-url {public_url:?}: {e}")))?;
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects would let a provider's answer send us anywhere.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .map_err(|e| ProviderError::Settings(format!("HTTP client: {e}")))?;
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

    async fn metadata(&self) -> Result<CoreProviderMetadata, ProviderError> {
        CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| ProviderError::Discovery(error_chain(&e)))
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
    /// state, nonce and PKCE challenge. `offline_access` (with
    /// `prompt=consent`, as OpenID Connect asks for it) is requested when
    /// the provider lists it, so that the person can be re-checked later
    /// with a refresh token.
    pub async fn begin(&self) -> Result<Begin, ProviderError> {
        let metadata = self.metadata().await?;
        let offline = metadata
            .scopes_supported()
            .is_some_and(|scopes| scopes.iter().any(|s| s.as_str() == OFFLINE_ACCESS));
        let client = self.client(metadata);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("groups".into()))
            .set_pkce_challenge(challenge);
        if offline {
            request = request
                .add_scope(Scope::new(OFFLINE_ACCESS.into()))
                .add_prompt(CoreAuthPrompt::Consent);
        }
        let (url, state, nonce) = request.url();
        Ok(Begin {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the callback's code and checks the ID token; the person it
    /// names, if they may sign in here, and the refresh token if the
    /// provider issued one.
    pub async fn finish(
        &self,
        code: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<SignedIn, ProviderError> {
        let client = self.client(self.metadata().await?);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| ProviderError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| ProviderError::Exchange(error_chain(&e)))?;
        let id_token = response.id_token().ok_or(ProviderError::NoIdToken)?;
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &Nonce::new(nonce.to_owned()))
            .map_err(|e| ProviderError::IdToken(error_chain(&e)))?;
        let person = self.person(claims, &id_token.to_string())?;
        Ok(SignedIn {
            person,
            kept: response.refresh_token().map(|t| t.secret().clone()),
        })
    }

    /// A refresh token grant with `kept`: `invalid_grant` means the
    /// provider no longer knows or allows the person. A new ID token, if
    /// the answer has one, is checked like a sign-in's (except for the
    /// nonce, which refreshed tokens need not carry) and must name the
    /// same `subject`.
    pub async fn recheck(&self, subject: &str, kept: &str) -> Recheck {
        let unknown = |error: String| Recheck::Unknown { error };
        let client = match self.metadata().await {
            Ok(metadata) => self.client(metadata),
            Err(e) => return unknown(e.to_string()),
        };
        let refresh = RefreshToken::new(kept.to_owned());
        let request = match client.exchange_refresh_token(&refresh) {
            Ok(request) => request,
            Err(e) => return unknown(format!("the provider has no token endpoint: {e}")),
        };
        let response = match request.request_async(&self.http).await {
            Ok(response) => response,
            Err(RequestTokenError::ServerResponse(answer))
                if *answer.error() == CoreErrorResponseType::InvalidGrant =>
            {
                return Recheck::Gone {
                    reason: format!(
                        "the identity provider refused the refresh token (invalid_grant{})",
                        answer
                            .error_description()
                            .map(|d| format!(": {}", clip(d)))
                            .unwrap_or_default()
                    ),
                };
            }
            Err(e) => return unknown(format!("refreshing: {}", error_chain(&e))),
        };
        let rotated = response
            .refresh_token()
            .map(|t| t.secret().clone())
            .filter(|t| t != kept);
        let Some(id_token) = response.id_token() else {
            return Recheck::Still {
                person: None,
                kept: rotated,
            };
        };
        let verifier = client.id_token_verifier();
        let any_nonce = |_: Option<&Nonce>| Ok(());
        let claims = match id_token.claims(&verifier, any_nonce) {
            Ok(claims) => claims,
            Err(e) => return unknown(format!("the refreshed ID token: {}", error_chain(&e))),
        };
        if claims.subject().as_str() != subject {
            return Recheck::Gone {
                reason: "the refreshed ID token names another subject".into(),
            };
        }
        match self.person(claims, &id_token.to_string()) {
            Ok(person) => Recheck::Still {
                person: Some(person),
                kept: rotated,
            },
            // Refreshed ID tokens may carry fewer claims than the first.
            Err(ProviderError::NoEmail) => Recheck::Still {
                person: None,
                kept: rotated,
            },
            Err(e) => Recheck::Gone {
                reason: e.to_string(),
            },
        }
    }

    /// The person verified `claims` name, if they may sign in here.
    /// `id_token` is the same token, verified, for the claims the core
    /// types do not carry (groups).
    fn person(&self, claims: &CoreIdTokenClaims, id_token: &str) -> Result<Person, ProviderError> {
        let extra = payload(id_token);
        let email = claims
            .email()
            .map(|e| e.as_str().to_owned())
            .ok_or(ProviderError::NoEmail)?;
        if claims.email_verified() == Some(false) {
            return Err(ProviderError::EmailNotVerified);
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

    fn check_domain(&self, email: &str) -> Result<(), ProviderError> {
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
            Err(ProviderError::DomainNotAllowed(
                email.to_owned(),
                allowed.join(", "),
            ))
        }
    }
}

/// At most 200 characters of a provider's text, for messages.
fn clip(text: &str) -> String {
    text.chars().take(200).collect()
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
        let p = OidcProvider::new(&settings, "https://warren.test").unwrap();
        assert!(p.check_domain("ana@EXAMPLE.com").is_ok());
        assert!(matches!(
            p.check_domain("eve@example.com.evil"),
            Err(ProviderError::DomainNotAllowed(..))
        ));
        assert!(p.check_domain("no-at-sign").is_err());
    }
}
