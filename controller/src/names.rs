//! Names as DNS labels: member names are sanitised, network names and zones validated.

use std::collections::BTreeSet;

use warren_proto::NodeId;

const MAX_LABEL: usize = 63;
const MAX_NAME: usize = 253;

/// Turns whatever a node asked for into a lowercase LDH label of at most 63
/// characters; an empty result becomes `node-<node id>`.
pub fn sanitize_label(requested: &str, node: &NodeId) -> String {
    let mut out = String::with_capacity(requested.len().min(MAX_LABEL));
    for c in requested.chars() {
        let c = c.to_ascii_lowercase();
        let mapped = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if mapped == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(mapped);
        if out.len() >= MAX_LABEL {
            break;
        }
    }
    let trimmed = out.trim_end_matches('-');
    if trimmed.is_empty() {
        format!("node-{node}")
    } else {
        trimmed.to_string()
    }
}

/// `base`, or `base-2`, `base-3`, ... : the first that is not taken. The
/// base is shortened so the result stays a valid label.
pub fn unique_label(base: &str, taken: &BTreeSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_string();
    }
    (2u64..)
        .map(|n| {
            let suffix = format!("-{n}");
            let keep = MAX_LABEL.saturating_sub(suffix.len()).min(base.len());
            format!("{}{suffix}", base[..keep].trim_end_matches('-'))
        })
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or_else(|| base.to_string())
}

/// True for what can name a person in rules and roles (`user:EMAIL`): an
/// address with a local part and a domain, at most 254 characters, no
/// spaces or control characters. Providers vouch for the rest.
pub fn is_email(text: &str) -> bool {
    text.len() <= 254
        && text
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// True for a lowercase LDH label: 1-63 characters, no leading or trailing `-`.
pub fn is_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_LABEL
        && !text.starts_with('-')
        && !text.ends_with('-')
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// True for a DNS zone name made of such labels, at most 253 characters.
pub fn is_zone(text: &str) -> bool {
    text.len() <= MAX_NAME && text.split('.').all(is_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeId {
        "0123456789".parse().unwrap()
    }

    #[test]
    fn sanitises_to_lowercase_ldh() {
        assert_eq!(sanitize_label("My Laptop_2", &node()), "my-laptop-2");
        assert_eq!(sanitize_label("--Ünïcode--", &node()), "n-code");
        assert_eq!(sanitize_label("   ", &node()), "node-0123456789");
        assert_eq!(sanitize_label("", &node()), "node-0123456789");
        let long = "a".repeat(100);
        assert_eq!(sanitize_label(&long, &node()).len(), 63);
        let dashy = format!("{}-b", "a".repeat(62));
        assert_eq!(sanitize_label(&dashy, &node()), "a".repeat(62));
    }

    #[test]
    fn collisions_get_numbered_suffixes() {
        let mut taken = BTreeSet::new();
        assert_eq!(unique_label("web", &taken), "web");
        taken.insert("web".to_string());
        assert_eq!(unique_label("web", &taken), "web-2");
        taken.insert("web-2".to_string());
        assert_eq!(unique_label("web", &taken), "web-3");
        let long = "b".repeat(63);
        taken.insert(long.clone());
        let next = unique_label(&long, &taken);
        assert_eq!(next.len(), 63);
        assert!(next.ends_with("-2"));
        assert!(is_label(&next));
    }

    #[test]
    fn zones_and_labels_are_validated() {
        assert!(is_label("prod"));
        assert!(!is_label("Prod"));
        assert!(!is_label("-prod"));
        assert!(!is_label(""));
        assert!(is_zone("prod.warren.internal"));
        assert!(!is_zone("prod..internal"));
        assert!(!is_zone("prod.internal."));
    }
}
