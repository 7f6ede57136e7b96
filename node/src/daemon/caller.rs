//! Who is calling the local API, and what they may do: root, the agent's
//! own user and the admin group may change things; members of the
//! socket's group may only read; nobody else gets in.

use std::collections::BTreeSet;

/// What a connection to the local API may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Status, ping, netcheck, and reading DNS and routes.
    Read,
    /// Everything, joins and leaves included.
    Admin,
}

/// The identity of the process at the other end of the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    /// Its effective group and supplementary groups.
    pub groups: BTreeSet<u32>,
}

/// Who the daemon lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub own_uid: u32,
    /// The socket file's group, if it admits its group (not root, mode g+rw).
    pub socket_gid: Option<u32>,
    /// `admin-group`: its members may make changes.
    pub admin_gid: Option<u32>,
}

impl Policy {
    /// `None` refuses the connection.
    pub fn access(&self, caller: &Caller) -> Option<Access> {
        if caller.uid == 0 || caller.uid == self.own_uid {
            return Some(Access::Admin);
        }
        if self.admin_gid.is_some_and(|g| caller.groups.contains(&g)) {
            return Some(Access::Admin);
        }
        if self.socket_gid.is_some_and(|g| caller.groups.contains(&g)) {
            return Some(Access::Read);
        }
        None
    }
}

/// What a request needs: reads are GETs, and a ping (a POST that changes
/// nothing); everything else changes the agent.
pub fn needed(method: &axum::http::Method, path: &str) -> Access {
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        return Access::Read;
    }
    if method == axum::http::Method::POST && path == "/v1/ping" {
        return Access::Read;
    }
    Access::Admin
}

/// The caller as the kernel saw it connect: its uid, its effective gid
/// and the supplementary groups it held (`SO_PEERCRED`, `SO_PEERGROUPS`).
pub fn from_socket(uid: u32, gid: u32, supplementary: &[u32]) -> Caller {
    let mut groups: BTreeSet<u32> = supplementary.iter().copied().collect();
    groups.insert(gid);
    Caller { uid, groups }
}

/// `admin-group` as a number or a group name.
#[allow(unsafe_code)]
pub fn resolve_group(name: &str) -> anyhow::Result<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| anyhow::anyhow!("group name {name:?} contains a NUL byte"))?;
    let mut group: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf outlives it; the
    // result points into `group`/`buf` and only its gid is read.
    let rc = unsafe {
        libc::getgrnam_r(
            c_name.as_ptr(),
            &mut group,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        anyhow::bail!("admin-group {name:?}: no such group");
    }
    Ok(group.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    fn caller(uid: u32, groups: &[u32]) -> Caller {
        Caller {
            uid,
            groups: groups.iter().copied().collect(),
        }
    }

    const POLICY: Policy = Policy {
        own_uid: 0,
        socket_gid: Some(500),
        admin_gid: Some(600),
    };

    #[test]
    fn the_socket_group_reads_the_admin_group_writes_others_are_refused() {
        assert_eq!(POLICY.access(&caller(0, &[])), Some(Access::Admin));
        assert_eq!(POLICY.access(&caller(1000, &[500])), Some(Access::Read));
        assert_eq!(
            POLICY.access(&caller(1000, &[500, 600])),
            Some(Access::Admin)
        );
        assert_eq!(POLICY.access(&caller(1000, &[600])), Some(Access::Admin));
        assert_eq!(POLICY.access(&caller(1000, &[1000])), None);
        // The agent's own user, when it does not run as root.
        let own = Policy {
            own_uid: 1234,
            ..POLICY
        };
        assert_eq!(own.access(&caller(1234, &[])), Some(Access::Admin));
        // A socket that does not admit its group admits nobody else.
        let closed = Policy {
            socket_gid: None,
            admin_gid: None,
            own_uid: 0,
        };
        assert_eq!(closed.access(&caller(1000, &[500])), None);
    }

    #[test]
    fn reads_are_gets_and_ping() {
        assert_eq!(needed(&Method::GET, "/v1/status"), Access::Read);
        assert_eq!(needed(&Method::GET, "/v1/routes"), Access::Read);
        assert_eq!(needed(&Method::POST, "/v1/ping"), Access::Read);
        assert_eq!(needed(&Method::POST, "/v1/networks"), Access::Admin);
        assert_eq!(needed(&Method::DELETE, "/v1/networks/x"), Access::Admin);
        assert_eq!(needed(&Method::POST, "/v1/services"), Access::Admin);
        assert_eq!(needed(&Method::PUT, "/v1/status"), Access::Admin);
    }

    #[test]
    fn the_effective_group_counts_with_the_supplementary_ones() {
        assert_eq!(
            from_socket(1000, 500, &[27, 600]),
            caller(1000, &[500, 27, 600])
        );
        assert_eq!(from_socket(1, 7, &[]), caller(1, &[7]));
    }

    #[test]
    fn a_socket_peer_s_groups_are_this_process_s_own() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut got = crate::platform::sockopt::peer_groups(&a).unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let mut own: Vec<u32> = status
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .unwrap()
            .split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect();
        got.sort_unstable();
        own.sort_unstable();
        assert_eq!(got, own);
    }

    #[test]
    fn admin_group_is_a_number_or_a_name() {
        assert_eq!(resolve_group("600").ok(), Some(600));
        assert_eq!(resolve_group("root").ok(), Some(0));
        assert!(resolve_group("no-such-group-warren").is_err());
    }
}
