//! Unique, short names for namespaces and interfaces.
//!
//! A name is `wl` + 4 hex digits fixed for this process (from its PID and the
//! clock) + a decimal counter per lab + a role chosen by the caller. Roles
//! start with a letter, so `wl3fa2` `1` `1a` can never equal `wl3fa2` `11` `a`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{LabError, Result};

/// Linux limits interface names to 15 bytes (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Every name this crate creates starts with this.
pub const NAME_PREFIX: &str = "wl";

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The per-process part: `wl` + 4 hex digits.
fn run_prefix() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mixed = std::process::id().wrapping_mul(0x9e37_79b9) ^ nanos;
        format!("{NAME_PREFIX}{:04x}", (mixed ^ (mixed >> 16)) & 0xffff)
    })
}

/// A fresh prefix for one lab (one test), unique within this process.
pub fn lab_prefix() -> String {
    let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}{n}", run_prefix())
}

/// `prefix` + `role`, checked to be usable as an interface name.
pub fn ifname(prefix: &str, role: &str) -> Result<String> {
    if !role.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(LabError::Invalid(format!(
            "role {role:?} must start with a letter"
        )));
    }
    let name = format!("{prefix}{role}");
    if name.len() > IFNAME_MAX {
        return Err(LabError::Invalid(format!(
            "interface name {name:?} is longer than {IFNAME_MAX} bytes"
        )));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unique_and_short() {
        let a = lab_prefix();
        let b = lab_prefix();
        assert_ne!(a, b);
        assert!(a.starts_with(NAME_PREFIX));
        assert!(ifname(&a, "va").is_ok());
        assert!(ifname(&a, "1a").is_err());
        assert!(ifname(&a, "waytoolongrole").is_err());
    }
}
