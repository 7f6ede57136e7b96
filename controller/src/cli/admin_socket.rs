//! Where the admin commands find the controller's admin socket, and why
//! one they found cannot be used.

use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Where the packaged controller puts it, then `serve`'s default (the
/// packaged data directory's).
pub const DEFAULT_PATHS: [&str; 2] = [
    "/run/warren-controller/admin.sock",
    "/var/lib/warren-controller/admin.sock",
];

/// What the search found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// A socket that answers.
    Usable(PathBuf),
    /// None: what to tell the user when no token makes up for it.
    Unusable(String),
}

/// `explicit` (`--admin-socket`, `WARREN_ADMIN_SOCKET`) must answer; else
/// the first of [`DEFAULT_PATHS`] that does.
pub fn find(explicit: Option<&Path>) -> anyhow::Result<Found> {
    if let Some(path) = explicit {
        return match probe(path) {
            None => Ok(Found::Usable(path.to_path_buf())),
            Some(why) if why.ends_with(NOT_THERE) => anyhow::bail!(
                "the admin socket {why}: is the controller running on this host, and is this \
                 its admin-socket?"
            ),
            Some(why) => anyhow::bail!("the admin socket {why}"),
        };
    }
    let mut problems = Vec::new();
    for path in DEFAULT_PATHS.map(Path::new) {
        match probe(path) {
            None => return Ok(Found::Usable(path.to_path_buf())),
            Some(why) if why.ends_with(NOT_THERE) => {}
            Some(why) => problems.push(why),
        }
    }
    if problems.is_empty() {
        problems.push(format!("none at {}", DEFAULT_PATHS.join(" or ")));
    }
    Ok(Found::Unusable(format!(
        "no API token, and no admin socket to use instead ({}): run this on the controller's \
         host as root (sudo), or pass an API token with --token or WARREN_TOKEN",
        problems.join("; ")
    )))
}

const NOT_THERE: &str = "does not exist";

/// `None` if `path` answers, else why not, starting with the path.
fn probe(path: &Path) -> Option<String> {
    let shown = path.display();
    let error = UnixStream::connect(path).err()?;
    Some(match error.kind() {
        ErrorKind::NotFound => format!("{shown} {NOT_THERE}"),
        ErrorKind::PermissionDenied => {
            format!("{shown}: permission denied (it admits root and the controller's own user)")
        }
        ErrorKind::ConnectionRefused => {
            format!("{shown}: nobody answers on it (is the controller running?)")
        }
        _ => format!("{shown}: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_socket_must_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let e = find(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(find(Some(&path)).unwrap(), Found::Usable(path.clone()));
        drop(listener);
        let e = find(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("nobody answers"), "{e}");
    }
}
