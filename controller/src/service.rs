//! The changes people make, shared by the API and the console: each one
//! is the store's transaction (which audits it) followed by the hub's
//! notice to the network's members. A surface translates and authorises;
//! it never calls the store for a change itself, so a rule such as "the
//! policy's tests must pass" or "a change reaches every member" holds on
//! every surface.

use ipnet::IpNet;
use warren_proto::{NetworkId, NodeId};

use crate::hub::Hub;
use crate::store::{
    Actor, Decision, Grant, GrantRequest, Member, MemberState, NewGrant, NewGrantRequest,
    PolicySet, Route, StoreError,
};

pub async fn set_member_state(
    hub: &Hub,
    actor: &Actor,
    net: NetworkId,
    node: NodeId,
    to: MemberState,
) -> Result<Member, StoreError> {
    let member = hub.store().set_member_state(actor, net, node, to).await?;
    tracing::info!(network = %net, %node, state = ?to, actor = actor.as_str(), "member state set");
    Ok(member)
}

/// Ends a signed-in device's sign-in now.
pub async fn expire_member(
    hub: &Hub,
    actor: &Actor,
    net: NetworkId,
    node: NodeId,
) -> Result<Member, StoreError> {
    let member = hub.store().expire_device(actor, net, node).await?;
    tracing::info!(network = %net, %node, actor = actor.as_str(), "member sign-in ended");
    Ok(member)
}

pub async fn rename_member(
    hub: &Hub,
    actor: &Actor,
    net: NetworkId,
    node: NodeId,
    name: &str,
) -> Result<Member, StoreError> {
    let member = hub.store().rename_member(actor, net, node, name).await?;
    Ok(member)
}

pub async fn delete_member(
    hub: &Hub,
    actor: &Actor,
    net: NetworkId,
    node: NodeId,
) -> Result<(), StoreError> {
    hub.store()
        .delete_member(actor, crate::store::AuditAction::MemberDelete, net, node)
        .await?;
    Ok(())
}

/// Adds (`add`) or removes a tag (`tag:NAME`); returns the member's tags.
pub async fn set_tag(
    hub: &Hub,
    actor: &Actor,
    net: NetworkId,
    node: NodeId,
    tag: &str,
    add: bool,
) -> Result<Vec<String>, StoreError> {
    let tags = if add {
        hub.store().tag_member(actor, net, node, tag).await?
    } else {
        hub.store().untag_member(actor, net, node, tag).await?
    };
    Ok(tags)
}

pub async fn approve_route(
    hub: &Hub,
    actor: &Actor,
    net: NetworkId,
    node: NodeId,
    prefix: IpNet,
) -> Result<Route, StoreError> {
    let checks = hub.route_checks();
    let route = hub
        .store()
        .approve_route(actor, net, node, prefix, &checks)
        .await?;
    tracing::info!(network = %net, %node, %prefix, "route approved");
    Ok(route)
}

pub async fn unapprove_route(
    hub: &Hub,
    actor: &Actor,
    net: NetworkId,
    node: NodeId,
    prefix: IpNet,
) -> Result<(), StoreError> {
    hub.store()
        .unapprove_route(actor, net, node, prefix)
        .await?;
    tracing::info!(network = %net, %node, %prefix, "route approval withdrawn");
    Ok(())
}

/// Stores `text` as the next policy if it passes (syntax, names, its own
/// tests); `Policy` with the reason otherwise, and nothing changes.
pub async fn set_policy(
    hub: &Hub,
    actor: &Actor,
    net: NetworkId,
    text: &str,
) -> Result<PolicySet, StoreError> {
    let set = hub.store().set_policy(actor, net, text).await?;
    if set.changed {
        tracing::info!(network = %net, version = set.policy.version, "policy set");
    }
    Ok(set)
}

/// The longest a grant may last.
pub const MAX_GRANT: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);
const MAX_REASON_CHARS: usize = 500;

/// A grant from what a person wrote: `ports` as `tcp:5432` (none: any
/// port), `duration` as `2h`, and a reason. `Err` says what is wrong.
pub fn new_grant(
    from: String,
    to: String,
    ports: Option<&[String]>,
    duration: &str,
    reason: &str,
) -> Result<NewGrant, String> {
    use warren_proto::filter::PortRange;
    let duration = grant_duration(duration)?;
    let reason = grant_reason(reason)?;
    let ports = match ports {
        None => vec![PortRange::ANY],
        Some([]) => return Err("ports: name at least one".into()),
        Some(texts) => texts
            .iter()
            .map(|t| t.parse::<PortRange>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("ports: {e}"))?,
    };
    let ends_at = time::OffsetDateTime::now_utc()
        + time::Duration::try_from(duration).map_err(|_| "for: too long".to_string())?;
    Ok(NewGrant {
        from,
        to,
        ports,
        reason,
        ends_at,
    })
}

/// How long a grant lasts, from `2h` or `20s`: 1 s to [`MAX_GRANT`].
fn grant_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|e| format!("for: {e} (write a duration such as 2h or 20s)"))?;
    if duration.is_zero() || duration > MAX_GRANT {
        return Err("for: a grant lasts from 1s to 30 days".into());
    }
    Ok(duration)
}

fn grant_reason(text: &str) -> Result<String, String> {
    let reason = text.trim().to_string();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(format!(
            "reason: say why, in 1 to {MAX_REASON_CHARS} characters"
        ));
    }
    Ok(reason)
}

/// A person asks for `service` (`NAME` or `service:NAME`) in `net` for
/// `duration`, from a device of theirs there: the grant, once approved,
/// is from `user:<requester>` to the service's own port.
pub async fn request_grant(
    hub: &Hub,
    requester: &str,
    net: NetworkId,
    service: &str,
    duration: &str,
    reason: &str,
) -> Result<GrantRequest, StoreError> {
    let service = service.trim();
    let name = service.strip_prefix("service:").unwrap_or(service);
    if !crate::names::is_label(name) {
        return Err(StoreError::Invalid(format!(
            "service: {name:?} is not a service name (a DNS label such as grafana)"
        )));
    }
    let duration = grant_duration(duration).map_err(StoreError::Invalid)?;
    let reason = grant_reason(reason).map_err(StoreError::Invalid)?;
    let snapshot = hub
        .snapshot(net)
        .await?
        .ok_or(StoreError::NotFound("network"))?;
    if snapshot.devices_of(requester).next().is_none() {
        return Err(StoreError::Invalid(
            "you have no authorized device in this network: a grant would reach nothing".into(),
        ));
    }
    let new = NewGrantRequest {
        requester: requester.to_string(),
        to: format!("service:{name}"),
        ports: vec![warren_proto::filter::PortRange::ANY],
        duration,
        reason,
    };
    let request = hub.store().request_grant(net, new).await?;
    tracing::info!(network = %net, request = %request.id, to = %request.to, "grant requested");
    Ok(request)
}

/// Decides a pending request; an approval's grant reaches the members at
/// once.
pub async fn decide_request(
    hub: &Hub,
    actor: &Actor,
    net: NetworkId,
    id: &str,
    decision: Decision,
) -> Result<(GrantRequest, Option<Grant>), StoreError> {
    let (request, grant) = hub
        .store()
        .decide_grant_request(actor, net, id, decision)
        .await?;
    tracing::info!(network = %net, request = %request.id, state = request.state.as_str(), "grant request decided");
    Ok((request, grant))
}

pub async fn add_grant(
    hub: &Hub,
    actor: &Actor,
    net: NetworkId,
    new: NewGrant,
) -> Result<Grant, StoreError> {
    let grant = hub.store().add_grant(actor, net, new).await?;
    tracing::info!(network = %net, grant = %grant.id, ends_at = %grant.ends_at, "grant added");
    Ok(grant)
}

pub async fn revoke_grant(
    hub: &Hub,
    actor: &Actor,
    net: NetworkId,
    id: &str,
) -> Result<Grant, StoreError> {
    let grant = hub.store().revoke_grant(actor, net, id).await?;
    tracing::info!(network = %net, grant = %grant.id, "grant revoked");
    Ok(grant)
}
