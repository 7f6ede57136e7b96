//! Audit-log filters as people type them: times as RFC 3339 or as a
//! duration before now (`2h`, `7d`), and search text of bounded length,
//! checked into an [`AuditQuery`]. The API and the console share them, so
//! a filter means the same on both.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::store::AuditQuery;

/// The longest search text one filter takes.
pub const MAX_TEXT: usize = 200;
/// The longest time a filter takes (an RFC 3339 time with nanoseconds and
/// an offset is 35 characters).
const MAX_TIME: usize = 64;

/// A filter that cannot be read; the message names it and says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(String);

/// The filters as typed; empty or blank ones count as absent.
#[derive(Debug, Default, Clone, Copy)]
pub struct TypedFilters<'a> {
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
    pub actor: Option<&'a str>,
    pub action: Option<&'a str>,
    pub member: Option<&'a str>,
    pub text: Option<&'a str>,
}

impl TypedFilters<'_> {
    /// Checks every filter, relative times against `now`, and writes them
    /// into `query`.
    pub fn apply(&self, now: OffsetDateTime, query: &mut AuditQuery) -> Result<(), FilterError> {
        let since = instant("since", self.since, now)?;
        let until = instant("until", self.until, now)?;
        if let (Some(since), Some(until)) = (since, until) {
            if since > until {
                return Err(FilterError(format!(
                    "since ({}) is after until ({})",
                    rfc3339(since),
                    rfc3339(until)
                )));
            }
        }
        query.since_unix = since.map(OffsetDateTime::unix_timestamp);
        query.until_unix = until.map(OffsetDateTime::unix_timestamp);
        query.actor = needle("actor", self.actor)?;
        query.action = needle("action", self.action)?;
        query.member = needle("member", self.member)?;
        query.text = needle("text", self.text)?;
        Ok(())
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// A unix time as RFC 3339 UTC, as the API echoes resolved filters.
pub fn unix_rfc3339(unix: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(unix).ok().map(rfc3339)
}

/// A time as RFC 3339, or a duration before `now` in humantime's words
/// (`90s`, `30m`, `2h`, `7d`, `1h 30m`).
pub fn instant(
    what: &str,
    text: Option<&str>,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, FilterError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > MAX_TIME {
        return Err(FilterError(format!(
            "{what} is longer than {MAX_TIME} characters: write an RFC 3339 time or a duration"
        )));
    }
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(Some(t));
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        FilterError(format!(
            "{what}: {text:?} is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor a \
             duration before now (30m, 2h, 7d)"
        ))
    })?;
    time::Duration::try_from(ago)
        .ok()
        .and_then(|ago| now.checked_sub(ago))
        .filter(|t| t.year() >= 1970)
        .map(Some)
        .ok_or_else(|| FilterError(format!("{what}: {text:?} reaches back before 1970")))
}

/// Search text: trimmed, at most [`MAX_TEXT`] characters, no control
/// characters.
pub fn needle(what: &str, text: Option<&str>) -> Result<Option<String>, FilterError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > MAX_TEXT {
        return Err(FilterError(format!(
            "{what} is longer than {MAX_TEXT} characters"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(FilterError(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(Some(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-12-04T12:00:00Z", &Rfc3339).unwrap()
    }

    #[test]
    fn times_are_rfc3339_or_a_duration_before_now() {
        let at = |text| {
            instant("since", Some(text), now())
                .map(|t| t.map(|t| rfc3339(t.to_offset(time::UtcOffset::UTC))))
        };
        assert_eq!(at("2h"), Ok(Some("2026-12-04T10:00:00Z".into())));
        assert_eq!(at(" 1h 30m "), Ok(Some("2026-12-04T10:30:00Z".into())));
        assert_eq!(at("7d"), Ok(Some("2026-11-27T12:00:00Z".into())));
        assert_eq!(
            at("2026-12-01T00:00:00+01:00"),
            Ok(Some("2026-11-30T23:00:00Z".into()))
        );
        assert_eq!(at(""), Ok(None));
        for bad in ["yesterday", "2026-13-01T00:00:00Z", "-2h", "2h ago"] {
            let e = at(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("since:") && e.contains("RFC 3339"),
                "{bad}: {e}"
            );
        }
        let e = at("100000y").unwrap_err().to_string();
        assert!(e.contains("before 1970"), "{e}");
        let e = at(&"1".repeat(65)).unwrap_err().to_string();
        assert!(e.contains("longer than 64"), "{e}");
    }

    #[test]
    fn text_is_bounded_and_printable() {
        assert_eq!(needle("actor", Some(" ana ")), Ok(Some("ana".into())));
        assert_eq!(needle("actor", Some("  ")), Ok(None));
        let e = needle("actor", Some(&"a".repeat(201))).unwrap_err();
        assert_eq!(e.to_string(), "actor is longer than 200 characters");
        let e = needle("text", Some("a\u{1b}[2J")).unwrap_err();
        assert!(e.to_string().contains("control characters"), "{e}");
    }

    #[test]
    fn since_after_until_is_refused() {
        let mut query = AuditQuery::default();
        let filters = TypedFilters {
            since: Some("1h"),
            until: Some("2h"),
            ..TypedFilters::default()
        };
        let e = filters.apply(now(), &mut query).unwrap_err().to_string();
        assert!(e.contains("is after until"), "{e}");
        let filters = TypedFilters {
            since: Some("2h"),
            until: Some("1h"),
            action: Some("member."),
            ..TypedFilters::default()
        };
        filters.apply(now(), &mut query).unwrap();
        assert_eq!(query.until_unix.unwrap() - query.since_unix.unwrap(), 3600);
        assert_eq!(query.action.as_deref(), Some("member."));
    }
}
