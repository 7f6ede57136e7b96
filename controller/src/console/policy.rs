//! A network's policy: the document, highlighted; editing it, where its
//! tests run before anything is saved; and the explain form ("can X reach
//! Y on port P, and why").

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use warren_proto::filter::PortRange;
use warren_proto::NetworkId;

use super::session::{Change, Staff, Viewer};
use super::views::{self, Nav};
use super::ConsoleState;
use crate::policy::{self, Policy, TestTarget};
use crate::store::{Actor, PolicyState, StoreError};

pub struct TestRow {
    pub text: String,
    pub passed: bool,
}

pub struct Explained {
    pub allowed: bool,
    pub text: String,
}

#[derive(Template)]
#[template(path = "console/policy.html")]
struct PolicyPage {
    title: String,
    nav: Nav,
    net: String,
    tab: &'static str,
    admin: bool,
    version: u64,
    changed_by: Option<String>,
    highlighted: String,
    /// What the edit box holds: the current text, or a refused draft.
    draft: String,
    refused: Option<String>,
    tests: Vec<TestRow>,
    explain_from: String,
    explain_to: String,
    explain_port: String,
    explained: Option<Explained>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ExplainQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    port: String,
}

fn explain(current: &PolicyState, q: &ExplainQuery) -> Explained {
    let answer = || -> Result<policy::Decision, String> {
        let port: PortRange = q.port.trim().parse().map_err(|e| format!("port: {e}"))?;
        let to = match q.to.trim().parse::<std::net::IpAddr>() {
            Ok(ip) => TestTarget::Ip(ip),
            Err(_) => TestTarget::Member(q.to.trim().to_string()),
        };
        let parsed = Policy::parse(&current.current.text).map_err(|e| e.to_string())?;
        let compiled = policy::compile(
            &parsed,
            &current.grant_rules(),
            &current.view,
            current.current.version,
        );
        policy::explain(&compiled, &current.view, q.from.trim(), &to, port)
            .map_err(|e| e.to_string())
    };
    match answer() {
        Ok(d) => Explained {
            allowed: d.allowed,
            text: format!(
                "{}: {}{}",
                if d.allowed { "Allowed" } else { "Denied" },
                d.reason,
                d.rule.map(|r| format!(" (rule {r})")).unwrap_or_default()
            ),
        },
        Err(e) => Explained {
            allowed: false,
            text: format!("Cannot explain: {e}"),
        },
    }
}

/// The network's name and its policy as it is now.
async fn current(state: &ConsoleState, net: NetworkId) -> Result<(String, PolicyState), Response> {
    let store = state.hub.store();
    let name = store
        .get_network(net)
        .await
        .map_err(views::store_error)?
        .name;
    let policy = store.policy_state(net).await.map_err(views::store_error)?;
    Ok((name, policy))
}

fn page_of(
    net: NetworkId,
    (name, current): &(String, PolicyState),
    viewer: &Viewer,
    draft: Option<String>,
    refused: Option<String>,
    q: &ExplainQuery,
) -> PolicyPage {
    let explained =
        (!q.from.is_empty() && !q.to.is_empty() && !q.port.is_empty()).then(|| explain(current, q));
    PolicyPage {
        title: format!("{name}: policy"),
        nav: Nav::new(viewer, "networks"),
        net: net.to_string(),
        tab: "policy",
        admin: viewer.is_admin(),
        version: current.current.version,
        changed_by: Some(current.current.created_by.clone()).filter(|b| !b.is_empty()),
        highlighted: super::highlight::toml(&current.current.text),
        draft: draft.unwrap_or_else(|| current.current.text.clone()),
        refused,
        tests: Vec::new(),
        explain_from: q.from.clone(),
        explain_to: q.to.clone(),
        explain_port: q.port.clone(),
        explained,
    }
}

/// `/console/networks/ID/policy[?from=&to=&port=]`.
pub async fn page(
    State(state): State<ConsoleState>,
    Path(net): Path<NetworkId>,
    Query(q): Query<ExplainQuery>,
    Staff(viewer): Staff,
) -> Response {
    match current(&state, net).await {
        Ok(current) => views::ok(&page_of(net, &current, &viewer, None, None, &q)),
        Err(page) => page,
    }
}

#[derive(Debug, Deserialize)]
pub struct SaveForm {
    text: String,
    /// The version the editor started from.
    #[serde(default)]
    version: String,
}

/// `POST /console/networks/ID/policy`: saved only if it passes; a refusal
/// shows the page again with the draft and why (a failing test names
/// itself), and the stored policy is untouched.
pub async fn save(
    State(state): State<ConsoleState>,
    Path(net): Path<NetworkId>,
    change: Change<SaveForm>,
) -> Response {
    let viewer = &change.viewer;
    if let Err(page) = viewer.require_admin() {
        return page;
    }
    let before = match current(&state, net).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let text = change.form.text.replace("\r\n", "\n");
    let refuse = |reason: String| {
        let page = page_of(
            net,
            &before,
            viewer,
            Some(text.clone()),
            Some(reason),
            &ExplainQuery::default(),
        );
        views::render(StatusCode::UNPROCESSABLE_ENTITY, &page)
    };
    if change.form.version.trim() != before.1.current.version.to_string() {
        return refuse(format!(
            "The policy changed since you opened it (now version {}): your draft is below; \
             compare it with the current document and save again.",
            before.1.current.version
        ));
    }
    let actor = Actor::user(&viewer.user.email);
    match crate::service::set_policy(&state.hub, &actor, net, &text).await {
        Ok(set) => {
            let after = match current(&state, net).await {
                Ok(c) => c,
                Err(page) => return page,
            };
            let mut page = page_of(net, &after, viewer, None, None, &ExplainQuery::default());
            page.tests = set
                .tests
                .iter()
                .map(|t| TestRow {
                    text: t.test.clone(),
                    passed: t.passed,
                })
                .collect();
            page.nav = page.nav.notice(Some(if set.changed {
                format!(
                    "Saved as version {}: {} tests passed.",
                    set.policy.version,
                    set.tests.len()
                )
            } else {
                "Nothing changed: that is the current document.".to_string()
            }));
            views::ok(&page)
        }
        Err(StoreError::Policy(e)) => refuse(e.to_string()),
        Err(e) => views::store_error(e),
    }
}
