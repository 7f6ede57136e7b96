//! Temporary access people ask for: `/console/access` shows a person's
//! requests and grants and takes new requests; admins decide them from
//! the queue.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use warren_proto::NetworkId;

use super::networks::all_snapshots;
use super::session::{Change, Empty, Viewer};
use super::views::{self, Nav};
use super::ConsoleState;
use crate::store::{Actor, Decision, GrantRequest, RequestFilter};

/// Requests shown on one page.
const SHOWN: u32 = 100;

/// A request as the pages show it.
pub struct RequestRow {
    pub id: String,
    pub network: String,
    pub network_name: String,
    pub requester: String,
    pub service: String,
    pub lasts: String,
    pub reason: String,
    pub created_at: String,
    pub state: &'static str,
    /// Who decided, and when, for decided ones.
    pub decided: String,
    pub grant_id: String,
}

impl RequestRow {
    pub fn new(request: GrantRequest, network_name: &str) -> Self {
        let decided = match (&request.decided_by, &request.decided_at) {
            (Some(by), Some(at)) => format!("{by}, {at}"),
            _ => String::new(),
        };
        RequestRow {
            network: request.network_id.to_string(),
            network_name: network_name.to_string(),
            service: request
                .to
                .strip_prefix("service:")
                .unwrap_or(&request.to)
                .to_string(),
            lasts: humantime::format_duration(std::time::Duration::from_secs(
                request.duration_secs,
            ))
            .to_string(),
            state: request.state.as_str(),
            decided,
            grant_id: request.grant_id.unwrap_or_default(),
            id: request.id,
            requester: request.requester,
            reason: request.reason,
            created_at: request.created_at,
        }
    }
}

pub struct OwnGrant {
    pub id: String,
    pub network_name: String,
    pub to: String,
    pub ends_at: String,
}

pub struct NetworkChoice {
    pub id: String,
    pub name: String,
}

#[derive(Template)]
#[template(path = "console/access.html")]
struct Access {
    title: &'static str,
    nav: Nav,
    requests: Vec<RequestRow>,
    grants: Vec<OwnGrant>,
    /// Networks where the viewer has an authorized device to ask from.
    networks: Vec<NetworkChoice>,
}

/// `/console/access`: the viewer's requests, their active grants, and
/// the form to ask for a service.
pub async fn page(State(state): State<ConsoleState>, viewer: Viewer) -> Response {
    let snapshots = match all_snapshots(&state).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let name_of = |net: NetworkId| {
        snapshots
            .iter()
            .find(|s| s.network.id == net)
            .map(|s| s.network.name.clone())
            .unwrap_or_default()
    };
    let filter = RequestFilter {
        requester: Some(viewer.user.email.clone()),
        limit: SHOWN,
        ..RequestFilter::default()
    };
    let requests = match state.hub.store().list_grant_requests(&filter).await {
        Ok(requests) => requests,
        Err(e) => return views::store_error(e),
    };
    let requests = requests
        .into_iter()
        .map(|r| {
            let name = name_of(r.network_id);
            RequestRow::new(r, &name)
        })
        .collect();
    let me = format!("user:{}", viewer.user.email);
    let mut grants = Vec::new();
    let mut networks = Vec::new();
    for s in &snapshots {
        let name = &s.network.name;
        grants.extend(
            s.policy
                .grants
                .iter()
                .filter(|g| g.active && g.from.eq_ignore_ascii_case(&me))
                .map(|g| OwnGrant {
                    id: g.id.clone(),
                    network_name: name.clone(),
                    to: g.to.clone(),
                    ends_at: g.ends_at.clone(),
                }),
        );
        if s.devices_of(&viewer.user.email).next().is_some() {
            networks.push(NetworkChoice {
                id: s.network.id.to_string(),
                name: name.clone(),
            });
        }
    }
    views::ok(&Access {
        title: "My access",
        nav: Nav::new(&viewer, "access").live(),
        requests,
        grants,
        networks,
    })
}

#[derive(Debug, Deserialize)]
pub struct RequestForm {
    network: String,
    service: String,
    #[serde(rename = "for")]
    duration: String,
    reason: String,
}

/// `POST /console/access`: a person asks.
pub async fn request(State(state): State<ConsoleState>, change: Change<RequestForm>) -> Response {
    let form = change.form;
    let Ok(net) = form.network.trim().parse::<NetworkId>() else {
        return views::message(StatusCode::BAD_REQUEST, "Not asked", "Which network?");
    };
    let done = crate::service::request_grant(
        &state.hub,
        &change.viewer.user.email,
        net,
        &form.service,
        &form.duration,
        &form.reason,
    )
    .await;
    views::done_or_refused(done, "/console/access")
}

/// `POST /console/access/NET/REQUEST/withdraw`: the person who asked
/// takes a pending request back.
pub async fn withdraw(
    State(state): State<ConsoleState>,
    Path((net, id)): Path<(NetworkId, String)>,
    change: Change<Empty>,
) -> Response {
    let viewer = &change.viewer;
    let filter = RequestFilter {
        network: Some(net),
        requester: Some(viewer.user.email.clone()),
        pending_only: true,
        limit: crate::store::MAX_PENDING_REQUESTS as u32,
    };
    match state.hub.store().list_grant_requests(&filter).await {
        Ok(mine) if mine.iter().any(|r| r.id == id) => {}
        Ok(_) => {
            return super::session::refusal(
                StatusCode::FORBIDDEN,
                "That is not a request of yours that waits.",
            )
        }
        Err(e) => return views::store_error(e),
    }
    let actor = Actor::user(&viewer.user.email);
    let done =
        crate::service::decide_request(&state.hub, &actor, net, &id, Decision::Withdraw).await;
    views::done_or_refused(done, "/console/access")
}

/// `POST /console/networks/NET/requests/REQUEST/{approve,deny}` (admins).
pub async fn decide(
    State(state): State<ConsoleState>,
    Path((net, id, action)): Path<(NetworkId, String, String)>,
    change: Change<Empty>,
) -> Response {
    if let Err(page) = change.viewer.require_admin() {
        return page;
    }
    let decision = match action.as_str() {
        "approve" => Decision::Approve,
        "deny" => Decision::Deny,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let actor = Actor::user(&change.viewer.user.email);
    let done = crate::service::decide_request(&state.hub, &actor, net, &id, decision).await;
    views::done_or_refused(done, "/console/queue")
}
