//! The audit log as people read it: one line per entry with its time,
//! actor, action, subject and a short summary of what changed.

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Fields a summary shows of an object that was made, in this order.
const SALIENT: [&str; 11] = [
    "state",
    "scope",
    "prefix",
    "mapped_prefix",
    "reason",
    "email",
    "zone",
    "pool",
    "reusable",
    "expires_at",
    "tags",
];
/// Changed fields a summary shows first, in this order.
const FIRST: [&str; 6] = ["state", "name", "scope", "prefix", "email", "disabled"];
/// Fields that change with every write and say nothing by themselves.
const NOISE: [&str; 4] = ["netmap_version", "updated_at", "last_seen", "at"];
/// Fields a summary shows at most, and how long it gets.
const MAX_FIELDS: usize = 3;
const MAX_SUMMARY: usize = 100;
const MAX_VALUE: usize = 40;

/// One row per entry: time, actor, action, subject, summary.
pub fn rows(entries: &[Value]) -> Vec<Vec<String>> {
    entries
        .iter()
        .map(|e| {
            vec![
                time_of(e),
                text(e, "actor"),
                text(e, "action"),
                subject(e),
                summary(e),
            ]
        })
        .collect()
}

fn text(entry: &Value, key: &str) -> String {
    entry
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_string()
}

/// `2026-12-04 10:31:02Z`: to the second, in UTC as recorded.
fn time_of(entry: &Value) -> String {
    let at = text(entry, "at");
    match OffsetDateTime::parse(&at, &Rfc3339) {
        Ok(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        }
        Err(_) => at,
    }
}

fn object<'a>(entry: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    entry.get(key).and_then(Value::as_object)
}

/// What the entry is about: the object's name and its ID (the target),
/// else the network.
fn subject(entry: &Value) -> String {
    let name = ["after", "before"]
        .iter()
        .filter_map(|side| object(entry, side))
        .find_map(|o| {
            ["name", "requested_name", "email"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str))
        });
    let target = entry.get("target").and_then(Value::as_str);
    match (name, target) {
        (Some(name), Some(target)) if name != target => format!("{name} ({target})"),
        (Some(name), _) => name.to_string(),
        (None, Some(target)) => target.to_string(),
        (None, None) => entry
            .get("network_id")
            .and_then(Value::as_str)
            .map_or_else(|| "-".to_string(), |n| format!("network {n}")),
    }
}

fn short(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        Value::Array(items) if items.is_empty() => "[]".to_string(),
        other => other.to_string(),
    };
    clip(&text, MAX_VALUE)
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// The fields that changed (`state: pending → authorized`), the salient
/// fields of something made, `removed` for something deleted, and how
/// many node events the entry folds.
fn summary(entry: &Value) -> String {
    let before = object(entry, "before");
    let after = object(entry, "after");
    let mut parts: Vec<String> = Vec::new();
    match (before, after) {
        (Some(before), Some(after)) => {
            // The fields people look for first, then the rest by name.
            let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
            keys.sort_by_key(|k| {
                let rank = FIRST.iter().position(|f| f == k).unwrap_or(FIRST.len());
                (rank, k.as_str())
            });
            keys.dedup();
            let changed: Vec<String> = keys
                .into_iter()
                .filter(|k| !NOISE.contains(&k.as_str()) && k.as_str() != "coalesced")
                .filter(|k| before.get(*k) != after.get(*k))
                .map(|k| {
                    let old = before.get(k).unwrap_or(&Value::Null);
                    let new = after.get(k).unwrap_or(&Value::Null);
                    format!("{k}: {} → {}", short(old), short(new))
                })
                .collect();
            let more = changed.len().saturating_sub(MAX_FIELDS);
            parts.extend(changed.into_iter().take(MAX_FIELDS));
            if more > 0 {
                parts.push(format!("+{more} more"));
            }
        }
        (None, Some(after)) => parts.extend(
            SALIENT
                .iter()
                .filter_map(|k| after.get(*k).filter(|v| !v.is_null()).map(|v| (k, v)))
                .take(MAX_FIELDS)
                .map(|(k, v)| format!("{k}={}", short(v))),
        ),
        (Some(_), None) => parts.push("removed".to_string()),
        (None, None) => {}
    }
    if let Some(folded) = after
        .and_then(|a| a.get("coalesced"))
        .and_then(Value::as_i64)
    {
        parts.push(format!("({folded} more folded in)"));
    }
    clip(&parts.join(", "), MAX_SUMMARY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_line_says_when_who_what_about_whom_and_what_changed() {
        let entry = json!({
            "id": 7, "at": "2026-12-04T10:31:02.123456Z", "actor": "token:alice",
            "action": "member.authorize", "network_id": "0123456789abcdef",
            "target": "0a1b2c3d4e",
            "before": {"name": null, "requested_name": "laptop", "state": "pending", "netmap_version": 3},
            "after": {"name": "laptop", "requested_name": "laptop", "state": "authorized", "netmap_version": 4},
        });
        assert_eq!(
            rows(&[entry]),
            vec![vec![
                "2026-12-04 10:31:02Z".to_string(),
                "token:alice".into(),
                "member.authorize".into(),
                "laptop (0a1b2c3d4e)".into(),
                "state: pending → authorized, name: - → laptop".into(),
            ]]
        );
    }

    #[test]
    fn made_removed_and_folded_entries_say_so() {
        let made = json!({"action": "token.create", "target": "0badf00d",
            "after": {"name": "ci", "scope": "admin", "id": "0badf00d"}});
        assert_eq!(subject(&made), "ci (0badf00d)");
        assert_eq!(summary(&made), "scope=admin");
        let gone = json!({"action": "key.delete", "target": "3", "before": {"id": 3}});
        assert_eq!(
            (subject(&gone), summary(&gone)),
            ("3".into(), "removed".into())
        );
        let folded = json!({"action": "member.online", "network_id": "0123456789abcdef",
            "after": {"online": true, "coalesced": 4}});
        assert_eq!(subject(&folded), "network 0123456789abcdef");
        assert_eq!(summary(&folded), "(4 more folded in)");
        let long = json!({"before": {"a": "x".repeat(300)}, "after": {"a": "y"}});
        assert!(summary(&long).chars().count() <= MAX_SUMMARY);
    }
}
