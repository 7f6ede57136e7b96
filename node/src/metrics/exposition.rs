//! The Prometheus text exposition format (version 0.0.4), written by hand:
//! a `# HELP` and `# TYPE` line per family, then its samples together.

use std::fmt::{Display, Write as _};

/// The content type of the page.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One metric family: its name, type, label names and meaning.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

/// A page being written. Samples may arrive in any order; each family's
/// stay together, and families come out in the order of `families`.
pub struct Page<'f> {
    families: &'f [&'f Family],
    samples: Vec<String>,
}

impl<'f> Page<'f> {
    pub fn new(families: &'f [&'f Family]) -> Self {
        Page {
            families,
            samples: vec![String::new(); families.len()],
        }
    }

    /// Adds a sample of `family`, with one value per label name, in order.
    pub fn sample(&mut self, family: &Family, values: &[&str], value: impl Display) {
        let Some(i) = self.families.iter().position(|f| std::ptr::eq(*f, family)) else {
            debug_assert!(false, "{} is not on the page", family.name);
            return;
        };
        debug_assert_eq!(family.labels.len(), values.len(), "{}", family.name);
        let out = &mut self.samples[i];
        out.push_str(family.name);
        if !family.labels.is_empty() {
            out.push('{');
            for (n, (label, v)) in family.labels.iter().zip(values).enumerate() {
                if n > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{label}=\"");
                escape_label_value(out, v);
                out.push('"');
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }

    pub fn finish(self) -> String {
        let mut out = String::new();
        for (family, samples) in self.families.iter().zip(self.samples) {
            let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(family.help));
            let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
            out.push_str(&samples);
        }
        out
    }
}

/// A label value as the format quotes it: `\`, `"` and newlines escaped.
/// Names and rule names come from the network, so anything may be in them.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BYTES: Family = Family {
        name: "t_bytes_total",
        kind: Kind::Counter,
        labels: &["peer", "via"],
        help: "Bytes.",
    };
    const UP: Family = Family {
        name: "t_up",
        kind: Kind::Gauge,
        labels: &[],
        help: "Up,\nor not.",
    };

    #[test]
    fn families_keep_their_samples_together_in_declared_order() {
        let mut page = Page::new(&[&UP, &BYTES]);
        page.sample(&BYTES, &["a", "udp"], 10);
        page.sample(&UP, &[], 1);
        page.sample(&BYTES, &["b", "relay"], 2.5);
        assert_eq!(
            page.finish(),
            "# HELP t_up Up,\\nor not.\n# TYPE t_up gauge\nt_up 1\n\
             # HELP t_bytes_total Bytes.\n# TYPE t_bytes_total counter\n\
             t_bytes_total{peer=\"a\",via=\"udp\"} 10\n\
             t_bytes_total{peer=\"b\",via=\"relay\"} 2.5\n"
        );
    }

    #[test]
    fn hostile_label_values_stay_inside_their_quotes() {
        let mut page = Page::new(&[&BYTES]);
        page.sample(&BYTES, &["x\"} 1\nevil_metric 2 \\", "udp"], 1);
        let text = page.finish();
        assert!(
            text.contains(r#"t_bytes_total{peer="x\"} 1\nevil_metric 2 \\",via="udp"} 1"#),
            "{text}"
        );
        assert!(!text.lines().any(|l| l.starts_with("evil_metric")));
    }
}
