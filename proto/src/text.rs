//! Text from the network on its way to a terminal: names, versions and
//! service TXT come from other machines, and a control character among
//! them could move the cursor, rewrite lines or retitle the window.

use std::borrow::Cow;

/// `text` with every control character but newline and tab shown as `?`,
/// so human output keeps its lines and no escape sequence reaches the
/// terminal. JSON output needs none of this (serde escapes them).
pub fn printable(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| if unsafe_char(c) { '?' } else { c })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_become_question_marks_and_lines_stay() {
        assert_eq!(printable("web\tok\n"), "web\tok\n");
        assert_eq!(
            printable("evil\u{1b}[2J\u{1b}]0;owned\u{7}\r\u{9b}name"),
            "evil?[2J?]0;owned???name"
        );
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
    }
}
