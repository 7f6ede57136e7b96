//! A network's members: who, whose, where from, online or when last seen,
//! how they reach their peers; approve, revoke, rename, tag.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use warren_proto::{NetworkId, NodeId};

use super::networks::snapshot;
use super::session::{Change, Staff};
use super::views::{self, Nav};
use super::ConsoleState;
use crate::hub::Hub;
use crate::store::{Actor, Member, MemberState, NetworkSnapshot};
use warren_proto::control::PeerPathKind;

pub struct PathRow {
    pub peer: String,
    pub kind: &'static str,
}

pub struct MemberRow {
    pub node_id: String,
    pub name: String,
    pub owner: Option<String>,
    pub tags: Vec<String>,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    /// authorized, pending, revoked or expired.
    pub state: &'static str,
    pub online: bool,
    pub last_seen: Option<String>,
    /// The address the member connects from (its first endpoint).
    pub endpoint: String,
    pub paths: Vec<PathRow>,
    pub version: String,
    pub expiry: String,
}

pub fn state_name(m: &Member) -> &'static str {
    if m.expired {
        return "expired";
    }
    match m.state {
        MemberState::Authorized => "authorized",
        MemberState::Pending => "pending",
        MemberState::Revoked => "revoked",
    }
}

/// The rows of the members page, from a snapshot and the paths agents
/// reported (no store reads: a network of a thousand members is one
/// pass).
pub fn rows(hub: &Hub, snapshot: &NetworkSnapshot) -> Vec<MemberRow> {
    let mut rows: Vec<MemberRow> = snapshot
        .members
        .iter()
        .map(|m| MemberRow {
            node_id: m.node_id.to_string(),
            name: m.display_name().to_string(),
            owner: m.owner.clone(),
            tags: snapshot
                .policy
                .tags
                .get(&m.node_id)
                .map(|tags| tags.iter().map(|t| format!("tag:{t}")).collect())
                .unwrap_or_default(),
            ipv4: m.ipv4.map(|a| a.to_string()),
            ipv6: m.ipv6.map(|a| a.to_string()),
            state: state_name(m),
            online: m.online,
            last_seen: m.last_seen.clone(),
            endpoint: m
                .endpoints
                .first()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            paths: hub
                .paths_of(snapshot.network.id, m.node_id)
                .into_iter()
                .map(|p| PathRow {
                    peer: p.peer_name,
                    kind: match p.kind {
                        PeerPathKind::Direct => "direct",
                        PeerPathKind::Relayed => "relayed",
                    },
                })
                .collect(),
            version: m.agent_version.clone(),
            expiry: m.expires_at.clone().unwrap_or_else(|| "never".into()),
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

#[derive(Template)]
#[template(path = "console/members.html")]
pub struct Members {
    pub title: String,
    pub nav: Nav,
    pub net: String,
    pub tab: &'static str,
    pub admin: bool,
    pub members: Vec<MemberRow>,
}

impl Members {
    pub fn of(hub: &Hub, snapshot: &NetworkSnapshot, nav: Nav, admin: bool) -> Members {
        Members {
            title: format!("{}: members", snapshot.network.name),
            nav,
            net: snapshot.network.id.to_string(),
            tab: "members",
            admin,
            members: rows(hub, snapshot),
        }
    }
}

/// `/console/networks/ID`.
pub async fn page(
    State(state): State<ConsoleState>,
    Path(net): Path<NetworkId>,
    Staff(viewer): Staff,
) -> Response {
    match snapshot(&state, net).await {
        Ok(snapshot) => views::ok(&Members::of(
            &state.hub,
            &snapshot,
            Nav::new(&viewer, "networks").live(),
            viewer.is_admin(),
        )),
        Err(page) => page,
    }
}

#[derive(Debug, Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    tag: String,
    /// `add` or `remove`, for tags.
    #[serde(default)]
    op: String,
}

/// `POST /console/networks/ID/members/NODE/ACTION`: authorize, revoke,
/// rename, tag (admins).
pub async fn act(
    State(state): State<ConsoleState>,
    Path((net, node, action)): Path<(NetworkId, NodeId, String)>,
    change: Change<MemberForm>,
) -> Response {
    if let Err(page) = change.viewer.require_admin() {
        return page;
    }
    let actor = Actor::user(&change.viewer.user.email);
    let hub = &state.hub;
    let form = &change.form;
    let done = match action.as_str() {
        "authorize" | "revoke" => {
            let to = if action == "authorize" {
                MemberState::Authorized
            } else {
                MemberState::Revoked
            };
            crate::service::set_member_state(hub, &actor, net, node, to)
                .await
                .map(|_| ())
        }
        "rename" => crate::service::rename_member(hub, &actor, net, node, form.name.trim())
            .await
            .map(|_| ()),
        "tag" => {
            let add = match form.op.as_str() {
                "add" => true,
                "remove" => false,
                _ => return views::message(StatusCode::BAD_REQUEST, "Not done", "Add or remove?"),
            };
            crate::service::set_tag(hub, &actor, net, node, form.tag.trim(), add)
                .await
                .map(|_| ())
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    views::done_or_refused(done, &format!("/console/networks/{net}"))
}
