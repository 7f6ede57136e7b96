//! Runs Rust code inside a network namespace, on a thread of its own.
//!
//! `setns(2)` with `CLONE_NEWNET` switches only the calling thread, so each
//! call gets a fresh thread that enters the namespace first. Sockets made on
//! that thread stay in that namespace for their whole life, even after they
//! are handed back to another thread: tests open sockets here and use them
//! from the test thread.
#![allow(unsafe_code)]

use std::any::Any;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::thread;

use crate::error::{LabError, Result};

/// Where `ip netns add` pins named namespaces.
const NETNS_DIR: &str = "/var/run/netns";

fn netns_path(netns: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(netns)
}

/// Moves the calling thread into the named network namespace.
fn enter(netns: &str) -> Result<()> {
    let file = File::open(netns_path(netns)).map_err(|source| LabError::Setns {
        netns: netns.to_owned(),
        source,
    })?;
    // SAFETY: `file` is an open descriptor owned by this function for the
    // duration of the call; setns only reads it and affects the calling
    // thread alone (no other thread's namespace or memory is touched).
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(LabError::Setns {
            netns: netns.to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Runs `f` inside `netns` and waits for its result. `f` may borrow from the
/// caller. A panic inside `f` becomes [`LabError::ThreadPanicked`].
pub fn run<T, F>(netns: &str, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    thread::scope(|scope| {
        let handle = scope.spawn(|| {
            enter(netns)?;
            Ok(f())
        });
        handle.join().map_err(|payload| LabError::ThreadPanicked {
            netns: netns.to_owned(),
            message: panic_message(payload.as_ref()),
        })?
    })
}

/// A background thread running inside a namespace; see [`spawn`].
pub struct NetnsThread<T> {
    netns: String,
    handle: thread::JoinHandle<Result<T>>,
}

impl<T> NetnsThread<T> {
    /// Whether the thread has returned already.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the thread and returns what `f` returned.
    pub fn join(self) -> Result<T> {
        let netns = self.netns;
        self.handle
            .join()
            .map_err(|payload| LabError::ThreadPanicked {
                netns,
                message: panic_message(payload.as_ref()),
            })?
    }
}

/// Starts `f` inside `netns` on a background thread.
pub fn spawn<T, F>(netns: &str, f: F) -> Result<NetnsThread<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let name = netns.to_owned();
    let handle = thread::Builder::new()
        .name(format!("in-{netns}"))
        .spawn(move || {
            enter(&name)?;
            Ok(f())
        })
        .map_err(|e| LabError::io(format!("spawning a thread for {netns}"), e))?;
    Ok(NetnsThread {
        netns: netns.to_owned(),
        handle,
    })
}
