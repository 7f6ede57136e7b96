//! The audit log: appended inside each change's transaction, paged, verified.

use sqlx::any::AnyRow;
use sqlx::Row;
use sqlx::{AnyConnection, AnyPool};

use super::{now, WriteTx};
use super::{query, query_as};
use crate::audit_chain::{entry_hash, ChainVerifier, EntryFields, GENESIS};
use crate::store::*;

/// Takes one entry from the node's budget for this action: `Some(n)` to
/// write it, standing for `n` entries folded since the last one, or `None`
/// to fold it into the next.
async fn spend_node_budget(
    conn: &mut AnyConnection,
    entry: &NewEntry<'_>,
) -> Result<Option<i64>, StoreError> {
    let (_, now_unix) = now();
    let network = entry.network_id.map(|n| n.to_string()).unwrap_or_default();
    let row: Option<(f64, i64, i64)> = query_as(
        "SELECT tokens, at_unix, coalesced FROM audit_node_budget \
         WHERE actor = ? AND action = ? AND network_id = ?",
    )
    .bind(entry.actor.as_str())
    .bind(entry.action.as_str())
    .bind(&network)
    .fetch_optional(&mut *conn)
    .await?;
    let (tokens, at, folded) = row.unwrap_or((NODE_EVENT_BURST, now_unix, 0));
    let elapsed = now_unix.saturating_sub(at).max(0) as f64;
    let tokens = (tokens + elapsed / NODE_EVENT_PERIOD).min(NODE_EVENT_BURST);
    let (tokens, kept, answer) = if tokens >= 1.0 {
        (tokens - 1.0, 0, Some(folded))
    } else {
        (tokens, folded + 1, None)
    };
    query(
        "INSERT INTO audit_node_budget (actor, action, network_id, tokens, at_unix, coalesced) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (actor, action, network_id) \
         DO UPDATE SET tokens = excluded.tokens, at_unix = excluded.at_unix, \
         coalesced = excluded.coalesced",
    )
    .bind(entry.actor.as_str())
    .bind(entry.action.as_str())
    .bind(&network)
    .bind(tokens)
    .bind(now_unix)
    .bind(kept)
    .execute(&mut *conn)
    .await?;
    Ok(answer)
}

/// An entry to append; the writer fills in id, time and hashes.
pub(super) struct NewEntry<'a> {
    pub actor: &'a Actor,
    pub action: AuditAction,
    pub network_id: Option<NetworkId>,
    pub target: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Events a node causes by itself ([`AuditAction::is_node_event`]): each
/// node has a budget of entries per action and network
/// ([`NODE_EVENT_BURST`], then one per [`NODE_EVENT_PERIOD`] seconds). Past
/// it, entries are folded into the next one written, which says how many it
/// stands for (`coalesced`) and carries the state as it is then.
pub const NODE_EVENT_BURST: f64 = 20.0;
pub const NODE_EVENT_PERIOD: f64 = 60.0;

/// Appends one entry. Must run inside a write transaction, so the chain's
/// head cannot move between reading it and writing after it.
pub(super) async fn append(tx: &mut WriteTx, mut entry: NewEntry<'_>) -> Result<(), StoreError> {
    if let Some(net) = entry.network_id {
        tx.changed(net, ChangeKind::of_action(entry.action));
    }
    let conn: &mut AnyConnection = tx;
    if entry.actor.as_str().starts_with("node:") && entry.action.is_node_event() {
        match spend_node_budget(conn, &entry).await? {
            None => return Ok(()),
            Some(0) => {}
            Some(folded) => {
                let mut after = entry.after.take().unwrap_or(serde_json::Value::Null);
                if let serde_json::Value::Object(map) = &mut after {
                    map.insert("coalesced".into(), folded.into());
                } else {
                    after = serde_json::json!({ "value": after, "coalesced": folded });
                }
                entry.after = Some(after);
            }
        }
    }
    let head: Option<(i64, String)> =
        query_as("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (id, prev_hash) = match head {
        Some((id, hash)) => (id + 1, hash),
        None => (1, GENESIS.to_string()),
    };
    let (at, at_unix) = now();
    let network_id = entry.network_id.map(|n| n.to_string());
    let before = entry.before.map(|v| v.to_string());
    let after = entry.after.map(|v| v.to_string());
    let fields = EntryFields {
        id,
        at: &at,
        actor: entry.actor.as_str(),
        action: entry.action.as_str(),
        network_id: network_id.as_deref(),
        target: entry.target.as_deref(),
        before: before.as_deref(),
        after: after.as_deref(),
    };
    let hash = entry_hash(&prev_hash, &fields);
    query(
        "INSERT INTO audit_log (id, at, at_unix, actor, action, network_id, target, before, \
         after, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(&at)
    .bind(at_unix)
    .bind(entry.actor.as_str())
    .bind(entry.action.as_str())
    .bind(&network_id)
    .bind(&entry.target)
    .bind(&before)
    .bind(&after)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn parse_json(text: Option<String>) -> Option<serde_json::Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
}

fn entry(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        network_id: row.try_get("network_id")?,
        target: row.try_get("target")?,
        before: parse_json(row.try_get("before")?),
        after: parse_json(row.try_get("after")?),
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// `text` as a LIKE pattern that finds it anywhere: `%`, `_` and the
/// escape character itself are escaped, for [`LIKE_ESCAPE`].
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

const LIKE_ESCAPE: &str = " ESCAPE '\\'";

/// A value bound to an audit query's `?`.
enum Bound {
    Int(i64),
    Text(String),
}

/// An audit query as it is built: SQL with `?` and the values, in order.
struct Filter {
    sql: String,
    values: Vec<Bound>,
}

impl Filter {
    fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    fn bind(&mut self, value: Bound) -> &mut Self {
        self.sql.push('?');
        self.values.push(value);
        self
    }

    /// One condition, `column LIKE pattern`, with the pattern bound, as
    /// SQLite's LIKE does it in both stores: ASCII letters in any case.
    fn like(&mut self, column: &str, pattern: &str) {
        self.push("lower(")
            .push(column)
            .push(") LIKE lower(")
            .bind(Bound::Text(pattern.to_string()))
            .push(")")
            .push(LIKE_ESCAPE);
    }

    /// ` AND (c1 LIKE p OR c2 LIKE p ...` over `columns`, left open for
    /// more alternatives: the caller closes it.
    fn any_like(&mut self, columns: &[(&str, &str)]) {
        self.push(" AND (");
        for (i, (column, pattern)) in columns.iter().enumerate() {
            if i > 0 {
                self.push(" OR ");
            }
            self.like(column, pattern);
        }
    }
}

pub(super) async fn page(
    pool: &AnyPool,
    query: &AuditQuery,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut sql = Filter {
        sql: "SELECT * FROM audit_log WHERE id > ".into(),
        values: Vec::new(),
    };
    sql.bind(Bound::Int(query.after_id.unwrap_or(0)));
    if let Some(since) = query.since_unix {
        sql.push(" AND at_unix >= ").bind(Bound::Int(since));
    }
    if let Some(until) = query.until_unix {
        sql.push(" AND at_unix <= ").bind(Bound::Int(until));
    }
    if let Some(network) = query.network_id {
        sql.push(" AND network_id = ")
            .bind(Bound::Text(network.to_string()));
    }
    for (column, filter) in [("actor", &query.actor), ("action", &query.action)] {
        if let Some(text) = filter {
            sql.push(" AND ");
            sql.like(column, &contains_pattern(text));
        }
    }
    if let Some(member) = &query.member {
        // A node ID or a name: in the target, or a string value of the
        // object before or after (its JSON as stored, quotes included),
        // or the entry is about the member of that network now so named
        // (its entries from before a rename).
        let target = contains_pattern(member);
        let quoted = contains_pattern(&serde_json::Value::from(member.as_str()).to_string());
        sql.any_like(&[("target", &target), ("before", &quoted), ("after", &quoted)]);
        sql.push(
            " OR EXISTS (SELECT 1 FROM members m WHERE m.node_id = audit_log.target \
             AND m.network_id = audit_log.network_id AND m.name = lower(",
        )
        .bind(Bound::Text(member.clone()))
        .push(")))");
    }
    if let Some(text) = &query.text {
        let p = contains_pattern(text);
        let columns = ["actor", "action", "network_id", "target", "before", "after"];
        let pairs: Vec<(&str, &str)> = columns.iter().map(|c| (*c, p.as_str())).collect();
        sql.any_like(&pairs);
        sql.push(")");
    }
    sql.push(" ORDER BY id LIMIT ")
        .bind(Bound::Int(i64::from(query.limit)));
    let mut statement = super::query(&sql.sql);
    for value in sql.values {
        statement = match value {
            Bound::Int(v) => statement.bind(v),
            Bound::Text(v) => statement.bind(v),
        };
    }
    let rows = statement.fetch_all(pool).await?;
    rows.iter().map(entry).collect()
}

pub(super) async fn head(pool: &AnyPool) -> Result<AuditHead, StoreError> {
    let head: Option<(i64, String)> =
        query_as("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
    Ok(head
        .map(|(id, hash)| AuditHead { id, hash })
        .unwrap_or_else(AuditHead::empty))
}

/// Recomputes the whole chain, a page at a time so memory stays flat, and
/// notes the hash stored at the anchor's id on the way.
pub(super) async fn verify(
    pool: &AnyPool,
    anchor: Option<&AuditHead>,
) -> Result<AuditVerification, StoreError> {
    const PAGE: i64 = 1000;
    let mut verifier = ChainVerifier::default();
    // An anchor on an empty log (id 0) is the genesis hash itself.
    let mut at_anchor: Option<String> = anchor.filter(|a| a.id == 0).map(|_| GENESIS.to_string());
    let mut after = 0i64;
    loop {
        let rows = query("SELECT * FROM audit_log WHERE id > ? ORDER BY id LIMIT ?")
            .bind(after)
            .bind(PAGE)
            .fetch_all(pool)
            .await?;
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let at: String = row.try_get("at")?;
            let actor: String = row.try_get("actor")?;
            let action: String = row.try_get("action")?;
            let network_id: Option<String> = row.try_get("network_id")?;
            let target: Option<String> = row.try_get("target")?;
            let before: Option<String> = row.try_get("before")?;
            let after_text: Option<String> = row.try_get("after")?;
            let prev_hash: String = row.try_get("prev_hash")?;
            let hash: String = row.try_get("hash")?;
            let fields = EntryFields {
                id,
                at: &at,
                actor: &actor,
                action: &action,
                network_id: network_id.as_deref(),
                target: target.as_deref(),
                before: before.as_deref(),
                after: after_text.as_deref(),
            };
            verifier.push(&fields, &prev_hash, &hash);
            if anchor.is_some_and(|a| a.id == id) {
                at_anchor = Some(hash.clone());
            }
            after = id;
        }
        if rows.len() < PAGE as usize {
            break;
        }
    }
    let anchor = anchor.map(|a| AnchorCheck {
        id: a.id,
        hash: a.hash.clone(),
        status: match &at_anchor {
            None => AnchorStatus::Missing,
            Some(hash) if *hash == a.hash => AnchorStatus::Matches,
            Some(_) => AnchorStatus::Differs,
        },
    });
    let (head_id, head_hash) = verifier.head();
    Ok(AuditVerification {
        ok: verifier.first_bad().is_none()
            && anchor
                .as_ref()
                .is_none_or(|a| a.status == AnchorStatus::Matches),
        entries: verifier.entries(),
        first_bad: verifier.first_bad(),
        head: AuditHead {
            id: head_id,
            hash: head_hash.to_string(),
        },
        anchor,
    })
}
