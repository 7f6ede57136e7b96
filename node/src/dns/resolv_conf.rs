//! The reversible edit of resolv.conf: the original is backed up (bytes and
//! mode, or the symlink, or its absence) before the first write, our file
//! puts the stub first and carries a marker line, and a restore puts the
//! original back byte for byte. A backup found at start means the agent
//! died with the file edited: it is restored then.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// First line of every file we write; what tells our edit from anyone else's.
pub const MARKER: &str = "# Written by warren: names in its zones go to its DNS stub.";
const NOTE: &str = "# The original is restored when warren stops or leaves its networks.";

/// glibc reads at most three nameservers.
const MAX_NAMESERVERS: usize = 3;

/// The nameservers a resolv.conf lists, in order.
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        // A scoped IPv6 address (fe80::1%eth0) keeps its address part.
        .filter_map(|addr| addr.split('%').next()?.parse().ok())
        .collect()
}

/// Our resolv.conf: the stub first, then up to two of the original
/// servers (a fallback while the stub is down), our zones before the
/// original search domains, the original options without `rotate` (which
/// would send our names elsewhere), and the original's other lines.
pub fn render(original: &str, stub: IpAddr, zones: &[String]) -> String {
    let mut out = format!("{MARKER}\n{NOTE}\n");
    out.push_str(&format!("nameserver {stub}\n"));
    // The original words, so a scoped address keeps its `%interface`.
    let others = original
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter(|word| nameservers(&format!("nameserver {word}")) != [stub])
        .take(MAX_NAMESERVERS - 1);
    for ns in others {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    let mut search: Vec<String> = zones.to_vec();
    for line in original.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("search") | Some("domain") => {
                for word in words {
                    if !search.iter().any(|s| s == word) {
                        search.push(word.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    // CRs at the end of a line (`lines()` takes off one before LF, none at
    // the end of the file) would read back one shorter after our LF, so a
    // second edit of our own file would change it: they go.
    for line in original.lines().map(|l| l.trim_end_matches('\r')) {
        let first = line.split_whitespace().next();
        match first {
            Some("nameserver") | Some("search") | Some("domain") => {}
            Some("options") => {
                let kept: Vec<&str> = line
                    .split_whitespace()
                    .skip(1)
                    .filter(|o| *o != "rotate")
                    .collect();
                if !kept.is_empty() {
                    out.push_str(&format!("options {}\n", kept.join(" ")));
                }
            }
            _ if line == MARKER || line == NOTE => {}
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// What was at the path before our first write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Original {
    File { mode: u32, content: String },
    Symlink { target: PathBuf },
    Missing,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BackupFile {
    path: PathBuf,
    original: Original,
}

impl Original {
    /// Reads what is at `path` now.
    pub fn capture(path: &Path) -> anyhow::Result<Original> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Original::Missing),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
            Ok(meta) if meta.file_type().is_symlink() => Ok(Original::Symlink {
                target: std::fs::read_link(path)
                    .with_context(|| format!("reading link {}", path.display()))?,
            }),
            Ok(meta) => Ok(Original::File {
                mode: meta.permissions().mode() & 0o7777,
                content: STANDARD.encode(
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
                ),
            }),
        }
    }

    /// The original's text, for its nameservers and search domains.
    pub fn text(&self) -> String {
        match self {
            Original::File { content, .. } => STANDARD
                .decode(content)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
            Original::Symlink { target } => std::fs::read_to_string(target).unwrap_or_default(),
            Original::Missing => String::new(),
        }
    }
}

/// resolv.conf at `path`, with its backup at `backup`.
#[derive(Debug, Clone)]
pub struct ResolvConf {
    pub path: PathBuf,
    pub backup: PathBuf,
}

impl ResolvConf {
    pub fn has_backup(&self) -> bool {
        self.backup.exists()
    }

    /// The original (backed up) file's text, or the current one.
    pub fn original_text(&self) -> String {
        match self.read_backup() {
            Ok(Some(b)) => b.original.text(),
            _ => std::fs::read_to_string(&self.path).unwrap_or_default(),
        }
    }

    fn read_backup(&self) -> anyhow::Result<Option<BackupFile>> {
        match std::fs::read(&self.backup) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("backup {} is corrupt", self.backup.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.backup.display())),
        }
    }

    /// Writes `contents` (backing the original up first if there is no backup yet).
    pub fn write(&self, contents: &str) -> anyhow::Result<()> {
        if !self.has_backup() {
            let backup = BackupFile {
                path: self.path.clone(),
                original: Original::capture(&self.path)?,
            };
            let json = serde_json::to_vec_pretty(&backup).context("encoding backup")?;
            write_durably(&self.backup, &json, 0o600)?;
        }
        replace_file(&self.path, contents.as_bytes(), 0o644)
    }

    /// Puts the original back and drops the backup. If the file is no longer
    /// ours (another tool rewrote it since), it is left as it is.
    pub fn restore(&self) -> anyhow::Result<bool> {
        let Some(backup) = self.read_backup()? else {
            return Ok(false);
        };
        let current = std::fs::read_to_string(&self.path).unwrap_or_default();
        let restored = if current.starts_with(MARKER) {
            match &backup.original {
                Original::File { mode, content } => {
                    let bytes = STANDARD.decode(content).context("decoding backup")?;
                    replace_file(&self.path, &bytes, *mode)?;
                }
                Original::Symlink { target } => {
                    remove_if_exists(&self.path)?;
                    std::os::unix::fs::symlink(target, &self.path)
                        .with_context(|| format!("restoring link {}", self.path.display()))?;
                }
                Original::Missing => remove_if_exists(&self.path)?,
            }
            true
        } else {
            tracing::warn!(path = %self.path.display(), "resolv.conf was changed by someone else since warren wrote it; leaving it as it is");
            false
        };
        std::fs::remove_file(&self.backup)
            .with_context(|| format!("removing {}", self.backup.display()))?;
        Ok(restored)
    }
}

fn remove_if_exists(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn write_durably(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.warren-tmp"));
    let written = (|| {
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Replaces the file at `path` atomically where possible. A bind-mounted
/// file (as `ip netns exec`, containers and systemd's `ReadWritePaths=`
/// mount resolv.conf) cannot be renamed over, so a regular file is
/// rewritten in place instead; a symlink never is (that would write
/// through it into another tool's file).
fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    match write_durably(path, bytes, mode) {
        Ok(()) => Ok(()),
        Err(e) if !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file()) => Err(e),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %format!("{e:#}"), "rename failed; writing in place");
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            file.write_all(bytes)
                .with_context(|| format!("writing {}", path.display()))?;
            file.sync_all()?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("setting mode of {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = "# from DHCP\ndomain corp.example\nsearch lan\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver 198.51.100.53\noptions rotate edns0\n";

    /// Found by the `resolv_conf` fuzz target (fuzz/regressions/resolv_conf).
    #[test]
    fn lines_ending_in_carriage_returns_are_written_once() {
        let stub = "10.147.0.5".parse().unwrap();
        let zones = ["prod.warren.internal".to_string()];
        for (original, end) in [("[\r", "\n[\n"), ("x\r\r\r\nkind\r\n", "\nx\nkind\n")] {
            let ours = render(original, stub, &zones);
            assert!(ours.ends_with(end), "{ours:?}");
            assert_eq!(render(&ours, stub, &zones), ours);
        }
    }

    #[test]
    fn the_stub_goes_first_and_the_rest_is_kept() {
        let text = render(
            ORIGINAL,
            "10.147.0.5".parse().unwrap(),
            &["prod.warren.internal".into()],
        );
        assert!(text.starts_with(MARKER));
        assert_eq!(
            nameservers(&text),
            vec![
                "10.147.0.5".parse::<IpAddr>().unwrap(),
                "192.0.2.53".parse().unwrap(),
                "fe80::1".parse().unwrap(),
            ]
        );
        assert!(
            text.contains("\nsearch prod.warren.internal corp.example lan\n"),
            "{text}"
        );
        assert!(text.contains("\noptions edns0\n"), "{text}");
        assert!(!text.contains("rotate"));
        assert!(text.contains("# from DHCP\n"));
        assert!(text.contains("nameserver fe80::1%eth0\n"), "{text}");
        // Rendering over our own file changes nothing.
        let again = render(
            &text,
            "10.147.0.5".parse().unwrap(),
            &["prod.warren.internal".into()],
        );
        assert_eq!(again, text);
    }

    fn conf(dir: &Path) -> ResolvConf {
        ResolvConf {
            path: dir.join("resolv.conf"),
            backup: dir.join("state/dns/resolv.conf.backup"),
        }
    }

    #[test]
    fn write_then_restore_gives_back_the_same_bytes_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let rc = conf(dir.path());
        let odd = b"nameserver 192.0.2.53\n\xff not utf-8, no final newline";
        std::fs::write(&rc.path, odd).unwrap();
        std::fs::set_permissions(&rc.path, std::fs::Permissions::from_mode(0o640)).unwrap();
        rc.write(&render(
            &rc.original_text(),
            "10.1.0.1".parse().unwrap(),
            &[],
        ))
        .unwrap();
        assert!(rc.has_backup());
        assert!(std::fs::read_to_string(&rc.path)
            .unwrap()
            .starts_with(MARKER));
        // A second write keeps the first backup.
        rc.write(&render(
            &rc.original_text(),
            "10.1.0.2".parse().unwrap(),
            &[],
        ))
        .unwrap();
        assert_eq!(
            nameservers(&rc.original_text()),
            vec!["192.0.2.53".parse::<IpAddr>().unwrap()]
        );
        assert!(rc.restore().unwrap());
        assert_eq!(std::fs::read(&rc.path).unwrap(), odd);
        let mode = std::fs::metadata(&rc.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert!(!rc.has_backup());
        assert!(!rc.restore().unwrap(), "nothing to restore twice");
    }

    #[test]
    fn symlinks_and_missing_files_come_back_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let rc = conf(dir.path());
        std::fs::write(
            dir.path().join("stub-resolv.conf"),
            "nameserver 127.0.0.53\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("stub-resolv.conf", &rc.path).unwrap();
        rc.write(&format!("{MARKER}\nnameserver 10.1.0.1\n"))
            .unwrap();
        assert!(!std::fs::symlink_metadata(&rc.path)
            .unwrap()
            .file_type()
            .is_symlink());
        rc.restore().unwrap();
        assert_eq!(
            std::fs::read_link(&rc.path).unwrap(),
            PathBuf::from("stub-resolv.conf")
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("stub-resolv.conf")).unwrap(),
            "nameserver 127.0.0.53\n"
        );

        std::fs::remove_file(&rc.path).unwrap();
        rc.write(&format!("{MARKER}\n")).unwrap();
        assert!(rc.path.exists());
        rc.restore().unwrap();
        assert!(!rc.path.exists());
    }

    #[test]
    fn a_file_someone_else_rewrote_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let rc = conf(dir.path());
        std::fs::write(&rc.path, "nameserver 192.0.2.53\n").unwrap();
        rc.write(&render(
            "nameserver 192.0.2.53\n",
            "10.1.0.1".parse().unwrap(),
            &[],
        ))
        .unwrap();
        std::fs::write(&rc.path, "nameserver 203.0.113.9\n").unwrap();
        assert!(!rc.restore().unwrap());
        assert_eq!(
            std::fs::read_to_string(&rc.path).unwrap(),
            "nameserver 203.0.113.9\n"
        );
        assert!(!rc.has_backup());
    }
}

/// The resolv.conf fuzz target, replayed over its committed inputs.
#[cfg(test)]
#[path = "../../../fuzz/checks/resolv_conf.rs"]
mod fuzz_inputs;
