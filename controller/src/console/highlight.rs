//! Syntax highlighting for policy documents (TOML), done on the server:
//! comments, table headers, keys and strings in spans, everything
//! escaped. No script needed, and nothing the document says can become
//! markup.

/// One escaped piece inside a span of `class` (none: plain).
fn push(out: &mut String, class: Option<&str>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(class) = class {
        out.push_str("<span class=\"hl-");
        out.push_str(class);
        out.push_str("\">");
    }
    out.push_str(&crate::identity::pages::escape(text));
    if class.is_some() {
        out.push_str("</span>");
    }
}

/// Where the comment of a line starts: a `#` outside a string.
fn comment_start(line: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return Some(i),
            None => {}
        }
    }
    None
}

/// Strings of a value in spans, the rest plain.
fn push_value(out: &mut String, value: &str) {
    let mut rest = value;
    while let Some(start) = rest.find(['"', '\'']) {
        push(out, None, &rest[..start]);
        let quote = rest[start..].chars().next().unwrap_or('"');
        let body = &rest[start + 1..];
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' && quote == '"' {
                escaped = true;
            } else if c == quote {
                end = Some(start + 1 + i + 1);
                break;
            }
        }
        let end = end.unwrap_or(rest.len());
        push(out, Some("string"), &rest[start..end]);
        rest = &rest[end..];
    }
    push(out, None, rest);
}

/// The document as highlighted, escaped HTML.
pub fn toml(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let (code, comment) = match comment_start(line) {
            Some(i) => line.split_at(i),
            None => (line, ""),
        };
        let trimmed = code.trim_start();
        if trimmed.starts_with('[') {
            push(&mut out, Some("section"), code);
        } else if let Some(eq) = code.find('=').filter(|&i| !code[..i].contains(['"', '\''])) {
            push(&mut out, Some("key"), &code[..eq]);
            push(&mut out, None, "=");
            push_value(&mut out, &code[eq + 1..]);
        } else {
            push_value(&mut out, code);
        }
        push(&mut out, Some("comment"), comment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::toml;

    #[test]
    fn highlights_and_escapes() {
        let html = toml("# who <b>\n[[allow]]\nfrom = [\"group:ops\"] # \"ops\"\nto = ['tag:db']");
        assert_eq!(
            html,
            "<span class=\"hl-comment\"># who &lt;b&gt;</span>\n\
             <span class=\"hl-section\">[[allow]]</span>\n\
             <span class=\"hl-key\">from </span>= [<span class=\"hl-string\">&quot;group:ops&quot;</span>] \
             <span class=\"hl-comment\"># &quot;ops&quot;</span>\n\
             <span class=\"hl-key\">to </span>= [<span class=\"hl-string\">&#39;tag:db&#39;</span>]"
        );
    }

    #[test]
    fn an_unclosed_string_is_still_escaped() {
        assert_eq!(
            toml("x = \"<script>"),
            "<span class=\"hl-key\">x </span>= <span class=\"hl-string\">&quot;&lt;script&gt;</span>"
        );
    }
}
