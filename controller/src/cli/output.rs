//! Human output: aligned tables and JSON helpers for the admin commands.

use serde_json::Value;
use warren_cli_assets::outln;

/// Prints rows under headers, columns padded to their widest cell. Cells
/// come from what nodes sent (names, versions): control characters print
/// as `?`, so no cell can move the cursor or rewrite the terminal.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut all = vec![headers.iter().map(|h| h.to_string()).collect()];
    all.extend(rows.iter().cloned());
    columns(&all);
}

/// Prints rows with columns padded to their widest cell, and no header
/// (a timeline); control characters print as `?`, as in [`table`].
pub fn columns(rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| warren_proto::text::printable(cell).replace(['\n', '\t'], " "))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            let count = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(count),
                None => widths.push(count),
            }
        }
    }
    for row in &rows {
        let mut out = String::new();
        for (i, cell) in row.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            if i + 1 == row.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        outln!("{}", out.trim_end());
    }
}

/// The field as display text: strings bare, null as `-`, the rest as JSON.
pub fn field(value: &Value, key: &str) -> String {
    match value.get(key) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.is_empty() => "-".to_string(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_string(),
        Some(other) => other.to_string(),
    }
}

/// Prints JSON for `--json`.
pub fn json(value: &Value) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The array under `key`, or none.
pub fn items<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Percent-encodes a path segment or query value: letters, digits,
/// `-._~` and the bytes in `also` stay as they are.
pub fn percent_encode(text: &str, also: &[u8]) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || also.contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
