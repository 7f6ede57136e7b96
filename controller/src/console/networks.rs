//! The networks overview, the queue of what waits for an admin, and a
//! network's routes.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ipnet::IpNet;
use serde::Deserialize;
use warren_proto::{NetworkId, NodeId};

use super::session::{Change, Staff, Viewer};
use super::views::{self, Nav};
use super::ConsoleState;
use crate::store::{MemberState, NetworkSnapshot};

/// A network's snapshot, as the hub caches it; 404 page if none.
pub async fn snapshot(
    state: &ConsoleState,
    net: NetworkId,
) -> Result<Arc<NetworkSnapshot>, Response> {
    match state.hub.snapshot(net).await {
        Ok(Some(snapshot)) => Ok(snapshot),
        Ok(None) => Err(views::message(
            StatusCode::NOT_FOUND,
            "No such network",
            &format!("There is no network {net}."),
        )),
        Err(e) => Err(views::internal(e)),
    }
}

/// Every network's snapshot, in the store's order.
pub async fn all_snapshots(state: &ConsoleState) -> Result<Vec<Arc<NetworkSnapshot>>, Response> {
    let networks = state
        .hub
        .store()
        .list_networks()
        .await
        .map_err(views::internal)?;
    let mut snapshots = Vec::with_capacity(networks.len());
    for network in networks {
        // A network deleted in between is simply not shown.
        if let Some(snapshot) = state
            .hub
            .snapshot(network.id)
            .await
            .map_err(views::internal)?
        {
            snapshots.push(snapshot);
        }
    }
    Ok(snapshots)
}

pub struct NetworkRow {
    pub id: String,
    pub name: String,
    pub zone: String,
    pub members: usize,
    pub online: usize,
    pub pending: usize,
    pub routes_waiting: usize,
}

#[derive(Template)]
#[template(path = "console/networks.html")]
struct Networks {
    title: &'static str,
    nav: Nav,
    networks: Vec<NetworkRow>,
}

/// `/console`: the networks for staff; everyone else goes to the portal.
pub async fn home(State(state): State<ConsoleState>, viewer: Viewer) -> Response {
    if !viewer.role.sees_all() {
        return Redirect::to("/console/portal").into_response();
    }
    let snapshots = match all_snapshots(&state).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let networks = snapshots
        .iter()
        .map(|s| NetworkRow {
            id: s.network.id.to_string(),
            name: s.network.name.clone(),
            zone: s.network.zone.clone(),
            members: s.members.len(),
            online: s.members.iter().filter(|m| m.online).count(),
            pending: s
                .members
                .iter()
                .filter(|m| m.state == MemberState::Pending)
                .count(),
            routes_waiting: s
                .routes
                .iter()
                .filter(|r| r.advertised && !r.approved)
                .count(),
        })
        .collect();
    views::ok(&Networks {
        title: "Networks",
        nav: Nav::new(&viewer, "networks").live(),
        networks,
    })
}

pub struct PendingRow {
    pub network: String,
    pub network_name: String,
    pub node_id: String,
    pub name: String,
    pub since: String,
    pub endpoint: String,
}

pub struct RouteWaiting {
    pub network: String,
    pub network_name: String,
    pub node_id: String,
    pub member: String,
    pub prefix: String,
}

#[derive(Template)]
#[template(path = "console/queue.html")]
struct Queue {
    title: &'static str,
    nav: Nav,
    admin: bool,
    pending: Vec<PendingRow>,
    routes: Vec<RouteWaiting>,
    requests: Vec<super::access::RequestRow>,
}

/// Pending grant requests the queue shows at most.
const QUEUED_REQUESTS: u32 = 500;

/// `/console/queue`: pending members, routes and grant requests waiting,
/// across networks.
pub async fn queue(State(state): State<ConsoleState>, Staff(viewer): Staff) -> Response {
    let snapshots = match all_snapshots(&state).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let mut pending = Vec::new();
    let mut routes = Vec::new();
    for s in &snapshots {
        let net = s.network.id.to_string();
        for m in s.members.iter().filter(|m| m.state == MemberState::Pending) {
            pending.push(PendingRow {
                network: net.clone(),
                network_name: s.network.name.clone(),
                node_id: m.node_id.to_string(),
                name: m.display_name().to_string(),
                since: m.created_at.clone(),
                endpoint: m
                    .endpoints
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            });
        }
        for r in s.routes.iter().filter(|r| r.advertised && !r.approved) {
            routes.push(RouteWaiting {
                network: net.clone(),
                network_name: s.network.name.clone(),
                node_id: r.node_id.to_string(),
                member: s
                    .members
                    .iter()
                    .find(|m| m.node_id == r.node_id)
                    .map(|m| m.display_name().to_string())
                    .unwrap_or_default(),
                prefix: r.prefix.to_string(),
            });
        }
    }
    let filter = crate::store::RequestFilter {
        pending_only: true,
        limit: QUEUED_REQUESTS,
        ..Default::default()
    };
    let requests = match state.hub.store().list_grant_requests(&filter).await {
        Ok(requests) => requests,
        Err(e) => return views::store_error(e),
    };
    let requests = requests
        .into_iter()
        .filter_map(|r| {
            // A network deleted since has no queue.
            let s = snapshots.iter().find(|s| s.network.id == r.network_id)?;
            Some(super::access::RequestRow::new(r, &s.network.name))
        })
        .collect();
    views::ok(&Queue {
        title: "Waiting for an admin",
        nav: Nav::new(&viewer, "queue").live(),
        admin: viewer.is_admin(),
        pending,
        routes,
        requests,
    })
}

pub struct RouteRow {
    pub node_id: String,
    pub member: String,
    pub prefix: String,
    pub approved: bool,
    /// primary, standby, offered (not approved) or withdrawn (no longer
    /// advertised).
    pub role: &'static str,
}

#[derive(Template)]
#[template(path = "console/routes.html")]
struct Routes {
    title: String,
    nav: Nav,
    net: String,
    tab: &'static str,
    admin: bool,
    routes: Vec<RouteRow>,
}

/// `/console/networks/ID/routes`: advertised and approved routes, which
/// member is primary for each prefix and which stand by.
pub async fn routes(
    State(state): State<ConsoleState>,
    Path(net): Path<NetworkId>,
    Staff(viewer): Staff,
) -> Response {
    let snapshot = match snapshot(&state, net).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let mut routes: Vec<RouteRow> = crate::routes::views(&snapshot)
        .into_iter()
        .map(|v| RouteRow {
            node_id: v.route.node_id.to_string(),
            member: v.name,
            prefix: v.route.prefix.to_string(),
            approved: v.route.approved,
            role: match (v.route.advertised, v.route.approved, v.primary) {
                (false, _, _) => "not advertised now",
                (true, false, _) => "waiting for approval",
                (true, true, true) => "primary",
                (true, true, false) => "standby",
            },
        })
        .collect();
    routes.sort_by(|a, b| (&a.prefix, &a.member).cmp(&(&b.prefix, &b.member)));
    views::ok(&Routes {
        title: format!("{}: routes", snapshot.network.name),
        nav: Nav::new(&viewer, "networks").live(),
        net: net.to_string(),
        tab: "routes",
        admin: viewer.is_admin(),
        routes,
    })
}

#[derive(Debug, Deserialize)]
pub struct RouteForm {
    node: String,
    prefix: String,
}

/// `POST /console/networks/ID/routes/{approve,unapprove}`.
pub async fn route_act(
    State(state): State<ConsoleState>,
    Path((net, action)): Path<(NetworkId, String)>,
    change: Change<RouteForm>,
) -> Response {
    if let Err(page) = change.viewer.require_admin() {
        return page;
    }
    let (Ok(node), Ok(prefix)) = (
        change.form.node.parse::<NodeId>(),
        change.form.prefix.parse::<IpNet>(),
    ) else {
        return views::message(StatusCode::BAD_REQUEST, "Not done", "Which route?");
    };
    let actor = crate::store::Actor::user(&change.viewer.user.email);
    let done = match action.as_str() {
        "approve" => crate::service::approve_route(&state.hub, &actor, net, node, prefix)
            .await
            .map(|_| ()),
        "unapprove" => crate::service::unapprove_route(&state.hub, &actor, net, node, prefix).await,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    views::done_or_refused(done, &format!("/console/networks/{net}/routes"))
}
