//! Decoding rows into model types; anything unreadable is `StoreError::Corrupt`.

use std::net::{Ipv4Addr, SocketAddr};

use sqlx::any::AnyRow;
use sqlx::Row;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::parse_stored;
use crate::store::*;

pub(super) const NETWORK_COLUMNS: &str =
    "id, name, pool, zone, mtu, netmap_version, created_at, device_expiry_secs";
/// A member whose owner is disabled reads as revoked (2), and one whose
/// sign-in ran out (noted by the expiry clock) as pending (0): everything
/// that reads members (netmaps, policy, the relay, DNS) leaves it out, and
/// it comes back as it was when the owner is enabled again or signs in.
/// Read from [`MEMBERS_WITH_OWNERS`].
pub(super) const MEMBER_COLUMNS: &str = "members.network_id, members.node_id, \
     members.public_key, members.name, members.requested_name, members.ipv4, \
     CASE WHEN users.disabled = 1 THEN 2 \
     WHEN members.state = 1 AND members.expiry_noted = 1 THEN 0 ELSE members.state END AS state, \
     members.expires_unix, \
     CASE WHEN members.state = 1 AND members.expiry_noted = 1 THEN 1 ELSE 0 END AS expired, \
     members.online, members.endpoints, members.agent_version, members.last_seen, \
     members.created_at, users.email AS owner, users.groups AS owner_groups";
/// Members with their owners, one join for every member read.
pub(super) const MEMBERS_WITH_OWNERS: &str =
    "members LEFT JOIN users ON users.id = members.owner_user_id";
pub(super) const KEY_COLUMNS: &str =
    "id, network_id, reusable, expires_at, expires_unix, uses, max_uses, created_by, created_at, tags";

pub(super) fn network(row: &AnyRow) -> Result<Network, StoreError> {
    let id: NetworkId = parse_stored("network id", &row.try_get::<String, _>("id")?)?;
    let mtu: i64 = row.try_get("mtu")?;
    let version: i64 = row.try_get("netmap_version")?;
    Ok(Network {
        id,
        name: row.try_get("name")?,
        pool: parse_stored("pool", &row.try_get::<String, _>("pool")?)?,
        ipv6_prefix: id.ula_prefix(),
        zone: row.try_get("zone")?,
        mtu: u16::try_from(mtu).map_err(|_| StoreError::Corrupt(format!("bad mtu {mtu}")))?,
        netmap_version: u64::try_from(version)
            .map_err(|_| StoreError::Corrupt(format!("bad version {version}")))?,
        created_at: row.try_get("created_at")?,
        device_expiry_secs: u64::try_from(row.try_get::<i64, _>("device_expiry_secs")?)
            .map_err(|_| StoreError::Corrupt("bad device expiry".into()))?,
    })
}

/// Unix seconds as RFC 3339 (UTC).
pub(super) fn unix_rfc3339(unix: i64) -> Result<String, StoreError> {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("bad time {unix}")))
}

pub(super) fn member(row: &AnyRow) -> Result<Member, StoreError> {
    let network_id: NetworkId =
        parse_stored("network id", &row.try_get::<String, _>("network_id")?)?;
    let node_id: NodeId = parse_stored("node id", &row.try_get::<String, _>("node_id")?)?;
    let ipv4: Option<i64> = row.try_get("ipv4")?;
    let ipv4 = ipv4
        .map(|a| {
            u32::try_from(a)
                .map(Ipv4Addr::from)
                .map_err(|_| StoreError::Corrupt(format!("bad ipv4 {a}")))
        })
        .transpose()?;
    let state: i64 = row.try_get("state")?;
    let state = MemberState::from_int(state)
        .ok_or_else(|| StoreError::Corrupt(format!("bad member state {state}")))?;
    let endpoints: String = row.try_get("endpoints")?;
    let endpoints: Vec<SocketAddr> = serde_json::from_str(&endpoints)
        .map_err(|_| StoreError::Corrupt(format!("bad endpoints {endpoints:?}")))?;
    Ok(Member {
        network_id,
        node_id,
        name: row.try_get("name")?,
        requested_name: row.try_get("requested_name")?,
        public_key: parse_stored("public key", &row.try_get::<String, _>("public_key")?)?,
        ipv4,
        // Derived from the ID, so it costs nothing to hold; shown only
        // alongside the IPv4 address, once the member has one.
        ipv6: ipv4.map(|_| network_id.ula_address(&node_id)),
        authorized: state == MemberState::Authorized,
        state,
        online: row.try_get::<i64, _>("online")? != 0,
        last_seen: row.try_get("last_seen")?,
        endpoints,
        agent_version: row.try_get("agent_version")?,
        created_at: row.try_get("created_at")?,
        owner: row.try_get("owner")?,
        owner_groups: match row.try_get::<Option<String>, _>("owner_groups")? {
            Some(groups) => serde_json::from_str(&groups)
                .map_err(|_| StoreError::Corrupt(format!("bad groups {groups:?}")))?,
            None => Vec::new(),
        },
        expires_at: row
            .try_get::<Option<i64>, _>("expires_unix")?
            .map(unix_rfc3339)
            .transpose()?,
        expired: row.try_get::<i64, _>("expired")? != 0,
    })
}

pub(super) fn preauth_key(row: &AnyRow) -> Result<PreauthKey, StoreError> {
    let reusable = row.try_get::<i64, _>("reusable")? != 0;
    let uses: i64 = row.try_get("uses")?;
    let expires_unix: Option<i64> = row.try_get("expires_unix")?;
    let max_uses: Option<i64> = row.try_get("max_uses")?;
    let expired = expires_unix.is_some_and(|t| t <= OffsetDateTime::now_utc().unix_timestamp());
    // Keys made before caps: single-use ones have none stored.
    let cap = max_uses.or((!reusable).then_some(1));
    Ok(PreauthKey {
        id: row.try_get("id")?,
        network_id: parse_stored("network id", &row.try_get::<String, _>("network_id")?)?,
        reusable,
        expires_at: row.try_get("expires_at")?,
        uses: u64::try_from(uses).unwrap_or(0),
        max_uses: cap.and_then(|c| u64::try_from(c).ok()),
        usable: !expired && cap.is_none_or(|c| uses < c),
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        tags: {
            let tags: String = row.try_get("tags")?;
            serde_json::from_str::<Vec<String>>(&tags)
                .map_err(|_| StoreError::Corrupt(format!("bad key tags {tags:?}")))?
                .into_iter()
                .map(|t| format!("tag:{t}"))
                .collect()
        },
    })
}

pub(super) const TOKEN_COLUMNS: &str = "id, name, scope, network_id, created_by, created_at, \
     expires_at, last_used_at, last_used_unix, revoked_at";

/// A token with its state as of `now`.
pub(super) fn token(row: &AnyRow, now: OffsetDateTime) -> Result<Token, StoreError> {
    let scope: i64 = row.try_get("scope")?;
    let network_id: Option<String> = row.try_get("network_id")?;
    let revoked_at: Option<String> = row.try_get("revoked_at")?;
    let expires_at: Option<String> = row.try_get("expires_at")?;
    let expires = expires_at
        .as_deref()
        .map(|text| {
            OffsetDateTime::parse(text, &Rfc3339)
                .map_err(|_| StoreError::Corrupt(format!("bad token expiry {text:?}")))
        })
        .transpose()?;
    Ok(Token {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        scope: Scope::from_int(scope)
            .ok_or_else(|| StoreError::Corrupt(format!("bad scope {scope}")))?,
        network_id: network_id
            .map(|n| parse_stored("token network id", &n))
            .transpose()?,
        state: TokenState::at(revoked_at.is_some(), expires, now),
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at,
        last_used_unix: row.try_get("last_used_unix")?,
    })
}

/// A member's JSON for the audit log's before/after columns.
pub(super) fn member_json(member: &Member) -> serde_json::Value {
    serde_json::to_value(member).unwrap_or(serde_json::Value::Null)
}
