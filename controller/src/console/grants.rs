//! A network's grants (temporary access that ends by itself): the list,
//! and for admins, granting and revoking.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use warren_proto::NetworkId;

use super::networks::snapshot;
use super::session::{Change, Empty, Staff};
use super::views::{self, Nav};
use super::ConsoleState;
use crate::store::Actor;

pub struct GrantRow {
    pub id: String,
    pub from: String,
    pub to: String,
    pub ports: String,
    pub ends_at: String,
    pub reason: String,
    pub created_by: String,
    pub active: bool,
}

#[derive(Template)]
#[template(path = "console/grants.html")]
struct Grants {
    title: String,
    nav: Nav,
    net: String,
    tab: &'static str,
    admin: bool,
    grants: Vec<GrantRow>,
}

/// `/console/networks/ID/grants`: active and past grants, newest first.
pub async fn page(
    State(state): State<ConsoleState>,
    Path(net): Path<NetworkId>,
    Staff(viewer): Staff,
) -> Response {
    let network = match snapshot(&state, net).await {
        Ok(s) => s.network.name.clone(),
        Err(page) => return page,
    };
    let grants = match state.hub.store().list_grants(net, true).await {
        Ok(grants) => grants,
        Err(e) => return views::store_error(e),
    };
    let grants = grants
        .into_iter()
        .map(|g| GrantRow {
            ports: g
                .ports
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            id: g.id,
            from: g.from,
            to: g.to,
            ends_at: g.revoked_at.unwrap_or(g.ends_at),
            reason: g.reason,
            created_by: g.created_by,
            active: g.active,
        })
        .collect();
    views::ok(&Grants {
        title: format!("{network}: grants"),
        nav: Nav::new(&viewer, "networks").live(),
        net: net.to_string(),
        tab: "grants",
        admin: viewer.is_admin(),
        grants,
    })
}

#[derive(Debug, Deserialize)]
pub struct GrantForm {
    from: String,
    to: String,
    #[serde(default)]
    ports: String,
    #[serde(rename = "for")]
    duration: String,
    reason: String,
}

/// `POST /console/networks/ID/grants` (admins).
pub async fn add(
    State(state): State<ConsoleState>,
    Path(net): Path<NetworkId>,
    change: Change<GrantForm>,
) -> Response {
    if let Err(page) = change.viewer.require_admin() {
        return page;
    }
    let form = change.form;
    let ports: Vec<String> = form
        .ports
        .split([',', ' '])
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    let new = match crate::service::new_grant(
        form.from.trim().to_string(),
        form.to.trim().to_string(),
        (!ports.is_empty()).then_some(ports.as_slice()),
        &form.duration,
        &form.reason,
    ) {
        Ok(new) => new,
        Err(reason) => return views::message(StatusCode::BAD_REQUEST, "Not granted", &reason),
    };
    let actor = Actor::user(&change.viewer.user.email);
    let done = crate::service::add_grant(&state.hub, &actor, net, new).await;
    views::done_or_refused(done, &format!("/console/networks/{net}/grants"))
}

/// `POST /console/networks/ID/grants/GRANT/revoke` (admins).
pub async fn revoke(
    State(state): State<ConsoleState>,
    Path((net, grant)): Path<(NetworkId, String)>,
    change: Change<Empty>,
) -> Response {
    if let Err(page) = change.viewer.require_admin() {
        return page;
    }
    let actor = Actor::user(&change.viewer.user.email);
    let done = crate::service::revoke_grant(&state.hub, &actor, net, &grant).await;
    views::done_or_refused(done, &format!("/console/networks/{net}/grants"))
}
