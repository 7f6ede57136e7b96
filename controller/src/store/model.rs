//! The records the store keeps, in the shapes the API serves.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use warren_proto::{NetworkId, NodeId, NodePublicKey};

/// Who made a change, as the audit log names them: `token:<name>`,
/// `user:<email>`, `local:root`, `local:uid:<uid>`, `node:<node id>` or
/// `system`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    pub fn token(name: &str) -> Self {
        Self(format!("token:{name}"))
    }

    pub fn node(node: &NodeId) -> Self {
        Self(format!("node:{node}"))
    }

    pub fn system() -> Self {
        Self("system".to_string())
    }

    /// A person signed in through the OpenID provider, by e-mail address.
    pub fn user(email: &str) -> Self {
        Self(format!("user:{email}"))
    }

    /// A process on the controller's host, over the admin socket, by the
    /// user the kernel says it runs as: `local:root` or `local:uid:<uid>`.
    pub fn local(uid: u32) -> Self {
        match uid {
            0 => Self("local:root".to_string()),
            uid => Self(format!("local:uid:{uid}")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read and change everything.
    Admin,
    /// Read everything, change nothing.
    Auditor,
}

impl Scope {
    pub fn as_int(self) -> i64 {
        match self {
            Scope::Admin => 0,
            Scope::Auditor => 1,
        }
    }

    pub fn from_int(value: i64) -> Option<Self> {
        match value {
            0 => Some(Scope::Admin),
            1 => Some(Scope::Auditor),
            _ => None,
        }
    }
}

/// An API token, without its secret.
#[derive(Debug, Clone, Serialize)]
pub struct Token {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    /// Set: the token sees and changes only this network.
    pub network_id: Option<NetworkId>,
    /// Whether it is usable, as of when it was read.
    pub state: TokenState,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    /// Updated at most once per [`TOKEN_TOUCH_INTERVAL`].
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    #[serde(skip)]
    pub last_used_unix: Option<i64>,
}

/// A token's last use is written at most this often (seconds), so a busy
/// client does not take the single writer on every request.
pub const TOKEN_TOUCH_INTERVAL: i64 = 60;

impl Token {
    /// Whether a use at `now_unix` should be written down.
    pub fn touch_due(&self, now_unix: i64) -> bool {
        self.last_used_unix
            .is_none_or(|last| now_unix - last >= TOKEN_TOUCH_INTERVAL)
    }
}

/// Whether a token may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    Active,
    Expired,
    Revoked,
}

impl TokenState {
    /// Revocation wins over expiry; expiry is due at `expires_at` itself
    /// (to the nanosecond stored, not rounded to a second either way).
    pub fn at(
        revoked: bool,
        expires_at: Option<time::OffsetDateTime>,
        now: time::OffsetDateTime,
    ) -> Self {
        if revoked {
            TokenState::Revoked
        } else if expires_at.is_some_and(|e| now >= e) {
            TokenState::Expired
        } else {
            TokenState::Active
        }
    }
}

/// What to make a token with.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub scope: Scope,
    /// Unique; default `token-<id>`.
    pub name: Option<String>,
    pub network_id: Option<NetworkId>,
    pub expires_at: Option<time::OffsetDateTime>,
}

impl TokenSpec {
    /// A token for every network that never expires.
    pub fn new(scope: Scope, name: Option<&str>) -> Self {
        Self {
            scope,
            name: name.map(str::to_owned),
            network_id: None,
            expires_at: None,
        }
    }
}

/// A token just made; `secret` is shown once and never stored.
#[derive(Debug, Clone, Serialize)]
pub struct NewToken {
    #[serde(rename = "token")]
    pub secret: String,
    #[serde(flatten)]
    pub token: Token,
}

/// A network as stored.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Network {
    pub id: NetworkId,
    pub name: String,
    pub pool: Ipv4Net,
    pub ipv6_prefix: Ipv6Net,
    pub zone: String,
    pub mtu: u16,
    /// The version of the newest netmap this network's state gives.
    pub netmap_version: u64,
    pub created_at: String,
    /// How long a device a person signed in stays on before its owner must
    /// sign in again (180 days unless changed).
    pub device_expiry_secs: u64,
}

/// How long a signed-in device stays on by default: 180 days.
pub const DEFAULT_DEVICE_EXPIRY_SECS: u64 = 180 * 24 * 3600;

/// What an admin asks for when creating a network (already validated).
#[derive(Debug, Clone)]
pub struct NewNetwork {
    pub name: String,
    pub pool: Ipv4Net,
    pub zone: String,
    pub mtu: u16,
}

/// A change to a network's name or zone.
#[derive(Debug, Clone, Default)]
pub struct NetworkPatch {
    pub name: Option<String>,
    pub zone: Option<String>,
    pub device_expiry_secs: Option<u64>,
}

/// Where a member stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    Pending,
    Authorized,
    Revoked,
}

impl MemberState {
    pub fn as_int(self) -> i64 {
        match self {
            MemberState::Pending => 0,
            MemberState::Authorized => 1,
            MemberState::Revoked => 2,
        }
    }

    pub fn from_int(value: i64) -> Option<Self> {
        match value {
            0 => Some(MemberState::Pending),
            1 => Some(MemberState::Authorized),
            2 => Some(MemberState::Revoked),
            _ => None,
        }
    }
}

/// A node's membership in one network. A pending member holds no name and
/// no addresses (anyone who knows a network ID can join as pending); it
/// gets them when it is authorized, and keeps them if later revoked.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Member {
    pub network_id: NetworkId,
    pub node_id: NodeId,
    /// Its name in the network's zone; `None` until authorized.
    pub name: Option<String>,
    /// The name its node asked for, sanitised (not unique, never in DNS).
    pub requested_name: String,
    pub public_key: NodePublicKey,
    /// `None` until authorized.
    pub ipv4: Option<Ipv4Addr>,
    /// `None` until authorized.
    pub ipv6: Option<Ipv6Addr>,
    pub authorized: bool,
    pub state: MemberState,
    pub online: bool,
    pub last_seen: Option<String>,
    pub endpoints: Vec<SocketAddr>,
    pub agent_version: String,
    pub created_at: String,
    /// The e-mail address of the person who signed it in, if one did.
    pub owner: Option<String>,
    /// That person's groups at the provider, for the access policy.
    #[serde(skip)]
    pub owner_groups: Vec<String>,
    /// When the sign-in that authorized it runs out (RFC 3339); `None` for
    /// members without an owner, which do not expire.
    pub expires_at: Option<String>,
    /// Its sign-in ran out: it reads as pending until its owner signs it
    /// in again.
    pub expired: bool,
}

impl Member {
    /// The name to show people: the assigned one, else what it asked for.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.requested_name)
    }

    /// Name and addresses, for a member that holds them (authorized, or
    /// revoked after being authorized).
    pub fn assigned(&self) -> Option<(&str, Ipv4Addr, Ipv6Addr)> {
        Some((self.name.as_deref()?, self.ipv4?, self.ipv6?))
    }
}

/// A node asking to join, as the control server saw it after authentication.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub network_id: NetworkId,
    pub node_key: NodePublicKey,
    pub name: String,
    pub preauth_key: Option<String>,
    pub agent_version: String,
    pub endpoints: Vec<SocketAddr>,
}

/// What the store decided about a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinDecision {
    Authorized,
    Pending,
    Refused(String),
}

/// The outcome of a join and whether anything was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub decision: JoinDecision,
    /// True if the network's netmaps changed (new member, authorization, endpoints).
    pub changed: bool,
}

/// How long a new pre-auth key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyExpiry {
    /// [`SINGLE_USE_KEY_LIFETIME`] for a single-use key,
    /// [`REUSABLE_KEY_LIFETIME`] for any other.
    Default,
    /// Never: only when asked for in so many words.
    Never,
    At(time::OffsetDateTime),
}

/// A single-use key lives a day unless asked otherwise.
pub const SINGLE_USE_KEY_LIFETIME: time::Duration = time::Duration::hours(24);
/// A key for several joins lives 90 days unless asked otherwise.
pub const REUSABLE_KEY_LIFETIME: time::Duration = time::Duration::days(90);

/// What a new pre-auth key allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreauthKeySpec {
    /// More than one join (capped by `max_uses` if set).
    pub reusable: bool,
    /// At most this many joins; `Some(1)` for a single-use key.
    pub max_uses: Option<u32>,
    pub expires: KeyExpiry,
    /// Tags (labels without `tag:`, already checked) for the members it
    /// authorizes.
    pub tags: Vec<String>,
}

impl PreauthKeySpec {
    /// One join, within a day.
    pub fn single_use() -> Self {
        Self {
            reusable: false,
            max_uses: Some(1),
            expires: KeyExpiry::Default,
            tags: Vec::new(),
        }
    }

    /// Any number of joins, within 90 days.
    pub fn reusable() -> Self {
        Self {
            reusable: true,
            max_uses: None,
            expires: KeyExpiry::Default,
            tags: Vec::new(),
        }
    }

    pub fn expires(self, expires: KeyExpiry) -> Self {
        Self { expires, ..self }
    }

    pub fn tagged(self, tags: Vec<String>) -> Self {
        Self { tags, ..self }
    }

    /// When a key made at `now` stops working (`None`: never).
    pub fn expires_at(&self, now: time::OffsetDateTime) -> Option<time::OffsetDateTime> {
        match self.expires {
            KeyExpiry::Never => None,
            KeyExpiry::At(at) => Some(at),
            KeyExpiry::Default if self.max_uses == Some(1) => Some(now + SINGLE_USE_KEY_LIFETIME),
            KeyExpiry::Default => Some(now + REUSABLE_KEY_LIFETIME),
        }
    }
}

/// A pre-auth key, without its secret.
#[derive(Debug, Clone, Serialize)]
pub struct PreauthKey {
    pub id: String,
    pub network_id: NetworkId,
    pub reusable: bool,
    pub expires_at: Option<String>,
    pub uses: u64,
    /// At most this many joins (1 for a single-use key; absent: no cap).
    pub max_uses: Option<u64>,
    /// False once a key's uses reached its cap or it expired.
    pub usable: bool,
    pub created_by: String,
    pub created_at: String,
    /// Tags (`tag:NAME`) the key puts on the members it authorizes: such
    /// members carry tags instead of an owner.
    pub tags: Vec<String>,
}

/// A pre-auth key just made; `key` is shown once and never stored.
#[derive(Debug, Clone, Serialize)]
pub struct NewPreauthKey {
    pub key: String,
    #[serde(flatten)]
    pub info: PreauthKey,
}

/// One audit-log entry.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub network_id: Option<String>,
    pub target: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub prev_hash: String,
    pub hash: String,
}

/// A page request over the audit log, ordered by id. The text filters
/// match ASCII letters in any case; [`crate::audit_filter`] checks them as
/// people type them.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only entries at or after this unix time.
    pub since_unix: Option<i64>,
    /// Only entries at or before this unix time.
    pub until_unix: Option<i64>,
    pub network_id: Option<NetworkId>,
    /// Only entries whose actor contains this (`token:ci`, `ana@`).
    pub actor: Option<String>,
    /// Only entries whose action contains this (`member.`, `authorize`).
    pub action: Option<String>,
    /// Only entries about this member (a node ID or a name): its target
    /// contains it, or the object before or after holds it as a string.
    pub member: Option<String>,
    /// Only entries that contain this anywhere: actor, action, network,
    /// target, before or after.
    pub text: Option<String>,
    /// Only entries with an id greater than this (the previous page's last).
    pub after_id: Option<i64>,
    pub limit: u32,
}

/// The newest entry of the audit chain: what an anchor pins.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditHead {
    pub id: i64,
    pub hash: String,
}

impl AuditHead {
    /// The head of an empty log.
    pub fn empty() -> Self {
        Self {
            id: 0,
            hash: crate::audit_chain::GENESIS.to_string(),
        }
    }
}

/// How the current chain stands against an anchor (a head kept earlier).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AnchorStatus {
    /// The anchored entry is in the chain with the anchored hash.
    Matches,
    /// The chain ends before the anchored entry: its tail was cut.
    Missing,
    /// The anchored entry has another hash: history was rewritten.
    Differs,
}

/// An anchor and what the chain says about it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AnchorCheck {
    pub id: i64,
    pub hash: String,
    pub status: AnchorStatus,
}

/// The result of recomputing the audit chain.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditVerification {
    /// The chain verifies and, if an anchor was given, it matches.
    pub ok: bool,
    pub entries: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad: Option<i64>,
    /// The last entry walked.
    pub head: AuditHead,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor: Option<AnchorCheck>,
}

/// A network and all its members, read in one transaction.
#[derive(Debug, Clone)]
pub struct NetworkSnapshot {
    pub network: Network,
    pub members: Vec<Member>,
    /// Services members publish in the network's DNS zone (every member's;
    /// the zone and netmaps keep only authorized members').
    pub services: Vec<Service>,
    /// Every route row (advertised and/or approved) of the network.
    pub routes: Vec<crate::store::Route>,
    /// The access policy in force, read with the rest.
    pub policy: crate::store::PolicyInForce,
    /// Site DNS and mapped prefixes.
    pub sites: crate::store::SiteState,
}

impl NetworkSnapshot {
    /// The authorized members that the person signing in as `email` owns.
    pub fn devices_of<'a>(&'a self, email: &'a str) -> impl Iterator<Item = &'a Member> + 'a {
        self.members.iter().filter(move |m| {
            m.state == MemberState::Authorized
                && m.owner
                    .as_deref()
                    .is_some_and(|o| o.eq_ignore_ascii_case(email))
        })
    }
}

/// A service one member publishes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Service {
    pub node_id: NodeId,
    #[serde(flatten)]
    pub spec: warren_proto::service::ServiceSpec,
}

#[cfg(test)]
mod tests {
    use super::TokenState;
    use time::{Duration, OffsetDateTime};

    #[test]
    fn a_token_expires_at_its_instant_not_at_a_rounded_second() {
        let expires = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_900_000_000).unwrap();
        let before = expires - Duration::milliseconds(500);
        assert_eq!(
            TokenState::at(false, Some(expires), before),
            TokenState::Active
        );
        assert_eq!(
            TokenState::at(false, Some(expires), expires),
            TokenState::Expired
        );
        assert_eq!(
            TokenState::at(true, Some(expires), before),
            TokenState::Revoked
        );
        assert_eq!(TokenState::at(false, None, expires), TokenState::Active);
    }
}

/// A controller replica running on the shared database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub id: String,
    /// Where agents reach it (`HOST:PORT`), if it says.
    pub control: Option<String>,
    /// Where other replicas forward relayed packets to it, if anywhere.
    pub relay: Option<String>,
}
