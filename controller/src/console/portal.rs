//! The service portal (every service members publish, with links for the
//! web ones, filtered by what the viewer's devices may reach) and a
//! person's own devices.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use warren_proto::filter::PortRange;
use warren_proto::service::{ServiceRecord, ServiceSpec};
use warren_proto::{NetworkId, NodeId};

use super::networks::all_snapshots;
use super::session::{Change, Viewer};
use super::views::{self, Nav};
use super::ConsoleState;
use crate::policy::{NetworkView, TestTarget};
use crate::store::{Actor, NetworkSnapshot};

pub struct ServiceRow {
    pub name: String,
    pub proto: &'static str,
    /// A link, for web services.
    pub url: Option<String>,
    /// `host:port`, to copy, for the others.
    pub address: String,
}

pub struct MemberServices {
    pub name: String,
    pub services: Vec<ServiceRow>,
}

pub struct NetworkServices {
    pub id: String,
    pub name: String,
    pub zone: String,
    pub members: Vec<MemberServices>,
}

#[derive(Template)]
#[template(path = "console/portal.html")]
struct Portal {
    title: &'static str,
    nav: Nav,
    /// The viewer sees every service (staff).
    all: bool,
    networks: Vec<NetworkServices>,
}

/// The value of TXT `key=value` in a service's strings.
fn txt<'a>(spec: &'a ServiceSpec, key: &str) -> Option<&'a str> {
    spec.txt
        .iter()
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
}

/// The link to a web service: `http`/`https` by its TXT `scheme=`, else by
/// its name (`http`, `https`), else by a TXT `path=` (the DNS-SD key for a
/// web page's path); the path from `path=`. Other services get none.
pub fn service_url(host: &str, spec: &ServiceSpec) -> Option<String> {
    let path = txt(spec, "path");
    let scheme = match txt(spec, "scheme") {
        Some(s @ ("http" | "https")) => s,
        Some(_) => return None,
        None => match spec.name.as_str() {
            "http" | "https" => spec.name.as_str(),
            _ if path.is_some() => "http",
            _ => return None,
        },
    };
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port = if spec.port == default_port {
        String::new()
    } else {
        format!(":{}", spec.port)
    };
    // A path is a path: a leading slash, and nothing that would take the
    // link to another host or scheme.
    let path = path.unwrap_or("/");
    let path = if path.starts_with('/') && !path.starts_with("//") && !path.contains(['\\', ' ']) {
        path
    } else {
        "/"
    };
    Some(format!("{scheme}://{host}{port}{path}"))
}

/// Whether any of `devices` (member names) may reach the service.
fn reachable(
    compiled: &crate::policy::Compiled,
    view: &NetworkView,
    devices: &[String],
    record: &ServiceRecord,
) -> bool {
    let Ok(port) =
        format!("{}:{}", record.service.proto.as_str(), record.service.port).parse::<PortRange>()
    else {
        return false;
    };
    let to = TestTarget::Member(record.member.clone());
    devices.iter().any(|from| {
        crate::policy::explain(compiled, view, from, &to, port).is_ok_and(|d| d.allowed)
    })
}

/// The services of one network the viewer may see: all of them for staff;
/// for others, those their authorized devices in it may reach.
fn visible(
    state: &ConsoleState,
    snapshot: &std::sync::Arc<NetworkSnapshot>,
    viewer: &Viewer,
) -> Option<NetworkServices> {
    let records = crate::dns::snapshot::service_records(snapshot);
    let records: Vec<ServiceRecord> = if viewer.role.sees_all() {
        records
    } else {
        let devices: Vec<String> = snapshot
            .devices_of(&viewer.user.email)
            .filter_map(|m| m.name.clone())
            .collect();
        if devices.is_empty() {
            return None;
        }
        let shared = state.hub.view(snapshot);
        let view = NetworkView::from_snapshot(snapshot, &snapshot.policy.tags);
        records
            .into_iter()
            .filter(|r| reachable(&shared.policy, &view, &devices, r))
            .collect()
    };
    if records.is_empty() {
        return None;
    }
    let zone = &snapshot.network.zone;
    let mut members: Vec<MemberServices> = Vec::new();
    for record in records {
        let host = format!("{}.{zone}", record.member);
        let row = ServiceRow {
            name: record.service.name.clone(),
            proto: record.service.proto.as_str(),
            url: service_url(&host, &record.service),
            address: format!("{host}:{}", record.service.port),
        };
        match members.last_mut() {
            Some(last) if last.name == record.member => last.services.push(row),
            _ => members.push(MemberServices {
                name: record.member,
                services: vec![row],
            }),
        }
    }
    Some(NetworkServices {
        id: snapshot.network.id.to_string(),
        name: snapshot.network.name.clone(),
        zone: zone.clone(),
        members,
    })
}

/// `/console/portal`.
pub async fn portal(State(state): State<ConsoleState>, viewer: Viewer) -> Response {
    let snapshots = match all_snapshots(&state).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let networks = snapshots
        .iter()
        .filter_map(|s| visible(&state, s, &viewer))
        .collect();
    views::ok(&Portal {
        title: "Services",
        nav: Nav::new(&viewer, "portal").live(),
        all: viewer.role.sees_all(),
        networks,
    })
}

pub struct DeviceRow {
    pub network: String,
    pub network_name: String,
    pub node_id: String,
    pub name: String,
    pub ipv4: Option<String>,
    pub state: &'static str,
    pub online: bool,
    pub expiry: String,
}

#[derive(Template)]
#[template(path = "console/devices.html")]
struct Devices {
    title: &'static str,
    nav: Nav,
    devices: Vec<DeviceRow>,
}

/// `/console/devices`: the devices the viewer signed in.
pub async fn devices(State(state): State<ConsoleState>, viewer: Viewer) -> Response {
    let snapshots = match all_snapshots(&state).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let mut devices = Vec::new();
    for s in &snapshots {
        for m in s.members.iter().filter(|m| viewer.owns(m.owner.as_deref())) {
            devices.push(DeviceRow {
                network: s.network.id.to_string(),
                network_name: s.network.name.clone(),
                node_id: m.node_id.to_string(),
                name: m.display_name().to_string(),
                ipv4: m.ipv4.map(|a| a.to_string()),
                state: super::members::state_name(m),
                online: m.online,
                expiry: m.expires_at.clone().unwrap_or_else(|| "never".into()),
            });
        }
    }
    views::ok(&Devices {
        title: "My devices",
        nav: Nav::new(&viewer, "devices").live(),
        devices,
    })
}

#[derive(Debug, Deserialize)]
pub struct DeviceForm {
    #[serde(default)]
    name: String,
}

/// `POST /console/devices/NET/NODE/{rename,expire,remove}`: a person's
/// own device only.
pub async fn device_act(
    State(state): State<ConsoleState>,
    Path((net, node, action)): Path<(NetworkId, NodeId, String)>,
    change: Change<DeviceForm>,
) -> Response {
    let viewer = &change.viewer;
    let member = match state.hub.store().get_member(net, node).await {
        Ok(member) => member,
        Err(e) => return views::store_error(e),
    };
    if !viewer.owns(member.owner.as_deref()) {
        return super::session::refusal(
            StatusCode::FORBIDDEN,
            "That device is not yours: only its owner (or an admin, on the members page) changes it.",
        );
    }
    let actor = Actor::user(&viewer.user.email);
    let hub = &state.hub;
    let done = match action.as_str() {
        "rename" => crate::service::rename_member(hub, &actor, net, node, change.form.name.trim())
            .await
            .map(|_| ()),
        "expire" => crate::service::expire_member(hub, &actor, net, node)
            .await
            .map(|_| ()),
        "remove" => crate::service::delete_member(hub, &actor, net, node).await,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    views::done_or_refused(done, "/console/devices")
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::service::ServiceProto;

    fn spec(name: &str, port: u16, txt: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            proto: ServiceProto::Tcp,
            port,
            txt: txt.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn web_services_get_links_and_the_others_do_not() {
        let host = "grafana-master.prod.warren.internal";
        assert_eq!(
            service_url(
                host,
                &spec("grafana", 3000, &["scheme=http", "path=/d/home"])
            )
            .as_deref(),
            Some("http://grafana-master.prod.warren.internal:3000/d/home")
        );
        assert_eq!(
            service_url(host, &spec("https", 443, &[])).as_deref(),
            Some("https://grafana-master.prod.warren.internal/")
        );
        assert_eq!(
            service_url(host, &spec("wiki", 8080, &["path=/"])).as_deref(),
            Some("http://grafana-master.prod.warren.internal:8080/")
        );
        assert_eq!(service_url(host, &spec("postgres", 5432, &[])), None);
        assert_eq!(
            service_url(host, &spec("x", 80, &["scheme=javascript"])),
            None
        );
        // A path that would lead elsewhere is dropped.
        assert_eq!(
            service_url(host, &spec("http", 80, &["path=//evil.example/"])).as_deref(),
            Some("http://grafana-master.prod.warren.internal/")
        );
    }
}
