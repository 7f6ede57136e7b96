//! People signing devices in. A node that joins a network where sign-in
//! is on, without a pre-auth key, is pending with a sign-in page of its
//! own (`/signin/CODE` on the controller's HTTPS listener). Its owner opens
//! it, signs in at the identity provider (an OpenID provider or GitHub),
//! and confirms the device; the member is then authorized as that user's
//! device.
//!
//! What a sign-in is in the middle of (device codes, provider round trips,
//! confirmations) lives in this process only, bounded and short-lived: a
//! restart sends the node a new page when it joins again. Users and
//! ownership are in the store.
//!
//! Layout: [`provider`] is the provider the pages call, whichever it is;
//! [`oidc`] and [`github`] are the two kinds; [`pages`] are the HTTPS
//! pages.

pub mod github;
pub mod oidc;
pub mod pages;
pub mod provider;
pub mod recheck;
pub mod session_pages;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand_core::RngCore;
use sha2::{Digest, Sha256};
use warren_proto::{NetworkId, NodeId};

pub use github::GithubSettings;
pub use oidc::OidcSettings;
pub use provider::{Begin, Provider, ProviderError, ProviderSettings, Recheck, SignedIn};

/// How long a device's sign-in page stays valid.
pub const DEVICE_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a round trip through the provider, or a confirmation form,
/// may take.
pub const STEP_TTL: Duration = Duration::from_secs(10 * 60);
/// At most this many sign-ins in flight of each kind; the oldest goes.
const MAX_IN_FLIGHT: usize = 4096;
/// Device codes: 8 letters and digits that cannot be mistaken for each
/// other (no 0/O, 1/I/L), shown as XXXX-XXXX.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// Which networks people sign devices into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInNetworks {
    All,
    Only(Vec<NetworkId>),
}

impl SignInNetworks {
    pub fn includes(&self, net: NetworkId) -> bool {
        match self {
            SignInNetworks::All => true,
            SignInNetworks::Only(list) => list.contains(&net),
        }
    }
}

/// The sign-in settings `serve` runs with.
#[derive(Debug, Clone)]
pub struct SignInSettings {
    /// `https://HOST[:PORT]` as people's browsers reach the HTTPS listener,
    /// without a trailing slash.
    pub public_url: String,
    pub provider: ProviderSettings,
    pub networks: SignInNetworks,
    /// How often people are asked about again at the provider.
    pub recheck_every: Duration,
}

/// People are checked at the provider hourly unless configured otherwise.
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(3600);

/// A device waiting for its owner.
#[derive(Debug, Clone)]
pub struct DeviceRequest {
    pub network: NetworkId,
    pub node: NodeId,
    /// The name the node asked for.
    pub name: String,
    expires: Instant,
}

/// A browser on its way through the provider.
#[derive(Debug, Clone)]
pub struct Flow {
    pub code: String,
    pub nonce: String,
    pub verifier: String,
    /// SHA-256 of the browser's cookie: only the browser that started the
    /// round trip may finish it.
    browser: [u8; 32],
    expires: Instant,
}

/// A signed-in person looking at a device's confirmation form, kept under
/// (browser cookie hash, device code).
#[derive(Debug, Clone)]
pub struct Confirmation {
    pub user: crate::store::User,
    /// SHA-256 of the form's anti-forgery token.
    token: [u8; 32],
    expires: Instant,
}

#[derive(Default)]
struct InFlight {
    devices: HashMap<String, DeviceRequest>,
    flows: HashMap<String, Flow>,
    /// Keyed by browser cookie hash and device code.
    confirmations: HashMap<([u8; 32], String), Confirmation>,
}

/// Sign-in for this controller: its settings, its provider, and what is in
/// flight.
pub struct SignIn {
    pub settings: SignInSettings,
    pub provider: Provider,
    in_flight: Mutex<InFlight>,
}

/// A random secret for cookies, states, tokens: 32 bytes, base64url.
pub fn random_secret() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn new_code() -> String {
    let mut bytes = [0u8; 8];
    rand_core::OsRng.fill_bytes(&mut bytes);
    let chars: String = bytes
        .iter()
        .map(|b| char::from(CODE_ALPHABET[usize::from(*b) % CODE_ALPHABET.len()]))
        .collect();
    format!("{}-{}", &chars[..4], &chars[4..])
}

/// Drops expired entries, then the soonest to expire while over the cap.
fn prune<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    now: Instant,
    expires: impl Fn(&V) -> Instant,
) {
    map.retain(|_, v| expires(v) > now);
    while map.len() >= MAX_IN_FLIGHT {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, v)| expires(v))
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        map.remove(&oldest);
    }
}

impl SignIn {
    pub fn new(settings: SignInSettings) -> Result<Self, ProviderError> {
        let provider = Provider::new(&settings.provider, &settings.public_url)?;
        Ok(Self {
            settings,
            provider,
            in_flight: Mutex::default(),
        })
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        // Every update leaves the maps consistent: a poisoned lock is fine.
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sign-in page for a pending `node` in `net`: the same while it is
    /// valid, so a node that joins again keeps its page.
    pub fn device_page(&self, network: NetworkId, node: NodeId, name: &str) -> Option<String> {
        if !self.settings.networks.includes(network) {
            return None;
        }
        let now = Instant::now();
        let mut in_flight = self.in_flight();
        prune(&mut in_flight.devices, now, |d| d.expires);
        let existing = in_flight
            .devices
            .iter()
            .find(|(_, d)| d.network == network && d.node == node && d.expires > now + STEP_TTL)
            .map(|(code, _)| code.clone());
        let code = existing.unwrap_or_else(|| {
            let code = new_code();
            in_flight.devices.insert(
                code.clone(),
                DeviceRequest {
                    network,
                    node,
                    name: name.to_owned(),
                    expires: now + DEVICE_TTL,
                },
            );
            code
        });
        Some(format!("{}/signin/{code}", self.settings.public_url))
    }

    pub fn device(&self, code: &str) -> Option<DeviceRequest> {
        let now = Instant::now();
        self.in_flight()
            .devices
            .get(code)
            .filter(|d| d.expires > now)
            .cloned()
    }

    /// The device's page is used: nobody confirms it twice.
    pub fn finish_device(&self, code: &str) {
        let mut in_flight = self.in_flight();
        in_flight.devices.remove(code);
        in_flight.confirmations.retain(|(_, c), _| c != code);
    }

    pub fn start_flow(
        &self,
        state: &str,
        flow_code: &str,
        nonce: &str,
        verifier: &str,
        browser: &str,
    ) {
        let now = Instant::now();
        let mut in_flight = self.in_flight();
        prune(&mut in_flight.flows, now, |f| f.expires);
        in_flight.flows.insert(
            state.to_owned(),
            Flow {
                code: flow_code.to_owned(),
                nonce: nonce.to_owned(),
                verifier: verifier.to_owned(),
                browser: digest(browser),
                expires: now + STEP_TTL,
            },
        );
    }

    /// The round trip `state` names, once: `None` if unknown, expired, or
    /// started by another browser (then it is gone too).
    pub fn take_flow(&self, state: &str, browser: &str) -> Option<Flow> {
        let flow = self.in_flight().flows.remove(state)?;
        let same = flow.browser == digest(browser);
        (same && flow.expires > Instant::now()).then_some(flow)
    }

    /// Offers `user` the confirmation of device `code` in this browser;
    /// returns the form's anti-forgery token.
    pub fn offer_confirmation(
        &self,
        code: &str,
        user: crate::store::User,
        browser: &str,
    ) -> String {
        let now = Instant::now();
        let token = random_secret();
        let mut in_flight = self.in_flight();
        prune(&mut in_flight.confirmations, now, |c| c.expires);
        in_flight.confirmations.insert(
            (digest(browser), code.to_owned()),
            Confirmation {
                user,
                token: digest(&token),
                expires: now + STEP_TTL,
            },
        );
        token
    }

    /// The confirmation this browser holds for device `code`, if any, with
    /// a new form token: only the latest form shown can be submitted.
    pub fn show_confirmation(&self, code: &str, browser: &str) -> Option<(Confirmation, String)> {
        let now = Instant::now();
        let token = random_secret();
        let mut in_flight = self.in_flight();
        let c = in_flight
            .confirmations
            .get_mut(&(digest(browser), code.to_owned()))
            .filter(|c| c.expires > now)?;
        c.token = digest(&token);
        Some((c.clone(), token))
    }

    /// Takes the confirmation if `token` is its form's: once.
    pub fn take_confirmation(
        &self,
        code: &str,
        browser: &str,
        token: &str,
    ) -> Option<Confirmation> {
        use subtle::ConstantTimeEq;
        let key = (digest(browser), code.to_owned());
        let mut in_flight = self.in_flight();
        let found = in_flight.confirmations.get(&key)?;
        let matches: bool = found.token.ct_eq(&digest(token)).into();
        if !matches || found.expires <= Instant::now() {
            return None;
        }
        in_flight.confirmations.remove(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_unambiguous_characters() {
        for _ in 0..100 {
            let code = new_code();
            assert_eq!(code.len(), 9);
            assert_eq!(&code[4..5], "-");
            assert!(code
                .chars()
                .filter(|c| *c != '-')
                .all(|c| CODE_ALPHABET.contains(&(c as u8))));
        }
    }

    fn sign_in(networks: SignInNetworks) -> SignIn {
        SignIn::new(SignInSettings {
            public_url: "https://warren.test:7482".into(),
            provider: ProviderSettings::Oidc(OidcSettings {
                issuer: "http://idp.test".into(),
                client_id: "warren".into(),
                client_secret: None,
                groups_claim: "groups".into(),
                allowed_domains: Vec::new(),
            }),
            networks,
            recheck_every: DEFAULT_RECHECK,
        })
        .unwrap()
    }

    fn user() -> crate::store::User {
        crate::store::User {
            id: "0011223344556677".into(),
            issuer: "http://idp.test".into(),
            subject: "ana".into(),
            email: "ana@example.com".into(),
            name: "Ana".into(),
            groups: vec![],
            disabled: false,
            created_at: String::new(),
            last_sign_in: String::new(),
        }
    }

    #[test]
    fn a_device_keeps_its_page_and_only_listed_networks_get_one() {
        let net: NetworkId = "8056c2e21c000001".parse().unwrap();
        let other: NetworkId = "8056c2e21c000002".parse().unwrap();
        let node: NodeId = "0123456789".parse().unwrap();
        let s = sign_in(SignInNetworks::Only(vec![net]));
        assert_eq!(s.device_page(other, node, "laptop"), None);
        let page = s.device_page(net, node, "laptop").unwrap();
        assert!(
            page.starts_with("https://warren.test:7482/signin/"),
            "{page}"
        );
        assert_eq!(s.device_page(net, node, "laptop").unwrap(), page);
        let code = page.rsplit('/').next().unwrap();
        assert_eq!(s.device(code).unwrap().name, "laptop");
        s.finish_device(code);
        assert!(s.device(code).is_none());
        assert_ne!(s.device_page(net, node, "laptop").unwrap(), page);
    }

    #[test]
    fn a_round_trip_is_finished_once_and_only_by_its_browser() {
        let s = sign_in(SignInNetworks::All);
        s.start_flow("state-1", "CODE-0001", "nonce", "verifier", "browser-a");
        assert!(
            s.take_flow("state-1", "browser-b").is_none(),
            "another browser"
        );
        assert!(
            s.take_flow("state-1", "browser-a").is_none(),
            "gone after a wrong try"
        );
        s.start_flow("state-2", "CODE-0001", "nonce", "verifier", "browser-a");
        let flow = s.take_flow("state-2", "browser-a").unwrap();
        assert_eq!(
            (flow.nonce.as_str(), flow.verifier.as_str()),
            ("nonce", "verifier")
        );
        assert!(s.take_flow("state-2", "browser-a").is_none(), "used once");
        assert!(s.take_flow("never-made", "browser-a").is_none());
    }

    #[test]
    fn a_confirmation_needs_its_browser_and_its_latest_token_once() {
        let s = sign_in(SignInNetworks::All);
        let first = s.offer_confirmation("CODE-0001", user(), "browser-a");
        assert!(s.show_confirmation("CODE-0001", "browser-b").is_none());
        let (_, latest) = s.show_confirmation("CODE-0001", "browser-a").unwrap();
        assert!(
            s.take_confirmation("CODE-0001", "browser-a", &first)
                .is_none(),
            "stale token"
        );
        assert!(
            s.take_confirmation("CODE-0001", "browser-b", &latest)
                .is_none(),
            "other browser"
        );
        assert!(
            s.take_confirmation("CODE-0002", "browser-a", &latest)
                .is_none(),
            "other device"
        );
        let taken = s
            .take_confirmation("CODE-0001", "browser-a", &latest)
            .unwrap();
        assert_eq!(taken.user.email, "ana@example.com");
        assert!(
            s.take_confirmation("CODE-0001", "browser-a", &latest)
                .is_none(),
            "once"
        );
    }

    #[test]
    fn prune_keeps_the_map_under_its_cap() {
        let now = Instant::now();
        let mut map: HashMap<usize, Instant> = (0..MAX_IN_FLIGHT)
            .map(|i| (i, now + Duration::from_secs(i as u64 + 1)))
            .collect();
        prune(&mut map, now, |v| *v);
        assert_eq!(map.len(), MAX_IN_FLIGHT - 1);
        assert!(!map.contains_key(&0), "the soonest to expire goes");
        map.insert(99_999, now);
        prune(&mut map, now, |v| *v);
        assert!(!map.contains_key(&99_999), "an expired one goes");
    }
}
