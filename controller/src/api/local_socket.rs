//! The admin socket: the API's own router on a Unix socket, where the
//! kernel says who calls (`SO_PEERCRED`) instead of a token. Root and the
//! controller's own user get the admin scope, recorded in the audit log as
//! `local:root` or `local:uid:N`; anyone else gets 403.
//!
//! The file is made 0600 (the controller's user; root passes any mode), a
//! stale one left by a crashed process is replaced, a live one (another
//! controller) is not, and the file goes when the controller stops.

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use axum::Router;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::error::ApiError;
use super::listener::{self, Accept};
use super::{ApiLimits, Caller};
use crate::store::Actor;

/// Who is at the other end of an admin-socket connection, as the kernel
/// saw it connect; every request on the connection carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalPeer {
    pub uid: u32,
    /// The user the controller runs as (the socket file's owner).
    pub own_uid: u32,
}

impl LocalPeer {
    /// Root and the controller's own user are admins; nobody else is let in.
    pub fn caller(&self) -> Result<Caller, ApiError> {
        if self.uid == 0 || self.uid == self.own_uid {
            return Ok(Caller::local(Actor::local(self.uid)));
        }
        Err(ApiError::Forbidden(format!(
            "the admin socket admits root and the controller's own user (uid {}); uid {} is \
             neither: run the command with sudo, or use an API token (--token or WARREN_TOKEN)",
            self.own_uid, self.uid
        )))
    }
}

/// Why the admin socket could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AdminSocketError {
    #[error(
        "admin socket {0}: another process answers on it (another controller with the same \
         admin-socket?); stop it, or give this one another admin-socket"
    )]
    InUse(PathBuf),
    #[error(
        "admin socket {0}: exists and is not a socket: refusing to replace it (remove it, or \
         set admin-socket)"
    )]
    NotASocket(PathBuf),
    #[error("admin socket {path}: {what}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Where the admin socket goes, and whether the controller may start
/// without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSocketPlace {
    pub path: PathBuf,
    /// Asked for (`admin-socket` set): a socket that cannot be made stops
    /// the start. The default place only warns, so that a data directory
    /// where no socket can go (a path too long for one, a file system
    /// without them, another controller's socket) starts as before.
    pub required: bool,
}

/// A bound admin socket. Dropping it removes the file, unless another
/// process has put a socket of its own there since.
#[derive(Debug)]
pub struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
    own_uid: u32,
    /// Device and inode of the file we made.
    made: (u64, u64),
}

impl AdminSocket {
    /// Binds `path` (needs a Tokio runtime), replacing a stale socket file.
    pub fn bind(path: &Path) -> Result<Self, AdminSocketError> {
        let io_err = |what: &'static str| {
            move |source| AdminSocketError::Io {
                path: path.to_path_buf(),
                what,
                source,
            }
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(AdminSocketError::NotASocket(path.to_path_buf()));
            }
            Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(AdminSocketError::InUse(path.to_path_buf())),
                // Nobody listens: a crashed process's file.
                Err(_) => {
                    tracing::info!(path = %path.display(), "replacing a stale admin socket");
                    std::fs::remove_file(path).map_err(io_err("removing a stale socket"))?;
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("looking at the path")(e)),
        }
        let listener = UnixListener::bind(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => io_err("binding (does its directory exist?)")(source),
            _ => io_err("binding")(source),
        })?;
        // Until this chmod the file has the umask's mode: a connection in
        // between is still refused by its credentials.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err("setting its mode to 0600"))?;
        let meta = std::fs::symlink_metadata(path).map_err(io_err("reading its owner"))?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
            own_uid: meta.uid(),
            made: (meta.dev(), meta.ino()),
        })
    }

    /// Binds `place`; one that is not required and cannot be made is
    /// logged and skipped.
    pub fn open(place: &AdminSocketPlace) -> Result<Option<Self>, AdminSocketError> {
        match Self::bind(&place.path) {
            Ok(socket) => Ok(Some(socket)),
            Err(e) if !place.required => {
                let cause = std::error::Error::source(&e).map(|s| format!(": {s}"));
                tracing::warn!(
                    "no admin socket ({e}{}): the admin commands need a token; set admin-socket \
                     to put the socket elsewhere",
                    cause.unwrap_or_default()
                );
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.made);
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove the admin socket");
            }
        }
    }
}

impl Accept for AdminSocket {
    type Connection = UnixStream;
    async fn accept_one(&self) -> io::Result<UnixStream> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }
}

/// Serves `router` (the API's, with its validation and limits) on the
/// socket until `stopped` turns true, then removes the file.
pub fn spawn(
    socket: AdminSocket,
    router: Router,
    limits: ApiLimits,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        serve(socket, router, limits, shutdown).await;
    })
}

async fn serve(
    socket: AdminSocket,
    router: Router,
    limits: ApiLimits,
    shutdown: impl Future<Output = ()>,
) {
    let own_uid = socket.own_uid;
    tracing::info!(path = %socket.path.display(), "admin socket listening");
    listener::accept_each(socket, limits, shutdown, move |stream, close| {
        let router = router.clone();
        async move {
            let uid = match stream.peer_cred() {
                Ok(cred) => cred.uid(),
                Err(e) => {
                    tracing::debug!(error = %e, "admin socket: no peer credentials");
                    return;
                }
            };
            let peer = LocalPeer { uid, own_uid };
            listener::serve_connection(stream, format!("uid {uid}"), peer, router, limits, close)
                .await;
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_the_own_user_are_admins_and_nobody_else() {
        let peer = |uid| LocalPeer { uid, own_uid: 998 };
        assert_eq!(peer(0).caller().unwrap().actor().as_str(), "local:root");
        assert_eq!(
            peer(998).caller().unwrap().actor().as_str(),
            "local:uid:998"
        );
        assert!(peer(0).caller().unwrap().network_id.is_none());
        let refused = peer(65534).caller().unwrap_err().to_string();
        assert!(refused.contains("uid 65534 is neither"), "{refused}");
    }
}
