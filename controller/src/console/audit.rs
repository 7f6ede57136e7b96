//! The audit timeline: filters (time range, actor, action, member), each
//! entry's before and after, export as JSON or CSV, and whether the hash
//! chain verifies.

use std::collections::VecDeque;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::session::Staff;
use super::views::{self, Nav};
use super::ConsoleState;
use crate::audit_filter::TypedFilters;
use crate::store::{AuditEntry, AuditQuery};

/// The most matching entries one look reads (the store filters them).
const MAX_SCAN: usize = 50_000;
/// The most entries the page shows (the newest matching ones).
const MAX_SHOWN: usize = 300;
const PAGE: u32 = 1000;

#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub member: String,
    #[serde(default)]
    pub format: String,
}

impl Filters {
    /// The filters as the store reads them; the same checks as the API's.
    fn query(&self) -> Result<AuditQuery, String> {
        let mut query = AuditQuery {
            limit: PAGE,
            ..AuditQuery::default()
        };
        TypedFilters {
            since: Some(&self.since),
            until: Some(&self.until),
            actor: Some(&self.actor),
            action: Some(&self.action),
            member: Some(&self.member),
            text: None,
        }
        .apply(OffsetDateTime::now_utc(), &mut query)
        .map_err(|e| e.to_string())?;
        Ok(query)
    }

    /// The query string of these filters (for the export links).
    fn query_string(&self) -> String {
        let mut parts = Vec::new();
        for (key, value) in [
            ("since", &self.since),
            ("until", &self.until),
            ("actor", &self.actor),
            ("action", &self.action),
            ("member", &self.member),
        ] {
            if !value.trim().is_empty() {
                parts.push(format!("{key}={}", percent(value.trim())));
            }
        }
        parts.join("&")
    }
}

fn percent(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The matching entries, oldest first, at most `keep` (the newest), and
/// whether more matched.
async fn matching(
    state: &ConsoleState,
    filters: &Filters,
    keep: usize,
) -> Result<(Vec<AuditEntry>, bool), Response> {
    let mut query = filters
        .query()
        .map_err(|reason| views::message(StatusCode::BAD_REQUEST, "Bad filter", &reason))?;
    let mut kept: VecDeque<AuditEntry> = VecDeque::new();
    let mut dropped = false;
    let mut scanned = 0;
    loop {
        let page = state
            .hub
            .store()
            .audit_page(&query)
            .await
            .map_err(views::internal)?;
        let full = page.len() == PAGE as usize;
        query.after_id = page.last().map(|e| e.id);
        scanned += page.len();
        for entry in page {
            kept.push_back(entry);
            if kept.len() > keep {
                kept.pop_front();
                dropped = true;
            }
        }
        if !full || scanned >= MAX_SCAN {
            break;
        }
    }
    Ok((kept.into(), dropped))
}

pub struct EntryRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct Audit {
    title: &'static str,
    nav: Nav,
    q: Filters,
    query: String,
    verified: bool,
    verification: String,
    truncated: bool,
    entries: Vec<EntryRow>,
}

fn pretty(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref()
        .map(|v| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()))
}

/// `/console/audit`.
pub async fn page(
    State(state): State<ConsoleState>,
    Query(q): Query<Filters>,
    Staff(viewer): Staff,
) -> Response {
    let (entries, truncated) = match matching(&state, &q, MAX_SHOWN).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let (verified, verification) = match state.hub.store().audit_verify(None).await {
        Ok(v) if v.ok => (
            true,
            format!(
                "The hash chain verifies: {} entries, head #{} {}.",
                v.entries, v.head.id, v.head.hash
            ),
        ),
        Ok(v) => (
            false,
            format!(
                "The hash chain does NOT verify: it breaks at entry #{}.",
                v.first_bad.unwrap_or_default()
            ),
        ),
        Err(e) => return views::internal(e),
    };
    let entries = entries
        .iter()
        .rev()
        .map(|e| EntryRow {
            at: e.at.clone(),
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            before: pretty(&e.before),
            after: pretty(&e.after),
        })
        .collect();
    views::ok(&Audit {
        title: "Audit log",
        nav: Nav::new(&viewer, "audit"),
        query: q.query_string(),
        q,
        verified,
        verification,
        truncated,
        entries,
    })
}

/// A CSV cell: quoted, and a leading character a spreadsheet would run
/// as a formula made harmless.
fn cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// `/console/audit/export?...&format=json|csv`: the matching entries,
/// oldest first, with their hashes.
pub async fn export(
    State(state): State<ConsoleState>,
    Query(q): Query<Filters>,
    _staff: Staff,
) -> Response {
    let (entries, _) = match matching(&state, &q, MAX_SCAN).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let (body, kind, name) = match q.format.as_str() {
        "json" => (
            serde_json::to_string_pretty(&entries).unwrap_or_else(|_| "[]".into()),
            "application/json",
            "warren-audit.json",
        ),
        "csv" => {
            let mut out =
                String::from("id,at,actor,action,network_id,target,before,after,prev_hash,hash\n");
            for e in &entries {
                let json = |v: &Option<serde_json::Value>| {
                    v.as_ref().map(|v| v.to_string()).unwrap_or_default()
                };
                let row = [
                    e.id.to_string(),
                    e.at.clone(),
                    e.actor.clone(),
                    e.action.clone(),
                    e.network_id.clone().unwrap_or_default(),
                    e.target.clone().unwrap_or_default(),
                    json(&e.before),
                    json(&e.after),
                    e.prev_hash.clone(),
                    e.hash.clone(),
                ];
                out.push_str(&row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(","));
                out.push('\n');
            }
            (out, "text/csv; charset=utf-8", "warren-audit.csv")
        }
        _ => {
            return views::message(
                StatusCode::BAD_REQUEST,
                "Bad export",
                "format is json or csv",
            )
        }
    };
    (
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(cell("a\"b"), "\"a\"\"b\"");
        assert_eq!(cell("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
    }

    #[test]
    fn export_links_keep_the_filters() {
        let f = Filters {
            actor: "user:ana@example.com".into(),
            action: "policy.set".into(),
            ..Filters::default()
        };
        assert_eq!(
            f.query_string(),
            "actor=user%3Aana%40example.com&action=policy.set"
        );
    }
}
